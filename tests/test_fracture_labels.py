"""GTN fracture labels (SPEC A2): FE-grid coarsening, post-hoc criteria, the resumable stage,
failed samples recorded as failed and never as fracture strains."""
from __future__ import annotations

import numpy as np
import pytest

from lib.fe import fracture_labels as fl
from lib.fe.fracture_labels import (
    coarsen,
    coarsen_images,
    criterion_sensitivity,
    fracture_labels,
    fracture_strain_at,
    label_structure,
    label_structures,
    load_drop_strain_at,
)
from lib.fe.gtn_rve import NONLOCAL_SCHEME_VERSION, GTNRVE, FractureCriteria, RVEResult
from lib.profiles import get_profile
from lib.stages import cached_stage, load_stage, stage_attrs

CRITERIA = FractureCriteria(mean_void_critical=0.005, load_drop=0.2)


def tiny_structures() -> np.ndarray:
    """Four 16x16 dual-phase structures: laminate along x, across x, a square grain, a checker."""
    imgs = np.zeros((4, 16, 16), np.uint8)
    imgs[0, 4:10] = 1                     # layers along x (the load direction)
    imgs[1, :, 4:10] = 1                  # layers across x
    imgs[2, 4:12, 4:12] = 1               # one square grain
    imgs[3] = np.kron(np.indices((4, 4)).sum(0) % 2, np.ones((4, 4))).astype(np.uint8)
    return imgs


def make_database(images: np.ndarray):
    return cached_stage("smoke", "test_dual_phase_db", {"n": len(images), "sum": int(images.sum())},
                        lambda: {"images": images})


# --- coarsening --------------------------------------------------------------------------------
def test_coarsen_is_exact_on_block_images_and_identity_at_full_size():
    rng = np.random.default_rng(0)
    coarse = (rng.random((8, 8)) < 0.4).astype(np.uint8)
    fine = np.kron(coarse, np.ones((4, 4), np.uint8))
    np.testing.assert_array_equal(coarsen(fine, 8), coarse)
    np.testing.assert_array_equal(coarsen(fine, 32), fine)
    np.testing.assert_array_equal(coarsen_images(np.stack([fine, 1 - fine]), 8),
                                  np.stack([coarse, 1 - coarse]))


def test_coarsen_rule_block_mean_at_least_half_is_martensite():
    img = np.zeros((4, 4), np.uint8)
    img[0, 0] = img[0, 1] = 1       # block (0, 0): mean 0.5 -> martensite
    img[2, 2] = 1                   # block (1, 1): mean 0.25 -> ferrite
    img[0, 2:4] = img[1, 2] = 1     # block (0, 1): mean 0.75 -> martensite
    assert coarsen(img, 2).tolist() == [[1, 1], [0, 0]]


@pytest.mark.parametrize("img, grid, message", [
    (np.zeros((16, 16), np.uint8), 5, "does not divide"),
    (np.zeros((16, 16), np.uint8), 32, r"\[2, 16\]"),
    (np.zeros((16, 16), np.uint8), 8.0, "integer"),
    (np.zeros((16, 8), np.uint8), 4, "square"),
    (np.full((16, 16), 2, np.uint8), 4, "binary"),
])
def test_coarsen_rejects_bad_input_clearly(img, grid, message):
    with pytest.raises(ValueError, match=message):
        coarsen(img, grid)


def test_label_structures_rejects_bad_images_before_running():
    with pytest.raises(ValueError, match="binary"):
        label_structures(np.full((2, 16, 16), 0.5), 8, n_jobs=1)
    with pytest.raises(ValueError, match="shape"):
        label_structures(np.zeros((16, 16), np.uint8), 8, n_jobs=1)
    with pytest.raises(ValueError, match="divide"):
        label_structures(np.zeros((1, 16, 16), np.uint8), 6, n_jobs=1)


# --- post-hoc criteria on hand-made histories --------------------------------------------------
def test_fracture_strain_at_interpolates_the_first_crossing():
    strain = np.array([0.0, 0.1, 0.2, 0.3])
    void = np.array([0.0, 0.001, 0.003, 0.011])
    assert fracture_strain_at(strain, void, 0.002) == pytest.approx(0.15)
    assert fracture_strain_at(strain, void, 0.007) == pytest.approx(0.25)
    assert np.isnan(fracture_strain_at(strain, void, 0.02))
    # padded stack: NaN padding, explicit lengths, an empty (failed-to-start) row
    padded = np.full((3, 6), np.nan)
    padded_void = np.full((3, 6), np.nan)
    padded[0, :4], padded_void[0, :4] = strain, void
    padded[1, :2], padded_void[1, :2] = [0.0, 0.5], [0.0, 0.004]
    out = fracture_strain_at(padded, padded_void, 0.002, length=[4, 2, 0])
    np.testing.assert_allclose(out, [0.15, 0.25, np.nan])
    np.testing.assert_allclose(fracture_strain_at(padded, padded_void, 0.002), out)  # NaN-found lengths
    with pytest.raises(ValueError, match="mean_void_critical"):
        fracture_strain_at(strain, void, 0.0)


def test_load_drop_strain_at_uses_the_running_peak():
    strain = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    stress = np.array([0.0, 500.0, 440.0, 600.0, 500.0, 300.0])  # a 12 % dip, then a new peak
    assert load_drop_strain_at(strain, stress, 0.1) == pytest.approx(0.1 + 0.1 * 50 / 60)
    # 20 % below the running peak: 480 after the peak of 600, between 0.4 (500) and 0.5 (300)
    assert load_drop_strain_at(strain, stress, 0.2) == pytest.approx(0.4 + 0.1 * 20 / 200)
    assert np.isnan(load_drop_strain_at(strain, stress, 0.6))
    assert np.isnan(load_drop_strain_at(strain[:2], stress[:2], 0.1))
    with pytest.raises(ValueError, match="drop"):
        load_drop_strain_at(strain, stress, 1.0)


# --- real runs on tiny grids -------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_labels():
    return label_structures(tiny_structures(), 8, CRITERIA, n_jobs=1)


def test_labels_agree_with_the_rve_and_with_the_post_hoc_functions(tiny_labels):
    imgs = coarsen_images(tiny_structures(), 8)
    result = GTNRVE(8, criteria=CRITERIA).run(imgs[2])
    lab = tiny_labels
    assert lab["void_map"].shape == (4, 8, 8) and lab["void_map"].dtype == np.float32
    assert lab["history_strain"].shape == (4, fl.HISTORY_LENGTH)
    assert lab["status"][2] == "converged" and lab["converged"][2]
    assert lab["fracture_strain"][2] == pytest.approx(result.fracture_strain, rel=1e-9)
    assert lab["load_drop_strain"][2] == pytest.approx(result.load_drop_strain, rel=1e-9)
    assert lab["tensile_strength"][2] == pytest.approx(result.tensile_strength, rel=1e-9)
    assert lab["n_increments"][2] == result.n_increments
    assert lab["history_length"][2] == result.n_increments + 1
    np.testing.assert_allclose(lab["void_map"][2], result.void_map, rtol=1e-6)
    # the stored histories give back the stored labels
    k = lab["history_length"]
    np.testing.assert_allclose(
        fracture_strain_at(lab["history_strain"], lab["history_mean_void"], 0.005, k),
        lab["fracture_strain"], rtol=1e-12)
    np.testing.assert_allclose(
        load_drop_strain_at(lab["history_strain"], lab["history_stress"], 0.2, k),
        lab["load_drop_strain"], rtol=1e-12)
    np.testing.assert_allclose(lab["fe_martensite_fraction"], imgs.mean(axis=(1, 2)))
    # a lower threshold is reached earlier, in every sample
    sens = criterion_sensitivity(lab, 0.005, 0.2)
    ok = np.isfinite(lab["fracture_strain"])
    assert ok.all()
    assert np.all(sens["fracture_strain_half"][ok] <= lab["fracture_strain"][ok])


def test_laminate_along_x_outlasts_laminate_across_x(tiny_labels):
    """Layers along the load share its strain (the hard layer carries, the soft one keeps
    hardening); layers across it localize in the ferrite: the paper's ordering."""
    fs = tiny_labels["fracture_strain"]
    assert fs[0] > fs[1]


# --- failed samples ----------------------------------------------------------------------------
def _fake_result(n: int, stop_strain: float, void_end: float, status: str, size: int = 8) -> RVEResult:
    strain = np.linspace(0.0, stop_strain, n)
    stress = 800.0 * np.sqrt(strain / stop_strain)  # still rising: no peak reached
    return RVEResult(strain=strain, stress=stress, lateral_strain=-0.4 * strain,
                     mean_void=np.linspace(0.0, void_end, n), fracture_strain=0.123,
                     load_drop_strain=float("nan"), tensile_strength=float(stress.max()),
                     void_map=np.zeros((size, size)), status=status, n_increments=n - 1,
                     n_newton=3 * n, n_cuts=7, seconds={"constitutive": 0.1})


def test_failed_runs_are_recorded_and_never_counted_as_fracture(monkeypatch):
    original = GTNRVE.run

    def run(self, img):
        marker = int(img.sum())
        if marker == 1:   # fails before f̄_crit
            return _fake_result(11, 0.05, 0.002, "failed: load step below 1e-05 at E_xx = 0.0500")
        if marker == 2:   # solver raises
            raise FloatingPointError("singular matrix")
        if marker == 3:   # fails after f̄_crit (on its way to the load drop)
            return _fake_result(11, 0.2, 0.01, "failed: load step below 1e-05 at E_xx = 0.2000")
        return original(self, img)

    monkeypatch.setattr(GTNRVE, "run", run)
    imgs = np.zeros((4, 8, 8), np.uint8)
    imgs[0, 2:4] = 1  # a real run: a laminate along x
    imgs[1, 0, 0] = 1
    imgs[2, 0, :2] = 1
    imgs[3, 0, :3] = 1
    lab = label_structures(imgs, 8, CRITERIA, n_jobs=1)
    assert lab["status"][0] == "converged" and np.isfinite(lab["fracture_strain"][0])
    # failed before f̄_crit: status kept, strain reached, no fracture strain, no strength
    assert lab["status"][1].startswith("failed: load step below")
    assert not lab["converged"][1]
    assert np.isnan(lab["fracture_strain"][1]) and np.isnan(lab["tensile_strength"][1])
    assert lab["strain_reached"][1] == pytest.approx(0.05)
    assert lab["n_cuts"][1] == 7 and lab["history_length"][1] == 11
    # an exception is a failed sample with its reason, not a crash of the run
    assert lab["status"][2] == "failed: FloatingPointError: singular matrix"
    assert not lab["converged"][2] and np.isnan(lab["fracture_strain"][2])
    assert np.isnan(lab["strain_reached"][2]) and lab["history_length"][2] == 0
    assert np.isnan(lab["void_map"][2]).all()
    # failed after reaching f̄_crit: the crossing came from converged increments, so it counts
    assert not lab["converged"][3]
    assert lab["fracture_strain"][3] == pytest.approx(0.1)
    assert np.isnan(lab["load_drop_strain"][3])
    # shares as the notebook reports them
    rows = fl.category_summary(lab, np.zeros(4, int), np.zeros(4), ["only"])
    assert rows[0]["failed_share"] == pytest.approx(0.75)
    assert rows[0]["unlabelled_share"] == pytest.approx(0.5)


# --- the stage ---------------------------------------------------------------------------------
def test_stage_runs_caches_and_states_its_grid(tmp_study_dirs, monkeypatch, tiny_labels):
    profile = get_profile("smoke", label_chunk=2, n_jobs=1, fe_grid=8)
    database = make_database(tiny_structures())
    path = fracture_labels(profile, database)
    labels = load_stage(path)
    assert labels["status"].tolist() == tiny_labels["status"].tolist()
    for key in ("fracture_strain", "tensile_strength", "void_map", "history_mean_void"):
        np.testing.assert_allclose(labels[key], tiny_labels[key], rtol=1e-12, err_msg=key)
    attrs = stage_attrs(path)
    assert attrs["fe_grid"] == 8 and attrs["mean_void_critical"] == 0.005
    assert attrs["criteria"]["load_drop"] == 0.2
    assert [p["name"] for p in attrs["phases"]] == ["ferrite", "martensite"]
    assert attrs["params"]["grid"] == 8 and "block mean" in attrs["coarsening"]
    assert fl.stage_description(path)["fe_grid"] == 8

    def boom(*args, **kwargs):
        raise AssertionError("a cached stage must not run again")

    monkeypatch.setattr(fl, "label_structures", boom)
    assert fracture_labels(profile, database) == path
    # another grid is another stage
    monkeypatch.undo()
    other = fracture_labels(get_profile("smoke", label_chunk=4, n_jobs=1, fe_grid=4), database)
    assert other != path and stage_attrs(other)["fe_grid"] == 4
    assert load_stage(other)["void_map"].shape == (4, 4, 4)


def test_interrupted_stage_resumes_without_redoing_finished_chunks(tmp_study_dirs, monkeypatch,
                                                                    tiny_labels):
    profile = get_profile("smoke", label_chunk=2, n_jobs=1, fe_grid=8)
    database = make_database(tiny_structures())
    original = fl.label_structures
    calls = []

    def interrupted(images, *args, **kwargs):
        calls.append(len(images))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(images, *args, **kwargs)

    monkeypatch.setattr(fl, "label_structures", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fracture_labels(profile, database, progress=False)
    chunks = list((tmp_study_dirs["data"] / "smoke").glob("fracture_labels-*.chunks/chunk_*.h5"))
    assert len(chunks) == 1

    def counting(images, *args, **kwargs):
        calls.append(len(images))
        return original(images, *args, **kwargs)

    calls.clear()
    monkeypatch.setattr(fl, "label_structures", counting)
    labels = load_stage(fracture_labels(profile, database, progress=False))
    assert calls == [2]  # only the unfinished chunk
    for key in ("fracture_strain", "load_drop_strain", "void_map", "history_stress"):
        np.testing.assert_allclose(labels[key], tiny_labels[key], rtol=1e-12, err_msg=key)


def test_stage_needs_an_existing_dataset(tmp_study_dirs, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        fracture_labels("smoke", tmp_path / "nothing.h5")


def test_figures_draw_from_the_labels(tiny_labels):
    import matplotlib.pyplot as plt

    from lib import plots

    category, fraction = np.array([0, 0, 1, 3]), tiny_labels["fe_martensite_fraction"]
    sens = criterion_sensitivity(tiny_labels, 0.005, 0.2)
    figures = [
        plots.plot_fracture_strain_vs_fraction(
            fraction, tiny_labels["fracture_strain"], category, tiny_labels["load_drop_strain"],
            tiny_labels["strain_reached"], tiny_labels["converged"], "8x8 test"),
        plots.plot_strength_vs_fracture_strain(tiny_labels["fracture_strain"],
                                               tiny_labels["tensile_strength"], category),
        plots.plot_stress_strain_curves(tiny_labels, category, [0, 2, 3], 0.005, fraction),
        plots.plot_void_maps(tiny_structures(), tiny_labels["void_map"], category, [0, 2]),
        plots.plot_label_sensitivity(sens, category, 0.005, 0.2),
    ]
    assert all(len(fig.axes) >= 1 for fig in figures)
    plt.close("all")
    first, *rest = fl.representative_indices(tiny_labels, category, 4)
    assert first in (0, 1) and rest == [2, 3]  # one per category present


def test_dask_cluster_path_gives_the_same_labels(tiny_labels):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        out = label_structures(tiny_structures(), 8, CRITERIA,
                               scheduler_address=cluster.scheduler_address)
    assert out["status"].tolist() == tiny_labels["status"].tolist()
    for key in ("fracture_strain", "load_drop_strain", "tensile_strength", "void_map"):
        np.testing.assert_allclose(out[key], tiny_labels[key], rtol=1e-9, err_msg=key)


def test_parallel_workers_give_the_same_labels_as_serial(tiny_labels):
    out = label_structures(tiny_structures(), 8, CRITERIA, n_jobs=2)
    assert out["status"].tolist() == tiny_labels["status"].tolist()
    for key in ("fracture_strain", "load_drop_strain", "tensile_strength", "void_map",
                "history_stress", "n_increments"):
        np.testing.assert_allclose(out[key], tiny_labels[key], rtol=1e-9, err_msg=key)


# --- the phase_mixture coarsening --------------------------------------------------------------
def test_coarsen_shares_keeps_the_fraction_exactly():
    rng = np.random.default_rng(1)
    imgs = (rng.random((3, 32, 32)) < 0.3).astype(np.uint8)
    shares = fl.coarsen_shares(imgs, 8)
    assert shares.shape == (3, 8, 8) and shares.max() <= 16
    np.testing.assert_array_equal(shares.sum(axis=(1, 2)), imgs.sum(axis=(1, 2)))
    thin = np.zeros((1, 32, 32), np.uint8)
    thin[0, 5] = 1  # a 1-px layer: block_mean drops it, phase_mixture keeps it at share 1/4
    assert coarsen_images(thin, 8).sum() == 0
    assert fl.coarsen_shares(thin, 8)[0, 1].tolist() == [4] * 8
    with pytest.raises(ValueError, match="unknown coarsening 'nearest'"):
        label_structures(thin, 8, CRITERIA, n_jobs=1, coarsening="nearest")


def test_phase_mixture_equals_block_mean_on_block_aligned_structures():
    """Pure blocks get levels 0 and (N/grid)^2, i.e. exactly ferrite and martensite: the same
    labels to round-off (the multi-phase update may sum in another order); and the FE fraction
    is the image's."""
    imgs = tiny_structures()[[0, 2]]  # layers rows 4-9 and a grain 4-11: aligned with 2-px blocks
    a = label_structures(imgs, 8, CRITERIA, n_jobs=1)
    b = label_structures(imgs, 8, CRITERIA, n_jobs=1, coarsening="phase_mixture")
    for key in ("fracture_strain", "load_drop_strain", "tensile_strength", "void_map",
                "fe_martensite_fraction"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-12, atol=1e-15, err_msg=key)
    thin = tiny_structures()[[1]].copy()
    thin[0, :, 9] = 0  # layers across x, columns 4-8: one column shared with ferrite
    c = label_structures(thin, 8, CRITERIA, n_jobs=1, coarsening="phase_mixture")
    assert c["fe_martensite_fraction"][0] == pytest.approx(thin.mean())
    assert c["converged"][0]


def test_fraction_preserving_coarsening_keeps_the_fraction_to_half_an_element():
    rng = np.random.default_rng(2)
    imgs = np.concatenate([(rng.random((4, 64, 64)) < p).astype(np.uint8) for p in (0.1, 0.45)])
    for grid in (8, 16, 32):
        fe = fl.coarsen_preserving_fraction(imgs, grid)
        assert set(np.unique(fe)) <= {0, 1}
        np.testing.assert_array_less(np.abs(fe.mean(axis=(1, 2)) - imgs.mean(axis=(1, 2))),
                                     0.5 / grid**2 + 1e-12)
    aligned = tiny_structures()  # 2-px block-aligned features: the same as block_mean
    np.testing.assert_array_equal(fl.coarsen_preserving_fraction(aligned[:3], 8),
                                  coarsen_images(aligned[:3], 8))
    np.testing.assert_array_equal(fl.coarsen_preserving_fraction(aligned, 16), aligned)


# --- labels resting on the stabilization are marked ------------------------------------------
def _damped_result(share_at_end: float) -> RVEResult:
    """A run whose stabilization starts at E_xx = 0.1 and ends with ``share_at_end`` of the work."""
    strain = np.linspace(0.0, 0.2, 21)
    stress = 900.0 * np.sin(np.pi * strain / 0.25)       # peak at 0.125, drop past 0.2 by 0.2
    macro = np.concatenate([[0.0], np.cumsum(0.5 * (stress[1:] + stress[:-1]) * np.diff(strain))])
    damping = np.where(strain > 0.1, (strain - 0.1) / 0.1, 0.0) * share_at_end * macro[-1]
    return RVEResult(strain=strain, stress=stress, lateral_strain=-0.4 * strain,
                     mean_void=np.linspace(0.001, 0.012, 21), fracture_strain=np.nan,
                     load_drop_strain=np.nan, tensile_strength=float(stress.max()),
                     void_map=np.zeros((8, 8)), status="converged", n_increments=20, n_newton=60,
                     n_cuts=0, damping_work=damping, macro_work=macro, hill_strain=0.15,
                     stabilization_energy_fraction=share_at_end, stabilized_from=0.1)


def test_labels_past_the_nonphysical_limit_are_marked_and_not_used():
    criteria = FractureCriteria(mean_void_critical=0.005, load_drop=0.2, nonphysical_limit=0.05)
    clean = fl._from_result(_damped_result(0.01), criteria, 8, 64)
    damped = fl._from_result(_damped_result(0.5), criteria, 8, 64)
    # f̄ reaches 0.005 at E_xx = 0.0727, before the stabilization: unaffected either way
    for lab in (clean, damped):
        assert lab["fracture_strain"] == pytest.approx(0.004 / 0.011 * 0.2)
        assert lab["fracture_strain_nonphysical_share"] == 0.0
        assert lab["hill_strain"] == 0.15
    assert clean["marked"] == "" and np.isfinite(clean["load_drop_strain"])
    # the peak (0.12) and the load drop (0.176) rest on it: shares are the works' ratio there
    run = _damped_result(0.5)
    peak = int(np.argmax(run.stress))
    drop = int(np.ceil(np.round(clean["load_drop_strain"] / 0.01, 9)))  # first increment past it
    assert run.strain[peak] == pytest.approx(0.12, abs=0.011) and drop == 18
    start = 10  # the last undamped state, E_xx = 0.1 = stabilized_from
    for key, i in (("tensile_strength", peak), ("load_drop_strain", drop)):
        assert damped[f"{key}_nonphysical_share"] == pytest.approx(
            run.damping_work[i] / (run.macro_work[i] - run.macro_work[start]), rel=1e-12)
        assert damped[f"{key}_nonphysical_share"] > 0.05
    assert np.isnan(damped["tensile_strength"]) and np.isnan(damped["load_drop_strain"])
    assert "tensile_strength" in damped["marked"] and "load_drop_strain" in damped["marked"]
    assert "> 5%" in damped["marked"] and damped["converged"]


def test_result_label_shares_are_the_work_ratios_at_each_label():
    """``RVEResult.label_shares``: the stabilization's work over the macroscopic work at the
    first increment at or past each label (the peak's strain for the strength); NaN where a
    label was not reached."""
    import dataclasses
    run = dataclasses.replace(_damped_result(0.5), fracture_strain=0.0727, load_drop_strain=0.176)
    shares = run.label_shares()
    peak = int(np.argmax(run.stress))
    assert shares["fracture_strain"] == 0.0  # before the stabilization (E_xx 0.1)
    for key, i in (("load_drop_strain", 18), ("tensile_strength", peak)):
        # the work since the switch-on (index 10), never less than the whole-path ratio
        assert shares[key] == pytest.approx(
            run.damping_work[i] / (run.macro_work[i] - run.macro_work[10]), rel=1e-12)
        assert shares[key] > run.damping_work[i] / run.macro_work[i] > 0.05
    missing = _damped_result(0.5).label_shares()
    assert np.isnan(missing["fracture_strain"]) and np.isnan(missing["load_drop_strain"])


def test_share_is_measured_on_the_stabilized_branch_so_a_late_label_is_not_diluted():
    """A strength reached well after a late switch-on: the damping's work is small against the
    whole path's (under the limit) but not against the work done since the switch-on (over it),
    as in the nonlocal 128² runs whose damped stress rose above the undamped peak."""
    import dataclasses
    strain = np.linspace(0.0, 0.2, 41)
    stress = 500.0 + 1000.0 * strain                   # a peak at the end of the path
    macro = np.concatenate([[0.0], np.cumsum(0.5 * (stress[1:] + stress[:-1]) * np.diff(strain))])
    damping = np.where(strain > 0.15, 0.04 * macro[-1] * (strain - 0.15) / 0.05, 0.0)
    run = dataclasses.replace(_damped_result(0.04), strain=strain, stress=stress,
                              mean_void=np.full(41, 0.001), lateral_strain=-0.4 * strain,
                              damping_work=damping,
                              macro_work=macro, stabilized_from=0.15,
                              tensile_strength=float(stress[-1]))
    whole = damping[-1] / macro[-1]
    since = damping[-1] / (macro[-1] - macro[30])
    assert whole == pytest.approx(0.04) and since == pytest.approx(
        0.04 * macro[-1] / (0.05 * 0.5 * (650.0 + 700.0)), rel=1e-12)
    assert run.nonphysical_share(0.2) == pytest.approx(since, rel=1e-12)
    assert run.nonphysical_share(0.15) == 0.0 and run.nonphysical_share(0.1) == 0.0
    lab = fl._from_result(run, FractureCriteria(mean_void_critical=0.005, load_drop=0.2,
                                                nonphysical_limit=0.05), 8, 64)
    assert np.isnan(lab["tensile_strength"]) and lab["marked"].startswith("tensile_strength 700")
    assert lab["tensile_strength_nonphysical_share"] == pytest.approx(since, rel=1e-12)


def test_real_stabilized_run_reports_its_share_per_label():
    """Forced stabilization from the start on a laminate: every label carries some damping; a
    limit below it marks them, the default 5 % does not (the share is ~2e-5)."""
    from lib.fe.gtn_rve import LoadStepping
    img = np.zeros((8, 8), np.uint8)
    img[2:5] = 1
    stepping = LoadStepping(initial=2e-3, maximum=2e-3, grow=1.0, stabilize_below=4e-3)
    loose = label_structure(img, FractureCriteria(mean_void_critical=0.0012, load_drop=0.2,
                                                  max_strain=0.05), stepping)
    strict = label_structure(img, FractureCriteria(mean_void_critical=0.0012, load_drop=0.2,
                                                   max_strain=0.05, nonphysical_limit=1e-9),
                             stepping)
    share = loose["fracture_strain_nonphysical_share"]
    assert 0 < share < 1e-3 and np.isfinite(loose["fracture_strain"]) and loose["marked"] == ""
    assert np.isnan(strict["fracture_strain"]) and strict["fracture_strain"] != loose["fracture_strain"]
    assert strict["marked"].startswith("fracture_strain")
    assert strict["fracture_strain_nonphysical_share"] == pytest.approx(share)


def test_label_quality_counts_marked_labels_and_labels_past_the_hill_point():
    criteria = FractureCriteria(mean_void_critical=0.005, load_drop=0.2)
    labels = fl._stack([fl._from_result(_damped_result(share), criteria, 8, 64)
                        for share in (0.01, 0.5)])
    quality = fl.label_quality(labels)
    assert quality["runs"] == {"n": 2, "hill": 2}
    # fracture strains (0.073) lie before the Hill point (0.15), load drops (0.176) past it
    assert quality["fracture_strain"] == {"labelled": 2, "marked": 0, "past_hill": 0}
    assert quality["load_drop_strain"] == {"labelled": 1, "marked": 1, "past_hill": 1}
    assert quality["tensile_strength"] == {"labelled": 1, "marked": 1, "past_hill": 0}
    # the marked load drop stays out of the criterion study too
    sens = fl.criterion_sensitivity(labels, 0.005, 0.2)
    assert np.isfinite(sens["load_drop_strain"][0]) and np.isnan(sens["load_drop_strain"][1])


def test_stage_key_is_unchanged_by_fields_that_are_off():
    """The rate fields enter a stage key only for a rate-dependent phase, and the adaptive
    stabilization's floor only when it is below 1 and the Newton line search only when on, so
    labels cached before they existed keep their keys."""
    import dataclasses as dc

    from lib.fe.fracture_labels import _params_dict
    from lib.fe.gtn_material import FERRITE
    plain = _params_dict(FERRITE)
    assert "rate_sensitivity" not in plain and "reference_rate" not in plain
    assert set(plain) == {f.name for f in dc.fields(FERRITE)} - {"rate_sensitivity", "reference_rate"}
    viscous = _params_dict(dc.replace(FERRITE, rate_sensitivity=0.01))
    assert viscous["rate_sensitivity"] == 0.01 and viscous["reference_rate"] == FERRITE.reference_rate
    # the same for the adaptive stabilization: a constant one (the default) keeps the old keys
    from lib.fe.gtn_rve import LoadStepping
    constant = _params_dict(LoadStepping())
    assert set(constant) == {f.name for f in dc.fields(LoadStepping)} - {"stabilization_floor",
                                                                        "line_search", "stall_after"}
    assert _params_dict(LoadStepping(stabilization_floor=1e-3))["stabilization_floor"] == 1e-3
    assert _params_dict(LoadStepping(line_search=3))["line_search"] == 3  # and the line search


def test_nonlocal_labels_are_the_nonlocal_rve_and_a_stage_of_their_own(tmp_study_dirs):
    """``nonlocal_length`` reaches the RVE (labels equal GTNRVE(nonlocal_length=l)'s), is
    validated, and enters the stage key only when on (local labels keep their keys)."""
    imgs = coarsen_images(tiny_structures(), 8)
    lab = fl.label_structures(imgs[2:3], 8, CRITERIA, n_jobs=1, nonlocal_length=0.1)
    result = GTNRVE(8, criteria=CRITERIA, nonlocal_length=0.1).run(imgs[2])
    assert result.n_staggers > result.n_increments
    assert lab["fracture_strain"][0] == pytest.approx(result.fracture_strain, rel=1e-9)
    np.testing.assert_allclose(lab["void_map"][0], result.void_map, rtol=1e-6)
    local = GTNRVE(8, criteria=CRITERIA).run(imgs[2])
    assert result.void_map.max() < 0.9 * local.void_map.max()  # the grain corners' peak is spread
    with pytest.raises(ValueError, match="nonlocal_length"):
        fl.label_structures(imgs[2:3], 8, CRITERIA, n_jobs=1, nonlocal_length=-1.0)
    profile = get_profile("smoke", label_chunk=4, n_jobs=1, fe_grid=4)
    database = make_database(tiny_structures())
    plain = fracture_labels(profile, database)
    assert "nonlocal_length" not in stage_attrs(plain)["params"]
    spread = fracture_labels(profile, database, nonlocal_length=0.1)
    assert spread != plain and stage_attrs(spread)["params"]["nonlocal_length"] == 0.1
    assert stage_attrs(spread)["params"]["nonlocal_scheme"] == NONLOCAL_SCHEME_VERSION
    assert "nonlocal_scheme" not in stage_attrs(plain)["params"]
