"""FE labelling on a Dask cluster: the same labels as on this machine, bit for bit; a killed
worker loses no finished chunk; a bad or unreachable scheduler fails fast with a clear error."""
from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lib import cluster
from lib.fe.fracture_labels import label_structures
from lib.fe.labeling import label_images
from lib.microstructures.dual_phase import generate_dual_phase
from lib.stages import chunked_stage, load_stage

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def local_cluster():
    """A 2-worker, 1-thread-each cluster on loopback (worker processes behind nannies)."""
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=40) as lc:
        yield lc


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stochastic_like(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth random two-phase images (n, size, size) uint8 with fractions near 0.4."""
    rng = np.random.default_rng(seed)
    field = rng.normal(size=(n, size, size))
    for axis in (1, 2):  # periodic smoothing
        field = sum(np.roll(field, k, axis=axis) for k in range(-2, 3))
    return (field > np.quantile(field, 0.6, axis=(1, 2), keepdims=True)).astype(np.uint8)


@pytest.mark.parametrize("bad", ["localhost:8786", "http://x:1", "tcp://", "tcp://a b:1", ""])
def test_bad_addresses_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="tcp://HOST:PORT"):
        cluster.check_address(bad)


def test_address_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cluster.SCHEDULER_ENV, raising=False)
    assert cluster.scheduler_address(None) is None
    monkeypatch.setenv(cluster.SCHEDULER_ENV, "tcp://10.1.2.3:8786")
    assert cluster.scheduler_address(None) == "tcp://10.1.2.3:8786"
    assert cluster.scheduler_address("tcp://h:1") == "tcp://h:1"


def test_unreachable_scheduler_fails_within_seconds() -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match=f"cannot reach the Dask scheduler at {address}"):
        cluster.connect(address, timeout=2)
    assert time.monotonic() - t0 < 10
    with pytest.raises(ConnectionError, match="cannot reach"):
        label_images(_stochastic_like(2, 16), scheduler_address=address)  # via the env path too


def test_homogenization_labels_equal_the_local_ones(local_cluster) -> None:
    images = _stochastic_like(12, 32)
    local = label_images(images, n_jobs=1)
    remote = label_images(images, scheduler_address=local_cluster.scheduler_address)
    assert local.keys() == remote.keys()
    for key in local:
        np.testing.assert_array_equal(remote[key], local[key], err_msg=key)


def test_gtn_labels_equal_the_local_ones(local_cluster) -> None:
    images = np.stack([generate_dual_phase(c, 5, 32)[0]
                       for c in ("laminated", "rectangle", "ellipse")])
    local = label_structures(images, 8, n_jobs=1)
    remote = label_structures(images, 8, scheduler_address=local_cluster.scheduler_address)
    assert local.keys() == remote.keys()
    for key in (k for k in local if not k.startswith("seconds")):  # timings may differ
        np.testing.assert_array_equal(remote[key], local[key], err_msg=key)
    assert np.isfinite(local["load_drop_strain"]).all()  # real labels, not three failed runs


def test_killed_worker_loses_no_finished_chunk(local_cluster, tmp_study_dirs) -> None:
    """A worker SIGKILLed in the middle of chunk 2: chunk 1 stays on disk untouched, the stage
    completes (the scheduler reruns the lost tasks), and the labels equal the local ones."""
    from dask.distributed import Client

    images = _stochastic_like(24, 64, seed=3)
    address = local_cluster.scheduler_address
    with Client(address) as client:
        pids = client.run(os.getpid)
    victim = next(iter(pids.values()))
    seen: list[dict[str, int]] = []
    chunk_dir = Path(tmp_study_dirs["data"]) / "smoke"

    def compute(a: int, b: int) -> dict[str, np.ndarray]:
        seen.append({p.name: p.stat().st_mtime_ns for p in chunk_dir.glob("*.chunks/chunk_*.h5")})
        if a == 8:  # chunk 2: kill one worker once its tasks are running
            threading.Timer(0.3, os.kill, (victim, signal.SIGKILL)).start()
        return label_images(images[a:b], ["boron_aluminium"], scheduler_address=address)

    path = chunked_stage("smoke", "cluster_demo", {"n": 24}, 24, compute, chunk_size=8,
                         progress=False)
    assert len(seen) == 3
    assert seen[1] == {k: v for k, v in seen[2].items() if k in seen[1]} and len(seen[1]) == 1
    assert len(seen[2]) == 2  # chunk 2 was finished and written despite the lost worker
    with pytest.raises(ProcessLookupError):
        os.kill(victim, 0)  # the victim really died
    got = load_stage(path)
    want = label_images(images, ["boron_aluminium"], n_jobs=1)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
