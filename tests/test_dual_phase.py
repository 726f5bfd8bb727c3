"""Part A microstructures (SPEC A1): lib.microstructures.dual_phase and its figures."""
from __future__ import annotations

import json

import numpy as np
import pytest

from lib.microstructures.dual_phase import (
    DUAL_PHASE_CATEGORIES,
    FRACTION_TOLERANCE,
    GENERATORS,
    build_dual_phase_arrays,
    decode_params,
    dual_phase_dataset,
    generate_dual_phase,
    generate_ellipse,
    generate_laminated,
    generate_random,
    generate_rectangle,
    phase_boundary_map,
    sample_seeds,
)

N_SEEDS = 30  # per category, for the statistical checks


@pytest.fixture(scope="module")
def samples() -> dict[str, list[tuple[np.ndarray, dict]]]:
    """N_SEEDS structures of every category (generated once for the module)."""
    return {cat: [generate_dual_phase(cat, seed) for seed in range(N_SEEDS)]
            for cat in DUAL_PHASE_CATEGORIES}


def _change_rates(img: np.ndarray, axis: int) -> np.ndarray:
    """Fraction of pixels that change phase across each boundary k -> k+1 along ``axis``.

    Entry N-1 is the wrap-around boundary (last row/column -> first).
    """
    return (img != np.roll(img, -1, axis=axis)).mean(axis=1 - axis)


# ------------------------------------------------------------------------------------------
# basic contract
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("category", DUAL_PHASE_CATEGORIES)
def test_shape_dtype_binary(samples, category):
    for img, params in samples[category][:10]:
        assert img.shape == (128, 128)
        assert img.dtype == np.uint8
        assert set(np.unique(img)) <= {0, 1}
        assert 0 < img.sum() < img.size  # both phases present
        assert params["category"] == category
        json.dumps(params)  # JSON-able


@pytest.mark.parametrize("category", DUAL_PHASE_CATEGORIES)
def test_other_sizes(category):
    img, params = generate_dual_phase(category, 3, size=64)
    assert img.shape == (64, 64) and params["size"] == 64
    assert abs(img.mean() - params["martensite_fraction_target"]) <= FRACTION_TOLERANCE


@pytest.mark.parametrize("category", ["rectangle", "ellipse", "random"])
def test_tiny_fraction_stays_near_its_range_or_fails(category):
    """A fraction range of (0.001, 0.002) gives a fraction within 25 % of its target, or an error
    (before the relative tolerance a rectangle came out at 0.0026)."""
    for seed in range(6):
        try:
            img, params = generate_dual_phase(category, seed, 128, (0.001, 0.002))
        except ValueError as err:
            assert "could not reach martensite fraction" in str(err)
            continue
        target = params["martensite_fraction_target"]
        assert abs(img.mean() - target) <= 0.25 * target + 1e-12


@pytest.mark.parametrize("category", DUAL_PHASE_CATEGORIES)
def test_fraction_achieved_and_recorded(samples, category):
    for img, params in samples[category]:
        assert params["martensite_fraction"] == pytest.approx(float(img.mean()), abs=0)
        assert abs(params["martensite_fraction"] - params["martensite_fraction_target"]) \
            <= FRACTION_TOLERANCE


@pytest.mark.parametrize("category", DUAL_PHASE_CATEGORIES)
def test_shape_parameters_recorded(samples, category):
    common = {"category", "martensite_fraction", "martensite_fraction_target", "seed", "size",
              "orientation_deg", "randomness"}
    specific = {
        "laminated": {"n_layers", "layers_along_x", "layer_thickness_px", "normal_xy"},
        "rectangle": {"aspect_ratio", "grain_size_px", "n_grains", "subtype", "long_axis"},
        "ellipse": {"aspect_ratio", "grain_size_px", "n_grains", "orientation_scatter_deg"},
        "random": {"aspect_ratio", "grain_size_px", "n_grains", "n_martensite_grains"},
    }[category]
    for _, params in samples[category]:
        assert common | specific <= set(params), set(common | specific) - set(params)


def test_fraction_range_spanned(samples):
    fractions = np.array([p["martensite_fraction"] for cat in samples for _, p in samples[cat]])
    assert fractions.min() < 0.13 and fractions.max() > 0.57
    assert 0.1 - FRACTION_TOLERANCE <= fractions.min() and fractions.max() <= 0.6 + FRACTION_TOLERANCE
    # roughly uniform: every fifth of the range is populated
    counts, _ = np.histogram(fractions, bins=5, range=(0.1, 0.6))
    assert counts.min() >= 0.1 * fractions.size


def test_fraction_range_argument():
    for seed in range(8):
        _, params = generate_dual_phase("ellipse", seed, fraction_range=(0.2, 0.3))
        assert 0.2 <= params["martensite_fraction_target"] <= 0.3


def test_categories_vary_their_shapes(samples):
    rect = [p for _, p in samples["rectangle"]]
    assert {p["subtype"] for p in rect} == {"grains", "partially_laminated"}
    assert {p["long_axis"] for p in rect} == {"x", "y"}
    for cat in ("rectangle", "ellipse"):
        rnd = {p["randomness"] for _, p in samples[cat]}
        assert min(rnd) == 0.0 and max(rnd) == 1.0, rnd
        ar = [p["aspect_ratio"] for _, p in samples[cat]]
        assert min(ar) < 1.3 and max(ar) > 2.5
    lam = [p for _, p in samples["laminated"]]
    assert any(p["layers_along_x"] for p in lam) and not all(p["layers_along_x"] for p in lam)
    assert len({p["n_layers"] for p in lam}) >= 4
    sizes = [p["grain_size_px"] for _, p in samples["random"]]
    assert max(sizes) > 1.5 * min(sizes)


# ------------------------------------------------------------------------------------------
# periodicity
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("category", DUAL_PHASE_CATEGORIES)
def test_no_seam_at_wrap(samples, category):
    """Across the wrap row/column the phase changes as often as across interior ones."""
    wrap, interior = [], []
    for img, _ in samples[category]:
        for axis in (0, 1):
            rates = _change_rates(img, axis)
            # the wrap line is one of N equivalent lines: it may be the busiest by chance,
            # but not by more than a couple of pixels
            assert rates[-1] <= rates[:-1].max() + 2.5 / img.shape[0]
            wrap.append(rates[-1])
            interior.append(rates[:-1].mean())
    # on average over samples the seam is as busy as the interior (a cut would be far busier)
    assert np.mean(wrap) <= 1.5 * np.mean(interior) + 0.01
    assert np.mean(wrap) >= 0.5 * np.mean(interior) - 0.01


def test_seam_check_detects_a_cut():
    """Negative control: a disc drawn without wrap-around leaves a seam the check sees."""
    yy, xx = np.mgrid[0:128, 0:128] + 0.5
    img = (((xx - 2.0) ** 2 + (yy - 64.0) ** 2) < 30.0 ** 2).astype(np.uint8)
    rates = _change_rates(img, 1)
    assert rates[-1] > rates[:-1].max() + 2.5 / 128


@pytest.mark.parametrize("category", DUAL_PHASE_CATEGORIES)
def test_tiling_is_seamless(samples, category):
    """In the 2x2 tiling the middle seams change phase no more than the image's busiest line."""
    img, _ = samples[category][0]
    tiled = np.tile(img, (2, 2))
    for axis in (0, 1):
        rates = _change_rates(tiled, axis)[:-1]
        assert rates[127] <= rates.max()
        assert rates[127] == pytest.approx(_change_rates(img, axis)[-1])


def test_laminated_layers_complete(samples):
    for img, params in samples["laminated"]:
        a, b = params["normal_xy"]
        # the image is constant along the layer direction (b, -a): a shift by it is identity
        assert np.array_equal(np.roll(img, shift=(-a, b), axis=(0, 1)), img)
        if params["layers_along_x"]:
            assert params["orientation_deg"] == 0.0
            assert (img == img[:, :1]).all()  # every row constant
            column = img[:, 0].astype(int)
            starts = np.count_nonzero(np.diff(np.concatenate([column, column[:1]])) == 1)
            assert starts == params["n_layers"]
        elif (a, b) == (1, 0):
            assert params["orientation_deg"] == 90.0
            assert (img == img[:1, :]).all()  # every column constant


def test_laminated_explicit_parameters():
    rng = np.random.default_rng(0)
    img, params = generate_laminated(rng, martensite_fraction=0.25, n_layers=4, normal=(0, 1),
                                     thickness_variation=0.0)
    assert params["layers_along_x"] and params["n_layers"] == 4
    assert (img == img[:, :1]).all()
    assert img.mean() == pytest.approx(0.25, abs=1 / 256)
    thickness = np.array(params["layer_thickness_px"])
    assert np.ptp(thickness) <= 1.0 + 1e-9  # equal layers up to one pixel row
    img45, p45 = generate_laminated(rng, martensite_fraction=0.3, n_layers=3, normal=(1, -1),
                                    thickness_variation=0.3)
    assert p45["orientation_deg"] == 45.0 and not p45["layers_along_x"]
    assert np.array_equal(np.roll(img45, shift=(-1, -1), axis=(0, 1)), img45)


def test_partially_laminated_rectangles():
    """Rectangles as long as the lattice period form complete layers; shorter ones leave gaps."""
    kw = dict(martensite_fraction=0.3, subtype="partially_laminated", n_grains=8,
              long_axis="x", randomness=0.0, staggered=False)
    full, p_full = generate_rectangle(np.random.default_rng(1), length_fraction=1.0, **kw)
    # complete layers, up to one-pixel steps where single rectangles are grown (top and
    # bottom row) to hit the fraction
    assert np.count_nonzero((full != full[:, :1]).any(axis=1)) <= 2 * p_full["n_rows"]
    assert full.all(axis=1).sum() >= 0.25 * 128
    part, p_part = generate_rectangle(np.random.default_rng(1), length_fraction=0.8, **kw)
    rows = part[part.any(axis=1)]
    assert not (rows == rows[:, :1]).all()  # gaps in the layers
    assert rows.mean(axis=1).max() >= 0.75  # but each nearly runs across the cell
    assert abs(part.mean() - 0.3) <= FRACTION_TOLERANCE


def test_regular_lattice_is_regular():
    img, params = generate_ellipse(np.random.default_rng(2), martensite_fraction=0.2,
                                   n_grains=16, aspect_ratio=1.0, orientation_deg=0.0,
                                   randomness=0.0, staggered=False)
    assert (params["n_rows"], params["n_cols"]) == (4, 4)
    # a 4 x 4 lattice repeats every 32 px, up to the one-pixel tie-breaking that hits the fraction
    shifted = np.roll(img, shift=(128 // params["n_rows"], 128 // params["n_cols"]),
                      axis=(0, 1))
    assert (shifted != img).mean() < 0.01


def test_random_assigns_whole_grains():
    img, params = generate_random(np.random.default_rng(5), martensite_fraction=0.35,
                                  n_grains=60, aspect_ratio=1.0, orientation_deg=0.0,
                                  randomness=1.0)
    assert 0 < params["n_martensite_grains"] < params["n_grains"]
    assert abs(img.mean() - 0.35) <= FRACTION_TOLERANCE


# ------------------------------------------------------------------------------------------
# determinism and errors
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("category", DUAL_PHASE_CATEGORIES)
def test_deterministic_per_seed(category):
    a, pa = generate_dual_phase(category, 11)
    b, pb = generate_dual_phase(category, 11)
    c, _ = generate_dual_phase(category, 12)
    assert np.array_equal(a, b) and pa == pb
    assert not np.array_equal(a, c)


def test_sample_seeds():
    s = sample_seeds(2024, 100)
    assert s.dtype == np.int64 and (s >= 0).all() and len(set(s.tolist())) == 100
    assert np.array_equal(s, sample_seeds(2024, 100))
    assert np.array_equal(s[:10], sample_seeds(2024, 10))
    assert not np.array_equal(s, sample_seeds(2025, 100))


@pytest.mark.parametrize("kwargs, match", [
    (dict(category="lamellar", seed=0), "unknown dual-phase category"),
    (dict(category="ellipse", seed=0, size=8), "at least 16"),
    (dict(category="ellipse", seed=0, size=64.0), "integer"),
    (dict(category="ellipse", seed=-1), "seed"),
    (dict(category="ellipse", seed=0, fraction_range=(0.0, 0.5)), "fraction_range"),
    (dict(category="ellipse", seed=0, fraction_range=(0.6, 0.1)), "fraction_range"),
    (dict(category="ellipse", seed=0, fraction_range=(0.2, 1.0)), "fraction_range"),
])
def test_dispatcher_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_dual_phase(**kwargs)


@pytest.mark.parametrize("generator", list(GENERATORS.values()))
@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1.5, float("nan"), "lots"])
def test_generator_fraction_errors(generator, fraction):
    with pytest.raises(ValueError, match="martensite_fraction"):
        generator(np.random.default_rng(0), martensite_fraction=fraction)


def test_generator_argument_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="at least 16"):
        generate_ellipse(rng, 10, martensite_fraction=0.3)
    with pytest.raises(ValueError, match="Generator"):
        generate_ellipse(0, martensite_fraction=0.3)
    with pytest.raises(ValueError, match="randomness"):
        generate_rectangle(rng, martensite_fraction=0.3, randomness=1.5)
    with pytest.raises(ValueError, match="aspect_ratio"):
        generate_random(rng, martensite_fraction=0.3, aspect_ratio=0.5)
    with pytest.raises(ValueError, match="subtype"):
        generate_rectangle(rng, martensite_fraction=0.3, subtype="squares")
    with pytest.raises(ValueError, match="normal"):
        generate_laminated(rng, martensite_fraction=0.3, normal=(0, 0))
    with pytest.raises(ValueError, match="could not reach"):  # layers thinner than a pixel
        generate_laminated(rng, martensite_fraction=0.5, n_layers=60, normal=(1, 2),
                           thickness_variation=0.0)


# ------------------------------------------------------------------------------------------
# phase-boundary map
# ------------------------------------------------------------------------------------------
def test_phase_boundary_map_hand_example():
    img = np.zeros((5, 6), dtype=np.uint8)
    img[0, 0] = 1                      # a corner pixel: its neighbours wrap around
    img[2:4, 2:4] = 1                  # an interior 2x2 block
    expected = np.zeros((5, 6))
    expected[0, 0] = 1
    expected[[1, 4], 0] = 1            # below, and above via the wrap (row 4)
    expected[0, [1, 5]] = 1            # right, and left via the wrap (column 5)
    expected[2:4, 2:4] = 1             # every block pixel touches ferrite
    expected[1, 2:4] = expected[4, 2:4] = 1
    expected[2:4, 1] = expected[2:4, 4] = 1
    out = phase_boundary_map(img)
    assert out.dtype == np.float64 and out.shape == img.shape
    np.testing.assert_array_equal(out, expected)


def test_phase_boundary_map_cases():
    assert not phase_boundary_map(np.ones((8, 8), dtype=np.uint8)).any()
    stripes = np.zeros((8, 8), dtype=bool)
    stripes[:, 0] = True               # a layer along y at the left edge
    out = phase_boundary_map(stripes)
    np.testing.assert_array_equal(out.any(axis=0), [1, 1, 0, 0, 0, 0, 0, 1])
    with pytest.raises(ValueError, match="binary"):
        phase_boundary_map(np.full((8, 8), 2))
    with pytest.raises(ValueError, match="2D"):
        phase_boundary_map(np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="NaN"):
        phase_boundary_map(np.full((8, 8), np.nan))


# ------------------------------------------------------------------------------------------
# dataset stage
# ------------------------------------------------------------------------------------------
def test_dataset_stage_and_cache(tmp_study_dirs):
    from lib.profiles import get_profile
    from lib.stages import load_stage, read_stage_log

    profile = get_profile("smoke", n_dual_phase=9)  # 9 // 4 = 2 per category
    path = dual_phase_dataset(profile)
    assert path.parent.parent == tmp_study_dirs["data"] and path.name.startswith("dual_phase_db")
    data = load_stage(path)
    assert data["images"].shape == (8, 128, 128) and data["images"].dtype == np.uint8
    assert data["category"].dtype == np.int8
    np.testing.assert_array_equal(np.bincount(data["category"]), [2, 2, 2, 2])
    params = decode_params(data["params_json"])
    for i, p in enumerate(params):
        assert p["category"] == DUAL_PHASE_CATEGORIES[data["category"][i]]
        assert p["seed"] == data["seed"][i]
        assert data["martensite_fraction"][i] == pytest.approx(data["images"][i].mean())
        img, _ = generate_dual_phase(p["category"], int(data["seed"][i]))
        assert np.array_equal(img, data["images"][i])  # reproducible from its seed

    mtime = path.stat().st_mtime_ns
    again = dual_phase_dataset(profile)
    assert again == path and path.stat().st_mtime_ns == mtime
    statuses = [e["status"] for e in read_stage_log("smoke") if e["stage"] == "dual_phase_db"]
    assert statuses == ["run", "cached"]

    other = dual_phase_dataset(get_profile("smoke", n_dual_phase=9, seed=7))
    assert other != path  # a changed parameter reruns
    assert not np.array_equal(load_stage(other)["images"], data["images"])
    by_name = dual_phase_dataset("smoke")  # a profile name works too
    assert load_stage(by_name)["images"].shape[0] == 4 * (get_profile("smoke").n_dual_phase // 4)


def test_dataset_errors(tmp_study_dirs):
    from lib.profiles import get_profile

    with pytest.raises(ValueError, match="n_dual_phase"):
        dual_phase_dataset(get_profile("smoke", n_dual_phase=3))
    with pytest.raises(ValueError, match="unknown profile"):
        dual_phase_dataset("huge")
    with pytest.raises(ValueError, match="n_per_category"):
        build_dual_phase_arrays(0, 1)


# ------------------------------------------------------------------------------------------
# figures
# ------------------------------------------------------------------------------------------
def test_plot_dual_phase_examples():
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from lib.plots import plot_dual_phase_examples

    data = build_dual_phase_arrays(3, 1, size=32, progress=False)
    fig = plot_dual_phase_examples(data["images"], data["category"], n_per_category=3)
    assert isinstance(fig, Figure)
    axes = np.array(fig.axes).reshape(4, 3)
    assert [ax.get_ylabel() for ax in axes[:, 0]] == list(DUAL_PHASE_CATEGORIES)
    im = axes[0, 0].images[0]
    assert np.allclose(im.cmap(im.norm(1))[:3], 0.0)   # martensite black
    assert np.allclose(im.cmap(im.norm(0))[:3], 1.0)   # ferrite white
    assert f"{data['images'][0].mean():.2f}" in axes[0, 0].get_title()
    plt.close(fig)
    names = np.array(DUAL_PHASE_CATEGORIES)[data["category"]]
    fig = plot_dual_phase_examples(data["images"], names, n_per_category=4)  # more than there are
    plt.close(fig)
    with pytest.raises(ValueError, match="categories"):
        plot_dual_phase_examples(data["images"], data["category"][:3])


def test_plot_martensite_fraction_distribution():
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from lib.plots import plot_martensite_fraction_distribution

    rng = np.random.default_rng(0)
    frac = rng.uniform(0.1, 0.6, 40)
    cats = np.repeat(np.arange(4, dtype=np.int8), 10)
    fig = plot_martensite_fraction_distribution(frac, cats)
    assert isinstance(fig, Figure)
    assert len(fig.axes[0].get_legend().get_texts()) == 5
    plt.close(fig)
    with pytest.raises(ValueError, match="NaN"):
        plot_martensite_fraction_distribution(np.full(40, np.nan), cats)
    with pytest.raises(ValueError, match="unknown"):
        plot_martensite_fraction_distribution(frac[:2], np.array(["laminated", "foam"]))
