"""Where the viscous stabilization sets a label: chosen structures of the profile's dual-phase
dataset run on one grid, with and without the stabilization or with other Newton settings.

Prints per run the status, where the stabilization was switched on (``stabilized_from``), the
peak (strength and its E_xx), the highest stress before the switch-on, the fracture and
load-drop strains, and for each label the stabilization's share of the work two ways: over the
whole path from the unloaded state (FRACTURE_LABELS_VERSION 4) and over the work done since the
switch-on (``RVEResult.nonphysical_share``, version 5). ``--stabilization 0`` shows the undamped
run: where it stops and the peak it reached on its own.

Usage:  python bench/gtn_stabilized_runs.py --picks 206 529 [--grid 128] [--nonlocal-length 0.03125]
            [--line-search 3] [--max-newton 30] [--stall-after 30] [--stabilization 3e-3]
            [--max-stagger 30] [--n-jobs 2] [--profile default] [--out results/bench/...json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.fe.fracture_labels import coarsen_images, profile_criteria  # noqa: E402
from lib.fe.gtn_rve import GTNRVE, LoadStepping, RVEResult  # noqa: E402
from lib.microstructures.dual_phase import dual_phase_dataset  # noqa: E402
from lib.stages import load_stage  # noqa: E402


def whole_path_share(result: RVEResult, strain: float) -> float:
    """Damping work over all the macroscopic work up to the first increment at or past
    ``strain`` (the version-4 share); NaN for a NaN strain."""
    if not np.isfinite(strain) or result.damping_work is None:
        return float("nan")
    i = result.index_at(strain)
    return float(result.damping_work[i] / result.macro_work[i]) if result.macro_work[i] > 0 else 0.0


def run_one(profile: str, pick: int, grid: int, nonlocal_length: float, stepping: LoadStepping,
            max_stagger: int) -> dict:
    """One structure's run and its summary (strains E_xx, stresses MPa, seconds)."""
    image = np.asarray(load_stage(dual_phase_dataset(profile))["images"][pick], np.uint8)
    if grid < image.shape[0]:
        image = coarsen_images(image[None], grid)[0]
    rve = GTNRVE(grid, criteria=profile_criteria(profile), stepping=stepping,
                 nonlocal_length=nonlocal_length, max_stagger=max_stagger)
    t0 = time.perf_counter()
    r = rve.run(image)
    seconds = time.perf_counter() - t0
    peak = float(r.strain[int(np.argmax(r.stress))])
    before = r.stress[r.strain <= r.stabilized_from + 1e-15] if np.isfinite(r.stabilized_from) else r.stress
    labels = {"fracture_strain": r.fracture_strain, "load_drop_strain": r.load_drop_strain,
              "tensile_strength": peak}
    return {"pick": pick, "status": r.status, "seconds": seconds, "n_increments": r.n_increments,
            "stabilized_from": r.stabilized_from, "stabilization_energy_fraction":
            r.stabilization_energy_fraction, "peak_strain": peak,
            "tensile_strength": r.tensile_strength, "peak_before_switch_on": float(np.max(before)),
            "fracture_strain": r.fracture_strain, "load_drop_strain": r.load_drop_strain,
            "hill_strain": r.hill_strain, "strain_reached": float(r.strain[-1]),
            "share_whole_path": {k: whole_path_share(r, e) for k, e in labels.items()},
            "share_since_switch_on": r.label_shares()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--picks", type=int, nargs="+", required=True, help="dataset indices")
    ap.add_argument("--grid", type=int, default=128)
    ap.add_argument("--nonlocal-length", type=float, default=0.03125)
    ap.add_argument("--line-search", type=int, default=3)
    ap.add_argument("--max-newton", type=int, default=30)
    ap.add_argument("--stall-after", type=int, default=30)
    ap.add_argument("--stabilization", type=float, default=LoadStepping().stabilization)
    ap.add_argument("--max-stagger", type=int, default=30)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--profile", default="default")
    ap.add_argument("--out", type=Path, default=Path("results/bench/gtn_stabilized_runs.json"))
    args = ap.parse_args()
    stepping = LoadStepping(line_search=args.line_search, max_newton=args.max_newton,
                            stall_after=args.stall_after, stabilization=args.stabilization)
    rows = Parallel(n_jobs=args.n_jobs)(
        delayed(run_one)(args.profile, p, args.grid, args.nonlocal_length, stepping, args.max_stagger)
        for p in args.picks)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    print(f"| pick | status | s | switch-on E_xx | peak MPa (E_xx) | peak before switch-on | FS | "
          f"load drop | share whole path FS / LD / TS | share since switch-on FS / LD / TS |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        w = " / ".join(f"{100 * r['share_whole_path'][k]:.1f}" for k in r["share_whole_path"])
        n = " / ".join(f"{100 * r['share_since_switch_on'][k]:.1f}" for k in r["share_since_switch_on"])
        print(f"| {r['pick']} | {r['status'][:40]} | {r['seconds']:.0f} | {r['stabilized_from']:.4f} | "
              f"{r['tensile_strength']:.0f} ({r['peak_strain']:.4f}) | {r['peak_before_switch_on']:.0f} | "
              f"{r['fracture_strain']:.4f} | {r['load_drop_strain']:.4f} | {w} % | {n} % |")
    print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
