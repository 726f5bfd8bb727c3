"""The SIMP inverse-homogenization core (SPEC B6): element operators against SfePy's assembly,
binary and uniform densities against exact answers, adjoint gradients against finite
differences, and the design maps (symmetry, filter, projection)."""
from __future__ import annotations

import numpy as np
import pytest

from lib.design.topology_optimization import (PROPERTY_NAMES, DensityHomogenizer, density_filter,
                                              element_operators, project, project_derivative,
                                              symmetrize)
from lib.fe.homogenization import MATERIAL_CASES, PeriodicHomogenizer, engineering_constants

CASES = [MATERIAL_CASES["boron_aluminium"], MATERIAL_CASES["aluminium_foam"]]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.name)
def tiny(request) -> DensityHomogenizer:
    return DensityHomogenizer(8, request.param, penalty=3.0)


def test_element_operators_assemble_sfepys_stiffness():
    hom = DensityHomogenizer(6, CASES[0])
    img = (np.random.default_rng(0).random((6, 6)) < 0.4).astype(float)
    cells = hom.fe.pixels_to_cells(img).astype(bool)
    d = np.where(cells[:, None, None], hom.d_white, hom.d_black)
    hom.fe.set_stiffness(d)
    reference = hom.fe.assemble_stiffness()
    ours = hom.fe.assemble_element_matrices(np.stack([hom._k_unit(x) for x in d]))
    np.testing.assert_allclose(ours.toarray(), reference.toarray(), rtol=1e-10, atol=1e-9 * abs(reference).max())
    b, w = element_operators(hom.fe.element_node_offsets, 1 / 6)
    assert w.sum() == pytest.approx(1 / 36)
    # rigid motions have no strain, a linear field has a constant one
    x = np.tile([1.0, 0.0], 4)
    assert np.abs(np.einsum("qij,j->qi", b, x)).max() < 1e-12
    with pytest.raises(ValueError, match="corners"):
        element_operators(np.zeros((4, 2)), 0.1)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_binary_density_gives_the_homogenizers_properties(case):
    img = (np.random.default_rng(1).random((16, 16)) < 0.4).astype(np.uint8)
    ref = PeriodicHomogenizer(16).homogenize(img, case)
    ours = DensityHomogenizer(16, case).evaluate(img.astype(float), gradients=False)
    np.testing.assert_allclose(ours.stiffness, ref.stiffness, rtol=1e-9, atol=1e-9 * abs(ref.stiffness).max())
    np.testing.assert_allclose(ours.thermal_expansion, ref.thermal_expansion, rtol=1e-7,
                               atol=1e-12 * max(1e-6, abs(ref.thermal_expansion).max()))


def test_uniform_density_is_the_interpolated_material(tiny):
    c = 0.6
    props = tiny.evaluate(np.full((8, 8), c))
    d = tiny.d_black + c ** 3 * (tiny.d_white - tiny.d_black)
    np.testing.assert_allclose(props.stiffness, d, rtol=1e-10, atol=1e-12 * abs(d).max())
    beta = tiny.beta_black + c ** 3 * (tiny.beta_white - tiny.beta_black)
    np.testing.assert_allclose(props.thermal_expansion, np.linalg.solve(d, beta), rtol=1e-8, atol=1e-20)
    assert props.values["Ex"] == pytest.approx(engineering_constants(d)["Ex"], rel=1e-10)
    # a uniform density has uniform gradients that sum to the derivative of the material
    total = props.gradients["Ex"].sum()
    eps = 1e-6
    d2 = tiny.d_black + (c + eps) ** 3 * (tiny.d_white - tiny.d_black)
    assert total == pytest.approx((engineering_constants(d2)["Ex"] - props.values["Ex"]) / eps, rel=1e-4)


def test_adjoint_gradients_match_finite_differences(tiny):
    """Central differences along random directions and at single pixels, every property."""
    rng = np.random.default_rng(2)
    rho = 0.2 + 0.6 * rng.random((8, 8))
    props = tiny.evaluate(rho)
    h = 1e-5
    directions = [rng.standard_normal((8, 8)) for _ in range(2)]
    for k in (0, 37):
        e = np.zeros(64)
        e[k] = 1.0
        directions.append(e.reshape(8, 8))
    for direction in directions:
        plus = tiny.evaluate(rho + h * direction, gradients=False).values
        minus = tiny.evaluate(rho - h * direction, gradients=False).values
        for name in PROPERTY_NAMES:
            fd = (plus[name] - minus[name]) / (2 * h)
            adj = float((props.gradients[name] * direction).sum())
            scale = max(abs(fd), 1e-3 * abs(props.values[name]) * np.abs(direction).sum() / 64)
            assert abs(adj - fd) <= 1e-4 * scale, (name, adj, fd)


def test_symmetric_density_gives_symmetric_gradients():
    hom = DensityHomogenizer(8, CASES[0])
    rho = symmetrize(np.random.default_rng(3).random((8, 8)))
    props = hom.evaluate(rho)
    assert props.values["Ex"] == pytest.approx(props.values["Ey"], rel=1e-9)
    g = props.gradients["Ex"] + props.gradients["Ey"]
    np.testing.assert_allclose(symmetrize(g), g, atol=1e-9 * np.abs(g).max())
    # mirroring the cell swaps nothing for a square-symmetric density; transposing swaps x, y
    np.testing.assert_allclose(props.gradients["Ex"].T, props.gradients["Ey"], atol=1e-9 * np.abs(g).max())


def test_design_maps():
    rng = np.random.default_rng(4)
    x, y = rng.random((12, 12)), rng.random((12, 12))
    s = symmetrize(x)
    np.testing.assert_allclose(symmetrize(s), s)                          # a projection
    assert np.isclose((symmetrize(x) * y).sum(), (x * symmetrize(y)).sum())  # its own adjoint
    for t in (s.T, s[::-1], s[:, ::-1], np.rot90(s)):
        np.testing.assert_allclose(t, s, atol=1e-15)
    f = density_filter(x, 3.0)
    assert f.mean() == pytest.approx(x.mean(), rel=1e-12)
    assert np.isclose((density_filter(x, 3.0) * y).sum(), (x * density_filter(y, 3.0)).sum())
    np.testing.assert_allclose(density_filter(np.roll(x, 5, 0), 3.0), np.roll(f, 5, 0), atol=1e-12)
    assert f.std() < x.std()
    np.testing.assert_array_equal(density_filter(x, 1.0), x)
    p = project(x, 8.0)
    assert project(np.array([0.0, 1.0]), 8.0) == pytest.approx([0.0, 1.0])
    np.testing.assert_allclose(project_derivative(x, 8.0), (project(x + 1e-6, 8.0) - project(x - 1e-6, 8.0)) / 2e-6,
                               rtol=1e-6)
    assert np.all(np.diff(project(np.linspace(0, 1, 11), 8.0)) > 0) and p.min() >= 0
    with pytest.raises(ValueError, match="radius"):
        density_filter(x, -1.0)
    with pytest.raises(ValueError, match="square"):
        symmetrize(np.zeros((3, 4)))


def test_bad_density_gives_a_clear_error(tiny):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tiny.evaluate(np.full((8, 8), 1.5))
    with pytest.raises(ValueError, match="8x8"):
        tiny.evaluate(np.full((6, 6), 0.5))
    with pytest.raises(ValueError, match="NaN"):
        tiny.evaluate(np.full((8, 8), np.nan))
    with pytest.raises(ValueError, match="penalty"):
        DensityHomogenizer(8, CASES[0], penalty=0.5)


# --- MMA and the SIMP loop -------------------------------------------------------------------------
def test_mma_solves_svanbergs_toy_problem():
    """min |x|^2 s.t. |x - a|^2 <= 9, |x - b|^2 <= 9, 0 <= x <= 5 (Svanberg's MMA notes):
    the optimum (2.0175, 1.7800, 1.2375) with both constraints active."""
    from lib.design.topology_optimization import mma_step

    a, b = np.array([5.0, 2, 1]), np.array([3.0, 4, 3])
    x, state = np.array([4.0, 3, 2]), None
    for _ in range(60):
        fval = np.array([((x - a) ** 2).sum() - 9, ((x - b) ** 2).sum() - 9])
        x, state = mma_step(x, 2 * x, fval, np.array([2 * (x - a), 2 * (x - b)]), np.zeros(3),
                            np.full(3, 5.0), state, move=0.5)
    np.testing.assert_allclose(x, [2.0175, 1.7800, 1.2375], atol=2e-4)
    assert ((x - a) ** 2).sum() <= 9 + 1e-6 and ((x - b) ** 2).sum() <= 9 + 1e-6


def test_simp_run_improves_keeps_symmetry_and_fraction():
    from lib.design.topology_optimization import (TOSettings, binarize_at_fraction, optimize,
                                                  physical_density)

    hom = DensityHomogenizer(16, CASES[0])
    rng = np.random.default_rng(5)
    x0 = np.clip(0.395 + 0.1 * rng.standard_normal((16, 16)), 0, 1)
    settings = TOSettings(radius=1.5, betas=(1.0, 4.0), penalties=(1.0, 2.0), iterations_per_beta=15)
    result = optimize(hom, "case1", x0, settings)
    np.testing.assert_allclose(result.x, symmetrize(result.x), atol=1e-12)  # every update symmetric
    assert np.all(np.isfinite(result.objective))  # (with p continuation the start is not comparable)
    assert abs(result.fraction[-1] / 0.395 - 1) < 0.02
    assert np.array_equal(result.density, physical_density(result.x, settings, 4.0))
    img = binarize_at_fraction(result.density, 0.395)
    assert abs(img.mean() - 0.395) < 0.02 and np.array_equal(img, img.T)
    ref = PeriodicHomogenizer(16).homogenize(img, CASES[0])
    ex = engineering_constants(ref.stiffness)["Ex"]
    assert ex > 1.2 * hom.evaluate(np.full((16, 16), 0.395), gradients=False).values["Ex"]
    assert 1 <= result.iterations_to_within(0.01) <= len(result.objective)
    assert result.penalty[0] == 1.0 and result.penalty[-1] == 2.0 and hom.penalty == 2.0
    assert TOSettings().stages()[-1] == (3.0, 16.0)
    with pytest.raises(ValueError, match="unknown case"):
        optimize(hom, "case9", x0, settings)
    with pytest.raises(ValueError, match="fraction"):
        TOSettings(fraction=1.2)
    with pytest.raises(ValueError, match="penalties"):
        TOSettings(penalties=(0.5,))


# --- the study's helpers -----------------------------------------------------------------------
def test_starting_fields_and_limits():
    from lib import topology_study as ts

    for kind in ("uniform", "random", "structured"):
        x = ts.starting_field(kind, 32, 0.395, seed=1)
        assert x.shape == (32, 32) and x.min() >= 0 and x.max() <= 1
        assert abs(x.mean() - 0.395) < 0.02, kind
    design = (np.random.default_rng(0).random((128, 128)) < 0.4).astype(np.uint8)
    x = ts.starting_field("xai", 32, design=design)
    np.testing.assert_allclose(x, design.reshape(32, 4, 32, 4).mean(axis=(1, 3)))
    with pytest.raises(ValueError, match="needs the design"):
        ts.starting_field("xai", 32)
    with pytest.raises(ValueError, match="unknown start"):
        ts.starting_field("magic", 32)
    lim = ts.limits("case3")
    assert list(lim.values())[0] == pytest.approx(0.511 * 23.6e-6, rel=2e-3)
    assert ts.limits("case1")["any cell, one direction (Voigt)"] == pytest.approx(0.395 * 379.3e3 + 0.605 * 68.3e3)
    # a sample at the bound's own fraction scores 0, one above it > 0
    img = np.zeros((1, 10, 10))
    img[0, :4] = 1
    bound = ts.thermal_expansion_bounds(0.4, ts.MATERIAL_CASES["aluminium_foam"])[0]
    gap = ts.expansion_bound_gap(np.array([[bound, bound]]), img)
    assert gap[0] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="unknown profile"):
        ts.get_to_sizes("huge")


def test_run_case_relabels_and_keeps():
    from lib import topology_study as ts

    sizes = ts.TOSizes(16, ts.to.TOSettings(radius=1.5, betas=(1.0, 4.0), iterations_per_beta=6))
    runs = ts.run_case("case1", sizes, 32, xai_design=None, starts=("uniform", "xai"), seed=0)
    assert list(runs.results) == ["uniform"]  # no design: no warm start
    img = runs.designs["uniform"]
    assert img.shape == (32, 32) and abs(img.mean() - 0.395) < 0.01
    ref = PeriodicHomogenizer(32).homogenize(img, CASES[0])
    c = engineering_constants(ref.stiffness)
    np.testing.assert_allclose(runs.values["uniform"], [c["Ex"], c["Ey"]], rtol=1e-9)
    assert runs.best("max") == "uniform" and runs.kept("uniform")


def test_comparison_reports_no_share_where_to_does_not_beat_the_database():
    from lib import topology_study as ts

    row = {"case": "case3", "goal": "min", "database_best": 12.12e-6, "xai_best": 12.13e-6,
           "to_best": 12.13e-6, "to_start": "xai", "to_kept": True, "xai_share": float("nan"),
           "limits": {"lower α": 12.06e-6}}
    text = ts.format_comparison([row, {**row, "case": "case1", "goal": "max",
                                       "database_best": 141.5e3, "xai_best": 142.9e3,
                                       "to_best": 155.1e3, "xai_share": 1.4 / 13.6,
                                       "limits": {}}])
    assert "– (TO gains < 1 % on the database)" in text.splitlines()[2]
    assert "| 10 % |" in text.splitlines()[3] and "155.1 (xai)" in text
