"""Benchmark: ResNet-18 regressor cost per 128x128 image, forward + backward, per stem variant.

One Adam training step (forward, MSE loss, backward, update) on a batch of binary images,
timed for each stem of ``lib.models.regressor`` (standard: 4x4 last maps; no_maxpool: 8x8;
stride1: 16x16), with zero padding (torchvision's) and circular padding (``periodic=True``),
in the default NCHW memory layout and in channels-last (what the training loop uses on the
CPU), plus the Grad-RAM cost per map. Each figure is the *minimum* over
``--repeats`` timed steps (the least disturbed by other load on a shared machine), after one
warm-up step. CPU unless ``--device cuda``.

Usage:  python bench/resnet.py [--threads 2] [--batch 16] [--repeats 3] [--stems standard,...]
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.explain.gradram import gradram_maps  # noqa: E402
from lib.models.regressor import STEMS, build_regressor, feature_map_size  # noqa: E402


def time_training_step(stem: str, periodic: bool, batch: int, repeats: int,
                       channels_last: bool, device: torch.device) -> float:
    """Minimum seconds per image of one forward + backward + Adam step."""
    model = build_regressor(2, stem, seed=0, periodic=periodic).to(device)
    x = (torch.rand(batch, 1, 128, 128, generator=torch.Generator().manual_seed(0)) < 0.4)
    x = x.float().to(device)
    y = torch.rand(batch, 2).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for i in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first step is warm-up
            times.append((time.perf_counter() - t0) / batch)
    return min(times)


def time_gradram(stem: str, periodic: bool, n: int, repeats: int, device: torch.device) -> float:
    """Minimum seconds per Grad-RAM map (layer4, upsampled to 128 x 128)."""
    model = build_regressor(2, stem, seed=0, periodic=periodic).to(device).eval()
    imgs = (np.random.default_rng(0).random((n, 128, 128)) < 0.4).astype(np.uint8)
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        gradram_maps(model, imgs, output=0)
        if i:
            times.append((time.perf_counter() - t0) / n)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stems", default=",".join(STEMS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--padding", default="zero,circular",
                        help="comma-separated: zero (torchvision's) and/or circular")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    stems = args.stems.split(",")
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch "
          f"threads, torch {torch.__version__}, device {device}, batch {args.batch}, "
          f"min of {args.repeats}")
    print("| stem | padding | last map | NCHW ms/img | channels-last ms/img | Grad-RAM ms/map "
          "| x standard zero-pad |")
    print("|---|---|---|---|---|---|---|")
    base = None
    for stem in stems:
        for padding in args.padding.split(","):
            periodic = padding == "circular"
            nchw = time_training_step(stem, periodic, args.batch, args.repeats, False, device)
            cl = time_training_step(stem, periodic, args.batch, args.repeats, True, device)
            cam = time_gradram(stem, periodic, 4, args.repeats, device)
            best = min(nchw, cl)
            base = best if (stem, periodic) == ("standard", False) else base
            ratio = f"{best / base:.1f}" if base else "-"
            side = feature_map_size(stem)
            print(f"| {stem} | {padding} | {side}x{side} | {nchw * 1e3:.1f} | {cl * 1e3:.1f} "
                  f"| {cam * 1e3:.1f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
