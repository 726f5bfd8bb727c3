"""Figures of the study, drawn the papers' way, and the one place figures are saved."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib.figure

from lib.paths import figures_dir


def save_figure(fig: "matplotlib.figure.Figure", name: str, profile: str, dpi: int = 120) -> Path:
    """Save ``fig`` atomically as ``results/<profile>/figures/<name>.png`` and return the path.

    ``name`` is a file stem such as ``"01_stochastic_examples"`` (no extension, no folders).
    """
    if not name or "/" in name or name.endswith(".png"):
        raise ValueError(f"figure name must be a bare file stem, got {name!r}")
    out = figures_dir(profile) / f"{name}.png"
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".png.tmp")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
