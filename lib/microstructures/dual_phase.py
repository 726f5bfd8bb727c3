"""Artificial dual-phase (ferrite–martensite) steel microstructures, Part A (SPEC A1).

The Part A paper prepared 3,824 binary 128×128 images in four categories (its Fig. 2): complete
laminates, rectangular and elliptical martensite grains drawn with Matlab ("martensite volume
fraction, aspect ratio, grain size, grain direction and grain distribution were varied ... the
distribution of martensitic grains incrementally evolved from regular to random"), and random
grain structures from Dream3D ("martensite volume fraction, aspect ratio and grain size were
varied"). Its generation scripts are not public; the generators below are ours and follow that
description:

``laminated``
    complete martensite layers that run through the periodic cell (rows constant when the layers
    lie along x), along x, along y or along a rational slope (1:1, 1:2, 2:1 ...), with 1–16
    layers of (optionally) different thickness.
``rectangle``
    axis-aligned rectangular martensite grains on a lattice (square or staggered) perturbed from
    regular (``randomness`` 0) to random (1) in position and size; a ``partially_laminated``
    subtype has rectangles 75–100 % of the lattice period long, so they nearly or fully connect
    across the cell.
``ellipse``
    elliptical martensite grains on the same kind of lattice, any orientation, with an orientation
    scatter that grows with ``randomness``.
``random``
    a periodic Voronoi grain tessellation (optionally elongated, like Dream3D's aspect ratio) whose
    grains are assigned to martensite in random order until the target fraction is reached, as
    Dream3D does for a two-phase polycrystal.

Conventions: ``img[i, j]`` with ``i`` the row (y, pointing down in figures) and ``j`` the column
(x, the loading direction of the FE tests); ``1`` = martensite (hard), ``0`` = ferrite. Every
image is periodic by construction: distances are taken to the nearest periodic image and layers
have integer wave numbers, so the image tiles without a seam. Orientation angles are in degrees,
measured from the x axis towards the row direction (+y, down in the figures), in [0, 180).

Martensite fraction: each generator draws shapes, then scales them (grain sizes, layer thickness)
or picks grains so the achieved fraction is the closest the pixel grid allows to the target,
always within ``FRACTION_TOLERANCE`` (0.02) and within ``RELATIVE_FRACTION_TOLERANCE`` (25 %)
of the smaller phase's share, or it raises ValueError; both numbers are recorded.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from lib.profiles import Profile

#: Part A categories, in the order used everywhere (HDF5 ``category`` codes, figure rows).
DUAL_PHASE_CATEGORIES = ("laminated", "rectangle", "ellipse", "random")

#: Default range of target martensite fractions (SPEC A1: about 0.1–0.6).
DEFAULT_FRACTION_RANGE = (0.1, 0.6)

#: The achieved martensite fraction is always within this of the target.
FRACTION_TOLERANCE = 0.02

#: ... and at most this share of the smaller phase's target (0.25: a 0.0015 target may come out
#: 0.0011-0.0019, not 0.0026); binds only for targets below 0.08 or above 0.92.
RELATIVE_FRACTION_TOLERANCE = 0.25

#: Stage name of the dataset in the cache (``data/<profile>/dual_phase_db...``).
STAGE_NAME = "dual_phase_db"

#: Bumped whenever a generator changes what a seed produces (part of the stage key).
GENERATOR_VERSION = 1

#: Levels of arrangement randomness (regular → random), as the paper's "incrementally evolved".
RANDOMNESS_LEVELS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)

_MIN_SIZE = 16
_MAX_TRIES = 50


# --------------------------------------------------------------------------------------------
# validation and small helpers
# --------------------------------------------------------------------------------------------
def _check_size(size: Any) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise ValueError(f"size must be an integer number of pixels, got {size!r}")
    if size < _MIN_SIZE:
        raise ValueError(f"size must be at least {_MIN_SIZE} pixels, got {size}")
    return int(size)


def _check_fraction(fraction: Any, name: str = "martensite_fraction") -> float:
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1), got {fraction!r}") from None
    if not (0.0 < value < 1.0):  # also rejects NaN
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {fraction!r}")
    return value


def _check_fraction_range(fraction_range: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in fraction_range)
    except (TypeError, ValueError):
        raise ValueError(
            f"fraction_range must be a pair (low, high), got {fraction_range!r}") from None
    if not (0.0 < lo <= hi < 1.0):
        raise ValueError(
            f"fraction_range must satisfy 0 < low <= high < 1, got {fraction_range!r}")
    return lo, hi


def _check_rng(rng: Any) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng)}")
    return rng


def _check_unit(value: Any, name: str) -> float:
    v = float(value)
    if not (0.0 <= v <= 1.0):
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    return v


def _check_min(value: Any, name: str, minimum: float) -> float:
    v = float(value)
    if not (v >= minimum) or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number >= {minimum}, got {value!r}")
    return v


def _check_int_range(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not (lo <= value <= hi):
        raise ValueError(f"{name} must lie in [{lo}, {hi}], got {value}")
    return int(value)


def _fraction_or_draw(rng: np.random.Generator, martensite_fraction: float | None) -> float:
    if martensite_fraction is None:
        return float(rng.uniform(*DEFAULT_FRACTION_RANGE))
    return _check_fraction(martensite_fraction)


def _jsonable(value: Any) -> Any:
    """Plain Python types (for ``json.dumps``) from numpy scalars, arrays and tuples."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return value


def _pixel_centres(size: int) -> np.ndarray:
    return np.arange(size, dtype=np.float64) + 0.5


def _wrap(delta: np.ndarray, size: int) -> np.ndarray:
    """Minimum-image displacement on a period ``size``."""
    return delta - size * np.round(delta / size)


def threshold_closest(field: np.ndarray, fraction: float) -> tuple[np.ndarray, float]:
    """``field <= t`` with the threshold ``t`` whose area fraction is closest to ``fraction``.

    Ties (pixels of equal value) are kept together, so a threshold never splits a set of pixels
    that the field cannot tell apart (for example one row of a laminate). Returns the uint8 mask
    and the threshold.
    """
    flat = np.sort(field, axis=None)
    values = np.unique(flat)
    counts = np.searchsorted(flat, values, side="right")
    err = np.abs(counts / flat.size - fraction)
    k = int(np.argmin(err))
    if fraction * flat.size < 0.5 * counts[0]:  # keeping nothing is closer than the first level
        return np.zeros(field.shape, dtype=np.uint8), float(values[0] - 1.0)
    return (field <= values[k]).astype(np.uint8), float(values[k])


class _Retry(Exception):
    """A random draw could not reach the target fraction: draw again."""


def _with_retries(rng: np.random.Generator, draw: Callable[[], tuple[np.ndarray, dict]],
                  fraction: float, category: str, explicit: bool) -> tuple[np.ndarray, dict]:
    """Call ``draw`` until its achieved fraction is within tolerance (deterministic per rng)."""
    tolerance = min(FRACTION_TOLERANCE,
                    RELATIVE_FRACTION_TOLERANCE * min(fraction, 1.0 - fraction))
    for attempt in range(_MAX_TRIES):
        try:
            img, params = draw()
        except _Retry:
            continue
        achieved = float(img.mean())
        if abs(achieved - fraction) <= tolerance:
            params = {"category": category, "martensite_fraction_target": fraction,
                      "martensite_fraction": achieved, **params, "draw_attempts": attempt + 1}
            return img, _jsonable(params)
        if explicit:
            break
    hint = (" (complete layers change the fraction in steps of 1/size)"
            if category == "laminated" else "")
    raise ValueError(
        f"{category}: could not reach martensite fraction {fraction:.4g} within "
        f"±{tolerance:.2g} with these shape parameters; choose others{hint}")


# --------------------------------------------------------------------------------------------
# laminated
# --------------------------------------------------------------------------------------------
#: Layer normals (a, b) in (x, y) pixel units: the layer index is floor(n (a x + b y) / N).
#: Integer components make the layers periodic. (0, 1) = layers along x.
LAMINATE_NORMALS = ((0, 1), (1, 0), (1, 1), (1, -1), (1, 2), (1, -2), (2, 1), (2, -1))
_LAMINATE_NORMAL_P = (0.3, 0.3, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05)


def _laminate_orientation(a: int, b: int) -> float:
    """Angle of the layers (their direction is (b, -a)) from the x axis, in [0, 180)."""
    return float(np.degrees(np.arctan2(-a, b)) % 180.0)


def generate_laminated(rng: np.random.Generator, size: int = 128, *,
                       martensite_fraction: float | None = None,
                       n_layers: int | None = None,
                       normal: tuple[int, int] | None = None,
                       thickness_variation: float | None = None) -> tuple[np.ndarray, dict]:
    """Complete martensite layers through the periodic cell.

    Parameters (drawn from ``rng`` when None)
    ----------
    martensite_fraction: target area fraction of martensite, in (0, 1).
    n_layers: number of martensite layers in the cell (each wraps around the torus).
    normal: integer layer normal (a, b) in (x, y); (0, 1) puts the layers along x (the loading
        direction: every row is constant), (1, 0) along y, (1, 1) / (1, -1) at 135° / 45°, ...
    thickness_variation: 0 = equal layers; v > 0 gives layer thicknesses ∝ 1 + v·U(-1, 1).

    Returns ``(img, params)``; ``params`` records orientation_deg, layers_along_x, n_layers,
    layer period and the thickness of every layer in pixels (measured along the normal).
    """
    rng = _check_rng(rng)
    size = _check_size(size)
    fraction = _fraction_or_draw(rng, martensite_fraction)
    explicit = n_layers is not None and normal is not None and thickness_variation is not None
    if normal is not None:
        a, b = (int(v) for v in normal)
        if (a, b) == (0, 0) or any(float(v) != int(v) for v in normal):
            raise ValueError(f"normal must be a non-zero pair of integers, got {normal!r}")
        normal = (a, b)
    if thickness_variation is not None:
        thickness_variation = _check_unit(thickness_variation, "thickness_variation")
    if n_layers is not None:
        n_layers = _check_int_range(n_layers, "n_layers", 1, size // 2)

    rows = np.arange(size)[:, None]
    cols = np.arange(size)[None, :]

    def draw():
        a, b = normal if normal is not None else LAMINATE_NORMALS[
            rng.choice(len(LAMINATE_NORMALS), p=_LAMINATE_NORMAL_P)]
        norm = math.hypot(a, b)
        # the thinner phase must stay >= ~2.5 px thick (measured along the normal)
        thin = min(fraction, 1.0 - fraction)
        n_max = max(1, min(16, int(thin * size / (2.5 * norm))))
        n = n_layers if n_layers is not None else int(rng.integers(1, n_max + 1))
        var = thickness_variation if thickness_variation is not None else float(
            rng.choice([0.0, rng.uniform(0.1, 0.6)], p=[0.4, 0.6]))
        weights = 1.0 + var * rng.uniform(-1.0, 1.0, size=n)
        # keep every layer, and every ferrite gap, at least ~1.5 px wide
        period_px = size / (n * norm)
        w_lo = 1.5 / (fraction * period_px)
        w_hi = (1.0 - 1.5 / period_px) / fraction
        if w_lo > w_hi:
            raise _Retry
        weights = np.clip(weights, w_lo, w_hi)  # relative thickness; the threshold scales all
        phase = float(rng.uniform(0.0, 1.0))
        # The pattern depends only on the pixel line m = (a j + b i) mod N (exact integers, so
        # pixels of one line share one value and the image is periodic to the last bit);
        # t is the layer coordinate of the line's pixel centres, integer at layer starts.
        m = np.arange(size)
        t = n * (m + 0.5 * (a + b)) / size + phase
        index = np.floor(t).astype(np.int64) % n
        within = t - np.floor(t)                        # position inside the layer period
        # equal layers would grow all at once (a jump of n pixel lines): order them randomly
        rank = rng.permutation(n).astype(np.float64)
        line_field = within / weights[index] * (1.0 + 1e-9 * rank[index] / n)
        field = line_field[(a * cols + b * rows) % size]  # martensite where field <= threshold
        img, thr = threshold_closest(field, fraction)
        thickness = np.minimum(thr * weights, 1.0) * period_px
        params = {
            "orientation_deg": _laminate_orientation(a, b),
            "layers_along_x": bool(a == 0),
            "normal_xy": [int(a), int(b)],
            "n_layers": n,
            "layer_period_px": period_px,
            "thickness_variation": var,
            "layer_thickness_px": thickness,
            "mean_layer_thickness_px": float(thickness.mean()),
            "phase_offset": phase,
            "randomness": 0.0,
        }
        return img, params

    return _with_retries(rng, draw, fraction, "laminated", explicit)


# --------------------------------------------------------------------------------------------
# grains on a perturbed lattice (rectangle, ellipse)
# --------------------------------------------------------------------------------------------
def _lattice(rng: np.random.Generator, size: int, n_rows: int, n_cols: int, staggered: bool,
             randomness: float) -> tuple[np.ndarray, np.ndarray]:
    """Grain centres (cx, cy) on an n_rows × n_cols lattice, jittered by ``randomness``.

    randomness 0: the regular lattice (staggered rows shifted by half a period); 1: each centre
    moves uniformly by up to one lattice period in x and y (as random as a Poisson pattern for
    practical purposes). The lattice tiles the cell, so the arrangement is periodic.
    """
    sx, sy = size / n_cols, size / n_rows
    rows, cols = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    cx = (cols + 0.5) * sx
    if staggered:
        cx = cx + 0.5 * sx * (rows % 2)
    cy = (rows + 0.5) * sy
    cx = cx.ravel() + randomness * rng.uniform(-1.0, 1.0, cx.size) * sx
    cy = cy.ravel() + randomness * rng.uniform(-1.0, 1.0, cy.size) * sy
    return cx % size, cy % size


def _draw_randomness(rng: np.random.Generator, randomness: float | None) -> float:
    if randomness is not None:
        return randomness
    return float(rng.choice(RANDOMNESS_LEVELS))


def _draw_aspect(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Aspect ratio, log-uniform in [lo, hi], with some exactly-round grains when lo == 1."""
    if lo <= 1.0 and rng.uniform() < 0.2:
        return 1.0
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _grid_shape(n_grains: int, long_ratio: float, long_along_x: bool,
                size: int) -> tuple[int, int]:
    """(n_rows, n_cols) with about n_grains cells, cells elongated like the grains."""
    # cell aspect sx/sy ≈ long_ratio (grains long along x) -> n_cols/n_rows ≈ 1/long_ratio
    r = long_ratio if long_along_x else 1.0 / long_ratio
    n_rows = max(1, int(round(math.sqrt(n_grains * r))))
    n_cols = max(1, int(round(n_grains / n_rows)))
    return min(n_rows, size // 4), min(n_cols, size // 4)


def _render_grains(fields: Callable[[int], np.ndarray], n: int, size: int,
                   rng: np.random.Generator, fraction: float) -> tuple[np.ndarray, float]:
    """Union of grains ``{r_k <= s}`` with the scale ``s`` that hits ``fraction``.

    ``fields(k)`` is grain k's normalized distance (1 on its nominal outline). Equal values of
    different grains are ordered by a random grain rank, so a regular lattice grows one grain
    side at a time instead of all grains at once (which would jump in fraction by a whole ring).
    """
    best = np.full((size, size), np.inf)
    owner = np.zeros((size, size), dtype=np.int64)
    for k in range(n):
        r = fields(k)
        closer = r < best
        best = np.where(closer, r, best)
        owner = np.where(closer, k, owner)
    if not np.isfinite(best).any():
        raise _Retry
    rank = rng.permutation(n).astype(np.float64)
    finite = np.isfinite(best)
    scale = np.nanmax(np.where(finite, best, np.nan)) + 1.0
    key = np.where(finite, best, 10.0 * scale) * (1.0 + 1e-9 * rank[owner] / n)
    img, thr = threshold_closest(key, fraction)
    return img, float(thr)


def generate_rectangle(rng: np.random.Generator, size: int = 128, *,
                       martensite_fraction: float | None = None,
                       subtype: str | None = None,
                       n_grains: int | None = None,
                       aspect_ratio: float | None = None,
                       long_axis: str | None = None,
                       randomness: float | None = None,
                       staggered: bool | None = None,
                       length_fraction: float | None = None) -> tuple[np.ndarray, dict]:
    """Axis-aligned rectangular martensite grains on a lattice perturbed from regular to random.

    Parameters (drawn from ``rng`` when None)
    ----------
    martensite_fraction: target area fraction of martensite, in (0, 1).
    subtype: ``"grains"`` (isolated rectangles, aspect ratio 1–5; their size is scaled to reach the
        fraction) or ``"partially_laminated"`` (rectangles ``length_fraction`` (0.75–1) of the
        lattice period long, 1–3 per row, so they nearly or fully connect across the cell; their
        thickness is scaled to reach the fraction).
    n_grains: approximate number of grains (the lattice has n_rows × n_cols of them).
    aspect_ratio: nominal long/short side ratio (>= 1) of the "grains" subtype.
    long_axis: ``"x"`` or ``"y"``, the direction of the long sides.
    randomness: arrangement from regular (0) to random (1): centre jitter of up to
        ``randomness`` lattice periods and a log-normal size scatter of σ = 0.3·randomness.
    staggered: shift every other lattice row (column for long_axis y) by half a period.
    length_fraction: rectangle length / lattice period ("partially_laminated" only).
    """
    rng = _check_rng(rng)
    size = _check_size(size)
    fraction = _fraction_or_draw(rng, martensite_fraction)
    if subtype is not None and subtype not in ("grains", "partially_laminated"):
        raise ValueError(f"subtype must be 'grains' or 'partially_laminated', got {subtype!r}")
    if long_axis is not None and long_axis not in ("x", "y"):
        raise ValueError(f"long_axis must be 'x' or 'y', got {long_axis!r}")
    if randomness is not None:
        randomness = _check_unit(randomness, "randomness")
    if aspect_ratio is not None:
        aspect_ratio = _check_min(aspect_ratio, "aspect_ratio", 1.0)
    if length_fraction is not None:
        length_fraction = _check_unit(length_fraction, "length_fraction")
    if n_grains is not None:
        n_grains = _check_int_range(n_grains, "n_grains", 1, (size // 4) ** 2)
    explicit = all(v is not None for v in (subtype, n_grains, long_axis, randomness, staggered)) \
        and (aspect_ratio is not None if subtype == "grains" else length_fraction is not None)
    coords = _pixel_centres(size)

    def draw():
        sub = subtype or str(rng.choice(["grains", "partially_laminated"], p=[0.7, 0.3]))
        axis = long_axis or str(rng.choice(["x", "y"], p=[0.5, 0.5]))
        rnd = _draw_randomness(rng, randomness)
        if sub == "grains":
            ar = aspect_ratio if aspect_ratio is not None else _draw_aspect(rng, 1.0, 5.0)
            # mean grain area >= ~24 px so the thinnest grains stay >= ~2 px wide
            g_max = max(1, min(100, int(fraction * size * size / (24.0 * ar ** 0.5))))
            g_min = min(4, g_max)
            g = n_grains if n_grains is not None else int(np.exp(
                rng.uniform(np.log(g_min), np.log(g_max + 1))))
            n_rows, n_cols = _grid_shape(g, ar ** float(rng.uniform(0.5, 1.0)),
                                         axis == "x", size)
            lf = None
        else:
            ar = None
            lf = length_fraction if length_fraction is not None else float(rng.uniform(0.75, 1.0))
            n_long = int(rng.integers(1, 4))
            thin = fraction * size  # total martensite thickness across the layers
            n_across_max = max(2, min(16, int(thin / 3.0), int((1 - fraction) * size / 3.0)))
            n_across = (max(1, int(round(n_grains / n_long))) if n_grains is not None
                        else int(rng.integers(2, n_across_max + 1)))
            n_rows, n_cols = (n_across, n_long) if axis == "x" else (n_long, n_across)
        stag = staggered if staggered is not None else bool(rng.uniform() < 0.3)
        # stagger the rows across the long direction; needs an even count to stay periodic
        if axis == "x":
            stag = stag and n_rows % 2 == 0
            cx, cy = _lattice(rng, size, n_rows, n_cols, stag, rnd)
        else:
            stag = stag and n_cols % 2 == 0
            cy, cx = _lattice(rng, size, n_cols, n_rows, stag, rnd)
        n = cx.size
        sx, sy = size / n_cols, size / n_rows
        scatter = np.exp(0.3 * rnd * rng.standard_normal(n))
        if sub == "grains":
            # nominal half sides with the drawn aspect ratio, scaled later by the threshold
            long_, short_ = math.sqrt(ar), 1.0 / math.sqrt(ar)
            ha = (long_ if axis == "x" else short_) * scatter
            hb = (short_ if axis == "x" else long_) * scatter

            def field(k):
                u = np.abs(_wrap(coords - cx[k], size))[None, :] / ha[k]
                v = np.abs(_wrap(coords - cy[k], size))[:, None] / hb[k]
                return np.maximum(u, v)
        else:
            period_long = sx if axis == "x" else sy
            half_len = 0.5 * lf * period_long * np.minimum(scatter, 1.0 / lf)  # <= one period
            thick = scatter

            def field(k):
                u = np.abs(_wrap(coords - cx[k], size))
                v = np.abs(_wrap(coords - cy[k], size))
                if axis == "x":
                    inside = (u <= half_len[k])[None, :]
                    r = np.broadcast_to((v / thick[k])[:, None], (size, size))
                else:
                    inside = (v <= half_len[k])[:, None]
                    r = np.broadcast_to((u / thick[k])[None, :], (size, size))
                return np.where(inside, r, np.inf)

        img, s = _render_grains(field, n, size, rng, fraction)
        params: dict[str, Any] = {
            "subtype": sub, "long_axis": axis,
            "orientation_deg": 0.0 if axis == "x" else 90.0,
            "n_grains": n, "n_rows": n_rows, "n_cols": n_cols, "staggered": stag,
            "randomness": rnd, "size_scatter_sigma": 0.3 * rnd,
        }
        if sub == "grains":
            half_long = s * (ha if axis == "x" else hb)
            half_short = s * (hb if axis == "x" else ha)
            params.update(aspect_ratio=ar,
                          mean_grain_length_px=float(2 * half_long.mean()),
                          mean_grain_width_px=float(2 * half_short.mean()),
                          grain_size_px=float(np.mean(2 * np.sqrt(half_long * half_short))))
        else:
            width = 2 * s * thick
            params.update(aspect_ratio=float(np.mean(2 * half_len / np.maximum(width, 1e-9))),
                          length_fraction=lf,
                          mean_grain_length_px=float(2 * half_len.mean()),
                          mean_grain_width_px=float(width.mean()),
                          grain_size_px=float(np.mean(2 * np.sqrt(half_len * s * thick))))
        return img, params

    return _with_retries(rng, draw, fraction, "rectangle", explicit)


def generate_ellipse(rng: np.random.Generator, size: int = 128, *,
                     martensite_fraction: float | None = None,
                     n_grains: int | None = None,
                     aspect_ratio: float | None = None,
                     orientation_deg: float | None = None,
                     randomness: float | None = None,
                     staggered: bool | None = None) -> tuple[np.ndarray, dict]:
    """Elliptical martensite grains on a lattice perturbed from regular to random.

    Parameters (drawn from ``rng`` when None)
    ----------
    martensite_fraction: target area fraction of martensite, in (0, 1).
    n_grains: approximate number of grains (lattice n_rows × n_cols).
    aspect_ratio: semi-major / semi-minor axis (>= 1), log-uniform in [1, 5] by default.
    orientation_deg: angle of the major axes from x (0, 45, 90, 135 or any angle).
    randomness: arrangement from regular (0) to random (1): centre jitter of up to
        ``randomness`` lattice periods, log-normal size scatter σ = 0.3·randomness and an
        orientation scatter of ±45°·randomness.
    staggered: shift every other lattice row by half a period.

    Grain sizes are scaled together to reach the fraction (neighbours may touch and merge at
    high fractions, as in the paper's Fig. 2c).
    """
    rng = _check_rng(rng)
    size = _check_size(size)
    fraction = _fraction_or_draw(rng, martensite_fraction)
    if randomness is not None:
        randomness = _check_unit(randomness, "randomness")
    if aspect_ratio is not None:
        aspect_ratio = _check_min(aspect_ratio, "aspect_ratio", 1.0)
    if orientation_deg is not None:
        orientation_deg = float(orientation_deg)
        if not math.isfinite(orientation_deg):
            raise ValueError(f"orientation_deg must be finite, got {orientation_deg!r}")
        orientation_deg %= 180.0
    if n_grains is not None:
        n_grains = _check_int_range(n_grains, "n_grains", 1, (size // 4) ** 2)
    explicit = all(v is not None for v in (n_grains, aspect_ratio, orientation_deg, randomness,
                                           staggered))
    coords = _pixel_centres(size)

    def draw():
        ar = aspect_ratio if aspect_ratio is not None else _draw_aspect(rng, 1.0, 5.0)
        if orientation_deg is not None:
            theta = orientation_deg
        elif rng.uniform() < 0.6:
            theta = float(rng.choice([0.0, 90.0, 45.0, 135.0], p=[0.35, 0.35, 0.15, 0.15]))
        else:
            theta = float(rng.uniform(0.0, 180.0))
        rnd = _draw_randomness(rng, randomness)
        # semi-major axis must stay < ~0.4 N for the minimum-image distance to be exact:
        # pi a b = f N^2 / G, a = b ar  ->  G >= f ar / (pi 0.4^2)
        g_min = max(2, int(math.ceil(fraction * ar / (math.pi * 0.16))))
        g_max = max(g_min, min(100, int(fraction * size * size / (24.0 * ar ** 0.5))))
        g = n_grains if n_grains is not None else int(np.exp(
            rng.uniform(np.log(g_min), np.log(g_max + 1))))
        c, s_ = abs(math.cos(math.radians(theta))), abs(math.sin(math.radians(theta)))
        long_along_x = c >= s_
        n_rows, n_cols = _grid_shape(g, ar ** float(rng.uniform(0.5, 1.0)) if max(c, s_)
                                     > 0.9 else 1.0, long_along_x, size)
        stag = staggered if staggered is not None else bool(rng.uniform() < 0.4)
        stag = stag and n_rows % 2 == 0
        cx, cy = _lattice(rng, size, n_rows, n_cols, stag, rnd)
        n = cx.size
        scatter = np.exp(0.3 * rnd * rng.standard_normal(n))
        angles = np.radians(theta + 45.0 * rnd * rng.uniform(-1.0, 1.0, n))
        semi_a = math.sqrt(ar) * scatter
        semi_b = scatter / math.sqrt(ar)
        cos_t, sin_t = np.cos(angles), np.sin(angles)

        def field(k):
            dx = _wrap(coords - cx[k], size)[None, :]
            dy = _wrap(coords - cy[k], size)[:, None]
            u = dx * cos_t[k] + dy * sin_t[k]
            v = -dx * sin_t[k] + dy * cos_t[k]
            return np.sqrt((u / semi_a[k]) ** 2 + (v / semi_b[k]) ** 2)

        img, s = _render_grains(field, n, size, rng, fraction)
        a_px, b_px = s * semi_a, s * semi_b
        if float(a_px.max()) > 0.45 * size:
            raise _Retry  # a grain outgrew the minimum-image region
        params = {
            "n_grains": n, "n_rows": n_rows, "n_cols": n_cols, "staggered": stag,
            "aspect_ratio": ar, "orientation_deg": theta,
            "orientation_scatter_deg": 45.0 * rnd,
            "randomness": rnd, "size_scatter_sigma": 0.3 * rnd,
            "mean_semi_major_px": float(a_px.mean()), "mean_semi_minor_px": float(b_px.mean()),
            "grain_size_px": float(np.mean(2 * np.sqrt(a_px * b_px))),
        }
        return img, params

    return _with_retries(rng, draw, fraction, "ellipse", explicit)


# --------------------------------------------------------------------------------------------
# random (periodic Voronoi, Dream3D-like grain assignment)
# --------------------------------------------------------------------------------------------
def periodic_voronoi_labels(size: int, cx: np.ndarray, cy: np.ndarray, aspect_ratio: float = 1.0,
                            orientation_deg: float = 0.0) -> np.ndarray:
    """Label of the nearest seed of every pixel on the torus, in an elongated metric.

    The metric stretches grains by ``aspect_ratio`` along ``orientation_deg``; seeds are copied
    into the 3×3 neighbouring cells, which is exact while grains are smaller than the cell.
    """
    from scipy.spatial import cKDTree

    theta = math.radians(orientation_deg)
    rot = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    scale = np.diag([1.0 / math.sqrt(aspect_ratio), math.sqrt(aspect_ratio)])
    transform = scale @ rot                              # (x, y) -> metric coordinates
    shifts = np.array([(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)], dtype=float) * size
    seeds = np.stack([cx, cy], axis=1)
    images = (seeds[None, :, :] + shifts[:, None, :]).reshape(-1, 2)
    tree = cKDTree(images @ transform.T)
    yy, xx = np.meshgrid(_pixel_centres(size), _pixel_centres(size), indexing="ij")
    pts = np.stack([xx.ravel(), yy.ravel()], axis=1) @ transform.T
    _, idx = tree.query(pts, k=1)
    return (idx % len(cx)).reshape(size, size)


def _assign_grains(rng: np.random.Generator, areas: np.ndarray, target_px: float) -> np.ndarray:
    """Grains in random order until the martensite area is closest to ``target_px``.

    Then a few add / remove / swap moves that bring the area closer still (the pixel area of
    grains is fixed, so a move is a whole grain, never part of one).
    """
    order = rng.permutation(areas.size)
    csum = np.concatenate([[0.0], np.cumsum(areas[order])])
    m = int(np.argmin(np.abs(csum - target_px)))
    chosen = np.zeros(areas.size, dtype=bool)
    chosen[order[:m]] = True
    for _ in range(20):
        gap = target_px - areas[chosen].sum()
        if abs(gap) < 0.5:
            break
        a_in, a_out = areas[chosen], areas[~chosen]
        idx_in, idx_out = np.flatnonzero(chosen), np.flatnonzero(~chosen)
        candidates = []  # (new |gap|, kind, index(es))
        if a_out.size:
            k = int(np.argmin(np.abs(gap - a_out)))
            candidates.append((abs(gap - a_out[k]), "add", idx_out[k], None))
        if a_in.size:
            k = int(np.argmin(np.abs(gap + a_in)))
            candidates.append((abs(gap + a_in[k]), "remove", idx_in[k], None))
        if a_in.size and a_out.size:
            delta = a_out[None, :] - a_in[:, None]
            k = int(np.argmin(np.abs(gap - delta)))
            i, j = np.unravel_index(k, delta.shape)
            candidates.append((abs(gap - delta[i, j]), "swap", idx_in[i], idx_out[j]))
        new_gap, kind, i, j = min(candidates, key=lambda c: c[0])
        if new_gap >= abs(gap):
            break
        if kind == "add":
            chosen[i] = True
        elif kind == "remove":
            chosen[i] = False
        else:
            chosen[i], chosen[j] = False, True
    return chosen


def generate_random(rng: np.random.Generator, size: int = 128, *,
                    martensite_fraction: float | None = None,
                    n_grains: int | None = None,
                    aspect_ratio: float | None = None,
                    orientation_deg: float | None = None,
                    randomness: float | None = None) -> tuple[np.ndarray, dict]:
    """Periodic Voronoi polycrystal with grains assigned to martensite (Dream3D-like).

    Parameters (drawn from ``rng`` when None)
    ----------
    martensite_fraction: target area fraction of martensite, in (0, 1).
    n_grains: number of grains in the cell (20–300, log-uniform, by default).
    aspect_ratio: grain elongation (>= 1; 1–3 by default, as Dream3D's aspect ratio).
    orientation_deg: direction of the elongation (0 = x, 90 = y).
    randomness: seed arrangement, 1 = Poisson (fully random, the default), lower values jitter a
        lattice (more uniform grain sizes).
    """
    rng = _check_rng(rng)
    size = _check_size(size)
    fraction = _fraction_or_draw(rng, martensite_fraction)
    if randomness is not None:
        randomness = _check_unit(randomness, "randomness")
    if aspect_ratio is not None:
        aspect_ratio = _check_min(aspect_ratio, "aspect_ratio", 1.0)
    if orientation_deg is not None:
        orientation_deg = float(orientation_deg) % 180.0
    if n_grains is not None:
        n_grains = _check_int_range(n_grains, "n_grains", 2, size * size // 4)
    explicit = all(v is not None for v in (n_grains, aspect_ratio, orientation_deg, randomness))

    def draw():
        g = n_grains if n_grains is not None else int(np.exp(rng.uniform(np.log(20), np.log(301))))
        ar = aspect_ratio if aspect_ratio is not None else _draw_aspect(rng, 1.0, 3.0)
        theta = orientation_deg if orientation_deg is not None else float(
            rng.choice([0.0, 90.0, rng.uniform(0.0, 180.0)], p=[0.4, 0.3, 0.3]))
        rnd = randomness if randomness is not None else float(rng.choice([1.0, 0.6], p=[0.8, 0.2]))
        if rnd >= 1.0:
            cx, cy = rng.uniform(0, size, g), rng.uniform(0, size, g)
        else:
            n_rows = max(1, int(round(math.sqrt(g))))
            n_cols = max(1, int(round(g / n_rows)))
            cx, cy = _lattice(rng, size, n_rows, n_cols, n_rows % 2 == 0, rnd)
        labels = periodic_voronoi_labels(size, cx, cy, ar, theta)
        areas = np.bincount(labels.ravel(), minlength=cx.size).astype(np.float64)
        chosen = _assign_grains(rng, areas, fraction * size * size)
        img = chosen[labels].astype(np.uint8)
        present = areas > 0
        params = {
            "n_grains": int(present.sum()), "aspect_ratio": ar, "orientation_deg": theta,
            "randomness": rnd, "n_martensite_grains": int(chosen.sum()),
            "grain_size_px": float(np.mean(2 * np.sqrt(areas[present] / math.pi))),
        }
        return img, params

    return _with_retries(rng, draw, fraction, "random", explicit)


# --------------------------------------------------------------------------------------------
# dispatcher, dataset stage, baseline map
# --------------------------------------------------------------------------------------------
GENERATORS: Mapping[str, Callable[..., tuple[np.ndarray, dict]]] = {
    "laminated": generate_laminated,
    "rectangle": generate_rectangle,
    "ellipse": generate_ellipse,
    "random": generate_random,
}


def generate_dual_phase(category: str, seed: int, size: int = 128,
                        fraction_range: Sequence[float] = DEFAULT_FRACTION_RANGE
                        ) -> tuple[np.ndarray, dict]:
    """One dual-phase microstructure of ``category``, fully determined by ``seed``.

    The target martensite fraction is uniform in ``fraction_range`` (for laminates snapped to a
    multiple of 1/size, the steps a complete layer can take); every shape parameter is
    drawn by the category's generator and recorded in the returned dict (with ``seed``).
    """
    if category not in GENERATORS:
        raise ValueError(
            f"unknown dual-phase category {category!r}: choose one of {DUAL_PHASE_CATEGORIES}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    size = _check_size(size)
    lo, hi = _check_fraction_range(fraction_range)
    rng = np.random.default_rng(int(seed))
    target = float(rng.uniform(lo, hi))
    if category == "laminated":
        # complete layers hold whole pixel lines: the fraction moves in steps of 1/size, so
        # the target is snapped onto that grid (matters for small images only)
        k = int(round(target * size))
        k_lo, k_hi = max(1, math.ceil(lo * size)), min(size - 1, math.floor(hi * size))
        target = (min(max(k, k_lo), k_hi) if k_lo <= k_hi else min(max(k, 1), size - 1)) / size
    img, params = GENERATORS[category](rng, size, martensite_fraction=target)
    params["seed"] = int(seed)
    params["size"] = size
    return img, params


def sample_seeds(master_seed: int, n: int, stream: int = 0) -> np.ndarray:
    """``n`` per-sample seeds (int64, non-negative) from ``SeedSequence(master_seed)``.

    Part A's stream is separated from other stages' by the spawn key ``(0xA1,)``; ``stream``
    > 0 gives further independent streams (extra structures: ``(0xA1, stream)``).
    """
    spawn_key = (0xA1,) if stream == 0 else (0xA1, int(stream))
    ss = np.random.SeedSequence(int(master_seed), spawn_key=spawn_key)
    state = ss.generate_state(n, dtype=np.uint64)
    return (state >> np.uint64(1)).astype(np.int64)


def build_dual_phase_arrays(n_per_category: int, master_seed: int, size: int = 128,
                            fraction_range: Sequence[float] = DEFAULT_FRACTION_RANGE,
                            progress: bool = True,
                            categories: Sequence[str] = DUAL_PHASE_CATEGORIES,
                            stream: int = 0) -> dict[str, np.ndarray]:
    """The dataset as arrays (what the stage stores), ``n_per_category`` of each category.

    Samples are ordered by category (all of ``categories[0]`` first, ...); seeds come from
    :func:`sample_seeds` (``stream``), so sample ``i`` is
    ``generate_dual_phase(DUAL_PHASE_CATEGORIES[category[i]], seed[i])``.
    """
    unknown = [c for c in categories if c not in DUAL_PHASE_CATEGORIES]
    if unknown or not categories:
        raise ValueError(f"categories must be a non-empty subset of {DUAL_PHASE_CATEGORIES}, "
                         f"got {list(categories)}")
    if isinstance(n_per_category, bool) or not isinstance(n_per_category, (int, np.integer)) \
            or n_per_category < 1:
        raise ValueError(f"n_per_category must be a positive integer, got {n_per_category!r}")
    size = _check_size(size)
    lo, hi = _check_fraction_range(fraction_range)
    n = n_per_category * len(categories)
    seeds = sample_seeds(master_seed, n, stream)
    codes = np.repeat(np.array([DUAL_PHASE_CATEGORIES.index(c) for c in categories],
                               dtype=np.int8), n_per_category)
    images = np.empty((n, size, size), dtype=np.uint8)
    fractions = np.empty(n, dtype=np.float64)
    params_json = []
    iterator = range(n)
    if progress:
        from tqdm import tqdm  # text bars: they read right in a saved notebook too
        iterator = tqdm(iterator, desc="dual-phase microstructures", unit="img")
    for i in iterator:
        img, params = generate_dual_phase(DUAL_PHASE_CATEGORIES[codes[i]], int(seeds[i]), size,
                                          (lo, hi))
        images[i] = img
        fractions[i] = params["martensite_fraction"]
        params_json.append(json.dumps(params, sort_keys=True))
    return {
        "images": images,
        "category": codes,
        "martensite_fraction": fractions,
        "seed": seeds,
        "params_json": np.array(params_json, dtype=str),
    }


def dual_phase_dataset(profile: "Profile | str") -> Path:
    """Stage ``dual_phase_db``: ``n_dual_phase // 4`` structures per category, cached in HDF5.

    Datasets: ``images`` (n, N, N) uint8 (1 = martensite), ``category`` (n,) int8 index into
    ``DUAL_PHASE_CATEGORIES``, ``martensite_fraction`` (n,) achieved, ``seed`` (n,) int64,
    ``params_json`` (n,) str (every drawn parameter). Returns the path of the stage file.
    """
    from lib.profiles import Profile, get_profile
    from lib.stages import cached_stage

    if isinstance(profile, str):
        profile = get_profile(profile)
    if not isinstance(profile, Profile):
        raise ValueError(f"profile must be a Profile or a profile name, got {profile!r}")
    n_per = profile.n_dual_phase // len(DUAL_PHASE_CATEGORIES)
    if n_per < 1:
        raise ValueError(f"profile {profile.name!r} has n_dual_phase={profile.n_dual_phase}: "
                         f"need at least {len(DUAL_PHASE_CATEGORIES)} (one per category)")
    params = {
        "n_per_category": n_per,
        "image_size": profile.image_size,
        "seed": profile.seed,
        "fraction_range": list(DEFAULT_FRACTION_RANGE),
        "fraction_tolerance": FRACTION_TOLERANCE,
        "generator_version": GENERATOR_VERSION,
    }
    return cached_stage(
        profile.name, STAGE_NAME, params,
        lambda: build_dual_phase_arrays(n_per, profile.seed, profile.image_size,
                                        DEFAULT_FRACTION_RANGE),
        attrs={"categories": json.dumps(DUAL_PHASE_CATEGORIES),
               "convention": "1 = martensite (hard), 0 = ferrite; img[row=y, col=x]; periodic"},
    )


def extra_dual_phase_dataset(profile: "Profile | str", name: str, n_per_category: int,
                             categories: Sequence[str] = DUAL_PHASE_CATEGORIES,
                             fraction_range: Sequence[float] = DEFAULT_FRACTION_RANGE,
                             stream: int = 1) -> Path:
    """Stage ``name``: more structures like :func:`dual_phase_dataset`'s, from another seed stream.

    Same datasets as the main stage. Used where a data set needs more structures than the
    database holds (notebook 04's Rectangle set with 20-30 % martensite) or where a model
    trains on unlabelled structures (the VQ-VAE). ``stream`` >= 1 keeps the seeds disjoint from
    the database's (stream 0).
    """
    from lib.profiles import Profile, get_profile
    from lib.stages import cached_stage

    if isinstance(profile, str):
        profile = get_profile(profile)
    if not isinstance(profile, Profile):
        raise ValueError(f"profile must be a Profile or a profile name, got {profile!r}")
    if isinstance(stream, bool) or not isinstance(stream, (int, np.integer)) or stream < 1:
        raise ValueError(f"stream must be an integer >= 1 (0 is the database's), got {stream!r}")
    lo, hi = _check_fraction_range(fraction_range)
    params = {
        "n_per_category": int(n_per_category),
        "categories": list(categories),
        "image_size": profile.image_size,
        "seed": profile.seed,
        "stream": int(stream),
        "fraction_range": [lo, hi],
        "fraction_tolerance": FRACTION_TOLERANCE,
        "generator_version": GENERATOR_VERSION,
    }
    return cached_stage(
        profile.name, name, params,
        lambda: build_dual_phase_arrays(int(n_per_category), profile.seed, profile.image_size,
                                        (lo, hi), categories=tuple(categories),
                                        stream=int(stream)),
        attrs={"categories": json.dumps(DUAL_PHASE_CATEGORIES),
               "convention": "1 = martensite (hard), 0 = ferrite; img[row=y, col=x]; periodic"},
    )


def decode_params(params_json: Sequence[Any]) -> list[dict]:
    """The per-sample parameter dicts from a stored ``params_json`` column (str or bytes)."""
    return [json.loads(p.decode() if isinstance(p, (bytes, np.bytes_)) else p)
            for p in params_json]


def _check_image(img: Any) -> np.ndarray:
    arr = np.asarray(img)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2D image (N, N), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("expected a non-empty image")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"expected a numeric binary image, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError("image contains NaN or inf; expected 0/1 values")
    if not np.isin(arr, (0, 1)).all():
        raise ValueError("image is not binary: expected only 0 (ferrite) and 1 (martensite)")
    return arr.astype(np.uint8)


def phase_boundary_map(img: Any) -> np.ndarray:
    """1.0 where a pixel has a 4-neighbour of the other phase (periodic wrap-around), else 0.0.

    The baseline "map" of SPEC A6: where a map that knows only the phase boundaries is hot.
    """
    arr = _check_image(img)
    out = np.zeros(arr.shape, dtype=bool)
    for shift, axis in ((1, 0), (-1, 0), (1, 1), (-1, 1)):
        out |= arr != np.roll(arr, shift, axis=axis)
    return out.astype(np.float64)
