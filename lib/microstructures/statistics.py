"""Descriptors of periodic binary microstructures: how "looks like the data" becomes a number.

Used to compare generated dual-phase structures with the training data (notebook 04) and to
name what a structure is (notebook 05): martensite fraction, the periodic two-point
correlation S2(r), the laminarity along x and y (how completely the structure is made of
layers along an axis) and the heterogeneity of the local martensite fraction (how uniformly
the grains are arranged). All take images ``(B, N, N)`` or ``(N, N)`` with 1 = martensite,
``img[row = y, col = x]``, periodic in both directions.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

__all__ = ["as_image_batch", "martensite_fraction", "two_point_correlation", "laminarity",
           "laminarity_along", "laminarity_any", "is_complete_laminate_x",
           "local_fraction_heterogeneity", "ks_distance", "COMPLETE_LAMINATE"]

#: Laminarity above which a structure counts as a complete laminate (every row, or column,
#: nearly pure): 1 for ideal layers, ~0 for isotropic grains.
COMPLETE_LAMINATE = 0.9


def as_image_batch(images: Any) -> np.ndarray:
    """``images`` as a float ``(B, N, N)`` array of 0/1; ValueError otherwise."""
    arr = np.asarray(images)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] != arr.shape[2]:
        raise ValueError(f"images must have shape (B, N, N) or (N, N), got {np.shape(images)}")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"images must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all() or not np.isin(arr, (0.0, 1.0)).all():
        raise ValueError("images must be binary (0 = ferrite, 1 = martensite)")
    return arr


def martensite_fraction(images: Any) -> np.ndarray:
    """Area fraction of martensite per image, ``(B,)``.

    >>> martensite_fraction(np.eye(4)).tolist()
    [0.25]
    """
    return as_image_batch(images).mean(axis=(1, 2))


def two_point_correlation(images: Any, r_max: int | None = None) -> np.ndarray:
    """Radially averaged periodic two-point correlation of martensite, ``(B, r_max + 1)``.

    S2(r) = probability that two points a distance r apart (rounded to whole pixels) are both
    martensite: S2(0) = f, S2(r -> large) -> f^2 for a structure without long-range order.
    Computed by FFT autocorrelation on the torus.

    >>> s2 = two_point_correlation(np.ones((8, 8)))
    >>> bool(np.allclose(s2, 1.0))
    True
    """
    x = as_image_batch(images)
    n = x.shape[1]
    r_max = n // 2 if r_max is None else int(r_max)
    if not 0 <= r_max <= n // 2:
        raise ValueError(f"r_max must lie in [0, {n // 2}] (half the period), got {r_max}")
    f = np.fft.rfft2(x)
    auto = np.fft.irfft2(f * np.conj(f), s=x.shape[1:]) / (n * n)
    d = np.minimum(np.arange(n), n - np.arange(n))
    r = np.rint(np.hypot(d[:, None], d[None, :])).astype(int)
    keep = r <= r_max
    counts = np.bincount(r[keep], minlength=r_max + 1)
    out = np.stack([np.bincount(r[keep], weights=a[keep], minlength=r_max + 1) / counts
                    for a in auto])
    return out


def laminarity(images: Any, axis: str = "x") -> np.ndarray:
    """How completely each structure is layered along ``axis``, ``(B,)`` in [0, 1].

    The variance of the row means (layers along x: every row constant) or column means (along
    y), divided by f(1 - f), the variance of the pixels: 1 for complete layers along the axis,
    ~0 for isotropic grains, in between for a partial laminate (bands with gaps). 0 for a
    single-phase image.

    >>> img = np.zeros((8, 8)); img[:2] = 1
    >>> laminarity(img, "x").tolist(), laminarity(img, "y").tolist()
    ([1.0], [0.0])
    """
    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    x = as_image_batch(images)
    means = x.mean(axis=2 if axis == "x" else 1)
    f = x.mean(axis=(1, 2))
    var = f * (1 - f)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(var > 0, means.var(axis=1) / np.where(var > 0, var, 1), 0.0)
    return np.clip(out, 0.0, 1.0)


def laminarity_along(images: Any, normal: tuple[int, int]) -> np.ndarray:
    """Laminarity ``(B,)`` for layers with the integer normal ``normal = (a, b)`` in (x, y).

    Pixels are grouped by the periodic lattice line ``t = (a x + b y) mod N`` they lie on (the
    layers of :func:`lib.microstructures.dual_phase.generate_laminated` with this normal are
    constant on each line); the variance of the line means over f(1 - f) is 1 for complete
    layers, ~0 for isotropic grains. ``(0, 1)`` is :func:`laminarity` along x.

    >>> img = (np.add.outer(np.arange(8), np.arange(8)) % 8 < 3).astype(float)
    >>> laminarity_along(img, (1, 1)).round(6).tolist()
    [1.0]
    """
    x = as_image_batch(images)
    n = x.shape[1]
    a, b = (int(v) for v in normal)
    if (a, b) == (0, 0):
        raise ValueError("normal must be a non-zero integer pair")
    rows, cols = np.mgrid[0:n, 0:n]
    t = ((a * cols + b * rows) % n).ravel()
    counts = np.bincount(t, minlength=n)
    used = counts > 0
    flat = x.reshape(len(x), -1)
    sums = np.stack([np.bincount(t, weights=img, minlength=n) for img in flat])
    means = sums[:, used] / counts[used]
    f = flat.mean(axis=1)
    w = counts[used] / counts.sum()
    var_lines = (w * (means - f[:, None]) ** 2).sum(axis=1)
    var = f * (1 - f)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(var > 0, var_lines / np.where(var > 0, var, 1), 0.0)
    return np.clip(out, 0.0, 1.0)


def laminarity_any(images: Any, normals: tuple[tuple[int, int], ...] | None = None) -> np.ndarray:
    """Largest :func:`laminarity_along` over the laminate normals of the generator, ``(B,)``."""
    if normals is None:
        from lib.microstructures.dual_phase import LAMINATE_NORMALS as normals
    return np.max(np.stack([laminarity_along(images, nrm) for nrm in normals]), axis=0)


def is_complete_laminate_x(images: Any, threshold: float = COMPLETE_LAMINATE) -> np.ndarray:
    """Whether each structure is a complete laminate with layers along x (the load), ``(B,)``."""
    return laminarity(images, "x") >= threshold


def local_fraction_heterogeneity(images: Any, window: int = 16) -> np.ndarray:
    """Spread of the local martensite fraction, ``(B,)``: arrangement from uniform to clustered.

    The standard deviation of the martensite fraction in a periodic ``window`` x ``window``
    moving window, divided by sqrt(f(1 - f)) (its value for a window of one pixel). Grains
    arranged uniformly give small values, clusters and bands larger ones; the window should
    exceed the grain size (16 px: about one lattice period of our rectangle grains).
    """
    x = as_image_batch(images)
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or \
            not 1 <= window <= x.shape[1]:
        raise ValueError(f"window must be an integer in [1, {x.shape[1]}], got {window!r}")
    local = ndimage.uniform_filter(x, size=(1, window, window), mode="wrap")
    f = x.mean(axis=(1, 2))
    scale = np.sqrt(np.maximum(f * (1 - f), 1e-12))
    return local.std(axis=(1, 2)) / scale


def ks_distance(a: Any, b: Any) -> float:
    """Two-sample Kolmogorov-Smirnov distance (largest gap between the empirical CDFs).

    >>> ks_distance([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])
    0.0
    """
    a, b = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    if a.size == 0 or b.size == 0:
        raise ValueError("ks_distance needs two non-empty samples")
    grid = np.concatenate([a, b])
    return float(np.max(np.abs(np.searchsorted(a, grid, side="right") / a.size
                               - np.searchsorted(b, grid, side="right") / b.size)))
