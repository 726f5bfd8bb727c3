"""ResNet-18 regressors and their training loop (SPEC B3): shapes, normalization, splits, seeds."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lib.models.regressor import (STEMS, build_regressor, explained_layer, feature_map_size,
                                  images_to_tensor)
from lib.models.training import (CASES, RECIPES, MinMaxScaler, accuracy_table, fit_case,
                                 get_recipe, load_trained_case, predict, regression_metrics,
                                 split_indices, train_regressor, trained_case)

torch.set_num_threads(1)


def _images(n: int, seed: int = 0, size: int = 128) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, size, size)) < 0.4).astype(np.uint8)


@pytest.mark.parametrize("stem", STEMS)
@pytest.mark.parametrize("n_outputs", [1, 2])
def test_output_shape(stem: str, n_outputs: int) -> None:
    model = build_regressor(n_outputs, stem=stem, seed=0).eval()
    with torch.no_grad():
        out = model(images_to_tensor(_images(2)))
    assert out.shape == (2, n_outputs)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("stem", STEMS)
def test_feature_map_sizes(stem: str) -> None:
    """The documented last-map sizes (4, 8, 16 at layer4) are what the network produces."""
    model = build_regressor(1, stem=stem).eval()
    seen = {}
    hooks = [explained_layer(model, name).register_forward_hook(
        lambda _m, _i, out, name=name: seen.__setitem__(name, out.shape[-1]))
        for name in ("layer3", "layer4")]
    with torch.no_grad():
        model(torch.zeros(1, 1, 128, 128))
    for hook in hooks:
        hook.remove()
    assert seen == {name: feature_map_size(stem, name) for name in ("layer3", "layer4")}
    assert feature_map_size(stem, "layer4") == {"standard": 4, "no_maxpool": 8, "stride1": 16}[stem]


def test_same_seed_same_initial_weights() -> None:
    a, b = build_regressor(2, seed=3), build_regressor(2, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    c = build_regressor(2, seed=4)
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_normalization_round_trip() -> None:
    rng = np.random.default_rng(1)
    y = np.column_stack([rng.uniform(6e4, 2e5, 50), rng.uniform(1e-5, 2.4e-5, 50)])
    scaler = MinMaxScaler.fit(y)
    z = scaler.transform(y)
    assert z.min(axis=0) == pytest.approx([0.0, 0.0]) and z.max(axis=0) == pytest.approx([1, 1])
    np.testing.assert_allclose(scaler.inverse_transform(z), y, rtol=1e-12)
    np.testing.assert_allclose(scaler.transform(scaler.inverse_transform(z)), z, atol=1e-12)


@pytest.mark.parametrize("bad, match", [
    (np.array([[1.0, np.nan], [2.0, 3.0]]), "NaN"),
    (np.array([[1.0, 2.0], [1.0, 3.0]]), "constant"),
    (np.zeros((0, 2)), "shape"),
])
def test_scaler_rejects_bad_labels(bad: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MinMaxScaler.fit(bad)


def test_split_is_seeded_and_disjoint() -> None:
    a, b = split_indices(100, seed=7, val_fraction=0.1), split_indices(100, seed=7, val_fraction=0.1)
    for part in a:
        np.testing.assert_array_equal(a[part], b[part])
    assert [len(a[p]) for p in ("train", "val", "test")] == [72, 8, 20]
    assert len(np.unique(np.concatenate(list(a.values())))) == 100
    c = split_indices(100, seed=8)
    assert not np.array_equal(a["test"], c["test"])


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 64, 64)), "128 x 128"),
    (np.zeros((2, 128, 100)), "square"),
    (np.zeros((2, 3, 128, 128)), "shape"),
    (np.full((1, 128, 128), 0.5), "binary"),
    (np.full((1, 128, 128), 255, dtype=np.uint8), "binary"),
    (np.full((1, 128, 128), np.nan), "NaN"),
])
def test_bad_images_give_clear_errors(bad: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        images_to_tensor(bad)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="stem"):
        build_regressor(1, stem="resnet50")
    with pytest.raises(ValueError, match="n_outputs"):
        build_regressor(0)
    with pytest.raises(ValueError, match="profile"):
        get_recipe("huge")
    with pytest.raises(ValueError, match="Grad-RAM layer"):
        explained_layer(build_regressor(1), "layer2")


def test_recipes_follow_the_paper_where_they_say_so() -> None:
    paper = get_recipe("paper")
    assert paper.grouping == "per_output" and paper.batch_size == 32
    assert dict(paper.epochs) == {"case1": 100, "case2": 50, "case3": 50}
    assert paper.lr_gamma < 1.0  # learning rate decreased by epochs
    assert {c.paper_r2 for c in CASES.values()} == {(0.9711, 0.9591), (0.9270, 0.9124),
                                                    (0.8653, 0.9373)}
    assert set(RECIPES) == {"smoke", "default", "paper"}


def test_metrics() -> None:
    t = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 0.0]])
    m = regression_metrics(t, t + np.array([0.1, 0.0]))
    np.testing.assert_allclose(m["mse"], [0.01, 0.0])
    assert m["r2"][1] == 1.0 and m["r2"][0] == pytest.approx(1 - 0.01 / (2 / 3))


def _tiny_recipe(**kw):
    fields = {"batch_size": 4, "epochs": {"case1": 1, "case2": 1, "case3": 1},
              "val_fraction": 0.25, **kw}
    return get_recipe("smoke", **fields)


def test_training_is_reproducible_and_learns_shape() -> None:
    """Same seed, same weights; a training step changes the weights; output shape (n, k)."""
    imgs = _images(12)
    y = np.random.default_rng(2).random((12, 2))
    recipe = _tiny_recipe()
    idx = np.arange(12)
    m1, h1 = train_regressor(imgs, y, idx[:8], idx[8:], recipe, epochs=1, seed=5, progress=False)
    m2, _ = train_regressor(imgs, y, idx[:8], idx[8:], recipe, epochs=1, seed=5, progress=False)
    for p, q in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(p, q)
    assert not torch.equal(m1.fc.weight, build_regressor(2, seed=5).fc.weight)
    assert predict(m1, imgs[:3]).shape == (3, 2)
    assert h1["best_epoch"] == 1 and len(h1["train_loss"]) == 1


def test_training_rejects_bad_input() -> None:
    recipe = _tiny_recipe()
    with pytest.raises(ValueError, match="NaN"):
        train_regressor(_images(4), np.array([[np.nan]] * 4), [0, 1], [2], recipe, 1,
                        progress=False)
    with pytest.raises(ValueError, match="label rows"):
        train_regressor(_images(4), np.zeros((3, 1)), [0, 1], [2], recipe, 1, progress=False)


def _fake_labels(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {key: rng.uniform(1.0, 2.0, n) for case in CASES.values() for key in case.label_keys}


def test_fit_case_per_output_round_trip() -> None:
    """The paper's grouping: two single-output models; predictions come back in label units."""
    imgs, labels = _images(10), _fake_labels(10)
    tc = fit_case(imgs, labels, "case2", _tiny_recipe(grouping="per_output"), progress=False)
    assert len(tc.models) == 2 and tc.outputs_of == [(0,), (1,)]
    assert tc.model_for(1)[1] == 0
    pred = tc.predict(imgs[:3])
    np.testing.assert_allclose(tc.scaler.transform(pred), tc.predict_normalized(imgs[:3]),
                               atol=1e-9)
    rows = accuracy_table([tc], labels)
    assert [r["output"] for r in rows] == ["nu_xy", "nu_yx"]
    assert [r["paper_model"] for r in rows] == [3, 4]
    # random, reproducible draws from a split (its first rows would be one category)
    train = tc.database_indices("train")
    draw = tc.database_sample("train", 3)
    assert len(draw) == 3 and set(draw) <= set(train)
    np.testing.assert_array_equal(draw, tc.database_sample("train", 3))
    assert sorted(tc.database_sample("train", None)) == sorted(train)
    assert not np.array_equal(tc.database_sample("train", None), tc.database_sample("train", None, seed=1))
    with pytest.raises(ValueError, match="positive integer"):
        tc.database_sample("train", 0)


def test_missing_labels_error() -> None:
    with pytest.raises(ValueError, match="labels lack"):
        fit_case(_images(6), {"boron_aluminium_Ex": np.ones(6)}, "case1", _tiny_recipe(),
                 progress=False)


def test_trained_case_is_cached(tmp_study_dirs) -> None:
    """Weights are a stage: the second call loads them, with identical predictions."""
    from lib.stages import cached_stage

    imgs, labels = _images(10), _fake_labels(10)
    db = cached_stage("smoke", "stochastic_db", {"test": 1}, lambda: {"images": imgs})
    lb = cached_stage("smoke", "homogenization_labels", {"test": 1}, lambda: labels)
    recipe = _tiny_recipe()
    first = trained_case("smoke", "case1", db, lb, recipe=recipe, progress=False)
    second = trained_case("smoke", "case1", db, lb, recipe=recipe, progress=False)
    assert first.path == second.path
    np.testing.assert_array_equal(first.test_pred_normalized, second.test_pred_normalized)
    np.testing.assert_allclose(second.predict_normalized(imgs[second.database_indices("test")]),
                               first.test_pred_normalized, atol=1e-6)
    again = load_trained_case(second.path)
    assert again.recipe.stem == recipe.stem and again.case.name == "case1"
    files = sorted((tmp_study_dirs["data"] / "smoke").glob("regressor_case1-*.h5"))
    assert len(files) == 1
    with pytest.raises(ValueError, match="not a regressor stage of a Part B case.*homogenization_labels"):
        load_trained_case(lb)


def test_no_validation_part_keeps_the_last_epoch() -> None:
    """The paper's protocol: train on the whole 80 % split, keep the last epoch's weights."""
    imgs, y = _images(6), np.random.default_rng(4).random((6, 1))
    model, hist = train_regressor(imgs, y, np.arange(6), np.array([], dtype=int),
                                  _tiny_recipe(val_fraction=0.0), epochs=2, seed=0,
                                  progress=False)
    assert hist["best_epoch"] == 2 and np.isnan(hist["val_loss"]).all()
    assert get_recipe("paper").val_fraction == 0.0


def test_periodic_network_commutes_with_periodic_shifts() -> None:
    """Circular padding: a shift by the total stride (32 px) leaves the output unchanged."""
    x = images_to_tensor(_images(2, seed=5))
    shifted = torch.roll(x, shifts=(32, 64), dims=(2, 3))
    periodic = build_regressor(1, seed=0, periodic=True, zero_init_residual=True).eval()
    plain = build_regressor(1, seed=0).eval()
    plain.load_state_dict(periodic.state_dict())  # same weights, zero padding
    with torch.no_grad():
        assert torch.allclose(periodic(x), periodic(shifted), atol=1e-5)
        assert not torch.allclose(plain(x), plain(shifted), atol=1e-5)
