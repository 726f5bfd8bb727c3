"""Parameter-keyed stage cache: every expensive result is one HDF5 file named by its inputs.

A *stage* is a named computation (``"fe_labels"``, ``"vqvae_weights"``...) whose output is a
few numpy arrays. Its file is ``data/<profile>/<name>-<key>.h5`` where ``key`` hashes the
stage name, its parameters and the keys of the stages it reads (``upstream``), so

* a rerun with the same parameters finds the file and skips the work ("cached");
* a changed parameter gives a new key, hence a new file, and so does every stage downstream
  of it (pass the upstream keys on), while unrelated stages stay cached.

Files are written to a temporary name ending in ``.tmp`` in the same directory and then
renamed with :func:`os.replace`, so a file under its final name is always complete; a
``.tmp`` left by a killed run is never read and is cleaned up by the next run.
:func:`chunked_stage` splits a long stage into chunk files written the same way, so an
interrupted run resumes without recomputing finished chunks.

The key covers parameters, not code: when a change to the code changes a stage's results,
add or bump a ``"version"`` entry in its params.

Every "cached"/"run" event is appended as one JSON line to
``results/<profile>/stage_log.jsonl`` (``run_all.py`` reads it for its summary table).

Typical use in a notebook::

    params = {"n": profile.n_dual_phase, "seed": profile.seed}
    path = cached_stage(profile.name, "dual_phase", params, lambda: {"images": make(**params)})
    images = load_stage(path)["images"]
    labels = chunked_stage(profile.name, "gtn_labels", {"mesh": 64}, n_items=len(images),
                           compute_chunk=lambda a, b: label(images[a:b]),
                           chunk_size=profile.label_chunk, upstream=[read_key(path)])
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path, PurePath
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

from lib.paths import data_dir, results_root
from lib.profiles import PROFILE_NAMES

__all__ = [
    "stage_key",
    "stage_path",
    "cached_stage",
    "chunked_stage",
    "StageCacheWarning",
    "load_stage",
    "stage_attrs",
    "read_key",
    "stage_log_path",
    "read_stage_log",
]

log = logging.getLogger(__name__)

#: Arrays larger than this many bytes are stored gzip-compressed.
COMPRESS_ABOVE_BYTES = 1 << 20
#: Attribute names written by this module; callers' ``attrs`` may not reuse them.
RESERVED_ATTRS = ("stage", "key", "params_json", "upstream_json", "n_items")

_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")
_KEY_RE = re.compile(r"^[0-9a-f]{12}$")
_CHUNK_RE = re.compile(r"^chunk_(\d{7})_(\d{7})\.h5$")
_TMP_RE = re.compile(r"\.(?P<host>[^./]+)-(?P<pid>\d+)-(?P<token>[0-9a-f]+)\.tmp$")
_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"


# --------------------------------------------------------------------------------------------
# keys and paths
# --------------------------------------------------------------------------------------------
def _json_default(obj: Any) -> Any:
    """Map the non-JSON types stage parameters commonly hold onto JSON types (``json`` hook)."""
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biufUS":
            raise TypeError(f"numpy array of dtype {obj.dtype}")
        return obj.tolist()
    if isinstance(obj, PurePath):
        return obj.as_posix()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"object of type {type(obj).__name__}")


def _canonical_json(value: Any) -> str:
    """Canonical JSON text of ``value``: sorted keys, no whitespace, shortest float repr.

    Python's float repr is the shortest string that round-trips, so equal floats always give
    the same text. ``1`` and ``1.0`` stay different (a spurious recompute is cheaper than a
    wrong cache hit).
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      default=_json_default)


def _check_name(name: str) -> None:
    """Raise ValueError unless ``name`` is a usable stage name (letters, digits, ``_``)."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"stage name must be letters, digits and underscores (it becomes a file name "
            f"'<name>-<key>.h5'), got {name!r}")


def _check_profile(profile: str) -> None:
    """Raise ValueError unless ``profile`` is one of the study's profiles."""
    if profile not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILE_NAMES)}")


def stage_key(name: str, params: Mapping[str, Any], upstream: Sequence[str] = ()) -> str:
    """Return the 12-hex-digit key of stage ``name`` run with ``params`` on ``upstream`` stages.

    The key is the start of the SHA-256 of the canonical JSON of
    ``{"stage": name, "params": params, "upstream": sorted(upstream)}``. Dict order does not
    matter; numpy scalars and arrays hash like the equal Python numbers and lists, tuples like
    lists, paths like their POSIX text.

    >>> stage_key("labels", {"a": 1, "b": 0.5}) == stage_key("labels", {"b": 0.5, "a": 1})
    True
    >>> stage_key("labels", {"a": np.int64(1)}) == stage_key("labels", {"a": 1})
    True
    >>> stage_key("labels", {"a": 1}) == stage_key("labels", {"a": 2})
    False
    """
    _check_name(name)
    if not isinstance(params, Mapping):
        raise ValueError(f"params of stage {name!r} must be a mapping, got {type(params).__name__}")
    if isinstance(upstream, str):
        raise ValueError(f"upstream of stage {name!r} must be a sequence of keys, not one string "
                         f"(write upstream=[{upstream!r}])")
    upstream = list(upstream)
    for up in upstream:
        if not isinstance(up, str) or not _KEY_RE.match(up):
            raise ValueError(f"upstream entries of stage {name!r} must be 12-hex stage keys "
                             f"(from stage_key or read_key), got {up!r}")
    try:
        text = _canonical_json({"stage": name, "params": dict(params),
                                "upstream": sorted(upstream)})
    except (TypeError, ValueError) as err:
        raise ValueError(f"params of stage {name!r} are not hashable as JSON ({err}); use "
                         f"numbers, strings, lists, dicts, numpy values or paths") from err
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def stage_path(profile: str, name: str, key: str) -> Path:
    """Return ``data/<profile>/<name>-<key>.h5`` (the folder is created; the file may not exist)."""
    _check_profile(profile)
    _check_name(name)
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ValueError(f"stage key must be 12 hex digits, got {key!r}")
    return data_dir(profile) / f"{name}-{key}.h5"


# --------------------------------------------------------------------------------------------
# event log
# --------------------------------------------------------------------------------------------
def stage_log_path(profile: str) -> Path:
    """Return ``results/<profile>/stage_log.jsonl`` (the file may not exist yet)."""
    _check_profile(profile)
    return results_root() / profile / "stage_log.jsonl"


def _log_event(profile: str, name: str, key: str, status: str, seconds: float) -> None:
    """Append one event line (one ``write`` call on a file opened for appending)."""
    event = {
        "notebook": os.environ.get("STUDY_NOTEBOOK") or None,
        "stage": name,
        "key": key,
        "status": status,
        "seconds": round(float(seconds), 3),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = stage_log_path(profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(event) + "\n")
    log.info("stage %s [%s] %s (%.1f s)", name, key, status, seconds)


def read_stage_log(profile: str) -> list[dict[str, Any]]:
    """Return every event of ``profile``'s stage log, oldest first (empty if there is none).

    A torn last line (a writer killed mid-write) is skipped.
    """
    path = stage_log_path(profile)
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


# --------------------------------------------------------------------------------------------
# HDF5 reading and writing
# --------------------------------------------------------------------------------------------
def _as_arrays(arrays: Any, what: str) -> dict[str, np.ndarray]:
    """Validate a compute function's result: a non-empty mapping of names to arrays."""
    if not isinstance(arrays, Mapping) or not arrays:
        raise ValueError(f"{what} must return a non-empty mapping of names to numpy arrays, "
                         f"got {type(arrays).__name__}")
    out = {}
    for key, value in arrays.items():
        if not isinstance(key, str) or not key or "/" in key or key.startswith("."):
            raise ValueError(f"{what}: dataset names must be plain non-empty strings without "
                             f"'/', got {key!r}")
        arr = np.asarray(value)
        if arr.dtype.kind == "O":
            if not all(isinstance(v, str) for v in arr.flat):
                raise ValueError(f"{what}: array {key!r} has dtype object; only numbers, "
                                 f"booleans and str can be stored")
            arr = arr.astype(str)
        if arr.dtype.kind not in "biufcU":
            raise ValueError(f"{what}: array {key!r} has unsupported dtype {arr.dtype}")
        out[key] = arr
    return out


def _h5_dtype(arr: np.ndarray) -> Any:
    """HDF5 dtype for ``arr``: variable-length UTF-8 for text, the array's own otherwise."""
    return h5py.string_dtype("utf-8") if arr.dtype.kind == "U" else arr.dtype


def _h5_data(arr: np.ndarray) -> np.ndarray:
    """Data as h5py wants it: text as an object array of ``str``."""
    return arr.astype(object) if arr.dtype.kind == "U" else arr


def _write_attrs(h5: h5py.File, attrs: Mapping[str, Any]) -> None:
    """Store ``attrs``; values HDF5 cannot hold natively (dicts, None...) go in as ``<k>_json``."""
    for name, value in attrs.items():
        if isinstance(value, (str, bool, int, float, np.generic)):
            h5.attrs[name] = value
        elif isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            h5.attrs[name] = value
        else:
            try:
                h5.attrs[f"{name}_json"] = _canonical_json(value)
            except (TypeError, ValueError) as err:
                raise ValueError(f"attribute {name!r} cannot be stored ({err})") from err


def _check_extra_attrs(attrs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate the caller's extra attributes (no clash with the module's own)."""
    attrs = dict(attrs or {})
    clash = [k for k in attrs if k in RESERVED_ATTRS or f"{k}_json" in RESERVED_ATTRS]
    if clash:
        raise ValueError(f"attrs {clash} are reserved by lib.stages ({', '.join(RESERVED_ATTRS)})")
    bad = [k for k in attrs if not isinstance(k, str) or not k or k.endswith("_json")]
    if bad:
        raise ValueError(f"attribute names must be non-empty strings not ending in '_json' "
                         f"(that suffix marks JSON-encoded values), got {bad}")
    return attrs


def _tmp_name(final: Path) -> Path:
    """A fresh temporary path next to ``final``, tagged with host and pid, ending in ``.tmp``."""
    return final.with_name(f"{final.name}.{_HOST}-{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale_tmp(folder: Path, pattern: str) -> None:
    """Delete ``.tmp`` files matching glob ``pattern`` in ``folder`` left by dead processes.

    Temporary files of live processes (a concurrent writer) and of other hosts (a shared
    file system) are left alone; they are never read either way.
    """
    if not folder.is_dir():
        return
    for tmp in folder.glob(pattern):
        match = _TMP_RE.search(tmp.name)
        if match is None:
            stale = True  # not one of ours: an unparseable leftover
        else:
            pid = int(match["pid"])
            stale = match["host"] == _HOST and (pid == os.getpid() or not _pid_alive(pid))
        if stale:
            tmp.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    """Flush ``path``'s data to disk before it is renamed into place."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_h5(final: Path, fill: Callable[[h5py.File], None]) -> None:
    """Create ``final`` atomically: ``fill`` writes a temporary file that is then renamed."""
    tmp = _tmp_name(final)
    try:
        with h5py.File(tmp, "w-") as h5:
            fill(h5)
        _fsync(tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def _write_arrays(h5: h5py.File, arrays: Mapping[str, np.ndarray]) -> None:
    """Write each array as a dataset (gzip above ``COMPRESS_ABOVE_BYTES``)."""
    for name, arr in arrays.items():
        kwargs: dict[str, Any] = {}
        if arr.ndim >= 1 and arr.nbytes > COMPRESS_ABOVE_BYTES:
            kwargs = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
        h5.create_dataset(name, data=_h5_data(arr), dtype=_h5_dtype(arr), **kwargs)


def _stage_attrs_dict(name: str, key: str, params: Mapping[str, Any],
                      upstream: Sequence[str]) -> dict[str, Any]:
    """The attributes every stage file carries."""
    return {"stage": name, "key": key, "params_json": _canonical_json(dict(params)),
            "upstream_json": _canonical_json(sorted(upstream))}


class StageCacheWarning(UserWarning):
    """A cached stage file exists but cannot be used (truncated, unreadable, another key)."""


def _is_complete(path: Path, key: str) -> bool:
    """Whether ``path`` is a readable stage file with key ``key``.

    A file that exists but cannot be used is reported with a :class:`StageCacheWarning`
    (it is then recomputed and replaced), never skipped silently.
    """
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as h5:
            stored = _attr_value(h5.attrs.get("key"))
    except OSError as err:
        warnings.warn(f"stage file {path} is unreadable ({err.__class__.__name__}: "
                      f"{str(err).splitlines()[0][:120]}; truncated by a crash or a full disk?): "
                      f"recomputing it", StageCacheWarning, stacklevel=3)
        return False
    if stored != key:
        warnings.warn(f"stage file {path} holds key {stored!r}, not {key!r} (written by hand or "
                      f"half-written?): recomputing it", StageCacheWarning, stacklevel=3)
        return False
    return True


def _attr_value(value: Any) -> Any:
    """Plain-Python view of an HDF5 attribute value."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _read_dataset(ds: h5py.Dataset) -> np.ndarray:
    """A dataset as a numpy array, text as a ``str`` array."""
    if h5py.check_string_dtype(ds.dtype) is not None:
        return np.asarray(ds.asstr()[()], dtype=str)
    return np.asarray(ds[()])


def _require_file(path: Path | str) -> Path:
    """``path`` as a Path, or FileNotFoundError naming the missing stage output."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"stage output {path} does not exist; run the notebook that "
                                f"produces it (or pass the path returned by cached_stage)")
    return path


def load_stage(path: Path | str) -> dict[str, np.ndarray]:
    """Return every dataset of the stage file ``path`` as ``{name: array}`` (text as ``str``)."""
    path = _require_file(path)
    with h5py.File(path, "r") as h5:
        return {name: _read_dataset(ds) for name, ds in h5.items()
                if isinstance(ds, h5py.Dataset)}


def stage_attrs(path: Path | str) -> dict[str, Any]:
    """Return the attributes of stage file ``path``, JSON ones decoded.

    Keys: ``stage``, ``key``, ``params`` (dict), ``upstream`` (list of keys), ``n_items``
    (chunked stages) and the caller's extra ``attrs``.
    """
    path = _require_file(path)
    out: dict[str, Any] = {}
    with h5py.File(path, "r") as h5:
        for name, value in h5.attrs.items():
            value = _attr_value(value)
            if name.endswith("_json") and isinstance(value, str):
                out[name[: -len("_json")]] = json.loads(value)
            else:
                out[name] = value
    return out


def read_key(path: Path | str) -> str:
    """Return the stage key stored in ``path`` (pass it as ``upstream`` to dependent stages)."""
    key = stage_attrs(path).get("key")
    if not isinstance(key, str):
        raise ValueError(f"{path} is not a stage file (no 'key' attribute)")
    return key


# --------------------------------------------------------------------------------------------
# stages
# --------------------------------------------------------------------------------------------
def cached_stage(profile: str, name: str, params: Mapping[str, Any],
                 compute: Callable[[], Mapping[str, np.ndarray]],
                 upstream: Sequence[str] = (), attrs: Mapping[str, Any] | None = None) -> Path:
    """Return the path of stage ``name``'s file, computing it first if no complete one exists.

    ``compute()`` must return ``{dataset name: array}``; it is called only on a cache miss.
    Its arrays, the stage name, key, ``params``, ``upstream`` and the extra ``attrs`` are
    written atomically to :func:`stage_path`. An exception in ``compute`` propagates and
    leaves no file behind.
    """
    key = stage_key(name, params, upstream)
    final = stage_path(profile, name, key)
    extra = _check_extra_attrs(attrs)
    t0 = time.perf_counter()
    if _is_complete(final, key):
        _log_event(profile, name, key, "cached", time.perf_counter() - t0)
        return final
    _clean_stale_tmp(final.parent, f"{final.name}*.tmp")
    arrays = _as_arrays(compute(), f"compute() of stage {name!r}")

    def fill(h5: h5py.File) -> None:
        _write_arrays(h5, arrays)
        _write_attrs(h5, {**_stage_attrs_dict(name, key, params, upstream), **extra})

    _atomic_h5(final, fill)
    _log_event(profile, name, key, "run", time.perf_counter() - t0)
    return final


def _chunk_path(chunk_dir: Path, start: int, stop: int) -> Path:
    """Path of the chunk holding items ``start:stop``."""
    return chunk_dir / f"chunk_{start:07d}_{stop:07d}.h5"


def _chunk_signature(h5: h5py.File) -> dict[str, tuple[tuple[int, ...], str]]:
    """Per dataset: trailing shape and dtype (``"str"`` for text) of a chunk file."""
    sig = {}
    for name, ds in h5.items():
        text = h5py.check_string_dtype(ds.dtype) is not None
        sig[name] = (tuple(ds.shape[1:]), "str" if text else ds.dtype.str)
    return sig


def _array_signature(arrays: Mapping[str, np.ndarray]) -> dict[str, tuple[tuple[int, ...], str]]:
    """Per array: trailing shape and dtype (``"str"`` for text)."""
    return {name: (tuple(a.shape[1:]), "str" if a.dtype.kind == "U" else a.dtype.str)
            for name, a in arrays.items()}


def _scan_chunks(chunk_dir: Path, key: str, n_items: int) -> list[tuple[int, int, Path]]:
    """Complete, readable, non-overlapping chunk files already in ``chunk_dir``, by start.

    Unreadable chunk files (a disk fault: writes are atomic) are deleted so they are redone.
    """
    found = []
    for path in chunk_dir.glob("chunk_*.h5"):
        match = _CHUNK_RE.match(path.name)
        if match is None:
            continue
        start, stop = int(match[1]), int(match[2])
        if not 0 <= start < stop <= n_items:
            continue
        if not _is_complete(path, key):
            path.unlink(missing_ok=True)
            continue
        found.append((start, stop, path))
    found.sort()
    kept: list[tuple[int, int, Path]] = []
    for start, stop, path in found:
        if not kept or start >= kept[-1][1]:
            kept.append((start, stop, path))
    return kept


def _plan_chunks(n_items: int, chunk_size: int,
                 done: Sequence[tuple[int, int, Path]]) -> list[tuple[int, int]]:
    """Ranges still to compute: the gaps between finished chunks, cut into ``chunk_size`` pieces.

    >>> _plan_chunks(10, 4, [])
    [(0, 4), (4, 8), (8, 10)]
    >>> _plan_chunks(10, 4, [(4, 8, None)])
    [(0, 4), (8, 10)]
    """
    todo, cursor = [], 0
    for start, stop in [(s, e) for s, e, _ in done] + [(n_items, n_items)]:
        for lo in range(cursor, start, chunk_size):
            todo.append((lo, min(lo + chunk_size, start)))
        cursor = max(cursor, stop)
    return todo


def chunked_stage(profile: str, name: str, params: Mapping[str, Any], n_items: int,
                  compute_chunk: Callable[[int, int], Mapping[str, np.ndarray]],
                  chunk_size: int, upstream: Sequence[str] = (),
                  attrs: Mapping[str, Any] | None = None, progress: bool = True) -> Path:
    """Like :func:`cached_stage` for ``n_items`` independent items, computed and saved in chunks.

    ``compute_chunk(start, stop)`` returns arrays whose first dimension is ``stop - start``
    (items ``start:stop``). Each chunk is written atomically to
    ``data/<profile>/<name>-<key>.chunks/chunk_<start>_<stop>.h5``; a rerun skips chunks that
    exist, so an interrupted run resumes where it stopped. When all items are done, the chunks
    are concatenated along axis 0 into the stage file and the chunk folder is deleted.

    The key is ``stage_key(name, params, upstream)``: ``params`` must determine ``n_items``
    and the results. Results should not depend on ``chunk_size`` (derive per-item seeds
    from the item index), which may change between a run and its resumption.
    """
    if isinstance(n_items, bool) or not isinstance(n_items, (int, np.integer)) or n_items < 1:
        raise ValueError(f"n_items of stage {name!r} must be a positive integer, got {n_items!r}")
    if (isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer))
            or chunk_size < 1):
        raise ValueError(f"chunk_size of stage {name!r} must be a positive integer, "
                         f"got {chunk_size!r}")
    n_items, chunk_size = int(n_items), int(chunk_size)
    key = stage_key(name, params, upstream)
    final = stage_path(profile, name, key)
    extra = _check_extra_attrs(attrs)
    t0 = time.perf_counter()
    if _is_complete(final, key):
        stored = stage_attrs(final).get("n_items")
        if stored != n_items:
            raise ValueError(
                f"stage {name!r} [{key}] is cached with n_items={stored}, but n_items={n_items} "
                f"was asked for: put the number of items in params so that it changes the key")
        _log_event(profile, name, key, "cached", time.perf_counter() - t0)
        return final

    chunk_dir = final.with_name(f"{name}-{key}.chunks")
    chunk_dir.mkdir(exist_ok=True)
    _clean_stale_tmp(chunk_dir, "chunk_*.tmp")
    done = _scan_chunks(chunk_dir, key, n_items)
    signature = None
    if done:
        with h5py.File(done[0][2], "r") as h5:
            signature = _chunk_signature(h5)
    chunk_attrs = {"stage": name, "key": key}
    with tqdm(total=n_items, initial=sum(stop - start for start, stop, _ in done),
              desc=f"{name} [{key}]", unit="item", disable=not progress, dynamic_ncols=True) as bar:
        for start, stop in _plan_chunks(n_items, chunk_size, done):
            what = f"compute_chunk({start}, {stop}) of stage {name!r}"
            arrays = _as_arrays(compute_chunk(start, stop), what)
            for arr_name, arr in arrays.items():
                if arr.ndim == 0 or arr.shape[0] != stop - start:
                    raise ValueError(f"{what}: array {arr_name!r} has shape {arr.shape}; its "
                                     f"first dimension must be stop - start = {stop - start}")
            sig = _array_signature(arrays)
            if signature is None:
                signature = sig
            elif sig != signature:
                raise ValueError(f"{what} returned arrays {sig} (name: (trailing shape, dtype)) "
                                 f"unlike the earlier chunks' {signature}")

            def fill_chunk(h5: h5py.File, arrays: Mapping[str, np.ndarray] = arrays,
                           start: int = start, stop: int = stop) -> None:
                _write_arrays(h5, arrays)
                _write_attrs(h5, {**chunk_attrs, "start": start, "stop": stop})

            path = _chunk_path(chunk_dir, start, stop)
            _atomic_h5(path, fill_chunk)
            done.append((start, stop, path))
            bar.update(stop - start)
    done.sort()

    def fill_final(h5: h5py.File) -> None:
        with h5py.File(done[0][2], "r") as first:
            final_sig = _chunk_signature(first)
            dtypes = {n: first[n].dtype for n in first}
        for arr_name, (trailing, _) in final_sig.items():
            size = n_items * int(np.prod(trailing, dtype=np.int64)) * dtypes[arr_name].itemsize
            kwargs: dict[str, Any] = {}
            if size > COMPRESS_ABOVE_BYTES:
                kwargs = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
            h5.create_dataset(arr_name, shape=(n_items, *trailing), dtype=dtypes[arr_name],
                              **kwargs)
        for start, stop, path in done:
            with h5py.File(path, "r") as chunk:
                if _chunk_signature(chunk) != final_sig:
                    raise ValueError(f"chunk {path} of stage {name!r} holds arrays "
                                     f"{_chunk_signature(chunk)} unlike {final_sig}; delete "
                                     f"{chunk_dir} and rerun")
                for arr_name in final_sig:
                    h5[arr_name][start:stop] = _h5_data(_read_dataset(chunk[arr_name]))
        _write_attrs(h5, {**_stage_attrs_dict(name, key, params, upstream),
                          "n_items": n_items, **extra})

    _atomic_h5(final, fill_final)
    shutil.rmtree(chunk_dir, ignore_errors=True)
    _log_event(profile, name, key, "run", time.perf_counter() - t0)
    return final
