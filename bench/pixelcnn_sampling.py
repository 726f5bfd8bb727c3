"""Benchmark: sampling and decoding structures with the PixelCNN, cached against naive, and
the training cost per epoch of the VQ-VAE and the PixelCNN.

* **Sampling**: seconds to sample and decode ``--n`` structures with the cached sampler
  (``GatedPixelCNN.sample``: one row of vertical features and one site of horizontal features
  per layer and step, Ramachandran et al. 2017) against the textbook loop a user would write
  (``sample_naive``: one full network pass per code, 256 for a 16x16 map), in the same run.
  The naive loop is timed on ``--n-naive`` structures and scaled linearly to ``--n`` (said
  so in the output: its cost per pass grows linearly with the batch); both are checked to
  give the same codes for the same seed on those structures.
* **Training**: seconds per epoch of each model at the profile's recipe, on
  ``--n-train`` structures (the VQ-VAE: ``n_train / batch`` optimizer steps; the PixelCNN: one
  pass over ``n_train`` code maps), from a few timed steps.

Weights are random (timing does not depend on them); architectures are those of
``lib.models.generative_training.RECIPES[--profile]``. CPU unless ``--device cuda``.

Usage:  python bench/pixelcnn_sampling.py [--profile default] [--n 1000] [--n-naive 16]
        [--threads 2] [--n-train 640]
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.models.generative_training import get_generative_recipe  # noqa: E402
from lib.models.pixelcnn import GatedPixelCNN  # noqa: E402
from lib.models.vqvae import VQVAE  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def min_step_seconds(model: torch.nn.Module, loss_of: Callable[[], torch.Tensor],
                     device: torch.device, repeats: int = 4) -> float:
    """Minimum wall seconds of one Adam step on ``loss_of()`` over ``repeats`` steps, the first
    (warm-up) left out."""
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        loss = loss_of()
        opt.zero_grad()
        loss.backward()
        opt.step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return min(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--n-naive", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-train", type=int, default=640)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    recipe = get_generative_recipe(args.profile)
    torch.manual_seed(0)
    vqvae = VQVAE(recipe.vqvae).to(device).eval()
    net = GatedPixelCNN(recipe.pixelcnn_config(1)).to(device).eval()
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} threads, device {device}; profile {args.profile}: PixelCNN width "
          f"{recipe.pixelcnn_width} x {recipe.pixelcnn_layers} layers, K = {recipe.vqvae.n_codes}, "
          f"{recipe.vqvae.code_size}x{recipe.vqvae.code_size} codes")
    cond = torch.linspace(0.0, 1.0, args.n)[:, None]

    net.sample(8, cond[:8], seed=1)  # warm-up (thread pool, kernels)
    _sync(device)
    t0 = time.perf_counter()
    codes = net.sample(args.n, cond, seed=1)
    _sync(device)
    t_sample = time.perf_counter() - t0
    t0 = time.perf_counter()
    vqvae.decode_batched(codes.to(device))
    _sync(device)
    t_decode = time.perf_counter() - t0

    t0 = time.perf_counter()
    vqvae.decode_batched(net.sample(6, cond[:6], seed=2).to(device))
    _sync(device)
    t_slider = time.perf_counter() - t0

    k = args.n_naive
    t0 = time.perf_counter()
    naive = net.sample_naive(k, cond[:k], seed=1)
    _sync(device)
    t_naive = time.perf_counter() - t0
    fast_k = net.sample(k, cond[:k], seed=1)
    same = bool(torch.equal(naive, fast_k))
    scaled = t_naive * args.n / k
    print(f"cached sampler: {t_sample:.1f} s to sample {args.n} structures + {t_decode:.1f} s to "
          f"decode = {t_sample + t_decode:.1f} s")
    print(f"naive loop: {t_naive:.1f} s for {k} structures -> {scaled:.0f} s for {args.n} "
          f"(scaled linearly) + decode; speed-up of sampling {scaled / t_sample:.0f}x")
    print(f"same codes for the same seed (naive vs cached, {k} structures): {same}")
    print(f"one slider view (6 structures sampled and decoded): {t_slider:.2f} s")

    # training cost per epoch
    x = (torch.rand(recipe.vqvae_batch, 1, recipe.vqvae.image_size, recipe.vqvae.image_size,
                    generator=torch.Generator().manual_seed(0)) < 0.4).float().to(device)
    vq_train = VQVAE(recipe.vqvae).to(device).train()
    vq_step = min_step_seconds(vq_train, lambda: vq_train.loss(x)[0], device)
    s = recipe.vqvae.code_size
    c = torch.randint(0, recipe.vqvae.n_codes, (recipe.pixelcnn_batch, s, s)).to(device)
    h = torch.rand(recipe.pixelcnn_batch, 1).to(device)
    net.train()
    pc_step = min_step_seconds(net, lambda: F.cross_entropy(net(c, h), c), device)
    n_steps = args.n_train / recipe.vqvae_batch
    print(f"VQ-VAE training: {vq_step:.2f} s per step of {recipe.vqvae_batch} structures -> "
          f"{vq_step * n_steps:.0f} s per epoch of {args.n_train} structures; the recipe's "
          f"{recipe.vqvae_steps} steps: {vq_step * recipe.vqvae_steps / 60:.1f} min")
    print(f"PixelCNN training: {pc_step:.3f} s per step of {recipe.pixelcnn_batch} code maps -> "
          f"{pc_step * args.n_train / recipe.pixelcnn_batch:.1f} s per epoch of {args.n_train} maps")


if __name__ == "__main__":
    main()
