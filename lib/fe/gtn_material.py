"""Gurson–Tvergaard–Needleman (GTN) constitutive update at quadrature points.

Small strain, plane strain, implicit (backward-Euler) return mapping with the
consistent (algorithmic) tangent, for all quadrature points of a mesh and two
(or more) phases in one call (one compiled loop, no Python loop over points).
Used by the periodic RVE solver of SPEC A2 (one Q1 element per pixel, plane
strain, uniaxial tension).

Conventions
-----------
* Units: MPa for stresses and moduli, strains dimensionless.
* Total strain in: ``strain`` of shape ``(n, 3)`` = (eps_xx, eps_yy, gamma_xy)
  with *engineering* shear ``gamma_xy = 2 eps_xy``; ``eps_zz = 0`` (plane strain).
* Stress out: ``(n, 4)`` = (sigma_xx, sigma_yy, sigma_zz, sigma_xy); the
  out-of-plane stress is carried because the GTN yield function depends on it.
* Plastic strain: ``(n, 4)`` = (eps_p_xx, eps_p_yy, eps_p_zz, gamma_p_xy), again
  with engineering shear.  eps_p_zz is non-zero in general (only the *total*
  eps_zz vanishes).
* Tangent: ``(n, 3, 3)``, d(sigma_xx, sigma_yy, sigma_xy) / d(eps_xx, eps_yy,
  gamma_xy) — directly the D matrix of a plane-strain Q1 element with
  engineering shear in its B matrix.  It is *not* symmetric in general
  (the hardening / porosity coupling of GTN makes the algorithmic tangent
  non-symmetric), so use a non-symmetric linear solver (PARDISO mtype 11,
  SuperLU, UMFPACK) or symmetrise at the cost of quadratic convergence.
* Pressure p = tr(sigma)/3, tension positive; q = von Mises stress.

Model
-----
Yield function (Gurson 1977; Tvergaard 1981, 1982)::

    Phi = (q/sM)^2 + 2 q1 f* cosh(3 q2 p / (2 sM)) - (1 + q3 f*^2)

with the matrix flow stress from a Swift law ``sM = K (eps0 + ebar)^n``
(``GTNParameters.power_law`` builds the equivalent ``sy (1 + ebar/eps0)^n``).
Coalescence (Tvergaard & Needleman 1984)::

    f* = f                                  f <= fc
    f* = fc + (fu* - fc)/(fF - fc) (f - fc)  f >  fc,   fu* = 1/q1  (needs q3 = q1^2)

Associative flow ``d eps_p = dlambda dPhi/dsigma``; void growth
``df_g = (1 - f) tr(d eps_p)``; strain-controlled nucleation (Chu & Needleman
1980) ``df_n = A(ebar) d ebar``,
``A = fN / (sN sqrt(2 pi)) exp(-((ebar - eN)/sN)^2 / 2)``; matrix plastic strain
from the plastic-work equivalence ``(1 - f) sM d ebar = sigma : d eps_p``.

Optional matrix rate dependence (``rate_sensitivity = m > 0``): the overstress
power law ``d ebar/dt = reference_rate ((sM / g(ebar))^(1/m) - 1)`` for
``sM > g`` (g the Swift law), i.e. ``sM = g(ebar) (1 + ebar_rate /
reference_rate)^m``, integrated by backward Euler: ``sM_new = g(ebar_new) (1 +
debar / (reference_rate dt))^m``.  It keeps the elastic range and the yield
check of the rate-independent model, reduces to it exactly at m = 0 and
continuously as m -> 0 (tested), and adds the viscous slope m sM / (reference_rate
dt + debar) to d sM/d debar, which grows as the time step shrinks: the
regularization of softening by material rate dependence of Needleman (1988)
Comput Methods Appl Mech Eng 67:69 (power-law viscoplastic matrix, m ~ 0.01).
(Needleman's law, ``ebar_rate = reference_rate (sM/g)^(1/m)``, flows at any
stress; the overstress form is our choice, so that the limit is exact.)  The
cavitation test of the failure rule below uses the static modulus.

Algorithm (backward Euler, Aravas 1987 split, nonlinear elimination)
--------------------------------------------------------------------
Elastic trial ``sigma_tr = C : (eps_new - eps_p_old)``.  If
``Phi(sigma_tr, f*_old, sM_old) <= yield_tol`` the step is elastic.  Otherwise
the plastic strain increment is split as ``d eps_p = dep/3 I + deq n`` with the
fixed direction ``n = 3/2 s_tr/q_tr`` so that ``p = p_tr - K dep`` and
``q = q_tr - 3 G deq`` (Aravas 1987), and the four backward-Euler equations

    R1 = sM (dep dPhi/dq - deq dPhi/dp)           (normality)  = 0
    R2 = Phi(p, q, f*_new, sM_new)                (consistency) = 0
    R3 = (1 - f_new) sM_new debar - (p dep + q deq)               = 0
    R4 = df - (1 - f_new) dep - A(ebar_new) debar                = 0

are solved for ``(dep, deq, debar, df)``.  A plain 4x4 Newton method on this
system (tried first) fails on 10-30 % of realistic states, because of the
exponential cosh term.  So R1, R2 are eliminated: for frozen (debar, df), i.e.
frozen sM and f*, they are the return onto a fixed convex surface, which reduces
to ``q = q_tr / (1 + nu)`` and ``x + k nu sinh(x) = x_tr`` (x = 3 q2 p / 2 sM,
nu = 6 G dlambda / sM^2, k = (3/4)(K/G) q1 q2^2 f*) with Phi(nu) strictly
decreasing: a unique root, found by a 2-D Newton method from a warm start with a
bracketed, nested scalar fall-back (``_project``).  An outer Newton method on
(debar, df) uses the Schur complement of the analytic 4x4 Jacobian, an Armijo
line search and the bounds ``debar >= 0``, ``0 <= f <= fF``.  The consistent
tangent follows from implicit differentiation of the converged 4x4 system with
respect to (p_tr, q_tr) plus the rotation of n (Aravas 1987); it agrees with
central finite differences to ~1e-10.

Sub-stepping.  At high triaxiality void growth is exponential,
``df ~ kappa f`` with ``kappa ~ 1.5 q1 q2 sinh(x) deq / (q/sM)``, and backward
Euler has no solution with f >= 0 once kappa > 1 in a step (typically T = p/q >
~2.5 with strain increments of a few 1e-3).  A point without a solution is
retried with adaptive sub-steps (quartered after a failure, doubled after a
success, at least 1/max_substeps of the increment) from the start-of-step
strain, recovered as ``C^-1 : sigma_old + eps_p_old``.  The sub-step pattern
depends only on (strain_new, state_old) (each attempt starts cold, nothing is
carried between calls or points), so the stress is a smooth function of
strain_new except where the pattern itself changes (or the point fails).
``diagnostics["substeps"]`` reports which points were sub-stepped.

Its tangent is the consistent tangent of the whole step, d sigma_final /
d strain_new through the chain of sub-steps.  With y = (eps_p (4), ebar, f)
and the k-th accepted sub-step ending at the strain
``eps_old + w_k (strain_new - eps_old)``, each backward-Euler sub-step is a
map ``y_k = y_{k-1} + Delta(eps_e_trial, ebar_{k-1}, f_{k-1})`` with
``eps_e_trial = eps_old + w_k (strain_new - eps_old) - eps_p_{k-1}``; its
derivative G_k (6x6) follows from implicit differentiation of the converged 4x4
system with respect to (p_tr, q_tr) (and the rotation of n), as for the
single-step tangent, and with respect to the start values (ebar, f), which
enter R only through ebar_new and f_new.  Then
``dy_k/d strain_new = dy_{k-1}/d strain_new + G_k [w_k P - d eps_p_{k-1}/d
strain_new; d(ebar, f)_{k-1}/d strain_new]`` (P embeds (exx, eyy, gxy) with
eps_zz = 0), starting from 0, and ``tangent = C (P - d eps_p_m / d
strain_new)``: for a single step it is the usual algorithmic tangent.  It
agrees with central differences to ~1e-8 (the last sub-step's tangent alone
was off by 40-110 % at such points).  The cost is negligible (one 4x4 solve
with four right-hand sides and a 6x6 product per accepted sub-step).

Failure (element-deletion analogue, SPEC A2)
--------------------------------------------
A point is marked ``failed`` when, in a step,
* its porosity reaches fF: the converged f >= fF (1 - 1e-6), or the local
  Newton method does not converge after an iterate reached
  ``fc + 0.95 (fF - fc)`` (f* within ~4 % of fu*, where the yield surface
  has all but collapsed); or
* it hits the GTN cavitation instability: even the finest sub-steps find no
  solution, and at the last converged sub-step the plastic modulus
  ``H = N:C:N - dPhi/dsM h debar' - dPhi/df* g f'`` (rates per unit plastic
  multiplier) is below ``N:C:N``, i.e. porosity softening outweighs matrix
  hardening.  H then vanishes within ~1e-4 strain (at p ~ 4-5 sM), after
  which the strain-driven rate problem has no solution at any step size.
Its f is set to fF, its plastic strain and ebar are frozen at the start of the
step, and from then on its stress is ``residual_stiffness * C : (eps -
eps_p_frozen)`` with tangent ``residual_stiffness * C``.  Such a point is
reported converged, so the global solver need not cut the step (SPEC A2).  A
point that fails to converge elsewhere is returned with ``converged = False``,
its old state, the elastic trial stress and the elastic tangent, so the caller
can cut the step.  Nothing raises inside the update.

Implementation and cost
-----------------------
One implementation: a numba ``@njit`` loop over the points (each with its own
local Newton iteration, no temporaries); phases are selected per point from a
packed parameter table, with no Python loop.  Without numba the same code runs
as plain Python (identical results, ~1000x slower).  A vectorised numpy version
of the plain 4x4 Newton method (all points iterating together, with a mask and
batched ``np.linalg.solve``) was 3.6x slower than numba during development, and
the robust nested algorithm above does not vectorise well, so numba is the one
path.  JIT compilation takes ~7-10 s the first time; the result is cached in
``__pycache__`` (~0.5 s to load).

Measured with ``bench/gtn_material.py`` (one core of a shared 2-core AMD EPYC
VM, OMP_NUM_THREADS=1, process CPU time, 16,384 points with a
ferrite/martensite mix, states pre-strained along tension-dominated paths,
strain increment 2e-3, 13,170 plastic points):

    ~29 ms per call (1.8 us/point) without sub-stepped points,
    ~42 ms per call (2.6 us/point) including 112 sub-stepped points
                                   (triaxiality > 3);
    elastic step ~5 ms; increments of 2e-2 ~120 ms (1,059 points sub-stepped).

The chained tangent of sub-stepped points costs nothing measurable: on the
same states, against the earlier kernel that returned the last sub-step's
tangent (best of 21 calls), 38.9 vs 39.1 ms for the 2e-3 increment (the 112
sub-stepped points alone take 13.1 ms either way) and 86.4 vs 86.8 ms for
2e-2.  Stresses and states are bit-for-bit those of that kernel.

Use in a global Newton solver
-----------------------------
Call ``gtn_update(strain_iterate, state_converged, (FERRITE, MARTENSITE),
phase)`` at every global iteration with the state of the last converged
increment (it is never modified), and keep the returned state only when the
increment has converged.  With B-bar elements pass the B-bar strain.  Selective
reduced integration of the volumetric part does not fit a pressure-dependent
model (p enters Phi), so use B-bar (or a mixed u-p formulation).  If any
``converged`` is False, cut the load step.  Failed points are already handled
(residual stiffness, no cut needed).

References
----------
Gurson AL (1977) J Eng Mater Technol 99:2-15.
Tvergaard V (1981) Int J Fract 17:389-407 (q1 = 1.5, q2 = 1).
Tvergaard V (1982) Int J Fract 18:237-252 (q3 = q1^2).
Chu CC, Needleman A (1980) J Eng Mater Technol 102:249-256 (nucleation).
Tvergaard V, Needleman A (1984) Acta Metall 32:157-169 (f*, fc, fF).
Aravas N (1987) Int J Numer Meth Eng 24:1395-1416 (implicit integration).
Zhang ZL, Niemi E (1995) Int J Numer Meth Eng 38:2033-2053.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np

try:  # numba is pinned in requirements.txt; without it the kernel runs as Python
    import numba as _numba

    _HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only without numba
    _numba = None
    _HAVE_NUMBA = False

__all__ = [
    "GTNParameters",
    "GTNState",
    "GTNUpdate",
    "FERRITE",
    "MARTENSITE",
    "phase_mixture",
    "mixture_phases",
    "gtn_update",
    "yield_function",
    "elastic_tangent",
    "plane_strain_stress",
]

_SQRT_2PI = math.sqrt(2.0 * math.pi)
# failure test: converged porosity above fF*(1 - _F_FAIL_REL) counts as reached fF
_F_FAIL_REL = 1e-6
# non-converged local Newton with an iterate above fc + _F_NEAR*(fF - fc): failed
_F_NEAR = 0.95
# sub-stepped update still without solution and H < _H_FAIL * N:C:N (porosity
# softening outweighs matrix hardening, cavitation imminent): failed
_H_FAIL = 1.0
_X_CLIP = 300.0  # clip of the cosh argument in Newton iterates (overflow guard)


# --------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class GTNParameters:
    """Material constants of one phase (units MPa, strains dimensionless).

    Hardening is the Swift law ``sM = K (eps0 + ebar)^n`` (initial yield stress
    ``sigma_y = K eps0^n``); build it from a yield stress with
    :meth:`swift` or :meth:`power_law`.

    Fields: E, nu (elasticity); K, eps0, n (Swift); q1, q2, q3 (Tvergaard);
    fN, eN, sN (Chu–Needleman nucleation); f0 (initial porosity); fc, fF
    (coalescence onset and final failure porosity); fu_star (ultimate f*,
    ``None`` = 1/q1, which requires q3 = q1^2); residual_stiffness (fraction of
    the elastic stiffness kept by failed points); rate_sensitivity m and
    reference_rate (1/s) of the optional overstress rate law (module
    docstring; m = 0, the default, is rate independent and ignores the rate);
    name (label only).
    """

    E: float = 210_000.0
    nu: float = 0.3
    K: float = 1000.0
    eps0: float = 0.01
    n: float = 0.2
    q1: float = 1.5
    q2: float = 1.0
    q3: float = 2.25
    fN: float = 0.04
    eN: float = 0.3
    sN: float = 0.1
    f0: float = 0.0
    fc: float = 0.15
    fF: float = 0.25
    fu_star: float | None = None
    residual_stiffness: float = 1e-6
    rate_sensitivity: float = 0.0
    reference_rate: float = 1e-3
    name: str = "gtn"

    def __post_init__(self):
        def bad(msg):
            raise ValueError(f"GTNParameters({self.name!r}): {msg}")

        for fld in ("E", "nu", "K", "eps0", "n", "q1", "q2", "q3", "fN", "eN", "sN",
                    "f0", "fc", "fF", "residual_stiffness", "rate_sensitivity", "reference_rate"):
            v = getattr(self, fld)
            if not isinstance(v, (int, float, np.floating, np.integer)) or isinstance(v, bool):
                bad(f"{fld} must be a real number, got {type(v).__name__}")
            if not math.isfinite(float(v)):
                bad(f"{fld} must be finite, got {v}")
        if self.E <= 0:
            bad(f"Young's modulus E must be > 0 MPa, got {self.E}")
        if not -1.0 < self.nu < 0.5:
            bad(f"Poisson's ratio nu must lie in (-1, 0.5), got {self.nu}")
        if self.K <= 0:
            bad(f"Swift coefficient K must be > 0 MPa, got {self.K}")
        if self.eps0 <= 0:
            bad(f"Swift offset strain eps0 must be > 0, got {self.eps0}")
        if not 0.0 <= self.n < 1.0:
            bad(f"hardening exponent n must lie in [0, 1), got {self.n}")
        if self.q1 <= 0 or self.q2 <= 0 or self.q3 <= 0:
            bad(f"q1, q2, q3 must be > 0, got {self.q1}, {self.q2}, {self.q3}")
        if self.fN < 0:
            bad(f"nucleation amplitude fN must be >= 0, got {self.fN}")
        if self.sN <= 0:
            bad(f"nucleation spread sN must be > 0, got {self.sN}")
        if not 0.0 <= self.f0 < self.fc:
            bad(f"initial porosity f0 must satisfy 0 <= f0 < fc = {self.fc}, got {self.f0}")
        if not 0.0 < self.fc < self.fF < 1.0:
            bad(f"need 0 < fc < fF < 1, got fc = {self.fc}, fF = {self.fF}")
        if not 0.0 < self.residual_stiffness < 1.0:
            bad(f"residual_stiffness must lie in (0, 1), got {self.residual_stiffness}")
        if not 0.0 <= self.rate_sensitivity <= 0.2:
            bad(f"rate_sensitivity m must lie in [0, 0.2] (0 = rate independent; metals at room "
                f"temperature ~0.005-0.05), got {self.rate_sensitivity}")
        if not self.reference_rate > 0:
            bad(f"reference_rate must be > 0 (1/s), got {self.reference_rate}")
        if self.fu_star is None:
            if abs(self.q3 - self.q1 ** 2) > 1e-9 * self.q1 ** 2:
                bad(f"fu* = 1/q1 is the root of 1 + q3 f*^2 - 2 q1 f* = 0 only when q3 = q1^2 "
                    f"(q1 = {self.q1}, q1^2 = {self.q1 ** 2}, q3 = {self.q3}); set q3 = q1^2 "
                    f"or give fu_star explicitly")
        else:
            if not (math.isfinite(self.fu_star) and self.fu_star > self.fc):
                bad(f"fu_star must be finite and > fc = {self.fc}, got {self.fu_star}")

    # --- derived quantities ------------------------------------------------
    @property
    def fu(self) -> float:
        """Ultimate effective porosity f*(fF)."""
        return 1.0 / self.q1 if self.fu_star is None else float(self.fu_star)

    @property
    def f_near(self) -> float:
        """Porosity fc + 0.95 (fF - fc) past which a point that does not converge counts as
        failed (f* within ~4 % of fu*; the kernel's rule, module docstring "Failure")."""
        return self.fc + _F_NEAR * (self.fF - self.fc)

    @property
    def sigma_y(self) -> float:
        """Initial matrix yield stress K eps0^n (MPa)."""
        return self.K * self.eps0 ** self.n

    @property
    def lame(self) -> tuple[float, float, float]:
        """(lambda, G, bulk modulus) in MPa."""
        lam = self.E * self.nu / ((1 + self.nu) * (1 - 2 * self.nu))
        G = self.E / (2 * (1 + self.nu))
        return lam, G, lam + 2.0 * G / 3.0

    def flow_stress(self, ebar):
        """Matrix flow stress sM(ebar) in MPa (array in, array out)."""
        return self.K * (self.eps0 + np.asarray(ebar, dtype=float)) ** self.n

    def fstar(self, f):
        """Effective porosity f*(f) (Tvergaard & Needleman 1984)."""
        f = np.asarray(f, dtype=float)
        slope = (self.fu - self.fc) / (self.fF - self.fc)
        return np.where(f > self.fc, self.fc + slope * (f - self.fc), f)

    def nucleation_rate(self, ebar):
        """A(ebar) = d f_nucleation / d ebar (Chu & Needleman 1980)."""
        z = (np.asarray(ebar, dtype=float) - self.eN) / self.sN
        return self.fN / (self.sN * _SQRT_2PI) * np.exp(-0.5 * z * z)

    # --- constructors ------------------------------------------------------
    @classmethod
    def swift(cls, sigma_y: float, n: float, eps0: float, **kw) -> "GTNParameters":
        """Swift law ``sM = K (eps0 + ebar)^n`` with ``K = sigma_y / eps0^n``."""
        if not (sigma_y > 0 and eps0 > 0):
            raise ValueError(f"swift(): need sigma_y > 0 and eps0 > 0, got {sigma_y}, {eps0}")
        return cls(K=sigma_y / eps0 ** n, eps0=eps0, n=n, **kw)

    @classmethod
    def power_law(cls, sigma_y: float, n: float, eps0: float | None = None,
                  **kw) -> "GTNParameters":
        """Power law ``sM = sigma_y (1 + ebar/eps0)^n``; ``eps0`` defaults to
        ``sigma_y / E`` (the classic ``(1 + E ebar / sigma_y)^n`` form).  This is
        the Swift law with ``K = sigma_y eps0^-n``."""
        E = kw.get("E", cls.E)
        if eps0 is None:
            eps0 = sigma_y / E
        return cls.swift(sigma_y, n, eps0, **kw)

    def packed(self) -> np.ndarray:
        """Float vector used by the kernels (see ``_P_*`` indices)."""
        lam, G, Kb = self.lame
        slope = (self.fu - self.fc) / (self.fF - self.fc)
        return np.array([lam, G, Kb, self.K, self.eps0, self.n, self.q1, self.q2, self.q3,
                         self.fN, self.eN, self.sN, self.fc, self.fF, slope,
                         self.residual_stiffness, self.rate_sensitivity, self.reference_rate],
                        dtype=float)


# indices into GTNParameters.packed()
(_P_LAM, _P_G, _P_KB, _P_HK, _P_HE, _P_HN, _P_Q1, _P_Q2, _P_Q3, _P_FN, _P_EN, _P_SN,
 _P_FC, _P_FF, _P_SLOPE, _P_RES, _P_RATE_M, _P_RATE_REF) = range(18)
_NPAR = 18

# --- calibrated phases --------------------------------------------------------
# Sources of the numbers (SPEC A2 fixes the ranges; the paper's DP590 values are
# not printed):
# * E = 210 GPa, nu = 0.3: SPEC A2, the usual values for steel.
# * q1 = 1.5, q2 = 1.0: Tvergaard (1981) Int J Fract 17:389; q3 = q1^2 = 2.25:
#   Tvergaard (1982) Int J Fract 18:237.  fu* = 1/q1 (Tvergaard & Needleman 1984).
# * fN = 0.04, eN = 0.3, sN = 0.1: strain-controlled normal nucleation of
#   Chu & Needleman (1980) J Eng Mater Technol 102:249, with the values used by
#   Tvergaard & Needleman (1984) Acta Metall 32:157.
# * fc = 0.15, fF = 0.25: Tvergaard & Needleman (1984).
# * f0 = 0.001 in both phases: SPEC A2 gives no initial porosity.  Steel sheet
#   carries inclusions and processing voids (Santos et al. (2019) J Mater Res
#   Technol 8:644 measure the initial void fractions of DP600/DP800 sheet by
#   image analysis and start their GTN models from them), GTN models of steels
#   commonly start at f0 ~ 1e-4 to 2e-3, and we take 1e-3 within that range; the
#   choice matters numerically: with f0 = 0 a constrained ferrite pocket builds
#   up p ~ 4-5 sM with almost no porosity and then cavitates abruptly (the static
#   solver stalled on 50 of the 800 default structures, 6.2 %); with f0 = 0.001
#   the same 50 all converge and the labels' ranking barely moves (Spearman 0.96
#   against f0 = 0 on 40 structures; bench/gtn_parameter_sensitivity.py,
#   BENCHMARKS.md).  Further voids nucleate with strain (Chu-Needleman, above),
#   as at ferrite/martensite interfaces and in martensite in DP steels.
# * Flow curves: ferrite sigma_y = 300 MPa, Swift n = 0.2; martensite
#   sigma_y = 1,300 MPa, n = 0.1 (SPEC A2: ferrite ~300 MPa, martensite
#   1,200-1,500 MPa).  The orders of magnitude match the dislocation-based flow
#   curves of Rodriguez & Gutierrez (2003) Mater Sci Forum 426-432:4525 that are
#   commonly used for the phases of DP steels (e.g. Sun et al. (2009) Int J Plast
#   25:1888; Ramazani et al. (2012) Comput Mater Sci 52:46).  eps0 is our
#   calibration: ferrite eps0 = 0.02 gives sM = 300 (1 + ebar/0.02)^0.2, i.e.
#   ~550 MPa at ebar = 0.2.  A homogeneous ferrite point in plane-strain uniaxial
#   tension (sigma_yy = 0, eps_zz = 0) with these constants peaks at
#   sigma_xx = 583 MPa at eps_xx = 0.54 (588 MPa with f0 = 0); eps0 = 0.01, 0.005 would
#   give 673, 772 MPa (SPEC A2's prototype value, ~770 MPa, matches eps0 =
#   0.005).  We take 0.02 so that pure ferrite stays below 700 MPa and 700 MPa
#   falls inside the range of DP tensile strengths (SPEC A2); checked by
#   tests/test_gtn_material.py::test_homogeneous_peak_stresses.
#   Martensite eps0 = 0.01 gives ~1,560 MPa at ebar = 0.05, and the homogeneous
#   plane-strain peak is sigma_xx = 2,011 MPa at eps_xx = 0.23.
FERRITE = GTNParameters.swift(sigma_y=300.0, n=0.2, eps0=0.02, f0=0.001, name="ferrite")
MARTENSITE = GTNParameters.swift(sigma_y=1300.0, n=0.1, eps0=0.01, f0=0.001, name="martensite")


def phase_mixture(ferrite: GTNParameters, martensite: GTNParameters,
                  share: float) -> GTNParameters:
    """One GTN parameter set for an element holding martensite area ``share`` in [0, 1].

    Rule of mixtures (equal strain, Voigt) on the Swift flow curve's initial yield stress
    ``sigma_y``, its exponent ``n`` and ``eps0`` (``K`` follows from them), and linearly on
    every other constant; ``share`` 0 and 1 return the two phases' values. Exact for layers
    along the load, an upper bound on strength otherwise. Used by the ``phase_mixture``
    coarsening of :mod:`lib.fe.fracture_labels` (an FE element spanning a block of pixels).
    """
    share = float(share)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"martensite share must lie in [0, 1], got {share}")

    def mix(a: float, b: float) -> float:
        return (1.0 - share) * float(a) + share * float(b)

    fields = {f: mix(getattr(ferrite, f), getattr(martensite, f))
              for f in ("E", "nu", "q1", "q2", "q3", "fN", "eN", "sN", "f0", "fc", "fF",
                        "residual_stiffness")}
    if (ferrite.fu_star is None) != (martensite.fu_star is None):
        raise ValueError("phase_mixture: fu_star must be None in both phases or in neither")
    fields["fu_star"] = None if ferrite.fu_star is None else mix(ferrite.fu_star, martensite.fu_star)
    sigma_y = mix(ferrite.K * ferrite.eps0 ** ferrite.n, martensite.K * martensite.eps0 ** martensite.n)
    n, eps0 = mix(ferrite.n, martensite.n), mix(ferrite.eps0, martensite.eps0)
    return GTNParameters.swift(sigma_y=sigma_y, n=n, eps0=eps0,
                               name=f"{ferrite.name}+{share:.4f} {martensite.name}", **fields)


def mixture_phases(ferrite: GTNParameters, martensite: GTNParameters,
                   n_levels: int) -> tuple[GTNParameters, ...]:
    """``n_levels`` parameter sets, level ``k`` holding martensite share ``k / (n_levels - 1)``
    (:func:`phase_mixture`); level 0 is ``ferrite`` and the last ``martensite`` themselves."""
    if isinstance(n_levels, bool) or not isinstance(n_levels, (int, np.integer)) or n_levels < 2:
        raise ValueError(f"n_levels must be an integer >= 2, got {n_levels!r}")
    inner = [phase_mixture(ferrite, martensite, k / (n_levels - 1)) for k in range(1, n_levels - 1)]
    return (ferrite, *inner, martensite)


# --------------------------------------------------------------------------
# state and result containers
# --------------------------------------------------------------------------
@dataclass
class GTNState:
    """State at the quadrature points (all arrays own their memory).

    stress   (n, 4)  sigma_xx, sigma_yy, sigma_zz, sigma_xy          [MPa]
    eps_p    (n, 4)  eps_p_xx, eps_p_yy, eps_p_zz, gamma_p_xy (eng.)  [-]
    epsbar_p (n,)    matrix equivalent plastic strain                 [-]
    f        (n,)    void volume fraction (failed points: f = fF)     [-]
    failed   (n,)    bool, point reached fF (residual stiffness only)
    """

    stress: np.ndarray
    eps_p: np.ndarray
    epsbar_p: np.ndarray
    f: np.ndarray
    failed: np.ndarray

    @classmethod
    def initial(cls, n_points: int, params: "GTNParameters | Sequence[GTNParameters]" = FERRITE,
                phase=None) -> "GTNState":
        """Virgin state: zero stress and plastic strain, f = f0 of each point's phase."""
        n_points = int(n_points)
        if n_points < 0:
            raise ValueError(f"n_points must be >= 0, got {n_points}")
        plist = _as_param_list(params)
        ph = _check_phase(phase, n_points, len(plist))
        f0 = np.array([p.f0 for p in plist], dtype=float)[ph]
        return cls(stress=np.zeros((n_points, 4)), eps_p=np.zeros((n_points, 4)),
                   epsbar_p=np.zeros(n_points), f=f0, failed=np.zeros(n_points, dtype=bool))

    @property
    def n_points(self) -> int:
        return int(np.shape(self.stress)[0])

    def copy(self) -> "GTNState":
        return GTNState(self.stress.copy(), self.eps_p.copy(), self.epsbar_p.copy(),
                        self.f.copy(), self.failed.copy())

    def take(self, idx) -> "GTNState":
        """Sub-state at the points ``idx`` (index array or mask)."""
        return GTNState(self.stress[idx], self.eps_p[idx], self.epsbar_p[idx], self.f[idx],
                        self.failed[idx])

    def validate(self, n_points: int | None = None) -> "GTNState":
        """Check shapes, dtypes and finiteness; returns a state of C-contiguous
        float64 / bool arrays (a copy only where a conversion is needed)."""
        out = {}
        n = None
        for name, trail in (("stress", (4,)), ("eps_p", (4,)), ("epsbar_p", ()), ("f", ()),
                            ("failed", ())):
            a = getattr(self, name)
            if a is None:
                raise ValueError(f"GTNState.{name} is missing")
            a = np.asarray(a)
            if a.ndim != 1 + len(trail) or a.shape[1:] != trail:
                want = "(n, " + ", ".join(map(str, trail)) + ")" if trail else "(n,)"
                raise ValueError(f"GTNState.{name} must have shape {want}, got {a.shape}")
            if n is None:
                n = a.shape[0]
            elif a.shape[0] != n:
                raise ValueError(f"GTNState.{name} has {a.shape[0]} points, expected {n} "
                                 f"(as GTNState.stress)")
            if name == "failed":
                if a.dtype != bool:
                    raise ValueError(f"GTNState.failed must be a bool array, got dtype {a.dtype}")
                out[name] = np.ascontiguousarray(a)
            else:
                if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
                    raise ValueError(f"GTNState.{name} must be real numbers, got dtype {a.dtype}")
                a = np.ascontiguousarray(a, dtype=float)
                if not np.all(np.isfinite(a)):
                    k = int(np.flatnonzero(~np.isfinite(a).reshape(n, -1).all(1))[0])
                    raise ValueError(f"GTNState.{name} contains NaN or inf (first bad point {k})")
                out[name] = a
        if np.any(out["f"] < 0) or np.any(out["f"] >= 1):
            raise ValueError("GTNState.f must lie in [0, 1)")
        if np.any(out["epsbar_p"] < 0):
            raise ValueError("GTNState.epsbar_p must be >= 0")
        if n_points is not None and n != n_points:
            raise ValueError(f"GTNState has {n} points but strain has {n_points}")
        return GTNState(**out)


class GTNUpdate(NamedTuple):
    """Result of :func:`gtn_update` (unpacks as a 4-tuple)."""

    stress: np.ndarray      # (n, 4) MPa
    tangent: np.ndarray     # (n, 3, 3) MPa, d(sxx, syy, sxy)/d(exx, eyy, gxy)
    state: GTNState         # new state (its .stress is `stress`)
    converged: np.ndarray   # (n,) bool


# --------------------------------------------------------------------------
# point-wise kernel (compiled by numba; plain Python without it)
# --------------------------------------------------------------------------
if _HAVE_NUMBA:
    _jit = _numba.njit(cache=True)
    _jit_inline = _numba.njit(cache=True, inline="always")
else:  # pragma: no cover - exercised only without numba
    def _jit(fun):
        return fun
    _jit_inline = _jit


@_jit_inline
def _fstar_slope(f, fc, slope):
    """Effective porosity f* (Tvergaard & Needleman 1984) and df*/df."""
    if f > fc:
        return fc + slope * (f - fc), slope
    return f, 1.0


@_jit_inline
def _nucleation_rate(eb, fN, eN, sN):
    """Chu & Needleman (1980) strain-controlled nucleation rate A(ebar) = df_n / d ebar."""
    z = (eb - eN) / sN
    return fN / (sN * 2.5066282746310002) * math.exp(-0.5 * z * z)


@_jit_inline
def _flow(hK, hn, m, dtr, base, deb):
    """Matrix flow stress at the end of a step and its slopes: (sM, d sM/d deb, d sM/d ebar_old).

    Rate independent (m = 0): the Swift law sM = K (eps0 + ebar)^n, both slopes h = n sM /
    (eps0 + ebar).  Rate dependent (m > 0): sM = K (eps0 + ebar)^n (1 + deb / dtr)^m with
    dtr = reference_rate * dt (backward Euler of the overstress law ebar_rate = reference_rate
    ((sM / g(ebar))^(1/m) - 1)); d sM/d deb gains the viscous term m sM / (dtr + deb), while
    d sM/d ebar_old (through ebar = ebar_old + deb) keeps the static slope.  base = eps0 + ebar
    (the caller's sum, so that m = 0 rounds as the plain Swift law always did)."""
    s = hK * base ** hn
    if m > 0.0:
        r = 1.0 + deb / dtr
        s = s * r ** m
        hs = hn * s / base
        return s, hs + m * s / (r * dtr), hs
    hs = hn * s / base
    return s, hs, hs


@_jit
def _gtn_system(dep, deq, deb, dfv, ptr, qtr, ebn, fn,
                Kb, G, hK, he, hn, q1, q2, q3, fN, eN, sN, fc, slope, m, dtr, frozen):
    """Residuals R1..R4 and Jacobian d(R)/d(dep, deq, deb, df), row major.

    R1 = 2 dep q/sM - 3 q1 q2 deq f* sinh(x)    (= sM (dep Phi_q - deq Phi_p))
    R2 = Phi(p, q, f*, sM)
    R3 = (1 - f) sM deb - p dep - q deq
    R4 = df - (1 - f) dep - A(ebar) deb        (frozen porosity: R4 = df)
    with p = ptr - K dep, q = qtr - 3 G deq, x = 3 q2 p / (2 sM).
    """
    p = ptr - Kb * dep
    q = qtr - 3.0 * G * deq
    eb = ebn + deb
    f = fn + dfv
    s, h, _ = _flow(hK, hn, m, dtr, he + eb, deb)
    fs, g = _fstar_slope(f, fc, slope)
    z = (eb - eN) / sN
    A = _nucleation_rate(eb, fN, eN, sN)
    dA = -A * z / sN
    x = 1.5 * q2 * p / s
    x = min(max(x, -_X_CLIP), _X_CLIP)
    ch = math.cosh(x)
    sh = math.sinh(x)
    c3 = 3.0 * q1 * q2
    omf = 1.0 - f
    R1 = 2.0 * dep * q / s - c3 * deq * fs * sh
    J11 = 2.0 * q / s + c3 * deq * fs * ch * 1.5 * q2 * Kb / s
    J12 = -6.0 * G * dep / s - c3 * fs * sh
    J13 = -2.0 * dep * q * h / (s * s) + c3 * deq * fs * ch * x * h / s
    J14 = -c3 * deq * g * sh
    R2 = (q / s) ** 2 + 2.0 * q1 * fs * ch - 1.0 - q3 * fs * fs
    J21 = -c3 * Kb * fs * sh / s
    J22 = -6.0 * G * q / (s * s)
    J23 = -2.0 * q * q * h / (s * s * s) - 2.0 * q1 * fs * sh * x * h / s
    J24 = (2.0 * q1 * ch - 2.0 * q3 * fs) * g
    R3 = omf * s * deb - p * dep - q * deq
    J31 = -p + Kb * dep
    J32 = -q + 3.0 * G * deq
    J33 = omf * (s + h * deb)
    J34 = -s * deb
    if frozen:
        R4 = dfv
        J41 = 0.0
        J43 = 0.0
        J44 = 1.0
    else:
        R4 = dfv - omf * dep - A * deb
        J41 = -omf
        J43 = -(A + dA * deb)
        J44 = 1.0 + dep
    J42 = 0.0
    return (R1, R2, R3, R4,
            J11, J12, J13, J14, J21, J22, J23, J24,
            J31, J32, J33, J34, J41, J42, J43, J44)


@_jit
def _solve_x(xtr, c, x0):
    """Root of x + c sinh(x) = xtr (c >= 0): unique, |x| <= |xtr|.

    Newton on the convex branch from above (monotone); a warm start x0 below
    the root overshoots once to above it and is capped by the upper bound."""
    a = abs(xtr)
    if c <= 0.0 or a == 0.0:
        return xtr
    ub = min(a, math.asinh(a / c))
    x = min(abs(x0), ub) if x0 * xtr > 0.0 else ub
    for _ in range(60):
        sh = math.sinh(x)
        gv = x + c * sh - a
        dx = gv / (1.0 + c * math.cosh(x))
        xn = min(x - dx, ub)
        if xn < 0.0:
            xn = 0.5 * x
        if abs(xn - x) <= 1e-14 * (1.0 + x):
            x = xn
            break
        x = xn
    return x if xtr > 0.0 else -x


@_jit
def _project_nested(xtr, tq, fs, k, q1, c0, nu0, x0):
    """Robust branch of :func:`_project`: Newton on Phi(nu) (x eliminated by
    :func:`_solve_x`), safeguarded with a bracket.  Returns (nu, x, phi, ok)."""
    nu = nu0 if nu0 > 0.0 else 0.0
    lo = 0.0
    hi = 1e300
    x = _solve_x(xtr, k * nu, x0)
    ok = False
    phi = 0.0
    for _ in range(100):
        t = tq / (1.0 + nu)
        ch = math.cosh(x)
        phi = t * t + 2.0 * q1 * fs * ch - c0
        if phi > 0.0:
            lo = nu
        else:
            hi = nu
        if abs(phi) <= 1e-15 * (t * t + 2.0 * q1 * fs * ch + c0):
            ok = True
            break
        if nu == 0.0 and phi < 0.0:                 # inside the frozen surface
            ok = True
            break
        sh = math.sinh(x)
        dxdnu = -k * sh / (1.0 + k * nu * ch)
        dphi = -2.0 * t * t / (1.0 + nu) + 2.0 * q1 * fs * sh * dxdnu
        nn = nu - phi / dphi if dphi < 0.0 else -1.0
        if not (nn > lo and nn < hi):
            nn = 0.5 * (lo + hi) if hi < 1e299 else 2.0 * lo + 1e-3
        if abs(nn - nu) <= 1e-13 * nu:
            nu = nn
            ok = True
            x = _solve_x(xtr, k * nu, x)
            break
        nu = nn
        x = _solve_x(xtr, k * nu, x)
    return nu, x, phi, ok


@_jit
def _project(ptr, qtr, s, fs, Kb, G, q1, q2, q3, nu0, x0):
    """Return of the trial point (ptr, qtr) onto the GTN surface with FROZEN
    matrix flow stress s and f* (associative, Hooke metric).

    With nu = 6 G dlambda / s^2: q = qtr / (1 + nu) and x = 3 q2 p / (2 s)
    solves x + k nu sinh(x) = x_tr, k = (3/4)(K/G) q1 q2^2 f*; Phi(nu) is
    strictly decreasing from Phi_tr to -(1 - q1 f*)^2, so its root is unique.
    Fast path: Newton on the pair (nu, x) from the warm start (nu0, x0);
    if it leaves 0 <= nu, 0 <= x/x_tr <= 1 or stalls, the nested, bracketed
    scalar method :func:`_project_nested` takes over.
    Returns (nu, x, dep, deq, phi, ok)."""
    xtr = 1.5 * q2 * ptr / s
    tq = qtr / s
    if fs <= 0.0:                                   # von Mises: closed form
        nu = tq - 1.0
        if nu < 0.0:
            nu = 0.0
        q = qtr / (1.0 + nu)
        return nu, xtr, 0.0, nu * q / (3.0 * G), (q / s) ** 2 - 1.0, True
    k = 0.75 * (Kb / G) * q1 * q2 * q2 * fs
    c0 = 1.0 + q3 * fs * fs
    ok = False
    phi = 0.0
    nu = nu0
    x = x0
    if not nu0 > 0.0:
        # cold start: von-Mises-like estimate with f* frozen and x clipped to
        # 0.95 of the hydrostatic limit cosh(x_max) = (1 + q3 f*^2) / (2 q1 f*)
        xm = math.acosh(max(c0 / (2.0 * q1 * fs), 1.0))
        xc = min(max(xtr, -0.95 * xm), 0.95 * xm)
        w2 = c0 - 2.0 * q1 * fs * math.cosh(xc)
        nu = tq / math.sqrt(max(w2, 1e-300)) - 1.0
        if nu > 0.0:
            x = _solve_x(xtr, k * nu, xtr)
    if nu > 0.0 and x * xtr >= 0.0 and abs(x) <= abs(xtr):
        for _ in range(12):
            sh = math.sinh(x)
            ch = math.cosh(x)
            t = tq / (1.0 + nu)
            F1 = x + k * nu * sh - xtr
            F2 = t * t + 2.0 * q1 * fs * ch - c0
            if (abs(F1) <= 1e-15 * (1.0 + abs(xtr))
                    and abs(F2) <= 1e-15 * (t * t + 2.0 * q1 * fs * ch + c0)):
                ok = True
                phi = F2
                break
            a11 = k * sh
            a12 = 1.0 + k * nu * ch
            a21 = -2.0 * t * t / (1.0 + nu)
            a22 = 2.0 * q1 * fs * sh
            det = a11 * a22 - a12 * a21
            if not det != 0.0:
                break
            dnu = -(F1 * a22 - a12 * F2) / det
            dx = -(a11 * F2 - a21 * F1) / det
            nu += dnu
            x += dx
            if not (nu >= 0.0 and x * xtr >= 0.0 and abs(x) <= abs(xtr)):
                break
            if abs(dnu) <= 1e-14 * nu and abs(dx) <= 1e-14 * (1.0 + abs(x)):
                ok = True
                t = tq / (1.0 + nu)
                phi = t * t + 2.0 * q1 * fs * math.cosh(x) - c0
                break
    if not ok:
        nu, x, phi, ok = _project_nested(xtr, tq, fs, k, q1, c0, nu0, x0)
    t = tq / (1.0 + nu)
    dep = (xtr - x) * s / (1.5 * q2 * Kb)
    deq = nu * t * s / (3.0 * G)
    return nu, x, dep, deq, phi, ok


@_jit
def _solve4(J, b, ncol):
    """Gauss elimination with partial pivoting, in place: J (4,4), b (4,ncol).
    Returns False for a singular matrix."""
    for k in range(4):
        piv = k
        amax = abs(J[k, k])
        for r in range(k + 1, 4):
            if abs(J[r, k]) > amax:
                amax = abs(J[r, k])
                piv = r
        if not amax > 0.0:
            return False
        if piv != k:
            for c in range(4):
                t = J[k, c]
                J[k, c] = J[piv, c]
                J[piv, c] = t
            for c in range(ncol):
                t = b[k, c]
                b[k, c] = b[piv, c]
                b[piv, c] = t
        inv = 1.0 / J[k, k]
        for r in range(k + 1, 4):
            m = J[r, k] * inv
            if m != 0.0:
                for c in range(k + 1, 4):
                    J[r, c] -= m * J[k, c]
                for c in range(ncol):
                    b[r, c] -= m * b[k, c]
    for k in range(3, -1, -1):
        for c in range(ncol):
            acc = b[k, c]
            for j in range(k + 1, 4):
                acc -= J[k, j] * b[j, c]
            b[k, c] = acc / J[k, k]
    return True


@_jit
def _fill(Jm, out):
    for r in range(4):
        for c in range(4):
            Jm[r, c] = out[4 + 4 * r + c]


# status codes of the per-point backward-Euler update
_ELASTIC, _PLASTIC, _FAILED, _NONCONV = 0, 1, 2, 3


@_jit
def _be_point(e0, e1, e2, ep, ebn, fn, pr, tol, yield_tol, max_iter, max_ls,
              Jm, rhs, sig, D, want_g, Gm, dt, frozen):
    """One backward-Euler GTN update of one point.

    frozen: porosity held at fn in the yield function (the staggered nonlocal scheme of
    :mod:`lib.fe.gtn_rve`); the returned f_new is then fn plus the step's local growth
    (1 - fn) tr(d eps_p) + A d ebar, which the caller averages, and failure at fF is the
    caller's to decide.

    In: total strain (e0, e1, e2) = (exx, eyy, gxy); old state ep (4,) (updated
    in place on success), ebn, fn; packed parameters pr; rhs (4, 4) work array;
    dt: the step's time increment (s), used only by a rate-dependent phase.
    Out: sig (4,), D (3, 3) filled.  Returns (status, ebar_new, f_new,
    iterations); on _FAILED / _NONCONV ep is untouched and sig, D hold the
    elastic trial.

    If want_g, a plastic step also fills Gm (6, 6): the derivative of the
    increments (d eps_p (4, engineering shear), d ebar, d f) with respect to
    (eps_e_trial (4: xx, yy, zz, engineering xy), ebar_old, f_old), where
    eps_e_trial = eps - eps_p_old (eps_zz = 0) — the input of the chain rule
    through sub-steps (see :func:`_chain_substep`).  Gm is left untouched for
    elastic steps (the increments are zero there)."""
    lam = pr[0]; G = pr[1]; Kb = pr[2]; hK = pr[3]; he = pr[4]; hn = pr[5]
    q1 = pr[6]; q2 = pr[7]; q3 = pr[8]; fN = pr[9]; eN = pr[10]; sN = pr[11]
    fc = pr[12]; fF = pr[13]; slope = pr[14]
    m = pr[16]
    dtr = pr[17] * dt
    if not dtr > 0.0:
        m = 0.0
    exx = e0 - ep[0]
    eyy = e1 - ep[1]
    ezz = -ep[2]
    exy = 0.5 * (e2 - ep[3])
    tr = exx + eyy + ezz
    txx = lam * tr + 2.0 * G * exx
    tyy = lam * tr + 2.0 * G * eyy
    tzz = lam * tr + 2.0 * G * ezz
    txy = 2.0 * G * exy
    sig[0] = txx; sig[1] = tyy; sig[2] = tzz; sig[3] = txy
    D[0, 0] = lam + 2 * G; D[0, 1] = lam; D[0, 2] = 0.0
    D[1, 0] = lam; D[1, 1] = lam + 2 * G; D[1, 2] = 0.0
    D[2, 0] = 0.0; D[2, 1] = 0.0; D[2, 2] = G
    ptr = (txx + tyy + tzz) / 3.0
    sxx = txx - ptr; syy = tyy - ptr; szz = tzz - ptr
    qtr = math.sqrt(1.5 * (sxx * sxx + syy * syy + szz * szz + 2.0 * txy * txy))
    sn = hK * (he + ebn) ** hn
    fsn = fc + slope * (fn - fc) if fn > fc else fn
    xt = min(max(1.5 * q2 * ptr / sn, -_X_CLIP), _X_CLIP)
    phi = (qtr / sn) ** 2 + 2.0 * q1 * fsn * math.cosh(xt) - 1.0 - q3 * fsn * fsn
    if not phi > yield_tol:
        if not math.isfinite(phi):
            return _NONCONV, ebn, fn, 0
        return _ELASTIC, ebn, fn, 0
    f_cap = fF - 1e-9 * (fF - fc)            # f* stays below fu* in iterates
    f_near = fc + _F_NEAR * (fF - fc)
    # ---- predictor: projection on the old surface, explicit ebar and f ----
    nu, x, dep, deq, phi, okp = _project(ptr, qtr, sn, fsn, Kb, G, q1, q2, q3, 0.0, 0.0)
    p = ptr - Kb * dep
    q = qtr - 3.0 * G * deq
    deb = (p * dep + q * deq) / ((1.0 - fn) * sn)
    if not deb > 0.0:
        deb = 0.0
    dfv = 0.0 if frozen else (1.0 - fn) * dep + _nucleation_rate(ebn + deb, fN, eN, sN) * deb
    if fn + dfv > f_cap:
        dfv = f_cap - fn
    if fn + dfv < 0.0:
        dfv = -fn
    # ---- Newton on (deb, df) with the exact projection inside ----
    s = _flow(hK, hn, m, dtr, he + ebn + deb, deb)[0]
    f = fn + dfv
    fs = fc + slope * (f - fc) if f > fc else f
    nu, x, dep, deq, phi, okp = _project(ptr, qtr, s, fs, Kb, G, q1, q2, q3, nu, x)
    out = _gtn_system(dep, deq, deb, dfv, ptr, qtr, ebn, fn, Kb, G, hK, he, hn,
                      q1, q2, q3, fN, eN, sN, fc, slope, m, dtr, frozen)
    R3 = out[2] / sn
    R4 = out[3]
    merit = R3 * R3 + R4 * R4
    ok = False
    fmax = f
    it = 0
    merit_ref = merit
    for it in range(max_iter + 1):
        if okp and abs(R3) < tol and abs(R4) < tol:
            ok = True
            break
        if it == max_iter or not math.isfinite(merit):
            break
        if it > 0 and it % 5 == 0:
            if merit > 1e-3 * merit_ref:        # stagnation: no solution nearby
                break
            merit_ref = merit
        # Newton step of the full system with R1 = R2 = 0 (they hold): its
        # (deb, df) part is the Schur-complement step of the reduced system
        _fill(Jm, out)
        for a in range(4):
            Jm[2, a] /= sn
        rhs[0, 0] = 0.0; rhs[1, 0] = 0.0; rhs[2, 0] = -R3; rhs[3, 0] = -R4
        if not _solve4(Jm, rhs, 1):
            break
        db = rhs[2, 0]
        dff = rhs[3, 0]
        if dfv <= -fn and dff < 0.0:
            break     # f pinned at 0 and pushed lower: no solution with f >= 0
        alpha = 1.0
        moved = False
        for ls in range(max_ls):
            deb_t = deb + alpha * db
            if deb_t < 0.0:
                deb_t = 0.0
            dfv_t = dfv + alpha * dff
            if fn + dfv_t > f_cap:
                dfv_t = f_cap - fn
            elif fn + dfv_t < 0.0:
                dfv_t = -fn
            s_t = _flow(hK, hn, m, dtr, he + ebn + deb_t, deb_t)[0]
            f_t = fn + dfv_t
            fs_t = fc + slope * (f_t - fc) if f_t > fc else f_t
            nu_t, x_t, dep_t, deq_t, phi_t, okp_t = _project(ptr, qtr, s_t, fs_t, Kb, G, q1,
                                                             q2, q3, nu, x)
            out_t = _gtn_system(dep_t, deq_t, deb_t, dfv_t, ptr, qtr, ebn, fn, Kb, G, hK,
                                he, hn, q1, q2, q3, fN, eN, sN, fc, slope, m, dtr, frozen)
            T3 = out_t[2] / sn
            T4 = out_t[3]
            mt = T3 * T3 + T4 * T4
            if mt <= (1.0 - 1e-4 * alpha) * merit:
                moved = True
                break
            alpha *= 0.5
        if not moved:
            break
        deb = deb_t; dfv = dfv_t; nu = nu_t; x = x_t; dep = dep_t; deq = deq_t
        okp = okp_t; out = out_t; R3 = T3; R4 = T4; merit = mt
        if fn + dfv > fmax:
            fmax = fn + dfv
    fnew = fn + dfv
    if (not frozen) and ((ok and fnew >= fF * (1.0 - _F_FAIL_REL)) or ((not ok) and fmax >= f_near)):
        return _FAILED, ebn, fn, it
    if not ok:
        return _NONCONV, ebn, fn, it
    # ---- consistent tangent: d(dep, deq, deb, df)/d(p_tr, q_tr) = -J^-1 dR/d(p_tr, q_tr),
    #      for want_g also d/d(ebar_old, f_old)
    _fill(Jm, out)
    s, h_new, h_old = _flow(hK, hn, m, dtr, he + ebn + deb, deb)
    fs = fc + slope * (fnew - fc) if fnew > fc else fnew
    pn = ptr - Kb * dep
    qn = qtr - 3.0 * G * deq
    xx = min(max(1.5 * q2 * pn / s, -_X_CLIP), _X_CLIP)
    c3 = 3.0 * q1 * q2
    rhs[0, 0] = c3 * deq * fs * math.cosh(xx) * 1.5 * q2 / s
    rhs[1, 0] = -c3 * fs * math.sinh(xx) / s
    rhs[2, 0] = dep
    rhs[3, 0] = 0.0
    rhs[0, 1] = -2.0 * dep / s
    rhs[1, 1] = -2.0 * qn / (s * s)
    rhs[2, 1] = deq
    rhs[3, 1] = 0.0
    ncol = 2
    if want_g:
        # ebar_old and f_old enter R through ebar = ebar_old + deb and
        # f = f_old + df: as deb, df do, less the terms where deb, df appear
        # explicitly (R3: (1 - f) sM deb; R4: df - (1 - f) dep - A deb; and
        # the viscous part of dsM/d deb of a rate-dependent phase)
        ncol = 4
        ebw = ebn + deb
        zz = (ebw - eN) / sN
        Aw = _nucleation_rate(ebw, fN, eN, sN)
        hr = h_old / h_new if h_new != h_old else 1.0
        rhs[0, 2] = -out[6] * hr                              # -dR1/dsM dsM/debar_old
        rhs[1, 2] = -out[10] * hr
        rhs[2, 2] = -(1.0 - fnew) * hn * s / (he + ebw) * deb  # -(1 - f) h deb
        rhs[3, 2] = 0.0 if frozen else -Aw * zz / sN * deb    # +A'(ebar) deb
        rhs[0, 3] = -out[7]                                   # -dR1/df* g
        rhs[1, 3] = -out[11]
        rhs[2, 3] = -out[15]                                  # sM deb
        rhs[3, 3] = 0.0 if frozen else -dep
    if not _solve4(Jm, rhs, ncol):
        return _NONCONV, ebn, fn, it
    # ---- stress and plastic strain ----
    if qtr > 1e-14 * sn:
        nxx = 1.5 * sxx / qtr; nyy = 1.5 * syy / qtr
        nzz = 1.5 * szz / qtr; nxy = 1.5 * txy / qtr
        cn = 6.0 * G * G * deq / qtr
    else:
        nxx = 0.0; nyy = 0.0; nzz = 0.0; nxy = 0.0; cn = 0.0
    pv = Kb * dep
    sig[0] = txx - pv - 2.0 * G * deq * nxx
    sig[1] = tyy - pv - 2.0 * G * deq * nyy
    sig[2] = tzz - pv - 2.0 * G * deq * nzz
    sig[3] = txy - 2.0 * G * deq * nxy
    ep[0] += dep / 3.0 + deq * nxx
    ep[1] += dep / 3.0 + deq * nyy
    ep[2] += dep / 3.0 + deq * nzz
    ep[3] += 2.0 * deq * nxy
    ap = rhs[0, 0]; bp = rhs[1, 0]; aq = rhs[0, 1]; bq = rhs[1, 1]
    u0 = ap * Kb + aq * 2.0 * G * nxx
    u1 = ap * Kb + aq * 2.0 * G * nyy
    u2 = aq * 2.0 * G * nxy
    v0 = bp * Kb + bq * 2.0 * G * nxx
    v1 = bp * Kb + bq * 2.0 * G * nyy
    v2 = bq * 2.0 * G * nxy
    t23 = 2.0 / 3.0
    D[0, 0] += -Kb * u0 - 2.0 * G * nxx * v0 - cn * (t23 - t23 * nxx * nxx)
    D[0, 1] += -Kb * u1 - 2.0 * G * nxx * v1 - cn * (-1.0 / 3.0 - t23 * nxx * nyy)
    D[0, 2] += -Kb * u2 - 2.0 * G * nxx * v2 - cn * (-t23 * nxx * nxy)
    D[1, 0] += -Kb * u0 - 2.0 * G * nyy * v0 - cn * (-1.0 / 3.0 - t23 * nyy * nxx)
    D[1, 1] += -Kb * u1 - 2.0 * G * nyy * v1 - cn * (t23 - t23 * nyy * nyy)
    D[1, 2] += -Kb * u2 - 2.0 * G * nyy * v2 - cn * (-t23 * nyy * nxy)
    D[2, 0] += -2.0 * G * nxy * v0 - cn * (-t23 * nxy * nxx)
    D[2, 1] += -2.0 * G * nxy * v1 - cn * (-t23 * nxy * nyy)
    D[2, 2] += -2.0 * G * nxy * v2 - cn * (0.5 - t23 * nxy * nxy)
    if want_g:
        # d(increments)/d(eps_e_trial, ebar_old, f_old); eps_e_trial enters
        # through p_tr (d p_tr = K tr(d eps)), q_tr (d q_tr = 2 G n : d eps)
        # and the direction n (d n = 2G/q_tr (3/2 dev d eps - n (n : d eps)))
        c2 = 2.0 * G / qtr if qtr > 1e-14 * sn else 0.0
        for b in range(4):
            tb = Kb if b < 3 else 0.0
            if b == 0:
                nb = nxx
            elif b == 1:
                nb = nyy
            elif b == 2:
                nb = nzz
            else:
                nb = nxy
            nb2 = 2.0 * G * nb
            ddep = rhs[0, 0] * tb + rhs[0, 1] * nb2
            ddeq = rhs[1, 0] * tb + rhs[1, 1] * nb2
            Gm[4, b] = rhs[2, 0] * tb + rhs[2, 1] * nb2
            Gm[5, b] = rhs[3, 0] * tb + rhs[3, 1] * nb2
            for a in range(4):
                if a == 0:
                    na = nxx
                elif a == 1:
                    na = nyy
                elif a == 2:
                    na = nzz
                else:
                    na = nxy
                if a < 3 and b < 3:
                    dv = (1.0 if a == b else 0.0) - 1.0 / 3.0
                elif a == 3 and b == 3:
                    dv = 0.5
                else:
                    dv = 0.0
                dn = c2 * (1.5 * dv - na * nb)
                if a < 3:
                    Gm[a, b] = ddep / 3.0 + na * ddeq + deq * dn
                else:
                    Gm[a, b] = 2.0 * (na * ddeq + deq * dn)
        for c in range(2):
            Gm[0, 4 + c] = rhs[0, 2 + c] / 3.0 + nxx * rhs[1, 2 + c]
            Gm[1, 4 + c] = rhs[0, 2 + c] / 3.0 + nyy * rhs[1, 2 + c]
            Gm[2, 4 + c] = rhs[0, 2 + c] / 3.0 + nzz * rhs[1, 2 + c]
            Gm[3, 4 + c] = 2.0 * nxy * rhs[1, 2 + c]
            Gm[4, 4 + c] = rhs[2, 2 + c]
            Gm[5, 4 + c] = rhs[3, 2 + c]
    if frozen:  # the local growth the caller averages (f itself stayed fn)
        fnew = fn + (1.0 - fn) * dep + _nucleation_rate(ebn + deb, fN, eN, sN) * deb
    return _PLASTIC, ebn + deb, fnew, it


@_jit
def _hardening_modulus(s0, s1, s2, s3, eb, f, d0, d1, d2, pr):
    """Continuum plastic modulus H = N:C:N - dPhi/dsM h debar/dlambda
    - dPhi/df* g df/dlambda at the state (sigma, ebar, f), N = dPhi/dsigma, and
    N:C:N, N:C:d for the strain direction d = (exx, eyy, gxy).  H <= 0 means
    the strain-driven rate problem has no solution (the GTN cavitation
    instability at high triaxiality).  Returns (H, NCN, NCd)."""
    lam = pr[0]; G = pr[1]; hK = pr[3]; he = pr[4]; hn = pr[5]
    q1 = pr[6]; q2 = pr[7]; q3 = pr[8]; fN = pr[9]; eN = pr[10]; sN = pr[11]
    fc = pr[12]; slope = pr[14]
    sM = hK * (he + eb) ** hn
    h = hn * sM / (he + eb)
    fs, g = _fstar_slope(f, fc, slope)
    A = _nucleation_rate(eb, fN, eN, sN)
    p = (s0 + s1 + s2) / 3.0
    a0 = s0 - p; a1 = s1 - p; a2 = s2 - p
    q = math.sqrt(1.5 * (a0 * a0 + a1 * a1 + a2 * a2 + 2.0 * s3 * s3))
    x = min(max(1.5 * q2 * p / sM, -_X_CLIP), _X_CLIP)
    sh = math.sinh(x)
    Pp = 3.0 * q1 * q2 * fs * sh / sM
    Pq = 2.0 * q / (sM * sM)
    c = 1.5 * Pq / q if q > 0.0 else 0.0
    N0 = c * a0 + Pp / 3.0; N1 = c * a1 + Pp / 3.0; N2 = c * a2 + Pp / 3.0; N3 = c * s3
    trN = N0 + N1 + N2
    NCN = lam * trN * trN + 2.0 * G * (N0 * N0 + N1 * N1 + N2 * N2 + 2.0 * N3 * N3)
    NCd = lam * trN * (d0 + d1) + 2.0 * G * (N0 * d0 + N1 * d1 + N3 * d2)
    sN_ = s0 * N0 + s1 * N1 + s2 * N2 + 2.0 * s3 * N3
    el = sN_ / ((1.0 - f) * sM)
    fl = (1.0 - f) * trN + A * el
    PsM = -2.0 * q * q / (sM * sM * sM) - 2.0 * q1 * fs * sh * x / sM
    Pf = 2.0 * q1 * math.cosh(x) - 2.0 * q3 * fs
    return NCN - PsM * h * el - Pf * g * fl, NCN, NCd


@_jit
def _chain_substep(Y, Gm, w, dz):
    """Chain rule through one plastic sub-step: Y (6, 3) = d(eps_p (4), ebar, f)
    / d(strain_new) at the start of the sub-step is overwritten by its value
    at the end.  The sub-step's end strain is eps_old + w (strain_new -
    eps_old), so d eps_e_trial / d strain_new = w P - d eps_p_old / d strain_new
    (P maps (exx, eyy, gxy) into (xx, yy, zz, gxy) with eps_zz = 0)."""
    for j in range(3):
        for a in range(4):
            dz[a, j] = -Y[a, j]
        dz[4, j] = Y[4, j]
        dz[5, j] = Y[5, j]
    dz[0, 0] += w
    dz[1, 1] += w
    dz[3, 2] += w
    for a in range(6):
        for j in range(3):
            acc = Y[a, j]
            for b in range(6):
                acc += Gm[a, b] * dz[b, j]
            Y[a, j] = acc


@_jit
def _kernel(strain, sig_old, ep_old, eb_old, f_old, failed_old, phase, P,
            tol, yield_tol, max_iter, max_ls, max_sub, dt, frozen,
            sig, D, ep, eb, fo, failed, conv, niter, nsub):
    n = strain.shape[0]
    Jm = np.empty((4, 4))
    rhs = np.empty((4, 4))
    sbuf = np.empty(4)
    Dbuf = np.empty((3, 3))
    epb = np.empty(4)
    ept = np.empty(4)
    slast = np.empty(4)
    Gm = np.zeros((6, 6))
    Y = np.empty((6, 3))
    dz = np.empty((6, 3))
    for i in range(n):
        pr = P[phase[i]]
        lam = pr[0]; G = pr[1]; fF = pr[13]; res = pr[15]
        for a in range(4):
            ep[i, a] = ep_old[i, a]
        eb[i] = eb_old[i]
        fo[i] = f_old[i]
        failed[i] = failed_old[i]
        conv[i] = True
        niter[i] = 0
        nsub[i] = 1
        if failed_old[i]:
            st = _FAILED
            ebnew = eb_old[i]
            fnew = fF
        else:
            st, ebnew, fnew, it = _be_point(strain[i, 0], strain[i, 1], strain[i, 2], ep[i],
                                            eb_old[i], f_old[i], pr, tol, yield_tol, max_iter,
                                            max_ls, Jm, rhs, sbuf, Dbuf, False, Gm, dt, frozen)
            niter[i] = it
        if st == _NONCONV and max_sub > 1:
            # adaptive sub-stepping from the start-of-step strain, recovered
            # from the old stress: eps_old = C^-1 : sigma_old + eps_p_old
            E = G * (3.0 * lam + 2.0 * G) / (lam + G)
            nu_ = lam / (2.0 * (lam + G))
            trs = sig_old[i, 0] + sig_old[i, 1] + sig_old[i, 2]
            o0 = ((1.0 + nu_) * sig_old[i, 0] - nu_ * trs) / E + ep_old[i, 0]
            o1 = ((1.0 + nu_) * sig_old[i, 1] - nu_ * trs) / E + ep_old[i, 1]
            o2 = sig_old[i, 3] / G + ep_old[i, 3]
            # adaptive: quarter the sub-step after a failure, double it after a
            # success, never below 1/max_sub of the increment.  The tangent is
            # chained through the accepted sub-steps: Y = d(eps_p, ebar, f) /
            # d strain_new, see _chain_substep.
            for a in range(4):
                epb[a] = ep_old[i, a]
                slast[a] = sig_old[i, a]
            for a in range(6):
                for j in range(3):
                    Y[a, j] = 0.0
            ebs = eb_old[i]
            fs_ = f_old[i]
            grown = 0.0  # frozen porosity: local growth summed over the sub-steps
            w = 0.0
            dw = 0.25
            dmin = 1.0 / max_sub
            tot = 0
            nacc = 0
            st = _NONCONV
            while w < 1.0:
                if dw > 1.0 - w:
                    dw = 1.0 - w
                wn = w + dw if w + dw < 1.0 - 1e-12 else 1.0
                for a in range(4):
                    ept[a] = epb[a]
                st, ebj, fj, it = _be_point(o0 + wn * (strain[i, 0] - o0),
                                            o1 + wn * (strain[i, 1] - o1),
                                            o2 + wn * (strain[i, 2] - o2), ept, ebs, fs_,
                                            pr, tol, yield_tol, max_iter, max_ls, Jm, rhs,
                                            sbuf, Dbuf, True, Gm, (wn - w) * dt, frozen)
                tot += it
                if st == _FAILED:
                    break
                if st == _NONCONV:
                    if dw <= dmin * (1.0 + 1e-12):
                        break
                    dw = max(0.25 * dw, dmin)
                    continue
                if st == _PLASTIC:
                    _chain_substep(Y, Gm, wn, dz)
                for a in range(4):
                    epb[a] = ept[a]
                    slast[a] = sbuf[a]
                ebs = ebj
                if frozen:
                    grown += fj - fs_
                else:
                    fs_ = fj
                w = wn
                nacc += 1
                dw *= 2.0
            niter[i] += tot
            nsub[i] = nacc + (1 if st == _NONCONV else 0)
            if st == _NONCONV and ebs > 0.0:
                # no solution even for tiny sub-steps: at the last converged
                # sub-step the plastic modulus has (almost) vanished -> the
                # cavitation instability of GTN at high triaxiality: failure
                Hm, NCN, NCd = _hardening_modulus(slast[0], slast[1], slast[2], slast[3], ebs,
                                                  fs_, strain[i, 0] - o0, strain[i, 1] - o1,
                                                  strain[i, 2] - o2, pr)
                if NCd > 0.0 and Hm < _H_FAIL * NCN:
                    st = _FAILED
            if st == _ELASTIC or st == _PLASTIC:
                for a in range(4):
                    ep[i, a] = epb[a]
                    sbuf[a] = slast[a]
                ebnew = ebs
                fnew = fs_ + grown
                # consistent tangent of the whole step:
                # sigma = C : (strain_new - eps_p), d eps_p / d strain_new = Y[:4]
                for j in range(3):
                    ty = Y[0, j] + Y[1, j] + Y[2, j]
                    tj = 1.0 if j < 2 else 0.0
                    Dbuf[0, j] = lam * (tj - ty) + 2.0 * G * ((1.0 if j == 0 else 0.0) - Y[0, j])
                    Dbuf[1, j] = lam * (tj - ty) + 2.0 * G * ((1.0 if j == 1 else 0.0) - Y[1, j])
                    Dbuf[2, j] = G * ((1.0 if j == 2 else 0.0) - Y[3, j])
        if st == _FAILED:
            # failure: state frozen at the start of the step, f = fF, residual
            # stiffness on the elastic strain
            failed[i] = True
            fo[i] = fF
            for a in range(4):
                ep[i, a] = ep_old[i, a]
            eb[i] = eb_old[i]
            exx = strain[i, 0] - ep_old[i, 0]
            eyy = strain[i, 1] - ep_old[i, 1]
            ezz = -ep_old[i, 2]
            tr = exx + eyy + ezz
            sig[i, 0] = res * (lam * tr + 2.0 * G * exx)
            sig[i, 1] = res * (lam * tr + 2.0 * G * eyy)
            sig[i, 2] = res * (lam * tr + 2.0 * G * ezz)
            sig[i, 3] = res * G * (strain[i, 2] - ep_old[i, 3])
            D[i, 0, 0] = res * (lam + 2 * G); D[i, 0, 1] = res * lam; D[i, 0, 2] = 0.0
            D[i, 1, 0] = res * lam; D[i, 1, 1] = res * (lam + 2 * G); D[i, 1, 2] = 0.0
            D[i, 2, 0] = 0.0; D[i, 2, 1] = 0.0; D[i, 2, 2] = res * G
            continue
        if st == _NONCONV:
            # not converged: old state, elastic trial stress, elastic tangent
            conv[i] = False
            for a in range(4):
                ep[i, a] = ep_old[i, a]
            exx = strain[i, 0] - ep_old[i, 0]
            eyy = strain[i, 1] - ep_old[i, 1]
            ezz = -ep_old[i, 2]
            tr = exx + eyy + ezz
            sig[i, 0] = lam * tr + 2.0 * G * exx
            sig[i, 1] = lam * tr + 2.0 * G * eyy
            sig[i, 2] = lam * tr + 2.0 * G * ezz
            sig[i, 3] = G * (strain[i, 2] - ep_old[i, 3])
            D[i, 0, 0] = lam + 2 * G; D[i, 0, 1] = lam; D[i, 0, 2] = 0.0
            D[i, 1, 0] = lam; D[i, 1, 1] = lam + 2 * G; D[i, 1, 2] = 0.0
            D[i, 2, 0] = 0.0; D[i, 2, 1] = 0.0; D[i, 2, 2] = G
            continue
        for a in range(4):
            sig[i, a] = sbuf[a]
        for a in range(3):
            for b in range(3):
                D[i, a, b] = Dbuf[a, b]
        eb[i] = ebnew
        fo[i] = fnew


# --------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------
def _as_param_list(params) -> list[GTNParameters]:
    if isinstance(params, GTNParameters):
        return [params]
    try:
        plist = list(params)
    except TypeError:
        raise ValueError(f"params must be a GTNParameters or a sequence of them, got "
                         f"{type(params).__name__}") from None
    if not plist:
        raise ValueError("params is an empty sequence: give at least one GTNParameters")
    for k, p in enumerate(plist):
        if not isinstance(p, GTNParameters):
            raise ValueError(f"params[{k}] must be a GTNParameters, got {type(p).__name__}")
    return plist


def _check_phase(phase, n, n_phases) -> np.ndarray:
    if phase is None:
        if n_phases != 1:
            raise ValueError(f"phase is required when {n_phases} parameter sets are given")
        return np.zeros(n, dtype=np.int64)
    ph = np.asarray(phase)
    if ph.ndim == 0:
        ph = np.full(n, int(ph))
    if ph.shape != (n,):
        raise ValueError(f"phase must have shape ({n},) (one phase index per point), "
                         f"got {ph.shape}")
    if ph.dtype == bool:
        ph = ph.astype(np.int64)
    if not np.issubdtype(ph.dtype, np.integer):
        if (np.issubdtype(ph.dtype, np.floating) and np.all(np.isfinite(ph))
                and np.all(ph == np.round(ph))):
            ph = ph.astype(np.int64)
        else:
            raise ValueError(f"phase must hold integer phase indices, got dtype {ph.dtype}")
    if ph.size and (ph.min() < 0 or ph.max() >= n_phases):
        raise ValueError(f"phase indices must lie in [0, {n_phases - 1}] for {n_phases} parameter "
                         f"set(s), got range [{ph.min()}, {ph.max()}]")
    return np.ascontiguousarray(ph, dtype=np.int64)


def gtn_update(strain_new, state_old: GTNState, params, phase=None, *, tol: float = 1e-13,
               yield_tol: float = 1e-12, max_iter: int = 50, max_line_search: int = 10,
               max_substeps: int = 64, time_increment: float = 0.0,
               frozen_porosity: bool = False, diagnostics: dict | None = None) -> GTNUpdate:
    """Implicit GTN update at ``n`` plane-strain quadrature points.

    Parameters
    ----------
    strain_new : (n, 3) array
        Total strain at the end of the step, (eps_xx, eps_yy, gamma_xy) with
        engineering shear; eps_zz = 0.
    state_old : GTNState
        Converged state at the start of the step (never modified).
    params : GTNParameters or sequence of GTNParameters
        One parameter set per phase, e.g. ``(FERRITE, MARTENSITE)``.
    phase : (n,) int array or int, optional
        Phase index of each point into ``params`` (default: all 0, allowed
        only with a single parameter set).
    tol : float
        Tolerance of the local Newton method on the residuals of the work
        equation (scaled by the old flow stress) and of the porosity equation;
        both are strain-like, so the stress is exact to ~tol * E.
    yield_tol : float
        A trial state with Phi <= yield_tol is elastic.
    max_iter, max_line_search : int
        Local Newton iterations and back-tracking halvings per iteration.
    max_substeps : int
        Where the single backward-Euler step has no solution (fast void growth
        at high triaxiality, see the module docstring) the increment is split
        into adaptive sub-steps (the first a quarter of the increment,
        quartered after a failure, doubled after a success, never below
        1/max_substeps); the tangent is then the consistent tangent of the
        whole sub-stepped increment.  1 disables this.
    time_increment : float
        Duration of the step (s); required (> 0) when a phase is rate
        dependent (``rate_sensitivity > 0``), ignored otherwise.
    frozen_porosity : bool
        Hold each point's porosity at ``state_old.f`` in the yield function (no void growth
        in the return map, hence no damage softening in the tangent) and return in
        ``state.f`` that value plus the step's *local* growth ``(1 - f) tr(d eps_p) + A
        d ebar``. The building block of the staggered nonlocal scheme of
        :mod:`lib.fe.gtn_rve` (``nonlocal_length > 0``), which averages the growth over a
        length and decides failure itself; a point is not failed for reaching fF here.
    diagnostics : dict, optional
        If given, filled with ``"iterations"`` (n,): local Newton iterations
        summed over sub-steps (0 for elastic and already failed points), and
        ``"substeps"`` (n,): sub-steps used (1 = plain backward Euler).

    Returns
    -------
    GTNUpdate(stress, tangent, state, converged)
        stress (n, 4) [MPa]: sigma_xx, sigma_yy, sigma_zz, sigma_xy;
        tangent (n, 3, 3) [MPa]: consistent tangent d(sxx, syy, sxy)/d(exx, eyy, gxy);
        state: the new GTNState (points that fail in this step have
        ``failed = True`` and ``f = fF``);
        converged (n,) bool: False where the local Newton failed (not at
        failed points) — there the old state, the trial stress and the elastic
        tangent are returned and the caller should cut the load step.
    """
    plist = _as_param_list(params)
    strain = np.asarray(strain_new)
    if strain.ndim != 2 or strain.shape[1] != 3:
        raise ValueError(f"strain_new must have shape (n, 3) = (eps_xx, eps_yy, gamma_xy) per "
                         f"point, got {strain.shape}")
    if not np.issubdtype(strain.dtype, np.number) or np.iscomplexobj(strain):
        raise ValueError(f"strain_new must be real numbers, got dtype {strain.dtype}")
    strain = np.ascontiguousarray(strain, dtype=float)
    n = strain.shape[0]
    bad = ~np.all(np.isfinite(strain), axis=1)
    if np.any(bad):
        raise ValueError(f"strain_new contains NaN or inf at {int(bad.sum())} point(s), first "
                         f"at index {int(np.flatnonzero(bad)[0])}")
    if not isinstance(state_old, GTNState):
        raise ValueError(f"state_old must be a GTNState, got {type(state_old).__name__}")
    st = state_old.validate(n)
    ph = _check_phase(phase, n, len(plist))
    if not (tol > 0 and yield_tol >= 0 and int(max_iter) >= 1 and int(max_line_search) >= 1
            and int(max_substeps) >= 1):
        raise ValueError(f"need tol > 0, yield_tol >= 0, max_iter >= 1, max_line_search >= 1, "
                         f"max_substeps >= 1; got {tol}, {yield_tol}, {max_iter}, "
                         f"{max_line_search}, {max_substeps}")
    fF = np.array([p.fF for p in plist])[ph]
    if np.any(st.f > fF):
        k = int(np.flatnonzero(st.f > fF)[0])
        raise ValueError(f"GTNState.f exceeds fF of its phase (point {k}: f = {st.f[k]}, "
                         f"fF = {fF[k]})")
    dt = float(time_increment)
    if any(p.rate_sensitivity > 0 for p in plist) and not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"a rate-dependent phase (rate_sensitivity > 0) needs time_increment "
                         f"> 0 (the step's duration in s), got {time_increment}")
    P = np.ascontiguousarray(np.stack([p.packed() for p in plist]))
    sig = np.empty((n, 4))
    D = np.empty((n, 3, 3))
    ep = np.empty((n, 4))
    eb = np.empty(n)
    fo = np.empty(n)
    failed = np.empty(n, dtype=bool)
    conv = np.empty(n, dtype=bool)
    niter = np.empty(n, dtype=np.int64)
    nsub = np.empty(n, dtype=np.int64)
    _kernel(strain, st.stress, st.eps_p, st.epsbar_p, st.f, st.failed, ph, P, float(tol),
            float(yield_tol), int(max_iter), int(max_line_search), int(max_substeps), dt,
            bool(frozen_porosity), sig, D, ep, eb, fo, failed, conv, niter, nsub)
    if diagnostics is not None:
        diagnostics["iterations"] = niter
        diagnostics["substeps"] = nsub
    state = GTNState(stress=sig, eps_p=ep, epsbar_p=eb, f=fo, failed=failed)
    return GTNUpdate(sig, D, state, conv)


# --------------------------------------------------------------------------
# helpers for callers and tests
# --------------------------------------------------------------------------
def elastic_tangent(params: GTNParameters) -> np.ndarray:
    """Plane-strain elastic D (3, 3) in MPa for (exx, eyy, gamma_xy)."""
    lam, G, _ = params.lame
    return np.array([[lam + 2 * G, lam, 0.0], [lam, lam + 2 * G, 0.0], [0.0, 0.0, G]])


def plane_strain_stress(params: GTNParameters, strain) -> np.ndarray:
    """Hooke stress (n, 4) = (sxx, syy, szz, sxy) for plane strain (n, 3)."""
    lam, G, _ = params.lame
    e = np.atleast_2d(np.asarray(strain, dtype=float))
    tr = e[:, 0] + e[:, 1]
    return np.stack([lam * tr + 2 * G * e[:, 0], lam * tr + 2 * G * e[:, 1], lam * tr,
                     G * e[:, 2]], axis=1)


def yield_function(params: GTNParameters, stress, epsbar_p, f) -> np.ndarray:
    """Phi(sigma, f*(f), sM(ebar)) for stresses (n, 4); dimensionless."""
    s = np.atleast_2d(np.asarray(stress, dtype=float))
    p = s[:, :3].sum(1) / 3.0
    d = s[:, :3] - p[:, None]
    q = np.sqrt(1.5 * ((d ** 2).sum(1) + 2 * s[:, 3] ** 2))
    sM = params.flow_stress(epsbar_p)
    fs = params.fstar(f)
    x = np.clip(1.5 * params.q2 * p / sM, -_X_CLIP, _X_CLIP)
    return (q / sM) ** 2 + 2 * params.q1 * fs * np.cosh(x) - 1 - params.q3 * fs ** 2
