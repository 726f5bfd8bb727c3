"""GTN void maps of chosen structures on a finer FE grid than the labels' (SPEC A6).

The labels of the dual-phase database are computed on a coarse grid (32² at ``default``: each
FE pixel is a 4x4 block of the 128² structure), too coarse to say *where* in a structure voids
grow. This stage reruns the same GTN RVE (:mod:`lib.fe.gtn_rve`, same phases, criteria and
stepping as :func:`lib.fe.fracture_labels.fracture_labels`) for a given set of structures on
a finer grid (64² at ``default``, 128² = one element per pixel at ``paper``) and keeps the
element-mean void volume fraction at two states:

``load_drop_void_map``  (n, grid, grid) at the first increment past the 20 % load drop: the
                        state of the strain the generative model is conditioned on
                        (``load_drop_strain``, :mod:`lib.generation`);
``void_map``            (n, grid, grid) at the first increment with f̄ >= f̄_crit (the onset);

beside the run's labels (``load_drop_strain``, ``fracture_strain``, ``tensile_strength``,
``status``, ``seconds``, ... as in :mod:`lib.fe.fracture_labels`). A cached, chunked stage.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from lib.fe.fracture_labels import (COARSENING_RULE, FRACTURE_LABELS_VERSION, _check_grid,
                                    label_structures, profile_criteria)
from lib.profiles import Profile, get_profile
from lib.stages import chunked_stage

__all__ = ["VOID_MAP_GRIDS", "void_map_grid", "void_maps"]

#: FE grid of the comparison void maps per profile (the labels' grid is ``profile.fe_grid``).
VOID_MAP_GRIDS = {"smoke": 32, "default": 64, "paper": 128}

_KEEP = ("load_drop_void_map", "void_map", "load_drop_strain", "fracture_strain",
         "tensile_strength", "fe_martensite_fraction", "status", "converged", "seconds",
         "n_increments", "stabilization_energy_fraction", "stabilized_from")


def void_map_grid(profile: Profile | str) -> int:
    """The comparison grid of ``profile`` (:data:`VOID_MAP_GRIDS`; at least its label grid)."""
    prof = get_profile(profile) if isinstance(profile, str) else profile
    return max(VOID_MAP_GRIDS.get(prof.name, prof.fe_grid), prof.fe_grid)


def void_maps(profile: Profile | str, images: Any, name: str, upstream: list[str],
              grid: int | None = None, n_jobs: int | None = None,
              scheduler_address: str | None = None, progress: bool = True) -> Path:
    """Stage ``name``: void maps of ``images (n, N, N)`` (1 = martensite) on ``grid``² elements.

    ``upstream``: the keys of the stages the images come from; the images themselves are part
    of the key too (their SHA-1), so another choice of structures is another stage. ``grid`` defaults to :func:`void_map_grid`, ``n_jobs`` to the
    profile's. Returns the stage path; datasets as the module docstring, rows in input order.
    """
    prof = get_profile(profile) if isinstance(profile, str) else profile
    if not isinstance(prof, Profile):
        raise ValueError(f"profile must be a Profile or a profile name, got {profile!r}")
    imgs = np.asarray(images)
    if imgs.ndim != 3 or imgs.shape[0] == 0 or imgs.shape[1] != imgs.shape[2]:
        raise ValueError(f"images must have shape (n, N, N) with n >= 1, got {imgs.shape}")
    grid = _check_grid(void_map_grid(prof) if grid is None else grid, imgs.shape[1])
    criteria = profile_criteria(prof)
    n_jobs = prof.n_jobs if n_jobs is None else n_jobs
    digest = hashlib.sha1(np.ascontiguousarray(imgs, dtype=np.uint8).tobytes()).hexdigest()
    params = {"version": FRACTURE_LABELS_VERSION, "n_samples": len(imgs), "grid": grid,
              "images_sha1": digest,
              "criteria": {"mean_void_critical": criteria.mean_void_critical,
                           "load_drop": criteria.load_drop, "max_strain": criteria.max_strain}}

    def compute(a: int, b: int) -> dict[str, np.ndarray]:
        out = label_structures(imgs[a:b], grid, criteria, n_jobs, load_drop_map=True,
                               scheduler_address=scheduler_address)
        return {k: out[k] for k in _KEEP}

    attrs = {"fe_grid": grid, "coarsening": COARSENING_RULE,
             "mean_void_critical": float(criteria.mean_void_critical),
             "load_drop": float(criteria.load_drop),
             "maps": "element-mean void volume fraction; load_drop_void_map at the first "
                     "increment past the load drop, void_map at the first with mean f >= f_crit"}
    return chunked_stage(prof.name, name, params, n_items=len(imgs), compute_chunk=compute,
                         chunk_size=max(1, prof.label_chunk // 4), upstream=upstream, attrs=attrs,
                         progress=progress)
