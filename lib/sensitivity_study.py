"""Which explanation finds the physics? Δ and Grad-RAM against GTN void maps (SPEC A6, notebook 07).

The study, composed from the stages below it:

* **References**: ``n_per_category`` structures per category of the dual-phase database,
  drawn at random from the *test* part of the generative models' split (held out from the
  VQ-VAE's labelled part, every PixelCNN and the ResNet-18 below).
* **Void maps**: the GTN RVE rerun on each reference at the comparison grid
  (:func:`lib.fe.void_maps.void_maps`: 64² at ``default``), the map at the state of the
  condition (first increment past the 20 % load drop) and at the f̄_crit onset.
* **Δ** (:mod:`lib.explain.sensitivity`): the FS PixelCNN of the All data set, conditioned on
  each reference's own label; the paper's step 0.01 on its strain scale is 0.01 on ours too
  (the generative notebooks map the paper's targets by identity, :mod:`lib.generation`),
  divided by the condition's range for the normalized model input.
* **Grad-RAM**: a ResNet-18 regressor of the same label (the load-drop strain) trained on the
  All data set's training part with the study's recipe (:func:`lib.models.training.
  property_regressor`), explained by :mod:`lib.explain.gradram` on its last block with the
  recipe's shift averaging and the training structures' mean activations as reference. The
  sign compared is −FS: a void map marks where fracture starts, i.e. what *lowers* the
  fracture strain; +FS is reported beside it.
* **Baselines** (:mod:`lib.explain.map_comparison`): random maps, the ferrite-side interface
  proximity and the local martensite density around ferrite.
* **Scores**: Spearman ρ and top-10 % IoU of every map with the void map, on the void map's
  grid, per category.
* **Sanity checks**: Δ from the PixelCNN with re-initialized weights, and from a second
  PixelCNN trained with another seed.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lib.explain import map_comparison as mc
from lib.explain.gradram import gradram_maps, reference_activations
from lib.explain.sensitivity import reinitialized_copy, sensitivity_maps
from lib.fe.void_maps import void_map_grid, void_maps
from lib.generation import (DUAL_PHASE_CATEGORIES, GenerativeModels, dataset_members,
                            generative_models, pixelcnn_with_seed)
from lib.generation_analysis import describe
from lib.models.training import TrainedProperty, get_recipe, property_regressor, regression_metrics
from lib.profiles import Profile, get_profile
from lib.stages import load_stage, read_key

__all__ = ["PAPER_STEP", "SensitivitySizes", "get_sensitivity_sizes", "reference_indices",
           "SensitivityStudy", "sensitivity_study", "figure_rows", "format_score_table",
           "grid_agreement", "verdict_rows", "format_verdict", "sanity_rows", "format_sanity",
           "METHODS", "LOCALIZED", "band_effect", "scale_rows", "format_scale"]

#: The paper's step of the condition for Δ, on its (and, by the identity mapping, our) strain scale.
PAPER_STEP = 0.01
#: A void map counts as localized (voids concentrated, not spread over the cell) when its
#: coefficient of variation (std / mean over the elements) is at least this.
LOCALIZED = 1.0
#: The maps compared with the void map, in table order.
METHODS = ("|Δ|", "Grad-RAM −FS", "Grad-RAM +FS", "interface", "martensite density", "random")


@dataclass(frozen=True)
class SensitivitySizes:
    """Sizes of notebook 07 per profile: references per category, the second PixelCNN's seed,
    the hot-spot fraction, the baselines' widths (pixels) and the Δ steps of the step check."""

    n_per_category: int
    second_seed: int = 7
    top: float = 0.1
    interface_length: float = 2.0
    density_sigma: float = 3.0
    check_steps: tuple[float, ...] = (0.003, 0.03, 0.1)
    n_reference_images: int = 256


_SIZES = {"smoke": SensitivitySizes(n_per_category=1, n_reference_images=16),
          "default": SensitivitySizes(n_per_category=20),
          "paper": SensitivitySizes(n_per_category=50)}


def get_sensitivity_sizes(profile: Profile | str) -> SensitivitySizes:
    """The :class:`SensitivitySizes` of a profile."""
    name = getattr(profile, "name", profile)
    if name not in _SIZES:
        raise ValueError(f"unknown profile {name!r}: choose one of {sorted(_SIZES)}")
    return _SIZES[name]


def reference_indices(models: GenerativeModels, n_per_category: int, seed: int = 0) -> np.ndarray:
    """Pool rows of the references: ``n_per_category`` per database category, drawn at random
    (seeded) from the All data set's test part, grouped by category in
    :data:`DUAL_PHASE_CATEGORIES` order. A category with fewer test structures than that (a
    small profile, whose per-structure split can leave a category out of the test part) is
    topped up from the validation part, which no model was fitted on either."""
    if isinstance(n_per_category, bool) or not isinstance(n_per_category, (int, np.integer)) \
            or n_per_category < 1:
        raise ValueError(f"n_per_category must be a positive integer, got {n_per_category!r}")
    pool = models.pool
    members = dataset_members(pool, "All")
    test, val = pool.indices(members, "test"), pool.indices(members, "val")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 18]))
    out = []
    for code, name in enumerate(DUAL_PHASE_CATEGORIES):
        rows = test[pool.category[test] == code]
        if len(rows) >= n_per_category:
            out.append(np.sort(rng.choice(rows, n_per_category, replace=False)))
            continue
        extra = val[pool.category[val] == code]
        if len(rows) + len(extra) < n_per_category:
            raise ValueError(f"category {name} has {len(rows)} test and {len(extra)} validation "
                             f"structures, fewer than n_per_category = {n_per_category}")
        top_up = rng.choice(extra, n_per_category - len(rows), replace=False)
        out.append(np.sort(np.concatenate([rows, top_up])))
    return np.concatenate(out)


@dataclass
class SensitivityStudy:
    """Everything notebook 07 shows. Maps are ``(n, 128, 128)`` unless said otherwise;
    ``void``/``void_onset`` ``(n, g, g)``; ``scores[state][method]`` = compare_maps output
    for state ``load_drop``, ``onset`` and ``load_drop_ferrite`` (ferrite elements only)."""

    profile: str
    sizes: SensitivitySizes
    rows: np.ndarray
    category: np.ndarray
    images: np.ndarray
    strain: np.ndarray
    void: np.ndarray
    void_onset: np.ndarray
    void_labels: dict[str, np.ndarray]
    label_void_map: np.ndarray
    maps: dict[str, np.ndarray]
    delta: np.ndarray
    step: float
    scores: dict[str, dict[str, dict[str, np.ndarray]]]
    sanity: dict[str, dict[str, np.ndarray]]
    step_check: dict[float, dict[str, np.ndarray]]
    regressor: TrainedProperty
    regressor_r2: float
    band: np.ndarray
    localization: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def grid(self) -> int:
        return int(self.void.shape[1])


def _gradram(reg: TrainedProperty, images: np.ndarray, train_images: np.ndarray,
             profile: str) -> dict[str, np.ndarray]:
    """Grad-RAM maps of −FS and +FS, both measured from the training structures' mean
    activation (computed once), with the profile's layer and shift averaging."""
    recipe = get_recipe(profile)
    reference = reference_activations(reg.model, train_images, recipe.gradram_layer)
    return {f"Grad-RAM {name}": gradram_maps(reg.model, images, output=0, layer=recipe.gradram_layer,
                                             sign=sign, reference=reference,
                                             shift_average=recipe.gradram_shift_average)
            for name, sign in (("−FS", -1.0), ("+FS", 1.0))}


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([mc.map_spearman(x, y) for x, y in zip(a, b)])


def sensitivity_study(profile: Profile | str, seed: int = 0, n_jobs: int | None = None,
                      scheduler_address: str | None = None, device: torch.device | str | None = None,
                      progress: bool = True) -> SensitivityStudy:
    """Run (or load the cached stages of) the whole comparison of the module docstring."""
    prof = get_profile(profile) if isinstance(profile, str) else profile
    if n_jobs is not None:
        prof = get_profile(prof.name, n_jobs=n_jobs)
    sizes = get_sensitivity_sizes(prof)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    models = generative_models(prof, kinds=("fs",), datasets=("All",), device=device,
                               progress=progress, scheduler_address=scheduler_address)
    pool = models.pool
    rows = reference_indices(models, sizes.n_per_category, seed)
    images = pool.images[rows]
    seconds["models"] = time.perf_counter() - t0

    # --- GTN void maps on the comparison grid -------------------------------------------
    t0 = time.perf_counter()
    grid = void_map_grid(prof)
    upstream = [read_key(models.stage_paths["database"]), read_key(models.stage_paths["labels"])]
    vm = load_stage(void_maps(prof, images, "void_maps_references", upstream, grid,
                              scheduler_address=scheduler_address, progress=progress))
    labels = load_stage(models.stage_paths["labels"])
    label_void_map = np.asarray(labels["void_map"])[rows]  # database rows = pool rows (source 0)
    seconds["void_maps"] = time.perf_counter() - t0
    void = np.nan_to_num(vm["load_drop_void_map"], nan=0.0)
    onset = np.nan_to_num(vm["void_map"], nan=0.0)

    # --- Δ of the FS PixelCNN ---------------------------------------------------------------
    t0 = time.perf_counter()
    pixelcnn = models.pixelcnns[("fs", "All")]
    cond = models.scale.normalize(pool.strain[rows])[:, 0]
    strain_range = float(models.scale.hi[0] - models.scale.lo[0])  # normalized condition = strain / range
    step = PAPER_STEP / strain_range
    result = sensitivity_maps(pixelcnn, models.vqvae, images, cond, step)
    delta = result["delta"]
    maps: dict[str, np.ndarray] = {"|Δ|": np.abs(delta)}
    seconds["delta"] = time.perf_counter() - t0

    # --- Grad-RAM of a ResNet-18 FS regressor -------------------------------------------------
    t0 = time.perf_counter()
    members = dataset_members(pool, "All")
    split = pool.member_split(members)
    reg = property_regressor(prof.name, "regressor_fracture_strain", pool.images[members],
                             pool.strain[members], split, upstream=upstream,
                             description={"target": "load_drop_strain", "dataset": "All"},
                             device=device, progress=progress)
    test = split["test"]
    r2 = float(regression_metrics(pool.strain[members][test][:, None],
                                  reg.predict(pool.images[members][test])[:, None])["r2"][0])
    train_imgs = pool.images[members][split["train"][:sizes.n_reference_images]]
    maps.update(_gradram(reg, images, train_imgs, prof.name))
    seconds["gradram"] = time.perf_counter() - t0

    # --- baselines and scores -------------------------------------------------------------------
    maps["interface"] = mc.interface_map(images, sizes.interface_length)
    maps["martensite density"] = mc.martensite_density_map(images, sizes.density_sigma)
    maps["random"] = mc.random_maps(images.shape, seed)
    scores = {state: {m: mc.compare_maps(maps[m], v, sizes.top) for m in METHODS}
              for state, v in (("load_drop", void), ("onset", onset))}
    # where within the soft phase: ferrite elements of the void grid only
    ferrite = mc.block_average(images.astype(float), grid) < 0.5
    scores["load_drop_ferrite"] = {m: mc.compare_maps(maps[m], void, sizes.top, ferrite)
                                   for m in METHODS}

    # --- sanity checks and the step --------------------------------------------------------------
    t0 = time.perf_counter()
    random_delta = sensitivity_maps(reinitialized_copy(pixelcnn, seed), models.vqvae, images,
                                    cond, step)["delta"]
    second, _, _ = pixelcnn_with_seed(models, "fs", "All", sizes.second_seed, device, progress)
    second_delta = sensitivity_maps(second, models.vqvae, images, cond, step)["delta"]
    sanity = {
        "re-initialized PixelCNN": {"similarity": _pairwise(np.abs(delta), np.abs(random_delta)),
                                    **mc.compare_maps(np.abs(random_delta), void, sizes.top)},
        f"PixelCNN seed {sizes.second_seed}": {
            "similarity": _pairwise(np.abs(delta), np.abs(second_delta)),
            **mc.compare_maps(np.abs(second_delta), void, sizes.top)},
    }
    step_check = {}
    for s in sizes.check_steps:
        d = sensitivity_maps(pixelcnn, models.vqvae, images, cond, s / strain_range)["delta"]
        step_check[float(s)] = {"similarity": _pairwise(np.abs(delta), np.abs(d)),
                                **mc.compare_maps(np.abs(d), void, sizes.top)}
    seconds["sanity"] = time.perf_counter() - t0

    keep = ("load_drop_strain", "fracture_strain", "status", "seconds",
            "stabilization_energy_fraction", "stabilized_from")
    return SensitivityStudy(
        profile=prof.name, sizes=sizes, rows=rows, category=pool.category[rows], images=images,
        strain=pool.strain[rows], void=void, void_onset=onset,
        void_labels={k: np.asarray(vm[k]) for k in keep}, label_void_map=label_void_map,
        maps=maps, delta=delta, step=step, scores=scores, sanity=sanity, step_check=step_check,
        regressor=reg, regressor_r2=r2, band=np.array([mc.band_score(v) for v in void]),
        localization=np.array([v.std() / v.mean() if v.mean() > 0 else 0.0 for v in void]),
        seconds=seconds)


def figure_rows(study: SensitivityStudy) -> list[tuple[str, int]]:
    """The references of the paper-style figure (Figs. 7-8), chosen by rule: (caption, index).

    Long rectangle grains (the most layered rectangle structure), clustered rectangles (the
    most heterogeneous one), regular ellipses (the least heterogeneous ellipse structure), a
    partial laminate (the most layered reference that is not a complete laminate) and, of the
    references whose void map is localized (coefficient of variation >= ``LOCALIZED``), the
    one most dominated by straight bands (:func:`lib.explain.map_comparison.band_score`).
    """
    d = describe(study.images)
    cat = study.category
    out: list[tuple[str, int]] = []

    def pick(caption: str, mask: np.ndarray, score: np.ndarray, largest: bool = True) -> None:
        idx = np.nonzero(mask & ~np.isin(np.arange(len(cat)), [i for _, i in out]))[0]
        if len(idx):
            out.append((caption, int(idx[np.argmax(score[idx]) if largest else np.argmin(score[idx])])))

    rect, ell = DUAL_PHASE_CATEGORIES.index("rectangle"), DUAL_PHASE_CATEGORIES.index("ellipse")
    pick("long rectangle grains", cat == rect, d["laminarity_any"])
    pick("clustered rectangles", cat == rect, d["heterogeneity"])
    pick("regular ellipses", cat == ell, d["heterogeneity"], largest=False)
    pick("partial laminate", ~d["complete_laminate"], d["laminarity_any"])
    pick("long-range band in the void map", study.localization >= LOCALIZED, study.band)
    return out


def format_score_table(study: SensitivityStudy, state: str = "load_drop",
                       methods: Sequence[str] = METHODS) -> str:
    """Markdown: per category and overall, mean ± sd of Spearman ρ and top-10 % IoU of each map."""
    rows = mc.summarize_scores({m: study.scores[state][m] for m in methods}, study.category,
                               DUAL_PHASE_CATEGORIES)
    groups = [*DUAL_PHASE_CATEGORIES, "all"]
    head = "| map | " + " | ".join(f"{g} ρ | {g} IoU" for g in groups) + " |"
    lines = [head, "|---|" + "---|---|" * len(groups)]
    for m in methods:
        cells = []
        for g in groups:
            r = next((r for r in rows if r["group"] == g and r["method"] == m), None)
            cells += ["–", "–"] if r is None else [
                f"{r['spearman_mean']:+.2f} ± {r['spearman_sd']:.2f}",
                f"{r['iou_mean']:.2f} ± {r['iou_sd']:.2f}"]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def grid_agreement(study: SensitivityStudy) -> np.ndarray:
    """Per reference, Spearman ρ of the labels' void map (``profile.fe_grid``², f̄_crit onset)
    with the finer onset map block-averaged onto that grid: how much the grid moves the map."""
    coarse = np.asarray(study.label_void_map, float)
    fine = mc.block_average(study.void_onset, coarse.shape[1]) if coarse.shape[1] < study.grid \
        else study.void_onset
    return np.array([mc.map_spearman(a, b) if np.isfinite(a).all() else np.nan
                     for a, b in zip(coarse, fine)])


def verdict_rows(study: SensitivityStudy, state: str = "load_drop",
                 baselines: Sequence[str] = ("interface", "martensite density")) -> list[dict[str, Any]]:
    """Per category and overall: each explanation's mean Spearman ρ, the best geometry
    baseline's, and the share of references where the explanation's ρ beats that baseline's."""
    s = study.scores[state]
    out = []
    for code, name in [*enumerate(DUAL_PHASE_CATEGORIES), (None, "all")]:
        sel = np.ones(len(study.category), bool) if code is None else study.category == code
        best = max(baselines, key=lambda b: float(s[b]["spearman"][sel].mean()))
        for method in ("|Δ|", "Grad-RAM −FS"):
            rho = s[method]["spearman"][sel]
            base = s[best]["spearman"][sel]
            out.append({"group": name, "method": method, "rho": float(rho.mean()),
                        "baseline": best, "baseline_rho": float(base.mean()),
                        "beats_share": float((rho > base).mean()),
                        "iou": float(s[method]["iou"][sel].mean()),
                        "baseline_iou": float(s[best]["iou"][sel].mean())})
    return out


def format_verdict(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of :func:`verdict_rows`."""
    lines = ["| group | map | ρ | best geometry baseline | its ρ | references where the map's ρ is higher "
             "| IoU | baseline IoU |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['group']} | {r['method']} | {r['rho']:+.2f} | {r['baseline']} "
                     f"| {r['baseline_rho']:+.2f} | {100 * r['beats_share']:.0f} % | {r['iou']:.2f} "
                     f"| {r['baseline_iou']:.2f} |")
    return "\n".join(lines)


def sanity_rows(study: SensitivityStudy) -> list[dict[str, Any]]:
    """The Δ sanity checks and the step check: Spearman ρ of each variant's |Δ| with the
    trained model's |Δ| (``similarity``) and with the void map, mean ± sd over references."""
    base = study.scores["load_drop"]["|Δ|"]
    rows = [{"variant": f"trained FS PixelCNN, step {PAPER_STEP:g}", "similarity": 1.0,
             "similarity_sd": 0.0, "rho": float(base["spearman"].mean()),
             "rho_sd": float(base["spearman"].std()), "iou": float(base["iou"].mean())}]
    variants = [*study.sanity.items(),
                *((f"trained, step {s:g}", v) for s, v in study.step_check.items())]
    for name, v in variants:
        rows.append({"variant": name, "similarity": float(v["similarity"].mean()),
                     "similarity_sd": float(v["similarity"].std()),
                     "rho": float(v["spearman"].mean()), "rho_sd": float(v["spearman"].std()),
                     "iou": float(v["iou"].mean())})
    return rows


def format_sanity(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of :func:`sanity_rows`."""
    lines = ["| Δ from | ρ with the trained model's |Δ| | ρ with the void map | IoU with the void map |",
             "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['similarity']:+.2f} ± {r['similarity_sd']:.2f} "
                     f"| {r['rho']:+.2f} ± {r['rho_sd']:.2f} | {r['iou']:.2f} |")
    return "\n".join(lines)


def band_effect(study: SensitivityStudy, method: str = "|Δ|") -> tuple[float, int]:
    """Spearman ρ, over the references with a localized void map, between the void map's band
    score and ``method``'s agreement (ρ) with it (negative: the map misses bands), and n."""
    sel = study.localization >= LOCALIZED
    rho = study.scores["load_drop"][method]["spearman"]
    if sel.sum() < 3:
        return float("nan"), int(sel.sum())
    return mc.map_spearman(study.band[sel], rho[sel]), int(sel.sum())


def scale_rows(study: SensitivityStudy, methods: Sequence[str] = METHODS,
               factors: Sequence[int] = (1, 2, 4, 8)) -> list[dict[str, Any]]:
    """How the verdict depends on the comparison scale: mean Spearman ρ over all references of
    each map with the load-drop void map, both block-averaged onto ``grid / factor``."""
    rows = []
    for f in factors:
        if study.grid % f or study.grid // f < 2:
            continue
        g = study.grid // f
        void = mc.block_average(study.void, g)
        rows.append({"grid": g, **{m: float(mc.compare_maps(study.maps[m], void, study.sizes.top)
                                            ["spearman"].mean()) for m in methods}})
    return rows


def format_scale(rows: Sequence[Mapping[str, Any]], methods: Sequence[str] = METHODS) -> str:
    """Markdown table of :func:`scale_rows`."""
    lines = ["| compared on | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for r in rows:
        lines.append(f"| {r['grid']}² | " + " | ".join(f"{r[m]:+.2f}" for m in methods) + " |")
    return "\n".join(lines)
