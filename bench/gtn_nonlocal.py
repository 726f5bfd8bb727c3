"""Does a nonlocal void growth take the viscous stabilization out of the GTN RVE? (issue 21)

Labels ``--per-category`` structures of each category of the profile's dual-phase dataset (the
first picks of ``bench/gtn_grid_agreement.py``, so the same structures as the other Part A
benches) on ``--grid`` with the local GTN RVE (the default) and with the staggered nonlocal one
(``GTNRVE(nonlocal_length=l)``, l in units of the RVE side) for each of ``--lengths``, and prints
per run: status, seconds, fracture strain (f̄ criterion), load-drop strain, tensile strength,
the share of the whole run's work done by the stabilization, the E_xx where it switched on,
Newton iterations and staggered iterations. ``--structures`` keeps only some of the picks
(positions in the pick list); ``--no-local`` skips the local runs (their numbers at 128² are in
BENCHMARKS.md). Results go to ``--out`` (npz), one process per run with ``--n-jobs``.

Usage:  python bench/gtn_nonlocal.py [--grid 128] [--per-category 1] [--lengths 0.03125]
            [--structures 1 3] [--no-local] [--n-jobs 2] [--max-strain 1.5]
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gtn_grid_agreement import first_picks  # noqa: E402
from lib.fe.fracture_labels import coarsen, profile_criteria  # noqa: E402
from lib.fe.gtn_rve import GTNRVE  # noqa: E402

FIELDS = ("seconds", "fracture_strain", "load_drop_strain", "tensile_strength", "damping_share",
          "stabilized_from", "n_newton", "n_staggers", "n_increments", "fracture_strain_share",
          "load_drop_strain_share", "tensile_strength_share")


def one_run(image: np.ndarray, grid: int, length: float, max_strain: float) -> dict:
    """One tension run on ``grid`` (``length`` 0 = the local model), one BLAS thread."""
    criteria = replace(profile_criteria("default"), max_strain=max_strain)
    fe_image = coarsen(image, grid) if grid < image.shape[0] else image
    with threadpool_limits(limits=1):
        rve = GTNRVE(grid, criteria=criteria, nonlocal_length=length)
        t0 = time.perf_counter()
        result = rve.run(fe_image)
        seconds = time.perf_counter() - t0
    return {"status": result.status, "seconds": seconds, "fracture_strain": result.fracture_strain,
            "load_drop_strain": result.load_drop_strain, "tensile_strength": result.tensile_strength,
            "damping_share": result.stabilization_energy_fraction,
            "stabilized_from": result.stabilized_from, "n_newton": result.n_newton,
            "n_staggers": result.n_staggers, "n_increments": result.n_increments,
            "void_map": result.void_map,
            # each label's own share of numerical work (over 5 %: marked by lib.fe.fracture_labels)
            **{f"{k}_share": v for k, v in result.label_shares().items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=int, default=128)
    parser.add_argument("--per-category", type=int, default=1)
    parser.add_argument("--lengths", type=float, nargs="+", default=[1 / 32])
    parser.add_argument("--structures", type=int, nargs="*", default=None)
    parser.add_argument("--no-local", action="store_true")
    parser.add_argument("--max-strain", type=float, default=1.5)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--profile", default="default")
    parser.add_argument("--out", type=Path, default=Path("results/bench/gtn_nonlocal.npz"))
    args = parser.parse_args()

    data, picks = first_picks(args.profile, args.per_category)
    if args.structures:
        picks = picks[args.structures]
    lengths = ([] if args.no_local else [0.0]) + list(args.lengths)
    jobs = [(int(s), length) for s in picks for length in lengths]
    print(f"{len(jobs)} runs at {args.grid}²: structures {picks.tolist()}, lengths {lengths}", flush=True)
    results = Parallel(n_jobs=args.n_jobs)(
        delayed(one_run)(data["images"][s], args.grid, length, args.max_strain) for s, length in jobs)

    print("| structure | l (RVE side) | status | s | FS | load drop | TS MPa | damping share | "
          "label shares FS / LD / TS | damped from | increments | Newton | staggers |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (s, length), r in zip(jobs, results):
        print(f"| {s} | {length:.4g} | {r['status'][:30]} | {r['seconds']:.0f} | {r['fracture_strain']:.4f} | "
              f"{r['load_drop_strain']:.4f} | {r['tensile_strength']:.0f} | {r['damping_share']:.1%} | "
              f"{r['fracture_strain_share']:.1%} / {r['load_drop_strain_share']:.1%} / "
              f"{r['tensile_strength_share']:.1%} | "
              f"{r['stabilized_from']:.4f} | {r['n_increments']} | {r['n_newton']} | {r['n_staggers']} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, structures=np.array([s for s, _ in jobs]), lengths=np.array([l for _, l in jobs]),
             status=np.array([r["status"] for r in results]),
             void_maps=np.stack([r["void_map"] for r in results]),
             **{k: np.array([r[k] for r in results], dtype=float) for k in FIELDS})
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
