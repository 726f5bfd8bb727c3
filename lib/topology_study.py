"""How good are the XAI designs? Topology optimization and the limits beside them (SPEC B6, notebook 09).

The study, composed from the stages below it:

* **What we compare**: per case, the best database sample, the best balanced XAI design of
  notebook 08 (the same cached stages, rebuilt with notebook 08's settings by
  :func:`xai_results`), the TO optimum and the analytic limits at the white fraction 0.395.
* **TO** (:mod:`lib.design.topology_optimization`): SIMP + MMA on the same periodic pixel FE,
  from several starts (a perturbed uniform field, a smooth random field, a structured field —
  one centred disc, the HS-lower-bound geometry of an isolated inclusion — and the best XAI
  design, the paper's warm start). The best binary result is relabelled by the study's
  homogenization (one element per pixel at 128²) and kept only if its fraction is 0.39–0.40
  and |X − Y| < 10 %.
* **Limits** (:mod:`lib.fe.bounds`): isotropic cells — HS bounds on E and ν; any cell — one
  direction's stiffness at most 1/(⟨D⟩⁻¹)₁₁; square-symmetric cells — Levin + HS bounds on α.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lib.design import topology_optimization as to
from lib.design.periodic_design import (best_designs, design_metrics, design_stage, is_balanced,
                                        moderate_samples, weaker_direction)
from lib.explain.gradram import select_outliers
from lib.fe.bounds import directional_stiffness_ceiling, isotropic_bounds, thermal_expansion_bounds
from lib.explain.map_comparison import block_average
from lib.fe.homogenization import MATERIAL_CASES
from lib.fe.labeling import homogenization_labels, homogenize_batch
from lib.microstructures.stochastic import stochastic_database
from lib.models.training import CASES, case_targets, get_recipe, trained_case
from lib.profiles import Profile, get_profile
from lib.stages import load_stage, read_key

__all__ = ["TOSizes", "get_to_sizes", "START_KINDS", "starting_field", "xai_results",
           "CaseRuns", "run_case", "limits", "comparison_rows", "format_comparison",
           "warm_start_rows", "format_warm_start", "expansion_bound_gap"]

#: The starts of every case, in table order (``xai`` is the paper's warm start).
START_KINDS = ("uniform", "random", "structured", "xai")


@dataclass(frozen=True)
class TOSizes:
    """Notebook 09 per profile: the TO grid (the designs are relabelled at the image size) and
    the SIMP settings."""

    grid: int
    settings: to.TOSettings = to.TOSettings()


_SIZES = {"smoke": TOSizes(32, to.TOSettings(radius=1.5, penalties=(1.0, 3.0), betas=(1.0, 4.0),
                                             iterations_per_beta=8)),
          "default": TOSizes(128),
          "paper": TOSizes(128, to.TOSettings(betas=(1.0, 2.0, 4.0, 8.0, 16.0, 32.0),
                                              iterations_per_beta=60))}


def get_to_sizes(profile: Profile | str) -> TOSizes:
    """The :class:`TOSizes` of a profile."""
    name = getattr(profile, "name", profile)
    if name not in _SIZES:
        raise ValueError(f"unknown profile {name!r}: choose one of {sorted(_SIZES)}")
    return _SIZES[name]


def _resample(img: np.ndarray, size: int) -> np.ndarray:
    """Block mean (down) or repetition (up) of a square field onto ``size``²."""
    n = img.shape[0]
    if size == n:
        return img.astype(float)
    if n % size == 0:
        return block_average(img, size)[0]
    if size % n == 0:
        return np.kron(img, np.ones((size // n, size // n)))
    raise ValueError(f"cannot resample {n}² onto {size}²: one must divide the other")


def starting_field(kind: str, size: int, fraction: float = 0.395, seed: int = 0,
                   design: np.ndarray | None = None) -> np.ndarray:
    """Design variables ``(size, size)`` in [0, 1] of a start (:data:`START_KINDS`): ``uniform``
    (the fraction plus a ±0.05 smooth perturbation), ``random`` (a smooth random field with the
    fraction as its mean), ``structured`` (one centred disc of the white phase at the fraction),
    ``xai`` (``design``, a binary cell, resampled onto the grid)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 19]))
    if kind == "uniform":
        noise = to.density_filter(rng.standard_normal((size, size)), max(1.5, size / 32))
        return np.clip(fraction + 0.05 * noise / np.abs(noise).max(), 0, 1)
    if kind == "random":
        field_ = to.density_filter(rng.random((size, size)), max(1.5, size / 16))
        field_ = (field_ - field_.min()) / max(np.ptp(field_), 1e-12)
        return np.clip(field_ + (fraction - field_.mean()), 0, 1)
    if kind == "structured":
        r = np.hypot(*(np.indices((size, size)) - (size - 1) / 2))
        return (r <= size * np.sqrt(fraction / np.pi)).astype(float)
    if kind == "xai":
        if design is None:
            raise ValueError("the xai start needs the design (a binary cell)")
        return np.clip(_resample(np.asarray(design, float), size), 0, 1)
    raise ValueError(f"unknown start {kind!r}: choose one of {START_KINDS}")


def xai_results(profile: Profile | str, thresholds: Sequence[float] = (0.3, 0.5, 0.7),
                outlier_fraction: float = 0.1, n_moderate: int = 40, fraction: float = 0.395,
                n_reference: int = 1024) -> dict[str, dict[str, Any]]:
    """Per case: the database values ``(n, 2)``, the goal, the images, and notebook 08's designs
    and metrics — rebuilt with notebook 08's default parameters, so its cached stages load."""
    prof = get_profile(profile) if isinstance(profile, str) else profile
    recipe = get_recipe(prof)
    database_path = stochastic_database(prof)
    labels_path = homogenization_labels(prof, database_path)
    images = load_stage(database_path)["images"]
    labels = load_stage(labels_path)
    out = {}
    for name in CASES:
        tc = trained_case(prof.name, name, database_path, labels_path, recipe=recipe)
        values = case_targets(labels, tc.case)
        outliers = select_outliers(values, tc.case.goal, outlier_fraction)
        sources = {"outliers": outliers,
                   "moderate": moderate_samples(values, tc.case.goal, min(n_moderate, len(outliers)))}
        reference = images[tc.database_sample("train", n_reference)] if n_reference else None
        designs = design_stage(prof.name, tc, images, sources, list(thresholds), reference,
                               fraction, n_jobs=prof.n_jobs,
                               upstream=[read_key(database_path), read_key(labels_path)])
        metrics = design_metrics(designs["values"], values, tc.case.goal)
        out[name] = {"case": tc.case, "values": values, "images": images, "designs": designs,
                     "metrics": metrics}
    return out


@dataclass
class CaseRuns:
    """The TO runs of one case: per start the :class:`TOResult`, the binary design at the
    image size, its FE values (X, Y) in the labels' units, fraction and balance."""

    case: str
    results: dict[str, to.TOResult] = field(default_factory=dict)
    designs: dict[str, np.ndarray] = field(default_factory=dict)
    values: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0

    def best(self, goal: str) -> str:
        """The start whose kept design (fraction 0.39–0.40, balanced) scores best."""
        ok = [k for k in self.values if self.kept(k)] or list(self.values)
        score = {k: float(weaker_direction(self.values[k][None], goal)[0]) for k in ok}
        return (max if goal == "max" else min)(score, key=score.get)

    def kept(self, start: str) -> bool:
        f = self.designs[start].mean()
        return bool(0.39 <= f <= 0.40 and is_balanced(self.values[start][None])[0])


def _fe_values(case: str, img: np.ndarray) -> np.ndarray:
    """The case's (X, Y) labels of one binary cell, by the labelling pipeline's homogenization."""
    props = homogenize_batch(img[None], [CASES[case].material])
    return np.array([props[key][0] for key in CASES[case].label_keys])


def run_case(case: str, sizes: TOSizes, image_size: int, xai_design: np.ndarray | None,
             starts: Sequence[str] = START_KINDS, seed: int = 0, progress: bool = True) -> CaseRuns:
    """Every start of one case on the TO grid, each design binarized at the fraction,
    resampled to ``image_size`` and relabelled like the database (:func:`lib.fe.labeling.homogenize_batch`)."""
    mat = MATERIAL_CASES[CASES[case].material]
    dens = to.DensityHomogenizer(sizes.grid, mat, sizes.settings.penalty)  # optimize() continues p
    runs = CaseRuns(case)
    t0 = time.perf_counter()
    for kind in starts:
        if kind == "xai" and xai_design is None:
            continue
        x0 = starting_field(kind, sizes.grid, sizes.settings.fraction, seed, xai_design)
        result = to.optimize(dens, case, x0, sizes.settings, progress)
        binary = to.binarize_at_fraction(result.density, sizes.settings.fraction)
        if sizes.grid != image_size:
            binary = to.binarize_at_fraction(np.clip(_resample(binary.astype(float), image_size), 0, 1),
                                             sizes.settings.fraction)
        runs.results[kind], runs.designs[kind] = result, binary
        runs.values[kind] = _fe_values(case, binary)
    runs.seconds = time.perf_counter() - t0
    return runs


def limits(case: str, fraction: float = 0.395) -> dict[str, float]:
    """The analytic limits of a case's objective at ``fraction`` (labels' units; see
    :mod:`lib.fe.bounds` for which cell each holds for)."""
    mat = MATERIAL_CASES[CASES[case].material]
    if case == "case1":
        return {"isotropic (HS) upper E": isotropic_bounds(fraction, mat)["E"][1],
                "any cell, one direction (Voigt)": directional_stiffness_ceiling(fraction, mat)}
    if case == "case2":
        return {"isotropic (HS) upper ν": isotropic_bounds(fraction, mat)["nu"][1]}
    return {"square-symmetric (Levin + HS) lower α": thermal_expansion_bounds(fraction, mat)[0]}


#: The XAI share of the way is reported only where TO beats the database's best by more than
#: this (relative): below it the denominator is discretization noise (Case 3 at its bound).
SHARE_MIN_GAIN = 0.01


def comparison_rows(xai: Mapping[str, Mapping[str, Any]], runs: Mapping[str, CaseRuns]
                    ) -> list[dict[str, Any]]:
    """Per case: best database sample, best balanced XAI design, TO optimum (score = the
    weaker direction) and the XAI design's share of the way from the database's best to the
    TO optimum (NaN where TO gains less than :data:`SHARE_MIN_GAIN` on the database)."""
    rows = []
    for case, r in runs.items():
        x = xai[case]
        goal = x["case"].goal
        db_score = weaker_direction(x["values"], goal)
        db_best = float(db_score.max() if goal == "max" else db_score.min())
        picks = best_designs(x["metrics"], 1)
        xai_score = float(x["metrics"]["score"][picks[0]]) if len(picks) else float("nan")
        start = r.best(goal)
        to_score = float(weaker_direction(r.values[start][None], goal)[0])
        gain = (to_score - db_best) * (1.0 if goal == "max" else -1.0)
        share = ((xai_score - db_best) / (to_score - db_best)
                 if gain > SHARE_MIN_GAIN * abs(db_best) else float("nan"))
        rows.append({"case": case, "goal": goal, "database_best": db_best, "xai_best": xai_score,
                     "to_best": to_score, "to_start": start, "to_kept": r.kept(start),
                     "xai_share": share, "limits": limits(case)})
    return rows


def format_comparison(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: one row per case (values in GPa for Case 1, 1e-6/K for Case 3)."""
    scale = {"case1": (1e-3, "GPa"), "case2": (1.0, ""), "case3": (1e6, "1e-6/K")}
    lines = ["| case | objective | best database sample | best XAI design | TO optimum (start) "
             "| XAI share of the way | analytic limits at 0.395 |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        s, unit = scale[r["case"]]
        obj = {"case1": "max min(Ex, Ey)", "case2": "max min(νxy, νyx)",
               "case3": "min max(αx, αy)"}[r["case"]]
        lim = "; ".join(f"{k} {v * s:.4g}" for k, v in r["limits"].items())
        kept = "" if r["to_kept"] else ", not kept"
        share = (f"{100 * r['xai_share']:.0f} %" if np.isfinite(r["xai_share"])
                 else f"– (TO gains < {100 * SHARE_MIN_GAIN:g} % on the database)")
        lines.append(f"| {r['case']} | {obj} {unit} | {r['database_best'] * s:.4g} | {r['xai_best'] * s:.4g} "
                     f"| {r['to_best'] * s:.4g} ({r['to_start']}{kept}) | {share} | {lim} |")
    return "\n".join(lines)


def warm_start_rows(runs: Mapping[str, CaseRuns], goal_of: Mapping[str, str]) -> list[dict[str, Any]]:
    """Per case and start: iterations to within 1 % of the final objective, iterations run,
    the final objective of the density and the binary design's FE score."""
    rows = []
    for case, r in runs.items():
        for start, res in r.results.items():
            rows.append({"case": case, "start": start, "iterations": len(res.objective),
                         "to_within_1pct": res.iterations_to_within(0.01),
                         "final_density": float(res.objective[-1]),
                         "fe_score": float(weaker_direction(r.values[start][None], goal_of[case])[0]),
                         "kept": r.kept(start),
                         "seconds": res.seconds})
    return rows


def format_warm_start(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of :func:`warm_start_rows`."""
    scale = {"case1": 1e-3, "case2": 1.0, "case3": 1e6}
    lines = ["| case | start | iterations to within 1 % | iterations | seconds | binary design score | kept |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['start']} | {r['to_within_1pct']} | {r['iterations']} "
                     f"| {r['seconds']:.0f} | {r['fe_score'] * scale[r['case']]:.4g} | "
                     f"{'yes' if r['kept'] else 'no'} |")
    return "\n".join(lines)


def expansion_bound_gap(values: np.ndarray, images: np.ndarray) -> np.ndarray:
    """Per Case 3 sample, max(αx, αy) relative to the square-symmetric lower bound at the
    sample's *own* white fraction, minus 1 (0: at the bound). A sample that is not square
    symmetric may fall below it (negative), since the bound holds for square cells only."""
    mat = MATERIAL_CASES["aluminium_foam"]
    fractions = np.asarray(images).reshape(len(images), -1).mean(axis=1)
    bounds = np.array([thermal_expansion_bounds(f, mat)[0] for f in fractions])
    return np.asarray(values, float).max(axis=1) / bounds - 1.0
