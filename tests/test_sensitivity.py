"""The sensitivity map Δ (SPEC A6, paper 001 eqs. 2-3), the map comparison metrics and
baselines, the void maps at the load-drop state, and the Part A regressor stage.

Models are tiny and random: the properties tested (teacher forcing = site-by-site evaluation,
Δ = 0 for equal conditions, Δ a difference quotient of the expected structure) do not need
trained weights.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from lib.explain import map_comparison as mc
from lib.explain.sensitivity import (expected_latents, expected_structure, reinitialized_copy,
                                     sensitivity_maps, site_probabilities)
from lib.fe.fracture_labels import coarsen_images, label_structures
from lib.fe.gtn_rve import GTNRVE, FractureCriteria
from lib.fe.void_maps import void_map_grid, void_maps
from lib.microstructures.dual_phase import phase_boundary_map
from lib.models.pixelcnn import GatedPixelCNN, PixelCNNConfig
from lib.models.training import get_recipe, property_regressor
from lib.models.vqvae import VQVAE, VQVAEConfig, check_images
from lib.profiles import get_profile
from lib.stages import load_stage

torch.set_num_threads(1)

VQ = VQVAEConfig(image_size=32, n_down=2, channels=(4, 8), code_dim=8, n_codes=16)  # 8x8 codes


def _binary(n: int, size: int, p: float = 0.4, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, size, size)) < p).astype(np.uint8)


@pytest.fixture(scope="module")
def pair() -> tuple[GatedPixelCNN, VQVAE]:
    torch.manual_seed(0)
    vq = VQVAE(VQ)
    vq.train()
    with torch.no_grad():
        vq(check_images(_binary(16, 32, seed=1)))  # codebook initialized from encoder outputs
    vq.eval()
    torch.manual_seed(1)
    net = GatedPixelCNN(PixelCNNConfig(n_codes=16, code_size=8, width=8, n_layers=3, n_cond=1,
                                       cond_hidden=8)).eval()
    return net, vq


# --- Δ -----------------------------------------------------------------------------------------
def test_teacher_forced_pass_equals_site_by_site_evaluation(pair):
    """p(c_ij | reference codes before (i, j), h) from one pass equals running the network
    once per site on the reference's prefix alone (every later code replaced at random)."""
    net, _ = pair
    gen = torch.Generator().manual_seed(3)
    codes = torch.randint(0, 16, (2, 8, 8), generator=gen)
    cond = torch.tensor([[0.3], [0.8]])
    one_pass = site_probabilities(net, codes, cond)
    assert one_pass.shape == (2, 16, 8, 8)
    np.testing.assert_allclose(one_pass.sum(1).numpy(), 1.0, atol=1e-6)
    flat = torch.arange(64).reshape(8, 8)
    with torch.no_grad():
        for i in range(8):
            for j in range(8):
                prefix_only = torch.where(flat < 8 * i + j, codes,
                                          torch.randint(0, 16, codes.shape, generator=gen))
                site = torch.softmax(net(prefix_only, cond), dim=1)[:, :, i, j]
                np.testing.assert_allclose(site.numpy(), one_pass[:, :, i, j].numpy(), atol=1e-6)


def test_expected_latent_is_the_probability_weighted_codebook_vector(pair):
    net, vq = pair
    codes = torch.randint(0, 16, (1, 8, 8), generator=torch.Generator().manual_seed(4))
    p = site_probabilities(net, codes, [0.5])
    z = expected_latents(net, vq, codes, [0.5])
    i, j = 3, 5
    manual = (p[0, :, i, j, None] * vq.quantizer.codebook).sum(0)
    np.testing.assert_allclose(z[0, :, i, j].numpy(), manual.numpy(), rtol=1e-5, atol=1e-7)
    # a one-hot distribution gives back the decoded code map itself
    one_hot = torch.nn.functional.one_hot(codes, 16).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        decoded = vq.decode_latent(torch.einsum("bkij,kd->bdij", one_hot, vq.quantizer.codebook))
        np.testing.assert_allclose(decoded.numpy(), vq.decode_codes(codes).numpy(), atol=1e-5)


def test_delta_has_the_reference_shape_and_vanishes_for_equal_conditions(pair):
    net, vq = pair
    imgs = _binary(3, 32, seed=5)
    cond = np.array([0.2, 0.5, 0.9])
    out = sensitivity_maps(net, vq, imgs, cond, step=0.05, batch_size=2)
    assert out["delta"].shape == imgs.shape and out["delta"].dtype == np.float32
    assert out["expected"].shape == imgs.shape and out["codes"].shape == (3, 8, 8)
    assert np.all((out["expected"] >= 0) & (out["expected"] <= 1))
    assert np.abs(out["delta"]).max() > 0
    zero = sensitivity_maps(net, vq, imgs, cond, step=0.0)
    assert np.array_equal(zero["delta"], np.zeros_like(zero["delta"]))
    # the codes are the references' own
    np.testing.assert_array_equal(out["codes"], vq.encode_batched(imgs))


def test_delta_is_the_difference_of_the_expected_structures_and_linear_for_small_steps(pair):
    net, vq = pair
    imgs = _binary(2, 32, seed=6)
    cond = np.array([0.4, 0.6])
    codes = torch.from_numpy(vq.encode_batched(imgs))
    net64, vq64 = copy.deepcopy(net).double(), copy.deepcopy(vq).double()
    base = expected_structure(net64, vq64, codes, torch.tensor(cond[:, None]))
    moved = expected_structure(net64, vq64, codes, torch.tensor(cond[:, None] + 0.1))
    out = sensitivity_maps(net, vq, imgs, cond, step=0.1)
    np.testing.assert_allclose(out["delta"], (moved - base).numpy(), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(out["expected"], base.numpy(), rtol=1e-6)
    # float32 models give the same expected structure to float32 precision
    np.testing.assert_allclose(expected_structure(net, vq, codes, cond[:, None].astype(np.float32)).numpy(),
                               base.numpy(), atol=1e-5)
    # eq. 3 is a difference quotient: for small steps Δ / step tends to one map, the
    # derivative of the expected structure (central difference as the reference)
    small = sensitivity_maps(net, vq, imgs, cond, step=1e-2)["delta"] / 1e-2
    central = (sensitivity_maps(net, vq, imgs, cond + 2e-2, step=-4e-2)["delta"] / -4e-2)
    assert np.abs(small).max() > 0
    np.testing.assert_allclose(small, central, atol=0.05 * np.abs(central).max())


def test_sensitivity_rejects_bad_input(pair):
    net, vq = pair
    imgs = _binary(2, 32)
    with pytest.raises(ValueError, match="one condition per reference"):
        sensitivity_maps(net, vq, imgs, [0.5], 0.01)
    with pytest.raises(ValueError, match="step must be a finite"):
        sensitivity_maps(net, vq, imgs, [0.5, 0.5], float("nan"))
    with pytest.raises(ValueError, match="finite"):
        sensitivity_maps(net, vq, imgs, [0.5, np.nan], 0.01)
    with pytest.raises(ValueError, match="binary"):
        sensitivity_maps(net, vq, imgs * 0.5, [0.5, 0.5], 0.01)
    other = GatedPixelCNN(PixelCNNConfig(n_codes=8, code_size=8, width=8, n_layers=2, n_cond=1))
    with pytest.raises(ValueError, match="not a pair"):
        sensitivity_maps(other, vq, imgs, [0.5, 0.5], 0.01)
    uncond = GatedPixelCNN(PixelCNNConfig(n_codes=16, code_size=8, width=8, n_layers=2, n_cond=0))
    with pytest.raises(ValueError, match="one condition"):
        sensitivity_maps(uncond, vq, imgs, [0.5, 0.5], 0.01)


def test_reinitialized_copy_is_new_seeded_and_leaves_the_original(pair):
    net, _ = pair
    before = {k: v.clone() for k, v in net.state_dict().items()}
    a, b, c = reinitialized_copy(net, 0), reinitialized_copy(net, 0), reinitialized_copy(net, 1)
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key])
        assert torch.equal(a.state_dict()[key], b.state_dict()[key])
    changed = [k for k in before if k.endswith("weight") and not torch.equal(a.state_dict()[k], before[k])]
    assert len(changed) >= len([k for k in before if k.endswith("weight")]) - 1
    assert any(not torch.equal(a.state_dict()[k], c.state_dict()[k]) for k in before)


# --- comparison metrics ----------------------------------------------------------------------------
def test_identical_maps_score_one_and_disjoint_hot_spots_zero():
    rng = np.random.default_rng(0)
    m = rng.random((16, 16))
    assert mc.map_spearman(m, m) == pytest.approx(1.0)
    assert mc.map_spearman(m, 3 * m ** 3 + 1) == pytest.approx(1.0)  # monotone rescaling
    assert mc.hotspot_iou(m, m) == 1.0
    # hot spots in two different corners: no pixel shared
    a, b = np.zeros((20, 20)), np.zeros((20, 20))
    a[:4, :10], b[-4:, -10:] = 1.0, 1.0
    assert mc.hotspot_mask(a).sum() == 40 and mc.hotspot_iou(a, b) == 0.0
    # half the hot spot shared: IoU = 20 / 60
    c = np.zeros((20, 20))
    c[:4, 5:15] = 1.0
    assert mc.hotspot_iou(a, c) == pytest.approx(20 / 60)
    assert mc.map_spearman(m, np.ones_like(m)) == 0.0


def test_random_maps_score_chance():
    """Two independent random maps: ρ ~ 0, IoU ~ top / (2 - top) = 0.0526."""
    a, b = mc.random_maps((200, 32, 32), seed=1), mc.random_maps((200, 32, 32), seed=2)
    scores = mc.compare_maps(a, b)
    assert abs(scores["spearman"].mean()) < 0.01
    assert scores["iou"].mean() == pytest.approx(0.1 / 1.9, abs=0.004)
    np.testing.assert_array_equal(mc.random_maps((2, 4, 4), 1), mc.random_maps((2, 4, 4), 1))
    assert not np.array_equal(mc.random_maps((2, 4, 4), 1), mc.random_maps((2, 4, 4), 2))


def test_compare_maps_block_averages_onto_the_void_grid():
    void = np.random.default_rng(3).random((2, 8, 8))
    fine = np.kron(void, np.ones((4, 4)))  # the same map at 32x32
    scores = mc.compare_maps(fine, void)
    np.testing.assert_allclose(scores["spearman"], 1.0)
    np.testing.assert_allclose(scores["iou"], 1.0)
    np.testing.assert_allclose(mc.block_average(fine, 8), void)
    with pytest.raises(ValueError, match="coarser"):
        mc.compare_maps(void, fine)
    with pytest.raises(ValueError, match="one void map per map"):
        mc.compare_maps(fine, void[:1])
    with pytest.raises(ValueError, match="divisor"):
        mc.block_average(fine, 5)
    with pytest.raises(ValueError, match="NaN"):
        mc.compare_maps(fine, np.full((2, 8, 8), np.nan))
    with pytest.raises(ValueError, match="top"):
        mc.hotspot_iou(void[0], void[0], top=1.5)


def test_masked_comparison_uses_only_the_masked_pixels():
    rng = np.random.default_rng(8)
    void = rng.random((2, 8, 8))
    mask = np.zeros((2, 8, 8), bool)
    mask[:, :4] = True
    other = void.copy()
    other[:, 4:] = rng.random((2, 4, 8))  # differs only outside the mask
    scores = mc.compare_maps(np.kron(other, np.ones((4, 4))), void, mask=mask)
    np.testing.assert_allclose(scores["spearman"], 1.0)
    np.testing.assert_allclose(scores["iou"], 1.0)
    assert mc.compare_maps(other, void)["spearman"].max() < 0.9
    few = np.zeros((2, 8, 8), bool)
    few[0, 0, :2] = True
    assert np.isnan(mc.compare_maps(void, void, mask=few)["spearman"]).all()
    rows = mc.summarize_scores({"m": mc.compare_maps(void, void, mask=few)}, np.array([0, 1]), ["a", "b"])
    assert rows == []
    with pytest.raises(ValueError, match="mask"):
        mc.compare_maps(void, void, mask=mask.astype(int))


def test_baselines_are_periodic_and_live_on_ferrite():
    img = np.zeros((16, 16), np.uint8)
    img[5:9, 0:3] = 1  # a grain touching the left edge
    inter = mc.interface_map(img, length=1.0)[0]
    dens = mc.martensite_density_map(img, sigma=2.0)[0]
    assert np.all(inter[img == 1] == 0) and np.all(dens[img == 1] == 0)
    assert inter[6, 15] == pytest.approx(np.exp(-1.0))  # one pixel across the periodic edge
    assert inter[6, 3] == pytest.approx(np.exp(-1.0))
    assert inter[6, 8] == pytest.approx(np.exp(-6.0))
    assert 0 < dens[6, 15] < 1 and dens[6, 15] == pytest.approx(dens[6, 3], rel=1e-9)
    # rolling the structure rolls the maps
    np.testing.assert_allclose(mc.interface_map(np.roll(img, 7, 1))[0], np.roll(mc.interface_map(img)[0], 7, 1))
    with pytest.raises(ValueError, match="binary"):
        mc.interface_map(img * 2)
    with pytest.raises(ValueError, match="positive"):
        mc.martensite_density_map(img, sigma=0)


def test_band_score_finds_bands_in_every_direction():
    n = 32
    r, c = np.indices((n, n))
    assert mc.band_score((r % 8 == 0).astype(float)) == pytest.approx(1.0)  # along x
    assert mc.band_score(((c - r) % n == 3).astype(float)) == pytest.approx(1.0)  # diagonal
    assert mc.band_score(((c + r) % n == 3).astype(float)) == pytest.approx(1.0)  # anti-diagonal
    spot = np.zeros((n, n))
    spot[10, 10] = 1.0
    assert mc.band_score(spot) < 0.05
    assert mc.band_score(np.ones((n, n))) == 0.0


def test_signed_map_anatomy_locates_the_mass_exactly():
    """A stripe of martensite in an 8x8 periodic cell: edges are the rows next to both
    interfaces; a map of -2 on martensite and +1 on ferrite puts its shares where they are."""
    img = np.zeros((8, 8), np.uint8)
    img[2:4] = 1  # rows 2-3 martensite: edge rows 1, 2, 3, 4
    edges = phase_boundary_map(img) > 0
    np.testing.assert_array_equal(edges.any(axis=1), [False, True, True, True, True, False, False, False])
    assert edges[[1, 2, 3, 4]].all()
    delta = np.where(img == 1, -2.0, 1.0)
    out = mc.signed_map_anatomy(delta, img)
    total = 16 * 2 + 48 * 1
    assert out["negative_share"] == pytest.approx(32 / total)
    assert out["mean_abs_martensite"] == pytest.approx(2.0) and out["mean_abs_ferrite"] == pytest.approx(1.0)
    assert out["edge_share"] == pytest.approx((32 + 16) / total) and out["edge_pixels"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same shape"):
        mc.signed_map_anatomy(np.stack([delta, delta]), img)
    with pytest.raises(ValueError, match="zero everywhere"):
        mc.signed_map_anatomy(np.zeros((8, 8)), img)


def test_summarize_scores_groups_and_all():
    scores = {"a": {"spearman": np.array([0.2, 0.4, 0.6]), "iou": np.array([0.1, 0.2, 0.3])}}
    rows = mc.summarize_scores(scores, np.array([0, 0, 1]), ["x", "y"])
    by = {r["group"]: r for r in rows}
    assert by["x"]["spearman_mean"] == pytest.approx(0.3) and by["x"]["n"] == 2
    assert by["all"]["iou_mean"] == pytest.approx(0.2) and by["y"]["spearman_sd"] == 0.0


# --- void maps at the load-drop state ------------------------------------------------------------
def _tiny() -> np.ndarray:
    imgs = np.zeros((2, 16, 16), np.uint8)
    imgs[0, 4:12, 4:12] = 1
    imgs[1] = np.kron(np.indices((4, 4)).sum(0) % 2, np.ones((4, 4))).astype(np.uint8)
    return imgs


def test_load_drop_void_map_is_the_state_past_the_drop():
    """The map's mean is the RVE's mean void fraction at the first increment past the 20 %
    load drop (equal quadrature weights), later than (or at) the f̄_crit onset map."""
    crit = FractureCriteria(mean_void_critical=0.005, load_drop=0.2)
    result = GTNRVE(8, criteria=crit).run(coarsen_images(_tiny(), 8)[0])
    assert result.load_drop_void_map is not None and result.load_drop_void_map.shape == (8, 8)
    first = int(np.nonzero(result.stress < 0.8 * np.maximum.accumulate(result.stress))[0][0])
    assert result.load_drop_void_map.mean() == pytest.approx(result.mean_void[first], rel=1e-12)
    assert result.strain[first - 1] <= result.load_drop_strain <= result.strain[first]
    assert result.load_drop_void_map.mean() >= result.void_map.mean()


def test_void_map_stage_matches_direct_runs_and_caches(tmp_study_dirs):
    profile = get_profile("smoke", n_jobs=1, label_chunk=4)
    imgs = _tiny()
    path = void_maps(profile, imgs, "void_maps_test", upstream=[], grid=8, progress=False)
    data = load_stage(path)
    direct = label_structures(imgs, 8, FractureCriteria(), n_jobs=1, load_drop_map=True)
    np.testing.assert_allclose(data["load_drop_void_map"], direct["load_drop_void_map"], rtol=1e-6)
    np.testing.assert_allclose(data["void_map"], direct["void_map"], rtol=1e-6)
    np.testing.assert_allclose(data["load_drop_strain"], direct["load_drop_strain"], rtol=1e-12)
    assert data["load_drop_void_map"].shape == (2, 8, 8)
    assert void_maps(profile, imgs, "void_maps_test", upstream=[], grid=8, progress=False) == path
    other = void_maps(profile, imgs[::-1].copy(), "void_maps_test", upstream=[], grid=8,
                      progress=False)
    assert other != path  # other structures, other stage
    assert void_map_grid("default") == 64 and void_map_grid("paper") == 128
    with pytest.raises(ValueError, match="divide"):
        void_maps(profile, imgs, "void_maps_test", upstream=[], grid=6)
    with pytest.raises(ValueError, match="shape"):
        void_maps(profile, imgs[0], "void_maps_test", upstream=[])


# --- the Part A regressor stage --------------------------------------------------------------------
def test_property_regressor_trains_caches_and_reloads(tmp_study_dirs):
    imgs = _binary(24, 32, p=0.4, seed=7)
    target = imgs.mean(axis=(1, 2)) + 0.1
    target[3] = np.nan  # a structure without a label, outside the split
    split = {"train": np.array([i for i in range(16) if i != 3]), "val": np.arange(16, 20),
             "test": np.arange(20, 24)}
    recipe = get_recipe("smoke", epochs={"case1": 1, "case2": 1, "case3": 1})
    first = property_regressor("smoke", "regressor_test", imgs, target, split, ["0123456789ab"], recipe,
                               progress=False)
    again = property_regressor("smoke", "regressor_test", imgs, target, split, ["0123456789ab"], recipe,
                               progress=False)
    assert again.path == first.path
    np.testing.assert_allclose(again.predict(imgs[20:]), first.predict(imgs[20:]), rtol=1e-5)
    lo, hi = np.nanmin(target[:20]), np.nanmax(target[:20])
    assert again.scaler.lo[0] == pytest.approx(lo) and again.scaler.hi[0] == pytest.approx(hi)
    with pytest.raises(ValueError, match="targets"):
        property_regressor("smoke", "regressor_test", imgs, target[:5], split, [], recipe)
    with pytest.raises(ValueError, match="split indices"):
        property_regressor("smoke", "regressor_test", imgs, target,
                           {**split, "test": np.array([99])}, [], recipe)


# --- the study's tables on a constructed study -------------------------------------------------------
def _constructed_study():
    from lib import sensitivity_study as ss

    rng = np.random.default_rng(9)
    n, g = 8, 8
    void = rng.random((n, g, g))
    images = (rng.random((n, 32, 32)) < 0.4).astype(np.uint8)
    perfect = np.kron(void, np.ones((4, 4)))
    maps = {m: rng.random((n, 32, 32)) for m in ss.METHODS}
    maps["|Δ|"] = perfect  # Δ is the void map itself; everything else is noise
    scores = {s: {m: mc.compare_maps(maps[m], void) for m in ss.METHODS}
              for s in ("load_drop", "onset")}
    sizes = ss.get_sensitivity_sizes("smoke")
    study = ss.SensitivityStudy(
        profile="smoke", sizes=sizes, rows=np.arange(n), category=np.repeat(np.arange(4), 2),
        images=images, strain=rng.random(n), void=void, void_onset=void, void_labels={},
        label_void_map=mc.block_average(void, 4), maps=maps, delta=-perfect, step=0.01,
        scores=scores, sanity={}, step_check={}, regressor=None, regressor_r2=0.5,
        band=np.linspace(0, 1, n), localization=np.full(n, 2.0))
    return ss, study


def test_study_tables_on_a_constructed_study():
    ss, study = _constructed_study()
    verdict = {(r["group"], r["method"]): r for r in ss.verdict_rows(study)}
    assert verdict[("all", "|Δ|")]["rho"] == pytest.approx(1.0)
    assert verdict[("all", "|Δ|")]["beats_share"] == 1.0
    assert abs(verdict[("all", "Grad-RAM −FS")]["rho"]) < 0.3
    table = ss.format_score_table(study)
    assert table.count("\n") == 1 + len(ss.METHODS) and "+1.00 ± 0.00" in table
    scales = ss.scale_rows(study)
    assert [r["grid"] for r in scales] == [8, 4, 2]  # 1² is no map
    assert all(r["|Δ|"] == pytest.approx(1.0) for r in scales)
    np.testing.assert_allclose(ss.grid_agreement(study), 1.0)  # block-averaged map vs itself
    rho, n = ss.band_effect(study)
    assert n == 8 and -1 <= rho <= 1
    rows = ss.figure_rows(study)
    assert len({i for _, i in rows}) == len(rows) >= 3
    caption, last = rows[-1]
    earlier = {i for _, i in rows[:-1]}
    assert caption == "long-range band in the void map"
    assert last == max(set(range(8)) - earlier, key=lambda i: study.band[i])  # largest band score
    with pytest.raises(ValueError, match="unknown profile"):
        ss.get_sensitivity_sizes("huge")


def test_reference_indices_come_from_the_test_part_topped_up_from_validation():
    """Each category's references are test structures; a category short of them (a small
    profile's split) is topped up from the validation part, never from training."""
    from types import SimpleNamespace
    from lib.generation import LabelledPool
    from lib.sensitivity_study import reference_indices
    n = 40
    category = np.repeat(np.arange(4), 10).astype(np.int8)
    part = np.tile(np.array([0, 0, 0, 0, 0, 1, 1, 2, 2, 2], np.int8), 4)
    part[10:20] = [0, 0, 0, 0, 0, 0, 0, 1, 1, 0]      # category 1: no test, two validation rows
    pool = LabelledPool(images=np.zeros((n, 4, 4), np.uint8), category=category,
                        fraction=np.full(n, 0.3), strain=np.full(n, 0.1),
                        strength=np.full(n, 600.0), source=np.zeros(n, np.int8),
                        valid=np.ones(n, bool), part=part)
    refs = reference_indices(SimpleNamespace(pool=pool), 2, seed=0)
    assert refs.shape == (8,) and (category[refs] == np.repeat(np.arange(4), 2)).all()
    assert (part[refs[[0, 1, 4, 5, 6, 7]]] == 2).all()
    assert sorted(refs[2:4].tolist()) == [17, 18]                # the two validation rows
    assert (part[refs] != 0).all()
    with pytest.raises(ValueError, match="1 test and 0 validation"):
        part2 = part.copy()
        part2[17:19] = 0
        part2[19] = 2
        reference_indices(SimpleNamespace(pool=LabelledPool(**{**pool.__dict__, "part": part2})), 2)
