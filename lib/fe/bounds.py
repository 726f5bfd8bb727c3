"""Exact relations and bounds for two-phase effective properties (plane stress, Voigt notation).

Used to check every homogenized sample, not only test cases: Voigt/Reuss (Hill) bounds on the
stiffness tensor, 2-D Hashin-Shtrikman bounds on the area bulk and shear moduli, and Levin's
exact relation between the effective thermal expansion and the effective compliance.

And to say how far a design is from the best cell that exists (SPEC B6), at a white fraction:

* :func:`directional_stiffness_ceiling`: ``Ex <= 1 / (Voigt^-1)_11`` for *any* cell (C <= <D> in
  the Loewner order, so S >= <D>^-1); a laminate along x attains it when the phases share ν;
* :func:`isotropic_bounds`: E and ν of an *isotropic* two-phase cell from the HS (κ, μ) bounds
  (E = 4κμ/(κ+μ) rises with both; ν = (κ−μ)/(κ+μ) rises with κ and falls with μ);
* :func:`thermal_expansion_bounds`: for a *square-symmetric or isotropic* cell Levin's relation
  gives the in-plane expansion from the area bulk modulus alone,
  α = α_b + (α_w − α_b)(1/κ − 1/κ_b)/(1/κ_w − 1/κ_b), monotone in κ, so the HS bounds on κ
  bound α (SPEC B6: ≈ 0.51 α_Al at 0.395 aluminium with the near-void foam of Case 3).

Moduli in MPa, plane stress: κ = E / (2 (1 − ν)) (area bulk modulus), μ = E / (2 (1 + ν)).
"""
from __future__ import annotations

import numpy as np

from lib.fe.homogenization import IsotropicPhase, MaterialCase

_M = np.array([1.0, 1.0, 0.0])  # isotropic thermal strain per kelvin, Voigt


def _compliance(phase: IsotropicPhase) -> np.ndarray:
    return np.linalg.inv(phase.stiffness)


def voigt_reuss_bounds(white_fraction: float, case: MaterialCase) -> tuple[np.ndarray, np.ndarray]:
    """Voigt <D> and Reuss <D^-1>^-1 stiffness bounds (3, 3), MPa, at the given white fraction."""
    f = _check_fraction(white_fraction)
    voigt = (1 - f) * case.black.stiffness + f * case.white.stiffness
    reuss = np.linalg.inv((1 - f) * _compliance(case.black) + f * _compliance(case.white))
    return voigt, reuss


def bound_violation(stiffness: np.ndarray, white_fraction: float, case: MaterialCase) -> float:
    """Largest violation of Reuss <= C <= Voigt (Loewner order), relative to |Voigt|; <= 0 if inside."""
    voigt, reuss = voigt_reuss_bounds(white_fraction, case)
    scale = np.abs(voigt).max()
    return float(max(-np.linalg.eigvalsh(voigt - stiffness).min(),
                     -np.linalg.eigvalsh(stiffness - reuss).min()) / scale)


def area_moduli(phase: IsotropicPhase) -> tuple[float, float]:
    """Plane-stress area bulk and shear moduli (κ, μ) of a phase, MPa.

    >>> k, g = area_moduli(IsotropicPhase("x", 3.0, 0.5 - 1e-12))
    >>> round(g, 6)
    1.0
    """
    e, nu = phase.youngs_modulus, phase.poisson_ratio
    return e / (2 * (1 - nu)), e / (2 * (1 + nu))


def _ordered(white_fraction: float, case: MaterialCase):
    f_w = _check_fraction(white_fraction)
    (k_w, g_w), (k_b, g_b) = area_moduli(case.white), area_moduli(case.black)
    (k1, g1, f1), (k2, g2, f2) = sorted([(k_w, g_w, f_w), (k_b, g_b, 1 - f_w)], reverse=True)
    if g1 < g2:
        raise ValueError("Hashin-Shtrikman formula here needs well-ordered phases (stiffer bulk and shear)")
    return k1, g1, f1, k2, g2, f2


def _check_fraction(white_fraction: float) -> float:
    f = float(white_fraction)
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"white_fraction must lie in [0, 1], got {white_fraction}")
    return f


def hashin_shtrikman_area_bulk(white_fraction: float, case: MaterialCase) -> tuple[float, float]:
    """2-D Hashin-Shtrikman (lower, upper) bounds on kappa = (C11 + C12)/2, MPa, plane stress.

    kappa = E / (2 (1 - nu)), mu = E / (2 (1 + nu)); for well-ordered phases (1 = stiffer)
    kappa_upper = kappa1 + f2 / (1/(kappa2 - kappa1) + f1/(kappa1 + mu1)), and the lower bound
    with the phases swapped. Valid for samples with square (or isotropic) symmetry.
    """
    k1, g1, f1, k2, g2, f2 = _ordered(white_fraction, case)
    if k1 == k2:
        return k1, k1
    upper = k1 + f2 / (1 / (k2 - k1) + f1 / (k1 + g1))
    lower = k2 + f1 / (1 / (k1 - k2) + f2 / (k2 + g2))
    return lower, upper


def hashin_shtrikman_area_shear(white_fraction: float, case: MaterialCase) -> tuple[float, float]:
    """2-D Hashin-Shtrikman (lower, upper) bounds on the shear modulus of an isotropic cell, MPa.

    mu_upper = mu1 + f2 / (1/(mu2 - mu1) + f1 (kappa1 + 2 mu1) / (2 mu1 (kappa1 + mu1))) for
    well-ordered phases (1 = stiffer), the lower bound with the phases swapped (Hashin 1965;
    Torquato, *Random Heterogeneous Materials*, 2002, eq. 21.22 for d = 2).
    """
    k1, g1, f1, k2, g2, f2 = _ordered(white_fraction, case)
    if g1 == g2:
        return g1, g1
    upper = g1 + f2 / (1 / (g2 - g1) + f1 * (k1 + 2 * g1) / (2 * g1 * (k1 + g1)))
    lower = g2 + f1 / (1 / (g1 - g2) + f2 * (k2 + 2 * g2) / (2 * g2 * (k2 + g2)))
    return lower, upper


def isotropic_bounds(white_fraction: float, case: MaterialCase) -> dict[str, tuple[float, float]]:
    """(lower, upper) of E (MPa) and ν of any *isotropic* cell at ``white_fraction``, from the
    HS bounds on κ and μ (module docstring), with the κ and μ bounds themselves."""
    kl, ku = hashin_shtrikman_area_bulk(white_fraction, case)
    gl, gu = hashin_shtrikman_area_shear(white_fraction, case)
    return {"kappa": (kl, ku), "mu": (gl, gu),
            "E": (4 * kl * gl / (kl + gl), 4 * ku * gu / (ku + gu)),
            "nu": ((kl - gu) / (kl + gu), (ku - gl) / (ku + gl))}


def directional_stiffness_ceiling(white_fraction: float, case: MaterialCase) -> float:
    """The largest Ex (or Ey) of *any* cell at ``white_fraction``: 1 / (<D>^-1)_11, MPa.

    >>> from lib.fe.homogenization import MATERIAL_CASES
    >>> round(directional_stiffness_ceiling(0.5, MATERIAL_CASES["boron_aluminium"]))  # (379.3 + 68.3) / 2 GPa
    223800
    """
    voigt, _ = voigt_reuss_bounds(white_fraction, case)
    return float(1.0 / np.linalg.inv(voigt)[0, 0])


def levin_isotropic_expansion(area_bulk: float, case: MaterialCase) -> float:
    """In-plane α (1/K) of a square-symmetric or isotropic two-phase cell whose area bulk
    modulus is ``area_bulk`` (MPa): Levin's exact relation (module docstring)."""
    kw, _ = area_moduli(case.white)
    kb, _ = area_moduli(case.black)
    aw, ab = case.white.thermal_expansion, case.black.thermal_expansion
    if kw == kb:
        raise ValueError("Levin's relation needs phases of different bulk modulus")
    return float(ab + (aw - ab) * (1 / area_bulk - 1 / kb) / (1 / kw - 1 / kb))


def thermal_expansion_bounds(white_fraction: float, case: MaterialCase) -> tuple[float, float]:
    """(lower, upper) in-plane α (1/K) of any square-symmetric cell at ``white_fraction``:
    Levin's relation at the HS bounds on κ (α is monotone in κ).

    >>> from lib.fe.homogenization import MATERIAL_CASES
    >>> lo, hi = thermal_expansion_bounds(0.395, MATERIAL_CASES["aluminium_foam"])
    >>> round(lo / 23.6e-6, 2)   # SPEC B6: about 0.51 of aluminium's
    0.51
    """
    kl, ku = hashin_shtrikman_area_bulk(white_fraction, case)
    a, b = levin_isotropic_expansion(kl, case), levin_isotropic_expansion(ku, case)
    return (min(a, b), max(a, b))


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
