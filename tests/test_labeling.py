"""Parallel, resumable homogenization labelling: same numbers however it is split or interrupted."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from lib.fe import labeling
from lib.fe.labeling import homogenization_labels, homogenize_batch, label_images
from lib.profiles import get_profile
from lib.stages import cached_stage, load_stage, stage_attrs

REPO_ROOT = Path(__file__).resolve().parent.parent


def random_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    fields = ndimage.gaussian_filter(rng.standard_normal((n, size, size)), (0, 1.5, 1.5), mode="wrap")
    return (fields > np.quantile(fields, 0.6, axis=(1, 2), keepdims=True)).astype(np.uint8)


def make_database(n: int, size: int) -> Path:
    return cached_stage("smoke", "test_db", {"n": n, "size": size}, lambda: {"images": random_images(n, size)})


def test_batch_outputs_have_documented_shapes():
    out = homogenize_batch(random_images(3, 16))
    assert out["boron_aluminium_stiffness"].shape == (3, 3, 3)
    for prop in labeling.SCALAR_PROPERTIES:
        assert out[f"aluminium_foam_{prop}"].shape == (3,)
        assert np.all(np.isfinite(out[f"aluminium_foam_{prop}"]))
    # boron is the stiff phase: every sample lies between the phases
    assert np.all((68.3e3 < out["boron_aluminium_Ex"]) & (out["boron_aluminium_Ex"] < 379.3e3))


def test_parallel_split_gives_the_same_numbers_as_serial():
    images = random_images(6, 16, seed=1)
    serial = homogenize_batch(images)
    parallel = label_images(images, n_jobs=2)
    for key, value in serial.items():
        np.testing.assert_array_equal(parallel[key], value, err_msg=key)


def test_dask_cluster_path_gives_the_same_numbers():
    distributed = pytest.importorskip("dask.distributed")
    images = random_images(4, 16, seed=2)
    serial = homogenize_batch(images)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        out = label_images(images, scheduler_address=cluster.scheduler_address)
    for key, value in serial.items():
        np.testing.assert_allclose(out[key], value, rtol=1e-12, err_msg=key)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        homogenize_batch(np.zeros((16, 16), np.uint8))
    with pytest.raises(ValueError, match="unknown material case"):
        homogenize_batch(random_images(1, 16), ["titanium_air"])
    with pytest.raises(ValueError, match="binary"):
        homogenize_batch(np.full((1, 16, 16), 2, np.uint8))


def test_stage_reuses_its_cache_and_records_definitions(tmp_study_dirs, monkeypatch):
    profile = get_profile("smoke", label_chunk=4, n_jobs=1)
    database = make_database(6, 16)
    first = homogenization_labels(profile, database)
    calls = []
    monkeypatch.setattr(labeling, "label_images", lambda *a, **k: calls.append(1))
    assert homogenization_labels(profile, database) == first and not calls
    attrs = stage_attrs(first)
    assert attrs["plane_condition"] == "plane stress"
    assert "nu_xy = -S12/S11" in attrs["definitions"]
    assert load_stage(first)["aluminium_foam_alpha_x"].shape == (6,)


def test_killed_labelling_resumes_with_identical_numbers(tmp_study_dirs, tmp_path):
    """SIGKILL a labelling process after its first checkpoint, restart it, and compare with an
    uninterrupted run: every sample labelled once, the same numbers."""
    script = tmp_path / "label.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO_ROOT)!r})
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from lib.fe import labeling
        from lib.profiles import get_profile
        from test_labeling import make_database
        slow = float(sys.argv[1])
        original = labeling.label_images
        def throttled(*args, **kwargs):
            out = original(*args, **kwargs)
            time.sleep(slow)
            return out
        labeling.label_images = throttled
        path = labeling.homogenization_labels(get_profile("smoke", label_chunk=4, n_jobs=1),
                                              make_database(16, 16))
        print(path)
    """))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(script), "1.0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    chunk_dir_glob = "homogenization_labels-*.chunks/chunk_*.h5"
    data = Path(tmp_study_dirs["data"]) / "smoke"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(data.glob(chunk_dir_glob))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(data.glob(chunk_dir_glob)))
    assert 2 <= done_before < 4, "the run should have been killed half-way"

    resumed = subprocess.run([sys.executable, str(script), "0"], env=env, capture_output=True,
                             text=True, check=True)
    labels = load_stage(Path(resumed.stdout.strip().splitlines()[-1]))
    reference = homogenize_batch(random_images(16, 16))
    for key, value in reference.items():
        np.testing.assert_array_equal(labels[key], value, err_msg=key)
    assert not list(data.glob("homogenization_labels-*.chunks"))
