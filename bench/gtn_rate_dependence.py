"""Does a rate-dependent matrix replace the viscous stabilization? The same structures labelled
with the rate-independent GTN model (the default: the stabilization as a last resort) and with
a rate-dependent matrix (``GTNParameters.rate_sensitivity = m``, overstress power law,
reference rate = the test's strain rate 1e-3/s), with and without the stabilization.

Per variant: failed runs, runs that switched the stabilization on, runs with more than 5 % of
their work in it, labels marked for it (``lib.fe.fracture_labels``), runs whose material
tangent lost Hill's uniqueness condition, the Newton iterations, and per label Spearman's ρ
against the rate-independent labels with the median relative change (the physical effect of
the rate dependence, plus whatever the stabilization had done).

Takes ``--per-category`` structures of each category (the first of
``bench/gtn_grid_agreement.py``'s picks) on one FE grid. Each variant is a resumable stage
(``data/<profile>/bench_gtn_rate-<key>.h5``, chunks of 4).

``--floor`` adds the rate-independent model with the adaptive stabilization
(``LoadStepping.stabilization_floor``), and the per-run table puts the marked values back to
show what the stabilization does to the labels it carries.

Usage:  python bench/gtn_rate_dependence.py [--grid 64] [--per-category 3] [--m 0.01 0.002]
            [--floor 0.001] [--n-jobs 2] [--profile default]
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gtn_grid_agreement import first_picks  # noqa: E402
from lib.fe.fracture_labels import (FRACTURE_LABELS_VERSION, LABEL_KEYS,  # noqa: E402
                                    label_structures, profile_criteria)
from lib.fe.gtn_material import FERRITE, MARTENSITE  # noqa: E402
from lib.fe.gtn_rve import LoadStepping  # noqa: E402
from lib.stages import chunked_stage, load_stage  # noqa: E402

KEEP = LABEL_KEYS + ("converged", "n_newton", "n_increments", "stabilization_energy_fraction",
                     "stabilized_from", "hill_strain", "seconds", "marked") + tuple(
    f"{k}_nonphysical_share" for k in LABEL_KEYS)


def variant_labels(profile: str, images: np.ndarray, chosen: np.ndarray, grid: int, m: float,
                   stabilization: bool, n_jobs: int, floor: float = 1.0) -> dict[str, np.ndarray]:
    """Labels of ``images`` with rate sensitivity ``m`` (0: rate independent), the viscous
    stabilization on or off (``floor < 1``: adaptive, ``LoadStepping.stabilization_floor``),
    cached as a resumable stage."""
    criteria = profile_criteria(profile)
    phases = (replace(FERRITE, rate_sensitivity=m), replace(MARTENSITE, rate_sensitivity=m))
    stepping = (LoadStepping(stabilization_floor=floor) if stabilization
                else replace(LoadStepping(), stabilization=0.0))
    params = {"version": FRACTURE_LABELS_VERSION, "picks": chosen.tolist(), "grid": grid,
              "m": m, "stabilization": stabilization,
              "criteria": [criteria.mean_void_critical, criteria.load_drop, criteria.max_strain]}
    if floor != 1.0:
        params["stabilization_floor"] = floor

    def compute(a: int, b: int) -> dict[str, np.ndarray]:
        out = label_structures(images[a:b], grid, criteria, n_jobs=n_jobs, stepping=stepping,
                               phases=phases)
        return {k: out[k] for k in KEEP}

    return load_stage(chunked_stage(profile, "bench_gtn_rate", params, len(images), compute,
                                    chunk_size=4))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=64)
    parser.add_argument("--per-category", type=int, default=3)
    parser.add_argument("--m", type=float, nargs="*", default=[0.01, 0.002])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--n-jobs", type=int, default=-1)
    parser.add_argument("--floor", type=float, nargs="*", default=[],
                        help="also the rate-independent model with the adaptive stabilization "
                             "down to these floors (LoadStepping.stabilization_floor)")
    args = parser.parse_args()

    per = args.per_category
    data, chosen = first_picks(args.profile, per)
    images = data["images"][chosen]
    variants = {"rate independent (default)": (0.0, True, 1.0)}
    for m in args.m:
        variants[f"m = {m:g}"] = (m, True, 1.0)
        variants[f"m = {m:g}, no stabilization"] = (m, False, 1.0)
    for floor in args.floor:
        variants[f"adaptive stabilization, floor {floor:g}"] = (0.0, True, floor)
    labels = {}
    for name, (m, stab, floor) in variants.items():
        t0 = time.perf_counter()
        labels[name] = variant_labels(args.profile, images, chosen, args.grid, m, stab, args.n_jobs,
                                      floor)
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)

    ref = labels["rate independent (default)"]
    n = len(images)
    print(f"\n{n} structures ({per} per category), {args.grid}², against the rate-independent labels")
    print("| variant | failed | stabilized | > 5 % of work | marked labels | Hill lost | Newton "
          "iterations | median s per RVE |")
    print("|---|---|---|---|---|---|---|---|")
    for name, lab in labels.items():
        marked = sum(int((np.isnan(np.asarray(lab[k], float))
                          & np.isfinite(np.asarray(lab[f"{k}_nonphysical_share"], float))).sum())
                     for k in LABEL_KEYS)
        print(f"| {name} | {int((~lab['converged']).sum())} | "
              f"{int(np.isfinite(lab['stabilized_from']).sum())} | "
              f"{int((lab['stabilization_energy_fraction'] > 0.05).sum())} | {marked} | "
              f"{int(np.isfinite(lab['hill_strain']).sum())} | {int(lab['n_newton'].sum())} | "
              f"{np.median(lab['seconds']):.1f} |")
    print("\n| variant | quantity | n | ρ | median |change| | mean change |")
    print("|---|---|---|---|---|---|")
    for name, lab in list(labels.items())[1:]:
        for q in LABEL_KEYS:
            a, b = np.asarray(lab[q], float), np.asarray(ref[q], float)
            ok = np.isfinite(a) & np.isfinite(b)
            rel = a[ok] / b[ok] - 1
            rho = spearmanr(a[ok], b[ok]).statistic if ok.sum() > 2 else float("nan")
            print(f"| {name} | {q} | {int(ok.sum())} | {rho:.3f} | {np.median(np.abs(rel)):.1%} | "
                  f"{np.mean(rel):+.1%} |")

    # what the stabilization does to the labels it carries: the marked values put back
    print("\nPer run: share of the whole work in the stabilization, and the labels with the marked "
          "values put back (FS / load drop / TS MPa)")
    print("| structure | " + " | ".join(labels) + " |")
    print("|---" * (len(labels) + 1) + "|")
    for i in range(n):
        cells = []
        for lab in labels.values():
            raw = raw_labels(lab, i)
            cells.append(f"{lab['stabilization_energy_fraction'][i]:.1%}: " + " / ".join(
                f"{raw[k]:.3g}" for k in LABEL_KEYS) + ("" if lab["converged"][i] else " (failed)"))
        print(f"| {int(chosen[i])} | " + " | ".join(cells) + " |")


def raw_labels(lab: dict[str, np.ndarray], i: int) -> dict[str, float]:
    """Run ``i``'s labels with any marked value put back (parsed from its ``marked`` text)."""
    out = {k: float(lab[k][i]) for k in LABEL_KEYS}
    marked = str(lab["marked"][i].decode() if isinstance(lab["marked"][i], bytes) else lab["marked"][i])
    for part in filter(None, marked.split("; ")):
        key, value = part.split(":")[0].split(" ")
        out[key] = float(value)
    return out


if __name__ == "__main__":
    main()
