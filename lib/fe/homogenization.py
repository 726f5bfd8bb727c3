"""Periodic first-order homogenization of two-phase pixel images (Part B, SPEC B2), in plane stress.

For each sample the fluctuation problems of the three unit macroscopic strains and of a unit
temperature rise are solved on one SfePy problem (:class:`PeriodicPixelProblem`) from one
PARDISO factorization (:class:`SPDSolver`):

    K chi_k = -f_k,   f_k = int B^T D e_k        (k = xx, yy, xy; engineering shear)
    K chi_T = +f_T,   f_T = int B^T D alpha m    (m = (1, 1, 0), unit temperature rise)

and, on the unit cell (|Y| = 1),

    C_ij  = <D>_ij + f_i . chi_j                    homogenized stiffness (3, 3), MPa
    tau_i = f_i . chi_T - <D alpha m>_i             macroscopic stress per kelvin at zero strain
    alpha = -C^-1 tau                               free thermal expansion (3,), 1/K

Plane condition: **plane stress** throughout Part B (thin architected sheets). A uniform
material then gives back exactly E, nu and alpha; the engineering constants are read from the
in-plane compliance S = C^-1: Ex = 1/S11, Ey = 1/S22, nu_xy = -S12/S11, nu_yx = -S12/S22,
Gxy = 1/S33. The paper's non-periodic "simulated compression tests" have boundary conditions
only shown in a missing figure; periodic homogenization is used here because it has exact
checks (see ``tests/test_homogenization.py``), so absolute numbers differ from the paper's axes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lib.fe.linear_solver import SPDSolver
from lib.fe.pixel_mesh import PeriodicPixelProblem, check_binary_image

PLANE_CONDITION = "plane stress"
ENGINEERING_CONSTANTS_DEFINITION = (
    "plane stress; S = C^-1 (Voigt xx, yy, xy with engineering shear); "
    "Ex = 1/S11, Ey = 1/S22, nu_xy = -S12/S11, nu_yx = -S12/S22, Gxy = 1/S33; "
    "alpha = -C^-1 tau (free in-plane expansion per kelvin)"
)


@dataclass(frozen=True)
class IsotropicPhase:
    """A linear thermo-elastic isotropic phase: ``youngs_modulus`` in MPa, ``poisson_ratio``,
    ``thermal_expansion`` in 1/K."""

    name: str
    youngs_modulus: float
    poisson_ratio: float
    thermal_expansion: float = 0.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.youngs_modulus) and self.youngs_modulus > 0):
            raise ValueError(f"{self.name}: Young's modulus must be positive, got {self.youngs_modulus}")
        if not (-1.0 < self.poisson_ratio < 0.5):
            raise ValueError(f"{self.name}: Poisson's ratio must lie in (-1, 0.5), got {self.poisson_ratio}")
        if not np.isfinite(self.thermal_expansion):
            raise ValueError(f"{self.name}: thermal expansion must be finite")

    @property
    def stiffness(self) -> np.ndarray:
        """Plane-stress stiffness (3, 3), MPa, Voigt (xx, yy, xy) with engineering shear."""
        return plane_stress_stiffness(self.youngs_modulus, self.poisson_ratio)


@dataclass(frozen=True)
class MaterialCase:
    """The two phases of a Part B benchmark: pixel value 0 = ``black``, 1 = ``white``."""

    name: str
    black: IsotropicPhase
    white: IsotropicPhase


# Paper (Feng et al. 2024) Table 3, quoted in SPEC B2.
BORON = IsotropicPhase("boron", 379.3e3, 0.3, 0.0)
ALUMINIUM_CASES_1_2 = IsotropicPhase("aluminium", 68.3e3, 0.3, 0.0)
ALUMINIUM_CASE_3 = IsotropicPhase("aluminium", 68.3e3, 0.33, 23.6e-6)
FOAM = IsotropicPhase("foam", 0.1, 0.25, 1e-15)

MATERIAL_CASES = {
    "boron_aluminium": MaterialCase("boron_aluminium", black=ALUMINIUM_CASES_1_2, white=BORON),
    "aluminium_foam": MaterialCase("aluminium_foam", black=FOAM, white=ALUMINIUM_CASE_3),
}


def plane_stress_stiffness(youngs_modulus: float, poisson_ratio: float) -> np.ndarray:
    """Isotropic plane-stress stiffness (3, 3) in the units of ``youngs_modulus``."""
    c = youngs_modulus / (1.0 - poisson_ratio**2)
    nu = poisson_ratio
    return c * np.array([[1.0, nu, 0.0], [nu, 1.0, 0.0], [0.0, 0.0, (1.0 - nu) / 2.0]])


@dataclass(frozen=True)
class HomogenizedProperties:
    """Effective properties of one sample.

    stiffness: (3, 3) MPa; thermal_expansion: (3,) 1/K (xx, yy, engineering xy);
    thermal_stress: (3,) MPa/K, macroscopic stress per kelvin at zero macroscopic strain.
    """

    stiffness: np.ndarray
    thermal_expansion: np.ndarray
    thermal_stress: np.ndarray

    def engineering_constants(self) -> dict[str, float]:
        """Ex, Ey (MPa), nu_xy, nu_yx, Gxy (MPa), alpha_x, alpha_y (1/K); see module docstring."""
        return engineering_constants(self.stiffness) | {
            "alpha_x": float(self.thermal_expansion[0]),
            "alpha_y": float(self.thermal_expansion[1]),
        }


def engineering_constants(stiffness: np.ndarray) -> dict[str, float]:
    """Ex, Ey, nu_xy, nu_yx, Gxy of a (3, 3) plane-stress stiffness (MPa) from S = C^-1."""
    compliance = np.linalg.inv(np.asarray(stiffness, dtype=np.float64))
    return {
        "Ex": 1.0 / compliance[0, 0],
        "Ey": 1.0 / compliance[1, 1],
        "nu_xy": -compliance[0, 1] / compliance[0, 0],
        "nu_yx": -compliance[0, 1] / compliance[1, 1],
        "Gxy": 1.0 / compliance[2, 2],
    }


class PeriodicHomogenizer:
    """Homogenize many ``size`` x ``size`` images: one SfePy problem, one PARDISO analysis.

    >>> hom = PeriodicHomogenizer(8)
    >>> props = hom.homogenize(np.zeros((8, 8), np.uint8), MATERIAL_CASES["boron_aluminium"])
    >>> round(engineering_constants(props.stiffness)["Ex"])  # uniform aluminium
    68300
    """

    def __init__(self, size: int = 128) -> None:
        self.fe = PeriodicPixelProblem(size)
        self.solver = SPDSolver()
        self.size = self.fe.size

    def homogenize(self, img: np.ndarray, case: MaterialCase) -> HomogenizedProperties:
        """Effective stiffness and thermal expansion of ``img: (N, N), 1 = white phase``."""
        pixels = check_binary_image(img, self.size)
        white = self.fe.pixels_to_cells(pixels).astype(bool)
        stiffness = np.where(white[:, None, None], case.white.stiffness, case.black.stiffness)
        expansion = np.where(white, case.white.thermal_expansion, case.black.thermal_expansion)
        thermal = stiffness[:, :, :2].sum(axis=2) * expansion[:, None]  # D alpha m, (n_cells, 3)

        self.fe.set_stiffness(stiffness)
        matrix = self.fe.assemble_stiffness()
        loads = np.column_stack(
            [self.fe.assemble_stress_load(stiffness[:, :, k]) for k in range(3)]
            + [self.fe.assemble_stress_load(thermal)]
        )
        self.solver.factorize(matrix)
        rhs = loads.copy()
        rhs[:, :3] *= -1.0
        fluctuations = self.solver.solve(rhs)  # (n_dofs, 4)

        coupling = loads[:, :3].T @ fluctuations  # (3, 4): f_i . chi_j
        effective = stiffness.mean(axis=0) + coupling[:, :3]
        asymmetry = np.abs(effective - effective.T).max() / np.abs(effective).max()
        if asymmetry > 1e-8:
            raise RuntimeError(f"homogenized stiffness is not symmetric (relative {asymmetry:.2e})")
        effective = 0.5 * (effective + effective.T)
        thermal_stress = coupling[:, 3] - thermal.mean(axis=0)
        expansion_eff = -np.linalg.solve(effective, thermal_stress)
        return HomogenizedProperties(effective, expansion_eff, thermal_stress)
