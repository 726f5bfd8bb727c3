"""Label image databases with periodic homogenization, in parallel and resumably.

Samples are independent, so a chunk of images is split into one contiguous batch per worker;
each worker process builds its :class:`PeriodicHomogenizer` once and reuses it (problem,
PARDISO analysis) for every later batch. Workers run with ``threads_per_worker`` BLAS/MKL
threads (default 1: on a 2-core machine two single-threaded workers beat one two-threaded
worker, see ``BENCHMARKS.md``). Locally the workers are joblib's loky processes; given a Dask
scheduler address (or ``STUDY_DASK_SCHEDULER``), the same batches go to a Dask cluster through
joblib's ``dask`` backend (:mod:`lib.cluster`). Results are checkpointed chunk by chunk by :func:`chunked_stage`.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from threadpoolctl import threadpool_limits

from lib import cluster
from lib.fe.homogenization import (
    ENGINEERING_CONSTANTS_DEFINITION,
    MATERIAL_CASES,
    PLANE_CONDITION,
    PeriodicHomogenizer,
)
from lib.profiles import Profile, get_profile
from lib.stages import chunked_stage, load_stage, read_key

#: Bump when the FE model changes in a way that changes the labels (it is part of the key).
HOMOGENIZATION_VERSION = 1

#: Scalar properties stored per material case, next to the (3, 3) stiffness.
SCALAR_PROPERTIES = ("Ex", "Ey", "nu_xy", "nu_yx", "Gxy", "alpha_x", "alpha_y")

#: Samples per task when labelling on a Dask cluster.
DASK_BATCH = 8

_HOMOGENIZERS: dict[int, PeriodicHomogenizer] = {}


def _homogenizer(size: int) -> PeriodicHomogenizer:
    """This process's homogenizer for ``size`` x ``size`` images (built on first use)."""
    if size not in _HOMOGENIZERS:
        _HOMOGENIZERS[size] = PeriodicHomogenizer(size)
    return _HOMOGENIZERS[size]


def homogenize_batch(images: np.ndarray, case_names: Sequence[str] = tuple(MATERIAL_CASES),
                     threads: int = 1) -> dict[str, np.ndarray]:
    """Homogenize ``images: (n, N, N) uint8, 1 = white`` for every named material case, here.

    Returns ``{f"{case}_stiffness": (n, 3, 3) MPa, f"{case}_{prop}": (n,)}`` for ``prop`` in
    :data:`SCALAR_PROPERTIES` (moduli in MPa, expansion in 1/K; definitions in
    :data:`ENGINEERING_CONSTANTS_DEFINITION`).
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (n, N, N), got {images.shape}")
    unknown = [name for name in case_names if name not in MATERIAL_CASES]
    if unknown:
        raise ValueError(f"unknown material case(s) {unknown}; known: {sorted(MATERIAL_CASES)}")
    n = len(images)
    out: dict[str, np.ndarray] = {}
    for name in case_names:
        out[f"{name}_stiffness"] = np.empty((n, 3, 3))
        out |= {f"{name}_{prop}": np.empty(n) for prop in SCALAR_PROPERTIES}
    with threadpool_limits(limits=threads):
        hom = _homogenizer(images.shape[1])
        for i, img in enumerate(images):
            for name in case_names:
                props = hom.homogenize(img, MATERIAL_CASES[name])
                out[f"{name}_stiffness"][i] = props.stiffness
                for prop, value in props.engineering_constants().items():
                    out[f"{name}_{prop}"][i] = value
    return out


def label_images(images: np.ndarray, case_names: Sequence[str] = tuple(MATERIAL_CASES),
                 n_jobs: int = -1, threads_per_worker: int = 1,
                 scheduler_address: str | None = None) -> dict[str, np.ndarray]:
    """Homogenize ``images: (n, N, N)`` over ``n_jobs`` workers (-1 = all cores) or a Dask cluster.

    The result equals ``homogenize_batch(images, case_names)``: the split only decides who
    computes which sample.
    """
    images = np.asarray(images)
    address = cluster.scheduler_address(scheduler_address)
    n_workers = (os.cpu_count() or 1) if n_jobs == -1 else max(1, int(n_jobs))
    if address:  # many small batches, so the cluster's scheduler can balance them
        n_batches = max(1, -(-len(images) // DASK_BATCH))
    else:
        n_batches = min(len(images), n_workers)
        if n_batches <= 1:
            return homogenize_batch(images, case_names, threads_per_worker)
    bounds = np.linspace(0, len(images), n_batches + 1).astype(int)
    with cluster.dask_backend(address):
        parts = Parallel(n_jobs=-1 if address else n_workers)(
            delayed(homogenize_batch)(images[a:b], tuple(case_names), threads_per_worker)
            for a, b in zip(bounds[:-1], bounds[1:]) if b > a
        )
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def homogenization_labels(profile: Profile | str, database: Path,
                          case_names: Sequence[str] = tuple(MATERIAL_CASES),
                          scheduler_address: str | None = None,
                          threads_per_worker: int = 1) -> Path:
    """Stage ``homogenization_labels``: label every image of a database stage file, resumably.

    ``database`` is an HDF5 stage with ``images: (n, N, N) uint8``. Returns the labels' stage
    path (datasets as :func:`homogenize_batch`, rows in database order). Chunks of
    ``profile.label_chunk`` samples are checkpointed, so a killed run resumes where it stopped.
    """
    prof = get_profile(profile) if isinstance(profile, str) else profile
    images = load_stage(database)["images"]
    params: Mapping = {
        "version": HOMOGENIZATION_VERSION,
        "n_samples": len(images),
        "size": int(images.shape[1]),
        "plane": PLANE_CONDITION,
        "cases": {name: _case_params(name) for name in case_names},
    }
    return chunked_stage(
        prof.name, "homogenization_labels", params, n_items=len(images),
        compute_chunk=lambda a, b: label_images(images[a:b], case_names, prof.n_jobs,
                                                threads_per_worker, scheduler_address),
        chunk_size=prof.label_chunk, upstream=[read_key(database)],
        attrs={"plane_condition": PLANE_CONDITION, "definitions": ENGINEERING_CONSTANTS_DEFINITION,
               "units": "moduli MPa, thermal expansion 1/K"},
    )


def _case_params(name: str) -> dict:
    case = MATERIAL_CASES[name]
    return {role: vars(getattr(case, role)) for role in ("black", "white")}


def label_checks(labels: Mapping[str, np.ndarray], white_fraction: np.ndarray) -> dict[str, float]:
    """Exact checks over a whole labelled database (SPEC B2), as worst cases.

    Returns the largest Voigt/Reuss bound violation (relative to the Voigt modulus; <= 0 means
    every sample is inside) per case, and the largest Levin residual |alpha_FE - alpha_Levin| /
    alpha_white for the aluminium/foam case. ``white_fraction: (n,)``.
    """
    from lib.fe.bounds import bound_violation, levin_thermal_expansion

    out: dict[str, float] = {}
    for name, case in MATERIAL_CASES.items():
        key = f"{name}_stiffness"
        if key not in labels:
            continue
        stiffness = np.asarray(labels[key])
        out[f"{name}_max_bound_violation"] = max(
            bound_violation(c, f, case) for c, f in zip(stiffness, white_fraction))
        if case.white.thermal_expansion != case.black.thermal_expansion:
            alpha = np.column_stack([labels[f"{name}_alpha_x"], labels[f"{name}_alpha_y"]])
            levin = np.array([levin_thermal_expansion(c, f, case)[:2] for c, f in zip(stiffness, white_fraction)])
            out[f"{name}_max_levin_residual"] = float(
                np.abs(alpha - levin).max() / max(case.white.thermal_expansion, case.black.thermal_expansion))
    return out


def summary_by_category(labels: Mapping[str, np.ndarray], category: np.ndarray,
                        category_names: Sequence[str]) -> str:
    """Markdown table: mean and (min-max) of the study's six labels per category.

    Moduli in GPa, expansion in 1e-6/K. ``category: (n,)`` integer codes into ``category_names``.
    """
    columns = [("boron_aluminium_Ex", "Case 1 Ex (GPa)", 1e-3), ("boron_aluminium_Ey", "Case 1 Ey (GPa)", 1e-3),
               ("boron_aluminium_nu_xy", "Case 2 νxy", 1.0), ("boron_aluminium_nu_yx", "Case 2 νyx", 1.0),
               ("aluminium_foam_alpha_x", "Case 3 αx (1e-6/K)", 1e6),
               ("aluminium_foam_alpha_y", "Case 3 αy (1e-6/K)", 1e6),
               ("aluminium_foam_Ex", "Case 3 Ex (GPa)", 1e-3)]
    lines = ["| category | n | " + " | ".join(title for _, title, _ in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for code, cat in enumerate(category_names):
        rows = np.asarray(category) == code
        cells = []
        for key, _, scale in columns:
            values = np.asarray(labels[key])[rows] * scale
            cells.append(f"{values.mean():.3g} ({values.min():.3g}–{values.max():.3g})" if rows.any() else "–")
        lines.append(f"| {cat} | {int(rows.sum())} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
