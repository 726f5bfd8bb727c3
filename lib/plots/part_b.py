"""Part B's figures, drawn the papers' way: the stochastic architected microstructures (SPEC
B1), their homogenized properties (SPEC B2), the ResNet-18 regressors and their Grad-RAM maps
(SPEC B3, B4; notebook 06: training curves, parity, accuracy beside the paper's Table 2,
Fig. 3-like map panels, network variants, sanity checks), and the periodic designs built from
the maps' critical regions (SPEC B5)."""
from __future__ import annotations

import matplotlib.figure

from lib.plots.common import (_BELOW_INCHES, _category_names, _check_images, _colorbar_below,
                              _example_grid, _integer_axis)


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
        _integer_axis(ax, "y")
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
        _integer_axis(ax, "y")
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


def _case_value_text(case, j: int, value: float) -> str:
    """``"$E_x$ = 152 GPa"``: output ``j`` of ``case`` at ``value`` (label units, i.e. MPa or
    1/K) in display units; Poisson's ratios are dimensionless and get no unit."""
    unit = {"GPa": " GPa", "1e-6/K": r"$\times10^{-6}$/K", "": ""}[case.unit]
    name = _case_axis_label(case, j).split(" (")[0]
    return f"{name} = {value * case.display_scale:.3g}{unit}"


def _case_values_text(case, xy) -> str:
    """Both outputs of ``case`` at ``xy`` (label units) with units, for a panel title:
    ``"$E_x$ = 145 GPa, $E_y$ = 144 GPa"``; the long unit 10^-6/K once for both, in
    parentheses as on the axes: ``"$\\alpha_x$ = 14.6, $\\alpha_y$ = 14.9 ($10^{-6}$/K)"``."""
    if case.unit == "1e-6/K":
        names = [_case_axis_label(case, j).split(" (")[0] for j in range(2)]
        return (", ".join(f"{n} = {xy[j] * case.display_scale:.3g}" for j, n in enumerate(names))
                + r" ($10^{-6}$/K)")
    return ", ".join(_case_value_text(case, j, xy[j]) for j in range(2))


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
        _integer_axis(ax, "x")
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


#: the colorbar label of every Grad-RAM map figure: what lib.explain.gradram.normalize_maps does
_GRADRAM_LABEL = "Grad-RAM, each map min–max normalized to [0, 1]: (m − min) / (max − min)"


def _overlay(ax, image, heat, title: str, cmap: str = "jet"):
    """The structure in grey with a heatmap (0-1) over it (the paper's Fig. 3 look); returns
    the heatmap's image, for a colorbar."""
    import numpy as np

    ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    im = ax.imshow(heat, cmap=cmap, vmin=0, vmax=1, alpha=0.55, interpolation="bilinear")
    if not np.any(np.asarray(heat) > 0):
        title += "\n(all zero: no positive evidence)"
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def plot_gradram_panels(images, maps, case, values=None, threshold: float = 0.5,
                        indices=None) -> "matplotlib.figure.Figure":
    """Fig. 3-like panels: structure, X map, Y map, critical region, one row per sample.

    ``maps`` is :func:`lib.explain.gradram.case_heatmaps`'s dict for ``images`` (each map
    min-max normalized to [0, 1], the colorbar; ``threshold`` is marked on it);
    ``values`` ``(n, 2)`` the FE properties (label units: MPa, 1/K) for the row titles, shown
    in GPa and 10^-6/K; ``indices`` the database rows, for the titles.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    imgs = np.asarray(images)
    n = len(imgs)
    if n == 0 or maps["map_x"].shape != imgs.shape:
        raise ValueError(f"need n >= 1 images matching the maps, got {imgs.shape} and "
                         f"{maps['map_x'].shape}")
    sign = "" if case.goal == "max" else "−"
    height = 2.55 * n + 0.5 + _BELOW_INCHES
    fig, axes = plt.subplots(n, 4, figsize=(9.2, height), squeeze=False)
    for i in range(n):
        title = f"#{indices[i]}" if indices is not None else f"sample {i}"
        if values is not None:
            title += "\n" + _case_values_text(case, values[i])
        ax = axes[i, 0]
        ax.imshow(imgs[i], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        for j, axis in enumerate("xy"):
            label = _case_axis_label(case, j).split(" (")[0]
            heat = _overlay(axes[i, 1 + j], imgs[i], maps[f"map_{axis}"][i],
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
    fig.tight_layout(rect=(0.0, _BELOW_INCHES / height, 1.0, 1.0))
    cbar = _colorbar_below(fig, axes[-1, 1], axes[-1, 2], heat,
                           f"{_GRADRAM_LABEL}; black line: threshold {threshold:g}")
    cbar.ax.axvline(threshold, color="k", lw=1.5)
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
    height = 3.0 + _BELOW_INCHES
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(2.5 * (len(names) + 1), height))
    axes[0].imshow(np.asarray(image), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes[0].set_title("structure", fontsize=8)
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    for ax, name in zip(axes[1:], names):
        r = rows[name]
        heat = _overlay(ax, image, variant_maps[name],
                        f"{name}\n{r['grid']}×{r['grid']} map, $R^2$ = {r['r2']:.3f}\n"
                        f"{r['seconds_per_epoch']:.1f} s/epoch")
    fig.suptitle("Grad-RAM detail per network variant (Case 1, X output; same structure)",
                 fontsize=9, y=1.0 - 0.05 / height, va="top")
    fig.tight_layout(rect=(0.0, _BELOW_INCHES / height, 1.0, 1.0 - 0.3 / height))
    _colorbar_below(fig, axes[1], axes[-1], heat, _GRADRAM_LABEL)
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
    height = 2.75 * n + 0.6 + _BELOW_INCHES
    fig, axes = plt.subplots(n, 4, figsize=(9.2, height), squeeze=False)
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
        heat = _overlay(axes[i, 3], imgs[i], maps["shifted"][i],
                        f"input shifted, map shifted back\nρ = {r['spearman'][i]:.2f}, "
                        f"SSIM = {r['ssim'][i]:.2f}")
    o = result["other_input"]
    fig.suptitle("Grad-RAM sanity checks (ρ: Spearman, SSIM vs the trained map); different "
                 f"structures: mean ρ = {o['spearman_mean']:.2f}, SSIM = {o['ssim_mean']:.2f}",
                 fontsize=9)
    fig.tight_layout(rect=(0.0, _BELOW_INCHES / height, 1.0, 1.0))
    _colorbar_below(fig, axes[-1, 1], axes[-1, 3], heat, _GRADRAM_LABEL)
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
        if margins is not None:
            label += f", margin {margins[i]:+.1%}"
        if values is not None:
            label += "\n" + _case_values_text(case, values[i])
        axes[i, 3].set_title(label, fontsize=8)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{case.title}: design steps (margin: weaker direction against the best "
                 f"database sample)", fontsize=9, y=1.0)
    fig.tight_layout()
    return fig


def plot_design_scatter(cases, database_xy, outlier_indices, designs, moderate_indices=None
                        ) -> "matplotlib.figure.Figure":
    """Fig. 6-like: every database sample's X vs Y property, the source samples, and the designs.

    ``cases``: PropertyCase list; per case (same order) ``database_xy`` ``(m, 2)``,
    ``outlier_indices``, ``designs``, a dict with ``values`` ``(d, 2)``, ``balanced`` and
    ``beats_all`` ``(d,)`` bool (:func:`lib.design.periodic_design.design_metrics`) and,
    optionally, ``group`` ``(d,)`` (the design stage's source group of each design, a position
    in ``group_names``, default ``("outliers", "moderate")``), and ``moderate_indices`` (per
    case, or ``None``) the moderate source samples. Designs from outliers are red circles,
    designs from any other group purple diamonds; filled where they meet the 10 % balance
    constraint, hollow where not; the dotted lines mark the database's best weaker-direction
    value. The legend sits under each panel, off the data.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    if moderate_indices is None:
        moderate_indices = [None] * len(cases)
    fig, axes = plt.subplots(1, len(cases), figsize=(4.6 * len(cases), 5.8), squeeze=False)
    for ax, case, db, out, mod, des in zip(axes[0], cases, database_xy, outlier_indices,
                                           moderate_indices, designs):
        s = case.display_scale
        db = np.asarray(db) * s
        ax.scatter(db[:, 0], db[:, 1], s=10, c="tab:blue", alpha=0.45, lw=0, zorder=1,
                   label=f"database ({len(db)})")
        ax.scatter(db[out, 0], db[out, 1], s=16, c="gold", edgecolors="0.35", lw=0.3, zorder=2,
                   label=f"outliers (sources, {len(out)})")
        if mod is not None and len(mod):
            ax.scatter(db[mod, 0], db[mod, 1], s=16, c="yellowgreen", edgecolors="0.35", lw=0.3,
                       zorder=2, label=f"moderate samples (sources, {len(mod)})")
        v = np.asarray(des["values"]) * s
        ok = np.asarray(des["balanced"], bool)
        beat = np.asarray(des["beats_all"], bool)
        names = list(des.get("group_names", ("outliers", "moderate")))
        group = np.asarray(des["group"]) if "group" in des else np.zeros(len(v), dtype=int)
        from_outlier = np.array([names[int(g)] == "outliers" for g in group], dtype=bool)
        size = 30 if len(v) <= 150 else 14  # a thousand designs (default) would hide the rest
        styles = [(from_outlier, "outliers", dict(marker="o", s=size, color="tab:red", zorder=4)),
                  (~from_outlier, "moderate samples",
                   dict(marker="D", s=0.85 * size, color="tab:purple", zorder=5))]
        for sel, source, style in styles:
            if not sel.any():
                continue
            style = dict(style)
            colour = style.pop("color")
            good, bad = sel & ok, sel & ~ok
            ax.scatter(v[good, 0], v[good, 1], c=colour, edgecolors="k", lw=0.4, **style,
                       label=f"designs from {source}, balanced ({good.sum()}; "
                             f"{int((beat & good).sum())} beat all)")
            ax.scatter(v[bad, 0], v[bad, 1], facecolors="none", edgecolors=colour, lw=0.8,
                       **style, label=f"designs from {source}, |X−Y| ≥ 10 % ({bad.sum()})")
        lo = min(db.min(), v.min() if len(v) else db.min())
        hi = max(db.max(), v.max() if len(v) else db.max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, zorder=0)
        best = db.min(axis=1).max() if case.goal == "max" else db.max(axis=1).min()
        ax.axvline(best, color="k", ls=":", lw=0.8, zorder=0)
        ax.axhline(best, color="k", ls=":", lw=0.8, zorder=0,
                   label="best database sample's weaker direction")
        ax.set_xlabel(_case_axis_label(case, 0))
        ax.set_ylabel(_case_axis_label(case, 1))
        ax.set_title(case.title, fontsize=9)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.17), frameon=False,
                  markerscale=1.2)
    fig.tight_layout()
    return fig
