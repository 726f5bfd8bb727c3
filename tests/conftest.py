"""Shared test setup: repository root on sys.path, headless matplotlib, throwaway study folders."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

matplotlib.use("Agg")


@pytest.fixture
def tmp_study_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Point STUDY_DATA_DIR / STUDY_RESULTS_DIR at fresh folders under ``tmp_path``.

    Returns ``{"data": ..., "results": ...}``. STUDY_NOTEBOOK is cleared so stage events
    carry ``notebook: null`` unless a test sets it.
    """
    dirs = {"data": tmp_path / "data", "results": tmp_path / "results"}
    for path in dirs.values():
        path.mkdir()
    monkeypatch.setenv("STUDY_DATA_DIR", str(dirs["data"]))
    monkeypatch.setenv("STUDY_RESULTS_DIR", str(dirs["results"]))
    monkeypatch.delenv("STUDY_NOTEBOOK", raising=False)
    return dirs


#: generous: a cold smoke run takes about 7.5 minutes on 2 cores (README)
SMOKE_TIMEOUT_S = 30 * 60


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The whole study run once per test session under the smoke profile, in throwaway folders.

    Returns ``{"proc": CompletedProcess, "results": Path, "data": Path}`` (``results`` and
    ``data`` are the roots given to ``run_all.py --results-dir / --data-dir``). Shared by the
    smoke test (its outputs) and the browser test (notebook 04's cached stages).
    ``STUDY_TEST_SMOKE_ROOT``: reuse (and top up) an earlier smoke run's ``results``/``data``
    under that folder instead of a fresh one (for working on one test; CI never sets it).
    """
    reuse = os.environ.get("STUDY_TEST_SMOKE_ROOT")
    root = Path(reuse) if reuse else tmp_path_factory.mktemp("smoke_study")
    results, data = root / "results", root / "data"
    if reuse and (results / "smoke" / "notebooks").is_dir():
        return {"proc": subprocess.CompletedProcess([], 0, "", ""), "results": results,
                "data": data}
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env.pop("STUDY_DASK_SCHEDULER", None)
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "run_all.py"), "--profile", "smoke",
         "--notebooks-dir", str(REPO_ROOT / "notebooks"), "--results-dir", str(results),
         "--data-dir", str(data)],
        capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S, env=env, cwd=REPO_ROOT)
    return {"proc": proc, "results": results, "data": data}
