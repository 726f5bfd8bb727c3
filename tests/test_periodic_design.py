"""Periodic designs from critical regions (SPEC B5): skeleton, window, mirror, thickening."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lib.design.periodic_design import (TARGET_FRACTION, best_designs, best_window,
                                        design_from_region, design_metrics, format_summary,
                                        mirror_cell, moderate_samples, periodic_skeleton,
                                        replay_designs, summarize, summary_rows,
                                        thicken_to_fraction, xai_designs)

torch.set_num_threads(1)


def _band(n: int = 32, rows: slice = slice(10, 16)) -> np.ndarray:
    img = np.zeros((n, n), np.uint8)
    img[rows] = 1
    return img


def test_periodic_skeleton_keeps_ligaments_across_the_boundary() -> None:
    # a horizontal band crossing the left/right edge, and one wrapping top/bottom
    sk = periodic_skeleton(_band())
    assert sk[12:14].any(axis=0).all()          # one line along the whole width, no cut ends
    assert sk.sum() == 32 and not sk[:10].any() and not sk[16:].any()
    wrapped = np.roll(_band(), 20, axis=0)       # the band now straddles the top/bottom edge
    np.testing.assert_array_equal(periodic_skeleton(wrapped), np.roll(sk, 20, axis=0))


def test_best_window_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    region = rng.random((16, 16)) < 0.2
    counts = np.array([[np.roll(region, (-r, -c), axis=(0, 1))[:6, :6].sum() for c in range(16)]
                       for r in range(16)])
    row, col = best_window(region, 6)
    assert counts[row, col] == counts.max()
    assert (row, col) == np.unravel_index(np.argmax(counts), counts.shape)
    with pytest.raises(ValueError, match="window size"):
        best_window(region, 17)


def test_mirror_cell_is_symmetric_and_continuous_across_edges() -> None:
    q = np.zeros((8, 8), np.uint8)
    q[3, 4:] = 1                                 # a line that reaches the quarter's right edge
    q[5, :2] = 1                                 # and one that reaches its left edge
    cell = mirror_cell(q)
    assert cell.shape == (16, 16)
    np.testing.assert_array_equal(cell, cell[:, ::-1])
    np.testing.assert_array_equal(cell, cell[::-1, :])
    assert cell[3, 4:12].all()                   # the line continues into its mirror image
    tiled = np.tile(cell, (1, 2))
    assert tiled[5, 14:18].all()                 # and across the periodic cell boundary
    with pytest.raises(ValueError, match="square"):
        mirror_cell(np.zeros((2, 3)))


def test_thicken_hits_the_fraction_and_grows_a_disc() -> None:
    seed = np.zeros((64, 64), bool)
    seed[10, 50] = True
    out = thicken_to_fraction(seed, 0.05, smoothing=0.0)
    assert out.sum() == round(0.05 * 64 * 64) and out[10, 50] == 1
    # a disc around the seed, wrapped periodically: every white pixel within the radius
    rr, cc = np.ogrid[:64, :64]
    dr = np.minimum(np.abs(rr - 10), 64 - np.abs(rr - 10))
    dc = np.minimum(np.abs(cc - 50), 64 - np.abs(cc - 50))
    dist = np.hypot(dr, dc)
    radius = np.sqrt(out.sum() / np.pi)
    assert dist[out == 1].max() <= radius + 1.0
    assert (dist <= radius - 1.0)[out == 0].sum() == 0
    # nested in the fraction, seed always kept
    small, big = thicken_to_fraction(seed, 0.1), thicken_to_fraction(seed, 0.3)
    assert (small <= big).all() and big[10, 50] == 1


def test_thicken_keeps_mirror_symmetry_exactly() -> None:
    rng = np.random.default_rng(2)
    q = rng.random((32, 32)) < 0.01
    cell = mirror_cell(q)
    out = thicken_to_fraction(cell, 0.395)
    np.testing.assert_array_equal(out, out[:, ::-1])
    np.testing.assert_array_equal(out, out[::-1, :])
    assert TARGET_FRACTION[0] <= out.mean() <= TARGET_FRACTION[1]
    assert (out[cell] == 1).all()


def test_thicken_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        thicken_to_fraction(np.zeros((8, 8), bool))
    with pytest.raises(ValueError, match="fraction"):
        thicken_to_fraction(np.ones((8, 8), bool), 1.5)
    with pytest.raises(ValueError, match="already covers"):
        thicken_to_fraction(np.ones((8, 8), bool), 0.5)
    with pytest.raises(ValueError, match="binary"):
        thicken_to_fraction(np.full((8, 8), 2))


def test_design_from_a_laminate_is_a_laminate() -> None:
    """Horizontal layers in, horizontal layers out: every row of the design is one phase, at the
    target fraction, mirror symmetric; an empty region gives no design."""
    img = _band(64, slice(20, 30))
    # 0.375 of the cell is 12 whole rows per quarter, so the laminate can be exact
    design, info = design_from_region(img, np.ones((64, 64), bool), fraction=0.375)
    assert design is not None and info["skeleton_pixels"] == 32
    assert all(len(np.unique(row)) == 1 for row in design) and design.mean() == 0.375
    np.testing.assert_array_equal(design, design[::-1, :])
    design, _ = design_from_region(img, np.ones((64, 64), bool))   # the paper's window
    assert TARGET_FRACTION[0] <= design.mean() <= TARGET_FRACTION[1]
    none, info = design_from_region(img, np.zeros((64, 64), bool))
    assert none is None and info["skeleton_pixels"] == 0
    with pytest.raises(ValueError, match="64x64"):
        design_from_region(img, np.ones((32, 32), bool))


def test_design_metrics_by_hand() -> None:
    database = np.array([[1.0, 2.0], [3.0, 2.5], [2.0, 2.0]])   # min: 1, 2.5, 2 -> best 2.5
    designs = np.array([[2.6, 2.7], [3.0, 2.0], [2.5, 2.6]])
    m = design_metrics(designs, database, "max")
    assert m["beats_all"].tolist() == [True, False, False]
    assert m["balanced"].tolist() == [True, False, True]
    np.testing.assert_allclose(m["margin"], [2.6 / 2.5 - 1, 2.0 / 2.5 - 1, 0.0])
    low = design_metrics(np.array([[1.9, 1.95]]), database, "min")  # max: 2, 3, 2 -> best 2
    assert low["beats_all"].tolist() == [True] and low["margin"][0] == pytest.approx(0.025)
    assert summarize(m) == {"designs": 3, "balanced": 2, "beats_all": 1,
                            "balanced_and_beats_all": 1}
    with pytest.raises(ValueError, match="NaN"):
        design_metrics(np.array([[np.nan, 1.0]]), database, "max")
    with pytest.raises(ValueError, match="goal"):
        design_metrics(designs, database, "best")


def test_moderate_samples_are_around_the_median() -> None:
    values = np.column_stack([np.arange(11.0), np.arange(11.0) + 0.5])
    assert sorted(moderate_samples(values, "max", 3).tolist()) == [4, 5, 6]
    with pytest.raises(ValueError, match="n must"):
        moderate_samples(values, "max", 0)


def test_xai_designs_are_validated_by_the_same_fe() -> None:
    """A one-epoch Case 1 model on blobby structures: designs at the target fraction whose
    properties equal a direct homogenization of the design images."""
    from scipy.ndimage import gaussian_filter

    from lib.fe.labeling import homogenize_batch
    from lib.models.training import CASES, fit_case, get_recipe

    rng = np.random.default_rng(5)
    field = gaussian_filter(rng.standard_normal((8, 128, 128)), sigma=(0, 4, 4), mode="wrap")
    imgs = (field > np.quantile(field, 0.6, axis=(1, 2), keepdims=True)).astype(np.uint8)
    labels = {key: rng.uniform(1.0, 2.0, 8) for case in CASES.values() for key in case.label_keys}
    recipe = get_recipe("smoke", batch_size=4, epochs={"case1": 1, "case2": 1, "case3": 1},
                        val_fraction=0.25, gradram_shift_average=1)
    tc = fit_case(imgs, labels, "case1", recipe, progress=False)
    out = xai_designs(tc, imgs, {"outlier": np.array([0, 1])}, thresholds=(0.3,),
                      reference_images=imgs[2:], n_jobs=1)
    n = len(out["designs"])
    assert n + out["n_empty"].sum() == 2 and n >= 1
    assert out["values"].shape == (n, 2) and set(out["group"].tolist()) == {0}
    fractions = out["designs"].mean(axis=(1, 2))
    assert ((fractions >= TARGET_FRACTION[0]) & (fractions <= TARGET_FRACTION[1])).all()
    direct = homogenize_batch(out["designs"], ["boron_aluminium"])
    np.testing.assert_allclose(out["values"][:, 0], direct["boron_aluminium_Ex"], rtol=1e-10)
    np.testing.assert_allclose(out["Ey"], direct["boron_aluminium_Ey"], rtol=1e-10)
    # the summary, the ranking and the replay used by notebook 08
    metrics = design_metrics(out["values"], out["values"], "max")
    rows = summary_rows(out, metrics, ["outlier"], (0.3,))
    assert len(rows) == 1 and rows[0]["designs"] == n and rows[0]["sources"] == 2
    assert "| case1 | outlier | 0.3 |" in format_summary({"case1": rows})
    picks = best_designs(metrics, 5, balanced_only=False)
    assert len(picks) == n and np.all(np.diff(metrics["margin"][picks]) <= 0)
    replay = replay_designs(tc, imgs, out, picks, reference_images=imgs[2:])
    for st, p in zip(replay["steps"], picks):
        np.testing.assert_array_equal(st["design"], out["designs"][p])
    with pytest.raises(ValueError, match="thresholds"):
        xai_designs(tc, imgs, {"outlier": np.array([0])}, thresholds=(0.0,))
