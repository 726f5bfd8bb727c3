"""Periodic unit cells built from Grad-RAM critical regions (SPEC B5, paper 002 Fig. 5, SI S6).

The paper's construction, one outlier at a time:

1. the *critical region* (X and Y Grad-RAM maps binarized and intersected,
   :func:`lib.explain.gradram.critical_region`) marks where the outlier's advantage sits;
2. the white phase (boron in Cases 1-2, the stiffer one; aluminium in Case 3, the more
   expansive one) is reduced to its skeleton, which keeps its topology but not its volume
   fraction (:func:`periodic_skeleton`);
3. the skeleton is masked with the critical region, and a ``N/2 x N/2`` window of it becomes
   the quarter of a new cell (:func:`best_window`: the periodic window holding most of the
   region);
4. the quarter is mirrored into an ``N x N`` cell (:func:`mirror_cell`): mirror images meet
   themselves at every edge, so what crosses one edge of the quarter continues across the cell
   boundary (the paper chose mirroring over plain tiling for this connectivity);
5. the skeleton is thickened uniformly until the white fraction reaches the target
   (0.39-0.40 in the paper; :func:`thicken_to_fraction`).

Every step works on periodic images (the stochastic structures are periodic cells), and the
result is validated by the same FE homogenization as the database (notebook 08).
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import ndimage

from lib.explain.gradram import case_heatmaps, critical_region
from lib.fe.labeling import label_images
from lib.fe.pixel_mesh import check_binary_image
from lib.stages import cached_stage, load_stage, read_key

__all__ = [
    "TARGET_FRACTION",
    "periodic_skeleton",
    "best_window",
    "mirror_cell",
    "thicken_to_fraction",
    "design_steps",
    "design_from_region",
    "design_metrics",
    "summarize",
    "moderate_samples",
    "xai_designs",
    "design_stage",
    "summary_rows",
    "format_summary",
    "best_designs",
    "replay_designs",
]

#: The paper's window for the white fraction of a design, (low, high).
TARGET_FRACTION = (0.39, 0.40)


def _check_mask(mask: Any, name: str, size: int | None = None) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    return check_binary_image(arr, size, name).astype(bool)


def periodic_skeleton(img: np.ndarray) -> np.ndarray:
    """Skeleton ``(N, N) bool`` of the white phase of a periodic ``img: (N, N) 0/1``.

    The image is tiled 3 x 3, skeletonized (scikit-image, Zhang's thinning) and the centre tile
    kept, so a ligament that crosses the cell boundary is thinned as one ligament, not cut.
    """
    from skimage.morphology import skeletonize

    white = _check_mask(img, "img")
    n = white.shape[0]
    return skeletonize(np.tile(white, (3, 3)))[n:2 * n, n:2 * n]


def best_window(region: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner ``(row, col)`` of the periodic ``size x size`` window holding most of
    ``region: (N, N) bool`` (first such window in row-major order if several tie).

    >>> r = np.zeros((8, 8), bool); r[6:8, 0:3] = True; r[0, 0] = True
    >>> best_window(r, 4)
    (5, 0)
    """
    mask = _check_mask(region, "region")
    n = mask.shape[0]
    if not 1 <= size <= n:
        raise ValueError(f"window size must lie in [1, {n}], got {size}")
    # counts[r, c] = sum of mask over rows r..r+size-1, cols c..c+size-1 (periodic)
    tiled = np.pad(mask.astype(np.int64), ((0, size - 1), (0, size - 1)), mode="wrap")
    csum = tiled.cumsum(0).cumsum(1)
    csum = np.pad(csum, ((1, 0), (1, 0)))
    counts = (csum[size:size + n, size:size + n] - csum[:n, size:size + n]
              - csum[size:size + n, :n] + csum[:n, :n])
    row, col = np.unravel_index(int(np.argmax(counts)), counts.shape)
    return int(row), int(col)


def mirror_cell(quarter: np.ndarray) -> np.ndarray:
    """The ``(2m, 2m)`` cell ``[[q, q mirrored left-right], [q mirrored up-down, q rotated]]``.

    >>> mirror_cell(np.array([[1, 0], [0, 0]])).tolist()
    [[1, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 1]]
    """
    q = np.asarray(quarter)
    if q.ndim != 2 or q.shape[0] != q.shape[1]:
        raise ValueError(f"quarter must be a square 2-D array, got shape {q.shape}")
    top = np.concatenate([q, q[:, ::-1]], axis=1)
    return np.concatenate([top, top[::-1, :]], axis=0)


def _periodic_distance(seed: np.ndarray) -> np.ndarray:
    """Euclidean distance (pixels) of every pixel to the nearest ``seed`` pixel, periodic."""
    n = seed.shape[0]
    tiled = np.tile(~seed, (3, 3))
    return ndimage.distance_transform_edt(tiled)[n:2 * n, n:2 * n]


def thicken_to_fraction(seed: np.ndarray, fraction: float = 0.395,
                        smoothing: float = 1.0) -> np.ndarray:
    """White phase grown uniformly around ``seed: (N, N) bool`` to ``fraction`` of the cell.

    Every pixel gets its periodic Euclidean distance to the seed; the seed and then the
    ``k - |seed|`` closest pixels become white, ``k = round(fraction * N**2)``: the seed
    dilated by a disc. A pixel grid has many pixels at exactly the same distance, and the last
    ring is usually filled only in part; ranking by the distance smoothed with a periodic
    Gaussian of ``smoothing`` pixels breaks those ties by the local shape (concave corners
    first) instead of by position, so the partial ring spreads evenly and edges stay smooth
    (``smoothing=0``: raw distance, ties by position). If ``seed`` is mirror symmetric (a
    :func:`mirror_cell`), the selection is made in the top-left quarter and mirrored, so the
    result stays exactly symmetric (its white pixel count is then a multiple of 4).
    Returns ``(N, N) uint8``, 1 = white.
    """
    s = _check_mask(seed, "seed")
    n = s.shape[0]
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction!r}")
    if smoothing < 0:
        raise ValueError(f"smoothing must be >= 0 pixels, got {smoothing!r}")
    if not s.any():
        raise ValueError("seed is empty: nothing to thicken")
    k = int(round(fraction * n * n))
    if s.sum() > k:
        raise ValueError(f"seed already covers {s.mean():.3f} of the cell, more than "
                         f"fraction={fraction}")
    rank = _periodic_distance(s)
    if smoothing > 0:
        rank = ndimage.gaussian_filter(rank, smoothing, mode="wrap")
    rank = np.where(s, -1.0, rank)  # the seed first, whatever the smoothing did
    symmetric = n % 2 == 0 and np.array_equal(s, mirror_cell(s[:n // 2, :n // 2]))
    if symmetric:
        m = n // 2
        order = np.argsort(rank[:m, :m], axis=None, kind="stable")
        quarter = np.zeros(m * m, dtype=np.uint8)
        quarter[order[:int(round(k / 4))]] = 1
        return mirror_cell(quarter.reshape(m, m))
    order = np.argsort(rank, axis=None, kind="stable")
    out = np.zeros(n * n, dtype=np.uint8)
    out[order[:k]] = 1
    return out.reshape(n, n)


def design_steps(img: np.ndarray, region: np.ndarray, fraction: float = 0.395,
                 smoothing: float = 1.0, skeleton: np.ndarray | None = None) -> dict[str, Any]:
    """Every intermediate of :func:`design_from_region`, for figures like the paper's Fig. 5.

    Returns ``skeleton`` (N, N) bool (the whole white phase), ``masked`` (N, N) bool (skeleton
    AND region), ``window`` (row, col) of the quarter in the source, ``quarter`` (N/2, N/2)
    bool, ``seed`` (N, N) bool (the mirrored quarter), ``design`` (N, N) uint8 or ``None``
    (empty quarter), ``region_pixels`` and ``skeleton_pixels`` inside the window.
    ``smoothing``: see :func:`thicken_to_fraction`; ``skeleton``: ``periodic_skeleton(img)``
    if the caller already has it (one source, several thresholds).
    """
    white = _check_mask(img, "img")
    n = white.shape[0]
    mask = _check_mask(region, "region", n)
    if n % 2:
        raise ValueError(f"image size must be even to mirror a quarter, got {n}")
    m = n // 2
    if skeleton is None:
        skeleton = periodic_skeleton(white)
    skeleton = _check_mask(skeleton, "skeleton", n)
    masked = skeleton & mask
    row, col = best_window(mask, m)
    quarter = np.roll(masked, (-row, -col), axis=(0, 1))[:m, :m]
    seed = mirror_cell(quarter)
    design = thicken_to_fraction(seed, fraction, smoothing) if quarter.any() else None
    return {"skeleton": skeleton, "masked": masked, "window": (row, col), "quarter": quarter,
            "seed": seed, "design": design,
            "region_pixels": int(np.roll(mask, (-row, -col), axis=(0, 1))[:m, :m].sum()),
            "skeleton_pixels": int(quarter.sum())}


def design_from_region(img: np.ndarray, region: np.ndarray, fraction: float = 0.395,
                       smoothing: float = 1.0, skeleton: np.ndarray | None = None
                       ) -> tuple[np.ndarray | None, dict[str, Any]]:
    """One periodic design from an outlier ``img: (N, N) 0/1`` and its ``region: (N, N) bool``.

    Steps 2-5 of the module docstring (``skeleton``: as in :func:`design_steps`). Returns
    ``(design (N, N) uint8 or None, info)``;
    ``None`` when the critical region holds no skeleton pixel (nothing to build from).
    ``info``: ``window`` (top-left corner of the quarter in the outlier), ``region_pixels``
    (inside the window), ``skeleton_pixels`` (skeleton inside region and window).
    """
    steps = design_steps(img, region, fraction, smoothing, skeleton)
    return steps["design"], {k: steps[k] for k in ("window", "region_pixels", "skeleton_pixels")}


def weaker_direction(values_xy: np.ndarray, goal: str) -> np.ndarray:
    """The score of each row of ``values_xy (n, 2)``: ``min(X, Y)`` for ``goal="max"``,
    ``max(X, Y)`` for ``goal="min"``."""
    v = np.asarray(values_xy, dtype=np.float64)
    return v.min(axis=1) if goal == "max" else v.max(axis=1)


def is_balanced(values_xy: np.ndarray, tolerance: float = 0.10) -> np.ndarray:
    """``|X - Y| < tolerance * min(|X|, |Y|)`` per row of ``values_xy (n, 2)`` (SPEC B5)."""
    v = np.asarray(values_xy, dtype=np.float64)
    return np.abs(v[:, 0] - v[:, 1]) < tolerance * np.abs(v).min(axis=1)


def design_metrics(values_xy: np.ndarray, database_xy: np.ndarray, goal: str,
                   tolerance: float = 0.10) -> dict[str, np.ndarray]:
    """Constraint and "beats every sample" for designs ``values_xy: (n, 2)`` (X, Y property).

    ``balanced``: ``|X - Y| < tolerance * min(|X|, |Y|)`` (SPEC B5). ``score``: the weaker
    direction, ``min(X, Y)`` for ``goal="max"``, ``max(X, Y)`` for ``goal="min"``;
    ``beats_all``: the score is better than every database sample's (``database_xy: (m, 2)``).
    ``margin``: the score relative to the database's best score (positive = better).
    """
    v = np.asarray(values_xy, dtype=np.float64)
    db = np.asarray(database_xy, dtype=np.float64)
    for name, arr in (("values_xy", v), ("database_xy", db)):
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ValueError(f"{name} must have shape (n, 2), got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contain NaN or inf")
    if goal not in ("max", "min"):
        raise ValueError(f"goal must be 'max' or 'min', got {goal!r}")
    if len(db) == 0:
        raise ValueError("database_xy is empty")
    balanced = is_balanced(v, tolerance)
    score, db_score = weaker_direction(v, goal), weaker_direction(db, goal)
    if goal == "max":
        best = db_score.max()
        margin = score / best - 1.0
    else:
        best = db_score.min()
        margin = 1.0 - score / best
    return {"balanced": balanced, "score": score, "beats_all": margin > 0.0,
            "margin": margin, "database_best": np.full(len(v), best)}


def summarize(metrics: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Counts of a :func:`design_metrics` dict: designs, balanced, beating every sample."""
    ok = metrics["balanced"] & metrics["beats_all"]
    return {"designs": int(len(metrics["score"])), "balanced": int(metrics["balanced"].sum()),
            "beats_all": int(metrics["beats_all"].sum()), "balanced_and_beats_all": int(ok.sum())}


def moderate_samples(values_xy: np.ndarray, goal: str, n: int) -> np.ndarray:
    """Indices of the ``n`` samples whose score (weaker direction, as in :func:`design_metrics`)
    lies closest to the median score: the paper's "moderate" sources."""
    v = np.asarray(values_xy, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 2:
        raise ValueError(f"values_xy must have shape (n, 2), got {v.shape}")
    if not 1 <= n <= len(v):
        raise ValueError(f"n must lie in [1, {len(v)}], got {n}")
    score = weaker_direction(v, goal)
    return np.argsort(np.abs(score - np.median(score)), kind="stable")[:n]


def xai_designs(trained: Any, images: np.ndarray, sources: Mapping[str, np.ndarray],
                thresholds: Any = (0.3, 0.5, 0.7), reference_images: Any = None,
                fraction: float = 0.395, n_jobs: int = -1) -> dict[str, np.ndarray]:
    """Designs from every source structure at every threshold, validated by FE.

    ``trained``: a :class:`lib.models.training.TrainedCase`; ``images: (m, N, N)`` the
    database; ``sources``: ``{group name: database indices}`` (e.g. outliers, moderate);
    ``reference_images``: passed to :func:`lib.explain.gradram.case_heatmaps`. Returns
    ``designs (d, N, N) uint8``, ``source (d,)`` database index, ``group (d,)`` position of
    the group in ``sources``, ``threshold (d,)``, ``skeleton_pixels (d,)``, ``region_share
    (d,)``, ``values (d, 2)`` the case's X and Y property of each design (label units),
    ``Ex``, ``Ey`` (MPa) of each design, and ``n_empty`` ``(len(sources), len(thresholds))``:
    sources whose masked skeleton was empty (no design).
    """
    ts = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    if ts.ndim != 1 or len(ts) == 0 or not ((ts > 0) & (ts <= 1)).all():
        raise ValueError(f"thresholds must be values in (0, 1], got {thresholds!r}")
    if not sources:
        raise ValueError("sources must name at least one group of database indices")
    case = trained.case
    rows: dict[str, list] = {k: [] for k in ("designs", "source", "group", "threshold",
                                             "skeleton_pixels", "region_share")}
    n_empty = np.zeros((len(sources), len(ts)), dtype=np.int64)
    groups = [np.asarray(idx, dtype=np.int64) for idx in sources.values()]
    every = np.concatenate(groups)
    # one Grad-RAM pass (and one reference) for all groups, one skeleton per source
    maps = case_heatmaps(trained, images[every], threshold=float(ts[0]),
                         reference_images=reference_images)
    skeletons = [periodic_skeleton(images[src]) for src in every]
    starts = np.cumsum([0] + [len(idx) for idx in groups])
    for g, idx in enumerate(groups):
        part = slice(starts[g], starts[g + 1])
        for j, t in enumerate(ts):
            regions = critical_region(maps["map_x"][part], maps["map_y"][part], float(t))
            for i, src in enumerate(idx):
                design, info = design_from_region(images[src], regions[i], fraction,
                                                  skeleton=skeletons[starts[g] + i])
                if design is None:
                    n_empty[g, j] += 1
                    continue
                for key, value in (("designs", design), ("source", src), ("group", g),
                                   ("threshold", t), ("skeleton_pixels", info["skeleton_pixels"]),
                                   ("region_share", regions[i].mean())):
                    rows[key].append(value)
    n = images.shape[1]
    out = {k: np.asarray(v) for k, v in rows.items()}
    if not rows["designs"]:
        out["designs"] = np.zeros((0, n, n), dtype=np.uint8)
    out["n_empty"] = n_empty
    props = label_images(out["designs"], [case.material], n_jobs=n_jobs)  # empty in, empty out
    out["values"] = np.column_stack([props[key] for key in case.label_keys])
    out["Ex"] = props[f"{case.material}_Ex"]
    out["Ey"] = props[f"{case.material}_Ey"]
    return out


def design_stage(profile: str, trained: Any, images: np.ndarray, sources: Mapping[str, np.ndarray],
                 thresholds: Any = (0.3, 0.5, 0.7), reference_images: Any = None,
                 fraction: float = 0.395, n_jobs: int = -1,
                 upstream: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """:func:`xai_designs` as a cached stage ``designs_<case>`` of ``profile``.

    The key covers the sources, thresholds, fraction, a hash of the reference structures, the
    Grad-RAM settings and the trained case's stage key (plus ``upstream``, e.g. the
    database's key).
    """
    params = {"version": 1, "case": trained.case.name,
              "sources": {k: np.asarray(v).tolist() for k, v in sources.items()},
              "thresholds": [float(t) for t in np.atleast_1d(thresholds)],
              "fraction": float(fraction),
              "reference_sha1": None if reference_images is None else hashlib.sha1(
                  np.ascontiguousarray(reference_images, dtype=np.uint8).tobytes()).hexdigest(),
              "shift_average": int(trained.recipe.gradram_shift_average),
              "gradram_layer": trained.recipe.gradram_layer}
    keys = list(upstream) + ([read_key(trained.path)] if trained.path is not None else [])
    path = cached_stage(profile, f"designs_{trained.case.name}", params,
                        lambda: xai_designs(trained, images, sources, thresholds,
                                            reference_images, fraction, n_jobs),
                        upstream=keys)
    return load_stage(path)


def summary_rows(designs: Mapping[str, np.ndarray], metrics: Mapping[str, np.ndarray],
                 group_names: Any, thresholds: Any) -> list[dict[str, Any]]:
    """One row per (source group, threshold): sources tried, designs made, balanced ones,
    designs beating every database sample (balanced and not), best and median margin, and the
    median number of skeleton pixels in a quarter (a handful means the design is mostly the
    thickening's disc, not the critical feature).

    ``designs``: :func:`xai_designs`' dict; ``metrics``: :func:`design_metrics` of its values.
    """
    rows = []
    for g, group in enumerate(group_names):
        for j, t in enumerate(np.atleast_1d(thresholds)):
            sel = (designs["group"] == g) & np.isclose(designs["threshold"], float(t))
            margin = metrics["margin"][sel]
            ok = metrics["balanced"][sel]
            beats = metrics["beats_all"][sel]
            nan = float("nan")
            skeleton = designs["skeleton_pixels"][sel]
            rows.append({"group": group, "threshold": float(t),
                         "sources": int(sel.sum() + designs["n_empty"][g, j]),
                         "designs": int(sel.sum()), "balanced": int(ok.sum()),
                         "beats_all": int(beats.sum()),
                         "balanced_beats_all": int((ok & beats).sum()),
                         "best_margin": float(margin.max()) if len(margin) else nan,
                         "best_balanced_margin": float(margin[ok].max()) if ok.any() else nan,
                         "median_margin": float(np.median(margin)) if len(margin) else nan,
                         "median_skeleton_pixels":
                             float(np.median(skeleton)) if sel.any() else nan})
    return rows


def format_summary(rows_by_case: Mapping[str, list[dict[str, Any]]]) -> str:
    """One markdown table of :func:`summary_rows` for several cases (``{case name: rows}``)."""
    def pct(x: float) -> str:
        return "–" if not np.isfinite(x) else f"{x:+.1%}"

    lines = ["| case | sources | threshold | designs (of) | balanced | beat every sample "
             "(balanced) | best margin (balanced) | median margin | skeleton px in quarter |",
             "|---|---|---|---|---|---|---|---|---|"]
    for case_name, rows in rows_by_case.items():
        for r in rows:
            lines.append(f"| {case_name} | {r['group']} | {r['threshold']:.1f} | {r['designs']} "
                         f"({r['sources']}) | {r['balanced']} | {r['beats_all']} "
                         f"({r['balanced_beats_all']}) | {pct(r['best_margin'])} "
                         f"({pct(r['best_balanced_margin'])}) | {pct(r['median_margin'])} "
                         f"| {r['median_skeleton_pixels']:.0f} |")
    return "\n".join(lines)


def best_designs(metrics: Mapping[str, np.ndarray], n: int, balanced_only: bool = True
                 ) -> np.ndarray:
    """Indices of the ``n`` designs with the largest margin (balanced ones, if any and
    ``balanced_only``)."""
    margin = np.asarray(metrics["margin"], dtype=np.float64)
    pool = np.flatnonzero(metrics["balanced"]) if balanced_only and metrics["balanced"].any() \
        else np.arange(len(margin))
    return pool[np.argsort(-margin[pool], kind="stable")][:n]


def replay_designs(trained: Any, images: np.ndarray, designs: Mapping[str, np.ndarray],
                   picks: np.ndarray, reference_images: Any = None, fraction: float = 0.395
                   ) -> dict[str, Any]:
    """Rebuild the steps of the designs ``picks`` (for figures): their sources, critical
    regions and :func:`design_steps` (the maps are recomputed, so a design can differ from
    the stored one where a map value sits exactly at the threshold)."""
    picks = np.asarray(picks, dtype=np.int64)
    sources = designs["source"][picks]
    maps = case_heatmaps(trained, images[sources], reference_images=reference_images)
    regions = np.stack([critical_region(maps["map_x"][i], maps["map_y"][i],
                                        float(designs["threshold"][p]))
                        for i, p in enumerate(picks)]) if len(picks) else \
        np.zeros((0, *images.shape[1:]), bool)
    steps = [design_steps(images[s], r, fraction) for s, r in zip(sources, regions)]
    return {"sources": images[sources], "source_indices": sources, "regions": regions,
            "steps": steps}
