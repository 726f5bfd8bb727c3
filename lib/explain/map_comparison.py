"""How well a map of a structure agrees with its simulated void map, and what chance and
geometry alone would score (SPEC A6).

An explanation map (|Δ|, Grad-RAM) and the GTN void map of the same periodic cell are
compared on the void map's grid: a finer map is block-averaged onto it (:func:`block_average`).
Two scores, both invariant to any monotone rescaling of either map:

* ``spearman``: rank correlation over all pixels (:func:`map_spearman`);
* ``iou``: intersection over union of the two maps' hot spots, the top ``top`` fraction of
  pixels of each (exactly ``ceil(top * n_pixels)`` pixels, ties broken by pixel order;
  :func:`hotspot_iou`). Two random maps score about ``top / (2 - top)`` (0.053 at 10 %).

Baselines, maps that know nothing of the physics:

* :func:`random_maps`: independent uniform noise per pixel, the chance level;
* :func:`interface_map`: closeness to the ferrite/martensite interface on the ferrite side,
  ``exp(-d / length)`` with d the periodic distance (pixels) from a ferrite pixel to the nearest
  martensite pixel, 0 in martensite: strain concentrates in the soft phase next to the hard
  one;
* :func:`martensite_density_map`: on ferrite pixels, the martensite fraction of a periodic
  Gaussian neighbourhood of width ``sigma`` pixels, 0 in martensite: ferrite hemmed in by
  martensite is constrained, carries high triaxiality and is where GTN voids grow fastest.

:func:`band_score` says how much of a void map lies in straight periodic bands (the long-range
localization the paper expects Δ to miss); :func:`signed_map_anatomy` where a signed map's mass
lies (its sign, each phase, the 1-px phase edges).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lib.microstructures.dual_phase import phase_boundary_map

__all__ = ["block_average", "map_spearman", "hotspot_mask", "hotspot_iou", "compare_maps",
           "random_maps", "periodic_distance_to", "interface_map", "martensite_density_map", "band_score",
           "signed_map_anatomy", "summarize_scores", "BAND_DIRECTIONS"]

#: Directions (rows, columns) along which :func:`band_score` looks for bands: along x, along y
#: and the two diagonals (periodic lines on a square cell).
BAND_DIRECTIONS = ((0, 1), (1, 0), (1, 1), (1, -1))


def _maps(maps: Any, name: str = "maps") -> np.ndarray:
    arr = np.asarray(maps, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1] != arr.shape[2] or arr.shape[0] == 0 or arr.shape[1] < 2:
        raise ValueError(f"{name} must be square maps (H, H) or a stack (n, H, H), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contain NaN or infinite values")
    return arr


def block_average(maps: Any, grid: int) -> np.ndarray:
    """Mean of each ``(N/grid)²`` block: ``(n, N, N)`` (or ``(N, N)``) -> ``(n, grid, grid)``.

    >>> block_average(np.arange(16.0).reshape(4, 4), 2)[0].tolist()
    [[2.5, 4.5], [10.5, 12.5]]
    """
    arr = _maps(maps)
    size = arr.shape[1]
    if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or grid < 1 or size % grid:
        raise ValueError(f"grid must be a positive divisor of the map side {size}, got {grid!r}")
    b = size // int(grid)
    return arr.reshape(len(arr), grid, b, grid, b).mean(axis=(2, 4))


def map_spearman(a: Any, b: Any) -> float:
    """Spearman rank correlation of two maps of one shape over all pixels (0 if either is
    constant: no ranks to agree with).

    >>> m = np.arange(9.0).reshape(3, 3)
    >>> map_spearman(m, m ** 2), map_spearman(m, -m)
    (1.0, -1.0)
    """
    from scipy.stats import rankdata

    x, y = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"maps must have one shape, got {np.shape(a)} and {np.shape(b)}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("maps contain NaN or infinite values")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    rx, ry = rankdata(x), rankdata(y)
    return float(np.clip(np.corrcoef(rx, ry)[0, 1], -1.0, 1.0))


def _check_top(top: float) -> float:
    if not (isinstance(top, (int, float, np.floating)) and 0 < top < 1):
        raise ValueError(f"top must be a fraction in (0, 1), got {top!r}")
    return float(top)


def hotspot_mask(m: Any, top: float = 0.1) -> np.ndarray:
    """Boolean mask of the ``ceil(top * size)`` largest pixels of map ``m`` (ties: earlier
    pixels first, so the count is exact)."""
    top = _check_top(top)
    x = np.asarray(m, float)
    flat = x.ravel()
    k = max(1, int(np.ceil(top * flat.size - 1e-9)))
    order = np.argsort(-flat, kind="stable")
    mask = np.zeros(flat.size, bool)
    mask[order[:k]] = True
    return mask.reshape(x.shape)


def hotspot_iou(a: Any, b: Any, top: float = 0.1) -> float:
    """IoU of the top-``top`` hot spots of two maps of one shape (1: the same pixels, 0: none
    shared).

    >>> m = np.arange(100.0).reshape(10, 10)
    >>> hotspot_iou(m, m), hotspot_iou(m, -m)
    (1.0, 0.0)
    """
    if np.shape(a) != np.shape(b):
        raise ValueError(f"maps must have one shape, got {np.shape(a)} and {np.shape(b)}")
    ma, mb = hotspot_mask(a, top), hotspot_mask(b, top)
    return float((ma & mb).sum() / (ma | mb).sum())


def compare_maps(maps: Any, void_maps: Any, top: float = 0.1, mask: Any = None) -> dict[str, np.ndarray]:
    """Per reference, ``spearman`` and ``iou`` of ``maps (n, N, N)`` with ``void_maps (n, g, g)``.

    ``maps`` are block-averaged onto the void maps' grid ``g`` first (``N`` must be a multiple
    of ``g``; a map coarser than the void map is an error: compare on the coarser grid by
    block-averaging the void maps instead). ``mask (n, g, g)`` bool: compare on those pixels
    only (e.g. the ferrite, to ask where *within* the soft phase a map points); the hot spots
    are then the top ``top`` of the masked pixels (NaN scores for fewer than 3 of them).
    """
    m, v = _maps(maps), _maps(void_maps, "void_maps")
    if len(m) != len(v):
        raise ValueError(f"need one void map per map: {len(m)} maps, {len(v)} void maps")
    if m.shape[1] < v.shape[1]:
        raise ValueError(f"maps ({m.shape[1]}²) are coarser than the void maps ({v.shape[1]}²): "
                         f"block-average the void maps onto {m.shape[1]}² first")
    m = block_average(m, v.shape[1])
    if mask is None:
        return {"spearman": np.array([map_spearman(a, b) for a, b in zip(m, v)]),
                "iou": np.array([hotspot_iou(a, b, top) for a, b in zip(m, v)])}
    sel = np.asarray(mask)
    if sel.shape != v.shape or sel.dtype != bool:
        raise ValueError(f"mask must be a bool array of the void maps' shape {v.shape}, got "
                         f"{sel.dtype} {sel.shape}")
    rho, iou = np.full(len(v), np.nan), np.full(len(v), np.nan)
    for k, (a, b, w) in enumerate(zip(m, v, sel)):
        if w.sum() >= 3:
            rho[k], iou[k] = map_spearman(a[w], b[w]), hotspot_iou(a[w], b[w], top)
    return {"spearman": rho, "iou": iou}


def random_maps(shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """Uniform noise maps of ``shape`` ``(n, N, N)``, seeded: the chance level."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), 71])).random(tuple(shape))


def _binary(images: Any) -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1] != arr.shape[2] or arr.shape[0] == 0:
        raise ValueError(f"images must be (N, N) or (n, N, N), got {arr.shape}")
    if not np.isin(arr, (0, 1)).all():
        raise ValueError("images must be binary (0 = ferrite, 1 = martensite)")
    return arr.astype(bool)


def _positive(value: Any, name: str) -> float:
    if not (isinstance(value, (int, float, np.floating)) and np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number of pixels, got {value!r}")
    return float(value)


def periodic_distance_to(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance (pixels) of every pixel of a periodic cell to the nearest True pixel
    of ``mask (N, N)`` (inf if there is none)."""
    from scipy.ndimage import distance_transform_edt

    if not mask.any():
        return np.full(mask.shape, np.inf)
    n = mask.shape[0]
    tiled = np.tile(~mask, (3, 3))
    return distance_transform_edt(tiled)[n:2 * n, n:2 * n]


def interface_map(images: Any, length: float = 2.0) -> np.ndarray:
    """Ferrite-side closeness to martensite ``exp(-d / length)`` (0 in martensite): ``(n, N, N)``.

    >>> img = np.zeros((8, 8), int); img[:, :2] = 1
    >>> m = interface_map(img, 1.0)[0]
    >>> bool(m[0, 2] == np.exp(-1) and m[0, 0] == 0 and m[0, 7] == np.exp(-1))
    True
    """
    imgs = _binary(images)
    length = _positive(length, "length")
    out = np.zeros(imgs.shape)
    for k, img in enumerate(imgs):
        out[k] = np.where(img, 0.0, np.exp(-periodic_distance_to(img) / length))
    return out


def martensite_density_map(images: Any, sigma: float = 3.0) -> np.ndarray:
    """On ferrite pixels, the periodic Gaussian-weighted martensite fraction around them
    (width ``sigma`` pixels); 0 in martensite: ``(n, N, N)`` in [0, 1]."""
    from scipy.ndimage import gaussian_filter

    imgs = _binary(images)
    sigma = _positive(sigma, "sigma")
    out = np.zeros(imgs.shape)
    for k, img in enumerate(imgs):
        out[k] = np.where(img, 0.0, gaussian_filter(img.astype(float), sigma, mode="wrap"))
    return out


def band_score(void_map: Any) -> float:
    """Largest share of a map's variance explained by straight periodic bands.

    For each direction of :data:`BAND_DIRECTIONS`, the map is averaged along the periodic
    lines of that direction; the share of the variance the line means keep is 1 for a map
    made of bands in that direction and about 1/N for noise. Returns the largest share (0 for
    a constant map).

    >>> band = np.zeros((16, 16)); band[5] = 1.0
    >>> round(band_score(band), 6), round(band_score(np.eye(16)), 6)
    (1.0, 1.0)
    """
    m = _maps(void_map, "void_map")
    if len(m) != 1:
        raise ValueError("band_score takes one map")
    m = m[0] - m[0].mean()
    total = float((m ** 2).mean())
    if total == 0:
        return 0.0
    n = m.shape[0]
    rows, cols = np.indices(m.shape)
    best = 0.0
    for dr, dc in BAND_DIRECTIONS:
        # the line through (r, c) in direction (dr, dc) is labelled by an invariant of it
        label = (rows if dr == 0 else cols if dc == 0 else (cols - dc * dr * rows)) % n
        means = np.bincount(label.ravel(), m.ravel(), n) / np.bincount(label.ravel(), None, n)
        best = max(best, float((means[label] ** 2).mean()) / total)
    return min(best, 1.0)


def signed_map_anatomy(maps: Any, images: Any) -> dict[str, float]:
    """Where the mass of a signed map (e.g. Δ, ``(n, N, N)`` on the images' pixels) lies, pooled
    over all maps: ``negative_share`` of sum |m| carried by m < 0; ``mean_abs_martensite`` and
    ``mean_abs_ferrite``, the mean |m| per pixel of each phase; ``edge_share`` of sum |m| on the
    phase-edge pixels (a 4-neighbour of the other phase, periodic:
    :func:`lib.microstructures.dual_phase.phase_boundary_map`), which are ``edge_pixels`` of all
    pixels."""
    m = _maps(maps)
    img = _binary(images)
    if img.shape != m.shape:
        raise ValueError(f"maps {m.shape} and images {img.shape} must have the same shape")
    mag = np.abs(m)
    total = float(mag.sum())
    if total == 0:
        raise ValueError("maps are zero everywhere: no mass to locate")
    edge = np.stack([phase_boundary_map(i) > 0 for i in img])
    return {"negative_share": float(mag[m < 0].sum() / total),
            "mean_abs_martensite": float(mag[img].mean()) if img.any() else float("nan"),
            "mean_abs_ferrite": float(mag[~img].mean()) if (~img).any() else float("nan"),
            "edge_share": float(mag[edge].sum() / total), "edge_pixels": float(edge.mean())}


def summarize_scores(scores: Mapping[str, Mapping[str, np.ndarray]], groups: np.ndarray,
                     group_names: Sequence[str]) -> list[dict[str, Any]]:
    """Rows (group, method, n, mean and sd of Spearman and IoU) from ``scores[method]`` =
    :func:`compare_maps` output, per group code in ``groups (n,)`` and for all together
    (NaN scores, references without enough masked pixels, are left out and not counted)."""
    groups = np.asarray(groups)
    rows = []
    for code, name in [*enumerate(group_names), (None, "all")]:
        sel = np.ones(groups.shape, bool) if code is None else groups == code
        if not sel.any():
            continue
        for method, s in scores.items():
            rho, iou = np.asarray(s["spearman"])[sel], np.asarray(s["iou"])[sel]
            rho, iou = rho[np.isfinite(rho)], iou[np.isfinite(iou)]
            if not rho.size:
                continue
            rows.append({"group": name, "method": method, "n": int(rho.size),
                         "spearman_mean": float(rho.mean()), "spearman_sd": float(rho.std()),
                         "iou_mean": float(iou.mean()), "iou_sd": float(iou.std())})
    return rows
