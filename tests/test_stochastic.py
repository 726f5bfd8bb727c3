"""Part B stochastic database (SPEC B1): periodic helpers, the four generators, the stage."""
from __future__ import annotations

import json

import numpy as np
import pytest

from lib.microstructures import stochastic
from lib.microstructures.periodic import (
    draw_discs,
    ellipse_field,
    is_periodic_tileable,
    seam_statistics,
    segment_field,
    threshold_to_fraction,
    tile,
    voronoi_fields,
    white_pixel_count,
)
from lib.microstructures.stochastic import (
    FRACTION_WINDOW,
    generate_stochastic_sample,
    sample_seeds,
    spinodal_components,
    stochastic_database,
    wave_form_field,
)
from lib.profiles import STOCHASTIC_CATEGORIES

N = 128
SEEDS = range(40)


@pytest.fixture(scope="module")
def samples() -> dict[str, list[tuple[np.ndarray, dict]]]:
    """40 full-size samples per category, generated once for the module."""
    return {c: [generate_stochastic_sample(c, s) for s in SEEDS] for c in STOCHASTIC_CATEGORIES}


# ------------------------------------------------------------------------------ periodic helpers
def test_threshold_to_fraction_exact_count_and_ties():
    rng = np.random.default_rng(0)
    field = rng.normal(size=(37, 41))
    for f in (0.0, 0.1, 0.383, 0.5, 1.0):
        img = threshold_to_fraction(field, f)
        assert img.dtype == np.uint8 and img.sum() == round(f * field.size)
        # white = highest values: every white pixel >= every black pixel
        if 0 < img.sum() < img.size:
            assert field[img == 1].min() >= field[img == 0].max()
    low = threshold_to_fraction(field, 0.3, high_is_white=False)
    assert field[low == 1].max() <= field[low == 0].min()
    flat = threshold_to_fraction(np.ones((4, 4)), 0.25)          # ties: lowest indices first
    assert flat.ravel().tolist() == [1, 1, 1, 1] + [0] * 12


def test_threshold_to_fraction_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        threshold_to_fraction(np.zeros(10), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        threshold_to_fraction(np.full((3, 3), np.nan), 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        threshold_to_fraction(np.zeros((3, 3)), 1.5)


def test_white_pixel_count_window():
    assert white_pixel_count(0.41, N * N, FRACTION_WINDOW) / N**2 <= 0.41
    assert white_pixel_count(0.38, N * N, FRACTION_WINDOW) / N**2 >= 0.38
    assert white_pixel_count(0.9, 100, (0.38, 0.41)) == 41                # clipped into window
    with pytest.raises(ValueError, match="no pixel count"):
        white_pixel_count(0.4, 16 * 16, (0.4, 0.40001))


@pytest.mark.parametrize("shift", [(0, 0), (5, -3), (61, 100), (-128, 7)])
def test_feature_fields_are_periodic_under_integer_shifts(shift):
    """Moving every feature by whole pixels rolls the field exactly, wrap-around included."""
    rng = np.random.default_rng(1)
    centers = rng.uniform(0, 48, (12, 2))
    ab = np.column_stack([rng.uniform(2, 9, 12), rng.uniform(1, 3, 12)])
    ang = rng.uniform(0, np.pi, 12)
    moved = centers + np.array(shift)
    np.testing.assert_allclose(ellipse_field(48, moved, ab, ang),
                               np.roll(ellipse_field(48, centers, ab, ang), shift, axis=(0, 1)))
    np.testing.assert_allclose(
        segment_field(48, moved, ab[:, 0] * 2, ab[:, 1], ang),
        np.roll(segment_field(48, centers, ab[:, 0] * 2, ab[:, 1], ang), shift, axis=(0, 1)))
    for stretch in ((1.0, 1.0), (1.0, 2.0)):
        a = voronoi_fields(48, centers, stretch)["wall"]
        b = voronoi_fields(48, np.mod(moved, 48), stretch)["wall"]
        np.testing.assert_allclose(b, np.roll(a, shift, axis=(0, 1)), atol=1e-9)


def test_disc_wraps_around_corner():
    img = draw_discs(32, [[0.0, 0.0]], [4.0])
    assert img.sum() == draw_discs(32, [[16.0, 16.0]], [4.0]).sum()
    assert img[0, 0] and img[31, 31] and img[0, 31] and img[31, 0] and not img[16, 16]


def test_voronoi_wall_is_distance_to_bisector():
    """Two seeds on a line: the wall is the perpendicular bisector, wrap-around included."""
    vf = voronoi_fields(32, [[0.0, 8.0], [0.0, 24.0]])
    x = np.arange(32)
    expected = np.minimum(np.abs(x - 16), np.minimum(x, 32 - x))   # walls at x = 16 and x = 0
    np.testing.assert_allclose(vf["wall"][5], expected, atol=1e-9)


def test_seam_check_tells_periodic_from_cut_images():
    rng = np.random.default_rng(2)
    img, _ = generate_stochastic_sample("spinodal", 3)
    assert is_periodic_tileable(img) and is_periodic_tileable(tile(img, 2))
    crop = img[5:101, 7:103]
    st = seam_statistics(crop)
    assert st["seam"] > 2 * st["interior"].mean()
    with pytest.raises(ValueError, match="binary"):
        seam_statistics(rng.normal(size=(8, 8)))
    with pytest.raises(ValueError, match="square"):
        seam_statistics(np.zeros((4, 5)))


# ------------------------------------------------------------------------------ generators
@pytest.mark.parametrize("category", STOCHASTIC_CATEGORIES)
def test_shape_dtype_binary_fraction(samples, category):
    lo, hi = FRACTION_WINDOW
    fracs = []
    for img, params in samples[category]:
        assert img.shape == (N, N) and img.dtype == np.uint8
        assert set(np.unique(img)) <= {0, 1}
        frac = img.mean()
        assert lo <= frac <= hi
        assert params["white_fraction"] == frac
        assert abs(frac - params["target_white_fraction"]) <= 0.5 / N**2 + 1e-12
        assert params["category"] == category
        json.dumps(params)                                          # JSON-able
        fracs.append(frac)
    assert np.ptp(fracs) > 0.01                                     # targets spread over the window


@pytest.mark.parametrize("category", STOCHASTIC_CATEGORIES)
def test_tiled_images_have_no_seam(samples, category):
    """Phase changes across the wrap seams are as frequent as across interior boundaries."""
    stats = [seam_statistics(img) for img, _ in samples[category]]
    seam = np.mean([s["seam"] for s in stats])
    interior = np.mean([s["interior"].mean() for s in stats])
    assert abs(seam - interior) < 0.15 * interior
    assert np.mean([is_periodic_tileable(img) for img, _ in samples[category]]) >= 0.9
    # the same statistic on cut-out windows (not periodic) is far off: the check has teeth
    cut = [seam_statistics(img[3:100, 9:106]) for img, _ in samples[category][:10]]
    assert np.mean([s["seam"] for s in cut]) > 2 * interior


@pytest.mark.parametrize("category", STOCHASTIC_CATEGORIES)
def test_variety_within_category(samples, category):
    imgs = np.stack([img for img, _ in samples[category]]).astype(float)
    diffs = [np.mean(imgs[i] != imgs[j]) for i in range(10) for j in range(i + 1, 10)]
    assert min(diffs) > 0.1
    texts = {json.dumps({k: v for k, v in p.items()
                         if k not in ("seed", "white_fraction", "target_white_fraction")},
                        sort_keys=True) for _, p in samples[category]}
    assert len(texts) == len(samples[category])


def test_spinodal_field_is_exactly_periodic():
    for seed in range(5):
        m, phases, sdf = spinodal_components(np.random.default_rng(seed), 64)
        assert np.issubdtype(m.dtype, np.integer) and len(m) == sdf["n_waves"]
        r = np.random.default_rng(100 + seed).uniform(0, 64, (200, 2))
        y0 = wave_form_field(m, phases, 64, points=r)
        for shift in ([64, 0], [0, 64], [-64, 128]):
            np.testing.assert_allclose(wave_form_field(m, phases, 64, points=r + shift), y0,
                                       atol=1e-9)
        grid = wave_form_field(m, phases, 64)                       # FFT sum == direct sum
        yy, xx = np.meshgrid(np.arange(64.0), np.arange(64.0), indexing="ij")
        direct = wave_form_field(m, phases, 64, points=np.column_stack([yy.ravel(), xx.ravel()]))
        np.testing.assert_allclose(grid.ravel(), direct, atol=1e-8)
        img = stochastic.generate_spinodal(np.random.default_rng(seed), 64, 0.4)[0]
        np.testing.assert_array_equal(img, threshold_to_fraction(grid, 0.4))


@pytest.mark.parametrize("category", STOCHASTIC_CATEGORIES)
def test_deterministic_per_seed(category):
    a, pa = generate_stochastic_sample(category, 123, size=64)
    b, pb = generate_stochastic_sample(category, 123, size=64)
    c, _ = generate_stochastic_sample(category, 124, size=64)
    np.testing.assert_array_equal(a, b)
    assert pa == pb
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("size", [16, 33, 64])
def test_other_sizes(size):
    for category in STOCHASTIC_CATEGORIES:
        for seed in range(5):
            img, _ = generate_stochastic_sample(category, seed, size=size)
            assert img.shape == (size, size)
            assert FRACTION_WINDOW[0] <= img.mean() <= FRACTION_WINDOW[1]


def test_custom_window():
    img, p = generate_stochastic_sample("voronoi", 0, size=64, fraction_window=(0.2, 0.25))
    assert 0.2 <= img.mean() <= 0.25


@pytest.mark.parametrize("kwargs, match", [
    (dict(category="foam"), "unknown category 'foam'"),
    (dict(size=8), "size must be an integer >= 16"),
    (dict(size=64.0), "size must be an integer"),
    (dict(seed=-1), "seed must be a non-negative integer"),
    (dict(seed=1.5), "seed must be a non-negative integer"),
    (dict(fraction_window=(0.41, 0.38)), "0 < lo <= hi < 1"),
    (dict(fraction_window=(0.0, 0.4)), "0 < lo <= hi < 1"),
    (dict(fraction_window=(0.4, 1.0)), "0 < lo <= hi < 1"),
    (dict(fraction_window=0.4), "two numbers"),
    (dict(fraction_window=(0.4, 0.40001), size=16), "no pixel count"),
])
def test_bad_arguments(kwargs, match):
    args = dict(category="particles", seed=0, size=32) | kwargs
    with pytest.raises(ValueError, match=match):
        generate_stochastic_sample(**args)


def test_sample_seeds_prefix_stable():
    a = sample_seeds(2024, "fibers", 5)
    b = sample_seeds(2024, "fibers", 50)
    np.testing.assert_array_equal(a, b[:5])
    assert a.dtype == np.int64 and (a >= 0).all()
    assert not np.array_equal(a, sample_seeds(2024, "voronoi", 5))
    assert not np.array_equal(a, sample_seeds(2025, "fibers", 5))


# ------------------------------------------------------------------------------ database stage
def test_database_stage_cached_and_reproducible(tmp_study_dirs, monkeypatch):
    from lib.stages import load_stage, read_stage_log, stage_attrs

    path = stochastic_database("smoke", n_per_category=3)
    assert path.parent == tmp_study_dirs["data"] / "smoke"
    data = load_stage(path)
    n = 3 * len(STOCHASTIC_CATEGORIES)
    assert data["images"].shape == (n, N, N) and data["images"].dtype == np.uint8
    assert data["category"].dtype == np.int8 and data["seed"].dtype == np.int64
    assert data["category"].tolist() == [c for c in range(4) for _ in range(3)]
    np.testing.assert_allclose(data["white_fraction"], data["images"].mean(axis=(1, 2)))
    assert ((data["white_fraction"] >= 0.38) & (data["white_fraction"] <= 0.41)).all()
    attrs = stage_attrs(path)
    assert attrs["params"]["generator_version"] == stochastic.GENERATOR_VERSION
    assert attrs["categories"] == list(STOCHASTIC_CATEGORIES)
    # every sample is reproducible alone from its stored seed
    for i in (0, 5, 11):
        p = json.loads(data["params_json"][i])
        img, _ = generate_stochastic_sample(p["category"], int(data["seed"][i]))
        np.testing.assert_array_equal(img, data["images"][i])

    mtime = path.stat().st_mtime_ns

    def boom(*args, **kwargs):
        raise AssertionError("recomputed a cached stage")

    monkeypatch.setattr(stochastic, "generate_stochastic_sample", boom)
    assert stochastic_database("smoke", n_per_category=3) == path
    assert path.stat().st_mtime_ns == mtime
    assert [e["status"] for e in read_stage_log("smoke")][-2:] == ["run", "cached"]
    with pytest.raises(ValueError, match="n_per_category"):
        stochastic_database("smoke", n_per_category=0)


# ------------------------------------------------------------------------------ figures
def test_plot_functions(samples):
    import matplotlib.figure
    import matplotlib.pyplot as plt

    from lib.plots import plot_fraction_distribution, plot_stochastic_examples

    imgs = np.stack([img for c in STOCHASTIC_CATEGORIES for img, _ in samples[c][:3]])
    codes = np.repeat(np.arange(4, dtype=np.int8), 3)
    fig = plot_stochastic_examples(imgs, codes, n_per_category=4)      # fewer than asked: blanks
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 16
    names = np.array([STOCHASTIC_CATEGORIES[c] for c in codes])
    fig2 = plot_fraction_distribution(imgs.mean(axis=(1, 2)), names)
    assert isinstance(fig2, matplotlib.figure.Figure)
    plt.close("all")
    with pytest.raises(ValueError, match="shape"):
        plot_stochastic_examples(imgs[0], codes)
    with pytest.raises(ValueError, match="category codes"):
        plot_stochastic_examples(imgs, codes + 4)
    with pytest.raises(ValueError, match="unknown stochastic categories"):
        plot_fraction_distribution(imgs.mean(axis=(1, 2)), np.array(["foam"] * 12))
    with pytest.raises(ValueError, match="NaN"):
        plot_fraction_distribution(np.full(12, np.nan), codes)


def test_database_summary_rows(samples):
    imgs = np.stack([img for c in STOCHASTIC_CATEGORIES for img, _ in samples[c][:5]])
    data = dict(images=imgs, category=np.repeat(np.arange(4), 5),
                white_fraction=imgs.mean(axis=(1, 2)))
    rows = stochastic.database_summary(data)
    assert [r["category"] for r in rows] == list(STOCHASTIC_CATEGORIES)
    assert all(r["n"] == 5 and 0.38 <= r["fraction_min"] <= r["fraction_max"] <= 0.41 for r in rows)
    assert "particles" in stochastic.format_summary(rows)
    with pytest.raises(ValueError, match="missing"):
        stochastic.database_summary({"images": imgs})
