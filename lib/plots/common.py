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


def _integer_axis(ax, axis: str = "y") -> None:
    """Integer-only ticks on ``ax``'s ``axis`` (``"x"``, ``"y"`` or ``"both"``): for axes that
    count samples, structures or epochs, which get ticks such as 0.5 or 2.5 when the counts
    are small (the smoke profile)."""
    from matplotlib.ticker import MaxNLocator

    for name in ("x", "y") if axis == "both" else (axis,):
        # nbins and steps of matplotlib's default AutoLocator, so large counts keep round ticks
        getattr(ax, f"{name}axis").set_major_locator(
            MaxNLocator(nbins="auto", steps=[1, 2, 2.5, 5, 10], integer=True))


def _colorbar_beside(fig, top_ax, bottom_ax, mappable, label: str, pad: float = 0.015,
                     width: float = 0.02, **colorbar_kwargs):
    """A vertical colorbar right of the column that runs from ``top_ax`` to ``bottom_ax``
    (call after ``fig.tight_layout(rect=...)`` has left room on the right), labelled;
    ``colorbar_kwargs`` go to ``fig.colorbar`` (e.g. ``extend``)."""
    for a in (top_ax, bottom_ax):
        a.apply_aspect()  # the drawn box (square images), not the slot the layout gave it
    top, bottom = top_ax.get_position(), bottom_ax.get_position()
    cax = fig.add_axes((top.x1 + pad, bottom.y0, width, top.y1 - bottom.y0))
    cbar = fig.colorbar(mappable, cax=cax, **colorbar_kwargs)
    cbar.set_label(label, fontsize=8)
    cbar.ax.tick_params(labelsize=7)
    return cbar


#: inches under the image rows that :func:`_colorbar_below` needs (bar, ticks and label)
_BELOW_INCHES = 0.85


def _colorbar_below(fig, left_ax, right_ax, mappable, label: str, **colorbar_kwargs):
    """A horizontal colorbar under the bottom-row axes ``left_ax`` ... ``right_ax`` (call
    after ``fig.tight_layout(rect=(0, _BELOW_INCHES / height, 1, 1))``), labelled."""
    for a in (left_ax, right_ax):
        a.apply_aspect()  # the drawn (square) boxes
    left, right = left_ax.get_position(), right_ax.get_position()
    height_in = fig.get_size_inches()[1]
    y0 = left.y0 - 0.22 / height_in - 0.12 / height_in
    cax = fig.add_axes((left.x0, y0, right.x1 - left.x0, 0.12 / height_in))
    cbar = fig.colorbar(mappable, cax=cax, orientation="horizontal", **colorbar_kwargs)
    cbar.set_label(label, fontsize=8)
    cbar.ax.tick_params(labelsize=7)
    return cbar
