"""Grad-RAM heatmaps and critical regions (SPEC B4, paper 002 eqs. 4-5 and Fig. 3).

Grad-RAM is Grad-CAM for a regression output y: the gradients dy/dA_k of the output with
respect to the feature maps A_k of a convolutional block are global-average-pooled into
channel weights alpha_k (eq. 5), and the map is ReLU(sum_k alpha_k A_k) (eq. 4). captum's
``LayerGradCam`` with ``relu_attributions=True`` computes exactly that; this module only picks
the block, the output and its sign, upsamples the map to the image with captum's
``LayerAttribution.interpolate``, and post-processes:

* "positive" means "raises the explained output", so a case that *minimizes* its property
  (Case 3, thermal expansion) explains ``-alpha`` (``sign=-1``);
* the feature maps can be measured from a *reference*: eq. 4 as printed is
  ``ReLU(sum_k alpha_k A_k)``, i.e. relative to zero activation. A regressor whose output is
  built up from non-negative features (after the block's ReLU) by a linear head makes the
  map a spatial split of ``y - bias`` (Zhou et al. 2016's CAM): for a property that every
  part of every structure adds to, ``-y`` has no positive evidence anywhere and its ReLU map
  is all zero. Our Case 3 networks are like that: at the default profile the layer4 map of
  ``-alpha_x`` has no positive cell for 374 of the 400 low-alpha outliers.
  With ``reference_images`` the map is ``ReLU(sum_k alpha_k (A_k - Abar_k))``, with
  ``Abar_k`` the mean activation of channel k over those images (DeepLIFT's reference
  activations, Shrikumar et al. 2017). On the last block with a linear head the signed map
  then sums exactly to ``y(x) - mean y(reference)`` (completeness): it splits *why this
  structure's output differs from the database average* over the cell, which is what an
  outlier's explanation should say, and it is computed by the same captum ``LayerGradCam``,
  applied to the block's output shifted by ``-Abar`` (:func:`reference_activations`);
* a periodic cell has no preferred origin, so a map can be averaged over periodic shifts of
  the input (``shift_average``), which resolves detail finer than the last block's cells;
* each map is min-max normalized to [0, 1], as Grad-CAM maps usually are for display and
  thresholding (a constant map becomes zero: no NaN). With a linear regression head the
  mean of a last-layer map is the prediction minus the bias, so a map can carry a large
  uniform part; dividing by the maximum alone would leave it nearly flat at any threshold;
* the X and Y maps are binarized at ``threshold`` (``map >= threshold``, threshold in (0, 1])
  and intersected (AND) into the *critical region*.

A sanity check the paper does not make (Adebayo et al. 2018, "Sanity checks for saliency
maps"): :func:`randomized_copy` re-initializes the weights, and :func:`map_similarity` gives
the Spearman rank correlation and SSIM of two maps, so a notebook can show that the maps
depend on the trained weights and on the input.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from captum.attr import LayerActivation, LayerAttribution, LayerGradCam
from torch import nn

from lib.models.regressor import explained_layer, images_to_tensor

__all__ = [
    "gradram_maps",
    "reference_activations",
    "upsample_periodic",
    "normalize_maps",
    "binarize",
    "critical_region",
    "case_heatmaps",
    "region_agreement",
    "select_outliers",
    "randomized_copy",
    "map_similarity",
    "sanity_check",
]


class _Signed(nn.Module):
    """``sign * model(x)``: explain the decrease of an output as a positive map."""

    def __init__(self, model: nn.Module, sign: float) -> None:
        super().__init__()
        self.model, self.sign = model, float(sign)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sign * self.model(x)


class _Shift(nn.Module):
    """``x + offset`` with a fixed per-channel ``offset`` ``(C,)``."""

    def __init__(self, offset: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("offset", offset.reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.offset


def _as_float_batches(images: Any, batch_size: int) -> tuple[torch.Tensor, int]:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return images_to_tensor(images, image_size=None), int(batch_size)


def reference_activations(model: nn.Module, images: Any, layer: str = "layer4",
                          batch_size: int = 32) -> np.ndarray:
    """Mean activation ``(C,)`` of each channel of ``layer`` over ``images`` and positions.

    ``images``: ``(n, N, N)`` binary structures (e.g. a few hundred training structures). The
    result is the reference ``Abar_k`` of :func:`gradram_maps`; it belongs to one network
    (recompute it for a re-initialized copy). Computed with captum's ``LayerActivation``.
    """
    x_all, batch_size = _as_float_batches(images, batch_size)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    probe = LayerActivation(model, explained_layer(model, layer))
    total, count = None, 0
    try:
        with torch.no_grad():
            for start in range(0, len(x_all), batch_size):
                act = probe.attribute(x_all[start:start + batch_size].to(device))
                part = act.double().sum(dim=(0, 2, 3))
                total = part if total is None else total + part
                count += act.shape[0] * act.shape[2] * act.shape[3]
    finally:
        model.train(was_training)
    return (total / count).cpu().numpy()


def _referenced(model: nn.Module, layer: str, reference: Any) -> tuple[nn.Module, nn.Module]:
    """A copy of ``model`` whose ``layer`` output passes through ``-Abar`` then ``+Abar``.

    The forward pass is unchanged; the ``-Abar`` module's output is ``A_k - Abar_k`` and the
    gradient there equals the gradient with respect to ``A_k``, so captum's ``LayerGradCam``
    on it gives ``sum_k alpha_k (A_k - Abar_k)``. Returns ``(copy, module to explain)``.
    """
    device = next(model.parameters()).device
    ref = torch.as_tensor(np.asarray(reference, dtype=np.float32), device=device)
    n_channels = _n_channels(model, layer)
    if ref.ndim != 1 or ref.numel() != n_channels:
        raise ValueError(f"reference must have shape ({n_channels},) (one mean activation per "
                         f"channel of {layer}), got {tuple(ref.shape)}")
    if not torch.isfinite(ref).all():
        raise ValueError("reference contains NaN or inf")
    clone = copy.deepcopy(model)
    centred = _Shift(-ref)
    setattr(clone, layer, nn.Sequential(explained_layer(clone, layer), centred, _Shift(ref)))
    return clone.eval(), centred


def _n_channels(model: nn.Module, layer: str) -> int:
    convs = [m for m in explained_layer(model, layer).modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


def gradram_maps(model: nn.Module, images: Any, output: int = 0, layer: str = "layer4",
                 sign: float = 1.0, upsample: str = "bilinear", batch_size: int = 32,
                 normalize: bool = True, periodic: bool = True, reference: Any = None,
                 relu: bool = True, shift_average: int = 1) -> np.ndarray:
    """Grad-RAM maps ``(n, N, N)`` of ``model``'s output ``output`` for binary ``images``.

    ``layer``: residual stage explained (``"layer4"``, the last convolutional block, as in the
    paper; or ``"layer3"``). ``sign=-1`` explains ``-output``. ``reference``: ``None`` for
    eq. 4 as printed (feature maps measured from zero), or the per-channel reference
    activations ``(C,)`` of :func:`reference_activations` (module docstring). Maps are
    non-negative (ReLU; ``relu=False`` returns the signed sum, for diagnosis), upsampled to
    the image size with ``upsample`` (``"bilinear"``, ``"bicubic"`` or ``"nearest"``) —
    ``periodic`` (the structures are periodic cells) wraps the coarse map around its edges
    first (:func:`upsample_periodic`) — and, if ``normalize``, min-max normalized to [0, 1]
    (:func:`normalize_maps`).

    ``shift_average = s > 1`` (periodic cells only): the map is the mean of the maps of the
    image rolled by every multiple of ``step = cell / s`` pixels in x and y (``cell`` = image
    size / coarse map size) and rolled back — ``s**2`` passes. A periodic shift leaves the
    labels unchanged, so every pass explains the same prediction; the average resolves
    ``step``-pixel detail from a coarse last block and commutes exactly with shifts by
    multiples of ``step`` (augmentation-based Grad-CAM super-resolution, Morbidelli et al.,
    ICASSP 2020). ``cell`` must be divisible by ``s``.
    """
    x_all, batch_size = _as_float_batches(images, batch_size)
    if sign not in (1, -1, 1.0, -1.0):
        raise ValueError(f"sign must be +1 or -1, got {sign!r}")
    n_out = _n_outputs(model)
    if isinstance(output, bool) or not isinstance(output, (int, np.integer)) or not 0 <= output < n_out:
        raise ValueError(f"output must be an index in [0, {n_out - 1}], got {output!r}")
    if upsample not in ("bilinear", "nearest", "bicubic"):
        raise ValueError(f"upsample must be 'bilinear', 'nearest' or 'bicubic', got {upsample!r}")
    if isinstance(shift_average, bool) or not isinstance(shift_average, (int, np.integer)) \
            or shift_average < 1:
        raise ValueError(f"shift_average must be a positive integer, got {shift_average!r}")
    if shift_average > 1 and not periodic:
        raise ValueError("shift_average needs periodic=True: rolling an image is only "
                         "label-preserving for a periodic cell")
    if reference is None:
        net, explained = model, explained_layer(model, layer)
    else:
        net, explained = _referenced(model, layer, reference)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    cam = LayerGradCam(_Signed(net, sign), explained)
    size = tuple(x_all.shape[-2:])

    def one_pass(x: torch.Tensor) -> tuple[torch.Tensor, int]:
        attr = cam.attribute(x, target=int(output), relu_attributions=bool(relu)).detach()
        coarse = attr.shape[-1]
        attr = upsample_periodic(attr, size, upsample) if periodic else \
            LayerAttribution.interpolate(attr, size, interpolate_mode=upsample)
        return (attr[:, 0].clamp_min(0.0) if relu else attr[:, 0]), coarse  # bicubic undershoots

    out = []
    try:
        for start in range(0, len(x_all), batch_size):
            x = x_all[start:start + batch_size].to(device)
            maps, coarse = one_pass(x)
            if shift_average > 1:
                cell = size[0] // coarse
                if cell % shift_average:
                    raise ValueError(f"shift_average={shift_average} must divide the feature "
                                     f"cell of {cell} px ({size[0]} px / {coarse} cells)")
                step = cell // shift_average
                total = maps.clone()
                for dy in range(shift_average):
                    for dx in range(shift_average):
                        if dy == dx == 0:
                            continue
                        s_y, s_x = dy * step, dx * step
                        part, _ = one_pass(torch.roll(x, (s_y, s_x), dims=(-2, -1)))
                        total += torch.roll(part, (-s_y, -s_x), dims=(-2, -1))
                maps = total / shift_average ** 2
            out.append(maps.float().cpu())
    finally:
        model.train(was_training)
    maps = torch.cat(out).numpy().astype(np.float64)
    return normalize_maps(maps) if normalize else maps


def upsample_periodic(maps: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Upsample coarse maps ``(n, 1, m, m)`` of a periodic cell to ``(n, 1, *size)``.

    Plain interpolation clamps at the edges, so a feature that straddles the cell boundary
    is drawn as two half-blobs with a seam. Here the coarse map is padded circularly by two
    cells, interpolated with captum's ``LayerAttribution.interpolate`` at the same scale, and
    the padding cropped off: the result is the interpolation of the periodically continued
    map, and rolling the coarse map by one cell rolls the output by ``size / m`` pixels.
    ``size`` must be a multiple of the coarse size (it is for the ResNet stages).
    """
    m_y, m_x = maps.shape[-2:]
    if size[0] % m_y or size[1] % m_x:
        raise ValueError(f"periodic upsampling needs the image size {tuple(size)} to be a "
                         f"multiple of the map size {(m_y, m_x)}")
    s_y, s_x = size[0] // m_y, size[1] // m_x
    pad = 2
    padded = torch.nn.functional.pad(maps, (pad, pad, pad, pad), mode="circular")
    big = LayerAttribution.interpolate(padded, ((m_y + 2 * pad) * s_y, (m_x + 2 * pad) * s_x),
                                       interpolate_mode=mode)
    return big[..., pad * s_y:pad * s_y + size[0], pad * s_x:pad * s_x + size[1]]


def _n_outputs(model: nn.Module) -> int:
    fc = getattr(model, "fc", None)
    if not isinstance(fc, nn.Linear):
        raise ValueError("model must be a ResNet regressor from lib.models.regressor.build_regressor")
    return fc.out_features


def normalize_maps(maps: np.ndarray) -> np.ndarray:
    """Each map min-max scaled to [0, 1]: ``(m - min) / (max - min)``; a constant map gives zeros.

    >>> normalize_maps(np.array([[[1.0, 3.0, 2.0]], [[5.0, 5.0, 5.0]]])).tolist()
    [[[0.0, 1.0, 0.5]], [[0.0, 0.0, 0.0]]]
    """
    m = np.asarray(maps, dtype=np.float64)
    single = m.ndim == 2
    m = m[None] if single else m
    if m.ndim != 3:
        raise ValueError(f"maps must have shape (n, H, W) or (H, W), got {np.shape(maps)}")
    if not np.isfinite(m).all():
        raise ValueError("maps contain NaN or inf")
    flat = m.reshape(len(m), -1)
    lo = flat.min(axis=1)[:, None, None]
    span = flat.max(axis=1)[:, None, None] - lo
    out = np.divide(m - lo, span, out=np.zeros_like(m), where=span > 0)
    return out[0] if single else out


def _check_threshold(threshold: float) -> float:
    t = float(threshold)
    if not 0.0 < t <= 1.0:
        raise ValueError(f"threshold must lie in (0, 1] (maps are normalized to [0, 1]), "
                         f"got {threshold!r}")
    return t


def binarize(maps: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Boolean mask ``normalize_maps(maps) >= threshold``.

    >>> binarize(np.array([[0.0, 0.4, 1.0]]), 0.5).tolist()
    [[False, False, True]]
    """
    return normalize_maps(maps) >= _check_threshold(threshold)


def critical_region(map_x: np.ndarray, map_y: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The paper's critical region: binarized X map AND binarized Y map (same threshold)."""
    mx, my = np.asarray(map_x), np.asarray(map_y)
    if mx.shape != my.shape:
        raise ValueError(f"X map {mx.shape} and Y map {my.shape} must have the same shape")
    return binarize(mx, threshold) & binarize(my, threshold)


def case_heatmaps(trained: Any, images: Any, threshold: float = 0.5, layer: str | None = None,
                  upsample: str = "bilinear", reference_images: Any = None,
                  shift_average: int | None = None) -> dict[str, np.ndarray]:
    """X and Y maps, their binarizations and the critical region of a trained case.

    ``trained`` is a :class:`lib.models.training.TrainedCase`; its case's ``explain_sign``
    (``-1`` for Case 3) and, unless ``layer`` is given, its recipe's Grad-RAM layer are used.
    ``reference_images`` ``(m, N, N)`` (e.g. training structures): measure the feature maps
    from their mean activations (:func:`gradram_maps`); ``None``: from zero (eq. 4 as printed).
    ``shift_average``: see :func:`gradram_maps` (``None``: the recipe's). Returns ``map_x``,
    ``map_y`` (normalized, ``(n, N, N)``), ``bin_x``, ``bin_y``, ``region``.
    """
    layer = trained.recipe.gradram_layer if layer is None else layer
    if shift_average is None:
        shift_average = trained.recipe.gradram_shift_average
    maps, references = {}, {}
    for j, axis in enumerate("xy"):
        model, k = trained.model_for(j)
        if reference_images is not None and id(model) not in references:
            references[id(model)] = reference_activations(model, reference_images, layer)
        maps[f"map_{axis}"] = gradram_maps(model, images, output=k, layer=layer,
                                           sign=trained.case.explain_sign, upsample=upsample,
                                           reference=references.get(id(model)),
                                           shift_average=shift_average)
    maps["bin_x"] = binarize(maps["map_x"], threshold)
    maps["bin_y"] = binarize(maps["map_y"], threshold)
    maps["region"] = maps["bin_x"] & maps["bin_y"]
    return maps


def region_agreement(trained: Any, images: Any, reference_images: Any,
                     threshold: float = 0.5, shift_average: int | None = None
                     ) -> dict[str, float]:
    """How much the reference changes a case's critical regions over ``images`` ``(n, N, N)``.

    Returns the mean share of the image in the critical region with maps measured from zero
    (``share_zero``, eq. 4 as printed) and from ``reference_images``' mean activations
    (``share_reference``), and the mean intersection over union of the two regions (``iou``;
    1 where both are empty).
    """
    zero = case_heatmaps(trained, images, threshold, shift_average=shift_average)["region"]
    ref = case_heatmaps(trained, images, threshold, reference_images=reference_images,
                        shift_average=shift_average)["region"]
    inter = (zero & ref).sum(axis=(1, 2))
    union = (zero | ref).sum(axis=(1, 2))
    iou = np.divide(inter, union, out=np.ones(len(union)), where=union > 0)
    return {"share_zero": float(zero.mean()), "share_reference": float(ref.mean()),
            "iou": float(iou.mean())}


def select_outliers(values_xy: np.ndarray, goal: str, fraction: float = 0.1) -> np.ndarray:
    """Indices of the exceptional samples of a case, best first (SPEC B5).

    ``values_xy`` ``(n, 2)`` are the case's X and Y properties; for ``goal="max"`` a sample is
    as good as its *weaker* direction (``min(X, Y)``, top ``fraction``), for ``goal="min"`` as
    its worse one (``max(X, Y)``, bottom ``fraction``).
    """
    v = np.asarray(values_xy, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 2 or len(v) == 0:
        raise ValueError(f"values_xy must have shape (n, 2), got {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("values_xy contain NaN or inf")
    if goal not in ("max", "min"):
        raise ValueError(f"goal must be 'max' or 'min', got {goal!r}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction!r}")
    score = v.min(axis=1) if goal == "max" else -v.max(axis=1)
    k = max(1, int(np.ceil(fraction * len(v))))
    return np.argsort(-score, kind="stable")[:k]


# --------------------------------------------------------------------------------------------
# sanity checks (Adebayo et al. 2018)
# --------------------------------------------------------------------------------------------
def randomized_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` with every layer's weights re-initialized (same architecture).

    This is the "full model randomization" test of Adebayo et al. (2018): maps that survive it
    do not depend on what the network learned. The new weights are drawn as torchvision
    initializes a ResNet before training (Kaiming-normal convolutions, unit BatchNorm, default
    linear head), so the copy is the network as it was before it learned anything.
    """
    clone = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for module in clone.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()  # weight 1, bias 0, running stats reset
            elif isinstance(module, nn.Linear):
                module.reset_parameters()
    clone.eval()
    return clone


def map_similarity(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Spearman rank correlation and SSIM of two maps (each normalized to [0, 1] first).

    Rank correlation ignores the maps' scale; SSIM compares their local structure. Two equal
    maps give 1 for both; a constant map has no ranks, so its rank correlation is 0.
    """
    from scipy.stats import spearmanr
    from skimage.metrics import structural_similarity

    ma, mb = normalize_maps(a), normalize_maps(b)
    if ma.shape != mb.shape or ma.ndim != 2:
        raise ValueError(f"maps must be two (H, W) arrays of one shape, got {ma.shape}, {mb.shape}")
    if np.ptp(ma) == 0 or np.ptp(mb) == 0:
        rho = 1.0 if np.array_equal(ma, mb) else 0.0
    else:
        rho = float(spearmanr(ma.ravel(), mb.ravel()).statistic)
    ssim = float(structural_similarity(ma, mb, data_range=1.0))
    return {"spearman": rho, "ssim": ssim}


def sanity_check(model: nn.Module, images: Any, output: int = 0, layer: str = "layer4",
                 sign: float = 1.0, seeds: Sequence[int] = (0, 1, 2), shift: int = 20,
                 reference_images: Any = None, shift_average: int = 1) -> dict[str, Any]:
    """Similarity of Grad-RAM maps under three changes, over ``images`` (at least 2).

    * ``randomized``: the same image, the model's weights re-initialized, once per seed in
      ``seeds`` (should be low; with maps measured from zero, one random network can give
      all-zero maps, whose rank correlation is 0, so several are drawn);
    * ``other_input``: image i against image i+1 (different structures: should be low);
    * ``shifted``: image i against image i rolled periodically by ``shift`` pixels, its map
      rolled back (a positive control: the labels are shift-invariant, so this should be high).
      The default 20 px is no multiple of any network's stride, so even a circularly padded
      network is only approximately equivariant to it and the check is not trivially passed.

    ``reference_images``, ``shift_average``: as in :func:`case_heatmaps`; each network (trained or
    re-initialized) gets the reference activations of its own. Returns per check the
    per-pair ``spearman`` and ``ssim`` arrays (``randomized``: seed-major, ``len(seeds) * n``)
    and their means, and the maps (``randomized``: the first seed's).
    """
    x = images_to_tensor(images, image_size=None).numpy()[:, 0]
    if len(x) < 2:
        raise ValueError("sanity_check needs at least 2 images")
    if not len(seeds):
        raise ValueError("seeds must name at least one re-initialization")

    def maps_of(net: nn.Module, imgs: np.ndarray, reference: Any = None) -> np.ndarray:
        if reference is None and reference_images is not None:
            reference = reference_activations(net, reference_images, layer)
        return gradram_maps(net, imgs, output=output, layer=layer, sign=sign, reference=reference,
                            shift_average=shift_average)

    own_reference = None if reference_images is None else \
        reference_activations(model, reference_images, layer)
    trained = maps_of(model, x, own_reference)
    randoms = [maps_of(randomized_copy(model, s), x) for s in seeds]
    random = randoms[0]
    rolled = np.roll(x, (shift, shift), axis=(1, 2))
    shifted = np.roll(maps_of(model, rolled, own_reference), (-shift, -shift), axis=(1, 2))
    pairs = {
        "randomized": [(trained[i], r[i]) for r in randoms for i in range(len(x))],
        "other_input": [(trained[i], trained[(i + 1) % len(x)]) for i in range(len(x))],
        "shifted": [(trained[i], shifted[i]) for i in range(len(x))],
    }
    out: dict[str, Any] = {"maps": {"trained": trained, "randomized": random, "shifted": shifted}}
    for name, items in pairs.items():
        sims = [map_similarity(a, b) for a, b in items]
        rho = np.array([s["spearman"] for s in sims])
        ssim = np.array([s["ssim"] for s in sims])
        out[name] = {"spearman": rho, "ssim": ssim,
                     "spearman_mean": float(rho.mean()), "ssim_mean": float(ssim.mean())}
    return out


def similarity_rows(result: Mapping[str, Any], checks: Sequence[str] = ("randomized",
                    "other_input", "shifted")) -> list[dict[str, float]]:
    """Table rows (check, mean and sd of Spearman and SSIM) from :func:`sanity_check`."""
    rows = []
    for name in checks:
        r = result[name]
        rows.append({"check": name, "spearman_mean": float(np.mean(r["spearman"])),
                     "spearman_sd": float(np.std(r["spearman"])),
                     "ssim_mean": float(np.mean(r["ssim"])), "ssim_sd": float(np.std(r["ssim"]))})
    return rows
