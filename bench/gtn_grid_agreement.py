"""How much the Part A labels depend on the FE grid: the same structures labelled on two grids.

Takes ``--per-category`` structures of each category from the profile's dual-phase dataset,
labels them with the GTN RVE on both ``--grids`` (block-mean coarsening of the 128x128 image),
and prints Spearman's rank correlation between the grids and the median relative change of
the fracture strain (f̄ criterion), the load-drop strain and the tensile strength.

Failed runs are listed with their reason and the strain they reached, and all labels of both
grids are saved (``--out``, default ``results/bench/gtn_grid_agreement_<g1>_<g2>.npz``) so the
comparison can be re-read without re-running it.

Usage:  python bench/gtn_grid_agreement.py [--grids 32 64] [--per-category 10] [--profile default]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.fe.fracture_labels import label_structures, profile_criteria  # noqa: E402
from lib.microstructures.dual_phase import DUAL_PHASE_CATEGORIES, dual_phase_dataset  # noqa: E402
from lib.stages import load_stage  # noqa: E402

QUANTITIES = ("fracture_strain", "load_drop_strain", "tensile_strength")


def pick_structures(profile: str, per_category: int, seed: int = 0) -> tuple[dict, np.ndarray]:
    """The profile's dual-phase dataset and ``per_category`` random indices of each category
    (category-major, drawn with ``seed``): the structures every Part A bench compares on."""
    data = load_stage(dual_phase_dataset(profile))
    rng = np.random.default_rng(seed)
    picks = np.concatenate([
        rng.choice(np.nonzero(data["category"] == code)[0], per_category, replace=False)
        for code in range(len(DUAL_PHASE_CATEGORIES))])
    return data, picks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", type=int, nargs=2, default=(32, 64))
    parser.add_argument("--per-category", type=int, default=10)
    parser.add_argument("--profile", default="default")
    parser.add_argument("--n-jobs", type=int, default=-1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    data, picks = pick_structures(args.profile, args.per_category)
    images = data["images"][picks]
    criteria = profile_criteria(args.profile)
    labels = {}
    for grid in args.grids:
        t0 = time.perf_counter()
        labels[grid] = label_structures(images, grid, criteria, n_jobs=args.n_jobs)
        lab = labels[grid]
        print(f"grid {grid}: {len(images)} structures in {time.perf_counter() - t0:.0f} s, "
              f"failed {int((~lab['converged']).sum())}, median {np.median(lab['seconds']):.1f} s "
              f"per structure")
        for i in np.flatnonzero(~lab["converged"]):
            print(f"  {DUAL_PHASE_CATEGORIES[data['category'][picks[i]]]:<10} #{picks[i]:<5} "
                  f"f_M {images[i].mean():.2f}: {lab['status'][i]} (stabilization work "
                  f"{lab['stabilization_energy_fraction'][i]:.1%})")
    out = args.out or Path("results/bench") / f"gtn_grid_agreement_{args.grids[0]}_{args.grids[1]}.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, picks=picks, category=data["category"][picks], **{
        f"g{grid}_{key}": value for grid in args.grids for key, value in labels[grid].items()
        if key in QUANTITIES + ("converged", "seconds", "strain_reached", "n_increments",
                                "stabilization_energy_fraction")})
    print(f"labels saved to {out}")
    coarse, fine = (labels[g] for g in args.grids)
    print(f"\n{len(images)} structures ({args.per_category} per category), grids {args.grids[0]} vs {args.grids[1]}")
    print(f"{'quantity':<20}{'Spearman rho':>14}{'median |change|':>17}{'n':>5}")
    for name in QUANTITIES:
        a, b = np.asarray(coarse[name], float), np.asarray(fine[name], float)
        ok = np.isfinite(a) & np.isfinite(b)
        rho = spearmanr(a[ok], b[ok]).statistic if ok.sum() > 2 else float("nan")
        change = np.median(np.abs(a[ok] - b[ok]) / np.abs(b[ok])) if ok.any() else float("nan")
        print(f"{name:<20}{rho:>14.3f}{change:>16.1%}{int(ok.sum()):>5}")


if __name__ == "__main__":
    main()
