"""How much the Part A labels depend on the GTN parameters the paper does not print.

The paper calibrated its GTN parameters to DP590 tests but printed none of them (SPEC A2), so
ours are literature values (``lib/fe/gtn_material.py``). This script labels the same
structures (``--per-category`` of each category of the profile's dual-phase dataset, as
``bench/gtn_grid_agreement.py`` picks them) with our parameters and with one parameter changed
at a time, and prints per variant: Spearman's rank correlation of the fracture strain and of the
tensile strength with the reference labels, the median relative change of the fracture strain,
Spearman ρ(FS, martensite fraction) over the grain categories, and the failed runs.

Usage:  python bench/gtn_parameter_sensitivity.py [--per-category 10] [--profile default] [--grid 32]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.fe.fracture_labels import label_structures, profile_criteria  # noqa: E402
from lib.fe.gtn_material import FERRITE, MARTENSITE, GTNParameters  # noqa: E402
from lib.microstructures.dual_phase import DUAL_PHASE_CATEGORIES  # noqa: E402

from gtn_grid_agreement import pick_structures  # noqa: E402  (bench/ is on sys.path)


def both(**changes: float) -> tuple[GTNParameters, GTNParameters]:
    """Ferrite and martensite with the same void-model parameters changed."""
    return dataclasses.replace(FERRITE, **changes), dataclasses.replace(MARTENSITE, **changes)


VARIANTS: dict[str, tuple[GTNParameters, GTNParameters]] = {
    "reference": (FERRITE, MARTENSITE),
    "f0 = 0 (void-free start)": both(f0=0.0),
    "f0 = 0.002": both(f0=0.002),
    "eN = 0.2 (earlier nucleation)": both(eN=0.2),
    "fN = 0.02 (half the nucleated voids)": both(fN=0.02),
    "fc = 0.10, fF = 0.20": both(fc=0.10, fF=0.20),
    "martensite sigma_y 1500 MPa": (FERRITE, GTNParameters.swift(
        sigma_y=1500.0, n=MARTENSITE.n, eps0=MARTENSITE.eps0, f0=MARTENSITE.f0, name="martensite")),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-category", type=int, default=10)
    parser.add_argument("--profile", default="default")
    parser.add_argument("--grid", type=int, default=32)
    parser.add_argument("--n-jobs", type=int, default=-1)
    args = parser.parse_args()

    data, picks = pick_structures(args.profile, args.per_category)
    images, category = data["images"][picks], data["category"][picks]
    fraction = data["martensite_fraction"][picks]
    grains = category != DUAL_PHASE_CATEGORIES.index("laminated")
    criteria = profile_criteria(args.profile)
    print(f"{len(images)} structures ({args.per_category} per category), {args.grid}x{args.grid} "
          f"grid, f̄_crit = {criteria.mean_void_critical}")
    print(f"{'variant':<38}{'s':>6}{'failed':>7}{'rho FS':>8}{'rho TS':>8}{'med |dFS|':>10}"
          f"{'FS median':>10}{'rho(FS,fM) grains':>19}")
    reference = None
    for name, phases in VARIANTS.items():
        t0 = time.perf_counter()
        lab = label_structures(images, args.grid, criteria, n_jobs=args.n_jobs, phases=phases)
        seconds = time.perf_counter() - t0
        fs, ts = np.asarray(lab["fracture_strain"], float), np.asarray(lab["tensile_strength"], float)
        if reference is None:
            reference = fs, ts
        ok = np.isfinite(fs) & np.isfinite(reference[0])
        ok_ts = np.isfinite(ts) & np.isfinite(reference[1])
        rho_fs = spearmanr(fs[ok], reference[0][ok]).statistic
        rho_ts = spearmanr(ts[ok_ts], reference[1][ok_ts]).statistic
        change = np.median(np.abs(fs[ok] - reference[0][ok]) / reference[0][ok])
        g = grains & np.isfinite(fs)
        trend = spearmanr(fs[g], fraction[g]).statistic
        print(f"{name:<38}{seconds:>6.0f}{int((~lab['converged']).sum()):>7}{rho_fs:>8.3f}"
              f"{rho_ts:>8.3f}{change:>10.1%}{np.nanmedian(fs):>10.3f}{trend:>19.2f}")


if __name__ == "__main__":
    main()
