"""The one place figures are saved, and the helpers both parts of the study draw with:
:func:`save_figure` writes ``results/<profile>/figures/<name>.png`` atomically, and the private
helpers turn category codes into names, check image stacks and draw the one-row-per-category
example grids that Part A (dual-phase) and Part B (stochastic) microstructures share."""
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
        os.chmod(tmp, 0o644)  # mkstemp makes files private; figures are for everyone
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


# --------------------------------------------------------------------------------------------
# Shared by Parts A and B: category names, image checks, example grids
# --------------------------------------------------------------------------------------------
def _category_names(categories, n: int, known: tuple[str, ...], what: str) -> list[str]:
    """Category names from int codes (index into ``known``) or strings, checked against ``known``."""
    import numpy as np

    cats = np.asarray(categories)
    if cats.shape != (n,):
        raise ValueError(f"categories must have shape ({n},) to match the data, got {cats.shape}")
    if cats.dtype.kind in "iu":
        if cats.size and (cats.min() < 0 or cats.max() >= len(known)):
            raise ValueError(f"category codes must lie in [0, {len(known) - 1}]")
        return [known[int(c)] for c in cats]
    names = [c.decode() if isinstance(c, bytes) else str(c) for c in cats]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown {what} categories {unknown}: expected {known}")
    return names


def _example_grid(images, names: list[str], known: tuple[str, ...], n_per_category: int, cmap: str,
                  titles, suptitle: str) -> "matplotlib.figure.Figure":
    """One row per category of ``known`` present in ``names``: its first ``n_per_category`` images."""
    import matplotlib.pyplot as plt

    rows = [c for c in known if c in names]
    if not rows:
        raise ValueError("no images to draw")
    fig, axes = plt.subplots(len(rows), n_per_category,
                             figsize=(1.6 * n_per_category + 0.9, 1.75 * len(rows)), squeeze=False)
    for r, cat in enumerate(rows):
        idx = [i for i, c in enumerate(names) if c == cat][:n_per_category]
        for c in range(n_per_category):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(idx):
                ax.imshow(images[idx[c]], cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
                ax.set_title(titles[idx[c]], fontsize=8)
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(cat, fontsize=10)
    fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def _check_images(images, n_per_category: int):
    import numpy as np

    imgs = np.asarray(images)
    if imgs.ndim != 3:
        raise ValueError(f"images must have shape (n, N, N), got {imgs.shape}")
    if n_per_category < 1:
        raise ValueError(f"n_per_category must be >= 1, got {n_per_category}")
    return imgs
