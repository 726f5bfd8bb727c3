"""Periodic (torus) geometry on an N x N pixel grid: the tiling helpers both parts share.

A microstructure here is an ``(N, N)`` array on the flat torus: pixel ``(i, j)`` sits at the
point ``(y, x) = (i, j)`` and the point ``(y + N, x)`` is the same point. Everything drawn with
these helpers wraps around the edges, so the image tiles the plane without seams.

Features are drawn as *continuous fields* (the smallest normalized distance of a pixel to any
feature, ``q <= 1`` inside a feature) and then thresholded with :func:`threshold_to_fraction`,
which picks exactly ``round(fraction * N * N)`` pixels. Thresholding a normalized distance field
at ``t`` scales every feature by the same factor ``t``, so the phase fraction is hit exactly
while the shapes keep their drawn proportions.

>>> img = draw_discs(8, centers=[[0.0, 0.0]], radii=[1.5])   # a disc centred on a corner
>>> int(img.sum()), bool(img[0, 0] and img[7, 7] and img[0, 7] and img[7, 0])
(9, True)
>>> tile(img, 2).shape
(16, 16)
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial import cKDTree

__all__ = [
    "minimum_image",
    "white_pixel_count",
    "threshold_to_fraction",
    "rasterize_min",
    "ellipse_field",
    "segment_field",
    "voronoi_fields",
    "draw_discs",
    "draw_ellipses",
    "draw_segments",
    "tile",
    "seam_statistics",
    "is_periodic_tileable",
]


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"grid size must be a positive integer, got {size!r}")
    return int(size)


def minimum_image(d: ArrayLike, size: float) -> NDArray[np.float64]:
    """Map displacements onto their shortest periodic image, in ``[-size/2, size/2]``.

    >>> minimum_image([0.0, 3.0, 5.0, -7.0], 8).tolist()
    [0.0, 3.0, -3.0, 1.0]
    """
    d = np.asarray(d, dtype=np.float64)
    return d - size * np.round(d / size)


def white_pixel_count(fraction: float, n_pixels: int, window: tuple[float, float] | None = None) -> int:
    """Number of white pixels for a target ``fraction`` of ``n_pixels``, kept inside ``window``.

    ``round(fraction * n_pixels)``, clipped to the counts whose fraction lies in the closed
    ``window`` (when given). Raises ``ValueError`` when no integer count lies in the window.

    >>> white_pixel_count(0.41, 128 * 128)          # 6717.44 rounds to 6717
    6717
    >>> white_pixel_count(0.40, 10, window=(0.38, 0.39))
    Traceback (most recent call last):
    ...
    ValueError: no pixel count of a 10-pixel image gives a fraction in [0.38, 0.39]
    """
    if not np.isfinite(fraction) or not 0.0 <= fraction <= 1.0:
        raise ValueError(f"white fraction must lie in [0, 1], got {fraction!r}")
    k = int(round(fraction * n_pixels))
    if window is not None:
        lo, hi = window
        k_lo, k_hi = int(np.ceil(lo * n_pixels - 1e-9)), int(np.floor(hi * n_pixels + 1e-9))
        if k_lo > k_hi:
            raise ValueError(
                f"no pixel count of a {n_pixels}-pixel image gives a fraction in [{lo}, {hi}]"
            )
        k = min(max(k, k_lo), k_hi)
    return k


def threshold_to_fraction(
    field: ArrayLike, fraction: float, high_is_white: bool = True,
    window: tuple[float, float] | None = None,
) -> NDArray[np.uint8]:
    """Binary image with exactly ``white_pixel_count(fraction, field.size, window)`` white pixels.

    The white pixels are those with the highest field values (``high_is_white=True``) or the
    lowest (``False``), i.e. the field is thresholded at the quantile that gives the fraction.
    Ties are broken deterministically by the flat (row-major) pixel index, lower index first.

    >>> threshold_to_fraction(np.array([[0.1, 0.9], [0.5, 0.5]]), 0.5).tolist()
    [[0, 1], [1, 0]]
    >>> threshold_to_fraction(np.zeros((2, 2)), 0.25, high_is_white=False).tolist()
    [[1, 0], [0, 0]]
    """
    field = np.asarray(field, dtype=np.float64)
    if field.ndim != 2:
        raise ValueError(f"field must be a 2-D array, got shape {field.shape}")
    if np.isnan(field).any():
        raise ValueError("field contains NaN values")
    k = white_pixel_count(fraction, field.size, window)
    flat = field.ravel()
    order = np.argsort(-flat if high_is_white else flat, kind="stable")
    img = np.zeros(field.size, dtype=np.uint8)
    img[order[:k]] = 1
    return img.reshape(field.shape)


def rasterize_min(
    size: int,
    centers: ArrayLike,
    radii: ArrayLike,
    qfunc: Callable[..., NDArray[np.float64]],
    params: dict[str, ArrayLike] | None = None,
) -> NDArray[np.float64]:
    """Periodic field ``min_i q_i(r)`` over features, each evaluated only on its own patch.

    Feature ``i`` is centred at ``centers[i] = (y, x)`` and evaluated on the square patch of
    pixels within ``radii[i]`` (in pixels, per axis) of its centre; pixels no patch reaches get
    ``+inf``. ``qfunc(dy, dx, **p)`` receives the offsets ``(n_features_in_group, n_patch)`` of
    the pixels from the exact centres and the features' ``params`` as ``(n, 1)`` columns.
    Patch indices wrap modulo ``size`` and the minimum over overlapping patches is taken with
    ``np.minimum.at``, so every periodic image a patch reaches counts: the field is exact
    wherever the true minimum is attained inside a patch. Work is vectorized per patch radius.
    """
    size = _check_size(size)
    centers = np.atleast_2d(np.asarray(centers, dtype=np.float64)).reshape(-1, 2)
    radii = np.ceil(np.asarray(radii, dtype=np.float64)).astype(np.int64).ravel()
    params = {k: np.asarray(v, dtype=np.float64).ravel() for k, v in (params or {}).items()}
    field = np.full(size * size, np.inf)
    base = np.floor(centers).astype(np.int64)
    for r in np.unique(radii):
        sel = np.nonzero(radii == r)[0]
        off = np.arange(-r, r + 2)                 # +1: the centre is floored
        oy, ox = (a.ravel() for a in np.meshgrid(off, off, indexing="ij"))
        iy = base[sel, 0:1] + oy                   # (n_sel, n_patch) integer pixel rows
        ix = base[sel, 1:2] + ox
        dy = iy - centers[sel, 0:1]
        dx = ix - centers[sel, 1:2]
        q = qfunc(dy, dx, **{k: v[sel, None] for k, v in params.items()})
        np.minimum.at(field, ((iy % size) * size + ix % size).ravel(), q.ravel())
    return field.reshape(size, size)


def _ellipse_q(dy, dx, a, b, theta):
    c, s = np.cos(theta), np.sin(theta)
    u = (dx * c + dy * s) / a                      # along the major axis (angle from +x)
    v = (-dx * s + dy * c) / b
    return np.sqrt(u * u + v * v)


def _capsule_q(dy, dx, h, w, theta):
    c, s = np.cos(theta), np.sin(theta)
    u = dx * c + dy * s
    v = -dx * s + dy * c
    u = np.maximum(np.abs(u) - h, 0.0)             # distance to the segment [-h, h] x {0}
    return np.sqrt(u * u + v * v) / w


def ellipse_field(size: int, centers: ArrayLike, semi_axes: ArrayLike, angles: ArrayLike,
                  q_cut: float = 2.0) -> NDArray[np.float64]:
    """Normalized periodic ellipse radius ``min_i q_i``; ``q <= 1`` inside ellipse ``i``.

    ``semi_axes[i] = (a, b)`` with ``a`` along the direction ``angles[i]`` (radians from +x,
    counter-clockwise in the ``(x, y)`` = (column, row) frame). Exact for ``q <= q_cut``
    (thresholding at ``t <= q_cut`` draws every ellipse scaled by ``t``); ``inf`` far away.
    """
    ab = np.atleast_2d(np.asarray(semi_axes, dtype=np.float64)).reshape(-1, 2)
    if (ab <= 0).any():
        raise ValueError("ellipse semi-axes must be positive")
    return rasterize_min(size, centers, q_cut * ab.max(axis=1) + 1.0, _ellipse_q,
                         dict(a=ab[:, 0], b=ab[:, 1], theta=angles))


def segment_field(size: int, centers: ArrayLike, half_lengths: ArrayLike, half_widths: ArrayLike,
                  angles: ArrayLike, q_cut: float = 2.0) -> NDArray[np.float64]:
    """Periodic distance to the nearest segment divided by its half width (capsule field).

    ``q <= 1`` inside capsule ``i`` (segment of half length ``half_lengths[i]`` along
    ``angles[i]``, rounded ends of radius ``half_widths[i]``). Exact for ``q <= q_cut``.
    """
    h = np.asarray(half_lengths, dtype=np.float64).ravel()
    w = np.asarray(half_widths, dtype=np.float64).ravel()
    if (w <= 0).any() or (h < 0).any():
        raise ValueError("segment half widths must be positive and half lengths non-negative")
    return rasterize_min(size, centers, h + q_cut * w + 1.0, _capsule_q,
                         dict(h=h, w=w, theta=angles))


def voronoi_fields(size: int, seeds: ArrayLike, stretch: tuple[float, float] = (1.0, 1.0)
                   ) -> dict[str, NDArray[Any]]:
    """Periodic Voronoi tessellation of the grid by ``seeds`` (``(n, 2)`` as ``(y, x)``).

    Distances use the metric ``sqrt((sy*dy)^2 + (sx*dx)^2)`` with ``stretch = (sy, sx)``, which
    elongates the cells along the axis with the smaller factor. Returns ``label`` (index of the
    nearest seed), ``second`` (second nearest), ``d1`` (distance to the nearest seed) and
    ``wall`` (distance to the bisector between the two nearest seeds, i.e. to the cell wall,
    in the stretched metric), all ``(size, size)``.
    """
    size = _check_size(size)
    seeds = np.asarray(seeds, dtype=np.float64).reshape(-1, 2)
    if len(seeds) < 2:
        raise ValueError("a Voronoi tessellation needs at least two seeds")
    st = np.asarray(stretch, dtype=np.float64)
    box = size * st
    tree = cKDTree(np.mod(seeds, size) * st % box, boxsize=box)
    yy, xx = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64),
                         indexing="ij")
    pts = np.column_stack([yy.ravel(), xx.ravel()]) * st
    dist, idx = tree.query(pts, k=2)
    u1 = minimum_image(pts - seeds[idx[:, 0]] * st, box)     # pixel relative to nearest image
    u2 = minimum_image(pts - seeds[idx[:, 1]] * st, box)
    gap = np.linalg.norm(u1 - u2, axis=1)
    wall = (np.einsum("ij,ij->i", u2, u2) - np.einsum("ij,ij->i", u1, u1)) / (2 * np.maximum(gap, 1e-12))
    shape = (size, size)
    return dict(label=idx[:, 0].reshape(shape), second=idx[:, 1].reshape(shape),
                d1=dist[:, 0].reshape(shape), wall=np.maximum(wall, 0.0).reshape(shape))


def draw_discs(size: int, centers: ArrayLike, radii: ArrayLike) -> NDArray[np.uint8]:
    """Union of periodic discs (pixel centres within ``radii`` of a centre), as a 0/1 image."""
    r = np.asarray(radii, dtype=np.float64).ravel()
    return draw_ellipses(size, centers, np.column_stack([r, r]), np.zeros_like(r))


def draw_ellipses(size: int, centers: ArrayLike, semi_axes: ArrayLike, angles: ArrayLike
                  ) -> NDArray[np.uint8]:
    """Union of periodic ellipses, as a 0/1 ``uint8`` image (see :func:`ellipse_field`)."""
    return (ellipse_field(size, centers, semi_axes, angles, q_cut=1.0) <= 1.0).astype(np.uint8)


def draw_segments(size: int, centers: ArrayLike, half_lengths: ArrayLike, half_widths: ArrayLike,
                  angles: ArrayLike) -> NDArray[np.uint8]:
    """Union of periodic capsules (thick segments), as a 0/1 ``uint8`` image."""
    f = segment_field(size, centers, half_lengths, half_widths, angles, q_cut=1.0)
    return (f <= 1.0).astype(np.uint8)


def tile(img: ArrayLike, reps: int = 2) -> NDArray[Any]:
    """The image repeated ``reps x reps`` times (to show, or test, that it tiles)."""
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    return np.tile(np.asarray(img), (reps, reps))


def _check_binary_image(img: ArrayLike) -> NDArray[np.uint8]:
    img = np.asarray(img)
    if img.ndim != 2 or img.shape[0] != img.shape[1]:
        raise ValueError(f"expected a square 2-D image, got shape {img.shape}")
    if not np.isin(img, (0, 1)).all():
        raise ValueError("expected a binary image with values 0 and 1 only")
    return img.astype(np.uint8)


def seam_statistics(img: ArrayLike) -> dict[str, Any]:
    """Phase-change rates across the wrap seams vs across interior pixel boundaries.

    For a square 0/1 image, ``seam`` is the fraction of pixel pairs that differ across the
    wrap-around seams (last column vs first column, last row vs first row), and ``interior``
    holds the same fraction for each of the ``2 (N - 1)`` interior column and row boundaries.
    A periodic image's seam is statistically like any interior boundary; an image cut out of
    a larger one typically is not.
    """
    img = _check_binary_image(img)
    cols = (img[:, 1:] != img[:, :-1]).mean(axis=0)
    rows = (img[1:, :] != img[:-1, :]).mean(axis=1)
    seam_c = float((img[:, 0] != img[:, -1]).mean())
    seam_r = float((img[0, :] != img[-1, :]).mean())
    return dict(seam=(seam_c + seam_r) / 2, seam_col=seam_c, seam_row=seam_r,
                interior=np.concatenate([cols, rows]))


def is_periodic_tileable(img: ArrayLike, n_sigma: float = 4.0) -> bool:
    """Whether the seam's phase-change rate is within ``n_sigma`` of the interior boundaries'.

    A statistical check for one image (for a strong check average
    :func:`seam_statistics` over many images). Uniform images are trivially tileable.
    """
    st = seam_statistics(img)
    mean, std = st["interior"].mean(), st["interior"].std()
    tol = n_sigma * max(std, 1.0 / np.asarray(img).shape[0])
    return bool(abs(st["seam_col"] - mean) <= tol and abs(st["seam_row"] - mean) <= tol)
