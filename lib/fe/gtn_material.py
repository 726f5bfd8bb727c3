"""Gurson–Tvergaard–Needleman (GTN) constitutive update at quadrature points.

Small strain, plane strain, implicit (backward-Euler) return mapping with the
consistent (algorithmic) tangent, vectorised over all quadrature points of a
mesh and over two (or more) phases at once.  Used by the periodic RVE solver of
SPEC A2 (one Q1 element per pixel, plane strain, uniaxial tension).

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

Algorithm (Aravas 1987; Zhang & Niemi 1995 style, here with four unknowns)
-------------------------------------------------------------------------
Elastic trial ``sigma_tr = C : (eps_new - eps_p_old)``.  If
``Phi(sigma_tr, f*_old, sM_old) <= yield_tol`` the step is elastic.  Otherwise
the plastic strain increment is split as ``d eps_p = dep/3 I + deq n`` with the
fixed direction ``n = 3/2 s_tr/q_tr`` so that ``p = p_tr - K dep`` and
``q = q_tr - 3 G deq``, and the four backward-Euler equations

    R1 = sM (dep dPhi/dq - deq dPhi/dp)           (normality)  = 0
    R2 = Phi(p, q, f*_new, sM_new)                (consistency) = 0
    R3 = (1 - f_new) sM_new debar - (p dep + q deq)               = 0
    R4 = df - (1 - f_new) dep - A(ebar_new) debar                = 0

are solved for ``(dep, deq, debar, df)`` by a Newton method with an analytic
Jacobian, an Armijo back-tracking line search on ``|R|^2`` and box constraints
(``0 <= deq <= q_tr/3G``, ``debar >= 0``, ``f <= fF``; f may dip below 0 in
an iterate — a lower bound there stalls the Newton method when f_old = 0 —
and the converged f, which is >= 0 up to round-off, is clipped at 0).  The consistent
tangent follows from implicit differentiation of the converged system with
respect to (p_tr, q_tr) plus the rotation of n (e.g. Aravas 1987, eq. 40ff).

Failure (element-deletion analogue, SPEC A2)
--------------------------------------------
A point whose porosity reaches ``fF`` in a step — the converged f is at or
beyond ``fF (1 - 1e-6)``, or the local Newton does not converge while one of
its iterates reached ``f_fail_near = fc + 0.95 (fF - fc)`` (f* within ~3 % of
fu*, where the yield surface has all but collapsed) — is marked
``failed``: its f is set to ``fF``, its plastic strain and ebar are frozen at
the start of the step and from then on its stress is
``residual_stiffness * C : (eps - eps_p_frozen)`` with tangent
``residual_stiffness * C``.  Such a point is reported converged: the global
solver need not cut the step.  A point whose local Newton fails elsewhere is
returned with ``converged = False``, its old state, the trial stress and the
elastic tangent, so the caller can cut the step.  Nothing raises inside the
update.

Implementation and cost
-----------------------
Two back-ends compute the same algorithm; the residual / Jacobian formulas are
shared (one Python function compiled by numba for the per-point loop and
called on arrays by the numpy path):

* ``backend="numba"`` (default when numba imports): a ``@njit`` loop over
  points, each with its own Newton iteration; no temporaries.
* ``backend="numpy"``: all points iterate together, with a mask of the
  unconverged ones and batched 4x4 solves (``np.linalg.solve``).

Measured with ``bench/gtn_material.py`` (one core, OMP_NUM_THREADS=1, 16,384
points, every point plastic, ferrite/martensite mix, strain increment 2e-3 from
a pre-strained state; see BENCHMARKS.md for the machine):

    numba : ~0.25 us/point  ->   ~4 ms per 16,384 points
    numpy : ~6.5  us/point  -> ~105 ms per 16,384 points

so numba is the default; the numpy path is kept as an independent cross-check
(the tests compare both) and as a fallback when numba is absent.

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

try:  # numba is pinned in requirements.txt; the numpy path works without it
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
_X_CLIP = 60.0  # clip of the cosh argument in Newton iterates (overflow guard)


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
    the elastic stiffness kept by failed points); name (label only).
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
    name: str = "gtn"

    def __post_init__(self):
        def bad(msg):
            raise ValueError(f"GTNParameters({self.name!r}): {msg}")

        for fld in ("E", "nu", "K", "eps0", "n", "q1", "q2", "q3", "fN", "eN", "sN",
                    "f0", "fc", "fF", "residual_stiffness"):
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
                         self.residual_stiffness], dtype=float)


# indices into GTNParameters.packed()
(_P_LAM, _P_G, _P_KB, _P_HK, _P_HE, _P_HN, _P_Q1, _P_Q2, _P_Q3, _P_FN, _P_EN, _P_SN,
 _P_FC, _P_FF, _P_SLOPE, _P_RES) = range(16)
_NPAR = 16

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
# * f0 = 0: SPEC A2 gives no initial porosity; we start void-free and let all
#   porosity nucleate (the setting of the nucleation analyses above).  DP steels
#   nucleate voids at ferrite/martensite interfaces and in martensite, which
#   strain-controlled nucleation represents.
# * Flow curves: ferrite sigma_y = 300 MPa, Swift n = 0.2; martensite
#   sigma_y = 1,300 MPa, n = 0.1 (SPEC A2: ferrite ~300 MPa, martensite
#   1,200-1,500 MPa).  The orders of magnitude match the dislocation-based flow
#   curves of Rodriguez & Gutierrez (2003) Mater Sci Forum 426-432:4525 that are
#   commonly used for the phases of DP steels (e.g. Sun et al. (2009) Int J Plast
#   25:1888; Ramazani et al. (2012) Comput Mater Sci 52:46).  eps0 is our
#   calibration: ferrite eps0 = 0.02 gives sM = 300 (1 + ebar/0.02)^0.2, i.e.
#   ~550 MPa at ebar = 0.2; a homogeneous ferrite point in plane-strain uniaxial
#   tension (sigma_yy = 0, eps_zz = 0) with these constants peaks at
#   sigma_xx ~ 660 MPa near eps_xx ~ 0.4 (computed with this module; see the
#   report in tests/test_gtn_material.py::test_homogeneous_peak_stresses), so
#   that 700 MPa falls inside the range of DP tensile strengths (SPEC A2).
#   Martensite eps0 = 0.01 gives ~1,560 MPa at ebar = 0.05.
FERRITE = GTNParameters.swift(sigma_y=300.0, n=0.2, eps0=0.02, name="ferrite")
MARTENSITE = GTNParameters.swift(sigma_y=1300.0, n=0.1, eps0=0.01, name="martensite")


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
                    raise ValueError(f"GTNState.{name} contains NaN or inf "
                                     f"(first bad point {np.flatnonzero(~np.isfinite(a).reshape(n, -1).all(1))[0]})")
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
# shared point-wise formulas (scalars under numba, arrays under numpy)
# --------------------------------------------------------------------------
def _gtn_system(dep, deq, deb, dfv, ptr, qtr, ebn, fn,
                Kb, G, hK, he, hn, q1, q2, q3, fN, eN, sN, fc, slope):
    """Residuals R1..R4 and Jacobian d(R)/d(dep, deq, deb, df) (row major).

    Works element-wise: every argument may be a float or an array.
    """
    p = ptr - Kb * dep
    q = qtr - 3.0 * G * deq
    eb = ebn + deb
    f = fn + dfv
    base = he + eb
    s = hK * base ** hn
    h = hn * s / base
    over = (f - fc) > 0.0
    fs = f + over * (slope - 1.0) * (f - fc)
    g = 1.0 + over * (slope - 1.0)
    z = (eb - eN) / sN
    A = fN / (sN * 2.5066282746310002) * np.exp(-0.5 * z * z)
    dA = -A * z / sN
    x = 1.5 * q2 * p / s
    x = np.minimum(np.maximum(x, -_X_CLIP), _X_CLIP)
    ch = np.cosh(x)
    sh = np.sinh(x)
    c3 = 3.0 * q1 * q2
    omf = 1.0 - f
    # R1 = sM (dep Phi_q - deq Phi_p)
    R1 = 2.0 * dep * q / s - c3 * deq * fs * sh
    J11 = 2.0 * q / s + c3 * deq * fs * ch * 1.5 * q2 * Kb / s
    J12 = -6.0 * G * dep / s - c3 * fs * sh
    J13 = -2.0 * dep * q * h / (s * s) + c3 * deq * fs * ch * x * h / s
    J14 = -c3 * deq * g * sh
    # R2 = Phi
    R2 = (q / s) ** 2 + 2.0 * q1 * fs * ch - 1.0 - q3 * fs * fs
    J21 = -c3 * Kb * fs * sh / s
    J22 = -6.0 * G * q / (s * s)
    J23 = -2.0 * q * q * h / (s * s * s) - 2.0 * q1 * fs * sh * x * h / s
    J24 = (2.0 * q1 * ch - 2.0 * q3 * fs) * g
    # R3 = (1 - f) sM deb - (p dep + q deq)
    R3 = omf * s * deb - p * dep - q * deq
    J31 = -p + Kb * dep
    J32 = -q + 3.0 * G * deq
    J33 = omf * (s + h * deb)
    J34 = -s * deb
    # R4 = df - (1 - f) dep - A deb
    R4 = dfv - omf * dep - A * deb
    J41 = -omf
    J42 = 0.0 * dep
    J43 = -(A + dA * deb)
    J44 = 1.0 + dep
    return (R1, R2, R3, R4,
            J11, J12, J13, J14, J21, J22, J23, J24,
            J31, J32, J33, J34, J41, J42, J43, J44)


def _gtn_guess(ptr, qtr, ebn, fn,
               Kb, G, hK, he, hn, q1, q2, q3, fN, eN, sN, fc, slope):
    """Starting point of the local Newton method (element-wise).

    f* is frozen at its old value and the trial pressure is pulled inside the
    hydrostatic limit of the surface (|x| <= 0.95 x_max); with
    omega^2 = 1 + q3 f*^2 - 2 q1 f* cosh(x) the von-Mises-like scalar equation
    q_tr - 3 G deq = omega sM(ebar_n + omega deq / (1 - f)) (convex, decreasing,
    monotone Newton convergence from deq = 0) gives deq; dep follows from the
    normality rule and debar, df from the work and porosity equations.
    """
    over = (fn - fc) > 0.0
    fs = fn + over * (slope - 1.0) * (fn - fc)
    sn = hK * (he + ebn) ** hn
    omf = 1.0 - fn
    # hydrostatic limit of the old surface: cosh(x_max) = (1 + q3 f*^2) / (2 q1 f*)
    arg = (1.0 + q3 * fs * fs) / (2.0 * q1 * np.maximum(fs, 1e-300))
    xmax = np.minimum(np.arccosh(np.maximum(arg, 1.0)), _X_CLIP)
    xt = 1.5 * q2 * ptr / sn
    x = np.minimum(np.maximum(xt, -0.95 * xmax), 0.95 * xmax)
    w2 = 1.0 + q3 * fs * fs - 2.0 * q1 * fs * np.cosh(x)
    w = np.sqrt(np.maximum(w2, 1e-12))
    dep0 = (xt - x) * sn / (1.5 * q2 * Kb)      # pressure pulled back to x
    deq = 0.0 * ptr
    for _ in range(12):
        base = he + ebn + w * deq / omf
        s = hK * base ** hn
        gfun = qtr - 3.0 * G * deq - w * s
        dg = -3.0 * G - w * w / omf * hn * s / base
        deq = deq - gfun / dg
    deq = np.minimum(np.maximum(deq, 0.0), qtr / (3.0 * G))
    s = hK * (he + ebn + w * deq / omf) ** hn
    # normality: dep Phi_q = deq Phi_p with q = omega s
    dep = dep0 + deq * 1.5 * q1 * q2 * fs * np.sinh(x) / w
    p = ptr - Kb * dep
    deb = np.maximum((p * dep + w * s * deq) / (omf * s), 0.0)
    z = (ebn + deb - eN) / sN
    A = fN / (sN * 2.5066282746310002) * np.exp(-0.5 * z * z)
    dfv = omf * dep + A * deb
    return dep, deq, deb, dfv


def _gtn_sens(dep, deq, deb, dfv, ptr, qtr, ebn, fn,
              Kb, G, hK, he, hn, q1, q2, q3, fN, eN, sN, fc, slope):
    """d(R1..R4)/d p_tr and d(R1..R4)/d q_tr at the solution (R4 has none)."""
    p = ptr - Kb * dep
    q = qtr - 3.0 * G * deq
    eb = ebn + deb
    f = fn + dfv
    s = hK * (he + eb) ** hn
    over = (f - fc) > 0.0
    fs = f + over * (slope - 1.0) * (f - fc)
    x = 1.5 * q2 * p / s
    x = np.minimum(np.maximum(x, -_X_CLIP), _X_CLIP)
    c3 = 3.0 * q1 * q2
    Bp1 = -c3 * deq * fs * np.cosh(x) * 1.5 * q2 / s
    Bp2 = c3 * fs * np.sinh(x) / s
    Bp3 = -dep
    Bq1 = 2.0 * dep / s
    Bq2 = 2.0 * q / (s * s)
    Bq3 = -deq
    return Bp1, Bp2, Bp3, Bq1, Bq2, Bq3


# --------------------------------------------------------------------------
# numba back-end
# --------------------------------------------------------------------------
if _HAVE_NUMBA:
    _nb_system = _numba.njit(cache=True, inline="always")(_gtn_system)
    _nb_sens = _numba.njit(cache=True, inline="always")(_gtn_sens)
    _nb_guess = _numba.njit(cache=True, inline="always")(_gtn_guess)

    @_numba.njit(cache=True)
    def _nb_solve(J, b, ncol):
        """In-place Gauss elimination with partial pivoting, J (4,4), b (4,ncol).
        Returns False on a (numerically) singular matrix."""
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

    @_numba.njit(cache=True)
    def _nb_fill(Jm, out):
        (R1, R2, R3, R4, J11, J12, J13, J14, J21, J22, J23, J24,
         J31, J32, J33, J34, J41, J42, J43, J44) = out
        Jm[0, 0] = J11; Jm[0, 1] = J12; Jm[0, 2] = J13; Jm[0, 3] = J14
        Jm[1, 0] = J21; Jm[1, 1] = J22; Jm[1, 2] = J23; Jm[1, 3] = J24
        Jm[2, 0] = J31; Jm[2, 1] = J32; Jm[2, 2] = J33; Jm[2, 3] = J34
        Jm[3, 0] = J41; Jm[3, 1] = J42; Jm[3, 2] = J43; Jm[3, 3] = J44
        return R1, R2, R3, R4

    @_numba.njit(cache=True)
    def _nb_kernel(strain, ep_old, eb_old, f_old, failed_old, phase, P,
                   tol, yield_tol, max_iter, max_ls,
                   sig, D, ep, eb, fo, failed, conv):
        n = strain.shape[0]
        Jm = np.empty((4, 4))
        rhs = np.empty((4, 2))
        xv = np.empty(4)
        dv = np.empty(4)
        for i in range(n):
            pr = P[phase[i]]
            lam = pr[0]; G = pr[1]; Kb = pr[2]; hK = pr[3]; he = pr[4]; hn = pr[5]
            q1 = pr[6]; q2 = pr[7]; q3 = pr[8]; fN = pr[9]; eN = pr[10]; sN = pr[11]
            fc = pr[12]; fF = pr[13]; slope = pr[14]; res = pr[15]
            # elastic strain (tensor shear)
            exx = strain[i, 0] - ep_old[i, 0]
            eyy = strain[i, 1] - ep_old[i, 1]
            ezz = -ep_old[i, 2]
            exy = 0.5 * (strain[i, 2] - ep_old[i, 3])
            tr = exx + eyy + ezz
            txx = lam * tr + 2.0 * G * exx
            tyy = lam * tr + 2.0 * G * eyy
            tzz = lam * tr + 2.0 * G * ezz
            txy = 2.0 * G * exy
            for a in range(4):
                ep[i, a] = ep_old[i, a]
            eb[i] = eb_old[i]
            fo[i] = f_old[i]
            failed[i] = failed_old[i]
            conv[i] = True
            if failed_old[i]:
                sig[i, 0] = res * txx; sig[i, 1] = res * tyy
                sig[i, 2] = res * tzz; sig[i, 3] = res * txy
                D[i, 0, 0] = res * (lam + 2 * G); D[i, 0, 1] = res * lam; D[i, 0, 2] = 0.0
                D[i, 1, 0] = res * lam; D[i, 1, 1] = res * (lam + 2 * G); D[i, 1, 2] = 0.0
                D[i, 2, 0] = 0.0; D[i, 2, 1] = 0.0; D[i, 2, 2] = res * G
                fo[i] = fF
                continue
            # default output: elastic trial
            sig[i, 0] = txx; sig[i, 1] = tyy; sig[i, 2] = tzz; sig[i, 3] = txy
            D[i, 0, 0] = lam + 2 * G; D[i, 0, 1] = lam; D[i, 0, 2] = 0.0
            D[i, 1, 0] = lam; D[i, 1, 1] = lam + 2 * G; D[i, 1, 2] = 0.0
            D[i, 2, 0] = 0.0; D[i, 2, 1] = 0.0; D[i, 2, 2] = G
            ptr = (txx + tyy + tzz) / 3.0
            sxx = txx - ptr; syy = tyy - ptr; szz = tzz - ptr
            qtr = math.sqrt(1.5 * (sxx * sxx + syy * syy + szz * szz + 2.0 * txy * txy))
            ebn = eb_old[i]
            fn = f_old[i]
            sn = hK * (he + ebn) ** hn
            fsn = fn + (fn > fc) * (slope - 1.0) * (fn - fc)
            xt = 1.5 * q2 * ptr / sn
            if xt > _X_CLIP:
                xt = _X_CLIP
            elif xt < -_X_CLIP:
                xt = -_X_CLIP
            phi = (qtr / sn) ** 2 + 2.0 * q1 * fsn * math.cosh(xt) - 1.0 - q3 * fsn * fsn
            if not phi > yield_tol:
                if not math.isfinite(phi):
                    conv[i] = False
                continue
            # ---- local Newton on (dep, deq, deb, df) ----
            g0, g1, g2, g3 = _nb_guess(ptr, qtr, ebn, fn, Kb, G, hK, he, hn, q1, q2, q3, fN, eN,
                                       sN, fc, slope)
            xv[0] = g0; xv[1] = g1; xv[2] = g2
            xv[3] = min(g3, fF - fn)
            out = _nb_system(xv[0], xv[1], xv[2], xv[3], ptr, qtr, ebn, fn, Kb, G, hK, he, hn,
                             q1, q2, q3, fN, eN, sN, fc, slope)
            R1, R2, R3, R4 = _nb_fill(Jm, out)
            R3 = R3 / sn
            merit = R1 * R1 + R2 * R2 + R3 * R3 + R4 * R4
            ok = False
            fmax = fn
            mt = merit
            d0 = 0.0; d1 = 0.0; d2 = 0.0; d3 = 0.0
            deq_max = qtr / (3.0 * G)
            for it in range(max_iter + 1):
                if (abs(R1) < tol and abs(R2) < tol and abs(R3) < tol and abs(R4) < tol):
                    ok = True
                    break
                if it == max_iter or not math.isfinite(merit):
                    break
                for a in range(4):
                    Jm[2, a] /= sn
                rhs[0, 0] = -R1; rhs[1, 0] = -R2; rhs[2, 0] = -R3; rhs[3, 0] = -R4
                if not _nb_solve(Jm, rhs, 1):
                    break
                for a in range(4):
                    dv[a] = rhs[a, 0]
                alpha = 1.0
                for ls in range(max_ls):
                    d0 = xv[0] + alpha * dv[0]
                    d1 = xv[1] + alpha * dv[1]
                    d2 = xv[2] + alpha * dv[2]
                    d3 = xv[3] + alpha * dv[3]
                    if d1 < 0.0:
                        d1 = 0.0
                    elif d1 > deq_max:
                        d1 = deq_max
                    if d2 < 0.0:
                        d2 = 0.0
                    if d3 < -fn - 0.1:
                        d3 = -fn - 0.1
                    elif d3 > fF - fn:
                        d3 = fF - fn
                    out = _nb_system(d0, d1, d2, d3, ptr, qtr, ebn, fn, Kb, G, hK, he, hn,
                                     q1, q2, q3, fN, eN, sN, fc, slope)
                    T1 = out[0]; T2 = out[1]; T3 = out[2] / sn; T4 = out[3]
                    mt = T1 * T1 + T2 * T2 + T3 * T3 + T4 * T4
                    if mt <= (1.0 - 1e-4 * alpha) * merit or ls == max_ls - 1:
                        break
                    alpha *= 0.5
                xv[0] = d0; xv[1] = d1; xv[2] = d2; xv[3] = d3
                R1, R2, R3, R4 = _nb_fill(Jm, out)
                R3 = R3 / sn
                merit = mt
                if fn + d3 > fmax:
                    fmax = fn + d3
            fnew = fn + xv[3]
            if (ok and fnew >= fF * (1.0 - _F_FAIL_REL)) or \
                    ((not ok) and fmax >= fc + _F_NEAR * (fF - fc)):
                # failure: freeze state, residual stiffness on the elastic strain
                failed[i] = True
                fo[i] = fF
                sig[i, 0] = res * txx; sig[i, 1] = res * tyy
                sig[i, 2] = res * tzz; sig[i, 3] = res * txy
                for a in range(3):
                    for b in range(3):
                        D[i, a, b] *= res
                continue
            if not ok:
                conv[i] = False
                continue
            dep = xv[0]; deq = xv[1]; deb = xv[2]
            # stress and state update
            if qtr > 1e-14 * sn:
                nxx = 1.5 * sxx / qtr; nyy = 1.5 * syy / qtr
                nzz = 1.5 * szz / qtr; nxy = 1.5 * txy / qtr
                cn = 6.0 * G * G * deq / qtr
            else:
                nxx = 0.0; nyy = 0.0; nzz = 0.0; nxy = 0.0; cn = 0.0
            pv = Kb * dep
            sig[i, 0] = txx - pv - 2.0 * G * deq * nxx
            sig[i, 1] = tyy - pv - 2.0 * G * deq * nyy
            sig[i, 2] = tzz - pv - 2.0 * G * deq * nzz
            sig[i, 3] = txy - 2.0 * G * deq * nxy
            ep[i, 0] += dep / 3.0 + deq * nxx
            ep[i, 1] += dep / 3.0 + deq * nyy
            ep[i, 2] += dep / 3.0 + deq * nzz
            ep[i, 3] += 2.0 * deq * nxy
            eb[i] = ebn + deb
            fo[i] = max(fnew, 0.0)
            # consistent tangent: J at the solution, sensitivities to (p_tr, q_tr)
            out = _nb_system(xv[0], xv[1], xv[2], xv[3], ptr, qtr, ebn, fn, Kb, G, hK, he, hn,
                             q1, q2, q3, fN, eN, sN, fc, slope)
            _nb_fill(Jm, out)
            Bp1, Bp2, Bp3, Bq1, Bq2, Bq3 = _nb_sens(xv[0], xv[1], xv[2], xv[3], ptr, qtr, ebn,
                                                    fn, Kb, G, hK, he, hn, q1, q2, q3, fN, eN,
                                                    sN, fc, slope)
            rhs[0, 0] = -Bp1; rhs[1, 0] = -Bp2; rhs[2, 0] = -Bp3; rhs[3, 0] = 0.0
            rhs[0, 1] = -Bq1; rhs[1, 1] = -Bq2; rhs[2, 1] = -Bq3; rhs[3, 1] = 0.0
            if not _nb_solve(Jm, rhs, 2):
                conv[i] = False
                continue
            ap = rhs[0, 0]; bp = rhs[1, 0]; aq = rhs[0, 1]; bq = rhs[1, 1]
            u0 = ap * Kb + aq * 2 * G * nxx
            u1 = ap * Kb + aq * 2 * G * nyy
            u2 = aq * 2 * G * nxy
            v0 = bp * Kb + bq * 2 * G * nxx
            v1 = bp * Kb + bq * 2 * G * nyy
            v2 = bq * 2 * G * nxy
            nv0 = nxx; nv1 = nyy; nv2 = nxy
            D[i, 0, 0] += -Kb * u0 - 2 * G * nv0 * v0 - cn * (2.0 / 3.0 - 2.0 / 3.0 * nv0 * nv0)
            D[i, 0, 1] += -Kb * u1 - 2 * G * nv0 * v1 - cn * (-1.0 / 3.0 - 2.0 / 3.0 * nv0 * nv1)
            D[i, 0, 2] += -Kb * u2 - 2 * G * nv0 * v2 - cn * (-2.0 / 3.0 * nv0 * nv2)
            D[i, 1, 0] += -Kb * u0 - 2 * G * nv1 * v0 - cn * (-1.0 / 3.0 - 2.0 / 3.0 * nv1 * nv0)
            D[i, 1, 1] += -Kb * u1 - 2 * G * nv1 * v1 - cn * (2.0 / 3.0 - 2.0 / 3.0 * nv1 * nv1)
            D[i, 1, 2] += -Kb * u2 - 2 * G * nv1 * v2 - cn * (-2.0 / 3.0 * nv1 * nv2)
            D[i, 2, 0] += -2 * G * nv2 * v0 - cn * (-2.0 / 3.0 * nv2 * nv0)
            D[i, 2, 1] += -2 * G * nv2 * v1 - cn * (-2.0 / 3.0 * nv2 * nv1)
            D[i, 2, 2] += -2 * G * nv2 * v2 - cn * (0.5 - 2.0 / 3.0 * nv2 * nv2)


# --------------------------------------------------------------------------
# numpy back-end (all points iterate together)
# --------------------------------------------------------------------------
def _np_jac(out):
    R = np.stack(out[:4], axis=-1)
    m = R.shape[0]
    J = np.empty((m, 4, 4))
    for k in range(16):
        J[:, k // 4, k % 4] = out[4 + k]
    return R, J


def _np_kernel(strain, ep_old, eb_old, f_old, failed_old, phase, P, tol, yield_tol,
               max_iter, max_ls):
    n = strain.shape[0]
    pp = P[phase]                     # (n, NPAR) per-point constants
    lam, G, Kb = pp[:, _P_LAM], pp[:, _P_G], pp[:, _P_KB]
    fF, res = pp[:, _P_FF], pp[:, _P_RES]
    exx = strain[:, 0] - ep_old[:, 0]
    eyy = strain[:, 1] - ep_old[:, 1]
    ezz = -ep_old[:, 2]
    exy = 0.5 * (strain[:, 2] - ep_old[:, 3])
    tr = exx + eyy + ezz
    trial = np.stack([lam * tr + 2 * G * exx, lam * tr + 2 * G * eyy,
                      lam * tr + 2 * G * ezz, 2 * G * exy], axis=1)
    Ce = np.zeros((n, 3, 3))
    Ce[:, 0, 0] = Ce[:, 1, 1] = lam + 2 * G
    Ce[:, 0, 1] = Ce[:, 1, 0] = lam
    Ce[:, 2, 2] = G
    sig = trial.copy()
    D = Ce.copy()
    ep = ep_old.copy()
    eb = eb_old.copy()
    fo = f_old.copy()
    failed = failed_old.copy()
    conv = np.ones(n, dtype=bool)
    # already failed points: residual stiffness
    sig[failed_old] *= res[failed_old, None]
    D[failed_old] *= res[failed_old, None, None]
    fo[failed_old] = fF[failed_old]

    ptr = trial[:, :3].sum(1) / 3.0
    sdev = trial.copy()
    sdev[:, :3] -= ptr[:, None]
    qtr = np.sqrt(1.5 * ((sdev[:, :3] ** 2).sum(1) + 2.0 * sdev[:, 3] ** 2))
    sn = pp[:, _P_HK] * (pp[:, _P_HE] + eb_old) ** pp[:, _P_HN]
    fc, slope = pp[:, _P_FC], pp[:, _P_SLOPE]
    fsn = f_old + (f_old > fc) * (slope - 1.0) * (f_old - fc)
    x = np.clip(1.5 * pp[:, _P_Q2] * ptr / sn, -_X_CLIP, _X_CLIP)
    phi = (qtr / sn) ** 2 + 2 * pp[:, _P_Q1] * fsn * np.cosh(x) - 1 - pp[:, _P_Q3] * fsn ** 2
    conv[~np.isfinite(phi) & ~failed_old] = False
    idx = np.flatnonzero((phi > yield_tol) & ~failed_old)
    if idx.size == 0:
        return sig, D, ep, eb, fo, failed, conv

    def cargs(sel):
        c = pp[sel]
        return (ptr[sel], qtr[sel], eb_old[sel], f_old[sel],
                c[:, _P_KB], c[:, _P_G], c[:, _P_HK], c[:, _P_HE], c[:, _P_HN], c[:, _P_Q1],
                c[:, _P_Q2], c[:, _P_Q3], c[:, _P_FN], c[:, _P_EN], c[:, _P_SN], c[:, _P_FC],
                c[:, _P_SLOPE])

    m = idx.size
    X = np.stack(_gtn_guess(*cargs(idx)), axis=1)
    X[:, 3] = np.minimum(X[:, 3], fF[idx] - f_old[idx])
    R, J = _np_jac(_gtn_system(X[:, 0], X[:, 1], X[:, 2], X[:, 3], *cargs(idx)))
    snm = sn[idx]
    R[:, 2] /= snm
    merit = (R ** 2).sum(1)
    fmax = f_old[idx].copy()
    ok = np.zeros(m, dtype=bool)
    deq_max = qtr[idx] / (3.0 * G[idx])
    fnm, fFm = f_old[idx], fF[idx]
    act = np.arange(m)                # local indices still iterating
    for it in range(max_iter + 1):
        done = np.all(np.abs(R[act]) < tol, axis=1)
        ok[act[done]] = True
        act = act[~done & np.isfinite(merit[act])]
        if act.size == 0 or it == max_iter:
            break
        Ja = J[act].copy()
        Ja[:, 2, :] /= snm[act, None]
        try:
            dX = np.linalg.solve(Ja, -R[act][..., None])[..., 0]
        except np.linalg.LinAlgError:
            dX = np.empty((act.size, 4))
            for k in range(act.size):  # rare: isolate the singular points
                try:
                    dX[k] = np.linalg.solve(Ja[k], -R[act[k]])
                except np.linalg.LinAlgError:
                    dX[k] = np.nan
        good = np.all(np.isfinite(dX), axis=1)
        act, dX = act[good], dX[good]
        alpha = np.ones(act.size)
        need = np.arange(act.size)
        for ls in range(max_ls):
            a = act[need]
            Xt = X[a] + alpha[need, None] * dX[need]
            Xt[:, 1] = np.clip(Xt[:, 1], 0.0, deq_max[a])
            Xt[:, 2] = np.maximum(Xt[:, 2], 0.0)
            Xt[:, 3] = np.clip(Xt[:, 3], -fnm[a] - 0.1, fFm[a] - fnm[a])
            c = cargs(idx[a])
            Rt, Jt = _np_jac(_gtn_system(Xt[:, 0], Xt[:, 1], Xt[:, 2], Xt[:, 3], *c))
            Rt[:, 2] /= snm[a]
            mt = (Rt ** 2).sum(1)
            acc = (mt <= (1.0 - 1e-4 * alpha[need]) * merit[a]) | (ls == max_ls - 1)
            aa = a[acc]
            X[aa], R[aa], J[aa], merit[aa] = Xt[acc], Rt[acc], Jt[acc], mt[acc]
            fmax[aa] = np.maximum(fmax[aa], fnm[aa] + Xt[acc, 3])
            alpha[need[~acc]] *= 0.5
            need = need[~acc]
            if need.size == 0:
                break

    fnew = fnm + X[:, 3]
    fcm = fc[idx]
    fail = (ok & (fnew >= fFm * (1.0 - _F_FAIL_REL))) | (~ok & (fmax >= fcm + _F_NEAR * (fFm - fcm)))
    gi = idx[fail]
    failed[gi] = True
    fo[gi] = fF[gi]
    sig[gi] *= res[gi, None]
    D[gi] *= res[gi, None, None]
    conv[idx[~ok & ~fail]] = False

    sel = ok & ~fail
    gi = idx[sel]
    if gi.size:
        Xs = X[sel]
        dep, deq, deb = Xs[:, 0], Xs[:, 1], Xs[:, 2]
        q_ = qtr[gi]
        big = q_ > 1e-14 * sn[gi]
        nvec = np.where(big[:, None], 1.5 * sdev[gi] / np.where(big, q_, 1.0)[:, None], 0.0)
        cn = np.where(big, 6.0 * G[gi] ** 2 * deq / np.where(big, q_, 1.0), 0.0)
        Kg, Gg = Kb[gi], G[gi]
        s_new = trial[gi] - 2.0 * (Gg * deq)[:, None] * nvec
        s_new[:, :3] -= (Kg * dep)[:, None]
        sig[gi] = s_new
        dE = deq[:, None] * nvec
        dE[:, :3] += (dep / 3.0)[:, None]
        dE[:, 3] *= 2.0
        ep[gi] += dE
        eb[gi] = eb_old[gi] + deb
        fo[gi] = np.maximum(fnew[sel], 0.0)
        c = cargs(gi)
        _, Js = _np_jac(_gtn_system(Xs[:, 0], Xs[:, 1], Xs[:, 2], Xs[:, 3], *c))
        Bp1, Bp2, Bp3, Bq1, Bq2, Bq3 = _gtn_sens(Xs[:, 0], Xs[:, 1], Xs[:, 2], Xs[:, 3], *c)
        zero = np.zeros_like(Bp1)
        B = -np.stack([np.stack([Bp1, Bp2, Bp3, zero], 1), np.stack([Bq1, Bq2, Bq3, zero], 1)],
                      axis=2)
        try:
            S = np.linalg.solve(Js, B)
        except np.linalg.LinAlgError:
            S = np.full_like(B, np.nan)
            for k in range(gi.size):
                try:
                    S[k] = np.linalg.solve(Js[k], B[k])
                except np.linalg.LinAlgError:
                    pass
        ap, aq, bp, bq = S[:, 0, 0], S[:, 0, 1], S[:, 1, 0], S[:, 1, 1]
        n3 = nvec[:, [0, 1, 3]]                        # (xx, yy, xy) of n
        e3 = np.array([1.0, 1.0, 0.0])
        u = (ap * Kg)[:, None] * e3 + (aq * 2 * Gg)[:, None] * n3
        v = (bp * Kg)[:, None] * e3 + (bq * 2 * Gg)[:, None] * n3
        Pd = np.array([[2 / 3, -1 / 3, 0.0], [-1 / 3, 2 / 3, 0.0], [0.0, 0.0, 0.5]])
        Dg = (Ce[gi] - Kg[:, None, None] * e3[None, :, None] * u[:, None, :]
              - (2 * Gg)[:, None, None] * n3[:, :, None] * v[:, None, :]
              - cn[:, None, None] * (Pd[None] - 2.0 / 3.0 * n3[:, :, None] * n3[:, None, :]))
        badS = ~np.all(np.isfinite(S.reshape(gi.size, -1)), axis=1)
        D[gi] = Dg
        if np.any(badS):
            conv[gi[badS]] = False
            D[gi[badS]] = Ce[gi[badS]]
    return sig, D, ep, eb, fo, failed, conv


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
        raise ValueError(f"phase must have shape ({n},) (one phase index per point), got {ph.shape}")
    if ph.dtype == bool:
        ph = ph.astype(np.int64)
    if not np.issubdtype(ph.dtype, np.integer):
        if np.issubdtype(ph.dtype, np.floating) and np.all(np.isfinite(ph)) and np.all(ph == np.round(ph)):
            ph = ph.astype(np.int64)
        else:
            raise ValueError(f"phase must hold integer phase indices, got dtype {ph.dtype}")
    if ph.size and (ph.min() < 0 or ph.max() >= n_phases):
        raise ValueError(f"phase indices must lie in [0, {n_phases - 1}] for {n_phases} parameter "
                         f"set(s), got range [{ph.min()}, {ph.max()}]")
    return np.ascontiguousarray(ph, dtype=np.int64)


def gtn_update(strain_new, state_old: GTNState, params, phase=None, *, tol: float = 1e-12,
               yield_tol: float = 1e-12, max_iter: int = 50, max_line_search: int = 12,
               backend: str = "auto") -> GTNUpdate:
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
        Local Newton tolerance on the (dimensionless) residuals; the stress
        is then accurate to ~tol * E.
    yield_tol : float
        A trial state with Phi <= yield_tol is elastic.
    max_iter, max_line_search : int
        Local Newton iterations and back-tracking halvings per iteration.
    backend : "auto" | "numba" | "numpy"
        "auto" uses numba when available.

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
    if not (tol > 0 and yield_tol >= 0 and int(max_iter) >= 1 and int(max_line_search) >= 1):
        raise ValueError(f"need tol > 0, yield_tol >= 0, max_iter >= 1, max_line_search >= 1; "
                         f"got {tol}, {yield_tol}, {max_iter}, {max_line_search}")
    fF = np.array([p.fF for p in plist])[ph]
    if np.any(st.f > fF):
        k = int(np.flatnonzero(st.f > fF)[0])
        raise ValueError(f"GTNState.f exceeds fF of its phase (point {k}: f = {st.f[k]}, "
                         f"fF = {fF[k]})")
    P = np.ascontiguousarray(np.stack([p.packed() for p in plist]))
    if backend == "auto":
        backend = "numba" if _HAVE_NUMBA else "numpy"
    if backend == "numba":
        if not _HAVE_NUMBA:
            raise ValueError("backend='numba' requested but numba is not importable")
        sig = np.empty((n, 4))
        D = np.empty((n, 3, 3))
        ep = np.empty((n, 4))
        eb = np.empty(n)
        fo = np.empty(n)
        failed = np.empty(n, dtype=bool)
        conv = np.empty(n, dtype=bool)
        _nb_kernel(strain, st.eps_p, st.epsbar_p, st.f, st.failed, ph, P, float(tol),
                   float(yield_tol), int(max_iter), int(max_line_search),
                   sig, D, ep, eb, fo, failed, conv)
    elif backend == "numpy":
        sig, D, ep, eb, fo, failed, conv = _np_kernel(
            strain, st.eps_p, st.epsbar_p, st.f, st.failed, ph, P, float(tol),
            float(yield_tol), int(max_iter), int(max_line_search))
    else:
        raise ValueError(f"backend must be 'auto', 'numba' or 'numpy', got {backend!r}")
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
    return ((q / sM) ** 2 + 2 * params.q1 * fs * np.cosh(1.5 * params.q2 * p / sM)
            - 1 - params.q3 * fs ** 2)
