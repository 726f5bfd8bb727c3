"""Exact relations and bounds for two-phase effective properties (plane stress, Voigt notation).

Used to check every homogenized sample, not only test cases: Voigt/Reuss (Hill) bounds on the
stiffness tensor, 2-D Hashin-Shtrikman bounds on the area bulk modulus, and Levin's exact
relation between the effective thermal expansion and the effective compliance.
"""
from __future__ import annotations

import numpy as np

from lib.fe.homogenization import IsotropicPhase, MaterialCase

_M = np.array([1.0, 1.0, 0.0])  # isotropic thermal strain per kelvin, Voigt


def _compliance(phase: IsotropicPhase) -> np.ndarray:
    return np.linalg.inv(phase.stiffness)


def voigt_reuss_bounds(white_fraction: float, case: MaterialCase) -> tuple[np.ndarray, np.ndarray]:
    """Voigt <D> and Reuss <D^-1>^-1 stiffness bounds (3, 3), MPa, at the given white fraction."""
    f = float(white_fraction)
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"white_fraction must lie in [0, 1], got {white_fraction}")
    voigt = (1 - f) * case.black.stiffness + f * case.white.stiffness
    reuss = np.linalg.inv((1 - f) * _compliance(case.black) + f * _compliance(case.white))
    return voigt, reuss


def bound_violation(stiffness: np.ndarray, white_fraction: float, case: MaterialCase) -> float:
    """Largest violation of Reuss <= C <= Voigt (Loewner order), relative to |Voigt|; <= 0 if inside."""
    voigt, reuss = voigt_reuss_bounds(white_fraction, case)
    scale = np.abs(voigt).max()
    return float(max(-np.linalg.eigvalsh(voigt - stiffness).min(),
                     -np.linalg.eigvalsh(stiffness - reuss).min()) / scale)


def hashin_shtrikman_area_bulk(white_fraction: float, case: MaterialCase) -> tuple[float, float]:
    """2-D Hashin-Shtrikman (lower, upper) bounds on kappa = (C11 + C12)/2, MPa, plane stress.

    kappa = E / (2 (1 - nu)), mu = E / (2 (1 + nu)); for well-ordered phases (1 = stiffer)
    kappa_upper = kappa1 + f2 / (1/(kappa2 - kappa1) + f1/(kappa1 + mu1)), and the lower bound
    with the phases swapped. Valid for samples with square (or isotropic) symmetry.
    """
    def moduli(phase: IsotropicPhase) -> tuple[float, float]:
        e, nu = phase.youngs_modulus, phase.poisson_ratio
        return e / (2 * (1 - nu)), e / (2 * (1 + nu))

    f_w = float(white_fraction)
    (k_w, g_w), (k_b, g_b) = moduli(case.white), moduli(case.black)
    (k1, g1, f1), (k2, g2, f2) = sorted([(k_w, g_w, f_w), (k_b, g_b, 1 - f_w)], reverse=True)
    if g1 < g2:
        raise ValueError("Hashin-Shtrikman formula here needs well-ordered phases (stiffer bulk and shear)")
    upper = k1 + f2 / (1 / (k2 - k1) + f1 / (k1 + g1))
    lower = k2 + f1 / (1 / (k1 - k2) + f2 / (k2 + g2))
    return lower, upper


def levin_thermal_expansion(stiffness: np.ndarray, white_fraction: float, case: MaterialCase) -> np.ndarray:
    """Levin (1967) exact alpha* = <alpha> + (S* - <S>) (S_w - S_b)^-1 (alpha_w - alpha_b), (3,) 1/K.

    ``stiffness`` is the effective (3, 3) plane-stress stiffness, MPa.
    """
    f = float(white_fraction)
    s_w, s_b = _compliance(case.white), _compliance(case.black)
    a_w, a_b = case.white.thermal_expansion * _M, case.black.thermal_expansion * _M
    mean_s = f * s_w + (1 - f) * s_b
    mean_a = f * a_w + (1 - f) * a_b
    return mean_a + (np.linalg.inv(stiffness) - mean_s) @ np.linalg.solve(s_w - s_b, a_w - a_b)
