"""Run profiles: the one switch (smoke / default / paper) that sizes every stage of the study.

Every notebook takes a ``profile`` parameter and asks this module for its sizes, so a number
such as "how many stochastic samples" lives in exactly one place.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

PROFILE_NAMES = ("smoke", "default", "paper")

#: Part B categories (SPEC B1), in the order used everywhere (figures, HDF5 ``category`` codes).
STOCHASTIC_CATEGORIES = ("particles", "fibers", "voronoi", "spinodal")


@dataclass(frozen=True)
class Profile:
    """Sizes of one run of the study.

    Attributes
    ----------
    name: profile name, one of ``PROFILE_NAMES``.
    n_stochastic_per_category: Part B samples per category (4 categories, SPEC B1).
    n_dual_phase: Part A dual-phase structures in total (SPEC A1).
    image_size: side of every microstructure image in pixels (128 in both papers).
    label_chunk: samples per checkpointed chunk of the FE labelling stages.
    n_jobs: worker processes for FE labelling (-1 = all cores).
    seed: master seed; every stage derives its own seeds from it.
    fe_grid: FE pixels per side of the Part A GTN RVE (SPEC A2); the 128x128 structures are
        block-averaged onto it (lib.fe.fracture_labels.coarsen), so it must divide image_size.
    fe_mean_void_critical: the fracture criterion f̄_crit, the mean void volume fraction over
        the RVE at fracture (the paper's criterion; its value is not printed there, see
        notebook 02). It depends on fe_grid: a fully failed one-pixel band adds about 0.25/N.
    fe_load_drop: fraction of the peak mean stress lost at "elongation at break", the second
        fracture criterion reported beside f̄_crit (SPEC A2).
    """

    name: str
    n_stochastic_per_category: int
    n_dual_phase: int
    image_size: int = 128
    label_chunk: int = 64
    n_jobs: int = -1
    seed: int = 2024
    fe_grid: int = 32
    fe_mean_void_critical: float = 0.005
    fe_load_drop: float = 0.2

    @property
    def n_stochastic(self) -> int:
        """Total number of Part B samples."""
        return self.n_stochastic_per_category * len(STOCHASTIC_CATEGORIES)

    def as_dict(self) -> dict[str, Any]:
        """Plain-dict view (JSON-able), for logs and stage keys."""
        return asdict(self)


_PROFILES = {
    "smoke": Profile("smoke", n_stochastic_per_category=16, n_dual_phase=24, label_chunk=16),
    "default": Profile("default", n_stochastic_per_category=1000, n_dual_phase=800),
    "paper": Profile("paper", n_stochastic_per_category=5000, n_dual_phase=3824, label_chunk=128,
                     fe_grid=128),
}


def get_profile(name: str, **overrides: Any) -> Profile:
    """Return the named profile, optionally with some fields overridden.

    >>> get_profile("smoke").n_stochastic
    64
    >>> get_profile("default", n_jobs=1).n_jobs
    1
    """
    if name not in _PROFILES:
        raise ValueError(f"unknown profile {name!r}: choose one of {', '.join(PROFILE_NAMES)}")
    profile = _PROFILES[name]
    unknown = set(overrides) - set(profile.as_dict())
    if unknown:
        raise ValueError(f"unknown profile field(s) {sorted(unknown)} for profile {name!r}")
    return replace(profile, **overrides) if overrides else profile
