"""Grad-RAM (SPEC B4): captum maps, normalization, binarization, critical region, sanity checks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lib.explain.gradram import (binarize, critical_region, gradram_maps, map_similarity,
                                 case_heatmaps, reference_activations, region_agreement,
                                 normalize_maps, randomized_copy, sanity_check, select_outliers,
                                 upsample_periodic)
from lib.models.regressor import build_regressor

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    """A small-output ResNet with a few BatchNorm statistics from real-looking inputs."""
    net = build_regressor(2, stem="standard", seed=0)
    net.train()
    with torch.no_grad():  # non-trivial running statistics
        net(torch.from_numpy(_images(8, seed=9)).float().unsqueeze(1))
    return net.eval()


def _images(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # blobby binary structures: a thresholded smoothed noise field
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.standard_normal((n, 128, 128)), sigma=(0, 4, 4), mode="wrap")
    return (field > np.quantile(field, 0.6, axis=(1, 2), keepdims=True)).astype(np.uint8)


def _layer4_output(model: torch.nn.Module, imgs: np.ndarray) -> torch.Tensor:
    """The last block's output ``(n, 512, 4, 4)`` for ``imgs``, read by a forward hook (an
    independent route to what captum sees)."""
    feats = {}
    hook = model.layer4.register_forward_hook(lambda _m, _i, out: feats.__setitem__("a", out))
    with torch.no_grad():
        model(torch.from_numpy(imgs).float().unsqueeze(1))
    hook.remove()
    return feats["a"]


@pytest.mark.parametrize("layer", ["layer3", "layer4"])
def test_maps_are_nonnegative_normalized_128(model, layer: str) -> None:
    maps = gradram_maps(model, _images(3), output=0, layer=layer)
    assert maps.shape == (3, 128, 128)
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0
    raw = gradram_maps(model, _images(3), output=0, layer=layer, normalize=False)
    assert raw.min() >= 0.0  # ReLU (relu_attributions=True)
    np.testing.assert_allclose(normalize_maps(raw), maps)


def test_maps_change_with_the_explained_output(model) -> None:
    imgs = _images(2)
    x, y = gradram_maps(model, imgs, output=0), gradram_maps(model, imgs, output=1)
    assert not np.allclose(x, y)
    pos, neg = gradram_maps(model, imgs, 0, sign=1), gradram_maps(model, imgs, 0, sign=-1)
    assert not np.allclose(pos, neg)


def test_gradram_is_the_weighted_feature_map(model) -> None:
    """Eqs. 4-5 on layer4: gradients of a linear head are fc weights / Z, so the map is CAM."""
    imgs = _images(1)
    a = _layer4_output(model, imgs)[0]                 # (512, 4, 4)
    alpha = model.fc.weight[1] / a[0].numel()          # dy/dA_k,ij pooled (eq. 5)
    expected = torch.relu((alpha[:, None, None] * a).sum(0)).detach()
    got = gradram_maps(model, imgs, output=1, upsample="nearest", normalize=False)[0]
    np.testing.assert_allclose(got[::32, ::32], expected.numpy(), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest"])
def test_periodic_upsampling_commutes_with_cell_shifts(mode: str) -> None:
    """Rolling the coarse 4x4 map by one cell rolls the 128x128 map by 32 px; no seam."""
    coarse = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    up = upsample_periodic(coarse, (128, 128), mode)
    assert up.shape == (2, 1, 128, 128)
    rolled = upsample_periodic(torch.roll(coarse, (1, -1), dims=(2, 3)), (128, 128), mode)
    np.testing.assert_allclose(rolled.numpy(), np.roll(up.numpy(), (32, -32), axis=(2, 3)), atol=1e-12)
    if mode == "bilinear":  # exactly the bilinear interpolation of the periodic continuation
        x = (np.arange(128) + 0.5) / 32 - 0.5
        i0 = np.floor(x).astype(int)
        w = np.zeros((128, 4))
        np.add.at(w, (np.arange(128), i0 % 4), 1 - (x - i0))
        np.add.at(w, (np.arange(128), (i0 + 1) % 4), x - i0)
        expected = np.einsum("ia,nab,jb->nij", w, coarse.numpy()[:, 0], w)
        np.testing.assert_allclose(up.numpy()[:, 0], expected, atol=1e-12)
    with pytest.raises(ValueError, match="multiple"):
        upsample_periodic(coarse, (126, 126))


def test_constant_input_gives_no_nan(model) -> None:
    for value in (0, 1):
        maps = gradram_maps(model, np.full((2, 128, 128), value, dtype=np.uint8), output=0)
        assert np.isfinite(maps).all()
        assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert np.array_equal(normalize_maps(np.zeros((1, 4, 4))), np.zeros((1, 4, 4)))


def test_critical_region_is_the_intersection() -> None:
    rng = np.random.default_rng(0)
    mx, my = rng.random((2, 16, 16)), rng.random((2, 16, 16))
    for t in (0.3, 0.5, 0.8):
        region = critical_region(mx, my, t)
        np.testing.assert_array_equal(region, binarize(mx, t) & binarize(my, t))
        np.testing.assert_array_equal(binarize(mx, t), normalize_maps(mx) >= t)
    # a higher threshold gives a smaller (nested) region
    assert (critical_region(mx, my, 0.8) <= critical_region(mx, my, 0.5)).all()


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 64, 60), dtype=np.uint8), "square"),
    (np.zeros((2, 3, 128, 128)), "shape"),
    (np.full((1, 128, 128), 0.5), "binary"),
    (np.full((1, 128, 128), 2, dtype=np.uint8), "binary"),
])
def test_bad_input_gives_clear_error(model, bad, match) -> None:
    with pytest.raises(ValueError, match=match):
        gradram_maps(model, bad)


def test_bad_arguments(model) -> None:
    imgs = _images(1)
    with pytest.raises(ValueError, match="output"):
        gradram_maps(model, imgs, output=2)
    with pytest.raises(ValueError, match="sign"):
        gradram_maps(model, imgs, sign=0.5)
    with pytest.raises(ValueError, match="layer"):
        gradram_maps(model, imgs, layer="fc")
    with pytest.raises(ValueError, match="threshold"):
        binarize(np.ones((2, 2)), 0.0)
    with pytest.raises(ValueError, match="same shape"):
        critical_region(np.ones((4, 4)), np.ones((4, 5)))


def test_select_outliers() -> None:
    v = np.array([[1.0, 9.0], [5.0, 5.0], [8.0, 2.0], [4.0, 4.5]])
    assert select_outliers(v, "max", 0.5).tolist() == [1, 3]  # best weaker direction
    assert select_outliers(v, "min", 0.25).tolist() == [3]    # lowest worse direction
    with pytest.raises(ValueError, match="NaN"):
        select_outliers(np.array([[np.nan, 1.0]]), "max")


def test_similarity_measures() -> None:
    rng = np.random.default_rng(1)
    a = rng.random((32, 32))
    same = map_similarity(a, a)
    assert same["spearman"] == pytest.approx(1.0) and same["ssim"] == pytest.approx(1.0)
    other = map_similarity(a, rng.random((32, 32)))
    assert abs(other["spearman"]) < 0.2 and other["ssim"] < 0.3
    assert map_similarity(np.zeros((8, 8)), a[:8, :8])["spearman"] == 0.0


def test_randomized_copy_and_sanity_check(model) -> None:
    clone = randomized_copy(model, seed=1)
    assert not torch.equal(clone.fc.weight, model.fc.weight)
    assert torch.equal(model.fc.weight, model.fc.weight.clone())  # original untouched
    result = sanity_check(model, _images(2), output=0)
    for check in ("randomized", "other_input", "shifted"):
        assert result[check]["spearman"].shape == ((6,) if check == "randomized" else (2,))
        assert np.isfinite(result[check]["ssim"]).all()
    assert result["maps"]["trained"].shape == (2, 128, 128)


def test_reference_activations_are_channel_means(model) -> None:
    imgs = _images(3)
    ref = reference_activations(model, imgs, batch_size=2)   # two batches of unequal size
    assert ref.shape == (512,)
    expected = _layer4_output(model, imgs).double().mean(dim=(0, 2, 3)).numpy()
    np.testing.assert_allclose(ref, expected, rtol=1e-5, atol=1e-7)


def test_referenced_map_is_complete_on_the_last_block(model) -> None:
    """With a linear head the signed map sums to y(x) - mean y(reference) (DeepLIFT-style)."""
    refs, imgs = _images(6, seed=3), _images(2, seed=4)
    ref = reference_activations(model, refs)
    signed = gradram_maps(model, imgs, output=1, upsample="nearest", normalize=False,
                          reference=ref, relu=False)
    with torch.no_grad():
        y = model(torch.from_numpy(imgs).float().unsqueeze(1))[:, 1].numpy()
        y_ref = model(torch.from_numpy(refs).float().unsqueeze(1))[:, 1].mean().item()
    np.testing.assert_allclose(signed[:, ::32, ::32].sum(axis=(1, 2)), y - y_ref, rtol=1e-4,
                               atol=1e-6)
    # the ReLU map keeps the positive part; -y flips the sign of the signed map
    pos = gradram_maps(model, imgs, output=1, upsample="nearest", normalize=False, reference=ref)
    np.testing.assert_allclose(pos, np.maximum(signed, 0.0), atol=1e-7)
    neg = gradram_maps(model, imgs, output=1, sign=-1, upsample="nearest", normalize=False,
                       reference=ref, relu=False)
    np.testing.assert_allclose(neg, -signed, atol=1e-7)


def test_reference_gives_evidence_where_zero_gives_none() -> None:
    """An output that every feature raises: -y has no positive evidence from zero, some from
    a reference (the Case 3 situation), and the model itself is left unchanged."""
    net = build_regressor(1, stem="standard", seed=2).eval()
    with torch.no_grad():
        net.fc.weight.abs_()                 # features >= 0 after ReLU: y rises with each
    imgs, refs = _images(2, seed=5), _images(6, seed=6)
    assert gradram_maps(net, imgs, sign=-1, normalize=False).max() == 0.0
    ref = reference_activations(net, refs)
    maps = gradram_maps(net, imgs, sign=-1, reference=ref)
    assert maps.max() == pytest.approx(1.0) and maps.min() == 0.0
    assert isinstance(net.layer4, torch.nn.Sequential) and len(net.layer4) == 2  # untouched


def test_bad_reference(model) -> None:
    with pytest.raises(ValueError, match="one mean activation per channel"):
        gradram_maps(model, _images(1), reference=np.zeros(7))
    with pytest.raises(ValueError, match="NaN"):
        gradram_maps(model, _images(1), reference=np.full(512, np.nan))
    with pytest.raises(ValueError, match="batch_size"):
        reference_activations(model, _images(1), batch_size=0)


def test_sanity_check_with_reference(model) -> None:
    result = sanity_check(model, _images(2), output=0, seeds=(0,), reference_images=_images(4, 7))
    assert result["randomized"]["spearman"].shape == (2,)
    # a re-initialized network measured from its own reference is not all zero
    assert result["maps"]["randomized"].max() == pytest.approx(1.0)


def test_case_heatmaps_with_reference_and_region_agreement() -> None:
    """A (one-epoch) Case 3 model: -alpha maps from a reference, regions are the AND."""
    from lib.models.training import CASES, fit_case, get_recipe

    imgs = _images(10, seed=11)
    rng = np.random.default_rng(3)
    labels = {key: rng.uniform(1.0, 2.0, 10) for case in CASES.values() for key in case.label_keys}
    recipe = get_recipe("smoke", batch_size=4, epochs={"case1": 1, "case2": 1, "case3": 1},
                        val_fraction=0.25)
    tc = fit_case(imgs, labels, "case3", recipe, progress=False)
    assert tc.case.explain_sign == -1
    maps = case_heatmaps(tc, imgs[:2], threshold=0.5, reference_images=imgs[2:])
    assert maps["map_x"].shape == (2, 128, 128) and maps["map_x"].max() == pytest.approx(1.0)
    np.testing.assert_array_equal(maps["region"], maps["bin_x"] & maps["bin_y"])
    agree = region_agreement(tc, imgs[:2], imgs[2:], threshold=0.5)
    assert agree["share_reference"] == pytest.approx(maps["region"].mean())
    assert 0.0 <= agree["iou"] <= 1.0 and 0.0 <= agree["share_zero"] <= 1.0
    assert region_agreement(tc, imgs[:2], None)["iou"] == 1.0


def test_shift_average_commutes_with_its_step_and_refines() -> None:
    """With circular padding, rolling the image by a multiple of the step rolls the
    shift-averaged map exactly; a one-pass 4x4 map does not follow an 8-px roll."""
    net = build_regressor(1, stem="standard", seed=4, periodic=True).eval()
    img = _images(1, seed=8)  # signed maps: a random network's ReLU map can be all zero
    averaged = gradram_maps(net, img, shift_average=4, normalize=False, relu=False)[0]
    rolled = gradram_maps(net, np.roll(img, (8, -16), axis=(1, 2)), shift_average=4,
                          normalize=False, relu=False)[0]
    np.testing.assert_allclose(rolled, np.roll(averaged, (8, -16), axis=(0, 1)),
                               rtol=1e-4, atol=1e-6 * np.abs(averaged).max())
    single = gradram_maps(net, img, normalize=False, relu=False)[0]
    single_rolled = gradram_maps(net, np.roll(img, 8, axis=1), normalize=False, relu=False)[0]
    assert not np.allclose(single_rolled, np.roll(single, 8, axis=0),
                           atol=1e-3 * np.abs(single).max())
    # a 32-px roll is one whole cell: exact even without averaging
    whole_cell = gradram_maps(net, np.roll(img, 32, axis=2), normalize=False, relu=False)[0]
    np.testing.assert_allclose(whole_cell, np.roll(single, 32, axis=1), rtol=1e-4,
                               atol=1e-6 * np.abs(single).max())


def test_shift_average_bad_arguments(model) -> None:
    with pytest.raises(ValueError, match="divide the feature cell"):
        gradram_maps(model, _images(1), shift_average=3)
    with pytest.raises(ValueError, match="positive integer"):
        gradram_maps(model, _images(1), shift_average=0)
    with pytest.raises(ValueError, match="periodic"):
        gradram_maps(model, _images(1), shift_average=2, periodic=False)
