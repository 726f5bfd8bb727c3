"""The study's cost plan: what a profile asks of every notebook, and how long it takes here.

One job: turn a profile's sizes (read from the tables the notebooks use) into an estimated wall
time per notebook and expensive stage, from per-unit costs *measured* by the study's own
benchmarks and recorded runs (:data:`UNIT_COSTS`, each with the BENCHMARKS.md / README.md number
it comes from). ``run_all.py --plan`` prints :func:`format_plan`.

Accounting: FE stages (GTN RVEs, periodic homogenization) run on ``min(n_jobs, n_cores)`` worker
processes of one BLAS thread; their costs are core-seconds, divided by the workers (ideal
scaling; the 2-worker runs they come from include this machine's contention). Everything else
(training on torch's threads, sampling, Grad-RAM, SIMP) is accounted as measured on the 2-core
development machine: it does not spread over a cluster. No GPU cost has been measured
(BENCHMARKS.md: "No GPU was lent to this task"), so the plan is CPU-only.

Scaling laws: GTN seconds per RVE are interpolated in log-log between the grids measured at
32², 64², 128² (:func:`gtn_grid_factor`, exponents ~3.6 and ~2.5); training scales linearly in
steps x batch (image-epochs); architectures that were never timed (the smoke/paper VQ-VAE and
PixelCNN) scale with their convolution compute, width² x layers (an assumption, not a
measurement); ResNet stems and Grad-RAM use the per-stem ratios measured by bench/resnet.py.
"""
from __future__ import annotations

import inspect
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from lib.profiles import Profile, get_profile

__all__ = ["UnitCost", "UNIT_COSTS", "Measured", "MEASURED_DEFAULT_MINUTES", "NOTEBOOKS",
           "StageEstimate", "gtn_grid_factor", "estimate_profile", "notebook_totals",
           "fe_cpu_hours", "format_plan"]

NOTEBOOKS = ("01_microstructures", "02_fe_fracture_labels", "03_fe_homogenization_labels",
             "04_vqvae_pixelcnn", "05_generation_validation", "06_resnet_gradram",
             "07_sensitivity_vs_voids", "08_periodic_design", "09_topology_optimization")
B, R = "BENCHMARKS.md", "README.md"


@dataclass(frozen=True)
class UnitCost:
    """One measured per-unit cost: ``value`` in ``unit``, measured where ``source`` says."""

    value: float
    unit: str
    source: str


def _u(value: float, unit: str, source: str) -> UnitCost:
    return UnitCost(float(value), unit, source)


#: The one table of measured per-unit costs (2-core AMD EPYC development machine).
UNIT_COSTS: dict[str, UnitCost] = {
    "stochastic_sample": _u(26 / 4000, "s per Part B sample on one core (generation + HDF5 write)",
        f"{B} 'Part B — stochastic database', python bench/bench_stochastic.py: \"the default "
        "profile's 4,000 samples with the HDF5 write 26 s\""),
    "homogenization": _u(0.085, "core-s per 128x128 sample and material case (4 load cases)",
        f"{B} 'Part B — periodic homogenization', python bench/homogenization.py --samples 16 "
        "--plain-samples 3 --workers: \"(b) this pipeline ... 0.085\" s/sample, one core"),
    "gtn_rve_32": _u(1455 / 800, "core-s per database RVE at 32x32 (mean)",
        f"{B} 'Part A — GTN RVE', python run_all.py --profile default --only 01,02: \"1,455 s of "
        "solver time summed over the structures\" for 800 structures"),
    "gtn_rve_64": _u(1764 / 80, "core-s per reference RVE at 64x64 (mean)",
        f"{B} 'Part A — sensitivity maps', run_all.py --profile default --only 07, "
        "void_maps_references: \"80 GTN RVEs at 64² ... sum 1,764 s\""),
    "gtn_rve_128": _u(2446 * 2 / 40, "core-s per RVE at 128x128 (wall x 2 workers / RVEs)",
        f"{B} 'Grid dependence', python bench/gtn_grid_agreement.py --grids 32 128 --per-category "
        "10 --profile default: \"128² in 2,446 s\" for 40 structures on 2 workers (median 124 s)"),
    "gtn_extra_rectangle_32": _u(5.9 * 60 * 2 / 120, "core-s per extra Rectangle RVE at 32x32",
        f"{B} 'The generative notebooks at default': \"labels of the 120 extra rectangles 5.9 min\" "
        "on 2 cores"),
    "gtn_generated_32": _u(21.1 * 60 * 2 / 480,
        "core-s per generated structure at 32x32 incl. notebook 05's own share (wall x 2 / RVEs)",
        f"{B} 'The generative notebooks at default': \"notebook 05 21.1 min (FE labels of 480 "
        "generated structures, median 4.5 s each)\""),
    "vqvae_step": _u(8.7 * 60 / 1600, "s per VQ-VAE step of 32 structures, default net, 2 threads",
        f"{B} 'The generative notebooks at default': \"VQ-VAE 8.7 min for 1,600 steps of 32 "
        "structures\" (bench/pixelcnn_sampling.py: 0.29 s per step)"),
    "pixelcnn_step": _u(8.3 * 60 / (9 * 300),
        "s per PixelCNN step of 32 code maps incl. validation, width 32 x 10 layers, 2 threads",
        f"{B} 'The generative notebooks at default': \"9 PixelCNNs 8.3 min\" at 300 steps each "
        "(the All models: 1,050 steps, 172–197 s each)"),
    "sampling_statistics": _u(180 / 9200, "s per structure sampled and described in notebook 04",
        f"{B} 'The generative notebooks at default': \"sampling and statistics ~3 min\" for "
        "16 x 200 + 6 x 1,000 = 9,200 structures"),
    "resnet_image_epoch": _u(22 * 60 / (3 * 10 * 2880),
        "s per training image and epoch, ResNet-18 standard stem, circular, incl. validation",
        f"{B}/{R}: \"Default notebook 06 on the idle 2-core machine: 7.3 + 7.3 + 7.4 = 22 min for "
        "the three cases\" (10 epochs of 2,880 training images each)"),
    "resnet_fs_image_epoch": _u(225 / (10 * 560),
        "s per training image and epoch, notebook 07's fracture-strain regressor",
        f"{B} 'Part A — sensitivity maps': \"regressor_fracture_strain | 225 | ... 10 epochs of 560 "
        "training structures\""),
    "stem_no_maxpool": _u(42.1 / 14.2, "x the standard stem's training cost (circular)",
        f"{B} 'ResNet-18', python bench/resnet.py --threads 2 --batch 16: 42.1 vs 14.2 ms/img NCHW"),
    "stem_stride1": _u(246.9 / 14.2, "x the standard stem's training cost (circular)",
        f"{B} 'ResNet-18', python bench/resnet.py --threads 2 --batch 16: 246.9 vs 14.2 ms/img"),
    "zero_padding": _u(12.0 / 14.2, "x the circular-padding training cost (standard stem)",
        f"{B} 'ResNet-18', python bench/resnet.py --threads 2 --batch 16: 12.0 vs 14.2 ms/img"),
    "gradram_standard": _u(5.9e-3, "s per Grad-RAM pass (one map, one shift), standard stem",
        f"{B} 'ResNet-18', python bench/resnet.py: Grad-RAM 5.9 ms/map (standard, circular)"),
    "gradram_no_maxpool": _u(13.3e-3, "s per Grad-RAM pass, no_maxpool stem",
        f"{B} 'ResNet-18', python bench/resnet.py: Grad-RAM 13.3 ms/map (no_maxpool, circular)"),
    "gradram_stride1": _u(44.8e-3, "s per Grad-RAM pass, stride1 stem",
        f"{B} 'ResNet-18', python bench/resnet.py: Grad-RAM 44.8 ms/map (stride1, circular)"),
    "to_iteration_128": _u(44.3 / 203, "s per SIMP iteration at 128x128 on one core",
        f"{B} 'Topology optimization', python bench/topology_optimization.py: 22.4 + 16.2 + 5.7 s "
        "for 95 + 78 + 30 iterations (other core busy, ~10 % high)"),
    "to_cap_share": _u(710 / (9 * 150), "share of the iteration cap (betas x iterations) used",
        f"{B} 'Starts at default': 86, 85, 96, 93, 106, 79, 30, 30, 105 iterations of a 5 x 30 cap"),
    "overhead_06": _u(183, "s of notebook 06 with every stage cached",
        f"{B}: \"notebook 06 rerun on the cached weights: 183 s for the whole notebook\""),
    "overhead_07": _u(68, "s of notebook 07 with every stage cached",
        f"{R}: \"68 s with its stages cached\" ({B}: 68–79 s)"),
    "overhead_08": _u(23, "s of notebook 08 with every stage cached (proxy for 02, 03, 09)",
        f"{B} 'Periodic designs': \"the notebook 375 s with them and 23 s from the cache\""),
}
#: Share of the database's rectangles inside the Rectangle data set's 20-30 % window (README:
#: "Rectangle 20–30 % 165 (46 from the database + 120 generated ...)", of 200 rectangles).
RECTANGLE_WINDOW_SHARE = 46 / 200


@dataclass(frozen=True)
class Measured:
    """A measured wall time of a notebook (or a sum of notebooks) at ``default`` on 2 cores."""

    minutes: float
    source: str


#: Measured default wall times; a key joins stems with "+" when only their sum was measured.
MEASURED_DEFAULT_MINUTES: dict[str, Measured] = {
    **{nb: Measured(m, f"{R} 'Results': make study on a clean clone, notebooks 01, 02, 03, 06, 08: "
                       "0.4 + 11.3 + 5.0 + 30.6 + 6.2 min")
       for nb, m in zip(NOTEBOOKS[:3] + NOTEBOOKS[5:6] + NOTEBOOKS[7:8],
                        (0.4, 11.3, 5.0, 30.6, 6.2))},
    f"{NOTEBOOKS[3]}+{NOTEBOOKS[4]}": Measured(
        53.0, f"{R}/{B}: notebooks 04 + 05 \"≈ 32 + 21 = 53 min\" cold"),
    NOTEBOOKS[6]: Measured(24.4, f"{B}: notebook 07 \"1,461 s (24.4 min) wall\" cold"),
    NOTEBOOKS[8]: Measured(4.5, f"{B}: notebook 09 \"269 s\" at default on the cached Part B "
                                "stages (run_all.py --only 06,08,09)"),
}


@dataclass(frozen=True)
class StageEstimate:
    """One stage's work (human text) and estimated wall ``seconds``; ``parallel``: spread over
    FE workers (and a cluster), else accounted as measured on 2 cores."""

    notebook: str
    stage: str
    work: str
    seconds: float
    parallel: bool


def gtn_grid_factor(grid: int) -> float:
    """GTN cost per RVE at ``grid``² relative to 32²: log-log interpolation between the measured
    32², 64², 128² costs (exponents log2(22.05/1.82) ≈ 3.6 and log2(122.3/22.05) ≈ 2.5),
    extrapolated with the nearest segment's exponent.

    >>> round(gtn_grid_factor(32), 3), round(gtn_grid_factor(64), 1)
    (1.0, 12.1)
    """
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise ValueError(f"grid must be a positive integer, got {grid!r}")
    pts = [(math.log(g), math.log(UNIT_COSTS[f"gtn_rve_{g}"].value)) for g in (32, 64, 128)]
    x = math.log(grid)
    (x0, c0), (x1, c1) = pts[:2] if x <= pts[1][0] else pts[1:]
    return math.exp(c0 + (c1 - c0) / (x1 - x0) * (x - x0) - pts[0][1])


def _cost(name: str) -> float:
    return UNIT_COSTS[name].value


def _n_train(n: int, test: float, val: float) -> int:
    from lib.models.training import split_indices
    return len(split_indices(int(n), 0, test, val)["train"]) if n >= 2 else max(int(n), 1)


def _stem(stem: str, periodic: bool = True) -> float:
    factor = 1.0 if stem == "standard" else _cost(f"stem_{stem}")
    return factor * (1.0 if periodic else _cost("zero_padding"))


def estimate_profile(profile: Profile | str, n_cores: int | None = None,
                     gpu: bool = False) -> list[StageEstimate]:
    """Every notebook's expensive stages for ``profile`` on ``n_cores`` cores (default: all of
    this machine's), in run order. ``gpu`` has no effect: no GPU cost is measured (a warning)."""
    prof = get_profile(profile) if isinstance(profile, str) else profile
    if not isinstance(prof, Profile):
        raise ValueError(f"profile must be a Profile or a profile name, got {profile!r}")
    n_cores = (os.cpu_count() or 1) if n_cores is None else n_cores
    if isinstance(n_cores, bool) or not isinstance(n_cores, int) or n_cores < 1:
        raise ValueError(f"n_cores must be a positive integer, got {n_cores!r}")
    if gpu:
        warnings.warn("no GPU cost is measured in BENCHMARKS.md: the plan is CPU-only", stacklevel=2)
    from lib import generation as gen  # the notebooks' size tables (heavy imports: torch, SfePy)
    from lib.fe.void_maps import void_map_grid
    from lib.models.generative_training import get_generative_recipe
    from lib.models.training import CASES, STEM_STUDY, get_recipe
    from lib.sensitivity_study import get_sensitivity_sizes
    from lib.topology_study import START_KINDS, get_to_sizes, xai_results

    workers = n_cores if prof.n_jobs < 1 else min(prof.n_jobs, n_cores)
    out: list[StageEstimate] = []

    def add(nb: int, stage: str, work: str, seconds: float, units: int | None = None) -> None:
        w = max(1, min(workers, units)) if units is not None else 1  # units: FE tasks
        out.append(StageEstimate(NOTEBOOKS[nb - 1], stage, work, seconds / w, units is not None))

    g, gg = prof.fe_grid, f"{prof.fe_grid}x{prof.fe_grid}"
    gtn = gtn_grid_factor(g)
    # 01: databases (the dual-phase generator is not timed: "a few seconds" for 800, README)
    add(1, "stochastic_database", f"{prof.n_stochastic} Part B samples",
        prof.n_stochastic * _cost("stochastic_sample"))
    # 02: GTN labels
    add(2, "fracture_labels", f"{prof.n_dual_phase} GTN RVEs at {gg}",
        prof.n_dual_phase * _cost("gtn_rve_32") * gtn, prof.n_dual_phase)
    add(2, "analysis", "criteria, figures (proxy: 08 cached)", _cost("overhead_08"))
    # 03: homogenization labels, 2 material cases per sample
    add(3, "homogenization_labels", f"{prof.n_stochastic} samples x 2 material cases at 128x128",
        prof.n_stochastic * 2 * _cost("homogenization"), prof.n_stochastic)
    add(3, "analysis", "checks, figures (proxy: 08 cached)", _cost("overhead_08"))
    # 04: extra labels, VQ-VAE, 9 PixelCNNs, sampling
    rec, ref = get_generative_recipe(prof.name), get_generative_recipe("default")
    pix = (rec.pixelcnn_width / ref.pixelcnn_width) ** 2 * rec.pixelcnn_layers / ref.pixelcnn_layers
    vq = (rec.vqvae.channels[0] / ref.vqvae.channels[0]) ** 2
    if rec.n_extra_rectangle:
        add(4, "extra_rectangle_labels", f"{rec.n_extra_rectangle} GTN RVEs at {gg}",
            rec.n_extra_rectangle * _cost("gtn_extra_rectangle_32") * gtn, rec.n_extra_rectangle)
    add(4, "vqvae", f"{rec.vqvae_steps} steps of {rec.vqvae_batch}, channels {rec.vqvae.channels}",
        rec.vqvae_steps * _cost("vqvae_step") * vq * rec.vqvae_batch / ref.vqvae_batch)
    share = _n_train(prof.n_dual_phase, 0.2, 0.125) / prof.n_dual_phase
    size = {"All": prof.n_dual_phase, "Random": prof.n_dual_phase / 4, "Ellipse": prof.n_dual_phase / 4,
            "Rectangle": prof.n_dual_phase / 4 * RECTANGLE_WINDOW_SHARE + rec.n_extra_rectangle}
    steps = {d: rec.steps_for(int(round(share * n))) for d, n in size.items()}
    plan = [d for kind in gen.MODEL_KINDS for d in (("All",) if kind == "fsts" else gen.DATASETS)]
    step_s = _cost("pixelcnn_step") * pix * rec.pixelcnn_batch / ref.pixelcnn_batch
    add(4, "pixelcnns", f"{len(plan)} models, {sum(steps[d] for d in plan)} steps of {rec.pixelcnn_batch}, "
        f"width {rec.pixelcnn_width} x {rec.pixelcnn_layers}", sum(steps[d] for d in plan) * step_s)
    sizes = gen.get_generation_sizes(prof)
    n_sampled = sum(len(gen.PAPER_TARGETS[d]) for d in gen.DATASETS) * sizes.n_per_target \
        + len(gen.FIG5_TARGETS) * sizes.n_fig5
    add(4, "sampling_statistics", f"{n_sampled} structures sampled, described, drawn",
        n_sampled * _cost("sampling_statistics") * pix)
    # 05: FE validation of generated structures (the unit includes the notebook's own share)
    n_val = sum(len(gen.PAPER_TARGETS[d]) for d in sizes.validation_datasets) * sizes.n_validation
    add(5, "validation_labels", f"{n_val} generated structures, GTN at {gg}",
        n_val * _cost("gtn_generated_32") * gtn, n_val)
    # 06: three cases, the stem study, Grad-RAM
    rr = get_recipe(prof)
    n_tr = _n_train(prof.n_stochastic, rr.test_fraction, rr.val_fraction)
    per_case = 2 if rr.grouping == "per_output" else 1
    img_s = _cost("resnet_image_epoch")
    for case in CASES:
        add(6, f"regressor_{case}", f"{per_case} ResNet-18 ({rr.stem}), {rr.epochs[case]} epochs of {n_tr}",
            per_case * rr.epochs[case] * n_tr * img_s * _stem(rr.stem))
    st = STEM_STUDY[prof.name]
    n_st = _n_train(st["n_samples"], rr.test_fraction, rr.val_fraction)
    add(6, "stem_study", f"{len(st['variants'])} variants, {st['epochs']} epochs of {n_st}",
        sum(st["epochs"] * n_st * img_s * _stem(s, p) for s, p in st["variants"]))
    add(6, "gradram_analysis", "Grad-RAM, sanity checks, figures (cached)", _cost("overhead_06"))
    # 07: void maps, regressor, second PixelCNN
    ss = get_sensitivity_sizes(prof)
    n_ref, vg = 4 * ss.n_per_category, void_map_grid(prof)
    add(7, "void_maps_references", f"{n_ref} GTN RVEs at {vg}x{vg}",
        n_ref * _cost("gtn_rve_32") * gtn_grid_factor(vg), n_ref)
    n_fs = _n_train(prof.n_dual_phase, 0.2, 0.125)
    add(7, "regressor_fracture_strain", f"ResNet-18 ({rr.stem}), {rr.epochs['case1']} epochs of {n_fs}",
        rr.epochs["case1"] * n_fs * _cost("resnet_fs_image_epoch") * _stem(rr.stem))
    add(7, "pixelcnn_fs_all_seed7", f"{steps['All']} steps of {rec.pixelcnn_batch}", steps["All"] * step_s)
    add(7, "analysis", "Δ, Grad-RAM, scores, figures (cached)", _cost("overhead_07"))
    # 08: designs per case: Grad-RAM (serial) and FE (parallel)
    nb08 = {k: v.default for k, v in inspect.signature(xai_results).parameters.items()}  # = 08's
    n_out = max(1, math.ceil(nb08["outlier_fraction"] * prof.n_stochastic))
    n_src = n_out + min(nb08["n_moderate"], n_out)
    n_des = len(CASES) * n_src * len(nb08["thresholds"])
    shifts = rr.gradram_shift_average ** 2
    add(8, "designs_gradram", f"{len(CASES)} x {n_src} sources x 2 maps x {shifts} shifts",
        len(CASES) * n_src * 2 * shifts * _cost(f"gradram_{rr.stem}"))
    add(8, "designs_fe", f"<= {n_des} designs homogenized at 128x128", n_des * _cost("homogenization"), n_des)
    add(8, "analysis", "metrics, replays, figures (cached)", _cost("overhead_08"))
    # 09: SIMP runs, one core each
    to = get_to_sizes(prof)
    cap = len(to.settings.betas) * to.settings.iterations_per_beta
    n_runs, iters = len(CASES) * len(START_KINDS), _cost("to_cap_share") * cap
    add(9, "simp_runs", f"{n_runs} runs x ~{iters:.0f} iterations at {to.grid}x{to.grid}",
        n_runs * iters * _cost("to_iteration_128") * (to.grid / 128) ** 2)
    add(9, "analysis", "08's cached stages, figures (proxy: 08 cached)", _cost("overhead_08"))
    return out


def notebook_totals(estimates: list[StageEstimate]) -> dict[str, float]:
    """Estimated seconds per notebook stem, in notebook order."""
    totals: dict[str, float] = {}
    for e in estimates:
        totals[e.notebook] = totals.get(e.notebook, 0.0) + e.seconds
    return totals


def fe_cpu_hours(profile: Profile | str) -> float:
    """CPU-hours of the parallel FE stages (core-seconds / 3600): divide by a cluster's cores."""
    return sum(e.seconds for e in estimate_profile(profile, n_cores=1) if e.parallel) / 3600


def _hm(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def format_plan(profile: Profile | str, n_cores: int | None = None,
                notebooks: Sequence[str] | None = None) -> str:
    """A readable table (notebook, stage, work, estimated time), a total and a closing line
    saying whether the profile needs a cluster or a GPU. ``notebooks``: stems to show (default
    all; the earlier notebooks' stages are then assumed cached); unknown stems are named."""
    keep = set(NOTEBOOKS if notebooks is None else notebooks)
    est = [e for e in estimate_profile(profile, n_cores) if e.notebook in keep]
    name = profile if isinstance(profile, str) else profile.name
    cores = (os.cpu_count() or 1) if n_cores is None else n_cores
    lines = [f"Cost plan, profile {name!r}, {cores} core(s): FE on the workers, training and the "
             "rest as measured on 2 cores (BENCHMARKS.md)", "",
             f"{'notebook':<28} {'stage':<26} {'work':<58} {'time':>9}", "-" * 124]
    for e in est:
        lines.append(f"{e.notebook:<28} {e.stage:<26} {e.work:<58} {_hm(e.seconds):>9}")
    lines.append("-" * 124)
    for nb, s in notebook_totals(est).items():
        lines.append(f"{nb:<28} {'(notebook total)':<26} {'':<58} {_hm(s):>9}")
    total = sum(e.seconds for e in est)
    fe = sum(e.seconds for e in est if e.parallel)
    lines.append(f"{'TOTAL':<28} {'':<26} {'':<58} {_hm(total):>9}")
    unknown = sorted(keep - set(NOTEBOOKS))
    if unknown:
        lines.append(f"not estimated (no cost model in lib/cost_plan.py): {', '.join(unknown)}")
    cpu_h = sum(e.seconds for e in estimate_profile(profile, 1) if e.parallel and e.notebook in keep) / 3600
    serial_h = (total - fe) / 3600
    if total > 12 * 3600:
        lines.append(f"Needs a cluster or GPU: {_hm(total)} on this machine (> 12 h). The parallel FE "
                     f"part is {cpu_h:.1f} CPU-hours (divide by your cluster's cores); training and the "
                     f"rest take {serial_h:.1f} h as measured on 2 CPU cores and do not spread over a "
                     "cluster (no GPU cost measured yet).")
    else:
        lines.append(f"Fits this machine: {_hm(total)} (<= 12 h); parallel FE {cpu_h:.2f} CPU-hours.")
    return "\n".join(lines)
