"""Shared test setup: repository root on sys.path, headless matplotlib, throwaway study folders."""
from __future__ import annotations

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
