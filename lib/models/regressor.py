"""ResNet-18 property regressors for 128x128 binary microstructures (SPEC B3, paper 002 sec. 2.3).

torchvision's ``resnet18`` with one input channel (the image, white phase = 1) and a linear
regression head of ``n_outputs`` values (min-max normalized labels, see
:mod:`lib.models.training`). Weights start from scratch: pretrained ImageNet weights cannot be
downloaded here, so the paper's "transfer learning" is replaced by training from scratch.

On a 128x128 input the standard stem (7x7 conv stride 2, 3x3 max-pool stride 2) and the four
stages (strides 1, 2, 2, 2) leave a 4x4 last feature map, so Grad-RAM on it can only draw 16
blocks. The *stem variants* trade compute for finer last maps (SPEC B4; cost per training
image on 2 CPU cores, ``bench/resnet.py``):

==============  ==========================================  =========  ===========  =====
stem            first layers                                 layer3     layer4       cost
==============  ==========================================  =========  ===========  =====
``standard``    7x7/2 conv, 3x3/2 max-pool (torchvision's)   8x8        4x4          1x
``no_maxpool``  7x7/2 conv, no max-pool                      16x16      8x8          ~3-4x
``stride1``     3x3/1 conv, no max-pool (CIFAR-style)        32x32      16x16        ~14-23x
==============  ==========================================  =========  ===========  =====

A fourth option costs nothing: Grad-RAM on ``layer3`` of the ``standard`` network (8x8);
:func:`explained_layer` returns the block to explain for a (stem, layer) pair.

``periodic=True`` pads every convolution (and the stem's max-pool) circularly instead of with
zeros. The microstructures and their FE labels are periodic, so the image has no boundary; with
zero padding the network can tell where the image edge is and its Grad-RAM maps pick up a
fixed, structure-independent pattern tied to the edges. Circular padding makes every layer
commute with periodic shifts (exactly for shifts by a multiple of the network's total stride),
so a map can only come from the structure.

>>> model = build_regressor(2, stem="no_maxpool")
>>> tuple(model(torch.zeros(3, 1, 128, 128)).shape)
(3, 2)
>>> feature_map_size("stride1", "layer4")
16
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torchvision.models import resnet18

__all__ = [
    "STEMS",
    "GRADRAM_LAYERS",
    "IMAGE_SIZE",
    "build_regressor",
    "explained_layer",
    "feature_map_size",
    "images_to_tensor",
    "count_parameters",
]

#: Stem variants, cheapest first.
STEMS = ("standard", "no_maxpool", "stride1")
#: Residual stages Grad-RAM may explain (the paper uses the last, ``layer4``).
GRADRAM_LAYERS = ("layer3", "layer4")
#: Side of the microstructure images in both papers.
IMAGE_SIZE = 128

_STEM_DOWNSAMPLING = {"standard": 4, "no_maxpool": 2, "stride1": 1}
_LAYER_DOWNSAMPLING = {"layer3": 4, "layer4": 8}


def _check_stem(stem: str) -> None:
    if stem not in STEMS:
        raise ValueError(f"unknown stem {stem!r}: choose one of {', '.join(STEMS)}")


def build_regressor(n_outputs: int, stem: str = "standard", seed: int | None = None,
                    periodic: bool = False, zero_init_residual: bool = False) -> nn.Module:
    """A from-scratch torchvision ResNet-18 mapping ``(n, 1, N, N)`` images to ``(n, n_outputs)``.

    ``stem`` picks the first layers (module docstring); ``seed``, if given, makes the initial
    weights reproducible without touching the global RNG stream of the caller; ``periodic``
    pads circularly (module docstring). The padding changes no weight shapes, so a state dict
    loads into either kind. ``zero_init_residual`` starts every residual block as the identity
    (torchvision's option: the last BatchNorm of each block has zero scale).
    """
    if isinstance(n_outputs, bool) or not isinstance(n_outputs, (int, np.integer)) or n_outputs < 1:
        raise ValueError(f"n_outputs must be a positive integer, got {n_outputs!r}")
    _check_stem(stem)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(int(seed))
        model = resnet18(weights=None, num_classes=int(n_outputs),
                         zero_init_residual=bool(zero_init_residual))
        if stem == "stride1":
            model.conv1 = nn.Conv2d(1, 64, kernel_size=3, stride=1, padding=1, bias=False)
        else:
            model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
        if stem != "standard":
            model.maxpool = nn.Identity()
    if periodic:
        for module in model.modules():
            if isinstance(module, nn.Conv2d) and any(p > 0 for p in module.padding):
                module.padding_mode = "circular"
        if stem == "standard":
            model.maxpool = nn.Sequential(nn.CircularPad2d(1),
                                          nn.MaxPool2d(kernel_size=3, stride=2, padding=0))
    model.stem = stem  # recorded for explained_layer / caching
    model.periodic = bool(periodic)
    return model


def explained_layer(model: nn.Module, layer: str = "layer4") -> nn.Module:
    """The residual stage of ``model`` that Grad-RAM explains (``"layer4"``: the last block)."""
    if layer not in GRADRAM_LAYERS:
        raise ValueError(f"unknown Grad-RAM layer {layer!r}: choose one of "
                         f"{', '.join(GRADRAM_LAYERS)}")
    if not hasattr(model, layer):
        raise ValueError(f"model has no {layer!r}: expected a ResNet from build_regressor")
    return getattr(model, layer)


def feature_map_size(stem: str, layer: str = "layer4", image_size: int = IMAGE_SIZE) -> int:
    """Side of the feature maps of ``layer`` for a ``stem`` network on ``image_size`` inputs."""
    _check_stem(stem)
    if layer not in GRADRAM_LAYERS:
        raise ValueError(f"unknown Grad-RAM layer {layer!r}: choose one of "
                         f"{', '.join(GRADRAM_LAYERS)}")
    return image_size // (_STEM_DOWNSAMPLING[stem] * _LAYER_DOWNSAMPLING[layer])


def images_to_tensor(images, image_size: int | None = IMAGE_SIZE) -> torch.Tensor:
    """Binary images ``(n, N, N)`` or one ``(N, N)`` as a float tensor ``(n, 1, N, N)`` of 0/1.

    Raises ValueError for a wrong shape, a size other than ``image_size`` (``None``: any
    square size), NaN, or values other than 0 and 1 (the regressors see phases, not grey levels).
    """
    if isinstance(images, torch.Tensor):
        arr = images.detach().cpu().numpy()
    else:
        arr = np.asarray(images)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] != arr.shape[2]:
        raise ValueError(f"images must have shape (n, N, N) (or (N, N), (n, 1, N, N)) with "
                         f"square N x N images, got {np.shape(images)}")
    if image_size is not None and arr.shape[1] != image_size:
        raise ValueError(f"images must be {image_size} x {image_size} pixels, got "
                         f"{arr.shape[1]} x {arr.shape[2]}")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"images must be numeric 0/1 arrays, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError("images contain NaN or inf")
    if not np.isin(arr, (0, 1)).all():
        bad = np.unique(arr[~np.isin(arr, (0, 1))])[:5]
        raise ValueError(f"images must be binary (0 = black, 1 = white phase); found values "
                         f"{bad.tolist()}")
    return torch.from_numpy(arr.astype(np.float32, copy=False)).unsqueeze(1)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
