"""GTN fracture labels of the Part A dual-phase structures (SPEC A2), in parallel and resumably.

Every 128x128 structure of the dual-phase dataset is pulled in periodic plane-strain uniaxial
tension along x by :class:`lib.fe.gtn_rve.GTNRVE` until its fracture criteria are reached, and
the stage stores, per sample:

``fracture_strain``       E_xx at which the mean void volume fraction f̄ over the RVE reaches
                          f̄_crit (the paper's criterion; NaN when the run did not reach it with
                          converged increments — a failed run is never counted as a fracture)
``load_drop_strain``      E_xx at which the mean stress σ̄_xx has fallen ``load_drop`` below its
                          running peak ("elongation at break", reported beside it; NaN if not
                          reached)
``tensile_strength``      peak mean σ̄_xx in MPa (NaN for a failed run still hardening when it
                          stopped: its peak was not reached)
``strain_reached``        last converged E_xx of the run (NaN when the run raised)
``fe_martensite_fraction``  martensite fraction of the FE grid image (after :func:`coarsen`)
``void_map``              (n, grid, grid) float32 element-mean void volume fraction at the first
                          increment with f̄ >= f̄_crit (the last converged state if not reached)
``load_drop_void_map``    only with ``load_drop_map=True`` (:mod:`lib.fe.void_maps`): the same at
                          the first increment past the load drop (NaN if not reached)
``history_*``             (n, HISTORY_LENGTH) histories of ``strain`` (E_xx), ``stress`` (σ̄_xx,
                          MPa), ``mean_void`` (f̄) and ``lateral_strain`` (E_yy), from the
                          unloaded state, padded with NaN; ``history_length`` (n,) counts the
                          valid points. A run with more increments than fit is thinned to
                          ``HISTORY_LENGTH`` points keeping the first and last points and both
                          criteria's crossings and the peak (``history_thinned``).
``status``                "converged", "converged: ... not reached by max_strain" or
                          "failed: <reason>" (GTNRVE's reason, or the exception raised);
                          ``converged`` = not failed
``stabilization_energy_fraction`` work of the viscous stabilization / macroscopic work (0 when the
                          run never needed it; see ``LoadStepping``); ``stabilized_from`` the
                          E_xx where it was switched on (NaN if never): a criterion reached
                          before it is unaffected
``<label>_nonphysical_share`` for each of :data:`LABEL_KEYS`: the stabilization's share of the
                          work done since it was switched on, up to that label's strain (the
                          peak's for the tensile strength; ``RVEResult.nonphysical_share``).
                          A label over ``FractureCriteria.nonphysical_limit`` is **marked**: set
                          to NaN (so never used) with the reason and its value in ``marked``
                          ("" when nothing was)
``hill_strain``           E_xx where the material tangent first had an indefinite symmetric part
                          (Hill's sufficient condition for uniqueness fails, a bifurcation is
                          possible; NaN if never): a label past it may rest on a bifurcation
                          (reported, not removed; see ``GTNRVE.hill_indefinite``)
``n_increments``, ``n_newton``, ``n_cuts``, ``seconds`` (wall per sample) and the split
``seconds_constitutive``, ``seconds_assembly``, ``seconds_solve``.

The FE grid, the criteria, the GTN parameter sets, the load stepping and the coarsening rule
are stage parameters (part of the key) and are stored in the stage attributes, so every output
says which grid and which f̄_crit it belongs to. Coarsening rules (:data:`COARSENINGS`) for
grids below the image size: ``block_mean`` (the default: an element is martensite where its
block is at least half martensite; thin layers can vanish or widen), ``fraction_preserving``
(binary, the image's fraction to half an element) and ``phase_mixture`` (each element keeps
its block's share with rule-of-mixtures constants); ``bench/gtn_grid_agreement.py`` measures
each against the 128² labels.

The stored histories allow the label sensitivity analysis without rerunning anything:
:func:`fracture_strain_at` (another f̄_crit, lower than the run's — higher values are only known
where the run went on past them towards its load-drop criterion) and :func:`load_drop_strain_at`
(another load-drop fraction, smaller than the run's).

Parallelism follows :mod:`lib.fe.labeling`: joblib's loky workers (or a Dask cluster), one
:class:`GTNRVE` per worker process cached in a module global and reused for every later sample
(SfePy problem, PARDISO analysis), one BLAS/MKL thread per worker. Samples are dispatched one by
one because their cost varies by more than 10x (a laminate along x is elastic-plastic without
localisation; a Voronoi structure localises and needs many increments), so contiguous batches
would leave a worker idle. Chunks of ``profile.label_chunk`` samples are checkpointed by
:func:`lib.stages.chunked_stage`.
"""
from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from threadpoolctl import threadpool_limits

from lib.fe.gtn_material import FERRITE, MARTENSITE, GTNParameters, mixture_phases
from lib.fe.gtn_rve import (
    NONLOCAL_SCHEME_VERSION,
    GTNRVE,
    FractureCriteria,
    LoadStepping,
    RVEResult,
    first_crossing,
)
from lib.fe.pixel_mesh import check_binary_image
from lib import cluster
from lib.profiles import Profile, get_profile
from lib.stages import chunked_stage, load_stage, read_key

__all__ = [
    "STAGE_NAME",
    "FRACTURE_LABELS_VERSION",
    "HISTORY_LENGTH",
    "COARSENING_RULE",
    "PHASE_MIXTURE_RULE",
    "FRACTION_PRESERVING_RULE",
    "COARSENINGS",
    "coarsen",
    "coarsen_images",
    "coarsen_shares",
    "coarsen_preserving_fraction",
    "profile_criteria",
    "label_structure",
    "label_batch",
    "label_structures",
    "fracture_labels",
    "fracture_strain_at",
    "load_drop_strain_at",
    "histories",
    "criterion_sensitivity",
    "label_quality",
    "category_summary",
    "summary_table",
    "percentile_ratio",
    "spearman",
    "stage_description",
    "describe_choices",
    "representative_indices",
]

#: Stage name of the labels in the cache (``data/<profile>/fracture_labels-<key>.h5``).
STAGE_NAME = "fracture_labels"

#: Bump when the labelling changes in a way that changes the stored labels (part of the key).
FRACTURE_LABELS_VERSION = 5  # 4: labels over the non-physical limit marked; f̄ history from f0;
#                              5: that share measured from the stabilization's switch-on

#: Points per stored history (increments + 1). The prototype of SPEC A2 needed up to ~600
#: increments at 64x64 and ~2,000 at 128x128 before adaptive stepping; longer runs are thinned.
HISTORY_LENGTH = 1024

#: How a 128x128 structure becomes an FE image of ``grid`` x ``grid`` pixels (stated in outputs).
COARSENING_RULE = ("block mean over (N/grid) x (N/grid) pixels; martensite (1) where the block "
                   "mean >= 0.5, ferrite (0) otherwise; identity when grid = N")

#: The second coarsening: each FE element keeps its block's martensite share as a mixture phase
#: (:func:`lib.fe.gtn_material.phase_mixture`), so the fraction is exact and thin layers stay.
PHASE_MIXTURE_RULE = ("block mean over (N/grid) x (N/grid) pixels kept as the element's "
                      "martensite share k/(N/grid)^2; the element's GTN constants are the rule "
                      "of mixtures of the two phases' (lib.fe.gtn_material.phase_mixture); "
                      "identity when grid = N")

#: The third: binary elements, as many martensite ones as the image's fraction asks for.
FRACTION_PRESERVING_RULE = ("block mean over (N/grid) x (N/grid) pixels; the round(f grid^2) "
                            "elements with the largest block means are martensite (ties: larger "
                            "Gaussian-smoothed (sigma = N/grid px) fraction at the element centre "
                            "first, then row-major order); identity when grid = N")

#: Coarsening rules by name (the stage stores the description).
COARSENINGS = {"block_mean": COARSENING_RULE, "phase_mixture": PHASE_MIXTURE_RULE,
               "fraction_preserving": FRACTION_PRESERVING_RULE}

#: Samples per task when labelling on a Dask cluster.
DASK_BATCH = 4

#: The labels of a run, each checked against ``FractureCriteria.nonphysical_limit``.
LABEL_KEYS = ("fracture_strain", "load_drop_strain", "tensile_strength")

_HISTORY_KEYS = ("strain", "stress", "mean_void", "lateral_strain")
_SECONDS_KEYS = ("constitutive", "assembly", "solve")
_MAX_STATUS = 300

_SOLVERS: dict[tuple, GTNRVE] = {}


# --------------------------------------------------------------------------------------------
# FE grid
# --------------------------------------------------------------------------------------------
def _check_grid(grid: Any, size: int) -> int:
    if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)):
        raise ValueError(f"FE grid must be an integer number of pixels per side, got {grid!r}")
    grid = int(grid)
    if grid < 2 or grid > size:
        raise ValueError(f"FE grid must lie in [2, {size}] (the image side), got {grid}")
    if size % grid:
        raise ValueError(f"FE grid {grid} does not divide the image side {size}: choose a divisor "
                         f"such as {', '.join(str(size // k) for k in (8, 4, 2, 1) if size % k == 0)}")
    return grid


def coarsen(img: Any, grid: int) -> np.ndarray:
    """Block-average a square binary image onto ``grid`` x ``grid`` FE pixels.

    Each FE pixel is the mean of its (N/grid) x (N/grid) block of image pixels; it is martensite
    (1) where that mean is >= 0.5 (a tie goes to martensite) and ferrite (0) otherwise.
    ``grid`` must divide the image side N; ``grid = N`` returns the image unchanged. Thin
    features (layers or grains narrower than a block) can vanish or widen, so the FE martensite
    fraction is stored beside the image's.

    >>> img = np.kron(np.array([[1, 0], [0, 1]], np.uint8), np.ones((4, 4), np.uint8))
    >>> coarsen(img, 2).tolist()
    [[1, 0], [0, 1]]
    >>> coarsen(np.eye(8, dtype=np.uint8), 4).tolist()   # a block mean of exactly 0.5 -> 1
    [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    """
    arr = check_binary_image(img)
    grid = _check_grid(grid, arr.shape[0])
    if grid == arr.shape[0]:
        return arr
    block = arr.shape[0] // grid
    means = arr.reshape(grid, block, grid, block).mean(axis=(1, 3))
    return (means >= 0.5).astype(np.uint8)


def _binary_stack(images: Any) -> np.ndarray:
    """Validate a stack of binary images ``(n, N, N)``; return it as uint8."""
    arr = np.asarray(images)
    if arr.ndim != 3 or arr.shape[1] != arr.shape[2] or arr.shape[0] == 0:
        raise ValueError(f"images must have shape (n, N, N) with n >= 1, got {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"images must be numeric 0/1 arrays, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError("images contain NaN or infinite values")
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        raise ValueError(f"images must be binary (0 = ferrite, 1 = martensite); sample "
                         f"{int(np.nonzero(bad.any(axis=(1, 2)))[0][0])} holds values such as "
                         f"{np.unique(arr[bad])[:5].tolist()}")
    return arr.astype(np.uint8)


def _block_sums(arr: np.ndarray, grid: int) -> np.ndarray:
    """Martensite pixels per (N/grid)^2 block of ``arr (n, N, N)`` -> ``(n, grid, grid)`` int64."""
    block = arr.shape[1] // grid
    return arr.reshape(len(arr), grid, block, grid, block).sum(axis=(2, 4), dtype=np.int64)


def coarsen_images(images: Any, grid: int) -> np.ndarray:
    """:func:`coarsen` for a stack ``(n, N, N)`` -> ``(n, grid, grid)`` uint8."""
    arr = _binary_stack(images)
    grid = _check_grid(grid, arr.shape[1])
    if grid == arr.shape[1]:
        return arr
    block = arr.shape[1] // grid
    return (2 * _block_sums(arr, grid) >= block * block).astype(np.uint8)  # block mean >= 0.5


def coarsen_shares(images: Any, grid: int) -> np.ndarray:
    """Martensite pixels per FE element, ``(n, N, N)`` binary -> ``(n, grid, grid)`` uint8 in
    ``0 .. (N/grid)^2`` (the phase index of :func:`lib.fe.gtn_material.mixture_phases`).

    >>> coarsen_shares(np.eye(4, dtype=np.uint8)[None], 2).tolist()
    [[[2, 0], [0, 2]]]
    """
    arr = _binary_stack(images)
    grid = _check_grid(grid, arr.shape[1])
    block = arr.shape[1] // grid
    if block * block > 255:
        raise ValueError(f"phase_mixture coarsening supports blocks up to 15x15 pixels, got "
                         f"{block}x{block} (grid {grid} of {arr.shape[1]})")
    return _block_sums(arr, grid).astype(np.uint8)


def coarsen_preserving_fraction(images: Any, grid: int) -> np.ndarray:
    """Binary ``(n, grid, grid)`` uint8 with the image's martensite fraction to 1/grid^2:
    the ``round(f grid^2)`` elements of largest block mean are martensite (ties as
    :data:`FRACTION_PRESERVING_RULE`). Thin layers that the block mean drops keep their share.

    >>> thin = np.zeros((1, 8, 8), np.uint8); thin[0, 1] = 1; thin[0, 6] = 1   # two 1-px rows
    >>> coarsen_preserving_fraction(thin, 4)[0].sum(axis=1).tolist()   # 16 px = 4 elements:
    [0, 0, 0, 4]

    (one whole layer, not two half ones; block_mean would keep both, doubling the fraction).
    """
    from scipy.ndimage import gaussian_filter

    arr = _binary_stack(images)
    grid = _check_grid(grid, arr.shape[1])
    n, size = len(arr), arr.shape[1]
    block = size // grid
    if block == 1:
        return arr
    shares = _block_sums(arr, grid).reshape(n, -1)
    out = np.zeros((n, grid * grid), np.uint8)
    centre = np.arange(grid) * block + block // 2
    for i in range(n):
        smooth = gaussian_filter(arr[i].astype(float), sigma=block, mode="wrap")
        tie = smooth[np.ix_(centre, centre)].ravel()
        k = int(round(arr[i].mean() * grid * grid))
        order = np.lexsort((np.arange(grid * grid), -tie, -shares[i]))
        out[i, order[:k]] = 1
    return out.reshape(n, grid, grid)


#: The FE image of each coarsening rule (phase_mixture: phase indices of mixture_phases).
_COARSEN = {"block_mean": coarsen_images, "phase_mixture": coarsen_shares,
            "fraction_preserving": coarsen_preserving_fraction}


def _check_coarsening(coarsening: Any) -> str:
    if coarsening not in COARSENINGS:
        raise ValueError(f"unknown coarsening {coarsening!r}: choose one of {sorted(COARSENINGS)}")
    return coarsening


def profile_criteria(profile: Profile | str) -> FractureCriteria:
    """The fracture criteria of a profile (its f̄_crit and load-drop fraction; GTNRVE's max strain)."""
    prof = get_profile(profile) if isinstance(profile, str) else profile
    return FractureCriteria(mean_void_critical=prof.fe_mean_void_critical,
                            load_drop=prof.fe_load_drop)


# --------------------------------------------------------------------------------------------
# post-hoc criteria on stored histories
# --------------------------------------------------------------------------------------------
def _rows(values: Any, length: Any, name: str) -> tuple[list[np.ndarray], bool]:
    """Split a history (L,) or a padded stack (n, L) with lengths (n,) into valid rows."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 1:
        n_valid = arr.size if length is None else int(length)
        return [arr[:n_valid]], True
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a history (L,) or padded histories (n, L), got {arr.shape}")
    if length is None:
        lengths = (~np.isnan(arr)).sum(axis=1)
    else:
        lengths = np.asarray(length, dtype=int)
        if lengths.shape != (arr.shape[0],):
            raise ValueError(f"length must have shape ({arr.shape[0]},), got {lengths.shape}")
    if np.any(lengths < 0) or np.any(lengths > arr.shape[1]):
        raise ValueError(f"lengths must lie in [0, {arr.shape[1]}]")
    return [row[:k] for row, k in zip(arr, lengths)], False


def fracture_strain_at(strain: Any, mean_void: Any, mean_void_critical: float,
                       length: Any = None) -> np.ndarray | float:
    """Strain at which the mean void fraction first reaches ``mean_void_critical``.

    ``strain``, ``mean_void``: one history (L,) or the stage's padded histories (n, L) with
    ``length`` (n,) (NaN padding is found when ``length`` is None). Linear interpolation
    between increments, as GTNRVE's own ``fracture_strain``; NaN where the level is not
    reached in the history. Levels above the run's f̄_crit are reached only where the run went
    on past it (towards its load-drop criterion), so a NaN there means "not known".

    >>> round(fracture_strain_at([0.0, 0.1, 0.2], [0.0, 0.002, 0.006], 0.004), 12)
    0.15
    """
    if not 0 < float(mean_void_critical) < 1:
        raise ValueError(f"mean_void_critical must lie in (0, 1), got {mean_void_critical}")
    xs, single = _rows(strain, length, "strain")
    ys, _ = _rows(mean_void, length, "mean_void")
    if len(xs) != len(ys) or any(a.shape != b.shape for a, b in zip(xs, ys)):
        raise ValueError("strain and mean_void histories must have the same shape")
    out = np.array([first_crossing(x, y, float(mean_void_critical)) if x.size else np.nan
                    for x, y in zip(xs, ys)])
    return float(out[0]) if single else out


def load_drop_strain_at(strain: Any, stress: Any, drop: float,
                        length: Any = None) -> np.ndarray | float:
    """Strain at which the mean stress first falls ``drop`` below its running peak.

    The running peak is the largest mean stress reached so far, so the result is the strain
    of the first load drop of that size (for the run's own ``load_drop`` it equals GTNRVE's
    ``load_drop_strain``: the run stops at that drop). Shapes as :func:`fracture_strain_at`;
    NaN where no such drop is in the history (a drop larger than the run's is usually not).

    >>> round(load_drop_strain_at([0.0, 0.1, 0.2, 0.3], [0.0, 500.0, 450.0, 350.0], 0.2), 12)
    0.25
    """
    if not 0 < float(drop) < 1:
        raise ValueError(f"drop must lie in (0, 1), got {drop}")
    xs, single = _rows(strain, length, "strain")
    ys, _ = _rows(stress, length, "stress")
    if len(xs) != len(ys) or any(a.shape != b.shape for a, b in zip(xs, ys)):
        raise ValueError("strain and stress histories must have the same shape")
    out = np.empty(len(xs))
    for k, (x, y) in enumerate(zip(xs, ys)):
        if x.size < 2:
            out[k] = np.nan
            continue
        peak = np.maximum.accumulate(y)
        loaded = peak > 0
        # -y rises to -(1 - drop) peak where the load has dropped; ignore the unloaded start
        level = np.where(loaded, -(1 - drop) * peak, np.inf)
        out[k] = first_crossing(x, np.where(loaded, -y, -np.inf), level)
    return float(out[0]) if single else out


def _peak_established(stress: np.ndarray) -> bool:
    """Whether the maximum of a stress history lies before its last point."""
    return stress.size >= 2 and int(np.argmax(stress)) < stress.size - 1


# --------------------------------------------------------------------------------------------
# one sample
# --------------------------------------------------------------------------------------------
def _thin_indices(n_points: int, max_len: int, keep: Sequence[int]) -> np.ndarray:
    """At most ``max_len`` sorted indices of [0, n_points) spread evenly, always holding ``keep``."""
    keep = np.unique(np.clip(np.asarray(list(keep) + [0, n_points - 1], dtype=int), 0, n_points - 1))
    even = np.round(np.linspace(0, n_points - 1, max(2, max_len - keep.size))).astype(int)
    idx = np.union1d(even, keep)
    while idx.size > max_len:  # rounding collisions can leave a few too many: drop even ones
        extra = np.setdiff1d(idx, keep)
        idx = np.setdiff1d(idx, extra[1::2][: idx.size - max_len])
    return idx


def _empty_sample(grid: int, max_len: int, load_drop_map: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "fracture_strain": np.nan, "load_drop_strain": np.nan, "tensile_strength": np.nan,
        "strain_reached": np.nan, "fe_martensite_fraction": np.nan,
        "void_map": np.full((grid, grid), np.nan, dtype=np.float32),
        "history_length": 0, "history_thinned": False,
        "status": "failed: not run", "converged": False,
        "n_increments": 0, "n_newton": 0, "n_cuts": 0, "seconds": 0.0,
        "stabilization_energy_fraction": np.nan, "stabilized_from": np.nan,
        "hill_strain": np.nan, "marked": "",
    }
    for key in LABEL_KEYS:
        out[f"{key}_nonphysical_share"] = np.nan
    for key in _HISTORY_KEYS:
        out[f"history_{key}"] = np.full(max_len, np.nan)
    for key in _SECONDS_KEYS:
        out[f"seconds_{key}"] = 0.0
    if load_drop_map:
        out["load_drop_void_map"] = np.full((grid, grid), np.nan, dtype=np.float32)
    return out


def _from_result(result: RVEResult, criteria: FractureCriteria, grid: int,
                 max_len: int, load_drop_map: bool = False) -> dict[str, Any]:
    """The stored labels of one GTNRVE result (see the module docstring)."""
    out = _empty_sample(grid, max_len, load_drop_map)
    hist = {"strain": result.strain, "stress": result.stress, "mean_void": result.mean_void,
            "lateral_strain": result.lateral_strain}
    hist = {k: np.asarray(v, dtype=float).ravel() for k, v in hist.items()}
    n_points = hist["strain"].size
    if any(v.size != n_points for v in hist.values()):
        raise ValueError("RVEResult histories have different lengths: "
                         + ", ".join(f"{k} {v.size}" for k, v in hist.items()))
    status = str(result.status)
    failed = status.startswith("failed")
    if n_points:
        fs = fracture_strain_at(hist["strain"], hist["mean_void"], criteria.mean_void_critical)
        ld = load_drop_strain_at(hist["strain"], hist["stress"], criteria.load_drop)
        peak_ok = _peak_established(hist["stress"]) or not failed
        out.update(fracture_strain=fs, load_drop_strain=ld,
                   tensile_strength=float(np.max(hist["stress"])) if peak_ok else np.nan,
                   strain_reached=float(hist["strain"][-1]))
        if not failed and not np.isfinite(fs):
            status = (f"converged: f̄ = {hist['mean_void'][-1]:.4g} below f̄_crit = "
                      f"{criteria.mean_void_critical:g}, not reached by max_strain = "
                      f"{hist['strain'][-1]:g}")
        if n_points > max_len:
            keep = [int(np.argmax(hist["stress"]))]
            for level_idx in (np.nonzero(hist["mean_void"] >= criteria.mean_void_critical)[0][:1],
                              np.nonzero(hist["stress"] < (1 - criteria.load_drop)
                                         * np.maximum.accumulate(hist["stress"]))[0][:1]):
                keep += [int(i) for i in level_idx] + [int(i) - 1 for i in level_idx]
            idx = _thin_indices(n_points, max_len, keep)
            out["history_thinned"] = True
        else:
            idx = np.arange(n_points)
        for key, values in hist.items():
            out[f"history_{key}"][: idx.size] = values[idx]
        out["history_length"] = int(idx.size)
        # the share of each label's work that is the stabilization's; over the limit: marked
        peak_strain = float(hist["strain"][int(np.argmax(hist["stress"]))])
        marks = []
        for key, strain in (("fracture_strain", fs), ("load_drop_strain", ld),
                            ("tensile_strength", peak_strain)):
            share = result.nonphysical_share(strain) if np.isfinite(out[key]) else np.nan
            out[f"{key}_nonphysical_share"] = share
            if share > criteria.nonphysical_limit:
                marks.append(f"{key} {out[key]:.4g}: {share:.1%} of its work in the stabilization "
                             f"> {criteria.nonphysical_limit:.0%}")
                out[key] = np.nan
        out["marked"] = "; ".join(marks)[:_MAX_STATUS]
    void_map = np.asarray(result.void_map, dtype=np.float32)
    if void_map.shape == (grid, grid):
        out["void_map"] = void_map
    if load_drop_map and result.load_drop_void_map is not None:
        out["load_drop_void_map"] = np.asarray(result.load_drop_void_map, dtype=np.float32)
    out.update(status=status[:_MAX_STATUS], converged=not failed,
               n_increments=int(result.n_increments), n_newton=int(result.n_newton),
               n_cuts=int(result.n_cuts),
               stabilization_energy_fraction=float(result.stabilization_energy_fraction),
               stabilized_from=float(result.stabilized_from),
               hill_strain=float(result.hill_strain))
    for key in _SECONDS_KEYS:
        out[f"seconds_{key}"] = float(result.seconds.get(key, 0.0))
    return out


def _solver(grid: int, phases: tuple[GTNParameters, ...], criteria: FractureCriteria,
            stepping: LoadStepping, nonlocal_length: float = 0.0) -> GTNRVE:
    """This process's GTNRVE for the configuration (built on first use, then reused)."""
    key = (grid, phases, criteria, stepping, nonlocal_length)
    if key not in _SOLVERS:
        _SOLVERS[key] = GTNRVE(grid, phases=phases, criteria=criteria, stepping=stepping,
                               nonlocal_length=nonlocal_length)
    return _SOLVERS[key]


def label_structure(fe_image: np.ndarray, criteria: FractureCriteria = FractureCriteria(),
                    stepping: LoadStepping = LoadStepping(),
                    phases: tuple[GTNParameters, ...] = (FERRITE, MARTENSITE),
                    max_len: int = HISTORY_LENGTH, load_drop_map: bool = False,
                    nonlocal_length: float = 0.0) -> dict[str, Any]:
    """Labels of one FE image ``(grid, grid)`` uint8 (already coarsened), run here
    (``nonlocal_length > 0``: the nonlocal void growth of :mod:`lib.fe.gtn_rve`).

    Never raises for a run that goes wrong: an exception inside the solver is recorded as
    ``status = "failed: <Type>: <message>"`` with NaN labels, so one sample cannot stop a
    database run. (A malformed image is rejected earlier, by :func:`label_structures`.)
    """
    grid = int(np.shape(fe_image)[0])
    t0 = time.perf_counter()
    try:
        rve = _solver(grid, tuple(phases), criteria, stepping, float(nonlocal_length))
        out = _from_result(rve.run(fe_image), criteria, grid, max_len, load_drop_map)
    except Exception as err:  # noqa: BLE001 - recorded per sample by design (SPEC A2)
        out = _empty_sample(grid, max_len, load_drop_map)
        out["status"] = f"failed: {type(err).__name__}: {err}"[:_MAX_STATUS]
    out["fe_martensite_fraction"] = float(np.mean(fe_image)) / (len(phases) - 1)
    out["seconds"] = time.perf_counter() - t0
    return out


def label_batch(fe_images: np.ndarray, criteria: FractureCriteria, stepping: LoadStepping,
                phases: tuple[GTNParameters, ...], max_len: int = HISTORY_LENGTH,
                threads: int = 1, load_drop_map: bool = False,
                nonlocal_length: float = 0.0) -> list[dict[str, Any]]:
    """:func:`label_structure` for each of ``fe_images: (n, grid, grid)``, with ``threads``
    BLAS/MKL threads (the unit of work of one joblib or Dask task)."""
    with threadpool_limits(limits=threads):
        return [label_structure(img, criteria, stepping, phases, max_len, load_drop_map,
                                nonlocal_length) for img in fe_images]


def _stack(samples: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Per-sample dicts -> the stage's arrays (dtypes fixed here, so every chunk matches)."""
    dtypes = {"void_map": np.float32, "load_drop_void_map": np.float32, "history_length": np.int32,
              "history_thinned": bool, "converged": bool, "n_increments": np.int32, "n_newton": np.int32,
              "n_cuts": np.int32, "status": str, "marked": str}
    out = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        out[key] = np.asarray(values, dtype=dtypes.get(key, np.float64))
    return out


def label_structures(images: Any, grid: int, criteria: FractureCriteria = FractureCriteria(),
                     n_jobs: int = -1, *, stepping: LoadStepping = LoadStepping(),
                     phases: tuple[GTNParameters, GTNParameters] = (FERRITE, MARTENSITE),
                     max_len: int = HISTORY_LENGTH, threads_per_worker: int = 1,
                     scheduler_address: str | None = None,
                     load_drop_map: bool = False,
                     coarsening: str = "block_mean",
                     nonlocal_length: float = 0.0) -> dict[str, np.ndarray]:
    """Fracture labels of ``images: (n, N, N)`` (1 = martensite) on a ``grid`` x ``grid`` FE mesh.

    The images are coarsened by the rule ``coarsening`` (:data:`COARSENINGS`: ``"block_mean"``,
    :func:`coarsen`; ``"fraction_preserving"``, :func:`coarsen_preserving_fraction`;
    ``"phase_mixture"``, per-element martensite shares with mixture phases,
    :func:`coarsen_shares`; all the same at ``grid = N``) and run over ``n_jobs`` worker processes
    (-1 = all cores; 1 = here) or, with ``scheduler_address`` (or ``STUDY_DASK_SCHEDULER``), on
    a Dask cluster. Returns the arrays listed in the module docstring, rows in input order; the
    split only decides who computes which sample. ``load_drop_map``: also the void map at the
    load-drop state (``load_drop_void_map``). ``nonlocal_length`` (a fraction of the RVE side;
    0, the default, is the local model): the nonlocal void growth of :mod:`lib.fe.gtn_rve`.
    """
    fe_images = _COARSEN[_check_coarsening(coarsening)](images, grid)
    if not isinstance(criteria, FractureCriteria):
        raise ValueError(f"criteria must be a FractureCriteria, got {type(criteria).__name__}")
    if not isinstance(stepping, LoadStepping):
        raise ValueError(f"stepping must be a LoadStepping, got {type(stepping).__name__}")
    phases = tuple(phases)
    if len(phases) != 2 or not all(isinstance(p, GTNParameters) for p in phases):
        raise ValueError("phases must be two GTNParameters: (ferrite, martensite)")
    if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < 16:
        raise ValueError(f"max_len must be an integer >= 16, got {max_len!r}")
    if not (isinstance(nonlocal_length, (int, float, np.floating)) and np.isfinite(nonlocal_length)
            and nonlocal_length >= 0):
        raise ValueError(f"nonlocal_length must be a number >= 0 (a fraction of the RVE side), "
                         f"got {nonlocal_length!r}")
    if coarsening == "phase_mixture":  # 2 levels (the phases themselves) at grid = N
        block = np.asarray(images).shape[1] // grid
        phases = mixture_phases(phases[0], phases[1], block * block + 1)
    address = cluster.scheduler_address(scheduler_address)
    n_workers = (os.cpu_count() or 1) if n_jobs == -1 else max(1, int(n_jobs))
    args = (criteria, stepping, phases, int(max_len), threads_per_worker, bool(load_drop_map),
            float(nonlocal_length))
    if address:
        bounds = range(0, len(fe_images), DASK_BATCH)
        with cluster.dask_backend(address):
            parts = Parallel(n_jobs=-1)(delayed(label_batch)(fe_images[a:a + DASK_BATCH], *args)
                                        for a in bounds)
        samples = [s for part in parts for s in part]
    elif n_workers == 1 or len(fe_images) == 1:
        samples = label_batch(fe_images, *args)
    else:  # one task per sample: costs differ by >10x between structures
        parts = Parallel(n_jobs=min(n_workers, len(fe_images)), batch_size=1)(
            delayed(label_batch)(fe_images[i:i + 1], *args) for i in range(len(fe_images)))
        samples = [part[0] for part in parts]
    return _stack(samples)


# --------------------------------------------------------------------------------------------
# the stage
# --------------------------------------------------------------------------------------------
# fields added after labels were cached: left out of a stage key while they are off, so the
# caches of rate-independent phases with a constant stabilization keep their keys
_RATE_FIELDS = ("rate_sensitivity", "reference_rate")


def _params_dict(obj: Any) -> dict[str, Any]:
    out = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, GTNParameters) and obj.rate_sensitivity == 0:
        for name in _RATE_FIELDS:
            del out[name]
    if isinstance(obj, LoadStepping):  # options at their defaults: the keys from before them
        if obj.stabilization_floor == 1.0:
            del out["stabilization_floor"]
        if obj.line_search == 0:
            del out["line_search"]
        if obj.stall_after == 3:
            del out["stall_after"]
    return out


def fracture_labels(profile: Profile | str, database_path: Path, *, grid: int | None = None,
                    criteria: FractureCriteria | None = None,
                    stepping: LoadStepping = LoadStepping(),
                    phases: tuple[GTNParameters, GTNParameters] = (FERRITE, MARTENSITE),
                    n_jobs: int | None = None, scheduler_address: str | None = None,
                    threads_per_worker: int = 1, progress: bool = True,
                    coarsening: str = "block_mean", nonlocal_length: float = 0.0) -> Path:
    """Stage ``fracture_labels``: GTN fracture labels of every structure of a dual-phase dataset.

    ``database_path`` is the :func:`lib.microstructures.dual_phase.dual_phase_dataset` stage
    (``images: (n, 128, 128) uint8``). ``grid`` defaults to ``profile.fe_grid`` and ``criteria``
    to :func:`profile_criteria`; ``n_jobs`` to ``profile.n_jobs``. Returns the stage path;
    datasets as the module docstring, rows in dataset order. Chunks of ``profile.label_chunk``
    samples are checkpointed, so a killed run resumes where it stopped. ``nonlocal_length > 0``
    labels with the nonlocal void growth (:func:`label_structures`; not the default).
    """
    prof = get_profile(profile) if isinstance(profile, str) else profile
    if not isinstance(prof, Profile):
        raise ValueError(f"profile must be a Profile or a profile name, got {profile!r}")
    database_path = Path(database_path)
    if not database_path.is_file():
        raise ValueError(f"dual-phase dataset stage {database_path} does not exist: run "
                         f"notebook 01 or lib.microstructures.dual_phase.dual_phase_dataset first")
    data = load_stage(database_path)
    if "images" not in data:
        raise ValueError(f"{database_path} has no 'images' dataset (is it a dual-phase stage?)")
    images = data["images"]
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"{database_path}: images must have shape (n, N, N), got {images.shape}")
    grid = _check_grid(prof.fe_grid if grid is None else grid, images.shape[1])
    criteria = profile_criteria(prof) if criteria is None else criteria
    n_jobs = prof.n_jobs if n_jobs is None else n_jobs
    phases = tuple(phases)
    rule = COARSENINGS[_check_coarsening(coarsening)]
    params: dict[str, Any] = {
        "version": FRACTURE_LABELS_VERSION,
        "n_samples": len(images),
        "image_size": int(images.shape[1]),
        "grid": grid,
        "coarsening": rule,
        "criteria": _params_dict(criteria),
        "stepping": _params_dict(stepping),
        "phases": [_params_dict(p) for p in phases],
        "history_length": HISTORY_LENGTH,
    }
    if nonlocal_length:  # left out while off: the keys of the local labels stay as they were
        params["nonlocal_length"] = float(nonlocal_length)
        params["nonlocal_scheme"] = NONLOCAL_SCHEME_VERSION
    attrs = {
        "fe_grid": grid,
        "mean_void_critical": float(criteria.mean_void_critical),
        "load_drop": float(criteria.load_drop),
        "max_strain": float(criteria.max_strain),
        "nonphysical_limit": float(criteria.nonphysical_limit),
        "criteria": _params_dict(criteria),
        "phases": [_params_dict(p) for p in phases],
        "coarsening": rule,
        "model": (f"periodic RVE, {grid}x{grid} bilinear quadrilaterals with B-bar, small strain, "
                  f"plane strain, uniaxial tension along x (mean sigma_yy = sigma_xy = 0), GTN "
                  f"in both phases (lib.fe.gtn_rve, lib.fe.gtn_material)"),
        "units": "strains dimensionless (E_xx), stresses MPa, void fractions dimensionless",
        "histories": (f"history_* padded with NaN to {HISTORY_LENGTH} points, valid points "
                      f"history_length; longer runs thinned keeping peak and crossings "
                      f"(history_thinned)"),
    }
    return chunked_stage(
        prof.name, STAGE_NAME, params, n_items=len(images),
        compute_chunk=lambda a, b: label_structures(
            images[a:b], grid, criteria, n_jobs, stepping=stepping, phases=phases,
            threads_per_worker=threads_per_worker, scheduler_address=scheduler_address,
            coarsening=coarsening, nonlocal_length=nonlocal_length),
        chunk_size=prof.label_chunk, upstream=[read_key(database_path)], attrs=attrs,
        progress=progress,
    )


# --------------------------------------------------------------------------------------------
# analysis helpers (notebook 02)
# --------------------------------------------------------------------------------------------
def histories(labels: Mapping[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    """The valid part of sample ``i``'s histories: ``{"strain", "stress", "mean_void",
    "lateral_strain"}`` (each (history_length[i],))."""
    k = int(labels["history_length"][i])
    return {key: np.asarray(labels[f"history_{key}"][i, :k]) for key in _HISTORY_KEYS}


def spearman(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """Spearman rho over the pairs where both are finite (NaN with fewer than 3), and n."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    n = int(ok.sum())
    if n < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan"), n
    return float(spearmanr(a[ok], b[ok])[0]), n


def percentile_ratio(values: Any, high: float = 95, low: float = 5) -> float:
    """P_high / P_low of the finite values (NaN with fewer than 2 or a non-positive P_low)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return float("nan")
    lo, hi = np.percentile(v, [low, high])
    return float(hi / lo) if lo > 0 else float("nan")


def criterion_sensitivity(labels: Mapping[str, np.ndarray], mean_void_critical: float,
                          load_drop: float) -> dict[str, Any]:
    """How much the labels depend on the criterion, from the stored histories (SPEC A2).

    Returns the fracture strains under the run's f̄_crit, under f̄_crit / 2 and the load-drop
    strains at ``load_drop`` and ``load_drop / 2``, with the Spearman rank correlations between
    f̄_crit and f̄_crit / 2, between the f̄ and load-drop criteria, and between the two drops,
    and the 95th/5th percentile ratio of each.
    """
    length = labels["history_length"]
    s, sig, fbar = labels["history_strain"], labels["history_stress"], labels["history_mean_void"]
    fs = fracture_strain_at(s, fbar, mean_void_critical, length)
    fs_half = fracture_strain_at(s, fbar, mean_void_critical / 2, length)
    ld = load_drop_strain_at(s, sig, load_drop, length)
    ld_half = load_drop_strain_at(s, sig, load_drop / 2, length)
    # a failed run's values count only where reached before the failure: the histories hold
    # converged increments only, so nothing else is needed
    # a label marked for resting on the stabilization stays out at the run's own criterion
    for values, key in ((fs, "fracture_strain"), (ld, "load_drop_strain")):
        values[~np.isfinite(np.asarray(labels[key], float))] = np.nan
    out: dict[str, Any] = {"fracture_strain": fs, "fracture_strain_half": fs_half,
                           "load_drop_strain": ld, "load_drop_strain_half": ld_half}
    out["rho_fbar_vs_half"] = spearman(fs, fs_half)
    out["rho_fbar_vs_load_drop"] = spearman(fs, ld)
    out["rho_load_drop_vs_half"] = spearman(ld, ld_half)
    out["spread"] = {k: percentile_ratio(out[k]) for k in
                     ("fracture_strain", "fracture_strain_half", "load_drop_strain",
                      "load_drop_strain_half")}
    return out


def label_quality(labels: Mapping[str, np.ndarray]) -> dict[str, dict[str, int]]:
    """Per label of :data:`LABEL_KEYS`: how many samples have it (``labelled``), how many were
    **marked** (over the non-physical limit: NaN, not used) and how many of the labelled ones
    lie past the run's ``hill_strain`` (``past_hill``: a bifurcation was possible before the
    label; the tensile strength counts when its peak lies past it). Also ``runs``, the number
    of samples, and ``hill`` the runs with a finite ``hill_strain``. Stages written before
    these fields existed report zeros for them."""
    n = len(labels["fracture_strain"])
    hill = np.asarray(labels.get("hill_strain", np.full(n, np.nan)), float)
    peak = np.full(n, np.nan)
    for i in range(n):
        length = int(labels["history_length"][i])
        if length:
            stress = np.asarray(labels["history_stress"][i][:length], float)
            peak[i] = labels["history_strain"][i][int(np.argmax(stress))]
    out: dict[str, dict[str, int]] = {"runs": {"n": n, "hill": int(np.isfinite(hill).sum())}}
    for key in LABEL_KEYS:
        value = np.asarray(labels[key], float)
        strain = peak if key == "tensile_strength" else value
        ok = np.isfinite(value)
        # marked = set to NaN after its share was measured (a share exists only for a label
        # that was reached)
        share = np.asarray(labels.get(f"{key}_nonphysical_share", np.full(n, np.nan)), float)
        out[key] = {"labelled": int(ok.sum()),
                    "marked": int((~ok & np.isfinite(share)).sum()),
                    "past_hill": int((ok & np.isfinite(hill) & (strain > hill)).sum())}
    return out


def category_summary(labels: Mapping[str, np.ndarray], category: Any,
                     martensite_fraction: Any, category_names: Sequence[str]) -> list[dict[str, Any]]:
    """Per category (and "all"): n, failed runs, samples without a fracture strain, median and
    range of the fracture strain and tensile strength, Spearman rho of fracture strain vs
    martensite fraction, and the P95/P5 spread of the fracture strain."""
    category = np.asarray(category)
    frac = np.asarray(martensite_fraction, float)
    fs = np.asarray(labels["fracture_strain"], float)
    ts = np.asarray(labels["tensile_strength"], float)
    converged = np.asarray(labels["converged"], bool)
    rows = []
    groups = [(name, category == code) for code, name in enumerate(category_names)]
    for name, sel in groups + [("all", np.ones(category.shape, bool))]:
        n = int(sel.sum())
        if n == 0:
            continue
        ok = sel & np.isfinite(fs)
        rho, n_rho = spearman(frac[sel], fs[sel])
        rows.append({
            "category": name, "n": n,
            "failed_share": float((~converged[sel]).mean()),
            "unlabelled_share": float((~np.isfinite(fs[sel])).mean()),
            "fracture_strain_median": float(np.median(fs[ok])) if ok.any() else float("nan"),
            "fracture_strain_min": float(fs[ok].min()) if ok.any() else float("nan"),
            "fracture_strain_max": float(fs[ok].max()) if ok.any() else float("nan"),
            "tensile_strength_median": float(np.nanmedian(ts[sel])) if np.isfinite(ts[sel]).any() else float("nan"),
            "tensile_strength_min": float(np.nanmin(ts[sel])) if np.isfinite(ts[sel]).any() else float("nan"),
            "tensile_strength_max": float(np.nanmax(ts[sel])) if np.isfinite(ts[sel]).any() else float("nan"),
            "rho_fracture_strain_vs_martensite": rho, "n_rho": n_rho,
            "p95_over_p5": percentile_ratio(fs[sel]),
        })
    return rows


def summary_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of :func:`category_summary` rows."""
    def num(v: float, fmt: str) -> str:
        return "–" if not np.isfinite(v) else format(v, fmt)

    lines = ["| category | n | failed runs | no fracture strain | fracture strain median (min–max) "
             "| tensile strength MPa median (min–max) | Spearman ρ(FS, f_M) | P95/P5 of FS |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['category']} | {r['n']} | {100 * r['failed_share']:.1f} % "
            f"| {100 * r['unlabelled_share']:.1f} % "
            f"| {num(r['fracture_strain_median'], '.3f')} ({num(r['fracture_strain_min'], '.3f')}–"
            f"{num(r['fracture_strain_max'], '.3f')}) "
            f"| {num(r['tensile_strength_median'], '.0f')} ({num(r['tensile_strength_min'], '.0f')}–"
            f"{num(r['tensile_strength_max'], '.0f')}) "
            f"| {num(r['rho_fracture_strain_vs_martensite'], '+.2f')} (n = {r['n_rho']}) "
            f"| {num(r['p95_over_p5'], '.2f')} |")
    return "\n".join(lines)


def stage_description(path: Path) -> dict[str, Any]:
    """The grid, criteria and phases a labels stage was computed with (from its attributes)."""
    from lib.stages import stage_attrs

    attrs = stage_attrs(path)
    return {k: attrs[k] for k in ("fe_grid", "mean_void_critical", "load_drop", "max_strain",
                                  "nonphysical_limit", "coarsening", "model", "phases")
            if k in attrs}


def describe_choices(path: Path) -> str:
    """Markdown, one sentence per choice: the GTN parameters and their sources, f̄_crit, the
    load-drop fraction and the FE grid of a labels stage (read from its attributes)."""
    desc = stage_description(path)
    ferrite, martensite = desc["phases"]

    def flow(p: Mapping[str, Any]) -> str:
        sigma_y = p["K"] * p["eps0"] ** p["n"]
        return (f"σ_y = {sigma_y:.0f} MPa, Swift law σ_M = K (ε0 + ε̄p)^n with K = {p['K']:.0f} MPa, "
                f"ε0 = {p['eps0']:g}, n = {p['n']:g}")

    grid = desc["fe_grid"]
    return "\n".join([
        f"- **Elasticity:** E = {ferrite['E'] / 1000:g} GPa, ν = {ferrite['nu']:g} in both phases "
        f"(SPEC A2; the usual values for steel).",
        f"- **Ferrite:** {flow(ferrite)} (SPEC A2 range; ε0 calibrated so that homogeneous ferrite "
        f"peaks below 700 MPa in plane-strain tension, see `lib/fe/gtn_material.py`).",
        f"- **Martensite:** {flow(martensite)} (SPEC A2 range 1,200–1,500 MPa; flow curves of the "
        f"Rodriguez & Gutierrez (2003) type used for DP phases, e.g. Sun et al. (2009), "
        f"Ramazani et al. (2012)).",
        f"- **Void model:** q1 = {ferrite['q1']:g}, q2 = {ferrite['q2']:g} (Tvergaard 1981), "
        f"q3 = q1² = {ferrite['q3']:g} (Tvergaard 1982); strain-controlled nucleation "
        f"fN = {ferrite['fN']:g}, εN = {ferrite['eN']:g}, sN = {ferrite['sN']:g} "
        f"(Chu & Needleman 1980); coalescence fc = {ferrite['fc']:g}, fF = {ferrite['fF']:g} "
        f"(Tvergaard & Needleman 1984); initial porosity f0 = {ferrite['f0']:g} (inclusions "
        f"and processing voids of steel sheet, e.g. Santos et al. 2019; with f0 = 0 constrained "
        f"ferrite cavitates abruptly and the static solver stalls, see BENCHMARKS.md); the same "
        f"in both phases.",
        f"- **Fracture criterion:** the fracture strain is the strain at which the mean void "
        f"volume fraction over the RVE reaches f̄_crit = {desc['mean_void_critical']:g} (the "
        f"paper's criterion, whose value it does not print; a fully failed one-pixel band adds "
        f"about 0.25/{grid} = {0.25 / grid:.4f} to f̄ on this grid).",
        f"- **Second criterion:** the load-drop strain is the strain at which the mean stress has "
        f"fallen {100 * desc['load_drop']:g} % below its peak (elongation at break), reported "
        f"beside it; every run stops once both are reached, or at E_xx = {desc['max_strain']:g}.",
        f"- **FE grid:** {grid}×{grid} bilinear quadrilaterals with B-bar ({desc['coarsening']}); "
        f"the structures themselves are 128×128.",
    ])


def representative_indices(labels: Mapping[str, np.ndarray], category: Any,
                           n_categories: int) -> list[int]:
    """One sample per category: the one whose fracture strain is closest to its category's
    median (the first sample where a category has no fracture strain at all)."""
    category = np.asarray(category)
    fs = np.asarray(labels["fracture_strain"], float)
    out = []
    for code in range(n_categories):
        members = np.nonzero(category == code)[0]
        if members.size == 0:
            continue
        ok = members[np.isfinite(fs[members])]
        if ok.size == 0:
            out.append(int(members[0]))
            continue
        out.append(int(ok[np.argmin(np.abs(fs[ok] - np.median(fs[ok])))]))
    return out
