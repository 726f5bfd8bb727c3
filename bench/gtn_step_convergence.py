"""How much the Part A labels depend on the load-step size: the same structures labelled with
the default step control, with the void-growth control (``LoadStepping.void_increment``) and
with fixed small increments (the reference).

The GTN update is implicit (backward Euler) and so first-order accurate in the increment; the
RVE's path (where damage localizes) also depends on it. This bench measures both together on
``--per-category`` structures of each category of the profile's dual-phase dataset (the first
ones of ``bench/gtn_grid_agreement.py``'s picks), on one FE grid: per variant the Spearman ρ
of the fracture strain (f̄ criterion), load-drop strain and tensile strength against the
reference, their median and mean signed relative change, and the Newton iterations summed over
the structures (the cost, independent of machine load).

Usage:  python bench/gtn_step_convergence.py [--grid 32] [--per-category 4] [--reference-step 2.5e-4]
            [--void-increments 3e-4 1e-4] [--n-jobs 2] [--profile default]
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
from lib.fe.fracture_labels import label_structures, profile_criteria  # noqa: E402
from lib.fe.gtn_rve import LoadStepping  # noqa: E402

QUANTITIES = ("fracture_strain", "load_drop_strain", "tensile_strength")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=32)
    parser.add_argument("--per-category", type=int, default=4)
    parser.add_argument("--reference-step", type=float, default=2.5e-4)
    parser.add_argument("--void-increments", type=float, nargs="*", default=[3e-4, 1e-4])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--n-jobs", type=int, default=-1)
    args = parser.parse_args()

    per = args.per_category
    data, chosen = first_picks(args.profile, per)
    images = data["images"][chosen]
    criteria = profile_criteria(args.profile)
    default = LoadStepping()
    variants = {"default control": default}
    variants.update({f"void_increment {v:g}": replace(default, void_increment=v)
                     for v in args.void_increments})
    variants[f"fixed {args.reference_step:g} (reference)"] = replace(
        default, initial=args.reference_step, maximum=args.reference_step)
    labels = {}
    for name, stepping in variants.items():
        t0 = time.perf_counter()
        labels[name] = label_structures(images, args.grid, criteria, n_jobs=args.n_jobs,
                                        stepping=stepping)
        lab = labels[name]
        print(f"{name}: {time.perf_counter() - t0:.0f} s, {int(lab['n_newton'].sum())} Newton "
              f"iterations, {int(lab['n_increments'].sum())} increments, failed "
              f"{int((~lab['converged']).sum())}, marked {int((lab['marked'] != '').sum())}",
              flush=True)

    ref = labels[list(variants)[-1]]
    print(f"\n{len(images)} structures ({per} per category), {args.grid}², against fixed "
          f"{args.reference_step:g} increments")
    print("| step control | Newton iterations | quantity | ρ | median |change| | mean change |")
    print("|---|---|---|---|---|---|")
    for name in list(variants)[:-1]:
        lab = labels[name]
        cost = lab["n_newton"].sum() / ref["n_newton"].sum()
        for q in QUANTITIES:
            a, b = np.asarray(lab[q], float), np.asarray(ref[q], float)
            ok = np.isfinite(a) & np.isfinite(b)
            rel = a[ok] / b[ok] - 1
            print(f"| {name} | {int(lab['n_newton'].sum())} ({cost:.2f} of the reference's) | {q} | "
                  f"{spearmanr(a[ok], b[ok]).statistic:.3f} | {np.median(np.abs(rel)):.1%} | "
                  f"{np.mean(rel):+.1%} |")


if __name__ == "__main__":
    main()
