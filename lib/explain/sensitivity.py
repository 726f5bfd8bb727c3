"""The PixelCNN sensitivity map Δ of a reference structure (SPEC A6, paper 001 eqs. 2-3).

For a reference structure M_r with code map c = E(M_r) and condition h (its fracture strain,
normalized as the model was trained):

* one **teacher-forced** pass of the conditional PixelCNN gives, at every code site (i, j),
  p(c_ij = k | c_<ij of M_r, h): the codes before (i, j) in raster order are the reference's
  own, not drawn ones (:func:`site_probabilities`);
* the **expected codebook vector** per site is E[θ_ij | h, M_r] = Σ_k p_ijk e_k with the VQ-VAE
  codebook vectors e_k (eq. 2; :func:`expected_latents`);
* the decoder D turns that continuous latent map into a martensite probability image
  (sigmoid of its logits; :func:`expected_structure`);
* Δ = D(E[θ | h + δh, M_r]) − D(E[θ | h, M_r]) (eq. 3) for a small step δh of the condition:
  where the structure would change if it were asked to break δh later. The paper steps by
  0.01 on its strain scale; the notebooks carry that step onto the normalized condition with
  the same mapping as the targets (:func:`sensitivity_maps` takes the normalized step).

Δ is signed (positive: more martensite wanted at a higher fracture strain); its magnitude |Δ|
is what the paper shows and what is compared with the void maps
(:mod:`lib.explain.map_comparison`). Everything runs in batches under ``torch.no_grad`` on the
models' device.
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from lib.models.pixelcnn import GatedPixelCNN, check_codes, check_condition
from lib.models.vqvae import VQVAE, check_images

__all__ = ["site_probabilities", "expected_latents", "expected_logits", "expected_structure", "sensitivity_maps",
           "reinitialized_copy"]


def _check_pair(pixelcnn: GatedPixelCNN, vqvae: VQVAE) -> None:
    if not isinstance(pixelcnn, GatedPixelCNN) or not isinstance(vqvae, VQVAE):
        raise ValueError("need a GatedPixelCNN and a VQVAE")
    pc, vc = pixelcnn.config, vqvae.config
    if pc.n_codes != vc.n_codes or pc.code_size != vc.code_size:
        raise ValueError(f"the PixelCNN models {pc.n_codes} codes on {pc.code_size}² sites but the "
                         f"VQ-VAE has {vc.n_codes} codes on {vc.code_size}²: not a pair")
    if pc.n_cond != 1:
        raise ValueError(f"the sensitivity map needs a PixelCNN with one condition (the fracture "
                         f"strain), this one has {pc.n_cond}")


@torch.no_grad()
def site_probabilities(pixelcnn: GatedPixelCNN, codes: Any, cond: Any) -> torch.Tensor:
    """Teacher-forced p(c_ij = k | reference codes before (i, j), h): ``(B, K, s, s)`` (the
    model's dtype).

    ``codes (B, s, s)`` integer code maps of the references, ``cond (B, 1)`` (or ``(1,)`` for
    all) normalized conditions. One pass: the PixelCNN's masks make the logits at (i, j)
    depend only on the codes before (i, j), so this equals evaluating it site by site.
    """
    c = check_codes(codes, pixelcnn.config.n_codes, pixelcnn.config.code_size)
    h = check_condition(cond, pixelcnn.config.n_cond, c.shape[0])
    was = pixelcnn.training
    pixelcnn.eval()
    try:
        return torch.softmax(pixelcnn(c, h), dim=1)
    finally:
        pixelcnn.train(was)


def expected_latents(pixelcnn: GatedPixelCNN, vqvae: VQVAE, codes: Any, cond: Any) -> torch.Tensor:
    """E[θ | h, M_r] per site (eq. 2): ``(B, D, s, s)``, the probability-weighted codebook vectors."""
    _check_pair(pixelcnn, vqvae)
    p = site_probabilities(pixelcnn, codes, cond)
    codebook = vqvae.quantizer.codebook.to(p.device, p.dtype)  # (K, D)
    return torch.einsum("bkij,kd->bdij", p, codebook)


@torch.no_grad()
def expected_logits(pixelcnn: GatedPixelCNN, vqvae: VQVAE, codes: Any, cond: Any) -> torch.Tensor:
    """The decoder's martensite logits of E[θ | h, M_r]: ``(B, N, N)`` (the VQ-VAE's dtype)."""
    cb = vqvae.quantizer.codebook
    z = expected_latents(pixelcnn, vqvae, codes, cond).to(cb.device, cb.dtype)
    was = vqvae.training
    vqvae.eval()
    try:
        return vqvae.decode_latent(z)[:, 0]
    finally:
        vqvae.train(was)


def expected_structure(pixelcnn: GatedPixelCNN, vqvae: VQVAE, codes: Any, cond: Any) -> torch.Tensor:
    """D(E[θ | h, M_r]): martensite probabilities ``(B, N, N)`` in [0, 1]."""
    return torch.sigmoid(expected_logits(pixelcnn, vqvae, codes, cond))


def sensitivity_maps(pixelcnn: GatedPixelCNN, vqvae: VQVAE, images: Any, cond: Any,
                     step: float, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Δ maps of reference ``images (n, N, N)`` (binary, 1 = martensite), eq. 3.

    ``cond (n,)`` or ``(n, 1)``: each reference's normalized condition h (its own fracture
    strain); ``step``: δh on the normalized scale (the paper's 0.01 on its strain scale
    divided by the condition's range; 0 gives Δ = 0 exactly). Returns ``delta (n, N, N)`` float32, signed
    D(E[θ | h + δh]) − D(E[θ | h]) in martensite probability, ``expected (n, N, N)``
    D(E[θ | h]) and ``codes (n, s, s)`` the references' code maps.
    """
    _check_pair(pixelcnn, vqvae)
    x = check_images(images, vqvae.config.image_size)
    h = np.asarray(cond, dtype=np.float64).reshape(-1)
    if h.size != x.shape[0]:
        raise ValueError(f"need one condition per reference: {x.shape[0]} images, {h.size} conditions")
    if not np.all(np.isfinite(h)):
        raise ValueError("conditions must be finite")
    if isinstance(step, bool) or not (isinstance(step, (int, float, np.floating)) and np.isfinite(step)):
        raise ValueError(f"step must be a finite number, got {step!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    codes = vqvae.encode_batched(x, batch_size)
    pixelcnn, vqvae = copy.deepcopy(pixelcnn).double(), copy.deepcopy(vqvae).double()
    delta, expected = [], []
    for a in range(0, len(codes), batch_size):
        c = torch.from_numpy(codes[a:a + batch_size])
        h0 = torch.from_numpy(h[a:a + batch_size, None])
        base = expected_structure(pixelcnn, vqvae, c, h0)
        moved = expected_structure(pixelcnn, vqvae, c, h0 + float(step))
        delta.append((moved - base).cpu().numpy())
        expected.append(base.cpu().numpy())
    return {"delta": np.concatenate(delta).astype(np.float32),
            "expected": np.concatenate(expected).astype(np.float32), "codes": codes}


def reinitialized_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` with every parameterized layer re-initialized (PyTorch's own
    initialization, seeded): the sanity check of Adebayo et al. (2018) for a generative model
    (a Δ map that survives it does not depend on what the PixelCNN learned)."""
    clone = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for module in clone.modules():
            if module is not clone and hasattr(module, "reset_parameters"):
                module.reset_parameters()
    clone.eval()
    return clone
