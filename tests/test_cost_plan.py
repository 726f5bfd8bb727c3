"""lib.cost_plan: measured unit costs, estimates against the measured default run, scaling."""
from __future__ import annotations

from pathlib import Path

import pytest

from lib import cost_plan as cp

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.fixture(scope="module")
def default_totals() -> dict[str, float]:
    return cp.notebook_totals(cp.estimate_profile("default", n_cores=2))


@pytest.mark.parametrize("name", sorted(cp.UNIT_COSTS))
def test_unit_costs_are_measured(name: str) -> None:
    cost = cp.UNIT_COSTS[name]
    assert cost.value > 0, name
    assert cost.unit.strip(), name
    assert "BENCHMARKS.md" in cost.source or "README.md" in cost.source, name


def test_notebook_list_matches_the_notebooks_folder() -> None:
    assert sorted(p.stem for p in NOTEBOOK_DIR.glob("0*.ipynb")) == list(cp.NOTEBOOKS)


@pytest.mark.parametrize("key", sorted(cp.MEASURED_DEFAULT_MINUTES))
def test_default_estimate_within_30_percent_of_measured(key: str,
                                                        default_totals: dict[str, float]) -> None:
    measured = cp.MEASURED_DEFAULT_MINUTES[key]
    estimated = sum(default_totals[stem] for stem in key.split("+")) / 60
    assert abs(estimated / measured.minutes - 1) <= 0.30, (
        f"{key}: estimated {estimated:.1f} min, measured {measured.minutes} min ({measured.source})")


def test_profiles_order_and_fe_scaling() -> None:
    totals = {p: sum(e.seconds for e in cp.estimate_profile(p, n_cores=2))
              for p in ("smoke", "default", "paper")}
    assert totals["paper"] > totals["default"] > totals["smoke"] > 0
    two, four = cp.estimate_profile("default", n_cores=2), cp.estimate_profile("default", n_cores=4)
    assert [(e.notebook, e.stage) for e in two] == [(e.notebook, e.stage) for e in four]
    fe = [(a, b) for a, b in zip(two, four) if a.parallel]
    assert {a.stage for a, _ in fe} >= {"fracture_labels", "homogenization_labels", "void_maps_references"}
    for a, b in fe:
        assert b.seconds / a.seconds == pytest.approx(0.5, rel=0.1), a.stage
    for a, b in zip(two, four):
        if not a.parallel:  # training etc. as measured on 2 cores, whatever n_cores
            assert b.seconds == a.seconds, a.stage


def test_gtn_grid_law_hits_the_measured_grids() -> None:
    base = cp.UNIT_COSTS["gtn_rve_32"].value
    for grid in (64, 128):
        assert cp.gtn_grid_factor(grid) * base == pytest.approx(cp.UNIT_COSTS[f"gtn_rve_{grid}"].value)
    assert 1 < cp.gtn_grid_factor(48) < cp.gtn_grid_factor(64) < cp.gtn_grid_factor(96) < cp.gtn_grid_factor(128)


def test_format_plan_lists_every_notebook_and_a_total() -> None:
    text = cp.format_plan("default", n_cores=2)
    for stem in cp.NOTEBOOKS:
        assert stem in text
    assert "TOTAL" in text
    assert "Fits this machine" in text
    paper = cp.format_plan("paper", n_cores=2)
    assert "Needs a cluster or GPU" in paper and "CPU-hours" in paper
    assert cp.fe_cpu_hours("paper") > cp.fe_cpu_hours("default") > 0


def test_format_plan_for_some_notebooks() -> None:
    """run_all.py --plan --only ... passes the selected stems."""
    text = cp.format_plan("default", n_cores=2, notebooks=["03_fe_homogenization_labels", "99_extra"])
    assert "03_fe_homogenization_labels" in text and "02_fe_fracture_labels" not in text
    assert "not estimated" in text and "99_extra" in text


def test_bad_input_raises_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        cp.estimate_profile("huge")
    with pytest.raises(ValueError, match="n_cores must be a positive integer, got 0"):
        cp.estimate_profile("default", n_cores=0)
    with pytest.raises(ValueError, match="n_cores"):
        cp.format_plan("default", n_cores=-2)
    with pytest.raises(ValueError, match="profile must be a Profile"):
        cp.estimate_profile(42)  # type: ignore[arg-type]


def test_gpu_flag_warns_that_the_plan_is_cpu_only() -> None:
    with pytest.warns(UserWarning, match="CPU-only"):
        est = cp.estimate_profile("smoke", n_cores=2, gpu=True)
    assert [e.seconds for e in est] == [e.seconds for e in cp.estimate_profile("smoke", n_cores=2)]
