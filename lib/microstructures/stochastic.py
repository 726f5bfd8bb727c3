"""Part B: the stochastic two-phase microstructure database (SPEC B1, paper 002 section 2.2).

Four categories of ``size x size`` binary images (``1`` = white phase), all periodic by
construction (every feature wraps around the edges, so an image tiles without seams), with a
white fraction drawn uniformly per sample in a window (0.38-0.41 in the paper):

* ``particles``: random circles and/or ellipses (parametric descriptors);
* ``fibers``: random straight fibers (capsules);
* ``voronoi``: periodic Voronoi tessellations, as a network (white walls) or porous (white cells);
* ``spinodal``: Gaussian random fields by the wave-form method (eq. 8) from a spectral density
  function (SDF) that varies per sample, thresholded at a quantile.

Every generator draws a continuous field (a normalized distance to the features, or the random
field) and thresholds it with :func:`~lib.microstructures.periodic.threshold_to_fraction`, so
the white fraction is exactly ``round(f * size**2) / size**2`` for the drawn target ``f``.
Each generator returns ``(img, params)`` with the parameters it drew, as plain JSON types.

Choices where the paper gives no numbers (one place, also stated in notebook 01), lengths in
pixels at ``size = 128`` and scaled with ``size`` otherwise:

* particles: overlapping allowed; equivalent radius 2.5-10 px (log-uniform) with a lognormal
  spread (CV 0-0.5), aspect ratio 1.5-4 for ellipses, orientations isotropic or aligned;
  half the samples place the particles by random sequential addition with a minimum gap;
* fibers: length 12-60 px, length/width 4-16, isotropic, aligned or two-directional;
* voronoi: 8-120 seeds, Poisson or hard-core seed points, optional axis-aligned stretch 1.3-2.5;
* spinodal: SDF a Gaussian ring (wavelength 8-40 px, relative width 0.05-0.5), two rings, or a
  Gaussian low-pass, optionally anisotropic; 64-1024 waves on the periodic lattice.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lib.microstructures.periodic import (
    ellipse_field,
    minimum_image,
    seam_statistics,
    segment_field,
    threshold_to_fraction,
    voronoi_fields,
    white_pixel_count,
)
from lib.profiles import STOCHASTIC_CATEGORIES, Profile, get_profile

__all__ = [
    "GENERATOR_VERSION",
    "FRACTION_WINDOW",
    "generate_particles",
    "generate_fibers",
    "generate_voronoi",
    "generate_spinodal",
    "spinodal_components",
    "wave_form_field",
    "generate_stochastic_sample",
    "sample_seeds",
    "stochastic_database",
    "database_summary",
    "format_summary",
]

#: Bump when any generator changes what it draws: it is part of the database stage key.
GENERATOR_VERSION = "stochastic-v1"
#: The paper's white-fraction window (section 2.2).
FRACTION_WINDOW = (0.38, 0.41)
_MIN_SIZE = 16


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _axial_angles(rng: np.random.Generator, n: int, mode: str, theta0: float, kappa: float
                  ) -> NDArray[np.float64]:
    """Orientations in ``[0, pi)``: uniform (``"isotropic"``) or axial von Mises about theta0."""
    if mode == "isotropic":
        return rng.uniform(0.0, np.pi, n)
    return np.mod(theta0 + rng.vonmises(0.0, kappa, n) / 2.0, np.pi)


def _threshold_low(field_fn, k_fraction: float, q_cut: float) -> tuple[NDArray[np.uint8], float]:
    """Threshold ``field_fn(q_cut)`` (a normalized distance field, white = low) to a fraction.

    The field is exact only below ``q_cut``; if the threshold lands above it the field is
    recomputed with a larger cut, so the result never depends on the cut.
    """
    for _ in range(8):
        field = field_fn(q_cut)
        img = threshold_to_fraction(field, k_fraction, high_is_white=False)
        t = float(field[img == 1].max()) if img.any() else 0.0
        if t < q_cut:
            return img, t
        q_cut *= 2.0
    raise RuntimeError("feature field too sparse to reach the white fraction")


def _random_sequential_centers(rng: np.random.Generator, size: int, radii: NDArray[np.float64],
                               gap: float, tries: int = 40) -> NDArray[np.float64]:
    """Centres placed largest first so that periodic distances exceed ``gap * (r_i + r_j)``.

    A particle that finds no free spot in ``tries`` attempts is placed at random (overlap).
    """
    order = np.argsort(-radii, kind="stable")
    centers = np.empty((len(radii), 2))
    placed: list[int] = []
    for i in order:
        cand = rng.uniform(0.0, size, (tries, 2))
        if placed:
            d = np.linalg.norm(minimum_image(cand[:, None, :] - centers[placed][None], size), axis=2)
            ok = np.nonzero((d >= gap * (radii[i] + radii[placed])).all(axis=1))[0]
            cand = cand[ok[:1]] if len(ok) else cand[:1]
        centers[i] = cand[0]
        placed.append(i)
    return centers


def generate_particles(rng: np.random.Generator, size: int = 128, white_fraction: float = 0.4
                       ) -> tuple[NDArray[np.uint8], dict[str, Any]]:
    """Random white circles and/or ellipses on a black matrix, periodic.

    Per sample: shape set (``circles``, ``ellipses`` or ``mixed``), mean equivalent radius
    ``sqrt(a b)``, its lognormal spread, mean aspect ratio ``a/b``, orientation (isotropic or
    aligned with a von Mises scatter) and placement (``overlapping``: uniform random centres;
    ``separated``: random sequential addition with a minimum gap, so particles mostly do not
    touch). Overlaps are allowed in both cases. All particles are then scaled by the common
    factor that gives the white fraction exactly (recorded as ``scale``).
    """
    s = size / 128.0
    shape = str(rng.choice(["circles", "ellipses", "mixed"]))
    r_mean = max(_loguniform(rng, 2.5, 10.0) * s, 1.0)
    r_cv = float(rng.uniform(0.0, 0.5))
    aspect_mean = 1.0 if shape == "circles" else float(rng.uniform(1.5, 4.0))
    orientation = "isotropic" if shape == "circles" or rng.random() < 0.5 else "aligned"
    theta0, kappa = float(rng.uniform(0.0, np.pi)), float(rng.uniform(2.0, 20.0))
    placement = "overlapping" if rng.random() < 0.5 else "separated"
    gap = float(rng.uniform(0.8, 1.1)) if placement == "separated" else 0.0

    coverage = -np.log1p(-white_fraction) if placement == "overlapping" else white_fraction
    n = int(np.clip(round(coverage * size**2 / (np.pi * r_mean**2 * (1 + r_cv**2))), 2, 4000))
    sig = np.sqrt(np.log1p(r_cv**2))
    r = np.exp(rng.normal(np.log(r_mean) - sig**2 / 2, sig, n))
    aspect = np.maximum(aspect_mean * np.exp(rng.normal(0.0, 0.15, n)), 1.0)
    if shape == "circles":
        aspect[:] = 1.0
    elif shape == "mixed":
        aspect[rng.random(n) < 0.5] = 1.0
    a = np.minimum(r * np.sqrt(aspect), size / 4)
    b = np.minimum(r / np.sqrt(aspect), a)
    angles = _axial_angles(rng, n, orientation, theta0, kappa)
    if placement == "separated":
        centers = _random_sequential_centers(rng, size, (a + b) / 2, gap)
    else:
        centers = rng.uniform(0.0, size, (n, 2))
    img, t = _threshold_low(
        lambda q: ellipse_field(size, centers, np.column_stack([a, b]), angles, q_cut=q),
        white_fraction, q_cut=2.0)
    return img, dict(shape=shape, n_particles=n, radius_mean=r_mean, radius_cv=r_cv,
                     aspect_mean=aspect_mean, orientation=orientation,
                     theta0=theta0 if orientation == "aligned" else None,
                     kappa=kappa if orientation == "aligned" else None,
                     placement=placement, gap=gap if placement == "separated" else None,
                     scale=t)


def generate_fibers(rng: np.random.Generator, size: int = 128, white_fraction: float = 0.4
                    ) -> tuple[NDArray[np.uint8], dict[str, Any]]:
    """Random straight white fibers (capsules: thick segments with round ends), periodic.

    Per sample: mean length and its spread, slenderness (length / width), orientation mode
    (``isotropic``, ``aligned`` about one direction, or ``bidirectional``: two families at an
    angle of 45-90 degrees, like a woven mat) with a von Mises scatter. Fibers may cross.
    Every fiber width is then scaled by the common factor giving the white fraction exactly
    (``width_scale``); lengths keep their drawn values.
    """
    s = size / 128.0
    length_mean = _loguniform(rng, 12.0, 60.0) * s
    length_cv = float(rng.uniform(0.0, 0.3))
    slenderness = float(rng.uniform(4.0, 16.0))
    orientation = str(rng.choice(["isotropic", "aligned", "bidirectional"]))
    theta0, kappa = float(rng.uniform(0.0, np.pi)), float(rng.uniform(2.0, 30.0))
    delta = float(rng.uniform(np.pi / 4, np.pi / 2))

    half_w_mean = max(length_mean / slenderness / 2, 0.75)
    area = 2 * length_mean * half_w_mean + np.pi * half_w_mean**2
    n = int(np.clip(round(-np.log1p(-white_fraction) * size**2 / area), 2, 4000))
    length = np.clip(length_mean * np.exp(rng.normal(0.0, length_cv, n)), 2.0, 0.9 * size)
    half_w = np.maximum(length / slenderness / 2 * np.exp(rng.normal(0.0, 0.1, n)), 0.75)
    angles = _axial_angles(rng, n, "isotropic" if orientation == "isotropic" else "aligned",
                           theta0, kappa)
    if orientation == "bidirectional":
        angles = np.mod(angles + delta * (rng.random(n) < 0.5), np.pi)
    centers = rng.uniform(0.0, size, (n, 2))
    img, t = _threshold_low(
        lambda q: segment_field(size, centers, length / 2, half_w, angles, q_cut=q),
        white_fraction, q_cut=2.0)
    return img, dict(n_fibers=n, length_mean=length_mean, length_cv=length_cv,
                     slenderness=slenderness, orientation=orientation,
                     theta0=theta0 if orientation != "isotropic" else None,
                     kappa=kappa if orientation != "isotropic" else None,
                     angle_between=delta if orientation == "bidirectional" else None,
                     width_scale=t)


def generate_voronoi(rng: np.random.Generator, size: int = 128, white_fraction: float = 0.4
                     ) -> tuple[NDArray[np.uint8], dict[str, Any]]:
    """Periodic Voronoi tessellation: a ``network`` (white walls) or ``porous`` (white cells).

    Per sample: number of seeds, seed process (``poisson`` or ``hardcore`` with a minimum
    distance, which makes cells more uniform), an optional stretch along x or y (elongated
    cells). Network: the field is the distance to the cell wall divided by a per-cell
    thickness factor (walls of varying thickness); porous: the distance to the wall, either
    as it is (``uniform`` walls) or divided by the cell's inradius (``proportional``: every
    cell keeps a pore), blended with the distance to the seed for rounder pores
    (``roundness``). The field is thresholded at the white fraction.
    """
    s2 = (size / 128.0) ** 2
    mode = "network" if rng.random() < 0.5 else "porous"
    n_seeds = max(int(round(_loguniform(rng, 8.0, 120.0) * s2)), 3)
    process = "poisson" if rng.random() < 0.5 else "hardcore"
    stretch_axis = str(rng.choice(["none", "none", "x", "y"]))
    stretch = 1.0 if stretch_axis == "none" else float(rng.uniform(1.3, 2.5))
    if process == "hardcore":
        d_min = float(rng.uniform(0.4, 0.8)) * size / np.sqrt(n_seeds)
        seeds = _random_sequential_centers(rng, size, np.full(n_seeds, d_min / 2), 1.0)
    else:
        d_min = None
        seeds = rng.uniform(0.0, size, (n_seeds, 2))
    st = (stretch, 1.0) if stretch_axis == "y" else (1.0, stretch) if stretch_axis == "x" else (1.0, 1.0)
    vf = voronoi_fields(size, seeds, stretch=st)
    if mode == "network":
        spread = float(rng.uniform(0.0, 0.5))
        g = 1.0 + spread * rng.uniform(-1.0, 1.0, n_seeds)
        field = vf["wall"] / ((g[vf["label"]] + g[vf["second"]]) / 2)
        img = threshold_to_fraction(field, white_fraction, high_is_white=False)
        extra = dict(thickness_spread=spread)
    else:
        walls = str(rng.choice(["uniform", "proportional"]))
        roundness = float(rng.uniform(0.0, 0.7))
        wall, d1 = vf["wall"], vf["d1"]
        if walls == "proportional":
            inr = np.zeros(n_seeds)
            np.maximum.at(inr, vf["label"].ravel(), wall.ravel())
            scale = np.maximum(inr, 1e-9)[vf["label"]]
            wall, d1 = wall / scale, d1 / scale
        field = (1 - roundness) * wall - roundness * d1
        img = threshold_to_fraction(field, white_fraction, high_is_white=True)
        extra = dict(walls=walls, roundness=roundness)
    return img, dict(mode=mode, n_seeds=n_seeds, process=process, min_distance=d_min,
                     stretch_axis=stretch_axis, stretch=stretch, **extra)


def _sdf_log_weights(m: NDArray[np.float64], sdf: dict[str, Any]) -> NDArray[np.float64]:
    """Log of the spectral density at lattice vectors ``m`` (``(n, 2)`` as ``(my, mx)``)."""
    kmag = np.hypot(m[:, 0], m[:, 1])
    if sdf["family"] == "ring":
        logw = -((kmag - sdf["m0"]) ** 2) / (2 * (sdf["width"] * sdf["m0"]) ** 2)
    elif sdf["family"] == "double_ring":
        w1 = np.exp(-((kmag - sdf["m0"]) ** 2) / (2 * (sdf["width"] * sdf["m0"]) ** 2))
        w2 = np.exp(-((kmag - sdf["m1"]) ** 2) / (2 * (sdf["width"] * sdf["m1"]) ** 2))
        logw = np.log(w1 + sdf["ratio"] * w2 + 1e-300)
    else:  # gaussian low-pass
        logw = -(kmag**2) / (2 * sdf["m0"] ** 2)
    if sdf["kappa"] > 0:
        theta = np.arctan2(m[:, 0], m[:, 1])
        logw = logw + sdf["kappa"] * (np.cos(2 * (theta - sdf["theta0"])) - 1)
    return logw


def spinodal_components(rng: np.random.Generator, size: int = 128
                        ) -> tuple[NDArray[np.int64], NDArray[np.float64], dict[str, Any]]:
    """Draw a spectral density and the wave components of eq. 8 from it.

    Returns integer lattice vectors ``m`` (``(n_waves, 2)``, ``(my, mx)``; wave vector
    ``k = 2 pi m / size``), phases uniform in ``[0, 2 pi)`` and the SDF parameters. Drawing
    ``m`` over the lattice with probability proportional to the SDF at ``|k|`` samples the
    radial density ``rho(k) k`` of eq. 8 with uniform directions (the lattice's density of
    states supplies the factor ``k``); only lattice vectors appear, so the field is exactly
    ``size``-periodic. One of each ``+-m`` pair is used (cosines are even).
    """
    s = size / 128.0
    half = size // 2 - 1                       # |m_x|, |m_y| < size/2: no Nyquist aliasing
    family = str(rng.choice(["ring", "ring", "double_ring", "gaussian"]))
    m_max = 0.35 * size
    sdf: dict[str, Any] = dict(family=family)
    sdf["m0"] = min(size / (_loguniform(rng, 8.0, 40.0) * s), m_max)
    sdf["width"] = float(rng.uniform(0.05, 0.5))
    if family == "double_ring":
        sdf["m1"] = min(sdf["m0"] * float(rng.uniform(1.8, 3.5)), m_max)
        sdf["ratio"] = float(rng.uniform(0.3, 1.0))
    elif family == "gaussian":
        sdf["m0"] = size / (_loguniform(rng, 10.0, 40.0) * s)
        del sdf["width"]
    anisotropic = rng.random() < 0.5
    sdf["kappa"] = float(rng.uniform(0.5, 4.0)) if anisotropic else 0.0
    sdf["theta0"] = float(rng.uniform(0.0, np.pi)) if anisotropic else None
    sdf["n_waves"] = int(round(_loguniform(rng, 64.0, 1024.0)))

    my, mx = np.meshgrid(np.arange(0, half + 1), np.arange(-half, half + 1), indexing="ij")
    keep = (my > 0) | (mx > 0)                 # half plane, m != 0
    lattice = np.column_stack([my[keep], mx[keep]])
    logw = _sdf_log_weights(lattice.astype(np.float64), sdf)
    p = np.exp(logw - logw.max())
    m = lattice[rng.choice(len(lattice), size=sdf["n_waves"], p=p / p.sum())]
    phases = rng.uniform(0.0, 2 * np.pi, sdf["n_waves"])
    return m.astype(np.int64), phases, sdf


def wave_form_field(m: NDArray[np.integer], phases: NDArray[np.float64], size: int,
                    points: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
    """Eq. 8: ``Y(r) = sqrt(2/n) sum_i cos(2 pi m_i . r / size + phi_i)``.

    With ``points=None`` the field on the ``size x size`` pixel grid (``r = (row, column)``),
    summed by one inverse FFT; otherwise the direct sum at ``points`` (``(P, 2)`` as
    ``(y, x)``, any real coordinates), which shows the periodicity ``Y(r + size e) = Y(r)``.
    """
    m = np.asarray(m)
    if points is not None:
        arg = 2 * np.pi * (np.asarray(points, dtype=np.float64) @ m.T) / size + phases
        return np.sqrt(2.0 / len(phases)) * np.cos(arg).sum(axis=1)
    spec = np.zeros((size, size), dtype=np.complex128)
    np.add.at(spec, (m[:, 0] % size, m[:, 1] % size), np.exp(1j * phases))
    return np.sqrt(2.0 / len(phases)) * size * size * np.fft.ifft2(spec).real


def generate_spinodal(rng: np.random.Generator, size: int = 128, white_fraction: float = 0.4
                      ) -> tuple[NDArray[np.uint8], dict[str, Any]]:
    """Spinodal-like structure: eq. 8 random field from a per-sample SDF, thresholded.

    See :func:`spinodal_components` for the SDF families (Gaussian ring, two rings, Gaussian
    low-pass; optionally anisotropic). White = the highest field values.
    """
    m, phases, sdf = spinodal_components(rng, size)
    field = wave_form_field(m, phases, size)
    return threshold_to_fraction(field, white_fraction, high_is_white=True), sdf


_GENERATORS = {
    "particles": generate_particles,
    "fibers": generate_fibers,
    "voronoi": generate_voronoi,
    "spinodal": generate_spinodal,
}
assert tuple(_GENERATORS) == STOCHASTIC_CATEGORIES


def _check_window(size: int, fraction_window: Sequence[float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in fraction_window)
    except (TypeError, ValueError) as err:
        raise ValueError(f"fraction_window must be two numbers (lo, hi), got {fraction_window!r}"
                         ) from err
    if not (0.0 < lo <= hi < 1.0):
        raise ValueError(f"fraction_window must satisfy 0 < lo <= hi < 1, got ({lo}, {hi})")
    white_pixel_count(lo, size * size, (lo, hi))    # raises if no pixel count fits
    return lo, hi


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def generate_stochastic_sample(category: str, seed: int, size: int = 128,
                               fraction_window: Sequence[float] = FRACTION_WINDOW
                               ) -> tuple[NDArray[np.uint8], dict[str, Any]]:
    """One sample of ``category``, reproducible from ``seed`` alone.

    The target white fraction is drawn uniformly in ``fraction_window``; the image has exactly
    the white-pixel count nearest to it inside the window (checked: a miss raises, never
    passes silently). Returns ``(img, params)``, ``img`` ``(size, size)`` ``uint8`` with
    ``1`` = white, ``params`` the drawn parameters plus ``category``, ``seed``,
    ``target_white_fraction``, ``white_fraction`` and ``generator_version`` (JSON types).
    """
    if category not in _GENERATORS:
        raise ValueError(f"unknown category {category!r}: choose one of "
                         f"{', '.join(STOCHASTIC_CATEGORIES)}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < _MIN_SIZE:
        raise ValueError(f"size must be an integer >= {_MIN_SIZE}, got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    size, seed = int(size), int(seed)
    lo, hi = _check_window(size, fraction_window)
    rng = np.random.default_rng(seed)
    target = float(rng.uniform(lo, hi))
    k = white_pixel_count(target, size * size, (lo, hi))
    img, params = _GENERATORS[category](rng, size, k / size**2)
    frac = float(img.mean())
    if img.shape != (size, size) or img.dtype != np.uint8 or int(img.sum()) != k:
        raise RuntimeError(f"{category} generator (seed {seed}) returned {img.shape} "
                           f"{img.dtype} with fraction {frac}, expected {k} white pixels")
    if not lo <= frac <= hi:
        raise RuntimeError(f"{category} sample (seed {seed}) has white fraction {frac} "
                           f"outside [{lo}, {hi}]")
    params = _jsonable(params)
    params.update(category=category, seed=seed, target_white_fraction=target,
                  white_fraction=frac, generator_version=GENERATOR_VERSION)
    return img, params


def sample_seeds(master_seed: int, category: str, n: int) -> NDArray[np.int64]:
    """Seeds of the first ``n`` samples of ``category``, from ``SeedSequence([master, index])``.

    The first ``n`` seeds do not depend on how many are asked for, so a larger profile extends
    a smaller one, and each sample can be regenerated alone with its seed.
    """
    idx = STOCHASTIC_CATEGORIES.index(category)
    words = np.random.SeedSequence([int(master_seed), idx]).generate_state(n, dtype=np.uint64)
    return (words >> np.uint64(1)).astype(np.int64)


def stochastic_database(profile: Profile | str, n_per_category: int | None = None,
                        chunk_size: int = 200) -> Path:
    """Generate (or find cached) the stochastic database of ``profile``; return its HDF5 path.

    Stage ``stochastic_db`` in ``data/<profile>/``, written in resumable chunks with a progress
    bar and keyed by categories, per-category count, image size, fraction window, master seed
    and :data:`GENERATOR_VERSION`. Datasets: ``images`` ``(n, N, N)`` uint8, ``category``
    ``(n,)`` int8 (index into ``STOCHASTIC_CATEGORIES``), ``white_fraction`` float64, ``seed``
    int64 and ``params_json`` (one JSON text per sample). Samples are ordered by category.
    ``n_per_category`` overrides the profile's count (tests, quick looks).
    """
    from lib.stages import chunked_stage   # stage machinery stays out of the pure generators

    prof = get_profile(profile) if isinstance(profile, str) else profile
    n_cat = prof.n_stochastic_per_category if n_per_category is None else n_per_category
    if isinstance(n_cat, bool) or not isinstance(n_cat, (int, np.integer)) or n_cat < 1:
        raise ValueError(f"n_per_category must be a positive integer, got {n_cat!r}")
    n_cat, size = int(n_cat), int(prof.image_size)
    _check_window(size, FRACTION_WINDOW)
    cats = list(STOCHASTIC_CATEGORIES)
    seeds = np.concatenate([sample_seeds(prof.seed, c, n_cat) for c in cats])
    params = dict(categories=cats, n_per_category=n_cat, size=size,
                  fraction_window=list(FRACTION_WINDOW), seed=int(prof.seed),
                  generator_version=GENERATOR_VERSION)

    def compute_chunk(start: int, stop: int) -> dict[str, np.ndarray]:
        n = stop - start
        images = np.empty((n, size, size), dtype=np.uint8)
        cat = np.empty(n, dtype=np.int8)
        frac = np.empty(n)
        texts = []
        for j, i in enumerate(range(start, stop)):
            cat[j] = i // n_cat
            images[j], p = generate_stochastic_sample(cats[cat[j]], int(seeds[i]), size,
                                                      FRACTION_WINDOW)
            frac[j] = p["white_fraction"]
            texts.append(json.dumps(p, sort_keys=True))
        return dict(images=images, category=cat, white_fraction=frac,
                    seed=seeds[start:stop].copy(), params_json=np.array(texts, dtype=str))

    return chunked_stage(prof.name, "stochastic_db", params, n_items=n_cat * len(cats),
                         compute_chunk=compute_chunk, chunk_size=chunk_size,
                         attrs=dict(categories=cats))


def database_summary(data: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Per-category rows: count, white fraction mean/min/max and a periodicity check.

    ``data`` holds ``images``, ``category`` and ``white_fraction`` as the ``stochastic_db``
    stage stores them. ``seam_changes`` is the mean fraction of pixel pairs that change phase
    across the wrap seams, ``interior_changes`` the same across interior pixel boundaries:
    equal up to noise for images that tile without seams.
    """
    missing = {"images", "category", "white_fraction"} - set(data)
    if missing:
        raise ValueError(f"database arrays missing: {sorted(missing)}")
    rows = []
    for code, name in enumerate(STOCHASTIC_CATEGORIES):
        sel = np.asarray(data["category"]) == code
        if not sel.any():
            continue
        frac = np.asarray(data["white_fraction"])[sel]
        stats = [seam_statistics(img) for img in np.asarray(data["images"])[sel]]
        rows.append(dict(category=name, n=int(sel.sum()), fraction_mean=float(frac.mean()),
                         fraction_min=float(frac.min()), fraction_max=float(frac.max()),
                         seam_changes=float(np.mean([s["seam"] for s in stats])),
                         interior_changes=float(np.mean([s["interior"].mean() for s in stats]))))
    return rows


def format_summary(rows: list[dict[str, Any]]) -> str:
    """:func:`database_summary` rows as a fixed-width text table."""
    head = f"{'category':<10} {'n':>6} {'mean':>7} {'min':>7} {'max':>7} {'seam':>7} {'interior':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['category']:<10} {r['n']:>6d} {r['fraction_mean']:>7.4f} "
                     f"{r['fraction_min']:>7.4f} {r['fraction_max']:>7.4f} "
                     f"{r['seam_changes']:>7.4f} {r['interior_changes']:>8.4f}")
    return "\n".join(lines)
