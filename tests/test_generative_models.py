"""Part A's generative half (SPEC A3-A5): periodic VQ-VAE, conditional gated PixelCNN, training,
microstructure descriptors and the data sets.

Every model here is tiny (a few hundred to a few thousand weights) so the file runs in seconds on
two busy CPU cores; the properties tested (causality, no blind spot, fast = naive sampling,
shift equivariance, exact reload) do not depend on the size.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lib.generation import (RECTANGLE_WINDOW, ConditionScale, GenerativeModels, dataset_members,
                            labelled_pool, slider_view)
from lib.microstructures.dual_phase import (DUAL_PHASE_CATEGORIES, LAMINATE_NORMALS,
                                            generate_laminated)
from lib.microstructures.statistics import (ks_distance, laminarity, laminarity_along,
                                            local_fraction_heterogeneity, martensite_fraction,
                                            two_point_correlation)
from lib.models.generative_training import (GenerativeRecipe, _code_batch, encode_mirrors,
                                            load_state, state_arrays, train_pixelcnn)
from lib.models.pixelcnn import (CONDITION_RANGE, GatedPixelCNN, PixelCNNConfig, check_codes,
                                 check_condition)
from lib.models.vqvae import (VQVAE, VQVAEConfig, VectorQuantizerEMA, check_images, codebook_usage,
                              decode_each_code)

torch.set_num_threads(1)  # tiny ops: one thread is many times faster on busy cores

TINY_VQ = VQVAEConfig(channels=(4, 8, 8), code_dim=8, n_codes=16, n_res=1)  # 128 px -> 16x16
SMALL_VQ = VQVAEConfig(image_size=32, n_down=2, channels=(4, 8), code_dim=8, n_codes=16)  # 8x8


def _pixelcnn(seed: int = 0, **kw) -> GatedPixelCNN:
    cfg = dict(n_codes=8, code_size=6, width=8, n_layers=3, n_cond=1, cond_hidden=8)
    cfg.update(kw)
    torch.manual_seed(seed)
    return GatedPixelCNN(PixelCNNConfig(**cfg)).eval()


def _vqvae(config: VQVAEConfig = TINY_VQ, seed: int = 0, images: np.ndarray | None = None) -> VQVAE:
    """A random VQ-VAE whose codebook was initialized from encoder outputs (one training-mode
    forward), so that random images use many codes; returned in eval mode."""
    torch.manual_seed(seed)
    model = VQVAE(config)
    if images is not None:
        model.train()
        with torch.no_grad():
            model(check_images(images))
    return model.eval()


def _binary(n: int, size: int, p: float = 0.4, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, size, size)) < p).astype(np.uint8)


def _recipe(vqvae: VQVAEConfig, epochs: int, n_train: int, **kw) -> GenerativeRecipe:
    """A recipe of ``epochs`` passes over ``n_train`` structures, whether the recipe counts
    PixelCNN training in epochs (``pixelcnn_epochs``) or optimizer steps (``pixelcnn_steps``)."""
    fields = {f.name for f in dataclasses.fields(GenerativeRecipe)}
    batch = kw.setdefault("pixelcnn_batch", 16)
    if "pixelcnn_steps" in fields:
        kw["pixelcnn_steps"] = epochs * -(-n_train // batch)
        if "pixelcnn_epochs" in fields:
            kw["pixelcnn_epochs"] = 0.0
    else:
        kw["pixelcnn_epochs"] = epochs
    return GenerativeRecipe(vqvae=vqvae, **kw)


def _random_codes(n: int, k: int, s: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, k, (n, s, s), generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------
# PixelCNN: causality, no blind spot, the condition, sampling
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("site", [(0, 0), (0, 3), (2, 0), (2, 4), (3, 5), (5, 2), (5, 5)])
def test_pixelcnn_is_causal(site: tuple[int, int]) -> None:
    """Changing the code at (i, j) leaves every logit at or before (i, j) in raster order
    bit-identical (later codes take no part in computing them) and changes a later one's."""
    net = _pixelcnn(n_layers=3)
    i, j = site
    codes = _random_codes(3, 8, 6, seed=1)
    changed = codes.clone()
    changed[:, i, j] = (changed[:, i, j] + 1 + torch.arange(3)) % 8
    cond = torch.tensor([[0.2], [0.5], [0.9]])
    with torch.no_grad():
        a, b = net(codes, cond), net(changed, cond)
    raster = torch.arange(36).view(6, 6)
    before = raster <= raster[i, j]
    assert torch.equal(a[:, :, before], b[:, :, before])
    if (i, j) != (5, 5):  # the site to the right (or below, at a row's end) does see (i, j)
        ni, nj = (i, j + 1) if j < 5 else (i + 1, j)
        assert float((a[:, :, ni, nj] - b[:, :, ni, nj]).abs().max()) > 1e-6


def test_pixelcnn_has_no_blind_spot() -> None:
    """With 5 gated layers of kernel 3 the receptive field covers the whole 6x6 map: the logits
    at every site depend on the code embedding at *every* earlier site (gradient > 0) and on no
    site at or after it (gradient exactly 0)."""
    net = _pixelcnn(n_layers=5, seed=3)
    seen = {}

    def keep(_m, _inp, out):
        out.retain_grad()
        seen["emb"] = out

    hook = net.embedding.register_forward_hook(keep)
    logits = net(_random_codes(4, 8, 6, seed=2), torch.tensor([[0.1], [0.4], [0.6], [1.0]]))
    hook.remove()
    emb = seen["emb"]  # (B, n, n, width)
    raster = torch.arange(36).view(6, 6)
    for i in range(6):
        for j in range(6):
            (g,) = torch.autograd.grad(logits[:, :, i, j].sum(), emb, retain_graph=True)
            dep = g.abs().sum(dim=(0, 3))  # (6, 6)
            earlier = raster < raster[i, j]
            assert torch.isfinite(dep).all()
            assert bool((dep[earlier] > 0).all()), f"blind spot at {(i, j)}: {dep}"
            assert bool((dep[~earlier] == 0).all()), f"site {(i, j)} sees the future: {dep}"


def test_pixelcnn_perturbing_any_earlier_code_changes_logits() -> None:
    """The same, by perturbation: every earlier code changes the logits at the last site."""
    net = _pixelcnn(n_layers=5, seed=4)
    codes = _random_codes(2, 8, 6, seed=5)
    cond = torch.tensor([[0.3], [0.7]])
    with torch.no_grad():
        ref = net(codes, cond)[:, :, 5, 5]
        for i in range(6):
            for j in range(6):
                if (i, j) == (5, 5):
                    continue
                c = codes.clone()
                c[:, i, j] = (c[:, i, j] + 3) % 8
                assert float((net(c, cond)[:, :, 5, 5] - ref).abs().max()) > 1e-7, (i, j)


def test_condition_changes_logits() -> None:
    net = _pixelcnn()
    codes = _random_codes(2, 8, 6, seed=6)
    with torch.no_grad():
        a = net(codes, torch.tensor([[0.0], [0.0]]))
        b = net(codes, torch.tensor([[1.0], [1.0]]))
        a2 = net(codes, torch.tensor([0.0]).expand(2, 1))
    assert float((a - b).abs().max()) > 1e-4
    assert torch.equal(a, a2)
    # also at the very first site, which sees no code at all
    assert float((a[:, :, 0, 0] - b[:, :, 0, 0]).abs().max()) > 1e-4


def test_unconditional_pixelcnn_takes_no_condition() -> None:
    net = _pixelcnn(n_cond=0)
    codes = _random_codes(2, 8, 6)
    with torch.no_grad():
        assert net(codes).shape == (2, 8, 6, 6)
    with pytest.raises(ValueError, match="unconditional"):
        net(codes, torch.zeros(2, 1))


def test_nll_is_cross_entropy_and_near_log_k_at_init() -> None:
    net = _pixelcnn()
    codes = _random_codes(4, 8, 6, seed=7)
    cond = torch.full((4, 1), 0.5)
    with torch.no_grad():
        nll = float(net.nll(codes, cond))
        logits = net(codes, cond)
    expected = -torch.log_softmax(logits, 1).gather(1, codes[:, None]).mean()
    assert nll == pytest.approx(float(expected), rel=1e-6)
    assert nll == pytest.approx(np.log(8), rel=0.2)  # a fresh net is close to uniform


def test_sampling_shape_dtype_and_seeds() -> None:
    net = _pixelcnn(seed=8)
    a = net.sample(5, [0.4], seed=11)
    b = net.sample(5, [0.4], seed=11)
    c = net.sample(5, [0.4], seed=12)
    assert a.shape == (5, 6, 6) and a.dtype == torch.int64
    assert int(a.min()) >= 0 and int(a.max()) < 8
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert len(torch.unique(a)) >= 4  # a near-uniform random net draws many codes


def test_fast_sampling_equals_naive_sampling() -> None:
    """The cached sampler gives exactly the codes of one full pass per site, for a per-row
    condition, several seeds, a temperature, and a batch split into chunks."""
    net = _pixelcnn(n_codes=8, code_size=5, width=8, n_layers=3, seed=9)
    cond = np.linspace(0.0, 1.0, 6, dtype=np.float32)[:, None]
    for seed in (0, 1):
        fast = net.sample(6, cond, seed=seed)
        naive = net.sample_naive(6, cond, seed=seed)
        assert torch.equal(fast, naive)
    assert torch.equal(net.sample(6, cond, seed=2, temperature=0.7, batch_size=4),
                       net.sample_naive(6, cond, seed=2, temperature=0.7))
    # two conditions: the fs+ts model
    net2 = _pixelcnn(n_codes=6, code_size=4, width=8, n_layers=2, n_cond=2, seed=10)
    cond2 = np.array([[0.1, 0.9], [0.5, 0.5], [1.0, 0.0]], dtype=np.float32)
    assert torch.equal(net2.sample(3, cond2, seed=5), net2.sample_naive(3, cond2, seed=5))
    net0 = _pixelcnn(n_cond=0, code_size=4, seed=11)
    assert torch.equal(net0.sample(3, None, seed=1), net0.sample_naive(3, None, seed=1))


@pytest.mark.parametrize("arch", [dict(kernel=5, n_layers=2), dict(n_layers=1)])
def test_fast_sampling_equals_naive_other_architectures(arch: dict) -> None:
    """The cache's padding follows the kernel (k // 2 rows above, columns each side) and the
    last layer feeds the head directly."""
    net = _pixelcnn(n_codes=5, code_size=5, width=6, seed=12, **arch)
    cond = np.array([[0.0], [0.5], [1.0]], dtype=np.float32)
    assert torch.equal(net.sample(3, cond, seed=3), net.sample_naive(3, cond, seed=3))


def test_sampling_restores_training_mode() -> None:
    net = _pixelcnn(code_size=3).train()
    net.sample(2, [0.5])
    assert net.training


# --------------------------------------------------------------------------------------------
# VQ-VAE
# --------------------------------------------------------------------------------------------
def test_straight_through_gradient_reaches_encoder() -> None:
    model = _vqvae(SMALL_VQ, seed=1, images=_binary(4, 32, seed=1))
    x = check_images(_binary(2, 32, seed=2))
    z_e = model.encode_latent(x)
    z_st, codes, commitment = model.quantizer(z_e)
    # in value the quantized latent is the codebook vector of its code
    torch.testing.assert_close(z_st, model.quantizer.codebook[codes].permute(0, 3, 1, 2),
                               atol=1e-6, rtol=0)
    assert float(commitment.detach()) == pytest.approx(
        float(((z_e - model.quantizer.lookup(codes)) ** 2).mean().detach()), rel=1e-5)
    loss = F.binary_cross_entropy_with_logits(model.decode_latent(z_st), x)
    g_st, g_e = torch.autograd.grad(loss, (z_st, z_e), retain_graph=True)
    assert torch.equal(g_st, g_e)  # the quantizer passes the gradient straight through
    loss.backward()
    for name, p in model.encoder.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert float(p.grad.abs().max()) > 0, name


def _quantizer_with(codebook: torch.Tensor, decay: float, threshold: float) -> VectorQuantizerEMA:
    q = VectorQuantizerEMA(codebook.shape[0], codebook.shape[1], decay, threshold)
    q.codebook.copy_(codebook)
    q.ema_sum.copy_(codebook)  # ema_count starts at 1
    q.initialized.fill_(True)
    return q.train()


def test_ema_codebook_moves_to_assigned_mean() -> None:
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    book = centres + 0.8  # every code starts 0.8 * sqrt(2) off its cluster
    flat = (centres.repeat_interleave(30, 0) + 0.3 * torch.randn(90, 2, generator=gen))
    z_e = flat.reshape(1, 9, 10, 2).permute(0, 3, 1, 2)  # (B, D, h, w) whose rows are flat
    q = _quantizer_with(book, decay=0.5, threshold=0.0)
    assigned = q.nearest(flat)
    assert torch.equal(torch.bincount(assigned, minlength=3), torch.tensor([30, 30, 30]))
    q(z_e)
    counts = torch.full((3,), 0.5) + 0.5 * 30
    sums = 0.5 * book + 0.5 * torch.stack([flat[assigned == k].sum(0) for k in range(3)])
    n, eps = counts.sum(), q.eps
    expected = sums / ((counts + eps) / (n + 3 * eps) * n)[:, None]
    torch.testing.assert_close(q.codebook, expected, atol=1e-5, rtol=0)
    means = torch.stack([flat[assigned == k].mean(0) for k in range(3)])
    before = (book - means).norm(dim=1)
    after = (q.codebook - means).norm(dim=1)
    assert bool((after < 0.1 * before).all())  # 30 vectors against a count of 1: almost there
    # eval mode leaves the codebook alone
    frozen = q.codebook.clone()
    q.eval()(z_e)
    assert torch.equal(q.codebook, frozen)


def test_dead_codes_restart_at_encoder_outputs() -> None:
    gen = torch.Generator().manual_seed(1)
    flat = torch.randn(64, 3, generator=gen)
    z_e = flat.reshape(1, 8, 8, 3).permute(0, 3, 1, 2)
    book = torch.cat([torch.zeros(2, 3), torch.full((3, 3), 100.0)])  # codes 2-4 never assigned
    q = _quantizer_with(book, decay=0.99, threshold=1.0)
    assert set(q.nearest(flat).tolist()) <= {0}  # ties go to the first code
    _, codes, _ = q(z_e)

    def is_input_row(v: torch.Tensor) -> bool:
        return bool((flat - v).abs().max(dim=1).values.eq(0).any())

    for k in range(2, 5):  # dead: EMA count 0.99 < 1, restarted at an encoder output
        assert is_input_row(q.codebook[k]), k
        assert float(q.ema_count[k]) == 1.0
    assert is_input_row(q.codebook[1])  # code 1 was never chosen either (tie with code 0)
    assert not is_input_row(q.codebook[0])  # the assigned code is an EMA mean, kept
    assert float(q.ema_count[0]) == pytest.approx(0.99 + 0.01 * 64)
    assert len(torch.unique(codes)) >= 3  # after the restart the batch uses the new codes
    # a threshold above every count restarts the whole codebook at encoder outputs
    q_all = _quantizer_with(book, decay=0.99, threshold=1e9)
    q_all(z_e)
    assert all(is_input_row(v) for v in q_all.codebook)


def test_first_training_forward_initializes_codebook_from_data() -> None:
    """The first training-mode forward starts the codebook at random rows of the batch, then
    takes one EMA step towards the means of the vectors each start row attracts."""
    flat = torch.randn(50, 4, generator=torch.Generator().manual_seed(2))
    q = VectorQuantizerEMA(6, 4, decay=0.9, dead_code_threshold=0.0).train()
    torch.manual_seed(0)
    pick = torch.randint(0, 50, (6,))  # what the quantizer draws after the same seed
    start = flat[pick]
    d = torch.cdist(flat, start)
    assigned = d.argmin(1)
    n_k = torch.bincount(assigned, minlength=6).float()
    sums = torch.stack([flat[assigned == k].sum(0) for k in range(6)])
    count = 0.9 + 0.1 * n_k
    n = count.sum()
    expected = (0.9 * start + 0.1 * sums) / ((count + q.eps) / (n + 6 * q.eps) * n)[:, None]
    torch.manual_seed(0)
    q(flat.reshape(1, 5, 10, 4).permute(0, 3, 1, 2))
    assert bool(q.initialized)
    torch.testing.assert_close(q.ema_count, count, atol=1e-6, rtol=0)
    torch.testing.assert_close(q.codebook, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shift", [(1, 0), (0, 3), (2, -5), (15, 7)])
def test_vqvae_encoder_is_shift_equivariant(shift: tuple[int, int]) -> None:
    imgs = _binary(2, 128, p=0.35, seed=3)
    model = _vqvae(TINY_VQ, seed=2, images=imgs)
    a, b = shift
    with torch.no_grad():
        codes = model.encode(imgs)
        rolled = model.encode(np.roll(imgs, (8 * a, 8 * b), axis=(1, 2)))
    assert len(torch.unique(codes)) >= 4  # a non-trivial code map
    assert torch.equal(rolled, torch.roll(codes, (a, b), dims=(1, 2)))


def test_vqvae_decoder_is_periodic() -> None:
    model = _vqvae(TINY_VQ, seed=3)
    codes = _random_codes(2, 16, 16, seed=4)
    with torch.no_grad():
        out = model.decode_codes(codes)
        out_rolled = model.decode_codes(torch.roll(codes, (1, -2), dims=(1, 2)))
    assert out.shape == (2, 1, 128, 128)
    torch.testing.assert_close(out_rolled, torch.roll(out, (8, -16), dims=(2, 3)),
                               atol=1e-5, rtol=0)
    assert float(out.std()) > 1e-4  # not a constant image


def test_vqvae_shapes_and_reconstruct() -> None:
    imgs = _binary(3, 32, seed=5)
    model = _vqvae(SMALL_VQ, seed=4, images=imgs)
    codes = model.encode(imgs)
    assert codes.shape == (3, 8, 8) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < 16
    rec = model.reconstruct(imgs, batch_size=2)
    assert rec.shape == (3, 32, 32) and rec.dtype == np.uint8 and set(np.unique(rec)) <= {0, 1}
    with torch.no_grad():
        expected = (model.decode_codes(codes)[:, 0] > 0).numpy()
    assert np.array_equal(rec, expected)


def test_decode_each_code_and_codebook_usage() -> None:
    model = _vqvae(SMALL_VQ, seed=7)
    prob = decode_each_code(model, [3, 0, 15])
    assert prob.shape == (3, 32, 32)
    assert prob.min() >= 0.0 and prob.max() <= 1.0
    with torch.no_grad():
        expected = torch.sigmoid(model.decode_codes(torch.full((1, 8, 8), 15)))[0, 0].numpy()
    np.testing.assert_allclose(prob[2], expected, atol=1e-6)
    # a map of one code is periodic with the 4 px code pitch of this 2-stage model
    np.testing.assert_allclose(prob[0], np.roll(prob[0], (4, 12), axis=(0, 1)), atol=1e-5)
    assert decode_each_code(model, [1], crop=8).shape == (1, 8, 8)
    usage = codebook_usage(np.arange(16).reshape(1, 4, 4), 32)
    assert usage["perplexity"] == pytest.approx(16.0) and usage["dead_fraction"] == 0.5
    one = codebook_usage(np.full((2, 4, 4), 7), 8)
    assert one["perplexity"] == pytest.approx(1.0) and one["counts"][7] == 32
    assert one["dead_fraction"] == pytest.approx(7 / 8)


def test_encode_mirrors_and_code_batch() -> None:
    imgs = _binary(3, 32, seed=6)
    model = _vqvae(SMALL_VQ, seed=5, images=imgs)
    mir = encode_mirrors(model, imgs, batch_size=2)
    assert mir.shape == (3, 4, 8, 8) and mir.dtype == np.int16
    for k, flip in enumerate(((), (1,), (2,), (1, 2))):
        expected = model.encode(np.flip(imgs, flip).copy() if flip else imgs).numpy()
        assert np.array_equal(mir[:, k], expected), k
    codes = torch.as_tensor(mir.astype(np.int64))
    idx = torch.tensor([2, 0, 1, 2])
    assert torch.equal(_code_batch(codes, idx, torch.Generator(), augment=False), codes[idx, 0])
    batch = _code_batch(codes, idx, torch.Generator().manual_seed(0), augment=True)
    assert batch.shape == (4, 8, 8)
    for b, i in enumerate(idx.tolist()):  # each is a roll of one of its four mirror images
        assert any(torch.equal(batch[b], torch.roll(codes[i, v], (r, c), dims=(0, 1)))
                   for v in range(4) for r in range(8) for c in range(8)), b


# --------------------------------------------------------------------------------------------
# reload, bad input
# --------------------------------------------------------------------------------------------
def test_state_arrays_reload_identical_outputs() -> None:
    imgs = _binary(2, 32, seed=7)
    vq = _vqvae(SMALL_VQ, seed=6, images=imgs)
    vq2 = _vqvae(SMALL_VQ, seed=99)
    load_state(vq2, state_arrays(vq))
    vq2.eval()
    codes = vq.encode(imgs)
    assert torch.equal(vq2.encode(imgs), codes)
    with torch.no_grad():
        assert torch.equal(vq2.decode_codes(codes), vq.decode_codes(codes))
    assert bool(vq2.quantizer.initialized)

    net = _pixelcnn(seed=7)
    net2 = _pixelcnn(seed=8)
    arrays = state_arrays(net, prefix="p.")
    assert all(isinstance(v, np.ndarray) for v in arrays.values())
    load_state(net2, {**arrays, "other": np.zeros(1)}, prefix="p.")
    c, h = _random_codes(3, 8, 6, seed=9), torch.tensor([[0.1], [0.5], [0.8]])
    with torch.no_grad():
        assert torch.equal(net2(c, h), net(c, h))
    assert torch.equal(net2.sample(2, [0.3], seed=4), net.sample(2, [0.3], seed=4))


def test_check_images_rejects_bad_input() -> None:
    good = _binary(2, 32)
    assert check_images(good).shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="shape"):
        check_images(np.zeros((2, 32, 16)))
    with pytest.raises(ValueError, match="shape"):
        check_images(np.zeros((32, 32)))
    with pytest.raises(ValueError, match="shape"):
        check_images(np.zeros((2, 3, 32, 32)))
    with pytest.raises(ValueError, match="binary"):
        check_images(good * 0.5)
    with pytest.raises(ValueError, match="binary"):
        check_images(good * 2)
    nan = good.astype(float)
    nan[0, 3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        check_images(nan)
    model = VQVAE(SMALL_VQ)
    with pytest.raises(ValueError, match="32x32"):
        model.encode(_binary(1, 64))
    with pytest.raises(ValueError, match="NaN"):
        model.encode(nan)
    with pytest.raises(ValueError, match="binary"):
        model.encode(good * 0.5)
    with pytest.raises(ValueError, match="shape"):
        model.decode_codes(torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        model.decode_codes(torch.full((1, 8, 8), 16))


def test_check_codes_rejects_bad_input() -> None:
    assert check_codes(np.zeros((2, 4, 4), np.int16), 8, 4).dtype == torch.int64
    with pytest.raises(ValueError, match="shape"):
        check_codes(np.zeros((2, 4, 5), np.int64), 8, 4)
    with pytest.raises(ValueError, match="shape"):
        check_codes(np.zeros((4, 4), np.int64), 8, 4)
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        check_codes(np.full((1, 4, 4), 8), 8, 4)
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        check_codes(np.full((1, 4, 4), -1), 8, 4)
    with pytest.raises(ValueError, match="integers"):
        check_codes(np.zeros((1, 4, 4), np.float32), 8, 4)
    with pytest.raises(ValueError, match="integers"):
        check_codes(np.zeros((1, 4, 4), bool), 8, 4)
    net = _pixelcnn()
    with pytest.raises(ValueError, match="integers"):
        net(torch.zeros(1, 6, 6), torch.zeros(1, 1))


def test_sampling_rejects_bad_condition() -> None:
    net = _pixelcnn(code_size=3)
    with pytest.raises(ValueError, match="NaN"):
        net.sample(2, [float("nan")])
    with pytest.raises(ValueError, match="1 value"):
        net.sample(2, [0.1, 0.2])
    with pytest.raises(ValueError, match="shape"):
        net.sample(2, np.zeros((3, 1), np.float32))
    with pytest.raises(ValueError, match="normalized target"):
        net.sample(2, [100.0])
    with pytest.raises(ValueError, match="normalized target"):
        net.sample_naive(2, [100.0])
    with pytest.raises(ValueError, match="needs a condition"):
        net.sample(2, None)
    with pytest.raises(ValueError, match="positive integer"):
        net.sample(0, [0.5])
    with pytest.raises(ValueError, match="temperature"):
        net.sample(1, [0.5], temperature=0.0)
    lo, hi = CONDITION_RANGE
    assert check_condition([lo], 1, 2, CONDITION_RANGE).shape == (2, 1)
    assert float(check_condition(hi, 1, None, CONDITION_RANGE)) == hi


# --------------------------------------------------------------------------------------------
# a short training really learns the condition
# --------------------------------------------------------------------------------------------
def test_short_training_learns_the_condition() -> None:
    """Condition 0 -> every code 1, condition 1 -> every code 2 (4x4 maps, K = 4). The
    unconditional model cannot do better than log(2)/16 nats per code (the first code is a coin
    flip, the rest copies it); the conditional one must approach 0 and sample the right code."""
    recipe = _recipe(VQVAEConfig(image_size=32, n_down=3, channels=(4, 4, 4), code_dim=4,
                                 n_codes=4), epochs=8, n_train=48, pixelcnn_width=16,
                     pixelcnn_layers=2, pixelcnn_batch=16, pixelcnn_lr=1e-2, seed=3)
    assert (recipe.pixelcnn_config(1).n_codes, recipe.pixelcnn_config(1).code_size) == (4, 4)
    n = 64
    label = np.arange(n) % 2
    codes = np.broadcast_to((1 + label)[:, None, None, None], (n, 4, 4, 4)).astype(np.int16)
    cond = label[:, None].astype(np.float32)
    train, val = np.arange(48), np.arange(48, 64)  # val: 8 of each
    model, hist = train_pixelcnn(codes, cond, train, val, recipe, device="cpu", progress=False)
    uncond, hist_u = train_pixelcnn(codes, None, train, val, recipe, device="cpu", progress=False)
    assert model.config.n_cond == 1 and uncond.config.n_cond == 0
    best, best_u = min(hist["val_nll"]), min(hist_u["val_nll"])
    assert best_u >= np.log(2) / 16 - 1e-3  # the entropy bound on balanced data
    assert best < 0.5 * best_u and best < 0.02, (hist["val_nll"], hist_u["val_nll"])
    assert hist["train_nll"][-1] < hist["train_nll"][0]
    for c, code in ((0.0, 1), (1.0, 2)):
        s = model.sample(10, [c], seed=0)
        assert float((s == code).float().mean()) >= 0.9, (c, s)


def test_train_pixelcnn_rejects_mismatched_conditions() -> None:
    recipe = _recipe(VQVAEConfig(image_size=32, channels=(4, 4, 4), code_dim=4, n_codes=4),
                     epochs=1, n_train=2)
    codes = np.zeros((4, 4, 4, 4), np.int16)
    with pytest.raises(ValueError, match="conditions"):
        train_pixelcnn(codes, np.zeros((3, 1)), [0, 1], [2], recipe, device="cpu", progress=False)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        train_pixelcnn(codes + 4, None, [0, 1], [2], recipe, device="cpu", progress=False)


# --------------------------------------------------------------------------------------------
# descriptors
# --------------------------------------------------------------------------------------------
def test_two_point_correlation_limits() -> None:
    img = (np.random.default_rng(0).random((128, 128)) < 0.3).astype(np.uint8)
    f = float(martensite_fraction(img)[0])
    assert f == pytest.approx(0.3, abs=0.01)
    s2 = two_point_correlation(img)[0]
    assert s2.shape == (65,)
    assert s2[0] == pytest.approx(f, abs=1e-12)
    np.testing.assert_allclose(s2[1:], f * f, atol=0.02)  # no correlation beyond one pixel
    assert abs(s2[10:].mean() - f * f) < 0.003
    # a batch: one row per image, each S2(0) its own fraction; single phases give f and f^2
    batch = np.stack([img, np.ones_like(img), np.zeros_like(img)])
    s2b = two_point_correlation(batch, r_max=20)
    assert s2b.shape == (3, 21)
    np.testing.assert_allclose(s2b[0], s2[:21], atol=1e-12)
    np.testing.assert_allclose(s2b[1], 1.0, atol=1e-12)
    np.testing.assert_allclose(s2b[2], 0.0, atol=1e-12)


@pytest.mark.parametrize("normal", LAMINATE_NORMALS)
def test_laminarity_of_ideal_laminates_is_one(normal: tuple[int, int]) -> None:
    """The generator's layers are constant on the lattice lines (a x + b y) mod N that
    laminarity_along groups by, so equal layers give exactly 1 for every normal."""
    img, params = generate_laminated(np.random.default_rng(2), 128, martensite_fraction=0.3,
                                     n_layers=2, normal=normal, thickness_variation=0.0)
    assert params["normal_xy"] == list(normal)
    assert martensite_fraction(img)[0] == pytest.approx(0.3, abs=0.02)
    assert laminarity_along(img, normal)[0] == pytest.approx(1.0, abs=1e-9)
    noise = (np.random.default_rng(3).random((128, 128)) < 0.3).astype(np.uint8)
    assert laminarity_along(noise, normal)[0] < 0.05
    other = (normal[1], -normal[0])  # lines across the layers: no laminate that way
    assert laminarity_along(img, other)[0] < 0.2


def test_laminarity_x_y_and_heterogeneity() -> None:
    noise = (np.random.default_rng(5).random((2, 128, 128)) < 0.4).astype(np.uint8)
    # normal (0, 1): the lines are the rows, i.e. laminarity along x; (1, 0) the columns
    np.testing.assert_allclose(laminarity_along(noise, (0, 1)), laminarity(noise, "x"),
                               atol=1e-12)
    np.testing.assert_allclose(laminarity_along(noise, (1, 0)), laminarity(noise, "y"),
                               atol=1e-12)
    lam, _ = generate_laminated(np.random.default_rng(6), 128, martensite_fraction=0.3,
                                n_layers=2, normal=(0, 1), thickness_variation=0.0)
    assert laminarity(lam, "x")[0] == pytest.approx(1.0, abs=1e-12)
    assert laminarity(lam, "y")[0] == pytest.approx(0.0, abs=1e-12)
    assert laminarity(np.ones((8, 8)), "x")[0] == 0.0  # single phase
    # uncorrelated pixels: the 16x16 window mean has the spread of one pixel / 16
    h_noise = local_fraction_heterogeneity(noise, window=16)
    np.testing.assert_allclose(h_noise, 1 / 16, rtol=0.25)
    assert local_fraction_heterogeneity(lam, window=16)[0] > 0.5  # two thick bands
    assert local_fraction_heterogeneity(noise[:1], window=1)[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="window"):
        local_fraction_heterogeneity(noise, window=0)


def test_ks_distance() -> None:
    x = np.random.default_rng(4).normal(size=50)
    assert ks_distance(x, x) == 0.0
    assert ks_distance(x, x[::-1].copy()) == 0.0
    assert ks_distance([0.0, 1.0, 2.0], [5.0, 6.0]) == 1.0
    assert ks_distance([0.0, 1.0], [1.0, 2.0]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="non-empty"):
        ks_distance([], [1.0])


# --------------------------------------------------------------------------------------------
# data sets, the condition scale, the slider
# --------------------------------------------------------------------------------------------
def test_condition_scale_round_trip() -> None:
    rng = np.random.default_rng(5)
    strain, strength = rng.uniform(0.05, 0.9, 20), rng.uniform(500, 1500, 20)
    scale = ConditionScale.fit(strain, strength)
    c = scale.normalize(strain, strength)
    assert c.shape == (20, 2) and c.dtype == np.float32
    np.testing.assert_allclose(c.min(0), 0.0, atol=1e-7)
    np.testing.assert_allclose(c.max(0), 1.0, atol=1e-6)
    back = scale.lo + c.astype(float) * (scale.hi - scale.lo)
    np.testing.assert_allclose(back[:, 0], strain, rtol=1e-6)
    np.testing.assert_allclose(back[:, 1], strength, rtol=1e-6)
    assert scale.normalize(strain).shape == (20, 1)
    np.testing.assert_allclose(scale.normalize(strain)[:, 0], c[:, 0])
    np.testing.assert_allclose(scale.normalize(strain[:3], 1000.0)[:, 1],
                               (1000.0 - scale.lo[1]) / (scale.hi[1] - scale.lo[1]), rtol=1e-6)
    with pytest.raises(ValueError, match="finite"):
        ConditionScale.fit([0.1, np.nan], [500.0, 600.0])


def _fake_pool():
    cat = {name: DUAL_PHASE_CATEGORIES.index(name) for name in DUAL_PHASE_CATEGORIES}
    rng = np.random.default_rng(6)
    db_cat = ["random", "random", "ellipse", "ellipse", "rectangle", "rectangle", "rectangle",
              "laminated", "random", "ellipse"]
    db_frac = [0.3, 0.5, 0.25, 0.4, 0.2, 0.31, 0.3, 0.25, 0.22, 0.6]
    db_strain = [0.1, 0.2, 0.3, np.nan, 0.5, 0.6, 0.7, 0.8, 0.9, 0.4]  # ellipse #3: failed FE
    extra_frac = [0.21, 0.29, 0.25, 0.3]
    extra_strain = [0.15, np.nan, 0.35, 0.45]  # extra #1: failed FE
    db = {"images": _binary(10, 8, seed=7), "category": np.array([cat[c] for c in db_cat]),
          "martensite_fraction": np.array(db_frac)}
    extra = {"images": _binary(4, 8, seed=8), "category": np.full(4, cat["rectangle"]),
             "martensite_fraction": np.array(extra_frac)}
    labels = [{"load_drop_strain": np.array(db_strain), "tensile_strength": rng.uniform(600, 900, 10)},
              {"load_drop_strain": np.array(extra_strain), "tensile_strength": rng.uniform(600, 900, 4)}]
    return db, extra, labels


def test_labelled_pool_and_dataset_members() -> None:
    db, extra, labels = _fake_pool()
    pool = labelled_pool([db, extra], labels, seed=1)
    assert len(pool.images) == 14 and pool.images.dtype == np.uint8
    assert pool.source.tolist() == [0] * 10 + [1] * 4
    np.testing.assert_array_equal(pool.fraction, np.concatenate([db["martensite_fraction"],
                                                                 extra["martensite_fraction"]]))
    invalid = [3, 11]
    assert np.flatnonzero(~pool.valid).tolist() == invalid
    assert (pool.part[invalid] == -1).all() and set(pool.part[pool.valid]) <= {0, 1, 2}
    assert (pool.part[pool.valid] == 0).sum() >= 5  # mostly training, 70/10/20
    members = {name: dataset_members(pool, name).tolist()
               for name in ("All", "Random", "Ellipse", "Rectangle")}
    assert members["All"] == [0, 1, 2, 4, 5, 6, 7, 8, 9]  # database only, no failed run
    assert members["Random"] == [0, 1, 8]
    assert members["Ellipse"] == [2, 9]
    # rectangles with 20-30 % martensite (window inclusive) from both sources; 0.31 out
    assert RECTANGLE_WINDOW == (0.2, 0.3)
    assert members["Rectangle"] == [4, 6, 10, 12, 13]
    all_members = dataset_members(pool, "All")
    parts = [pool.indices(all_members, p) for p in ("train", "val", "test")]
    assert sorted(np.concatenate(parts).tolist()) == members["All"]
    with pytest.raises(ValueError, match="unknown data set"):
        dataset_members(pool, "Laminate")
    with pytest.raises(ValueError, match="label"):
        labelled_pool([db, extra], labels[:1], seed=1)
    with pytest.raises(ValueError, match="labels"):
        labelled_pool([db], [labels[1]], seed=1)
    # the same seed draws the same split
    assert np.array_equal(labelled_pool([db, extra], labels, seed=1).part, pool.part)


def test_slider_view_and_generate() -> None:
    db, extra, labels = _fake_pool()
    pool = labelled_pool([db, extra], labels, seed=1)
    scale = ConditionScale(np.array([0.0, 500.0]), np.array([1.0, 1000.0]))
    vq_config = VQVAEConfig(image_size=16, n_down=2, channels=(4, 8), code_dim=8, n_codes=16)
    vq = _vqvae(vq_config, seed=9, images=_binary(2, 16, seed=9))
    nets = {("fs", "All"): _pixelcnn(n_codes=16, code_size=4, n_cond=1, seed=12),
            ("fsts", "All"): _pixelcnn(n_codes=16, code_size=4, n_cond=2, seed=13),
            ("uncond", "All"): _pixelcnn(n_codes=16, code_size=4, n_cond=0, seed=14)}
    with torch.no_grad():  # a condition that matters, as in a trained model
        for layer in nets[("fs", "All")].layers:
            layer.cond_h.weight.mul_(30.0)
        vq.quantizer.codebook.mul_(50.0)  # codes far apart: the random decoder tells them apart
    models = GenerativeModels("test", GenerativeRecipe(vqvae=vq_config), pool, scale, vq, None,
                              np.zeros((14, 4, 4, 4), np.int16), nets, {}, {})
    view = slider_view(models, 0.4, seed=3, n=3)
    assert view.shape == (16, 48) and view.dtype == np.uint8 and set(np.unique(view)) <= {0, 1}
    imgs = models.generate("fs", "All", 3, 0.4, seed=3)
    assert np.array_equal(view, np.concatenate(list(imgs), axis=1))
    codes = nets[("fs", "All")].sample(3, np.full((3, 1), 0.4, np.float32), seed=3)
    assert np.array_equal(imgs, models.decode(codes))
    assert np.array_equal(slider_view(models, 0.4, seed=3, n=3), view)  # seeded
    # moving the target slider changes the structures (same seed): codes and image
    codes_hi = nets[("fs", "All")].sample(3, np.full((3, 1), 1.0, np.float32), seed=3)
    assert not torch.equal(codes, codes_hi)
    assert not np.array_equal(slider_view(models, 1.0, seed=3, n=3), view)
    view2 = slider_view(models, 0.4, strength=700.0, seed=3, n=2)
    cond2 = scale.normalize([0.4], [700.0])
    np.testing.assert_allclose(cond2, [[0.4, 0.4]], rtol=1e-6)
    assert np.array_equal(view2, np.concatenate(list(models.decode(
        nets[("fsts", "All")].sample(2, np.repeat(cond2, 2, 0), seed=3))), axis=1))
    assert models.sample_codes("uncond", "All", 2, seed=1).shape == (2, 4, 4)
    with pytest.raises(ValueError, match="strength"):
        models.condition("fsts", 0.4)
    with pytest.raises(ValueError, match="no model"):
        models.sample_codes("fs", "Random", 1, 0.4)
    with pytest.raises(ValueError, match="target strain"):
        models.sample_codes("fs", "All", 1)
