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

    imgs = _check_images(images, n_per_category)
    names = _category_names(categories, len(imgs), DUAL_PHASE_CATEGORIES, "dual-phase")
    frac = imgs.reshape(len(imgs), -1).mean(axis=1) if fractions is None else np.asarray(fractions)
    return _example_grid(imgs, names, DUAL_PHASE_CATEGORIES, n_per_category, "gray_r",
                         [f"$f_M$ = {f:.2f}" for f in frac],
                         "Artificial dual-phase microstructures (black = martensite, white = ferrite)")


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
    names = np.array(_category_names(categories, frac.size, DUAL_PHASE_CATEGORIES, "dual-phase"))
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

    imgs = _check_images(images, n_per_category)
    names = _category_names(categories, len(imgs), STOCHASTIC_CATEGORIES, "stochastic")
    frac = imgs.reshape(len(imgs), -1).mean(axis=1)
    return _example_grid(imgs, names, STOCHASTIC_CATEGORIES, n_per_category, "gray",
                         [f"white {f:.3f}" for f in frac], "Stochastic microstructures (white phase white)")


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
    names = np.array(_category_names(categories, frac.size, STOCHASTIC_CATEGORIES, "stochastic"))
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


# --- Part B: ResNet-18 regressors and Grad-RAM (SPEC B3, B4; notebook 06) --------------------
def _case_axis_label(case, j: int) -> str:
    """Axis label of output ``j`` of a ``lib.models.training.PropertyCase`` in display units."""
    names = {"Ex": "$E_x$", "Ey": "$E_y$", "nu_xy": r"$\nu_{xy}$", "nu_yx": r"$\nu_{yx}$",
             "alpha_x": r"$\alpha_x$", "alpha_y": r"$\alpha_y$"}
    unit = {"GPa": " (GPa)", "1e-6/K": r" ($10^{-6}$/K)", "": ""}[case.unit]
    return names.get(case.short[j], case.short[j]) + unit


def plot_training_curves(trained) -> "matplotlib.figure.Figure":
    """Training and validation MSE (normalized labels) per epoch, one panel per case.

    ``trained``: sequence of ``lib.models.training.TrainedCase``; the best-validation epoch
    (the weights kept) is marked.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    if not trained:
        raise ValueError("no trained cases to draw")
    fig, axes = plt.subplots(1, len(trained), figsize=(4.2 * len(trained), 3.3), squeeze=False)
    for ax, tc in zip(axes[0], trained):
        for hist, outs in zip(tc.history, tc.outputs_of):
            name = "+".join(tc.case.short[o] for o in outs)
            epochs = range(1, len(hist["train_loss"]) + 1)
            line, = ax.plot(epochs, hist["train_loss"], "-", label=f"{name} train")
            has_val = np.isfinite(hist["val_loss"]).any()  # no validation part: train only
            if has_val:
                ax.plot(epochs, hist["val_loss"], "--", color=line.get_color(),
                        label=f"{name} val")
            best = hist.get("best_epoch")
            if best and has_val:
                ax.plot(best, hist["val_loss"][best - 1], "o", color=line.get_color())
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(f"{tc.case.title.split(':')[0]} ({tc.train_seconds / 60:.1f} min)", fontsize=9)
        ax.legend(fontsize=7, frameon=False)
    axes[0, 0].set_ylabel("MSE on [0, 1] labels")
    fig.suptitle("Training curves (dot: best validation epoch, whose weights are kept)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def plot_parity(trained, labels) -> "matplotlib.figure.Figure":
    """Predicted vs FE value on the test split: columns = cases, rows = X and Y outputs."""
    import matplotlib.pyplot as plt
    import numpy as np

    from lib.models.training import case_targets, regression_metrics

    if not trained:
        raise ValueError("no trained cases to draw")
    fig, axes = plt.subplots(2, len(trained), figsize=(3.6 * len(trained), 7.0), squeeze=False)
    for c, tc in enumerate(trained):
        true = case_targets(labels, tc.case)[tc.database_indices("test")]
        pred = tc.scaler.inverse_transform(tc.test_pred_normalized)
        m = regression_metrics(tc.scaler.transform(true), tc.test_pred_normalized)
        s = tc.case.display_scale
        for j in range(2):
            ax = axes[j, c]
            t, p = true[:, j] * s, pred[:, j] * s
            ax.scatter(t, p, s=6, alpha=0.6, color="tab:blue", edgecolors="none")
            lo, hi = min(t.min(), p.min()), max(t.max(), p.max())
            pad = 0.03 * (hi - lo or 1.0)
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=0.8)
            ax.set_xlim(lo - pad, hi + pad)
            ax.set_ylim(lo - pad, hi + pad)
            ax.set_aspect("equal")
            label = _case_axis_label(tc.case, j)
            ax.set_xlabel(f"FE {label}", fontsize=9)
            ax.set_ylabel(f"predicted {label}", fontsize=9)
            ax.set_title(f"{tc.case.name}: $R^2$ = {m['r2'][j]:.3f}, MSE = {m['mse'][j]:.4f}",
                         fontsize=9)
            ax.tick_params(labelsize=8)
    fig.suptitle(f"Parity on the test split (n = {len(tc.split['test'])}; MSE on the [0, 1] "
                 f"label scale)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_paper(rows) -> "matplotlib.figure.Figure":
    """Our test R^2 and MSE beside the paper's Table 2, one bar pair per output (Models 1-6)."""
    import matplotlib.pyplot as plt
    import numpy as np

    if not rows:
        raise ValueError("no accuracy rows to draw")
    names = [f"M{r['paper_model']}\n{r['output']}" for r in rows]
    x = np.arange(len(rows))
    w = 0.38
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 3.6))
    ours = np.array([r["r2"] for r in rows])
    axes[0].bar(x - w / 2, np.clip(ours, -0.1, None), w, label="this study", color="tab:blue")
    axes[0].bar(x + w / 2, [r["paper_r2"] for r in rows], w, label="paper Table 2",
                color="0.6")
    for xi, v in zip(x, ours):
        axes[0].text(xi - w / 2, max(v, 0.0) + 0.01, f"{v:.3f}", ha="center", va="bottom",
                     fontsize=7, rotation=90)
    axes[0].set_ylim(min(0.0, max(-0.1, float(ours.min()) - 0.05)), 1.3)
    axes[0].axhline(1.0, color="k", lw=0.5)
    axes[0].set_ylabel("$R^2$ on the test split")
    axes[1].bar(x - w / 2, [r["test_mse"] for r in rows], w, label="this study", color="tab:blue")
    axes[1].bar(x + w / 2, [r["paper_test_loss"] for r in rows], w, label="paper Table 2",
                color="0.6")
    axes[1].set_yscale("log")
    axes[1].set_ylim(top=axes[1].get_ylim()[1] * 20)  # room for the legend
    axes[1].set_ylabel("test MSE, labels scaled to [0, 1]")
    for ax in axes:
        ax.set_xticks(x, names, fontsize=8)
        ax.legend(fontsize=8, frameon=False, loc="upper center", ncol=2)
    fig.suptitle("Accuracy of the regressors beside the paper's Table 2", fontsize=10)
    fig.tight_layout()
    return fig


def _overlay(ax, image, heat, title: str, cmap: str = "jet") -> None:
    """The structure in grey with a heatmap over it (the paper's Fig. 3 look)."""
    import numpy as np

    ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.imshow(heat, cmap=cmap, vmin=0, vmax=1, alpha=0.55, interpolation="bilinear")
    if not np.any(np.asarray(heat) > 0):
        title += "\n(all zero: no positive evidence)"
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_gradram_panels(images, maps, case, values=None, threshold: float = 0.5,
                        indices=None) -> "matplotlib.figure.Figure":
    """Fig. 3-like panels: structure, X map, Y map, critical region, one row per sample.

    ``maps`` is :func:`lib.explain.gradram.case_heatmaps`'s dict for ``images``;
    ``values`` ``(n, 2)`` the FE properties (raw units) for the row titles; ``indices`` the
    database rows, for the titles.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    imgs = np.asarray(images)
    n = len(imgs)
    if n == 0 or maps["map_x"].shape != imgs.shape:
        raise ValueError(f"need n >= 1 images matching the maps, got {imgs.shape} and "
                         f"{maps['map_x'].shape}")
    sign = "" if case.goal == "max" else "−"
    fig, axes = plt.subplots(n, 4, figsize=(9.2, 2.55 * n + 0.5), squeeze=False)
    for i in range(n):
        title = f"#{indices[i]}" if indices is not None else f"sample {i}"
        if values is not None:
            s = case.display_scale
            title += "\n" + ", ".join(
                f"{_case_axis_label(case, j).split(' (')[0]} = {values[i][j] * s:.3g}"
                for j in range(2))
        ax = axes[i, 0]
        ax.imshow(imgs[i], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        for j, axis in enumerate("xy"):
            label = _case_axis_label(case, j).split(" (")[0]
            _overlay(axes[i, 1 + j], imgs[i], maps[f"map_{axis}"][i],
                     f"Grad-RAM of {sign}{label}")
        region = maps["region"][i]
        ax = axes[i, 3]
        rgb = np.stack([imgs[i] * 0.35 + 0.2] * 3, axis=-1)
        rgb[region] = np.where(imgs[i][region, None] > 0, [1.0, 0.85, 0.1], [0.75, 0.1, 0.1])
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(f"critical region ({region.mean():.1%})", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{case.title}: Grad-RAM maps (X, Y) and critical region = both maps "
                 f"≥ {threshold:g} (yellow: white phase, red: black phase inside)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_stem_comparison(image, variant_maps, rows) -> "matplotlib.figure.Figure":
    """One structure's Grad-RAM map under each network variant, with R^2 and cost per variant.

    ``variant_maps``: ``{variant name: (N, N) map}``; ``rows``: ``{variant name: dict with
    'grid' (feature map side), 'r2' (mean R^2), 'seconds_per_epoch'}``.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(variant_maps)
    if not names:
        raise ValueError("no variants to draw")
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(2.5 * (len(names) + 1), 3.0))
    axes[0].imshow(np.asarray(image), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes[0].set_title("structure", fontsize=8)
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    for ax, name in zip(axes[1:], names):
        r = rows[name]
        _overlay(ax, image, variant_maps[name],
                 f"{name}\n{r['grid']}×{r['grid']} map, $R^2$ = {r['r2']:.3f}\n"
                 f"{r['seconds_per_epoch']:.1f} s/epoch")
    fig.suptitle("Grad-RAM detail per network variant (Case 1, X output; same structure)",
                 fontsize=9, y=1.04)
    fig.tight_layout()
    return fig


def plot_gradram_sanity(images, result, n_show: int = 3) -> "matplotlib.figure.Figure":
    """Sanity check panels: trained-model map, re-initialized-model map, shifted-input map.

    ``result`` is :func:`lib.explain.gradram.sanity_check`'s dict for ``images``.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    imgs = np.asarray(images)
    n = min(n_show, len(imgs))
    if n == 0:
        raise ValueError("no images to draw")
    maps = result["maps"]
    fig, axes = plt.subplots(n, 4, figsize=(9.2, 2.75 * n + 0.6), squeeze=False)
    for i in range(n):
        ax = axes[i, 0]
        ax.imshow(imgs[i], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title("structure", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        _overlay(axes[i, 1], imgs[i], maps["trained"][i], "trained model")
        r = result["randomized"]
        _overlay(axes[i, 2], imgs[i], maps["randomized"][i],
                 f"re-initialized weights\nρ = {r['spearman'][i]:.2f}, SSIM = {r['ssim'][i]:.2f}")
        r = result["shifted"]
        _overlay(axes[i, 3], imgs[i], maps["shifted"][i],
                 f"input shifted, map shifted back\nρ = {r['spearman'][i]:.2f}, "
                 f"SSIM = {r['ssim'][i]:.2f}")
    o = result["other_input"]
    fig.suptitle("Grad-RAM sanity checks (ρ: Spearman, SSIM vs the trained map); different "
                 f"structures: mean ρ = {o['spearman_mean']:.2f}, SSIM = {o['ssim_mean']:.2f}",
                 fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Part A: GTN fracture labels (SPEC A2)
# --------------------------------------------------------------------------------------------
_DUAL_PHASE_COLOURS = {"laminated": "tab:blue", "rectangle": "tab:orange",
                       "ellipse": "tab:green", "random": "tab:red"}


def _gtn_category_names(categories, n: int) -> list[str]:
    """Dual-phase category names from codes (index into DUAL_PHASE_CATEGORIES) or strings."""
    from lib.microstructures.dual_phase import DUAL_PHASE_CATEGORIES

    return _category_names(categories, n, DUAL_PHASE_CATEGORIES, "dual-phase")


def _spearman_text(a, b) -> str:
    """'ρ = 0.83 (n = 40)' over the finite pairs ('ρ = –' with fewer than three)."""
    import numpy as np
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return f"ρ = – (n = {int(ok.sum())})"
    return f"ρ = {spearmanr(a[ok], b[ok])[0]:.2f} (n = {int(ok.sum())})"


def _scatter_by_dual_phase_category(ax, x, y, names, marker="o", size=18, label=True) -> None:
    import numpy as np

    names = np.asarray(names)
    for cat, colour in _DUAL_PHASE_COLOURS.items():
        sel = (names == cat) & np.isfinite(x) & np.isfinite(y)
        if sel.any():
            ax.scatter(x[sel], y[sel], s=size, marker=marker, color=colour, alpha=0.75,
                       edgecolors="none", label=f"{cat} ({int(sel.sum())})" if label else None)


def plot_fracture_strain_vs_fraction(martensite_fraction, fracture_strain, categories,
                                     load_drop_strain=None, strain_reached=None,
                                     converged=None, criteria_text: str = "",
                                     highlight=None, highlight_label: str = ""
                                     ) -> "matplotlib.figure.Figure":
    """The paper's Fig. 3: fracture strain against martensite fraction, coloured by category.

    A second panel shows the load-drop strain when ``load_drop_strain`` is given. Samples whose
    run failed (``converged`` False) without a fracture strain are drawn as grey crosses at the
    strain they reached (``strain_reached``), never as fracture strains. ``highlight`` (a
    boolean mask, e.g. laminates with layers along the load) rings those samples, named by
    ``highlight_label`` in the legend.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    frac = np.asarray(martensite_fraction, float)
    names = _gtn_category_names(categories, frac.size)
    panels = [("fracture strain (f̄ criterion)", np.asarray(fracture_strain, float))]
    if load_drop_strain is not None:
        panels.append(("load-drop strain", np.asarray(load_drop_strain, float)))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels) + 1.2, 4.0), squeeze=False)
    for ax, (label, values) in zip(axes[0], panels):
        if values.shape != frac.shape:
            raise ValueError(f"{label}: shape {values.shape} does not match the fractions' {frac.shape}")
        _scatter_by_dual_phase_category(ax, frac, values, names)
        if highlight is not None:
            ring = np.asarray(highlight, bool) & np.isfinite(values)
            if ring.any():
                ax.scatter(frac[ring], values[ring], s=70, facecolors="none", edgecolors="k",
                           linewidths=1.0, label=f"{highlight_label} ({int(ring.sum())})")
        if strain_reached is not None and converged is not None:
            lost = ~np.asarray(converged, bool) & ~np.isfinite(values)
            if lost.any():
                ax.scatter(frac[lost], np.asarray(strain_reached, float)[lost], marker="x",
                           color="0.4", s=22, label=f"failed run, strain reached ({int(lost.sum())})")
        ax.set_xlabel("martensite area fraction")
        ax.set_ylabel(label)
        ax.set_title(f"{label}: {_spearman_text(frac, values)}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if criteria_text:
        fig.suptitle(criteria_text, fontsize=9)
    fig.tight_layout()
    return fig


def plot_strength_vs_fracture_strain(fracture_strain, tensile_strength, categories,
                                     strength_mark: float = 700.0) -> "matplotlib.figure.Figure":
    """Tensile strength (peak mean stress, MPa) against fracture strain, coloured by category;
    a dashed line marks ``strength_mark`` (the paper's FS+TS target, 700 MPa)."""
    import matplotlib.pyplot as plt
    import numpy as np

    fs = np.asarray(fracture_strain, float)
    ts = np.asarray(tensile_strength, float)
    names = _gtn_category_names(categories, fs.size)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    _scatter_by_dual_phase_category(ax, fs, ts, names)
    if strength_mark:
        ax.axhline(strength_mark, color="0.3", linestyle="--", linewidth=1,
                   label=f"{strength_mark:.0f} MPa")
    ax.set_xlabel("fracture strain")
    ax.set_ylabel("tensile strength (MPa)")
    ax.set_title(f"strength vs ductility: {_spearman_text(fs, ts)}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def plot_stress_strain_curves(labels, categories, indices, mean_void_critical: float,
                              martensite_fraction=None) -> "matplotlib.figure.Figure":
    """Mean stress and mean void fraction against strain for the samples ``indices`` (e.g. one
    per category), from the stored histories of a ``fracture_labels`` stage. Circles mark the
    fracture strain (f̄ = f̄_crit), crosses the load-drop strain."""
    import matplotlib.pyplot as plt
    import numpy as np

    n = len(labels["fracture_strain"])
    names = _gtn_category_names(categories, n)
    fig, (ax_s, ax_f) = plt.subplots(1, 2, figsize=(11.5, 4.0))
    for i in indices:
        k = int(labels["history_length"][i])
        if k == 0:
            continue
        eps = labels["history_strain"][i, :k]
        colour = _DUAL_PHASE_COLOURS.get(names[i], "k")
        frac = "" if martensite_fraction is None else f", $f_M$ = {martensite_fraction[i]:.2f}"
        label = f"{names[i]} #{i}{frac}"
        if not labels["converged"][i]:
            label += " (failed)"
        ax_s.plot(eps, labels["history_stress"][i, :k], color=colour, label=label)
        ax_f.plot(eps, labels["history_mean_void"][i, :k], color=colour, label=label)
        fs, ld = labels["fracture_strain"][i], labels["load_drop_strain"][i]
        if np.isfinite(fs):
            ax_s.plot(fs, np.interp(fs, eps, labels["history_stress"][i, :k]), "o", color=colour)
            ax_f.plot(fs, mean_void_critical, "o", color=colour)
        if np.isfinite(ld):
            ax_s.plot(ld, np.interp(ld, eps, labels["history_stress"][i, :k]), "x", color=colour,
                      markersize=8, markeredgewidth=2)
    ax_f.axhline(mean_void_critical, color="0.3", linestyle="--", linewidth=1,
                 label=f"f̄_crit = {mean_void_critical:g}")
    ax_s.set_xlabel("macroscopic strain $E_{xx}$")
    ax_s.set_ylabel("mean stress $\\bar\\sigma_{xx}$ (MPa)")
    ax_s.set_title("stress–strain (o: f̄ = f̄_crit, x: load drop)", fontsize=9)
    ax_f.set_xlabel("macroscopic strain $E_{xx}$")
    ax_f.set_ylabel("mean void volume fraction f̄")
    ax_f.set_ylim(0, 4 * mean_void_critical)
    ax_f.set_title("void growth", fontsize=9)
    for ax in (ax_s, ax_f):
        ax.grid(alpha=0.3)
    ax_f.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def plot_void_maps(images, void_maps, categories, indices, fracture_strain=None
                   ) -> "matplotlib.figure.Figure":
    """Structures (martensite black) beside their void volume fraction maps at the critical
    state, one row per sample of ``indices``. The void map is on the FE grid; it is drawn over
    the same square, so both panels show the same cell."""
    import matplotlib.pyplot as plt
    import numpy as np

    imgs = np.asarray(images)
    maps = np.asarray(void_maps, float)
    names = _gtn_category_names(categories, len(imgs))
    indices = list(indices)
    if not indices:
        raise ValueError("no samples to draw")
    n_cols = 2
    n_rows = len(indices)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(5.6, 2.5 * n_rows + 0.4), squeeze=False)
    for r, i in enumerate(indices):
        ax = axes[r, 0]
        ax.imshow(imgs[i], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest",
                  extent=(0, 1, 0, 1))
        ax.set_ylabel(f"{names[i]} #{i}", fontsize=9)
        fs = "" if fracture_strain is None else f", FS = {fracture_strain[i]:.3f}"
        ax.set_title(f"$f_M$ = {imgs[i].mean():.2f}{fs}", fontsize=8)
        ax = axes[r, 1]
        m = maps[i]
        top = np.nanmax(m) if np.isfinite(m).any() else 1.0
        im = ax.imshow(m, cmap="inferno", vmin=0, vmax=max(top, 1e-6), interpolation="nearest",
                       extent=(0, 1, 0, 1))
        ax.set_title(f"void fraction ({m.shape[0]}×{m.shape[1]} FE grid)", fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        for a in axes[r]:
            a.set_xticks([])
            a.set_yticks([])
    fig.suptitle("Structures (black = martensite) and void maps at f̄ = f̄_crit (load along x)",
                 fontsize=9)
    fig.tight_layout()
    return fig


def plot_label_sensitivity(sensitivity, categories, mean_void_critical: float,
                           load_drop: float) -> "matplotlib.figure.Figure":
    """How the labels depend on the criterion (from ``criterion_sensitivity``'s dict): fracture
    strain at f̄_crit vs at f̄_crit / 2, f̄ criterion vs load drop, and load drop vs half of it;
    each panel gives the Spearman rank correlation and the diagonal."""
    import matplotlib.pyplot as plt
    import numpy as np

    fs = np.asarray(sensitivity["fracture_strain"], float)
    names = _gtn_category_names(categories, fs.size)
    panels = [
        ("fracture_strain", "fracture_strain_half", f"FS at f̄_crit = {mean_void_critical:g}",
         f"FS at f̄_crit / 2 = {mean_void_critical / 2:g}"),
        ("fracture_strain", "load_drop_strain", f"FS at f̄_crit = {mean_void_critical:g}",
         f"strain at a {100 * load_drop:g} % load drop"),
        ("load_drop_strain", "load_drop_strain_half", f"strain at a {100 * load_drop:g} % load drop",
         f"strain at a {50 * load_drop:g} % load drop"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(14.5, 4.2))
    for ax, (kx, ky, lx, ly) in zip(axes, panels):
        x, y = np.asarray(sensitivity[kx], float), np.asarray(sensitivity[ky], float)
        _scatter_by_dual_phase_category(ax, x, y, names, label=ax is axes[-1])
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.any():
            lim = (0, 1.05 * max(x[ok].max(), y[ok].max()))
            ax.plot(lim, lim, color="0.5", linewidth=0.8)
            ax.set_xlim(lim)
            ax.set_ylim(lim)
        ax.set_xlabel(lx)
        ax.set_ylabel(ly)
        ax.set_title(_spearman_text(x, y), fontsize=9)
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle("Label sensitivity to the fracture criterion (from the stored histories)",
                 fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Part B: periodic designs (SPEC B5)
# --------------------------------------------------------------------------------------------
def plot_design_steps(case, sources, regions, steps, values=None, margins=None,
                      source_indices=None) -> "matplotlib.figure.Figure":
    """Fig. 5-like rows: source structure with its critical region, skeleton inside the region
    (the quarter window outlined), mirrored skeleton, design at the target fraction.

    ``sources``, ``regions``: ``(n, N, N)``; ``steps``: ``n`` dicts of
    :func:`lib.design.periodic_design.design_steps`; ``values`` ``(n, 2)`` the designs' X and Y
    property (label units) and ``margins`` ``(n,)`` against the database's best, for titles.
    """
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Rectangle

    n = len(steps)
    if n == 0 or len(sources) != n or len(regions) != n:
        raise ValueError("need as many sources, regions and steps, at least one")
    fig, axes = plt.subplots(n, 4, figsize=(9.2, 2.5 * n + 0.5), squeeze=False)
    for i in range(n):
        img, region, st = np.asarray(sources[i]), np.asarray(regions[i]), steps[i]
        size = img.shape[0]
        rgb = np.stack([img * 0.6 + 0.2] * 3, axis=-1)
        rgb[region] = rgb[region] * 0.5 + np.array([1.0, 0.3, 0.1]) * 0.5
        title = f"#{source_indices[i]}" if source_indices is not None else f"source {i}"
        axes[i, 0].imshow(rgb, interpolation="nearest")
        axes[i, 0].set_title(f"{title}: critical region ({region.mean():.0%})", fontsize=8)
        sk = np.zeros((size, size, 3))
        sk[st["skeleton"]] = 0.35
        sk[st["masked"]] = [1.0, 0.85, 0.1]
        axes[i, 1].imshow(sk, interpolation="nearest")
        row, col = st["window"]
        for dy in (0, -size):
            for dx in (0, -size):  # the periodic window, drawn where it wraps as well
                axes[i, 1].add_patch(Rectangle((col + dx - 0.5, row + dy - 0.5), size / 2,
                                               size / 2, fill=False, ec="c", lw=1.0))
        axes[i, 1].set_xlim(-0.5, size - 0.5)
        axes[i, 1].set_ylim(size - 0.5, -0.5)
        axes[i, 1].set_title("skeleton in the region, quarter window", fontsize=8)
        axes[i, 2].imshow(st["seed"], cmap="gray", interpolation="nearest")
        axes[i, 2].set_title("quarter mirrored into a cell", fontsize=8)
        design = st["design"] if st["design"] is not None else np.zeros((size, size))
        axes[i, 3].imshow(design, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        label = f"design, white {design.mean():.3f}"
        if values is not None:
            s = case.display_scale
            label += "\n" + ", ".join(f"{_case_axis_label(case, j).split(' (')[0]} = "
                                      f"{values[i][j] * s:.3g}" for j in range(2))
        if margins is not None:
            label += f" ({margins[i]:+.1%})"
        axes[i, 3].set_title(label, fontsize=8)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{case.title}: design steps (margin: weaker direction against the best "
                 f"database sample)", fontsize=9, y=1.0)
    fig.tight_layout()
    return fig


def plot_design_scatter(cases, database_xy, outlier_indices, designs) -> "matplotlib.figure.Figure":
    """Fig. 6-like: every database sample's X vs Y property, the outliers, and the designs.

    ``cases``: PropertyCase list; per case (same order) ``database_xy`` ``(m, 2)``,
    ``outlier_indices`` and ``designs``, a dict with ``values`` ``(d, 2)``, ``balanced`` and
    ``beats_all`` ``(d,)`` bool (:func:`lib.design.periodic_design.design_metrics`).
    Designs meeting the 10 % balance constraint are filled red, the others hollow; the dotted
    lines mark the database's best weaker-direction value.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(cases), figsize=(4.4 * len(cases), 4.2), squeeze=False)
    for ax, case, db, out, des in zip(axes[0], cases, database_xy, outlier_indices, designs):
        s = case.display_scale
        db = np.asarray(db) * s
        ax.scatter(db[:, 0], db[:, 1], s=5, c="tab:blue", alpha=0.35, lw=0, label="database")
        ax.scatter(db[out, 0], db[out, 1], s=7, c="gold", lw=0, label="outliers (sources)")
        v = np.asarray(des["values"]) * s
        ok = np.asarray(des["balanced"], bool)
        n_beat = int(np.asarray(des["beats_all"])[ok].sum())
        ax.scatter(v[ok, 0], v[ok, 1], s=16, c="tab:red", lw=0,
                   label=f"designs, balanced ({ok.sum()}; {n_beat} beat all)")
        ax.scatter(v[~ok, 0], v[~ok, 1], s=16, facecolors="none", edgecolors="tab:red", lw=0.6,
                   label=f"designs, |X−Y| ≥ 10 % ({(~ok).sum()})")
        lo = min(db.min(), v.min() if len(v) else db.min())
        hi = max(db.max(), v.max() if len(v) else db.max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        best = db.min(axis=1).max() if case.goal == "max" else db.max(axis=1).min()
        ax.axvline(best, color="k", ls=":", lw=0.8)
        ax.axhline(best, color="k", ls=":", lw=0.8)
        ax.set_xlabel(_case_axis_label(case, 0))
        ax.set_ylabel(_case_axis_label(case, 1))
        ax.set_title(case.title, fontsize=9)
        ax.legend(fontsize=7, loc="lower right" if case.goal == "max" else "upper left")
    fig.tight_layout()
    return fig
