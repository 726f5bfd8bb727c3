"""Part A's figures, drawn the paper's way: the artificial dual-phase steel microstructures
(SPEC A1: example grids, martensite-fraction histogram) and their GTN fracture labels (SPEC A2:
fracture strain against martensite fraction as in the paper's Fig. 3, strength against
ductility, stress-strain and void-growth histories, void maps at the critical state, and the
labels' sensitivity to the fracture criterion)."""
from __future__ import annotations

import matplotlib.figure

from lib.plots.common import (_category_names, _check_images, _colorbar_beside, _example_grid,
                              _integer_axis)


# --------------------------------------------------------------------------------------------
# Part A: dual-phase microstructures (SPEC A1)
# --------------------------------------------------------------------------------------------
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
    _integer_axis(ax, "y")
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
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
    the same square, so both panels show the same cell.

    Every void map is drawn on one logarithmic colour scale, shared by all rows (one colorbar,
    labelled): a laminate's voids grow uniformly and stay an order of magnitude below the peak
    of a grain structure's band, so a linear scale shared by the rows would leave the laminate
    black and one scale per row would hide the difference. Each map's title gives its maximum.
    """
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import LogNorm

    imgs = np.asarray(images)
    maps = np.asarray(void_maps, float)
    names = _gtn_category_names(categories, len(imgs))
    indices = list(indices)
    if not indices:
        raise ValueError("no samples to draw")
    shown = maps[indices]
    positive = shown[np.isfinite(shown) & (shown > 0)]
    top = float(positive.max()) if positive.size else 1.0
    # the floor: the shown maps' 1st percentile (near the initial porosity), 1-3 decades down
    floor = float(np.percentile(positive, 1)) if positive.size else top * 1e-3
    floor = min(max(floor, top * 1e-3), top / 10.0)
    norm = LogNorm(vmin=floor, vmax=top, clip=True)
    below = bool(positive.size and (np.nanmin(shown) < floor))
    n_rows = len(indices)
    fig, axes = plt.subplots(n_rows, 2, figsize=(6.6, 2.5 * n_rows + 0.7), squeeze=False)
    for r, i in enumerate(indices):
        ax = axes[r, 0]
        ax.imshow(imgs[i], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest",
                  extent=(0, 1, 0, 1))
        ax.set_ylabel(f"{names[i]} #{i}", fontsize=9)
        fs = "" if fracture_strain is None else f", FS = {fracture_strain[i]:.3f}"
        ax.set_title(f"$f_M$ = {imgs[i].mean():.2f}{fs}", fontsize=8)
        ax = axes[r, 1]
        m = maps[i]
        im = ax.imshow(np.clip(m, floor, None), cmap="inferno", norm=norm,
                       interpolation="nearest", extent=(0, 1, 0, 1))
        peak = f"{np.nanmax(m):.3g}" if np.isfinite(m).any() else "–"
        ax.set_title(f"void fraction f, max {peak} ({m.shape[0]}×{m.shape[1]} FE grid)",
                     fontsize=8)
        for a in axes[r]:
            a.set_xticks([])
            a.set_yticks([])
    fig.suptitle("Structures (black = martensite) and void maps at f̄ = f̄_crit (load along x);\n"
                 "all void maps on one logarithmic colour scale", fontsize=9)
    fig.tight_layout(rect=(0.0, 0.0, 0.84, 1.0), w_pad=1.5)
    cbar = _colorbar_beside(fig, axes[0, 1], axes[-1, 1], im,
                            "void volume fraction f (–), log scale"
                            + (f"; values below {floor:.2g} at the bottom colour" if below else ""),
                            pad=0.03, width=0.03, extend="min" if below else "neither",
                            extendfrac=0.03)
    ticks = [d * 10.0 ** k for k in range(int(np.floor(np.log10(floor))), 1) for d in (1, 2, 5)]
    cbar.set_ticks([t for t in ticks if floor * 0.999 <= t <= top * 1.001])
    cbar.set_ticks([], minor=True)
    cbar.ax.yaxis.set_major_formatter("{x:g}")
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
