"""Tests of lib.stages: keys, caching, atomic writes, resumable chunks, the event log."""
from __future__ import annotations

import doctest
import hashlib
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

import lib.stages as stages
from lib.stages import (cached_stage, chunked_stage, load_stage, read_key, read_stage_log,
                        StageCacheWarning, stage_attrs, stage_key, stage_log_path,
                        stage_path)


# ------------------------------------------------------------------------------ keys
def test_stage_key_is_sha256_of_canonical_json() -> None:
    text = '{"params":{"a":1,"b":[0.1,2]},"stage":"s","upstream":[]}'
    expected = hashlib.sha256(text.encode()).hexdigest()[:12]
    assert stage_key("s", {"b": (0.1, 2), "a": 1}) == expected
    assert stage_key("s", {"b": np.array([0.1, 2.0]).tolist()[:1] + [2], "a": 1}) == expected


def test_stage_key_stable_for_equal_params() -> None:
    base = stage_key("labels", {"n": 3, "e": 0.3, "grid": [64, 64], "path": "a/b.txt",
                                "opts": {"x": 1, "y": 2}}, upstream=["0123456789ab", "ba9876543210"])
    same = stage_key("labels", {"opts": {"y": 2, "x": 1}, "path": Path("a/b.txt"),
                                "grid": np.array([64, 64]), "e": np.float64(0.3),
                                "n": np.int64(3)}, upstream=("ba9876543210", "0123456789ab"))
    assert base == same
    assert len(base) == 12 and int(base, 16) >= 0
    assert stage_key("t", {"flag": np.bool_(True)}) == stage_key("t", {"flag": True})
    assert stage_key("t", {"xs": (1, 2)}) == stage_key("t", {"xs": [1, 2]})


def test_stage_key_changes_with_every_input() -> None:
    params = {"n": 3, "e": 0.3, "grid": [64, 64]}
    base = stage_key("labels", params, upstream=["0123456789ab"])
    variants = [
        stage_key("labels2", params, upstream=["0123456789ab"]),
        stage_key("labels", {**params, "n": 4}, upstream=["0123456789ab"]),
        stage_key("labels", {**params, "e": 0.30000000000000004}, upstream=["0123456789ab"]),
        stage_key("labels", {**params, "grid": [64, 65]}, upstream=["0123456789ab"]),
        stage_key("labels", {**params, "extra": None}, upstream=["0123456789ab"]),
        stage_key("labels", params, upstream=["0123456789ac"]),
        stage_key("labels", params, upstream=[]),
        stage_key("labels", params, upstream=["0123456789ab", "0123456789ab"]),
    ]
    assert len(set(variants + [base])) == len(variants) + 1


@pytest.mark.parametrize("name, params, upstream, message", [
    ("bad-name", {}, (), "stage name"),
    ("", {}, (), "stage name"),
    ("s", [("a", 1)], (), "must be a mapping"),
    ("s", {"f": object()}, (), "not hashable as JSON"),
    ("s", {}, "0123456789ab", "not one string"),
    ("s", {}, ["xyz"], "12-hex"),
])
def test_stage_key_rejects_bad_input(name, params, upstream, message) -> None:
    with pytest.raises(ValueError, match=message):
        stage_key(name, params, upstream)


def test_stage_path_layout(tmp_study_dirs) -> None:
    path = stage_path("smoke", "labels", "0123456789ab")
    assert path == tmp_study_dirs["data"] / "smoke" / "labels-0123456789ab.h5"
    with pytest.raises(ValueError, match="unknown profile"):
        stage_path("huge", "labels", "0123456789ab")
    with pytest.raises(ValueError, match="12 hex"):
        stage_path("smoke", "labels", "abc")


# ------------------------------------------------------------------------------ cached_stage
def _counting(arrays: dict[str, np.ndarray]):
    """A compute function returning ``arrays`` that counts its calls in ``.calls``."""
    def compute() -> dict[str, np.ndarray]:
        compute.calls += 1
        return arrays
    compute.calls = 0
    return compute


def test_cached_stage_computes_once_then_reuses(tmp_study_dirs) -> None:
    arrays = {"x": np.arange(12.0).reshape(3, 4), "label": np.array(["lam", "voronoi", "é"]),
              "ok": np.array([True, False, True]), "scalar": np.float32(2.5)}
    compute = _counting(arrays)
    params = {"n": 3, "seed": 7}
    p1 = cached_stage("smoke", "demo", params, compute, attrs={"units": "MPa", "meta": {"a": 1}})
    p2 = cached_stage("smoke", "demo", params, compute)
    assert p1 == p2 == stage_path("smoke", "demo", stage_key("demo", params))
    assert compute.calls == 1
    loaded = load_stage(p1)
    assert set(loaded) == set(arrays)
    np.testing.assert_array_equal(loaded["x"], arrays["x"])
    assert loaded["label"].tolist() == ["lam", "voronoi", "é"]
    assert loaded["ok"].dtype == bool and loaded["ok"].tolist() == [True, False, True]
    assert loaded["scalar"].shape == () and float(loaded["scalar"]) == 2.5
    attrs = stage_attrs(p1)
    assert attrs["stage"] == "demo" and attrs["params"] == params and attrs["upstream"] == []
    assert attrs["units"] == "MPa" and attrs["meta"] == {"a": 1}
    assert read_key(p1) == stage_key("demo", params)

    p3 = cached_stage("smoke", "demo", {"n": 3, "seed": 8}, compute)
    assert p3 != p1 and compute.calls == 2 and p1.exists()


def test_cached_stage_compresses_large_arrays(tmp_study_dirs) -> None:
    big = np.zeros((300, 128, 128), dtype=np.uint8)  # 4.9 MB
    path = cached_stage("smoke", "big", {}, lambda: {"big": big, "small": np.ones(10)})
    with h5py.File(path, "r") as h5:
        assert h5["big"].compression == "gzip"
        assert h5["small"].compression is None
    assert path.stat().st_size < big.nbytes / 10


def test_cached_stage_upstream_recorded(tmp_study_dirs) -> None:
    up = cached_stage("smoke", "first", {"a": 1}, lambda: {"v": np.ones(2)})
    down = cached_stage("smoke", "second", {"b": 2}, lambda: {"w": np.zeros(2)},
                        upstream=[read_key(up)])
    assert stage_attrs(down)["upstream"] == [read_key(up)]
    assert read_key(down) == stage_key("second", {"b": 2}, [stage_key("first", {"a": 1})])


def test_exception_in_compute_leaves_no_file(tmp_study_dirs) -> None:
    def boom() -> dict[str, np.ndarray]:
        raise RuntimeError("solver diverged")
    with pytest.raises(RuntimeError, match="solver diverged"):
        cached_stage("smoke", "demo", {"n": 1}, boom)
    folder = tmp_study_dirs["data"] / "smoke"
    assert sorted(os.listdir(folder)) == []


def test_leftover_tmp_is_not_taken_as_done(tmp_study_dirs) -> None:
    final = stage_path("smoke", "demo", stage_key("demo", {"n": 1}))
    # a killed writer's temp file (a pid that cannot exist) with plausible contents
    dead = final.with_name(f"{final.name}.{stages._HOST}-99999999-deadbeef.tmp")
    with h5py.File(dead, "w") as h5:
        h5["x"] = np.zeros(3)
        h5.attrs["key"] = stage_key("demo", {"n": 1})
    compute = _counting({"x": np.arange(3.0)})
    path = cached_stage("smoke", "demo", {"n": 1}, compute)
    assert compute.calls == 1
    assert load_stage(path)["x"].tolist() == [0.0, 1.0, 2.0]
    assert not dead.exists()
    assert [p.name for p in final.parent.iterdir()] == [final.name]


def test_tmp_of_a_live_writer_is_left_alone(tmp_study_dirs) -> None:
    final = stage_path("smoke", "demo", stage_key("demo", {"n": 1}))
    live = final.with_name(f"{final.name}.{stages._HOST}-{os.getppid()}-0badf00d.tmp")
    live.write_bytes(b"half written by a concurrent process")
    cached_stage("smoke", "demo", {"n": 1}, lambda: {"x": np.ones(2)})
    assert live.exists() and load_stage(final)["x"].tolist() == [1.0, 1.0]


def test_corrupt_final_file_is_recomputed(tmp_study_dirs) -> None:
    final = stage_path("smoke", "demo", stage_key("demo", {"n": 1}))
    final.write_bytes(b"not an hdf5 file")
    compute = _counting({"x": np.arange(3.0)})
    with pytest.warns(StageCacheWarning, match="unreadable.*recomputing"):
        cached_stage("smoke", "demo", {"n": 1}, compute)
    assert compute.calls == 1 and load_stage(final)["x"].sum() == 3.0


def test_truncated_final_file_is_reported_and_recomputed(tmp_study_dirs) -> None:
    """A stage file cut short (a crash during a copy, a full disk) is named, then redone."""
    first = cached_stage("smoke", "demo", {"n": 2}, lambda: {"x": np.arange(1000.0)})
    data = first.read_bytes()
    first.write_bytes(data[: len(data) // 2])
    compute = _counting({"x": np.arange(1000.0)})
    with pytest.warns(StageCacheWarning, match=f"{first.name}.*recomputing"):
        again = cached_stage("smoke", "demo", {"n": 2}, compute)
    assert again == first and compute.calls == 1 and load_stage(again)["x"].sum() == 499500.0


@pytest.mark.parametrize("result, message", [
    ({}, "non-empty mapping"),
    ([np.ones(2)], "non-empty mapping"),
    ({"a/b": np.ones(2)}, "without '/'"),
    ({"x": np.array([{"a": 1}], dtype=object)}, "dtype object"),
])
def test_bad_compute_result_is_named(tmp_study_dirs, result, message) -> None:
    with pytest.raises(ValueError, match=message):
        cached_stage("smoke", "demo", {}, lambda: result)
    assert list((tmp_study_dirs["data"] / "smoke").iterdir()) == []


def test_reserved_attrs_rejected(tmp_study_dirs) -> None:
    with pytest.raises(ValueError, match="reserved"):
        cached_stage("smoke", "demo", {}, lambda: {"x": np.ones(1)}, attrs={"key": "mine"})
    with pytest.raises(ValueError, match="_json"):
        cached_stage("smoke", "demo", {}, lambda: {"x": np.ones(1)}, attrs={"note_json": "{"})


def test_missing_stage_file_raises_file_not_found(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_stage(tmp_path / "labels-0123456789ab.h5")
    with pytest.raises(FileNotFoundError):
        stage_attrs(tmp_path / "nothing.h5")


# ------------------------------------------------------------------------------ chunked_stage
def _items(start: int, stop: int) -> dict[str, np.ndarray]:
    """Deterministic per-item arrays: item i depends only on i."""
    idx = np.arange(start, stop)
    rng = [np.random.default_rng(i).random((4, 4)) for i in idx]
    return {"index": idx, "field": np.stack(rng), "name": np.array([f"s{i}" for i in idx])}


def test_chunked_stage_resumes_without_recomputing(tmp_study_dirs) -> None:
    calls: list[tuple[int, int]] = []

    def flaky(start: int, stop: int) -> dict[str, np.ndarray]:
        calls.append((start, stop))
        if len(calls) == 3:
            raise KeyboardInterrupt  # the run is killed during the 3rd chunk
        return _items(start, stop)

    params = {"n": 10}
    with pytest.raises(KeyboardInterrupt):
        chunked_stage("smoke", "labels", params, 10, flaky, chunk_size=3, progress=False)
    key = stage_key("labels", params)
    chunk_dir = tmp_study_dirs["data"] / "smoke" / f"labels-{key}.chunks"
    assert sorted(p.name for p in chunk_dir.iterdir()) == [
        "chunk_0000000_0000003.h5", "chunk_0000003_0000006.h5"]
    assert not stage_path("smoke", "labels", key).exists()

    calls.clear()
    path = chunked_stage("smoke", "labels", params, 10, lambda a, b: calls.append((a, b))
                         or _items(a, b), chunk_size=3, progress=False)
    assert calls == [(6, 9), (9, 10)]
    assert not chunk_dir.exists()

    # an uninterrupted run (another profile folder) gives identical arrays
    reference = chunked_stage("default", "labels", params, 10, _items, chunk_size=3,
                              progress=False)
    got, want = load_stage(path), load_stage(reference)
    assert set(got) == {"index", "field", "name"}
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    assert got["index"].tolist() == list(range(10)) and got["field"].shape == (10, 4, 4)
    assert got["name"][9] == "s9"
    assert stage_attrs(path)["n_items"] == 10

    calls.clear()
    again = chunked_stage("smoke", "labels", params, 10, lambda a, b: calls.append((a, b))
                          or _items(a, b), chunk_size=3, progress=False)
    assert again == path and calls == []


def test_chunked_stage_resume_with_other_chunk_size(tmp_study_dirs) -> None:
    calls: list[tuple[int, int]] = []

    def stop_after_two(start: int, stop: int) -> dict[str, np.ndarray]:
        if len(calls) == 2:
            raise RuntimeError("killed")
        calls.append((start, stop))
        return _items(start, stop)

    with pytest.raises(RuntimeError):
        chunked_stage("smoke", "labels", {"n": 10}, 10, stop_after_two, chunk_size=4,
                      progress=False)
    calls.clear()
    path = chunked_stage("smoke", "labels", {"n": 10}, 10,
                         lambda a, b: calls.append((a, b)) or _items(a, b), chunk_size=5,
                         progress=False)
    assert calls == [(8, 10)]
    assert load_stage(path)["index"].tolist() == list(range(10))


def test_chunked_stage_wrong_first_dimension(tmp_study_dirs) -> None:
    with pytest.raises(ValueError, match=r"first dimension must be stop - start = 4"):
        chunked_stage("smoke", "labels", {}, 8, lambda a, b: {"x": np.zeros((b - a + 1, 2))},
                      chunk_size=4, progress=False)
    with pytest.raises(ValueError, match="first dimension"):
        chunked_stage("smoke", "labels", {}, 8, lambda a, b: {"x": np.float64(1.0)},
                      chunk_size=4, progress=False)
    assert not stage_path("smoke", "labels", stage_key("labels", {})).exists()


def test_chunked_stage_inconsistent_chunks(tmp_study_dirs) -> None:
    def changing(start: int, stop: int) -> dict[str, np.ndarray]:
        return {"x": np.zeros((stop - start, 2 if start == 0 else 3))}
    with pytest.raises(ValueError, match="unlike the earlier chunks"):
        chunked_stage("smoke", "labels", {}, 8, changing, chunk_size=4, progress=False)


def test_chunked_stage_n_items_must_match_cache(tmp_study_dirs) -> None:
    chunked_stage("smoke", "labels", {}, 4, _items, chunk_size=4, progress=False)
    with pytest.raises(ValueError, match="n_items=4"):
        chunked_stage("smoke", "labels", {}, 6, _items, chunk_size=4, progress=False)
    with pytest.raises(ValueError, match="positive integer"):
        chunked_stage("smoke", "other", {}, 0, _items, chunk_size=4, progress=False)
    with pytest.raises(ValueError, match="chunk_size"):
        chunked_stage("smoke", "other", {}, 4, _items, chunk_size=0, progress=False)


# ------------------------------------------------------------------------------ event log
def test_event_log_records_run_and_cached(tmp_study_dirs, monkeypatch) -> None:
    monkeypatch.setenv("STUDY_NOTEBOOK", "03_fe_labels")
    cached_stage("smoke", "demo", {"n": 1}, lambda: {"x": np.ones(1)})
    cached_stage("smoke", "demo", {"n": 1}, lambda: {"x": np.ones(1)})
    chunked_stage("smoke", "chunky", {"n": 5}, 5, _items, chunk_size=2, progress=False)
    monkeypatch.delenv("STUDY_NOTEBOOK")
    cached_stage("smoke", "demo", {"n": 1}, lambda: {"x": np.ones(1)})

    path = stage_log_path("smoke")
    assert path == tmp_study_dirs["results"] / "smoke" / "stage_log.jsonl"
    lines = path.read_text().splitlines()
    events = [json.loads(line) for line in lines]
    assert events == read_stage_log("smoke")
    assert [(e["stage"], e["status"], e["notebook"]) for e in events] == [
        ("demo", "run", "03_fe_labels"), ("demo", "cached", "03_fe_labels"),
        ("chunky", "run", "03_fe_labels"), ("demo", "cached", None)]
    assert all(set(e) == {"notebook", "stage", "key", "status", "seconds", "time"}
               for e in events)
    assert events[0]["key"] == stage_key("demo", {"n": 1})
    assert all(isinstance(e["seconds"], float) and e["seconds"] >= 0 for e in events)


def test_doctests() -> None:
    result = doctest.testmod(stages)
    assert result.attempted >= 5 and result.failed == 0
