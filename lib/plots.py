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
        os.chmod(tmp, 0o644)  # mkstemp makes files private; figures are for everyone
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


# --------------------------------------------------------------------------------------------
# Part A: dual-phase microstructures (SPEC A1)
# --------------------------------------------------------------------------------------------
def _dual_phase_category_names(categories, n: int) -> list[str]:
    """Category names from int codes (index into DUAL_PHASE_CATEGORIES) or strings."""
    import numpy as np

    from lib.microstructures.dual_phase import DUAL_PHASE_CATEGORIES

    cats = np.asarray(categories)
    if cats.shape != (n,):
        raise ValueError(f"categories must have shape ({n},) to match the data, got {cats.shape}")
    if cats.dtype.kind in "iu":
        if cats.size and (cats.min() < 0 or cats.max() >= len(DUAL_PHASE_CATEGORIES)):
            raise ValueError(f"category codes must lie in [0, {len(DUAL_PHASE_CATEGORIES) - 1}]")
        return [DUAL_PHASE_CATEGORIES[int(c)] for c in cats]
    names = [c.decode() if isinstance(c, bytes) else str(c) for c in cats]
    unknown = sorted(set(names) - set(DUAL_PHASE_CATEGORIES))
    if unknown:
        raise ValueError(f"unknown dual-phase categories {unknown}: expected {DUAL_PHASE_CATEGORIES}")
    return names


def plot_dual_phase_examples(images, categories, n_per_category: int = 6,
                             fractions=None) -> "matplotlib.figure.Figure":
    """Grid of dual-phase microstructures: one row per category, martensite black, ferrite white.

    ``images`` (n, N, N) with 1 = martensite; ``categories`` (n,) codes or names; the first
    ``n_per_category`` images of each category are drawn, each titled with its martensite
    fraction (``fractions`` if given, else the image mean).
    """
    import matplotlib.pyplot as plt
    import numpy as np

    from lib.microstructures.dual_phase import DUAL_PHASE_CATEGORIES

    imgs = np.asarray(images)
    if imgs.ndim != 3:
        raise ValueError(f"images must have shape (n, N, N), got {imgs.shape}")
    if n_per_category < 1:
        raise ValueError(f"n_per_category must be >= 1, got {n_per_category}")
    names = _dual_phase_category_names(categories, len(imgs))
    frac = imgs.reshape(len(imgs), -1).mean(axis=1) if fractions is None else np.asarray(fractions)
    rows = [c for c in DUAL_PHASE_CATEGORIES if c in names]
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
                ax.imshow(imgs[idx[c]], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
                ax.set_title(f"$f_M$ = {frac[idx[c]]:.2f}", fontsize=8)
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(cat, fontsize=10)
    fig.suptitle("Artificial dual-phase microstructures (black = martensite, white = ferrite)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def plot_martensite_fraction_distribution(fraction, categories) -> "matplotlib.figure.Figure":
    """Histogram of the martensite fraction, one outline per category plus the total."""
    import matplotlib.pyplot as plt
    import numpy as np

    from lib.microstructures.dual_phase import DUAL_PHASE_CATEGORIES

    frac = np.asarray(fraction, dtype=float)
    if frac.ndim != 1 or frac.size == 0:
        raise ValueError(f"fraction must be a non-empty 1D array, got shape {frac.shape}")
    if not np.isfinite(frac).all():
        raise ValueError("fraction contains NaN or inf")
    names = np.array(_dual_phase_category_names(categories, frac.size))
    # bins of 4/128: laminate fractions come in steps of 1/N, so other widths alias
    width = 1.0 / 32.0
    bins = np.arange(0.0, max(0.7, float(frac.max())) + 2 * width, width) - 1.0 / 256.0
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    ax.hist(frac, bins=bins, color="0.85", label=f"all (n = {frac.size})")
    for cat in DUAL_PHASE_CATEGORIES:
        sel = names == cat
        if sel.any():
            ax.hist(frac[sel], bins=bins, histtype="step", linewidth=1.5,
                    label=f"{cat} (n = {int(sel.sum())})")
    ax.set_xlabel("martensite area fraction")
    ax.set_ylabel("number of microstructures")
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Part B: stochastic microstructures (SPEC B1)
# --------------------------------------------------------------------------------------------
def _stochastic_category_names(categories, n: int) -> list[str]:
    """Category names from int codes (index into STOCHASTIC_CATEGORIES) or strings."""
    import numpy as np

    from lib.profiles import STOCHASTIC_CATEGORIES

    cats = np.asarray(categories)
    if cats.shape != (n,):
        raise ValueError(f"categories must have shape ({n},) to match the data, got {cats.shape}")
    if cats.dtype.kind in "iu":
        if cats.size and (cats.min() < 0 or cats.max() >= len(STOCHASTIC_CATEGORIES)):
            raise ValueError(f"category codes must lie in [0, {len(STOCHASTIC_CATEGORIES) - 1}]")
        return [STOCHASTIC_CATEGORIES[int(c)] for c in cats]
    names = [c.decode() if isinstance(c, bytes) else str(c) for c in cats]
    unknown = sorted(set(names) - set(STOCHASTIC_CATEGORIES))
    if unknown:
        raise ValueError(f"unknown stochastic categories {unknown}: expected {STOCHASTIC_CATEGORIES}")
    return names


def plot_stochastic_examples(images, categories, n_per_category: int = 6
                             ) -> "matplotlib.figure.Figure":
    """Grid of stochastic microstructures like the paper's Fig. 2: one row per category.

    ``images`` (n, N, N) with 1 = white phase (drawn white, the other phase black);
    ``categories`` (n,) codes or names. The first ``n_per_category`` images of each category
    are drawn, each titled with its white fraction.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    from lib.profiles import STOCHASTIC_CATEGORIES

    imgs = np.asarray(images)
    if imgs.ndim != 3:
        raise ValueError(f"images must have shape (n, N, N), got {imgs.shape}")
    if n_per_category < 1:
        raise ValueError(f"n_per_category must be >= 1, got {n_per_category}")
    names = _stochastic_category_names(categories, len(imgs))
    rows = [c for c in STOCHASTIC_CATEGORIES if c in names]
    if not rows:
        raise ValueError("no images to draw")
    frac = imgs.reshape(len(imgs), -1).mean(axis=1)
    fig, axes = plt.subplots(len(rows), n_per_category,
                             figsize=(1.6 * n_per_category + 0.9, 1.75 * len(rows)), squeeze=False)
    for r, cat in enumerate(rows):
        idx = [i for i, c in enumerate(names) if c == cat][:n_per_category]
        for c in range(n_per_category):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(idx):
                ax.imshow(imgs[idx[c]], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                ax.set_title(f"white {frac[idx[c]]:.3f}", fontsize=8)
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(cat, fontsize=10)
    fig.suptitle("Stochastic microstructures (white phase white)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_fraction_distribution(white_fraction, categories, window=(0.38, 0.41)
                               ) -> "matplotlib.figure.Figure":
    """Histograms of the white fraction, one panel per category, ``window`` marked."""
    import matplotlib.pyplot as plt
    import numpy as np

    from lib.profiles import STOCHASTIC_CATEGORIES

    frac = np.asarray(white_fraction, dtype=float)
    if frac.ndim != 1 or frac.size == 0:
        raise ValueError(f"white_fraction must be a non-empty 1D array, got shape {frac.shape}")
    if not np.isfinite(frac).all():
        raise ValueError("white_fraction contains NaN or inf")
    names = np.array(_stochastic_category_names(categories, frac.size))
    lo, hi = window
    pad = 0.25 * (hi - lo)
    bins = np.linspace(min(lo, frac.min()) - pad, max(hi, frac.max()) + pad, 31)
    fig, axes = plt.subplots(1, len(STOCHASTIC_CATEGORIES), figsize=(10.0, 2.6), sharey=True)
    for ax, cat in zip(axes, STOCHASTIC_CATEGORIES):
        sel = names == cat
        ax.hist(frac[sel], bins=bins, color="0.45")
        for edge in window:
            ax.axvline(edge, color="tab:red", linestyle="--", linewidth=1)
        ax.set_title(f"{cat} (n = {int(sel.sum())})", fontsize=9)
        ax.set_xlabel("white fraction")
    axes[0].set_ylabel("number of samples")
    fig.suptitle(f"White-phase fraction per category (dashed: window {lo}-{hi})", fontsize=10)
    fig.tight_layout()
    return fig


# --- Part B: homogenized properties (SPEC B2) -------------------------------------------------
_CASE_LABELS = {  # dataset key: (axis label, scale to display units)
    "boron_aluminium_Ex": ("Case 1: $E_x$ (GPa)", 1e-3),
    "boron_aluminium_Ey": ("Case 1: $E_y$ (GPa)", 1e-3),
    "boron_aluminium_nu_xy": (r"Case 2: $\nu_{xy}$", 1.0),
    "boron_aluminium_nu_yx": (r"Case 2: $\nu_{yx}$", 1.0),
    "aluminium_foam_Ex": ("Case 3: $E_x$ (GPa)", 1e-3),
    "aluminium_foam_Ey": ("Case 3: $E_y$ (GPa)", 1e-3),
    "aluminium_foam_alpha_x": (r"Case 3: $\alpha_x$ ($10^{-6}$/K)", 1e6),
    "aluminium_foam_alpha_y": (r"Case 3: $\alpha_y$ ($10^{-6}$/K)", 1e6),
}


def plot_property_distributions(labels, category, category_names) -> matplotlib.figure.Figure:
    """Histograms of the eight homogenized properties, one step curve per category."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(2, 4, figsize=(15, 6.5))
    for ax, (key, (label, scale)) in zip(axes.ravel(), _CASE_LABELS.items()):
        values = np.asarray(labels[key]) * scale
        log_scale = key.startswith("aluminium_foam_E") and values.min() > 0  # spans decades
        if np.ptp(values) == 0:
            bins = 10
        elif log_scale:
            bins = np.geomspace(values.min(), values.max(), 31)
            ax.set_xscale("log")
        else:
            bins = np.linspace(values.min(), values.max(), 31)
        for code, name in enumerate(category_names):
            ax.hist(values[np.asarray(category) == code], bins=bins, histtype="step", lw=1.5, label=name)
        ax.set_xlabel(label)
    axes[0, 0].set_ylabel("samples")
    axes[1, 0].set_ylabel("samples")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Homogenized properties per category (periodic, plane stress)")
    fig.tight_layout()
    return fig


def plot_property_scatters(labels, category, category_names) -> matplotlib.figure.Figure:
    """The axes of the paper's Fig. 6: Ex vs Ey (Case 1), nu_xy vs nu_yx (Case 2), alpha_x vs alpha_y (Case 3)."""
    import matplotlib.pyplot as plt
    import numpy as np

    pairs = [("boron_aluminium_Ex", "boron_aluminium_Ey"), ("boron_aluminium_nu_xy", "boron_aluminium_nu_yx"),
             ("aluminium_foam_alpha_x", "aluminium_foam_alpha_y")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    for ax, (kx, ky) in zip(axes, pairs):
        (lx, sx), (ly, sy) = _CASE_LABELS[kx], _CASE_LABELS[ky]
        x, y = np.asarray(labels[kx]) * sx, np.asarray(labels[ky]) * sy
        for code, name in enumerate(category_names):
            rows = np.asarray(category) == code
            ax.scatter(x[rows], y[rows], s=6, alpha=0.6, label=name)
        lo, hi = min(x.min(), y.min()), max(x.max(), y.max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel(lx)
        ax.set_ylabel(ly)
        ax.set_aspect("equal", adjustable="datalim")
    axes[0].legend(fontsize=8, markerscale=2)
    fig.tight_layout()
    return fig


def plot_expansion_vs_stiffness(labels, category, category_names) -> matplotlib.figure.Figure:
    """Case 3: worst-direction expansion max(alpha_x, alpha_y) against min(Ex, Ey) (log scale)."""
    import matplotlib.pyplot as plt
    import numpy as np

    alpha = np.maximum(labels["aluminium_foam_alpha_x"], labels["aluminium_foam_alpha_y"]) * 1e6
    stiffness = np.minimum(labels["aluminium_foam_Ex"], labels["aluminium_foam_Ey"]) * 1e-3
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    for code, name in enumerate(category_names):
        rows = np.asarray(category) == code
        ax.scatter(stiffness[rows], alpha[rows], s=6, alpha=0.6, label=name)
    ax.set_xscale("log")
    ax.axhline(23.6, color="k", ls="--", lw=0.8)
    ax.text(ax.get_xlim()[0], 23.6, r" $\alpha_{Al}$", va="bottom")
    ax.set_xlabel(r"Case 3: min($E_x$, $E_y$) (GPa)")
    ax.set_ylabel(r"Case 3: max($\alpha_x$, $\alpha_y$) ($10^{-6}$/K)")
    ax.legend(fontsize=8, markerscale=2)
    fig.tight_layout()
    return fig
