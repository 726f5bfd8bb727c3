"""Part A's generative figures (notebooks 04-05): VQ-VAE, PixelCNN, generated structures, FE check.

Martensite is drawn black and ferrite white, as in the paper. Every function takes arrays
(or the dicts of :mod:`lib.generation_analysis`) and returns a matplotlib figure.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from lib.plots.common import _integer_axis

_MARTENSITE = dict(cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
_DATASET_COLOURS = {"All": "k", "Random": "tab:green", "Ellipse": "tab:orange",
                    "Rectangle": "tab:blue"}


def _show(ax, img, title: str | None = None) -> None:
    ax.imshow(img, **_MARTENSITE)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def plot_reconstructions(originals: np.ndarray, reconstructions: np.ndarray,
                         n: int = 8) -> plt.Figure:
    """Held-out structures (top) and their VQ-VAE reconstructions (bottom), with the share
    of pixels right."""
    n = min(n, len(originals))
    fig, axes = plt.subplots(2, n, figsize=(1.4 * n, 3.2), squeeze=False)
    for i in range(n):
        acc = float((originals[i] == reconstructions[i]).mean())
        _show(axes[0, i], originals[i], f"f = {originals[i].mean():.2f}")
        _show(axes[1, i], reconstructions[i], f"{100 * acc:.1f} % px")
    axes[0, 0].set_ylabel("original", fontsize=8)
    axes[1, 0].set_ylabel("VQ-VAE", fontsize=8)
    fig.tight_layout()
    return fig


def plot_codebook(patches: np.ndarray, codes: Sequence[int], counts: np.ndarray,
                  perplexity: float, dead_fraction: float, context: int = 4) -> plt.Figure:
    """The "characteristic microstructures": for codebook entries ``codes`` (most used first),
    the mean neighbourhood of the sites where each sits (``patches (m, w, w)``, the code's own
    cell framed in red), and the code-usage histogram (``counts (K,)``)."""
    m = len(codes)
    cols = min(m, 12)
    rows = int(np.ceil(m / cols))
    fig = plt.figure(figsize=(1.0 * cols, 1.05 * rows + 2.4))
    grid = fig.add_gridspec(rows + 2, cols)
    share = counts / max(counts.sum(), 1)
    w = patches.shape[-1]
    for k, code in enumerate(codes):
        ax = fig.add_subplot(grid[k // cols, k % cols])
        ax.imshow(patches[k], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        ax.add_patch(plt.Rectangle((context - 0.5, context - 0.5), w - 2 * context,
                                   w - 2 * context, fill=False, ec="tab:red", lw=0.8))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"#{code} {100 * share[code]:.1f}%", fontsize=7)
    ax = fig.add_subplot(grid[rows:, :])
    order = np.argsort(counts)[::-1]
    ax.bar(np.arange(len(counts)), share[order], width=1.0, color="0.3")
    ax.set_xlabel("code (sorted by use)")
    ax.set_ylabel("share of codes")
    ax.set_title(f"codebook usage on held-out structures: perplexity {perplexity:.1f} of "
                 f"{len(counts)}, dead codes {100 * dead_fraction:.0f} %", fontsize=9)
    fig.tight_layout()
    return fig


def plot_nll(rows: Sequence[Mapping[str, Any]], histories: Mapping[tuple[str, str], Mapping]
             ) -> plt.Figure:
    """Held-out bits per code per data set and model (left) and validation curves (right)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    names = [r["dataset"] for r in rows]
    x = np.arange(len(names))
    for k, (kind, label) in enumerate((("uncond", "unconditional"), ("fs", "FS"),
                                       ("fsts", "FS+TS"))):
        vals = [r.get(kind, np.nan) for r in rows]
        a.bar(x + (k - 1) * 0.27, vals, width=0.27, label=label)
    a.set_xticks(x, names)
    a.set_ylabel("held-out NLL (bits per code)")
    lo = np.nanmin([r.get(k, np.nan) for r in rows for k in ("uncond", "fs", "fsts")])
    a.set_ylim(max(0, lo - 0.5), None)
    a.legend(fontsize=8)
    for (kind, ds), h in histories.items():
        style = {"uncond": ":", "fs": "-", "fsts": "--"}[kind]
        b.plot(h["step"], np.array(h["val_nll"]) / np.log(2), style,
               color=_DATASET_COLOURS[ds], label=f"{kind} {ds}", lw=1)
    b.set_xlabel("optimizer step")
    b.set_ylabel("validation NLL (bits per code)")
    b.legend(fontsize=6, ncol=3)
    fig.tight_layout()
    return fig


def plot_matched(comparisons: Mapping[str, Mapping[str, Any]]) -> plt.Figure:
    """Generated at the held-out labels against the held-out structures: martensite-fraction
    distributions (top) and two-point correlations (bottom), per data set."""
    names = list(comparisons)
    fig, axes = plt.subplots(2, len(names), figsize=(3.2 * len(names), 5.6), squeeze=False)
    for j, name in enumerate(names):
        c = comparisons[name]
        bins = np.linspace(0, 0.8, 17)
        axes[0, j].hist(c["fraction_real"], bins, alpha=0.5, label="held-out", color="k")
        axes[0, j].hist(c["fraction_generated"], bins, alpha=0.5, label="generated",
                        color="tab:red")
        axes[0, j].set_title(f"{name}: KS {c['ks_fraction']:.2f} (n = {len(c['real'])})",
                             fontsize=9)
        axes[0, j].set_xlabel("martensite fraction")
        _integer_axis(axes[0, j], "y")
        r = np.arange(len(c["s2_real"]))
        axes[1, j].plot(r, c["s2_real"], "k-", label="held-out")
        axes[1, j].plot(r, c["s2_generated"], "r--", label="generated")
        axes[1, j].set_xlabel("r (px)")
        axes[1, j].set_title(f"largest gap {c['s2_max_gap']:.3f}", fontsize=9)
    axes[0, 0].legend(fontsize=8)
    axes[0, 0].set_ylabel("number of structures")
    axes[1, 0].set_ylabel("S2(r)")
    fig.tight_layout()
    return fig


def plot_target_grid(sweeps: Mapping[str, Mapping[str, Any]], n_show: int = 4,
                     strain_label: str = "target ε_f") -> plt.Figure:
    """The paper's Fig. 4 / 5a: per data set (block of rows), ``n_show`` structures per target
    (columns within a block), targets rising left to right."""
    names = list(sweeps)
    targets = [np.unique(sweeps[n]["target"]) for n in names]
    n_t = max(len(t) for t in targets)
    fig, axes = plt.subplots(len(names) * n_show // 2, n_t * 2,
                             figsize=(1.25 * n_t * 2, 1.3 * len(names) * n_show // 2 + 0.4),
                             squeeze=False)
    for a in axes.ravel():
        a.axis("off")
    per_block = n_show // 2
    for b, name in enumerate(names):
        sw = sweeps[name]
        for k, t in enumerate(targets[b]):
            idx = np.nonzero(sw["target"] == t)[0][:n_show]
            for m, i in enumerate(idx):
                ax = axes[b * per_block + m // 2, 2 * k + m % 2]
                ax.axis("on")
                title = (f"{name}, {strain_label} = {t:g}" if m == 0 else None)
                _show(ax, sw["images"][i])
                if title:
                    ax.set_title(title, fontsize=7, loc="left")
    fig.tight_layout(h_pad=0.3, w_pad=0.2)
    return fig


def plot_fraction_boxplot(sweep: Mapping[str, Any], title: str,
                          strain_label: str = "target ε_f") -> plt.Figure:
    """The paper's Fig. 5b: martensite fraction of the generated structures per target, box
    plot with medians (line) and means (triangle), and the median laminarity along x (1 for
    complete layers along the load)."""
    targets = np.unique(sweep["target"])
    data = [sweep["fraction"][sweep["target"] == t] for t in targets]
    lam = [np.median(sweep["laminarity_x"][sweep["target"] == t]) for t in targets]
    fig, a = plt.subplots(figsize=(6.5, 3.8))
    a.boxplot(data, positions=np.arange(len(targets)), widths=0.6, showmeans=True,
              medianprops=dict(color="k"), meanprops=dict(marker="^", markerfacecolor="tab:red",
                                                          markeredgecolor="tab:red"))
    a.set_xticks(np.arange(len(targets)), [f"{t:g}" for t in targets])
    a.set_xlabel(strain_label)
    a.set_ylabel("martensite fraction")
    a.set_title(f"{title}; Spearman ρ(target, fraction) = {sweep['rho']['fraction']:.2f}",
                fontsize=9)
    b = a.twinx()
    b.plot(np.arange(len(targets)), lam, "s--", color="tab:blue")
    b.set_ylabel("laminarity along x (median)", color="tab:blue")
    b.set_ylim(0, 1)
    fig.tight_layout()
    return fig


def plot_slider_view(strip: np.ndarray, title: str) -> plt.Figure:
    """One view of the sliders: the structures side by side (``strip (N, n*N)``)."""
    fig, ax = plt.subplots(figsize=(2.0 * strip.shape[1] / strip.shape[0], 2.3))
    _show(ax, strip, title)
    n = strip.shape[1] // strip.shape[0]
    for k in range(1, n):
        ax.axvline(k * strip.shape[0] - 0.5, color="tab:red", lw=1)
    fig.tight_layout()
    return fig


def plot_validation(results: Mapping[str, Mapping[str, np.ndarray]],
                    summaries: Mapping[str, Mapping[str, float]]) -> plt.Figure:
    """The paper's Fig. 6a-b: FE-measured against target ε_f per data set (scatter with the
    identity and the 20 % line) and box plots per target."""
    names = list(results)
    fig, axes = plt.subplots(2, len(names), figsize=(3.3 * len(names), 6.4), squeeze=False)
    for j, name in enumerate(names):
        t, a = results[name]["target"], results[name]["actual"]
        s = summaries[name]
        ax = axes[0, j]
        jitter = (np.random.default_rng(0).random(len(t)) - 0.5) * 0.02
        ax.scatter(t + jitter, a, s=10, alpha=0.6, color=_DATASET_COLOURS.get(name, "k"))
        top = max(np.nanmax(a) if np.isfinite(a).any() else 1, t.max()) * 1.05
        ax.plot([0, top], [0, top], "k-", lw=0.8, label="actual = target")
        ax.plot([0, top], [0, 0.2 * top], "r:", lw=0.8, label="20 % of target")
        ax.set_xlabel("target ε_f")
        ax.set_ylabel("FE ε_f")
        ax.set_title(f"{name}: ρ = {s['rho']:.2f}, median rel. error "
                     f"{100 * s['median_relative_error']:.0f} %", fontsize=9)
        targets = np.unique(t)
        ax = axes[1, j]
        ax.boxplot([a[(t == v) & np.isfinite(a)] for v in targets], positions=np.arange(len(targets)),
                   showmeans=True, medianprops=dict(color="k"))
        ax.scatter(np.arange(len(targets)), targets, marker="x", color="r", label="target", zorder=3)
        ax.set_xticks(np.arange(len(targets)), [f"{v:g}" for v in targets])
        ax.set_xlabel("target ε_f")
        ax.set_ylabel("FE ε_f")
    axes[0, 0].legend(fontsize=7)
    axes[1, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_under_target(images: np.ndarray, labels: Sequence[str], n_max: int = 12) -> plt.Figure:
    """The paper's Fig. 6c: structures whose FE strain is under 20 % of their target."""
    n = min(len(images), n_max)
    cols = max(1, min(n, 6))
    rows = max(1, int(np.ceil(n / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.5 * rows), squeeze=False)
    for a in axes.ravel():
        a.axis("off")
    for k in range(n):
        ax = axes[k // cols, k % cols]
        ax.axis("on")
        _show(ax, images[k])
        ax.set_title(labels[k], fontsize=6.5)
    if n == 0:
        axes[0, 0].text(0.5, 0.5, "no structure under 20 % of its target", ha="center",
                        va="center", fontsize=9)
    fig.tight_layout()
    return fig
