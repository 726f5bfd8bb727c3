"""The phase-restricted implicit-gradient average of lib.fe.nonlocal_void against exact answers."""
from __future__ import annotations

import numpy as np
import pytest

from lib.fe.nonlocal_void import PhaseNonlocalAverage
from lib.fe.pixel_mesh import PeriodicPixelProblem

N = 16


@pytest.fixture(scope="module")
def fe():
    return PeriodicPixelProblem(N)


def gauss_points(fe):
    """(n_cells * 4, 2) coordinates of the Gauss points on the uniform 2N grid the average uses."""
    pixel = np.repeat(fe.cell_pixel, 4)
    q = np.tile(np.arange(4), fe.n_cells)
    row, col = np.divmod(pixel, fe.size)
    x = (2 * col + q % 2 + 0.5) / (2 * fe.size)
    y = 1 - (2 * row + 1 - q // 2 + 0.5) / (2 * fe.size)
    return np.column_stack([x, y])


def test_a_fourier_mode_is_damped_by_the_discrete_screened_poisson_symbol(fe):
    """One phase: A is (1 - l^2 Laplace_h)^-1, so sin(2 pi (k x + j y)) on the Gauss grid comes
    back scaled by 1 / (1 + l^2 (lambda_k + lambda_j)), lambda_k = (4 / dx^2) sin^2(pi k / 2N)."""
    xy = gauss_points(fe)
    length, (k, j) = 0.05, (3, 1)
    field = np.sin(2 * np.pi * (k * xy[:, 0] + j * xy[:, 1]))
    average = PhaseNonlocalAverage(fe, np.zeros(fe.n_cells * 4, int), length)
    dx = 1 / (2 * N)
    lam = lambda m: 4 / dx**2 * np.sin(np.pi * m / (2 * N)) ** 2  # noqa: E731
    np.testing.assert_allclose(average(field), field / (1 + length**2 * (lam(k) + lam(j))), atol=1e-12)
    # neighbours on the grid are neighbours in space: the mode is smooth there
    assert np.abs(average(field) - field).max() > 0.3


def test_fields_uniform_in_each_phase_are_kept_and_phases_do_not_mix(fe):
    rng = np.random.default_rng(0)
    pixels = (rng.random((N, N)) < 0.4).astype(int)
    phase = np.repeat(fe.pixels_to_cells(pixels), 4)
    average = PhaseNonlocalAverage(fe, phase, 0.1)
    field = np.where(phase == 1, 0.3, 0.01)
    np.testing.assert_allclose(average(field), field, rtol=1e-12)
    # changing the martensite values leaves the ferrite average untouched
    noisy = rng.random(phase.size)
    other = np.where(phase == 1, 5.0 * noisy, noisy)
    np.testing.assert_allclose(average(other)[phase == 0], average(noisy)[phase == 0], rtol=1e-12)
    # an average: within the phase's range, and smoother than the field
    out = average(noisy)
    assert out.min() >= noisy.min() - 1e-12 and out.max() <= noisy.max() + 1e-12
    assert out[phase == 0].std() < 0.5 * noisy[phase == 0].std()


def test_a_vanishing_length_is_the_identity_and_a_single_phase_keeps_the_mean(fe):
    rng = np.random.default_rng(1)
    field = rng.random(fe.n_cells * 4)
    np.testing.assert_allclose(PhaseNonlocalAverage(fe, np.zeros(field.size, int), 1e-8)(field), field,
                               rtol=1e-10)
    wide = PhaseNonlocalAverage(fe, np.zeros(field.size, int), 0.2)(field)
    assert wide.mean() == pytest.approx(field.mean(), rel=1e-12)


@pytest.mark.parametrize("length, phase_len, message", [
    (0.0, None, "positive fraction"), (np.nan, None, "positive fraction"), (0.1, 7, "shape")])
def test_bad_inputs_give_clear_errors(fe, length, phase_len, message):
    phase = np.zeros(phase_len or fe.n_cells * 4, int)
    with pytest.raises(ValueError, match=message):
        PhaseNonlocalAverage(fe, phase, length)
