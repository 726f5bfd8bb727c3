"""Periodic homogenization against exact answers (SPEC B2): uniform material, laminates,
Levin's relation, Voigt/Reuss and Hashin-Shtrikman bounds, mesh refinement, bad input."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from lib.fe.homogenization import (
    MATERIAL_CASES,
    IsotropicPhase,
    MaterialCase,
    PeriodicHomogenizer,
    engineering_constants,
    plane_stress_stiffness,
)
from lib.fe.bounds import (
    area_moduli,
    bound_violation,
    directional_stiffness_ceiling,
    hashin_shtrikman_area_bulk,
    isotropic_bounds,
    levin_isotropic_expansion,
    levin_thermal_expansion,
    thermal_expansion_bounds,
    voigt_reuss_bounds,
)

BORON_ALUMINIUM = MATERIAL_CASES["boron_aluminium"]
ALUMINIUM_FOAM = MATERIAL_CASES["aluminium_foam"]
# Boron/aluminium with expansion coefficients and unequal Poisson ratios: a well-conditioned
# two-phase case for the thermal checks (the compliance difference is far from singular).
THERMO_ELASTIC = MaterialCase(
    "thermo_elastic",
    black=IsotropicPhase("aluminium", 68.3e3, 0.33, 23.6e-6),
    white=IsotropicPhase("boron", 379.3e3, 0.21, 5.0e-6),
)


@pytest.fixture(scope="module")
def hom32() -> PeriodicHomogenizer:
    return PeriodicHomogenizer(32)


def smooth_random_image(size: int, seed: int, fraction: float = 0.4, sigma: float = 2.0) -> np.ndarray:
    """A periodic two-phase image: wrapped Gaussian-filtered noise thresholded at a quantile."""
    noise = np.random.default_rng(seed).standard_normal((size, size))
    field = ndimage.gaussian_filter(noise, sigma, mode="wrap")
    return (field > np.quantile(field, 1 - fraction)).astype(np.uint8)


@pytest.mark.parametrize("case", [BORON_ALUMINIUM, ALUMINIUM_FOAM], ids=lambda c: c.name)
@pytest.mark.parametrize("value", [0, 1])
def test_uniform_material_is_exact(hom32, case, value):
    props = hom32.homogenize(np.full((32, 32), value, np.uint8), case)
    phase = case.white if value else case.black
    np.testing.assert_allclose(props.stiffness, phase.stiffness, rtol=1e-11, atol=1e-9 * phase.youngs_modulus)
    np.testing.assert_allclose(props.thermal_expansion, [phase.thermal_expansion] * 2 + [0.0],
                               rtol=1e-9, atol=1e-12 * max(phase.thermal_expansion, 1e-30) + 1e-25)
    constants = engineering_constants(props.stiffness)
    assert constants["Ex"] == pytest.approx(phase.youngs_modulus, rel=1e-11)
    assert constants["nu_xy"] == pytest.approx(phase.poisson_ratio, rel=1e-10)


def test_uniform_material_is_exact_on_the_study_grid():
    props = PeriodicHomogenizer(128).homogenize(np.ones((128, 128), np.uint8), BORON_ALUMINIUM)
    np.testing.assert_allclose(props.stiffness, BORON_ALUMINIUM.white.stiffness, rtol=1e-10, atol=1e-5)


def layered(size: int, n_white_rows: int, along_x: bool) -> np.ndarray:
    img = np.zeros((size, size), np.uint8)
    img[:n_white_rows] = 1  # rows are constant along x: layers along x, stacked along y
    return img if along_x else img.T.copy()


@pytest.mark.parametrize("along_x", [True, False])
def test_laminate_equal_poisson_ratio(hom32, along_x):
    """Along the layers Voigt is exact; across: 1/E = (1 - nu^2)/E_Reuss + nu^2/E_Voigt."""
    f = 13 / 32
    props = hom32.homogenize(layered(32, 13, along_x), BORON_ALUMINIUM)
    e_white, e_black = BORON_ALUMINIUM.white.youngs_modulus, BORON_ALUMINIUM.black.youngs_modulus
    nu = 0.3
    e_voigt = f * e_white + (1 - f) * e_black
    e_reuss = 1.0 / (f / e_white + (1 - f) / e_black)
    e_across = 1.0 / ((1 - nu**2) / e_reuss + nu**2 / e_voigt)
    c = engineering_constants(props.stiffness)
    e_along_fe, e_across_fe = (c["Ex"], c["Ey"]) if along_x else (c["Ey"], c["Ex"])
    assert e_along_fe == pytest.approx(e_voigt, rel=1e-11)
    assert e_across_fe == pytest.approx(e_across, rel=1e-11)
    assert e_across < e_voigt and e_across > e_reuss  # not the plain Reuss value
    assert e_across_fe != pytest.approx(e_reuss, rel=1e-3)


@pytest.mark.parametrize("case", [THERMO_ELASTIC, ALUMINIUM_FOAM], ids=lambda c: c.name)
def test_laminate_thermal_expansion(hom32, case):
    """Plane-stress laminate with layers along x: every layer is in uniaxial stress along x.

    alpha_x = <E alpha>/<E>, alpha_y = <(1 + nu) alpha> - <nu> alpha_x, E_x = <E> (any nu).
    """
    f = 13 / 32
    props = hom32.homogenize(layered(32, 13, along_x=True), case)
    w, b = case.white, case.black
    mean = lambda white, black: f * white + (1 - f) * black  # noqa: E731
    e_mean = mean(w.youngs_modulus, b.youngs_modulus)
    alpha_x = mean(w.youngs_modulus * w.thermal_expansion, b.youngs_modulus * b.thermal_expansion) / e_mean
    alpha_y = (mean((1 + w.poisson_ratio) * w.thermal_expansion, (1 + b.poisson_ratio) * b.thermal_expansion)
               - mean(w.poisson_ratio, b.poisson_ratio) * alpha_x)
    assert props.thermal_expansion[0] == pytest.approx(alpha_x, rel=1e-9)
    assert props.thermal_expansion[1] == pytest.approx(alpha_y, rel=1e-6)
    assert abs(props.thermal_expansion[2]) < 1e-12
    # Levin's relation, fed the laminate's stiffness, gives the same closed-form expansion
    levin = levin_thermal_expansion(props.stiffness, f, case)
    assert levin[0] == pytest.approx(alpha_x, rel=1e-6) and levin[1] == pytest.approx(alpha_y, rel=1e-6)
    assert engineering_constants(props.stiffness)["Ex"] == pytest.approx(e_mean, rel=1e-10)


@pytest.mark.parametrize("case", [THERMO_ELASTIC, ALUMINIUM_FOAM], ids=lambda c: c.name)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_levin_relation_on_random_samples(hom32, case, seed):
    img = smooth_random_image(32, seed, fraction=0.3 + 0.1 * seed, sigma=1.0 + seed)
    props = hom32.homogenize(img, case)
    expected = levin_thermal_expansion(props.stiffness, img.mean(), case)
    scale = case.white.thermal_expansion
    np.testing.assert_allclose(props.thermal_expansion, expected, rtol=0, atol=1e-6 * scale)


@pytest.mark.parametrize("case", [BORON_ALUMINIUM, ALUMINIUM_FOAM], ids=lambda c: c.name)
def test_voigt_reuss_bounds_on_every_sample(hom32, case):
    for seed in range(6):
        img = smooth_random_image(32, seed, fraction=0.38 + 0.005 * seed, sigma=0.8 + 0.5 * seed)
        stiffness = hom32.homogenize(img, case).stiffness
        assert bound_violation(stiffness, img.mean(), case) < 1e-10
        voigt, reuss = voigt_reuss_bounds(img.mean(), case)
        assert np.linalg.eigvalsh(voigt - stiffness).min() > 0  # strictly inside for a real mixture


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_hashin_shtrikman_bounds_on_square_symmetric_samples(hom32, seed):
    base = smooth_random_image(32, seed, fraction=0.15, sigma=1.5)
    img = base | np.rot90(base) | np.rot90(base, 2) | np.rot90(base, 3)  # 4-fold symmetric
    stiffness = hom32.homogenize(img, BORON_ALUMINIUM).stiffness
    assert stiffness[0, 0] == pytest.approx(stiffness[1, 1], rel=1e-9)  # square symmetry
    kappa = 0.5 * (stiffness[0, 0] + stiffness[0, 1])
    lower, upper = hashin_shtrikman_area_bulk(img.mean(), BORON_ALUMINIUM)
    assert lower <= kappa <= upper


def test_mesh_refinement_converges_from_above():
    """Splitting every pixel into 2x2 elements nests the FE spaces: the stiffness decreases
    monotonically (PSD differences) and the successive changes shrink."""
    yy, xx = np.mgrid[0:16, 0:16]
    img = (((xx - 7.5) ** 2 + (yy - 7.5) ** 2) < 5.2**2).astype(np.uint8)  # a centred disc
    results = []
    for factor in (1, 2, 4):
        fine = np.kron(img, np.ones((factor, factor), np.uint8))
        results.append(PeriodicHomogenizer(16 * factor).homogenize(fine, BORON_ALUMINIUM).stiffness)
    c1, c2, c4 = results
    scale = np.abs(c1).max()
    assert np.linalg.eigvalsh(c1 - c2).min() > -1e-10 * scale
    assert np.linalg.eigvalsh(c2 - c4).min() > -1e-10 * scale
    change_1_2 = np.abs(c1 - c2).max()
    change_2_4 = np.abs(c2 - c4).max()
    assert 0 < change_2_4 < 0.6 * change_1_2
    assert change_1_2 < 0.02 * scale  # the pixel grid is already within 2 %


@pytest.mark.parametrize(
    "img, message",
    [
        (np.zeros((31, 32)), "square"),
        (np.zeros((16, 16)), "32x32"),
        (np.full((32, 32), 0.5), "binary"),
        (np.where(np.eye(32) > 0, np.nan, 0.0), "NaN"),
        (np.zeros((2, 32, 32)), "square 2-D"),
    ],
)
def test_bad_input_gives_a_clear_error(hom32, img, message):
    with pytest.raises(ValueError, match=message):
        hom32.homogenize(img, BORON_ALUMINIUM)


def test_hashin_shtrikman_lies_inside_voigt_reuss():
    for f in (0.1, 0.4, 0.9):
        lower, upper = hashin_shtrikman_area_bulk(f, BORON_ALUMINIUM)
        voigt, reuss = voigt_reuss_bounds(f, BORON_ALUMINIUM)
        assert 0.5 * (reuss[0, 0] + reuss[0, 1]) < lower < upper < 0.5 * (voigt[0, 0] + voigt[0, 1])
    with pytest.raises(ValueError, match="white_fraction"):
        voigt_reuss_bounds(1.5, BORON_ALUMINIUM)


def test_bad_phase_parameters_are_rejected():
    with pytest.raises(ValueError, match="Poisson"):
        IsotropicPhase("x", 1.0, 0.5)
    with pytest.raises(ValueError, match="Young"):
        IsotropicPhase("x", -1.0, 0.3)


def test_plane_stress_stiffness_inverts_to_engineering_constants():
    c = engineering_constants(plane_stress_stiffness(200e3, 0.25))
    assert c["Ex"] == pytest.approx(200e3) and c["Ey"] == pytest.approx(200e3)
    assert c["nu_xy"] == pytest.approx(0.25) and c["Gxy"] == pytest.approx(200e3 / 2.5)


# --- the design limits (SPEC B6) -------------------------------------------------------------------
def test_design_bounds_collapse_for_equal_phases_and_end_on_the_phases():
    boron = IsotropicPhase("boron", 379.3e3, 0.3, 5e-6)
    same = MaterialCase("same", black=boron, white=boron)
    k, g = area_moduli(boron)
    for f in (0.0, 0.395, 1.0):
        b = isotropic_bounds(f, same)
        assert b["kappa"] == (pytest.approx(k), pytest.approx(k)) and b["mu"] == (pytest.approx(g), pytest.approx(g))
        assert b["E"][0] == pytest.approx(379.3e3) and b["E"][1] == pytest.approx(379.3e3)
        assert b["nu"][0] == pytest.approx(0.3) and b["nu"][1] == pytest.approx(0.3)
        assert directional_stiffness_ceiling(f, same) == pytest.approx(379.3e3)
    # a real mixture: the pure phases at the ends, ordered bounds in between
    for f, phase in ((0.0, BORON_ALUMINIUM.black), (1.0, BORON_ALUMINIUM.white)):
        b = isotropic_bounds(f, BORON_ALUMINIUM)
        assert b["E"][0] == pytest.approx(phase.youngs_modulus) == b["E"][1]
    b = isotropic_bounds(0.395, BORON_ALUMINIUM)
    assert b["E"][0] < b["E"][1] < directional_stiffness_ceiling(0.395, BORON_ALUMINIUM)
    assert b["mu"][0] < b["mu"][1] and b["nu"][0] < 0.3 < b["nu"][1]
    # the laminate along x reaches the directional ceiling exactly (equal nu)
    assert directional_stiffness_ceiling(0.395, BORON_ALUMINIUM) == pytest.approx(
        0.395 * 379.3e3 + 0.605 * 68.3e3)
    lo, hi = thermal_expansion_bounds(0.0, ALUMINIUM_FOAM)
    assert lo == pytest.approx(1e-15, abs=1e-9 * 23.6e-6) and hi == pytest.approx(1e-15, abs=1e-9 * 23.6e-6)
    lo, hi = thermal_expansion_bounds(1.0, ALUMINIUM_FOAM)
    assert lo == pytest.approx(23.6e-6) and hi == pytest.approx(23.6e-6)
    with pytest.raises(ValueError, match="white_fraction"):
        isotropic_bounds(-0.1, BORON_ALUMINIUM)
    with pytest.raises(ValueError, match="different bulk"):
        levin_isotropic_expansion(1.0, same)


@pytest.mark.parametrize("seed", [3, 4])
def test_square_symmetric_cells_respect_the_expansion_and_shear_bounds(hom32, seed):
    """Levin's relation turns the HS bounds on κ into bounds on α for any square-symmetric
    cell; the homogenized α of such cells lies inside, and equals Levin's value of its own κ."""
    base = smooth_random_image(32, seed, fraction=0.15, sigma=1.5)
    img = base | np.rot90(base) | np.rot90(base, 2) | np.rot90(base, 3)
    props = hom32.homogenize(img, THERMO_ELASTIC)
    kappa = 0.5 * (props.stiffness[0, 0] + props.stiffness[0, 1])
    lo, hi = thermal_expansion_bounds(img.mean(), THERMO_ELASTIC)
    assert lo <= props.thermal_expansion[0] <= hi
    assert props.thermal_expansion[0] == pytest.approx(levin_isotropic_expansion(kappa, THERMO_ELASTIC), rel=1e-8)
    foam = hom32.homogenize(img, ALUMINIUM_FOAM)
    lo, hi = thermal_expansion_bounds(img.mean(), ALUMINIUM_FOAM)
    assert lo * (1 - 1e-9) <= foam.thermal_expansion[0] <= hi * (1 + 1e-9)
