"""Where the study reads and writes: data (stage caches) and results (executed notebooks, figures).

Both roots can be moved with environment variables, which is how ``run_all.py`` and the tests
send a run somewhere else: ``STUDY_DATA_DIR`` (default ``<repo>/data``) and
``STUDY_RESULTS_DIR`` (default ``<repo>/results``).
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    """Root of the stage caches (HDF5), ``$STUDY_DATA_DIR`` or ``<repo>/data``."""
    return Path(os.environ.get("STUDY_DATA_DIR", REPO_ROOT / "data"))


def results_root() -> Path:
    """Root of executed notebooks and figures, ``$STUDY_RESULTS_DIR`` or ``<repo>/results``."""
    return Path(os.environ.get("STUDY_RESULTS_DIR", REPO_ROOT / "results"))


def data_dir(profile: str) -> Path:
    """``data/<profile>/``, created if missing."""
    path = data_root() / profile
    path.mkdir(parents=True, exist_ok=True)
    return path


def figures_dir(profile: str) -> Path:
    """``results/<profile>/figures/``, created if missing."""
    path = results_root() / profile / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path
