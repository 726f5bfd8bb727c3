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

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lib.fe.homogenization import MaterialCase, engineering_constants
from lib.fe.linear_solver import SPDSolver
from lib.fe.pixel_mesh import PeriodicPixelProblem

__all__ = ["symmetrize", "density_filter", "project", "project_derivative", "element_operators",
           "DensityHomogenizer", "DensityProperties", "PROPERTY_NAMES", "check_density",
           "MMAState", "mma_step", "OBJECTIVES", "TOSettings", "TOResult", "physical_density",
           "optimize", "binarize_at_fraction"]

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
    return np.clip((a + np.tanh(beta * (x - eta))) / (a + b), 0.0, 1.0)  # roundoff at 0 and 1


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


# --------------------------------------------------------------------------------------------
# the method of moving asymptotes (Svanberg 1987), dual form
# --------------------------------------------------------------------------------------------
@dataclass
class MMAState:
    """The moving asymptotes and the two previous iterates of an MMA run (flat arrays)."""

    low: np.ndarray
    upp: np.ndarray
    x1: np.ndarray  # previous iterate
    x2: np.ndarray  # the one before
    iteration: int = 0


def mma_step(x: np.ndarray, df0: np.ndarray, fval: np.ndarray, dfdx: np.ndarray,
             xmin: np.ndarray, xmax: np.ndarray, state: MMAState | None, move: float = 0.2,
             c: float = 1e3) -> tuple[np.ndarray, MMAState]:
    """One MMA iteration for min f0(x) s.t. f_i(x) <= 0 (i < m), xmin <= x <= xmax.

    ``x (n,)``; ``df0 (n,)`` the objective's gradient; ``fval (m,)``, ``dfdx (m, n)`` the
    constraints and their gradients. The convex separable approximation of Svanberg (1987;
    asymptote rules, 1e-3 regularization and move limits of his 2007 notes) is solved through
    its dual, a concave maximization over the m multipliers (``scipy``'s L-BFGS-B), with elastic
    slacks y_i of cost ``c`` y_i + y_i²/2 so that an infeasible start stays solvable. Returns the
    new x and the state to pass to the next call (``None`` on the first).
    """
    from scipy.optimize import minimize

    x = np.asarray(x, float)
    n, m = x.size, len(fval)
    span = np.maximum(xmax - xmin, 1e-9)
    if state is None:
        state = MMAState(x - 0.5 * span, x + 0.5 * span, x.copy(), x.copy(), 0)
    elif state.iteration >= 2:
        sign = (x - state.x1) * (state.x1 - state.x2)
        factor = np.where(sign > 0, 1.2, np.where(sign < 0, 0.7, 1.0))
        low = x - factor * (state.x1 - state.low)
        upp = x + factor * (state.upp - state.x1)
        state.low = np.clip(low, x - 10 * span, x - 0.01 * span)
        state.upp = np.clip(upp, x + 0.01 * span, x + 10 * span)
    else:
        state.low, state.upp = x - 0.5 * span, x + 0.5 * span
    low, upp = state.low, state.upp
    alpha = np.maximum.reduce([low + 0.1 * (x - low), x - move * span, xmin])
    beta = np.minimum.reduce([upp - 0.1 * (upp - x), x + move * span, xmax])
    ux, xl = upp - x, x - low
    reg = 1e-5 / span

    def pq(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos, neg = np.maximum(g, 0), np.maximum(-g, 0)
        extra = 1e-3 * (pos + neg) + reg
        return (pos + extra) * ux ** 2, (neg + extra) * xl ** 2

    p0, q0 = pq(np.asarray(df0, float))
    pq_i = [pq(np.asarray(row, float)) for row in np.atleast_2d(dfdx)]
    P = np.array([a for a, _ in pq_i]).reshape(m, n)
    Q = np.array([b for _, b in pq_i]).reshape(m, n)
    b = P @ (1 / ux) + Q @ (1 / xl) - np.asarray(fval, float)

    def primal(lam: np.ndarray) -> np.ndarray:
        pj, qj = p0 + lam @ P, q0 + lam @ Q
        sp, sq = np.sqrt(pj), np.sqrt(qj)
        return np.clip((low * sp + upp * sq) / (sp + sq), alpha, beta)

    def negative_dual(lam: np.ndarray) -> tuple[float, np.ndarray]:
        xs = primal(lam)
        y = np.maximum(0.0, lam - c)
        w = ((p0 + lam @ P) / (upp - xs)).sum() + ((q0 + lam @ Q) / (xs - low)).sum() \
            + (c * y + 0.5 * y ** 2 - lam * y).sum() - lam @ b
        grad = P @ (1 / (upp - xs)) + Q @ (1 / (xs - low)) - b - y
        return -w, -grad

    res = minimize(negative_dual, np.ones(m), jac=True, method="L-BFGS-B",
                   bounds=[(0.0, None)] * m, options={"maxiter": 500, "gtol": 1e-12, "ftol": 1e-15})
    x_new = primal(res.x)
    state.x2, state.x1 = state.x1, x.copy()
    state.iteration += 1
    return x_new, state


# --------------------------------------------------------------------------------------------
# the optimization loop
# --------------------------------------------------------------------------------------------
#: What each case optimizes (SPEC B6): the goal and the two directional properties whose worse
#: one is optimized (a bound formulation: max t s.t. t <= both, or min t s.t. t >= both).
OBJECTIVES = {"case1": ("max", ("Ex", "Ey")), "case2": ("max", ("nu_xy", "nu_yx")),
              "case3": ("min", ("alpha_x", "alpha_y"))}


@dataclass(frozen=True)
class TOSettings:
    """Settings of one SIMP run: white ``fraction`` (an equality, as two inequalities of
    relative tolerance ``fraction_tol``), filter ``radius`` (pixels), the continuation — stage k
    uses the SIMP exponent ``penalties[k]`` (the last one repeated when there are more betas)
    and the projection sharpness ``betas[k]``, for ``iterations_per_beta`` iterations or fewer
    once the objective changes by less than ``tol`` over 5 iterations — and MMA's ``move``.
    ``penalty`` is the exponent of the final stage (the one the result is judged with)."""

    fraction: float = 0.395
    fraction_tol: float = 2e-3
    radius: float = 3.0
    penalties: tuple[float, ...] = (1.0, 2.0, 3.0)
    betas: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
    iterations_per_beta: int = 30
    tol: float = 1e-4
    move: float = 0.2

    @property
    def penalty(self) -> float:
        return float(self.penalties[-1])

    def stages(self) -> list[tuple[float, float]]:
        """(penalty, beta) of every continuation stage."""
        return [(float(self.penalties[min(k, len(self.penalties) - 1)]), float(b))
                for k, b in enumerate(self.betas)]

    def __post_init__(self) -> None:
        if not 0 < self.fraction < 1:
            raise ValueError(f"fraction must lie in (0, 1), got {self.fraction}")
        if not self.betas or min(self.betas) < 0:
            raise ValueError("betas must be a non-empty sequence of non-negative sharpnesses")
        if not self.penalties or min(self.penalties) < 1:
            raise ValueError("penalties must be a non-empty sequence of SIMP exponents >= 1")
        if self.iterations_per_beta < 1:
            raise ValueError("iterations_per_beta must be positive")


@dataclass
class TOResult:
    """One SIMP run: the final design variables ``x``, the physical density ``density`` (after
    symmetry, filter and projection), per-iteration ``objective`` (the worse of the two
    properties, in their units), ``fraction``, ``beta`` and ``penalty``, and the wall time."""

    x: np.ndarray
    density: np.ndarray
    objective: np.ndarray
    fraction: np.ndarray
    beta: np.ndarray
    seconds: float
    goal: str
    names: tuple[str, str]
    penalty: np.ndarray = field(default_factory=lambda: np.empty(0))

    def iterations_to_within(self, share: float = 0.01) -> int:
        """Iterations until the objective stays within ``share`` of its final value."""
        final = self.objective[-1]
        off = np.abs(self.objective - final) > share * abs(final)
        bad = np.nonzero(off)[0]
        return int(bad[-1] + 2) if bad.size else 1


def _scale(name: str, hom: DensityHomogenizer) -> float:
    if name in ("Ex", "Ey"):
        return hom.case.white.youngs_modulus
    if name.startswith("alpha"):
        return max(hom.case.white.thermal_expansion, hom.case.black.thermal_expansion)
    return 1.0


def _filtered(x: np.ndarray, settings: TOSettings) -> np.ndarray:
    """Design variables -> symmetrized, filtered densities (clipped: FFT roundoff)."""
    return np.clip(density_filter(symmetrize(x), settings.radius), 0.0, 1.0)


def physical_density(x: np.ndarray, settings: TOSettings, beta: float) -> np.ndarray:
    """Design variables -> the density the FE sees: symmetrize, filter, project."""
    return project(_filtered(x, settings), beta)


def optimize(hom: DensityHomogenizer, case: str, x0: np.ndarray, settings: TOSettings = TOSettings(),
             progress: bool = False) -> TOResult:
    """Run SIMP with MMA from design variables ``x0 (N, N)`` in [0, 1] for ``case`` of
    :data:`OBJECTIVES` (module docstring; the gradients of every step pass back through the
    projection, the filter and the symmetry)."""
    import time

    from tqdm import tqdm  # text bars: they read right in a saved notebook too

    if case not in OBJECTIVES:
        raise ValueError(f"unknown case {case!r}: choose one of {sorted(OBJECTIVES)}")
    goal, names = OBJECTIVES[case]
    x = symmetrize(check_density(x0, hom.size, "x0")).ravel()  # MMA then keeps it symmetric
    n = x.size
    scales = [_scale(k, hom) for k in names]
    sign = 1.0 if goal == "max" else -1.0
    t0 = time.perf_counter()
    history: dict[str, list[float]] = {"objective": [], "fraction": [], "beta": [], "penalty": []}
    state, t = None, None
    total = len(settings.betas) * settings.iterations_per_beta
    bar = tqdm(total=total, desc=f"SIMP {case}", disable=not progress, leave=False,
               mininterval=2.0)
    # variables (x, t): min -sign t  s.t.  sign (t - g_k) <= 0, fraction window
    df0 = np.zeros(n + 1)
    df0[n] = -sign
    lo = np.concatenate([np.zeros(n), [-10.0]])
    hi = np.concatenate([np.ones(n), [10.0]])
    worse_of = min if goal == "max" else max
    for penalty, beta in settings.stages():
        hom.penalty = penalty
        for it in range(settings.iterations_per_beta):
            filtered = _filtered(x.reshape(hom.size, hom.size), settings)
            rho = project(filtered, beta)
            props = hom.evaluate(rho)
            chain = lambda g: symmetrize(density_filter(g * project_derivative(filtered, beta),  # noqa: E731
                                                        settings.radius)).ravel()
            g_vals = np.array([props.values[k] / s for k, s in zip(names, scales)])
            g_grad = [chain(props.gradients[k]) / s for k, s in zip(names, scales)]
            if t is None:
                t = worse_of(g_vals)
            frac = rho.mean()
            dfrac = chain(np.full(rho.shape, 1.0 / rho.size))
            fval = np.array([sign * (t - g_vals[0]), sign * (t - g_vals[1]),
                             frac / settings.fraction - 1 - settings.fraction_tol,
                             1 - settings.fraction_tol - frac / settings.fraction])
            dfdx = np.zeros((4, n + 1))
            dfdx[0, :n], dfdx[0, n] = -sign * g_grad[0], sign
            dfdx[1, :n], dfdx[1, n] = -sign * g_grad[1], sign
            dfdx[2, :n] = dfrac / settings.fraction
            dfdx[3, :n] = -dfrac / settings.fraction
            z = np.concatenate([x, [t]])
            z, state = mma_step(z, df0, fval, dfdx, lo, hi, state, settings.move)
            x, t = z[:n], float(z[n])
            history["objective"].append(float(worse_of(props.values[k] for k in names)))
            history["fraction"].append(float(frac))
            history["beta"].append(float(beta))
            history["penalty"].append(float(penalty))
            bar.update(1)
            obj = history["objective"]
            if it >= 5 and abs(obj[-1] - obj[-6]) <= settings.tol * abs(obj[-1]):
                break
    bar.close()
    hom.penalty = settings.penalty
    xs = x.reshape(hom.size, hom.size)
    return TOResult(xs, physical_density(xs, settings, settings.betas[-1]),
                    np.array(history["objective"]), np.array(history["fraction"]),
                    np.array(history["beta"]), time.perf_counter() - t0, goal, names,
                    np.array(history["penalty"]))


def binarize_at_fraction(density: np.ndarray, fraction: float) -> np.ndarray:
    """The binary image (uint8, 1 = white) of ``density`` thresholded at the level whose white
    fraction is closest to ``fraction`` (a square-symmetric density stays square-symmetric:
    equal values fall on the same side)."""
    d = np.round(check_density(density), 10)  # symmetric images agree only to roundoff
    levels = np.unique(d)  # sorted, so the share of pixels >= each level follows by searchsorted
    fractions = 1.0 - np.searchsorted(np.sort(d.ravel()), levels, side="left") / d.size
    level = levels[int(np.argmin(np.abs(fractions - fraction)))]
    return (d >= level).astype(np.uint8)
