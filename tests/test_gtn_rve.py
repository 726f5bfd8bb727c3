"""The periodic GTN RVE against exact answers: homogeneous material point, laminate along x."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lib.fe.gtn_material import FERRITE, MARTENSITE
from lib.fe.gtn_rve import (
    FractureCriteria,
    GTNRVE,
    LoadStepping,
    RVEResult,
    bbar_operator,
    first_crossing,
    material_point_tension,
)

STEP = 0.01
FIXED = LoadStepping(initial=STEP, maximum=STEP, grow=1.0, tolerance=1e-9)


def fixed_step_rve(size: int, max_strain: float) -> GTNRVE:
    return GTNRVE(size, criteria=FractureCriteria(mean_void_critical=0.9, max_strain=max_strain), stepping=FIXED)


def test_bbar_operator_reproduces_affine_fields_and_averages_volume():
    bbar, weights = bbar_operator(0.5)
    assert weights.sum() == pytest.approx(0.25)
    nodes = np.array([[0, 0], [0.5, 0], [0.5, 0.5], [0, 0.5]])
    grad = np.array([[0.01, 0.02], [-0.03, 0.005]])  # u = grad @ x
    u = (nodes @ grad.T).ravel()
    expected = [grad[0, 0], grad[1, 1], grad[0, 1] + grad[1, 0]]
    np.testing.assert_allclose(bbar @ u, np.tile(expected, (4, 1)), atol=1e-15)
    # volumetric strain is the same at every Gauss point
    bilinear = np.array([0, 0, 0, 0, 0.01, 0, 0, 0.0])  # one node moved: non-affine field
    volumetric = (bbar @ bilinear)[:, :2].sum(axis=1)
    np.testing.assert_allclose(volumetric, volumetric.mean(), atol=1e-15)


def test_uniform_ferrite_rve_follows_the_material_point():
    result = fixed_step_rve(4, max_strain=0.3).run(np.zeros((4, 4), np.uint8))
    assert result.status == "converged"
    sigma, lateral, voids = material_point_tension(FERRITE, result.strain[1:])
    np.testing.assert_allclose(result.stress[1:], sigma, rtol=1e-7)
    np.testing.assert_allclose(result.lateral_strain[1:], lateral, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(result.mean_void[1:], voids, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("size", [8, 32, 64, 128])
def test_laminate_along_x_is_the_mixture_of_its_layers(size):
    """Layers along x each stay homogeneous: same eps_xx, sigma_yy = 0, so the mean stress is
    the area-weighted mean of the two phases' plane-strain uniaxial curves — on every grid up
    to the paper's 128²."""
    img = np.zeros((size, size), np.uint8)
    img[size // 4: 5 * size // 8] = 1  # three martensite rows out of eight
    result = fixed_step_rve(size, max_strain=0.12).run(img)
    assert result.status == "converged"
    ferrite, lat_f, _ = material_point_tension(FERRITE, result.strain[1:])
    martensite, lat_m, _ = material_point_tension(MARTENSITE, result.strain[1:])
    fraction = 3 / 8
    np.testing.assert_allclose(result.stress[1:], fraction * martensite + (1 - fraction) * ferrite, rtol=1e-6)
    np.testing.assert_allclose(result.lateral_strain[1:], fraction * lat_m + (1 - fraction) * lat_f,
                               rtol=1e-5, atol=1e-9)


def test_crossing_interpolates_the_first_rise():
    x = np.array([0.0, 1.0, 2.0, 3.0])
    y = np.array([0.0, 0.2, 0.6, 0.4])
    assert first_crossing(x, y, 0.4) == pytest.approx(1.5)
    assert np.isnan(first_crossing(x, y, 0.7))


@pytest.mark.parametrize("img, message", [
    (np.zeros((8, 6)), "square"), (np.zeros((4, 4)), "8x8"), (np.full((8, 8), 3), "binary"),
])
def test_bad_structure_gives_a_clear_error(img, message):
    with pytest.raises(ValueError, match=message):
        GTNRVE(8).run(img)


def test_bad_criteria_are_rejected():
    with pytest.raises(ValueError, match="mean_void_critical"):
        FractureCriteria(mean_void_critical=0.0)


def test_stabilization_is_off_for_easy_runs_and_small_when_forced():
    """The viscous stabilization acts only on increments below ``stabilize_below``; forced on
    for a whole laminate run it moves the exact answer by far less than a percent and reports
    its (small) share of the work."""
    img = np.zeros((8, 8), np.uint8)
    img[2:5] = 1
    easy = fixed_step_rve(8, max_strain=0.05).run(img)
    assert easy.stabilization_energy_fraction == 0.0
    step = 1e-3
    forced = GTNRVE(8, criteria=FractureCriteria(mean_void_critical=0.9, max_strain=0.05),
                    stepping=LoadStepping(initial=step, maximum=step, grow=1.0, tolerance=1e-9,
                                          stabilize_below=2 * step)).run(img)
    assert 0 < forced.stabilization_energy_fraction < 1e-3
    ferrite, _, _ = material_point_tension(FERRITE, forced.strain[1:])
    martensite, _, _ = material_point_tension(MARTENSITE, forced.strain[1:])
    np.testing.assert_allclose(forced.stress[1:], 3 / 8 * martensite + 5 / 8 * ferrite, rtol=2e-3)


def test_no_damping_is_never_reported_as_switched_on():
    """With ``stabilization = 0`` small steps are only small steps: ``stabilized_from`` stays NaN
    (it marks where a damping came on, and none did) and no work is counted as numerical; with
    a damping the same steps switch it on at the first increment."""
    img = np.zeros((4, 4), np.uint8)
    img[1:3] = 1
    step = 1e-3
    runs = {eta: GTNRVE(4, criteria=FractureCriteria(mean_void_critical=0.9, max_strain=0.01),
                        stepping=LoadStepping(initial=step, maximum=step, grow=1.0, tolerance=1e-9,
                                              stabilize_below=2 * step, stabilization=eta)).run(img)
            for eta in (0.0, 3e-3)}
    assert np.isnan(runs[0.0].stabilized_from)
    assert runs[0.0].stabilization_energy_fraction == 0.0
    assert runs[0.0].nonphysical_share(0.01) == 0.0
    assert runs[3e-3].stabilized_from == 0.0
    assert runs[3e-3].stabilization_energy_fraction > 0.0
    ferrite, _, _ = material_point_tension(FERRITE, runs[0.0].strain[1:])
    martensite, _, _ = material_point_tension(MARTENSITE, runs[0.0].strain[1:])
    np.testing.assert_allclose(runs[0.0].stress[1:], 0.5 * martensite + 0.5 * ferrite, rtol=1e-6)


def test_adaptive_stabilization_damps_less_and_keeps_the_exact_answers():
    """Forced on from the start (as above), the adaptive stabilization (``stabilization_floor``)
    lowers the damping wherever Newton converges easily: a smaller share of the work and a
    laminate closer to the exact mixture; the uniform RVE (no fluctuation to damp) stays exact."""
    img = np.zeros((8, 8), np.uint8)
    img[2:5] = 1
    criteria = FractureCriteria(mean_void_critical=0.9, max_strain=0.05)
    runs, errors = {}, {}
    for floor in (1.0, 1e-3):
        stepping = LoadStepping(initial=1e-3, maximum=1e-3, grow=1.0, tolerance=1e-9,
                                stabilize_below=2e-3, stabilization_floor=floor)
        run = runs[floor] = GTNRVE(8, criteria=criteria, stepping=stepping).run(img)
        ferrite, _, _ = material_point_tension(FERRITE, run.strain[1:])
        martensite, _, _ = material_point_tension(MARTENSITE, run.strain[1:])
        errors[floor] = np.abs(run.stress[1:] / (3 / 8 * martensite + 5 / 8 * ferrite) - 1).max()
        uniform = GTNRVE(4, criteria=criteria, stepping=stepping).run(np.zeros((4, 4), np.uint8))
        sigma, _, _ = material_point_tension(FERRITE, uniform.strain[1:])
        np.testing.assert_allclose(uniform.stress[1:], sigma, rtol=1e-7)
    assert 0 < runs[1e-3].stabilization_energy_fraction < runs[1.0].stabilization_energy_fraction / 5
    assert errors[1e-3] < min(errors[1.0] / 2, 5e-5)
    with pytest.raises(ValueError, match="stabilization_floor"):
        LoadStepping(stabilization_floor=0.0)
    with pytest.raises(ValueError, match="stabilization_floor"):
        LoadStepping(stabilization_floor=1.5)


def test_laminate_of_mixture_phases_is_the_mean_of_their_material_points():
    """The multi-phase path (phase_mixture coarsening): rows of mixture phases along x are each
    homogeneous, so the mean stress is the row mean of the phases' material-point curves."""
    from lib.fe.gtn_material import mixture_phases

    phases = mixture_phases(FERRITE, MARTENSITE, 5)  # shares 0, 1/4, 1/2, 3/4, 1
    img = np.zeros((8, 8), np.uint8)
    img[[1, 2, 5]] = [[1], [3], [4]]
    rve = GTNRVE(8, phases=phases, criteria=FractureCriteria(mean_void_critical=0.9, max_strain=0.1),
                 stepping=FIXED)
    result = rve.run(img)
    assert result.status == "converged"
    curves = [material_point_tension(phases[k], result.strain[1:])[0] for k in img[:, 0]]
    np.testing.assert_allclose(result.stress[1:], np.mean(curves, axis=0), rtol=1e-6)
    with pytest.raises(ValueError, match="phase indices 0..4"):
        rve.run(np.full((8, 8), 5, np.uint8))


def test_mean_void_history_starts_at_the_initial_porosity():
    img = np.zeros((8, 8), np.uint8)
    img[2:5] = 1
    result = fixed_step_rve(8, max_strain=0.02).run(img)
    assert result.mean_void[0] == pytest.approx(3 / 8 * MARTENSITE.f0 + 5 / 8 * FERRITE.f0, rel=1e-12)
    assert np.all(np.diff(result.mean_void) >= 0)


def test_hill_check_agrees_with_dense_eigenvalues_and_stays_off_while_hardening():
    """hill_strain is the first converged increment whose K_uu has an indefinite symmetric part:
    checked against numpy's dense eigenvalues of the same matrix at every increment, on a
    uniform ferrite RVE pulled past its material-point peak (E_xx ~ 0.53) until its softening
    admits a non-uniform mode. While the material hardens (to 0.3) the check never fires."""
    assert np.isnan(fixed_step_rve(4, max_strain=0.3).run(np.zeros((4, 4), np.uint8)).hill_strain)
    rve = GTNRVE(8, criteria=FractureCriteria(mean_void_critical=0.9, load_drop=0.9, max_strain=1.0),
                 stepping=LoadStepping(initial=0.02, maximum=0.02, grow=1.0, tolerance=1e-9))
    dense_min: list[float] = []
    check = rve.hill_indefinite

    def spy(tangent):
        matrix = rve._tangent(tangent)[0].toarray()
        dense_min.append(np.linalg.eigvalsh(0.5 * (matrix + matrix.T)).min())
        return check(tangent)

    rve.hill_indefinite = spy
    result = rve.run(np.zeros((8, 8), np.uint8))
    first = int(np.argmax(np.asarray(dense_min) < 0))
    assert dense_min[first] < 0 and min(dense_min[:first]) > 0
    assert result.hill_strain == pytest.approx(result.strain[first + 1])
    assert result.hill_strain > result.strain[np.argmax(result.stress)]  # past the peak
    rve.hill_indefinite = check
    off = GTNRVE(8, criteria=rve.criteria, stepping=rve.stepping, bifurcation_check=False)
    unchecked = off.run(np.zeros((8, 8), np.uint8))
    assert np.isnan(unchecked.hill_strain)
    np.testing.assert_array_equal(unchecked.stress, result.stress)  # a diagnostic only


@pytest.mark.parametrize("options", [{"void_increment": 1e-4}, {"bifurcation_check": False},
                                     {"line_search": 4}],
                         ids=["void_increment", "no_bifurcation_check", "line_search"])
def test_exact_checks_hold_with_every_solver_option(options):
    """The uniform RVE and the laminate along x with each solver option (adaptive steps on the
    void growth; the Hill check off; the Newton line search), against the material points."""
    stepping = LoadStepping(initial=0.005, maximum=0.01, tolerance=1e-9,
                            void_increment=options.get("void_increment", 0.0),
                            line_search=options.get("line_search", 0))
    check = options.get("bifurcation_check", True)
    criteria = FractureCriteria(mean_void_critical=0.9, max_strain=0.12)
    uniform = GTNRVE(4, criteria=criteria, stepping=stepping, bifurcation_check=check).run(
        np.zeros((4, 4), np.uint8))
    sigma, _, voids = material_point_tension(FERRITE, uniform.strain[1:])
    np.testing.assert_allclose(uniform.stress[1:], sigma, rtol=1e-7)
    np.testing.assert_allclose(uniform.mean_void[1:], voids, rtol=1e-6)
    img = np.zeros((8, 8), np.uint8)
    img[2:5] = 1
    laminate = GTNRVE(8, criteria=criteria, stepping=stepping, bifurcation_check=check).run(img)
    ferrite, _, _ = material_point_tension(FERRITE, laminate.strain[1:])
    martensite, _, _ = material_point_tension(MARTENSITE, laminate.strain[1:])
    np.testing.assert_allclose(laminate.stress[1:], 3 / 8 * martensite + 5 / 8 * ferrite, rtol=1e-6)


def test_void_increment_refines_the_steps_where_voids_grow():
    """With ``void_increment`` the mean void fraction grows by about that much per increment
    once voids grow fast, instead of by whatever the iteration-count control allows."""
    img = np.zeros((8, 8), np.uint8)
    img[2:5] = 1
    criteria = FractureCriteria(mean_void_critical=0.004, max_strain=0.2)
    plain = GTNRVE(8, criteria=criteria).run(img)
    fine = GTNRVE(8, criteria=criteria, stepping=LoadStepping(void_increment=2e-5)).run(img)
    assert fine.n_increments > 2 * plain.n_increments
    growth = np.diff(fine.mean_void)[5:]
    assert np.median(growth) < 2 * 2e-5 < np.max(np.diff(plain.mean_void))


# --- rate-dependent matrix (GTNParameters.rate_sensitivity > 0) -------------------------------
def _rate(prm, m, rate=1e-3):
    return dataclasses.replace(prm, rate_sensitivity=m, reference_rate=rate)


@pytest.mark.parametrize("strain_rate", [1e-3, 1e-1])
def test_rate_dependent_steady_flow_stress_is_the_rate_law(strain_rate):
    """A non-porous, non-hardening rate-dependent point pulled at a constant rate reaches the
    steady flow stress of the overstress law: plane-strain incompressible flow has ebar_rate =
    2/sqrt(3) E_rate and sigma_xx = 2/sqrt(3) q, so sigma_xx = 2/sqrt(3) sigma_y (1 + 2/sqrt(3)
    E_rate / reference_rate)^m, exactly."""
    m = 0.05
    prm = dataclasses.replace(FERRITE, n=0.0, f0=0.0, fN=0.0, rate_sensitivity=m, reference_rate=1e-3)
    strains = np.linspace(0.0025, 0.3, 120)
    sigma, _, voids = material_point_tension(prm, strains, strain_rate=strain_rate)
    expected = 2 / np.sqrt(3) * prm.sigma_y * (1 + 2 / np.sqrt(3) * strain_rate / 1e-3) ** m
    np.testing.assert_allclose(sigma[-20:], expected, rtol=1e-6)
    assert np.all(voids == 0.0)


def test_exact_checks_hold_for_rate_dependent_phases():
    """The uniform RVE and the laminate along x with rate-dependent ferrite and martensite
    (m = 0.02) against their material points pulled at the same rate and increments."""
    phases = (_rate(FERRITE, 0.02), _rate(MARTENSITE, 0.02))
    criteria = FractureCriteria(mean_void_critical=0.9, max_strain=0.12)
    stepping = LoadStepping(initial=0.005, maximum=0.01, tolerance=1e-9)
    uniform = GTNRVE(4, phases=phases, criteria=criteria, stepping=stepping, strain_rate=1e-2).run(
        np.zeros((4, 4), np.uint8))
    sigma, _, voids = material_point_tension(phases[0], uniform.strain[1:], strain_rate=1e-2)
    np.testing.assert_allclose(uniform.stress[1:], sigma, rtol=1e-7)
    np.testing.assert_allclose(uniform.mean_void[1:], voids, rtol=1e-6)
    static, _, _ = material_point_tension(FERRITE, uniform.strain[1:])
    assert np.all(sigma[-5:] > 1.01 * static[-5:])  # the rate raised the flow stress
    img = np.zeros((8, 8), np.uint8)
    img[2:5] = 1
    laminate = GTNRVE(8, phases=phases, criteria=criteria, stepping=stepping).run(img)
    ferrite, _, _ = material_point_tension(phases[0], laminate.strain[1:])
    martensite, _, _ = material_point_tension(phases[1], laminate.strain[1:])
    np.testing.assert_allclose(laminate.stress[1:], 3 / 8 * martensite + 5 / 8 * ferrite, rtol=1e-6)


def test_rate_dependent_labels_tend_to_the_rate_independent_ones():
    """A dual-phase RVE: as m -> 0 the labels converge to the rate-independent labels."""
    rng = np.random.default_rng(3)
    img = (rng.random((16, 16)) < 0.3).astype(np.uint8)
    criteria = FractureCriteria(mean_void_critical=0.005)
    base = GTNRVE(16, criteria=criteria).run(img)
    assert base.status == "converged" and np.isfinite(base.fracture_strain)
    gaps = []
    for m in (1e-2, 1e-4):
        run = GTNRVE(16, phases=(_rate(FERRITE, m), _rate(MARTENSITE, m)), criteria=criteria).run(img)
        assert run.status == "converged"
        gaps.append((abs(run.fracture_strain / base.fracture_strain - 1),
                     abs(run.tensile_strength / base.tensile_strength - 1)))
    (fs_1, ts_1), (fs_2, ts_2) = gaps
    assert ts_1 > 1e-3 and ts_2 < 1e-3 and ts_2 < 0.05 * ts_1
    assert fs_2 < 0.01


NONLOCAL = {"nonlocal_length": 0.05, "nonlocal_tolerance": 1e-11}


@pytest.mark.parametrize("line_search", [0, 4])
def test_exact_checks_hold_for_the_nonlocal_void_growth(line_search):
    """The staggered nonlocal RVE (frozen-porosity mechanics <-> averaged void growth) on the
    exact answers, with and without the Newton line search: the uniform RVE is the material
    point and the laminate along x the mixture of its layers (each layer's growth is uniform,
    and the average stays within a phase)."""
    criteria = FractureCriteria(mean_void_critical=0.9, max_strain=0.3)
    stepping = dataclasses.replace(FIXED, line_search=line_search)
    uniform = GTNRVE(4, criteria=criteria, stepping=stepping, **NONLOCAL).run(np.zeros((4, 4), np.uint8))
    assert uniform.status == "converged" and uniform.n_staggers > uniform.n_increments
    sigma, lateral, voids = material_point_tension(FERRITE, uniform.strain[1:])
    np.testing.assert_allclose(uniform.stress[1:], sigma, rtol=1e-7)
    np.testing.assert_allclose(uniform.mean_void[1:], voids, rtol=1e-6)
    img = np.zeros((8, 8), np.uint8)
    img[2:5] = 1
    laminate = GTNRVE(8, criteria=dataclasses.replace(criteria, max_strain=0.12), stepping=stepping,
                      **NONLOCAL).run(img)
    ferrite, _, _ = material_point_tension(FERRITE, laminate.strain[1:])
    martensite, _, _ = material_point_tension(MARTENSITE, laminate.strain[1:])
    np.testing.assert_allclose(laminate.stress[1:], 3 / 8 * martensite + 5 / 8 * ferrite, rtol=1e-6)


def test_nonlocal_void_growth_tends_to_the_local_model_as_its_length_vanishes():
    """Same fixed increments on a heterogeneous 8² cell: with l -> 0 the staggered scheme's fixed
    point is the local implicit update, so the histories agree; a finite l spreads the growth
    and changes them."""
    img = np.zeros((8, 8), np.uint8)
    img[2:5, 1:4] = 1  # a martensite island: voids concentrate at its corners
    criteria = FractureCriteria(mean_void_critical=0.9, max_strain=0.1)
    local = GTNRVE(8, criteria=criteria, stepping=FIXED).run(img)
    tiny = GTNRVE(8, criteria=criteria, stepping=FIXED, nonlocal_length=1e-6,
                  nonlocal_tolerance=1e-12).run(img)
    wide = GTNRVE(8, criteria=criteria, stepping=FIXED, **NONLOCAL).run(img)
    assert local.status == tiny.status == wide.status == "converged"
    np.testing.assert_allclose(tiny.stress, local.stress, rtol=1e-7, atol=1e-6)
    np.testing.assert_allclose(tiny.mean_void, local.mean_void, rtol=1e-6)
    np.testing.assert_allclose(tiny.void_map, local.void_map, rtol=1e-5, atol=1e-9)
    assert wide.void_map.max() < 0.9 * local.void_map.max()  # the corner peak is spread


@pytest.fixture(scope="module")
def overshooting_nonlocal_runs() -> dict[str, RVEResult]:
    """A dual-phase 16² cell with the nonlocal growth, run with the default Newton, with the
    line search and with ``stall_after=1``: past the fracture strain the plain frozen-porosity
    Newton overshoots and the step control cuts increments."""
    from scipy.ndimage import gaussian_filter
    field = gaussian_filter(np.random.default_rng(6).standard_normal((16, 16)), 1.5, mode="wrap")
    img = (field > np.quantile(field, 0.7)).astype(np.uint8)
    criteria = FractureCriteria(mean_void_critical=0.005, max_strain=0.2)
    settings = {"plain": LoadStepping(), "searched": LoadStepping(line_search=3),
                "impatient": LoadStepping(stall_after=1)}
    return {name: GTNRVE(16, criteria=criteria, nonlocal_length=0.0625, stepping=st).run(img)
            for name, st in settings.items()}


def test_line_search_saves_the_cut_increments_and_keeps_the_labels(overshooting_nonlocal_runs):
    """Back-tracking the corrections that raise the residual converges the increments the plain
    Newton loses at full size, with fewer iterations, and the labels before that (fracture
    strain, strength) are the same equilibria."""
    plain, searched = overshooting_nonlocal_runs["plain"], overshooting_nonlocal_runs["searched"]
    assert plain.status == searched.status == "converged"
    assert plain.n_cuts >= 1 and searched.n_cuts == 0
    assert searched.n_newton < 0.9 * plain.n_newton
    assert np.isfinite(plain.fracture_strain)
    np.testing.assert_allclose(searched.fracture_strain, plain.fracture_strain, rtol=1e-6)
    np.testing.assert_allclose(searched.tensile_strength, plain.tensile_strength, rtol=1e-6)


def test_stall_after_decides_when_a_growing_residual_cuts_the_increment(overshooting_nonlocal_runs):
    """``stall_after=1`` gives up at the first growing residual, so increments the default (3)
    finishes are cut (measured 5 cuts against 2, 604 Newton iterations against 409); the
    converged increments are equilibria to the same tolerance, so the labels agree."""
    plain, impatient = overshooting_nonlocal_runs["plain"], overshooting_nonlocal_runs["impatient"]
    assert impatient.status == "converged"
    assert impatient.n_cuts > plain.n_cuts and impatient.n_newton > plain.n_newton
    np.testing.assert_allclose(impatient.fracture_strain, plain.fracture_strain, rtol=1e-5)
    np.testing.assert_allclose(impatient.tensile_strength, plain.tensile_strength, rtol=1e-5)


def test_line_search_and_stall_options_are_validated():
    for bad in (-1, 1.5):
        with pytest.raises(ValueError, match="line_search"):
            LoadStepping(line_search=bad)
    with pytest.raises(ValueError, match="stall_after"):
        LoadStepping(stall_after=0)


def test_nonlocal_options_are_validated():
    with pytest.raises(ValueError, match="nonlocal_length"):
        GTNRVE(4, nonlocal_length=-0.1)
    with pytest.raises(ValueError, match="max_stagger"):
        GTNRVE(4, nonlocal_length=0.1, max_stagger=0)


def _creeping_increment(f_start: float, patience: int, monkeypatch) -> tuple:
    """One staggered increment of a 4² ferrite RVE (E_xx 0.003, plastic) whose point 0 starts
    at porosity ``f_start`` and whose nonlocal average adds 1e-4 more growth there at every
    update: the creep towards fF of a point whose growth feeds itself (128² #206), made exact."""
    import lib.fe.gtn_rve as gtn_rve
    from lib.fe.gtn_material import GTNState

    monkeypatch.setattr(gtn_rve, "NEAR_FAILURE_PATIENCE", patience)
    rve = GTNRVE(4, nonlocal_length=0.05, stepping=LoadStepping(line_search=3))
    phase = np.zeros(rve.fe.n_cells * 4, np.int64)
    state = GTNState.initial(phase.size, rve.phases, phase)
    state.f[0] = f_start
    calls = []

    def creeping_average(growth):
        calls.append(1)
        out = growth.copy()
        out[0] += 1e-4 * len(calls)
        return out

    f_fail = np.full(phase.size, FERRITE.fF)
    f_near = np.full(phase.size, FERRITE.fc + 0.95 * (FERRITE.fF - FERRITE.fc))
    macro = np.array([0.003, -0.0015, 0.0])
    seconds = {"constitutive": 0.0, "assembly": 0.0, "solve": 0.0}
    out = rve._staggered(np.zeros(rve.fe.n_dofs), np.zeros(rve.fe.n_dofs), macro, state, state.f.copy(),
                         phase, 0.0, 3.0, creeping_average, f_fail, f_near, seconds)
    return out[0], out[5], out[7]


def test_a_point_creeping_towards_fF_past_f_near_is_failed_and_the_increment_settles(monkeypatch):
    """The nonlocal increment's rule for a point whose porosity keeps growing by more than the
    tolerance at every update: past fc + 0.95 (fF - fc) (the kernel's rule for a local Newton
    that fails there) it is failed after ``NEAR_FAILURE_PATIENCE`` updates and the increment
    settles; without the rule, or below that porosity, the increment never settles."""
    assert FERRITE.f_near == pytest.approx(0.245, rel=1e-12)  # fc 0.15, fF 0.25
    ok, update, staggers = _creeping_increment(0.246, 5, monkeypatch)
    assert ok and 5 <= staggers <= 8
    assert update.state.failed[0] and update.state.f[0] == FERRITE.fF
    assert not update.state.failed[1:].any()
    ok, _, staggers = _creeping_increment(0.246, 10**9, monkeypatch)
    assert not ok and staggers == 30
    ok, update, staggers = _creeping_increment(0.20, 5, monkeypatch)  # below f_near: not failed
    assert not ok and staggers == 30 and not update.state.failed[0]


def test_a_closing_void_cannot_take_the_nonlocal_porosity_predictor_below_zero():
    """Regression, a real structure (the default dataset's #206, a rectangle, coarsened to 32²,
    nonlocal l = 1/32, default Newton): at E_xx = 0.1207 the staggered increment's linear
    porosity predictor f + (df/dE_xx) ΔE_xx of a point whose void was closing came out at
    -1.4e-4 and the run raised 'GTNState.f must lie in [0, 1)'. Clipped to [0, fF] it runs
    on, with every porosity in range and the fracture strain it had reached before."""
    from lib.fe.fracture_labels import coarsen_images, profile_criteria
    from lib.microstructures.dual_phase import generate_dual_phase

    image, _ = generate_dual_phase("rectangle", 6998507319403454402)
    criteria = dataclasses.replace(profile_criteria("default"), max_strain=0.135)
    result = GTNRVE(32, criteria=criteria, nonlocal_length=1 / 32).run(
        coarsen_images(image[None], 32)[0])
    assert result.status == "converged"
    assert result.strain[-1] == pytest.approx(0.135, abs=1e-12)  # past the old stop at 0.1207
    assert result.fracture_strain == pytest.approx(0.0404, rel=0.01)
    assert np.nanmin(result.void_map) >= 0.0
