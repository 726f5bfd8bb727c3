"""The figures of notebook 09 (Part B, SPEC B6): the TO optimum beside the best XAI design and
database sample (cells tiled 2x2), convergence histories per start, and the paper's Fig. 6
scatter with the TO optimum and the analytic limits drawn in."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.figure
import numpy as np

from lib.plots.common import _integer_axis

_SCALE = {"case1": (1e-3, "GPa"), "case2": (1.0, ""), "case3": (1e6, "1e-6/K")}
_UNIT_TEXT = {"GPa": " (GPa)", "": "", "1e-6/K": r" ($10^{-6}$/K)"}  # axis-label suffixes


def plot_to_cells(rows: Mapping[str, Sequence[tuple[str, np.ndarray]]]) -> "matplotlib.figure.Figure":
    """One row per case, one ``(title, binary cell)`` per column, each tiled 2x2 so that the
    periodic structure shows (white phase white)."""
    import matplotlib.pyplot as plt

    n_cols = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(2.6 * n_cols, 2.8 * len(rows)), squeeze=False)
    for r, (case, cells) in enumerate(rows.items()):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(cells):
                ax.axis("off")
                continue
            title, img = cells[c]
            ax.imshow(np.tile(np.asarray(img), (2, 2)), cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_title(title, fontsize=7)
        axes[r, 0].set_ylabel(case, fontsize=9)
    fig.suptitle("Cells tiled 2×2 (white = the white phase)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_to_histories(histories: Mapping[str, Mapping[str, np.ndarray]]) -> "matplotlib.figure.Figure":
    """Objective (the weaker direction, labels' units) per iteration, one panel per case, one
    line per start."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(histories), figsize=(4.2 * len(histories), 3.2), squeeze=False)
    for ax, (case, by_start) in zip(axes[0], histories.items()):
        s, unit = _SCALE[case]
        for start, obj in by_start.items():
            ax.plot(np.arange(1, len(obj) + 1), np.asarray(obj) * s, label=start, lw=1.2)
        ax.set_title(case, fontsize=9)
        ax.set_xlabel("MMA iteration")
        _integer_axis(ax, "x")
        ax.set_ylabel(f"objective{_UNIT_TEXT[unit]}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_to_scatter(cases: Mapping[str, Mapping[str, object]]) -> "matplotlib.figure.Figure":
    """Per case: database (X, Y) in grey, the best XAI design (red), the TO optimum (blue star)
    and the limits as dashed lines (a value on both axes). ``cases[case]`` holds ``database
    (n, 2)``, ``xai (2,)``, ``to (2,)``, ``limits {name: value}`` and ``labels (x, y)``."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(cases), figsize=(4.3 * len(cases), 4.0), squeeze=False)
    for ax, (case, d) in zip(axes[0], cases.items()):
        s, unit = _SCALE[case]
        db = np.asarray(d["database"]) * s
        ax.scatter(db[:, 0], db[:, 1], s=3, c="0.6", label="database")
        if d.get("xai") is not None and np.all(np.isfinite(d["xai"])):
            ax.scatter(*(np.asarray(d["xai"]) * s), s=40, c="tab:red", label="best XAI design")
        ax.scatter(*(np.asarray(d["to"]) * s), s=120, c="tab:blue", marker="*", label="TO optimum")
        for k, (name, v) in enumerate(d["limits"].items()):
            style = dict(color=f"C{k + 2}", ls="--", lw=1)
            ax.axvline(v * s, **style, label=name)
            ax.axhline(v * s, **style)
        lx, ly = d["labels"]
        ax.set_xlabel(f"{lx}{_UNIT_TEXT[unit]}")
        ax.set_ylabel(f"{ly}{_UNIT_TEXT[unit]}")
        ax.set_title(case, fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig
