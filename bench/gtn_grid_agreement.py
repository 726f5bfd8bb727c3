"""How much the Part A labels depend on the FE grid and the coarsening: the same structures
labelled on coarse grids and on the reference grid (the paper's 128², one element per pixel).

Takes ``--per-category`` structures of each category from the profile's dual-phase dataset,
labels them with the GTN RVE on the ``--reference`` grid and on each of ``--grids`` with each
of ``--coarsenings`` (``block_mean``: an element is martensite where its block is at least half
martensite; ``phase_mixture``: it keeps its block's martensite share with rule-of-mixtures
constants, see ``lib.fe.fracture_labels``), and prints per variant Spearman's ρ against the
reference of the fracture strain (f̄ criterion), the load-drop strain and the tensile strength,
their median relative change, the FE martensite-fraction error, and the share of runs with more
than 5 % of their work in the viscous stabilization.

Each (grid, coarsening) is a resumable stage (``data/<profile>/bench_gtn_grid-<key>.h5``, chunks
of 8 structures): a killed run resumes, a finished one is reread. All labels are also saved to
``--out`` (default ``results/bench/gtn_grid_agreement.npz``).

``--rate-sensitivity m`` labels every variant with the rate-dependent matrix
(``GTNParameters.rate_sensitivity``; see ``bench/gtn_rate_dependence.py``) instead of the
rate-independent one; ``--nonlocal-length l`` with the nonlocal void growth
(``GTNRVE(nonlocal_length=l)``, l a fraction of the RVE side; see ``bench/gtn_nonlocal.py``);
``--grid-nonlocal-length`` gives the coarse grids another one (0: the local model against a
nonlocal reference). ``--line-search k`` (``LoadStepping.line_search``: back-track Newton
corrections that raise the residual, up to k halvings), ``--max-newton`` and ``--stall-after``
(``LoadStepping``) set the Newton iterations and ``--stabilization`` the viscous damping
(``LoadStepping.stabilization``; 0: none, a run that cannot go on undamped stops there and keeps
the labels it reached, see ``lib.fe.fracture_labels``); ``--grid-stepping default`` keeps the coarse grids
at the default ``LoadStepping()`` (``reference``: the same settings as the reference).

Usage:  python bench/gtn_grid_agreement.py [--grids 32 64] [--coarsenings block_mean phase_mixture]
            [--reference 128] [--per-category 10] [--rate-sensitivity 0] [--nonlocal-length 0]
            [--grid-nonlocal-length L] [--line-search 0] [--max-newton 10] [--stall-after 3]
            [--stabilization 3e-3]
            [--grid-stepping reference|default] [--profile default]
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.fe.fracture_labels import (FRACTURE_LABELS_VERSION, label_structures,  # noqa: E402
                                    profile_criteria)
from lib.fe.gtn_material import FERRITE, MARTENSITE  # noqa: E402
from lib.fe.gtn_rve import NONLOCAL_SCHEME_VERSION, LoadStepping  # noqa: E402
from lib.microstructures.dual_phase import DUAL_PHASE_CATEGORIES, dual_phase_dataset  # noqa: E402
from lib.stages import chunked_stage, load_stage  # noqa: E402

QUANTITIES = ("fracture_strain", "load_drop_strain", "tensile_strength")
KEEP = QUANTITIES + ("converged", "seconds", "strain_reached", "n_increments",
                     "stabilization_energy_fraction", "fe_martensite_fraction") + tuple(
    f"{q}_nonphysical_share" for q in QUANTITIES)  # per label; over the limit: marked (NaN)
NONPHYSICAL_LIMIT = 0.05


def pick_structures(profile: str, per_category: int, seed: int = 0) -> tuple[dict, np.ndarray]:
    """The profile's dual-phase dataset and ``per_category`` random indices of each category
    (category-major, drawn with ``seed``): the structures every Part A bench compares on."""
    data = load_stage(dual_phase_dataset(profile))
    rng = np.random.default_rng(seed)
    picks = np.concatenate([
        rng.choice(np.nonzero(data["category"] == code)[0], per_category, replace=False)
        for code in range(len(DUAL_PHASE_CATEGORIES))])
    return data, picks


def first_picks(profile: str, per_category: int) -> tuple[dict, np.ndarray]:
    """The dataset and the first ``per_category`` of each category's 10 picks of
    :func:`pick_structures` (the smaller benches' structures, a subset of the 40)."""
    data, picks = pick_structures(profile, 10)
    return data, np.concatenate([picks[10 * c: 10 * c + per_category]
                                 for c in range(len(picks) // 10)])


def grid_labels(profile: str, images: np.ndarray, picks: np.ndarray, grid: int, coarsening: str,
                n_jobs: int, rate_sensitivity: float = 0.0,
                nonlocal_length: float = 0.0,
                stepping: LoadStepping = LoadStepping()) -> dict[str, np.ndarray]:
    """Labels of ``images`` on ``grid`` with ``coarsening``, cached as a resumable stage."""
    criteria = profile_criteria(profile)
    params = {"version": FRACTURE_LABELS_VERSION, "picks": picks.tolist(), "grid": grid,
              "coarsening": coarsening if grid < images.shape[1] else "none",
              "criteria": [criteria.mean_void_critical, criteria.load_drop, criteria.max_strain]}
    if rate_sensitivity:
        params["rate_sensitivity"] = rate_sensitivity
    if nonlocal_length:
        params["nonlocal_length"] = nonlocal_length
        params["nonlocal_scheme"] = NONLOCAL_SCHEME_VERSION
    for name, value in asdict(stepping).items():  # only the settings off their defaults
        if value != getattr(LoadStepping(), name):
            params[name] = value
    phases = tuple(replace(p, rate_sensitivity=rate_sensitivity) for p in (FERRITE, MARTENSITE))

    def compute(a: int, b: int) -> dict[str, np.ndarray]:
        out = label_structures(images[a:b], grid, criteria, n_jobs=n_jobs, coarsening=coarsening,
                               phases=phases, nonlocal_length=nonlocal_length,
                               stepping=stepping)
        return {k: out[k] for k in KEEP}

    return load_stage(chunked_stage(profile, "bench_gtn_grid", params, len(images), compute,
                                    chunk_size=8))


def _marked_summary(lab: dict[str, np.ndarray]) -> str:
    """", marked labels: FS a, load drop b, TS c" (labels whose own share of stabilization work
    is over the limit, hence NaN); empty for a stage stored before the shares were kept."""
    if not all(f"{q}_nonphysical_share" in lab for q in QUANTITIES):
        return ""
    counts = [int((np.nan_to_num(lab[f"{q}_nonphysical_share"]) > NONPHYSICAL_LIMIT).sum())
              for q in QUANTITIES]
    return ", marked labels: FS {}, load drop {}, TS {}".format(*counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--coarsenings", nargs="+", default=["block_mean", "phase_mixture"])
    parser.add_argument("--reference", type=int, default=128)
    parser.add_argument("--per-category", type=int, default=10)
    parser.add_argument("--rate-sensitivity", type=float, default=0.0)
    parser.add_argument("--nonlocal-length", type=float, default=0.0)
    parser.add_argument("--grid-nonlocal-length", type=float, default=None)
    parser.add_argument("--line-search", type=int, default=0)
    parser.add_argument("--max-newton", type=int, default=LoadStepping().max_newton)
    parser.add_argument("--stall-after", type=int, default=LoadStepping().stall_after)
    parser.add_argument("--stabilization", type=float, default=LoadStepping().stabilization)
    parser.add_argument("--grid-stepping", choices=["reference", "default"], default="reference")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--n-jobs", type=int, default=-1)
    parser.add_argument("--out", type=Path, default=Path("results/bench/gtn_grid_agreement.npz"))
    args = parser.parse_args()

    data, picks = pick_structures(args.profile, args.per_category)
    images = data["images"][picks]
    image_fraction = images.mean(axis=(1, 2))
    variants = [(args.reference, "block_mean")] + [(g, c) for g in args.grids
                                                   for c in args.coarsenings]
    reference_stepping = LoadStepping(line_search=args.line_search, max_newton=args.max_newton,
                                      stall_after=args.stall_after,
                                      stabilization=args.stabilization)
    labels = {}
    for grid, rule in variants:
        t0 = time.perf_counter()
        length = (args.nonlocal_length if grid == args.reference or args.grid_nonlocal_length is None
                  else args.grid_nonlocal_length)
        stepping = (reference_stepping if grid == args.reference or args.grid_stepping == "reference"
                    else LoadStepping())
        lab = labels[(grid, rule)] = grid_labels(args.profile, images, picks, grid, rule,
                                                 args.n_jobs, args.rate_sensitivity, length, stepping)
        print(f"grid {grid} {rule if grid < images.shape[1] else '(reference)'}: "
              f"{time.perf_counter() - t0:.0f} s this call, failed {int((~lab['converged']).sum())}, "
              f"median {np.median(lab['seconds']):.1f} s per structure, "
              f"{int((lab['stabilization_energy_fraction'] > NONPHYSICAL_LIMIT).sum())} with more "
              f"than {NONPHYSICAL_LIMIT:.0%} of the work in the stabilization"
              + _marked_summary(lab), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, picks=picks, category=data["category"][picks], **{
        f"g{grid}_{rule}_{key}": value for (grid, rule), lab in labels.items()
        for key, value in lab.items()})
    print(f"labels saved to {args.out}")

    ref = labels[(args.reference, "block_mean")]
    cats = data["category"][picks]
    print(f"\n{len(images)} structures ({args.per_category} per category) against {args.reference}²")
    print(f"{'variant':<22}{'quantity':<19}{'rho':>7}{'  per category (lam/rect/ell/rand)':<36}"
          f"{'median |change|':>16}{'n':>4}")
    for grid, rule in variants[1:]:
        lab = labels[(grid, rule)]
        err = lab["fe_martensite_fraction"] - image_fraction
        for name in QUANTITIES:
            a, b = np.asarray(lab[name], float), np.asarray(ref[name], float)
            ok = np.isfinite(a) & np.isfinite(b)
            rho = spearmanr(a[ok], b[ok]).statistic
            per = [spearmanr(a[ok & (cats == k)], b[ok & (cats == k)]).statistic
                   for k in range(len(DUAL_PHASE_CATEGORIES))]
            change = np.median(np.abs(a[ok] - b[ok]) / np.abs(b[ok]))
            print(f"{f'{grid}² {rule}':<22}{name:<19}{rho:>7.3f}  "
                  f"{' / '.join(f'{r:.2f}' for r in per):<34}{change:>16.1%}{int(ok.sum()):>4}")
        print(f"{'':<22}FE fraction error: median |Δf| {np.median(np.abs(err)):.4f}, "
              f"max {np.abs(err).max():.4f}")


if __name__ == "__main__":
    main()
