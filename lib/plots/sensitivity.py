"""The figures of notebook 07 (Part A, SPEC A6): reference | void map | |Δ| | Grad-RAM panels
like the paper's Figs. 7-8, the void map on two grids, and the agreement scores per category."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.figure
import numpy as np


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def plot_sensitivity_panels(images, void_maps, maps: Mapping[str, np.ndarray],
                            rows: Sequence[tuple[str, int]], scores: Mapping[str, Mapping[str, np.ndarray]] | None = None,
                            strain=None) -> "matplotlib.figure.Figure":
    """One row per ``(caption, index)`` of ``rows``: the structure (martensite black), its void
    map (FE grid) and each map of ``maps`` (``name -> (n, N, N)``), each drawn over the same
    cell; a map's title gives its Spearman ρ and top-10 % IoU with the void map when
    ``scores[name]`` (:func:`lib.explain.map_comparison.compare_maps` output) is given. Every
    panel has its own linear colour scale (void map 0 to its max, other maps min to max), as
    the suptitle says: the scores are rank-based, so only the pattern within a panel counts."""
    import matplotlib.pyplot as plt

    imgs, voids = np.asarray(images), np.asarray(void_maps, float)
    if not rows:
        raise ValueError("no references to draw")
    names = list(maps)
    n_cols = 2 + len(names)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(2.05 * n_cols, 2.15 * len(rows) + 0.5),
                             squeeze=False)
    ext = (0, 1, 0, 1)
    for r, (caption, i) in enumerate(rows):
        ax = axes[r, 0]
        ax.imshow(imgs[i], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest", extent=ext)
        fs = "" if strain is None else f", ε_f {strain[i]:.3f}"
        ax.set_title(f"f_M {imgs[i].mean():.2f}{fs}", fontsize=7)
        ax.set_ylabel(caption, fontsize=8)
        ax = axes[r, 1]
        ax.imshow(voids[i], cmap="inferno", vmin=0, vmax=max(float(voids[i].max()), 1e-9),
                  interpolation="nearest", extent=ext)
        ax.set_title(f"void map {voids.shape[1]}² (max {voids[i].max():.2g})", fontsize=7)
        for c, name in enumerate(names):
            ax = axes[r, 2 + c]
            m = np.asarray(maps[name][i], float)
            ax.imshow(m, cmap="viridis", vmin=float(m.min()), vmax=max(float(m.max()), float(m.min()) + 1e-12),
                      interpolation="nearest", extent=ext)
            title = name
            if scores is not None and name in scores:
                title += f"\nρ {scores[name]['spearman'][i]:+.2f}, IoU {scores[name]['iou'][i]:.2f}"
            ax.set_title(title, fontsize=7)
        for a in axes[r]:
            _bare(a)
    fig.suptitle("Reference | GTN void map at the load drop | explanation maps (load along x; "
                 "bright = high)\nevery panel on its own colour scale: a void map from 0 to the "
                 "max in its title, an explanation map from its min to its max", fontsize=9)
    fig.tight_layout()
    return fig


def plot_void_grids(image, maps: Sequence[tuple[str, np.ndarray]]) -> "matplotlib.figure.Figure":
    """One structure beside its void maps on several FE grids (``(title, (g, g) map)`` each)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(maps), figsize=(2.4 * (1 + len(maps)), 2.6))
    axes[0].imshow(np.asarray(image), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    axes[0].set_title("structure (128²)", fontsize=8)
    for ax, (title, m) in zip(axes[1:], maps):
        m = np.asarray(m, float)
        ax.imshow(m, cmap="inferno", vmin=0, vmax=max(float(m.max()), 1e-9),
                  interpolation="nearest", extent=(0, 1, 0, 1))
        ax.set_title(title, fontsize=8)
    for ax in axes:
        _bare(ax)
    fig.tight_layout()
    return fig


def plot_score_distributions(scores: Mapping[str, Mapping[str, np.ndarray]], category,
                             category_names: Sequence[str]) -> "matplotlib.figure.Figure":
    """Spearman ρ and top-10 % IoU with the void map, per category (x) and method (colour):
    mean ± sd bars with the single references as dots; the dashed line is chance IoU."""
    import matplotlib.pyplot as plt

    category = np.asarray(category)
    methods = list(scores)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    width = 0.8 / len(methods)
    colours = plt.cm.tab10(np.arange(len(methods)))
    for ax, key, label in ((axes[0], "spearman", "Spearman ρ with the void map"),
                           (axes[1], "iou", "IoU of the top-10 % hot spots")):
        for k, m in enumerate(methods):
            vals = np.asarray(scores[m][key])
            for c, _ in enumerate(category_names):
                v = vals[category == c]
                if not v.size:
                    continue
                x = c + (k - (len(methods) - 1) / 2) * width
                ax.bar(x, v.mean(), width * 0.9, color=colours[k], alpha=0.55,
                       label=m if c == 0 else None)
                ax.errorbar(x, v.mean(), v.std(), color="k", lw=0.8, capsize=1.5)
                ax.plot(np.full(v.size, x), v, ".", color=colours[k], ms=2.5)
        ax.set_xticks(range(len(category_names)), category_names)
        ax.set_ylabel(label)
        ax.axhline(0, color="k", lw=0.5)
        if key == "iou":
            ax.axhline(0.1 / 1.9, color="k", lw=0.8, ls="--")
    axes[0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
