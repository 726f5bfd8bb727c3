"""SIMP inverse homogenization on the study's periodic pixel FE (SPEC B6): the physics core.

A design is a density ρ ∈ [0, 1] per pixel; the pixel's material interpolates the two phases of
a Part B case (modified SIMP, Bendsøe & Sigmund 2003; the black phase is the "void"):

    D(ρ) = D_b + ρ^p (D_w − D_b),      β(ρ) = β_b + ρ^p (β_w − β_b),   β = D α m

(β, the thermal stress per kelvin, interpolated like the stiffness, as in Sigmund & Torquato
1997). ρ = 0 and ρ = 1 are exactly the two phases, so a binary density gives exactly the
properties :class:`lib.fe.homogenization.PeriodicHomogenizer` computes for that image.

:class:`DensityHomogenizer` solves the same periodic problems on the same SfePy mesh (one
PARDISO factorization, three unit strains and a unit temperature rise) and returns the
effective stiffness C, thermal stress τ and expansion α with their **adjoint sensitivities**,
which here cost no extra solve (the problems are self-adjoint): with ε_i = e_i + B χ_i the
total strain of unit macro-strain i and ε_T = B w the thermal fluctuation strain,

    dC_ij / dρ_e = p ρ_e^(p−1) ∫_e ε_i · (D_w − D_b) ε_j
    dτ_i  / dρ_e = p ρ_e^(p−1) ∫_e ε_i · ((D_w − D_b) ε_T − (β_w − β_b))
    dα = −C⁻¹ (dτ + dC α),   dS = −S dC S   (S = C⁻¹; Ex = 1/S11, ν_xy = −S12/S11, ...)

The design pipeline around it (each linear map's adjoint is itself): square symmetry of the
cell (:func:`symmetrize`, the mean over the 8 symmetries of the square, an orthogonal
projection), a periodic linear-hat density filter that preserves the mean
(:func:`density_filter`), and a tanh projection towards 0/1 (:func:`project`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lib.fe.homogenization import MaterialCase, engineering_constants
from lib.fe.linear_solver import SPDSolver
from lib.fe.pixel_mesh import PeriodicPixelProblem

__all__ = ["symmetrize", "density_filter", "project", "project_derivative", "element_operators",
           "DensityHomogenizer", "DensityProperties", "PROPERTY_NAMES", "check_density"]

_M = np.array([1.0, 1.0, 0.0])
#: The properties :meth:`DensityHomogenizer.evaluate` returns with gradients.
PROPERTY_NAMES = ("Ex", "Ey", "nu_xy", "nu_yx", "alpha_x", "alpha_y")


def check_density(rho: Any, size: int | None = None, name: str = "density") -> np.ndarray:
    """``rho`` as a float (N, N) array in [0, 1]; ValueError otherwise."""
    arr = np.asarray(rho, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{name} must be a square 2-D array, got shape {arr.shape}")
    if size is not None and arr.shape[0] != size:
        raise ValueError(f"{name} must be {size}x{size}, got {arr.shape[0]}x{arr.shape[1]}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if arr.min() < 0 or arr.max() > 1:
        raise ValueError(f"{name} must lie in [0, 1], got {arr.min():.3g}..{arr.max():.3g}")
    return arr


# --------------------------------------------------------------------------------------------
# the design maps
# --------------------------------------------------------------------------------------------
def symmetrize(field: np.ndarray) -> np.ndarray:
    """Mean of a square field over the 8 symmetries of the square (rotations, mirrors): the
    orthogonal projection onto square-symmetric fields (its own adjoint).

    >>> f = np.arange(16.0).reshape(4, 4)
    >>> s = symmetrize(f)
    >>> bool(np.allclose(s, s.T) and np.allclose(s, s[::-1]) and np.isclose(s.mean(), f.mean()))
    True
    """
    f = np.asarray(field, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] != f.shape[1]:
        raise ValueError(f"field must be square 2-D, got shape {f.shape}")
    images = [np.rot90(f, k) for k in range(4)]
    images += [g.T for g in images]
    return np.mean(images, axis=0)


def _hat_kernel(size: int, radius: float) -> np.ndarray:
    d = np.minimum(np.arange(size), size - np.arange(size)).astype(float)  # periodic distance
    dist = np.hypot(d[:, None], d[None, :])
    w = np.maximum(0.0, radius - dist)
    return w / w.sum()


def density_filter(field: np.ndarray, radius: float) -> np.ndarray:
    """Periodic linear-hat filter of radius ``radius`` pixels: each pixel becomes the weighted
    mean of its neighbours, weights max(0, r − distance) (Bruns & Tortorelli 2001; Bourdin
    2001). The weights are the same for every pixel of a periodic cell, so the filter keeps the
    mean exactly and is its own adjoint. ``radius <= 1``: identity.

    >>> f = np.random.default_rng(0).random((8, 8))
    >>> bool(np.isclose(density_filter(f, 2.5).mean(), f.mean()))
    True
    """
    f = np.asarray(field, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] != f.shape[1]:
        raise ValueError(f"field must be square 2-D, got shape {f.shape}")
    if not (np.isfinite(radius) and radius > 0):
        raise ValueError(f"radius must be a positive number of pixels, got {radius!r}")
    if radius <= 1:
        return f.copy()
    kernel = np.fft.rfft2(_hat_kernel(f.shape[0], float(radius)))
    return np.fft.irfft2(np.fft.rfft2(f) * kernel, s=f.shape)


def project(field: np.ndarray, beta: float, eta: float = 0.5) -> np.ndarray:
    """Smoothed Heaviside (Wang, Lazarov & Sigmund 2011): (tanh(βη) + tanh(β(x − η))) /
    (tanh(βη) + tanh(β(1 − η))); 0 -> 0, 1 -> 1, sharper with β. ``beta = 0``: identity."""
    x = np.asarray(field, dtype=np.float64)
    if beta == 0:
        return x.copy()
    if not (np.isfinite(beta) and beta > 0 and 0 < eta < 1):
        raise ValueError(f"need beta >= 0 and 0 < eta < 1, got beta={beta!r}, eta={eta!r}")
    a, b = np.tanh(beta * eta), np.tanh(beta * (1 - eta))
    return (a + np.tanh(beta * (x - eta))) / (a + b)


def project_derivative(field: np.ndarray, beta: float, eta: float = 0.5) -> np.ndarray:
    """d project / d field, elementwise."""
    x = np.asarray(field, dtype=np.float64)
    if beta == 0:
        return np.ones_like(x)
    a, b = np.tanh(beta * eta), np.tanh(beta * (1 - eta))
    return beta * (1 - np.tanh(beta * (x - eta)) ** 2) / (a + b)


# --------------------------------------------------------------------------------------------
# the element operators of one pixel
# --------------------------------------------------------------------------------------------
def element_operators(node_offsets: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Strain-displacement matrices of a bilinear square pixel at its 2x2 Gauss points.

    ``node_offsets (4, 2)``: the element's node positions relative to its first node (the
    mesh's node order); returns ``B (4, 3, 8)`` (Voigt xx, yy, engineering xy; DOFs node-major
    x0, y0, x1, ...) and the Gauss weights ``(4,)`` (summing to h²). The element stiffness of a
    constant D is Σ_q w_q B_qᵀ D B_q, exact for this rule.
    """
    off = np.asarray(node_offsets, dtype=np.float64)
    xi_a = 2 * off[:, 0] / h - 1
    eta_a = 2 * off[:, 1] / h - 1
    corners = {(round(a), round(b)) for a, b in zip(xi_a, eta_a)}
    if not (np.allclose(np.abs(xi_a), 1) and np.allclose(np.abs(eta_a), 1)) or len(corners) != 4:
        raise ValueError("node offsets must be the four corners of an h x h square")
    g = 1 / np.sqrt(3)
    points = [(-g, -g), (g, -g), (g, g), (-g, g)]
    b = np.zeros((4, 3, 8))
    for q, (xi, eta) in enumerate(points):
        dn_dxi = xi_a * (1 + eta * eta_a) / 4
        dn_deta = eta_a * (1 + xi * xi_a) / 4
        dn_dx, dn_dy = dn_dxi * 2 / h, dn_deta * 2 / h
        b[q, 0, 0::2] = dn_dx
        b[q, 1, 1::2] = dn_dy
        b[q, 2, 0::2] = dn_dy
        b[q, 2, 1::2] = dn_dx
    return b, np.full(4, h * h / 4)


# --------------------------------------------------------------------------------------------
# homogenization of a density and its sensitivities
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DensityProperties:
    """Effective properties of one density field and their gradients.

    ``stiffness (3, 3)`` MPa, ``thermal_stress (3,)`` MPa/K, ``thermal_expansion (3,)`` 1/K;
    ``values[name]`` and ``gradients[name] (N, N)`` (per pixel of the density, in the image's
    row/column layout) for each of :data:`PROPERTY_NAMES`; ``dstiffness (N, N, 3, 3)``.
    """

    stiffness: np.ndarray
    thermal_stress: np.ndarray
    thermal_expansion: np.ndarray
    values: dict[str, float]
    gradients: dict[str, np.ndarray]
    dstiffness: np.ndarray


class DensityHomogenizer:
    """Homogenize density fields of a Part B case on an ``size``² periodic pixel mesh, with
    adjoint gradients (module docstring). One SfePy problem and one PARDISO analysis are
    reused for every evaluation; ``penalty`` is the SIMP exponent p (>= 1)."""

    def __init__(self, size: int, case: MaterialCase, penalty: float = 3.0) -> None:
        if not isinstance(case, MaterialCase):
            raise ValueError(f"case must be a MaterialCase, got {type(case).__name__}")
        self.fe = PeriodicPixelProblem(size)
        self.size = self.fe.size
        self.case = case
        self.penalty = float(penalty)
        if not self.penalty >= 1:
            raise ValueError(f"penalty must be >= 1, got {penalty!r}")
        self.solver = SPDSolver()
        self.b, self.w = element_operators(self.fe.element_node_offsets, 1.0 / self.size)
        self.d_black, self.d_white = case.black.stiffness, case.white.stiffness
        self.beta_black = self.d_black @ _M * case.black.thermal_expansion
        self.beta_white = self.d_white @ _M * case.white.thermal_expansion
        bint = np.einsum("q,qij->ij", self.w, self.b)  # ∫ B over one pixel, (3, 8)
        self._bint = bint
        self._k_unit = lambda d: np.einsum("q,qki,kl,qlj->ij", self.w, self.b, d, self.b)

    def evaluate(self, rho: Any, gradients: bool = True) -> DensityProperties:
        """Effective properties of ``rho (N, N)`` in [0, 1] (1 = white phase) and, with
        ``gradients``, their derivatives with respect to every pixel's density."""
        rho_px = check_density(rho, self.size)
        r = self.fe.pixels_to_cells(rho_px)  # (n_cells,)
        p = self.penalty
        interp = r ** p
        dd = self.d_white - self.d_black
        dbeta = self.beta_white - self.beta_black
        d_cells = self.d_black[None] + interp[:, None, None] * dd[None]  # (n, 3, 3)
        beta_cells = self.beta_black[None] + interp[:, None] * dbeta[None]  # (n, 3)
        kb, kd = self._k_unit(self.d_black), self._k_unit(dd)
        k_cells = kb[None] + interp[:, None, None] * kd[None]
        matrix = self.fe.assemble_element_matrices(k_cells)
        bint = self._bint
        loads = [self.fe.assemble_element_vectors(np.einsum("ki,nkl,l->ni", bint, d_cells, e))
                 for e in np.eye(3)]
        loads.append(self.fe.assemble_element_vectors(np.einsum("ki,nk->ni", bint, beta_cells)))
        loads = np.column_stack(loads)
        self.solver.factorize(matrix)
        rhs = loads.copy()
        rhs[:, :3] *= -1.0
        sol = self.solver.solve(rhs)  # (n_dofs, 4): chi_1..3, w
        coupling = loads[:, :3].T @ sol
        stiffness = d_cells.mean(axis=0) + coupling[:, :3]
        stiffness = 0.5 * (stiffness + stiffness.T)
        thermal_stress = coupling[:, 3] - beta_cells.mean(axis=0)
        expansion = -np.linalg.solve(stiffness, thermal_stress)
        consts = engineering_constants(stiffness)
        values = {**{k: float(consts[k]) for k in ("Ex", "Ey", "nu_xy", "nu_yx")},
                  "alpha_x": float(expansion[0]), "alpha_y": float(expansion[1])}
        if not gradients:
            return DensityProperties(stiffness, thermal_stress, expansion, values, {},
                                     np.empty((0,)))
        # element strains at the Gauss points: eps_i = e_i + B chi_i, eps_T = B w  (n, 4q, 3)
        u = np.stack([self.fe.element_values(sol[:, k]) for k in range(4)], axis=1)  # (n, 4, 8)
        strain = np.einsum("qkj,nmj->nmqk", self.b, u)  # (n, 4 problems, q, 3)
        strain[:, :3] += np.eye(3)[None, :, None, :]
        eps, eps_t = strain[:, :3], strain[:, 3]
        dinterp = p * r ** (p - 1) if p != 1 else np.ones_like(r)
        # dC_ij / d rho_e = p' ∫ eps_i . dD eps_j
        dc = np.einsum("q,niqk,kl,njql->nij", self.w, eps, dd, eps) * dinterp[:, None, None]
        # dtau_i / d rho_e = p' ∫ eps_i . (dD eps_T - dbeta)
        stress_t = np.einsum("kl,nql->nqk", dd, eps_t) - dbeta[None, None]
        dtau = np.einsum("q,niqk,nqk->ni", self.w, eps, stress_t) * dinterp[:, None]
        compliance = np.linalg.inv(stiffness)
        ds = -np.einsum("ab,nbc,cd->nad", compliance, dc, compliance)
        dalpha = -np.einsum("ab,nb->na", compliance, dtau + np.einsum("nbc,c->nb", dc, expansion))
        s = compliance
        grads_cells = {
            "Ex": -ds[:, 0, 0] / s[0, 0] ** 2,
            "Ey": -ds[:, 1, 1] / s[1, 1] ** 2,
            "nu_xy": -(ds[:, 0, 1] * s[0, 0] - s[0, 1] * ds[:, 0, 0]) / s[0, 0] ** 2,
            "nu_yx": -(ds[:, 0, 1] * s[1, 1] - s[0, 1] * ds[:, 1, 1]) / s[1, 1] ** 2,
            "alpha_x": dalpha[:, 0], "alpha_y": dalpha[:, 1],
        }
        grads = {k: self.fe.cells_to_pixels(v) for k, v in grads_cells.items()}
        return DensityProperties(stiffness, thermal_stress, expansion, values, grads,
                                 self.fe.cells_to_pixels(dc))
