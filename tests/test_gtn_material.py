"""Verification of the GTN constitutive update (lib/fe/gtn_material.py).

Independent references: Hooke's law, the closed-form Swift curve and a J2
radial return written here, an ODE integration (scipy solve_ivp) of the same
rate equations with the consistency condition solved for the plastic
multiplier rate, and central finite differences for the consistent tangent.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.optimize import brentq

from lib.fe.gtn_material import (
    FERRITE,
    MARTENSITE,
    GTNParameters,
    GTNState,
    elastic_tangent,
    gtn_update,
    plane_strain_stress,
    yield_function,
)

PHASES = (FERRITE, MARTENSITE)
VON_MISES = dataclasses.replace(FERRITE, fN=0.0, f0=0.0, name="von Mises")


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def von_mises(stress):
    s = np.atleast_2d(stress)
    p = s[:, :3].mean(1)
    d = s[:, :3] - p[:, None]
    return np.sqrt(1.5 * ((d ** 2).sum(1) + 2.0 * s[:, 3] ** 2))


def drive(params, phase, strain_path):
    """Apply a sequence of total strains (k, n, 3); returns the final state
    (every step must converge)."""
    n = strain_path.shape[1]
    st = GTNState.initial(n, params, phase)
    for eps in strain_path:
        r = gtn_update(eps, st, params, phase)
        assert r.converged.all()
        st = r.state
    return st


def random_states(n, seed, max_level=(0.35, 0.06), nsteps=40):
    """n points of both phases driven along tension-dominated proportional
    paths (eps_yy/eps_xx in [-1, -0.3], moderate shear); returns
    (phase, strain reached, state)."""
    rng = np.random.default_rng(seed)
    phase = rng.integers(0, 2, n)
    direc = np.stack([np.ones(n), rng.uniform(-1.0, -0.3, n), rng.uniform(-0.4, 0.4, n)], 1)
    level = np.where(phase == 0, rng.uniform(0.0, max_level[0], n),
                     rng.uniform(0.0, max_level[1], n))
    path = np.stack([direc * (level * k / nsteps)[:, None] for k in range(1, nsteps + 1)])
    return phase, path[-1], drive(PHASES, phase, path)


def ddot(a, b):
    """a : b for tensors stored as (xx, yy, zz, xy)."""
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2] + 2.0 * a[3] * b[3]


def gtn_rates(prm: GTNParameters, y):
    """Ingredients of the rate equations at y = (sxx, syy, szz, sxy, ebar, f)."""
    lam, G, _ = prm.lame
    s, eb, f = y[:4], y[4], y[5]
    sM = prm.K * (prm.eps0 + eb) ** prm.n
    h = prm.n * sM / (prm.eps0 + eb)
    fs = float(prm.fstar(f))
    g = 1.0 if f <= prm.fc else (prm.fu - prm.fc) / (prm.fF - prm.fc)
    A = float(prm.nucleation_rate(eb))
    p = s[:3].mean()
    dev = s.copy()
    dev[:3] -= p
    q = math.sqrt(1.5 * (dev[:3] @ dev[:3] + 2 * dev[3] ** 2))
    x = 1.5 * prm.q2 * p / sM
    N = 1.5 * (2 * q / sM ** 2) * dev / q               # dPhi/dsigma
    N[:3] += prm.q1 * prm.q2 * fs * math.sinh(x) / sM   # (1/3) dPhi/dp
    dPhi_dsM = -2 * q * q / sM ** 3 - 2 * prm.q1 * fs * math.sinh(x) * x / sM
    dPhi_dfs = 2 * prm.q1 * math.cosh(x) - 2 * prm.q3 * fs

    def C(X):
        out = 2 * G * X
        out[:3] += lam * X[:3].sum()
        return out

    ebar_rate = ddot(s, N) / ((1 - f) * sM)             # per unit plastic multiplier
    f_rate = (1 - f) * N[:3].sum() + A * ebar_rate
    CN = C(N)
    H = ddot(N, CN) - dPhi_dsM * h * ebar_rate - dPhi_dfs * g * f_rate
    return C, CN, N, H, ebar_rate, f_rate


def ode_reference(prm: GTNParameters, t_eval, direction=None, uniaxial=False):
    """Integrate the GTN rate equations with solve_ivp (DOP853, rtol 1e-10).

    direction: proportional total strain eps = t * direction (eps_xx, eps_yy,
    gamma_xy); uniaxial: plane-strain uniaxial tension, eps_xx = t, sigma_yy = 0.
    The elastic part is solved in closed form (yield onset by brentq)."""
    lam, G, _ = prm.lame
    if uniaxial:
        d = np.array([1.0, -lam / (lam + 2 * G), 0.0])
    else:
        d = np.asarray(direction, float)
    sig1 = plane_strain_stress(prm, d[None])[0]
    ty = brentq(lambda t: yield_function(prm, t * sig1, 0.0, prm.f0)[0], 1e-8, 0.1,
                xtol=1e-16, rtol=1e-15)
    dt = np.array([d[0], d[1], 0.0, 0.5 * d[2]])

    def rhs(t, y):
        C, CN, N, H, el, fl = gtn_rates(prm, y[:6])
        if uniaxial:
            def sdot(e):
                de = np.array([1.0, e, 0.0, 0.0])
                ld = ddot(N, C(de)) / H
                return C(de) - ld * CN, ld
            a, _ = sdot(0.0)
            b, _ = sdot(1.0)
            e = -a[1] / (b[1] - a[1])
            sd, ld = sdot(e)
            return np.concatenate([sd, [ld * el, ld * fl, e]])
        ld = ddot(N, C(dt)) / H
        return np.concatenate([C(dt) - ld * CN, [ld * el, ld * fl]])

    y0 = np.concatenate([ty * sig1, [0.0, prm.f0], [ty * d[1]] if uniaxial else []])
    sol = solve_ivp(rhs, (ty, t_eval[-1]), y0, t_eval=t_eval, rtol=1e-10, atol=1e-13,
                    method="DOP853")
    assert sol.status == 0, sol.message
    return sol


def return_map_proportional(prm, direction, t_end, dt):
    st = GTNState.initial(1, prm)
    d = np.asarray(direction, float)
    out = []
    for k in range(1, int(round(t_end / dt)) + 1):
        r = gtn_update((k * dt * d)[None], st, prm)
        assert r.converged[0]
        st = r.state
        out.append((k * dt, *st.stress[0], st.epsbar_p[0], st.f[0]))
    return np.array(out)


def return_map_uniaxial(prm, t_end, dt):
    """Plane-strain uniaxial tension: eps_xx = t, eps_yy from sigma_yy = 0 by a
    Newton iteration that uses the consistent tangent."""
    st = GTNState.initial(1, prm)
    eyy, slope, out = 0.0, -1.0, []
    for k in range(1, int(round(t_end / dt)) + 1):
        exx = k * dt
        eyy += slope * dt
        for _ in range(30):
            r = gtn_update(np.array([[exx, eyy, 0.0]]), st, prm)
            assert r.converged[0]
            D = r.tangent[0]
            if abs(r.stress[0, 1]) < 1e-9 * abs(r.stress[0, 0]):
                break
            eyy -= r.stress[0, 1] / D[1, 1]
        else:
            raise AssertionError("sigma_yy = 0 iteration did not converge")
        slope = -D[1, 0] / D[1, 1]
        st = r.state
        out.append((exx, *st.stress[0], st.epsbar_p[0], st.f[0], eyy))
    return np.array(out)


def j2_radial_return(prm, strain, state_eps_p, state_ebar):
    """Independent von Mises return map (plane strain), Swift hardening."""
    lam, G, Kb = prm.lame
    e = np.array([strain[0] - state_eps_p[0], strain[1] - state_eps_p[1], -state_eps_p[2],
                  0.5 * (strain[2] - state_eps_p[3])])
    tr = e[:3].sum()
    sig = 2 * G * e
    sig[:3] += lam * tr
    p = sig[:3].mean()
    dev = sig.copy()
    dev[:3] -= p
    q = math.sqrt(1.5 * (dev[:3] @ dev[:3] + 2 * dev[3] ** 2))
    if q <= prm.flow_stress(state_ebar):
        return sig, state_ebar
    dg = brentq(lambda d: q - 3 * G * d - prm.K * (prm.eps0 + state_ebar + d) ** prm.n,
                0.0, q / (3 * G), xtol=1e-18, rtol=1e-15)
    out = dev * (1 - 3 * G * dg / q)
    out[:3] += p
    return out, state_ebar + dg


# ---------------------------------------------------------------------------
# 1. elastic limit
# ---------------------------------------------------------------------------
def test_elastic_limit_is_hooke():
    rng = np.random.default_rng(1)
    n = 200
    phase = rng.integers(0, 2, n)
    strain = rng.uniform(-1e-4, 1e-4, (n, 3))
    st = GTNState.initial(n, PHASES, phase)
    r = gtn_update(strain, st, PHASES, phase)
    assert r.converged.all() and not r.state.failed.any()
    for k, prm in enumerate(PHASES):
        m = phase == k
        np.testing.assert_allclose(r.stress[m], plane_strain_stress(prm, strain[m]),
                                   rtol=1e-13, atol=1e-10)
        np.testing.assert_allclose(r.tangent[m], np.broadcast_to(elastic_tangent(prm),
                                                                 (m.sum(), 3, 3)), rtol=1e-14)
    assert np.all(r.state.eps_p == 0) and np.all(r.state.epsbar_p == 0)
    np.testing.assert_array_equal(r.state.f, st.f)
    # sigma_zz = nu (sigma_xx + sigma_yy) in plane-strain elasticity
    np.testing.assert_allclose(r.stress[:, 2], FERRITE.nu * (r.stress[:, 0] + r.stress[:, 1]),
                               rtol=1e-12, atol=1e-9)


# ---------------------------------------------------------------------------
# 2. von Mises limit (f0 = 0, fN = 0)
# ---------------------------------------------------------------------------
def test_von_mises_limit_simple_shear_and_j2_return():
    prm = VON_MISES
    st = GTNState.initial(1, prm)
    eps_p, ebar = np.zeros(4), 0.0
    for k in range(1, 41):
        strain = np.array([0.0, 0.0, 0.005 * k])             # simple shear gamma_xy
        r = gtn_update(strain[None], st, prm)
        assert r.converged[0]
        st = r.state
        assert st.f[0] == 0.0
        ref, ebar_ref = j2_radial_return(prm, strain, eps_p, ebar)
        np.testing.assert_allclose(r.stress[0], ref, rtol=1e-9, atol=1e-7)
        assert abs(st.epsbar_p[0] - ebar_ref) <= 1e-10 * max(ebar_ref, 1e-3)
        # independent plastic-strain bookkeeping for the J2 reference
        lam, G, _ = prm.lame
        e_el = np.array([(ref[0] - prm.nu * ref[:3].sum() / (1 + prm.nu)) / (2 * G),
                         (ref[1] - prm.nu * ref[:3].sum() / (1 + prm.nu)) / (2 * G),
                         (ref[2] - prm.nu * ref[:3].sum() / (1 + prm.nu)) / (2 * G),
                         ref[3] / G])
        eps_p = np.array([strain[0] - e_el[0], strain[1] - e_el[1], -e_el[2],
                          strain[2] - e_el[3]])
        ebar = ebar_ref
        if st.epsbar_p[0] > 0:
            # equivalent stress on the closed-form Swift curve
            q = von_mises(r.stress)[0]
            sM = prm.K * (prm.eps0 + st.epsbar_p[0]) ** prm.n
            assert abs(q / sM - 1) < 1e-9
    assert st.epsbar_p[0] > 0.1


def test_von_mises_limit_plane_strain_tension():
    out = return_map_uniaxial(VON_MISES, 0.3, 0.01)
    q = von_mises(out[:, 1:5])
    eb = out[:, 5]
    pl = eb > 0
    assert pl.sum() > 25
    sM = VON_MISES.K * (VON_MISES.eps0 + eb[pl]) ** VON_MISES.n
    np.testing.assert_allclose(q[pl], sM, rtol=1e-9)
    assert np.all(out[:, 6] == 0.0)
    # plane-strain J2: sigma_zz -> (sxx + syy)/2 as plastic flow dominates
    assert abs(out[-1, 3] - 0.5 * out[-1, 1]) < 0.02 * out[-1, 1]


# ---------------------------------------------------------------------------
# 3. consistency after plastic steps, bounds of f
# ---------------------------------------------------------------------------
def test_consistency_and_bounds_after_plastic_steps():
    phase, eps, st = random_states(3000, seed=2)
    rng = np.random.default_rng(3)
    for scale in (1e-4, 2e-3, 1e-2):
        new = eps + rng.normal(0.0, scale, eps.shape) + scale * np.array([1.0, -0.5, 0.0])
        r = gtn_update(new, st, PHASES, phase)
        assert r.converged.all()
        assert np.all(np.isfinite(r.stress)) and np.all(np.isfinite(r.tangent))
        fF = np.array([p.fF for p in PHASES])[phase]
        assert np.all(r.state.f >= 0.0) and np.all(r.state.f <= fF)
        assert np.all(r.state.f[r.state.failed] == fF[r.state.failed])
        assert np.all(r.state.epsbar_p >= st.epsbar_p)
        plastic = (r.state.epsbar_p > st.epsbar_p) & ~r.state.failed
        assert plastic.sum() > 500
        for k, prm in enumerate(PHASES):
            m = plastic & (phase == k)
            phi = yield_function(prm, r.stress[m], r.state.epsbar_p[m], r.state.f[m])
            assert np.abs(phi).max() < 1e-8
            el = ~plastic & ~r.state.failed & (phase == k)
            phi_el = yield_function(prm, r.stress[el], r.state.epsbar_p[el], r.state.f[el])
            assert np.all(phi_el <= 1e-8)
    assert (st.f > 0.15).any()                       # the states reach coalescence


# ---------------------------------------------------------------------------
# 4. independent ODE reference, first-order convergence
# ---------------------------------------------------------------------------
def test_ode_reference_plane_strain_uniaxial_tension():
    """Ferrite, eps_xx to 0.6 with sigma_yy = 0: nucleation and growth (f ~ 0.08)."""
    t_chk = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    sol = ode_reference(FERRITE, t_chk, uniaxial=True)
    errs = []
    for dt in (0.01, 0.005, 0.0025, 0.001):
        out = return_map_uniaxial(FERRITE, t_chk[-1], dt)
        idx = np.rint(t_chk / dt).astype(int) - 1
        e_s = np.max(np.abs(out[idx, 1] - sol.y[0])) / np.abs(sol.y[0]).max()
        e_f = np.max(np.abs(out[idx, 6] - sol.y[5])) / sol.y[5][-1]
        errs.append((dt, e_s, e_f))
    (dt0, s0, f0), (dt1, s1, f1), (dt2, s2, f2), (dt3, s3, f3) = errs
    for a, b in ((s0, s1), (s1, s2), (f0, f1), (f1, f2)):
        assert 1.7 < a / b < 2.3                     # first order in the step size
    assert s3 < 5e-3 and f3 < 5e-3
    assert sol.y[5][-1] > 0.07                       # significant nucleation + growth
    # sigma_yy = 0 held by the reference too
    assert np.abs(sol.y[1]).max() < 1e-6 * sol.y[0].max()


def test_ode_reference_high_porosity_past_fc():
    """Ferrite, proportional path eps = t (1, -0.5, 0): f passes 0.1 and fc."""
    t_chk = np.array([0.1, 0.2, 0.3, 0.35])
    sol = ode_reference(FERRITE, t_chk, direction=[1.0, -0.5, 0.0])
    assert sol.y[5][1] > 0.1 and sol.y[5][-1] > FERRITE.fc + 0.03
    errs = []
    for dt in (0.0025, 0.00125, 0.000625):
        out = return_map_proportional(FERRITE, [1.0, -0.5, 0.0], t_chk[-1], dt)
        idx = np.rint(t_chk / dt).astype(int) - 1
        e_s = np.max(np.abs(out[idx, 1:5] - sol.y[:4].T)) / np.abs(sol.y[:4]).max()
        e_f = np.max(np.abs(out[idx, 6] - sol.y[5]) / sol.y[5])
        errs.append((e_s, e_f))
    (s0, f0), (s1, f1), (s2, f2) = errs
    assert s1 < s0 and s2 < s1 and f1 < f0 and f2 < f1
    assert 1.4 < s1 / s2 < 2.3 and 1.4 < f1 / f2 < 2.3
    assert s2 < 5e-3 and f2 < 5e-3


# ---------------------------------------------------------------------------
# 5. consistent tangent vs central finite differences
# ---------------------------------------------------------------------------
def _fd_tangent(strain, st, params, phase, h=1e-7, **update_kw):
    n = strain.shape[0]
    D = np.empty((n, 3, 3))
    for j in range(3):
        ep = strain.copy()
        em = strain.copy()
        ep[:, j] += h
        em[:, j] -= h
        rp = gtn_update(ep, st, params, phase, **update_kw)
        rm = gtn_update(em, st, params, phase, **update_kw)
        assert rp.converged.all() and rm.converged.all()
        D[:, :, j] = (rp.stress[:, [0, 1, 3]] - rm.stress[:, [0, 1, 3]]) / (2 * h)
    return D


@pytest.mark.parametrize("case", ["elastic", "plastic", "shear", "martensite", "high_porosity"])
def test_consistent_tangent_matches_finite_differences(case):
    prm = MARTENSITE if case == "martensite" else FERRITE
    d = {"elastic": [1.0, -0.4, 0.2], "plastic": [1.0, -0.7, 0.3], "shear": [0.1, -0.1, 1.0],
         "martensite": [1.0, -0.6, -0.3], "high_porosity": [1.0, -0.5, 0.1]}[case]
    t_end = {"elastic": 1e-3, "plastic": 0.15, "shear": 0.3, "martensite": 0.05,
             "high_porosity": 0.33}[case]
    d = np.asarray(d)
    nsteps = 60
    path = np.stack([(d * t_end * k / nsteps)[None] for k in range(1, nsteps)])
    st = drive(prm, None, path)
    strain = (d * t_end)[None]                       # the last step, from state st
    r = gtn_update(strain, st, prm)
    assert r.converged[0] and not r.state.failed[0]
    plastic = r.state.epsbar_p[0] > st.epsbar_p[0]
    assert plastic == (case != "elastic")
    if case == "high_porosity":
        assert r.state.f[0] > prm.fc
    D_fd = _fd_tangent(strain, st, prm, None)
    err = np.linalg.norm(r.tangent[0] - D_fd[0]) / np.linalg.norm(r.tangent[0])
    assert err < 1e-5, (case, err, r.tangent[0], D_fd[0])


def test_tangent_batch_random_states():
    """FD check on many points at once (both phases, random plastic states)."""
    phase, eps, st = random_states(400, seed=7)
    rng = np.random.default_rng(8)
    strain = eps + 2e-3 * np.array([1.0, -0.5, 0.0]) + rng.normal(0, 2e-4, eps.shape)
    diag = {}
    r = gtn_update(strain, st, PHASES, phase, diagnostics=diag)
    # sub-stepped points (rare, triaxiality > 3) included: their tangent is
    # chained through the sub-steps (see test_tangent_of_substepped_points)
    keep = r.converged & ~r.state.failed
    assert keep.sum() > 350
    D_fd = _fd_tangent(strain[keep], st.take(keep), PHASES, phase[keep], h=1e-8)
    err = (np.linalg.norm(r.tangent[keep] - D_fd, axis=(1, 2))
           / np.linalg.norm(r.tangent[keep], axis=(1, 2)))
    plastic = r.state.epsbar_p[keep] > st.epsbar_p[keep]
    assert plastic.sum() > 100
    assert err.max() < 1e-5, np.sort(err)[-5:]
    assert np.all(np.isfinite(r.tangent))


def _fd_tangent_stable(strain, st, params, h, **update_kw):
    """Central differences (n, 3, 3) and a mask of the points whose sub-step
    count and failure flag are the same at strain +- h in every component (the
    stress is smooth there; elsewhere it jumps by the difference between two
    sub-step patterns or to the residual stress of a failed point)."""
    diag = {}
    r = gtn_update(strain, st, params, diagnostics=diag, **update_kw)
    n = strain.shape[0]
    D = np.empty((n, 3, 3))
    stable = np.ones(n, dtype=bool)
    for j in range(3):
        out = []
        for sgn in (1.0, -1.0):
            e = strain.copy()
            e[:, j] += sgn * h
            dj = {}
            rj = gtn_update(e, st, params, diagnostics=dj, **update_kw)
            stable &= ((dj["substeps"] == diag["substeps"]) & (rj.state.failed == r.state.failed)
                       & rj.converged)
            out.append(rj.stress[:, [0, 1, 3]])
        D[:, :, j] = (out[0] - out[1]) / (2 * h)
    return r, diag, D, stable


def test_tangent_of_substepped_points():
    """High triaxiality: ferrite points with little porosity (f0 = 1e-5..1e-4,
    lightly pre-strained in tension) take a large increment with a big
    hydrostatic part (eps_yy/eps_xx up to 1, plane strain); backward Euler has
    no solution in one step there, so they are sub-stepped.  Their tangent is
    d sigma_final / d strain_new through the chain of sub-steps and must match
    central differences (the last sub-step's tangent alone was 40-110 % off)."""
    n = 300
    rng = np.random.default_rng(21)
    prm = FERRITE
    st = GTNState.initial(n, prm)
    st.f = rng.uniform(1e-5, 1e-4, n)
    pre = (np.stack([np.ones(n), rng.uniform(-0.6, -0.3, n), rng.uniform(-0.3, 0.3, n)], 1)
           * rng.uniform(0.0, 4e-3, n)[:, None])
    for k in range(1, 5):
        r = gtn_update(pre * k / 4, st, prm)
        assert r.converged.all()
        st = r.state
    inc = (np.stack([np.ones(n), rng.uniform(-0.2, 1.0, n), rng.uniform(-0.5, 0.5, n)], 1)
           * rng.uniform(4e-3, 1.5e-2, n)[:, None])
    strain = pre + inc
    r, diag, D_fd, stable = _fd_tangent_stable(strain, st, prm, h=1e-8)
    assert r.converged.all()
    sub = (diag["substeps"] > 1) & ~r.state.failed
    assert sub.sum() >= 30 and len(np.unique(diag["substeps"][sub])) >= 4
    triax = r.stress[:, :3].mean(1) / von_mises(r.stress)
    assert np.all(triax[sub] > 3.0)
    check = sub & stable
    assert check.sum() >= 0.9 * sub.sum()
    err = (np.linalg.norm(r.tangent - D_fd, axis=(1, 2))
           / np.linalg.norm(D_fd, axis=(1, 2)))
    assert err[check].max() < 1e-4, np.sort(err[check])[-5:]
    # the same holds for the single-step plastic points of the batch
    single = (diag["substeps"] == 1) & (diag["iterations"] > 0) & ~r.state.failed & stable
    assert single.sum() > 50 and err[single].max() < 1e-5
    # the chained tangent is not the elastic one (the points are plastic)
    De = elastic_tangent(prm)
    assert np.all(np.linalg.norm(r.tangent[check] - De, axis=(1, 2))
                  > 0.05 * np.linalg.norm(De))


def test_substepped_tangent_drives_local_newton():
    """A sub-stepped point: Newton's method on sigma_yy(eps_yy) = target with
    the returned tangent converges quadratically (the stress is smooth in
    strain_new for a fixed sub-step pattern)."""
    prm = FERRITE
    st = GTNState.initial(1, prm)
    st.f = np.array([3e-5])
    e = np.array([[0.008, 0.0, 0.002]])
    diag = {}
    r = gtn_update(e, st, prm, diagnostics=diag)
    assert r.converged[0] and not r.state.failed[0] and diag["substeps"][0] > 1
    nsub = diag["substeps"][0]
    target = r.stress[0, 1] - 5.0                   # MPa, a nearby state
    errs = []
    for _ in range(6):
        r = gtn_update(e, st, prm, diagnostics=diag)
        res = r.stress[0, 1] - target
        errs.append(abs(res))
        assert diag["substeps"][0] == nsub          # same sub-step pattern
        if abs(res) < 1e-9:
            break
        e[0, 1] -= res / r.tangent[0, 1, 1]
    assert errs[-1] < 1e-9 and len(errs) <= 5, errs
    # quadratic: each error <= C err_prev^2 once in the asymptotic range
    assert errs[2] < 1e-2 * errs[1], errs


# ---------------------------------------------------------------------------
# 6. failure
# ---------------------------------------------------------------------------
def _drive_to_failure(prm, d, dt, kmax):
    st = GTNState.initial(1, prm)
    d = np.asarray(d, float)
    for k in range(1, kmax):
        r = gtn_update((k * dt * d)[None], st, prm)
        assert r.converged[0]
        assert np.all(np.isfinite(r.stress)) and np.all(np.isfinite(r.tangent))
        if r.state.failed[0]:
            return k, st, r
        assert r.state.f[0] < prm.fF
        st = r.state
    raise AssertionError("no failure")


def test_failure_at_fF_freezes_point_with_residual_stiffness():
    prm = FERRITE
    d = np.array([1.0, -0.5, 0.0])
    k, st_before, r = _drive_to_failure(prm, d, 2e-3, 400)
    assert st_before.f[0] > prm.fc + 0.8 * (prm.fF - prm.fc)     # failure came from growth
    assert r.state.f[0] == prm.fF and r.converged[0]
    sy = prm.sigma_y
    assert np.abs(r.stress).max() < 1e-3 * sy                   # residual stress only
    np.testing.assert_allclose(r.tangent[0], prm.residual_stiffness * elastic_tangent(prm),
                               rtol=1e-12)
    # frozen plastic state
    np.testing.assert_array_equal(r.state.eps_p, st_before.eps_p)
    np.testing.assert_array_equal(r.state.epsbar_p, st_before.epsbar_p)
    # later steps: stays failed, residual elastic response, no NaN, converged
    st = r.state
    for j in range(1, 20):
        strain = ((k + 5 * j) * 2e-3 * d)[None]
        r2 = gtn_update(strain, st, prm)
        assert r2.converged[0] and r2.state.failed[0] and r2.state.f[0] == prm.fF
        lam, G, _ = prm.lame
        ee = np.array([strain[0, 0] - st.eps_p[0, 0], strain[0, 1] - st.eps_p[0, 1],
                       -st.eps_p[0, 2], strain[0, 2] - st.eps_p[0, 3]])
        tr = ee[:3].sum()
        expect = prm.residual_stiffness * np.array([lam * tr + 2 * G * ee[0],
                                                    lam * tr + 2 * G * ee[1],
                                                    lam * tr + 2 * G * ee[2], G * ee[3]])
        np.testing.assert_allclose(r2.stress[0], expect, rtol=1e-12, atol=1e-15)
        st = r2.state


def test_cavitation_instability_counts_as_failure():
    """Near-equibiaxial plane strain (triaxiality ~ 4): the GTN plastic modulus
    vanishes at a small porosity (cavitation); the point fails instead of
    stalling, with no NaN and converged = True. Void-free start (f0 = 0), where the
    instability is abrupt; with the calibrated f0 = 0.001 the voids grow to fF instead."""
    prm = dataclasses.replace(MARTENSITE, f0=0.0)
    k, st_before, r = _drive_to_failure(prm, [1.0, 0.3, -0.2], 2e-3, 200)
    assert st_before.f[0] < 0.05                     # far below fF
    s = st_before.stress[0]
    assert s[:3].mean() / von_mises(s)[0] > 3.0      # high triaxiality
    assert r.state.failed[0] and r.state.f[0] == prm.fF and r.converged[0]


def test_substepping_rescues_large_high_triaxiality_step():
    phase, eps, st = random_states(2000, seed=11)
    rng = np.random.default_rng(12)
    strain = eps + rng.normal(0.0, 0.01, eps.shape) + 0.01 * np.array([1.0, 0.0, 0.0])
    r1 = gtn_update(strain, st, PHASES, phase, max_substeps=1)
    diag = {}
    r = gtn_update(strain, st, PHASES, phase, diagnostics=diag)
    assert r.converged.all()
    sub = (diag["substeps"] > 1) & ~r.state.failed
    assert (~r1.converged).sum() >= sub.sum() > 0
    for k, prm in enumerate(PHASES):
        m = sub & (phase == k) & (r.state.epsbar_p > st.epsbar_p)
        phi = yield_function(prm, r.stress[m], r.state.epsbar_p[m], r.state.f[m])
        assert np.abs(phi).max(initial=0.0) < 1e-8


# ---------------------------------------------------------------------------
# 7. heterogeneous batch
# ---------------------------------------------------------------------------
def test_mixed_phase_batch_equals_separate_calls():
    phase, eps, st = random_states(1000, seed=5)
    strain = eps + 3e-3 * np.array([1.0, -0.5, 0.2])
    r = gtn_update(strain, st, PHASES, phase)
    for k, prm in enumerate(PHASES):
        m = phase == k
        rk = gtn_update(strain[m], st.take(m), prm)
        np.testing.assert_array_equal(r.stress[m], rk.stress)
        np.testing.assert_array_equal(r.tangent[m], rk.tangent)
        np.testing.assert_array_equal(r.state.f[m], rk.state.f)
        np.testing.assert_array_equal(r.state.eps_p[m], rk.state.eps_p)
        np.testing.assert_array_equal(r.converged[m], rk.converged)
    # the old state is never modified, and the update is deterministic
    st2 = st.copy()
    r2 = gtn_update(strain, st2, PHASES, phase)
    np.testing.assert_array_equal(st2.stress, st.stress)
    np.testing.assert_array_equal(r2.stress, r.stress)


# ---------------------------------------------------------------------------
# 8. bad input
# ---------------------------------------------------------------------------
def test_bad_inputs_raise_clear_errors():
    st = GTNState.initial(4, PHASES, [0, 1, 0, 1])
    ok = np.zeros((4, 3))
    ph = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="strain_new must have shape"):
        gtn_update(np.zeros((4, 4)), st, PHASES, ph)
    with pytest.raises(ValueError, match="NaN"):
        gtn_update(np.full((4, 3), np.nan), st, PHASES, ph)
    with pytest.raises(ValueError, match="GTNState has 4 points but strain has 3"):
        gtn_update(np.zeros((3, 3)), st, PHASES, ph[:3])
    bad = st.copy()
    bad.eps_p = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"GTNState.eps_p must have shape \(n, 4\)"):
        gtn_update(ok, bad, PHASES, ph)
    bad = st.copy()
    bad.f = np.array([0.0, np.nan, 0.0, 0.0])
    with pytest.raises(ValueError, match="GTNState.f contains NaN"):
        gtn_update(ok, bad, PHASES, ph)
    bad = st.copy()
    bad.f = np.array([0.0, 0.3, 0.0, 0.0])
    with pytest.raises(ValueError, match="exceeds fF"):
        gtn_update(ok, bad, PHASES, ph)
    bad = st.copy()
    bad.failed = np.zeros(4)
    with pytest.raises(ValueError, match="failed must be a bool"):
        gtn_update(ok, bad, PHASES, ph)
    with pytest.raises(ValueError, match="phase is required"):
        gtn_update(ok, st, PHASES)
    with pytest.raises(ValueError, match=r"phase indices must lie in \[0, 1\]"):
        gtn_update(ok, st, PHASES, np.array([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="integer phase indices"):
        gtn_update(ok, st, PHASES, np.array([0, 0.5, 0, 1]))
    with pytest.raises(ValueError, match=r"phase must have shape \(4,\)"):
        gtn_update(ok, st, PHASES, np.array([0, 1]))
    with pytest.raises(ValueError, match="state_old must be a GTNState"):
        gtn_update(ok, {"stress": np.zeros((4, 4))}, PHASES, ph)
    with pytest.raises(ValueError, match="empty"):
        gtn_update(ok, st, [], ph)
    with pytest.raises(ValueError, match=r"params\[1\] must be a GTNParameters"):
        gtn_update(ok, st, [FERRITE, {"E": 1.0}], ph)
    # bad parameters
    with pytest.raises(ValueError, match="Poisson"):
        dataclasses.replace(FERRITE, nu=0.5)
    with pytest.raises(ValueError, match="fc < fF"):
        dataclasses.replace(FERRITE, fc=0.3)
    with pytest.raises(ValueError, match="q3 = q1"):
        dataclasses.replace(FERRITE, q3=2.0)
    with pytest.raises(ValueError, match="must be finite"):
        dataclasses.replace(FERRITE, K=float("nan"))
    with pytest.raises(ValueError, match="Young"):
        dataclasses.replace(FERRITE, E=-1.0)
    # q3 != q1^2 is accepted with an explicit fu_star
    p = dataclasses.replace(FERRITE, q3=2.0, fu_star=0.6)
    assert p.fu == 0.6


# ---------------------------------------------------------------------------
# calibration record (values quoted in lib/fe/gtn_material.py)
# ---------------------------------------------------------------------------
def test_homogeneous_peak_stresses():
    """Plane-strain uniaxial tension of each homogeneous phase (ODE reference):
    ferrite peaks below 700 MPa, so that 700 MPa lies inside the DP range."""
    t = np.linspace(0.01, 0.8, 159)
    peaks = {}
    for prm in PHASES:
        sol = ode_reference(prm, t, uniaxial=True)
        k = int(np.argmax(sol.y[0]))
        peaks[prm.name] = (sol.y[0][k], sol.t[k])
    assert 560 < peaks["ferrite"][0] < 620 and 0.45 < peaks["ferrite"][1] < 0.65
    assert 1950 < peaks["martensite"][0] < 2100 and 0.15 < peaks["martensite"][1] < 0.3
    assert abs(FERRITE.sigma_y - 300) < 1e-9 and abs(MARTENSITE.sigma_y - 1300) < 1e-9


def test_phase_mixture_ends_are_the_phases_and_yield_stress_mixes_linearly():
    from lib.fe.gtn_material import mixture_phases, phase_mixture

    def sigma_y(p):
        return p.K * p.eps0 ** p.n

    for share, phase in ((0.0, FERRITE), (1.0, MARTENSITE)):
        mixed = phase_mixture(FERRITE, MARTENSITE, share)
        for f in ("E", "nu", "n", "eps0", "f0", "fN", "q1"):
            assert getattr(mixed, f) == pytest.approx(getattr(phase, f), rel=1e-12)
        assert mixed.K == pytest.approx(phase.K, rel=1e-12)
    quarter = phase_mixture(FERRITE, MARTENSITE, 0.25)
    assert sigma_y(quarter) == pytest.approx(0.75 * 300 + 0.25 * 1300, rel=1e-12)  # 550 MPa
    assert quarter.n == pytest.approx(0.175) and quarter.eps0 == pytest.approx(0.0175)
    levels = mixture_phases(FERRITE, MARTENSITE, 17)
    assert len(levels) == 17 and levels[0] is FERRITE and levels[-1] is MARTENSITE
    assert np.all(np.diff([sigma_y(p) for p in levels]) > 0)
    with pytest.raises(ValueError, match=r"share must lie in \[0, 1\]"):
        phase_mixture(FERRITE, MARTENSITE, 1.5)
    with pytest.raises(ValueError, match="n_levels must be an integer >= 2"):
        mixture_phases(FERRITE, MARTENSITE, 1)


# ---------------------------------------------------------------------------
# rate-dependent matrix (overstress power law, rate_sensitivity > 0)
# ---------------------------------------------------------------------------
def _rate(prm: GTNParameters, m: float, rate: float = 1e-3) -> GTNParameters:
    return dataclasses.replace(prm, rate_sensitivity=m, reference_rate=rate)


def _rate_states(n: int, seed: int):
    """Random plastic states of both phases with their last increment (see random_states)."""
    phase, eps, st = random_states(n, seed=seed)
    rng = np.random.default_rng(seed + 1)
    strain = eps + 2e-3 * np.array([1.0, -0.5, 0.0]) + rng.normal(0, 2e-4, eps.shape)
    return phase, strain, st


def test_rate_dependent_update_satisfies_the_rate_law():
    """Backward Euler of the overstress law: at every plastic point the converged state lies on
    the yield surface of sM = g(ebar_new) (1 + debar / (rate dt))^m, with the work equation
    and the Swift g."""
    m, dt = 0.02, 2.0
    phases = tuple(_rate(p, m) for p in PHASES)
    phase, strain, st = _rate_states(300, seed=31)
    r = gtn_update(strain, st, phases, phase, time_increment=dt)
    ok = r.converged & ~r.state.failed & (r.state.epsbar_p > st.epsbar_p)
    assert ok.sum() > 100
    for k in range(2):
        sel = ok & (phase == k)
        prm = phases[k]
        deb = r.state.epsbar_p[sel] - st.epsbar_p[sel]
        sM = prm.flow_stress(r.state.epsbar_p[sel]) * (1 + deb / (prm.reference_rate * dt)) ** m
        s = r.stress[sel]
        p = s[:, :3].mean(1)
        q = von_mises(s)
        fs = prm.fstar(r.state.f[sel])
        phi = (q / sM) ** 2 + 2 * prm.q1 * fs * np.cosh(1.5 * prm.q2 * p / sM) - 1 - prm.q3 * fs ** 2
        assert np.abs(phi).max() < 1e-9
        # the overstress over the static flow stress is what the rate law says, up to ~m ln(rate)
        over = sM / prm.flow_stress(r.state.epsbar_p[sel])
        assert np.all(over > 1.0) and np.all(over < 1.2)


def test_rate_dependence_vanishes_as_the_rate_sensitivity_goes_to_zero():
    """m = 0 with a time increment is the rate-independent update bit for bit; for m -> 0 the
    stress tends to it linearly in m (the first-order term m ln(1 + rate ratio))."""
    phase, strain, st = _rate_states(300, seed=41)
    base = gtn_update(strain, st, PHASES, phase)
    same = gtn_update(strain, st, tuple(_rate(p, 0.0) for p in PHASES), phase, time_increment=1.0)
    np.testing.assert_array_equal(same.stress, base.stress)
    np.testing.assert_array_equal(same.tangent, base.tangent)
    ok = base.converged & ~base.state.failed
    errors = []
    for m in (1e-2, 1e-3, 1e-4, 1e-5):
        r = gtn_update(strain, st, tuple(_rate(p, m) for p in PHASES), phase, time_increment=1.0)
        keep = ok & r.converged & ~r.state.failed
        assert keep.sum() > 0.98 * ok.sum()
        errors.append(np.abs(r.stress[keep] - base.stress[keep]).max() / 1000.0)
    errors = np.asarray(errors)
    assert errors[0] > 1e-3                       # m = 0.01 changes the stress visibly
    np.testing.assert_allclose(errors[1:-1] / errors[2:], 10.0, rtol=0.1)  # first order in m
    assert errors[-1] < 2e-3 * errors[0]


def test_rate_dependent_tangent_matches_finite_differences():
    """The consistent tangent with the viscous slope, single-step points of both phases (the
    time increment is fixed, so d sigma / d strain_new is the whole derivative)."""
    m, dt = 0.02, 2.0
    phases = tuple(_rate(p, m) for p in PHASES)
    phase, strain, st = _rate_states(300, seed=51)
    r = gtn_update(strain, st, phases, phase, time_increment=dt)
    keep = r.converged & ~r.state.failed
    D = _fd_tangent(strain[keep], st.take(keep), phases, phase[keep], h=1e-8, time_increment=dt)
    err = np.linalg.norm(r.tangent[keep] - D, axis=(1, 2)) / np.linalg.norm(D, axis=(1, 2))
    plastic = r.state.epsbar_p[keep] > st.epsbar_p[keep]
    assert plastic.sum() > 100
    assert err.max() < 1e-5, np.sort(err)[-5:]


def test_rate_dependent_tangent_of_substepped_points():
    """Sub-stepped high-triaxiality points of a rate-dependent ferrite (each sub-step gets its
    share of the time increment): the tangent chained through the sub-steps, where d sM/d
    ebar_old keeps the static slope while d sM/d debar has the viscous one, matches central
    differences."""
    n = 300
    rng = np.random.default_rng(21)
    prm = _rate(FERRITE, 0.02)
    dt = 5.0
    st = GTNState.initial(n, prm)
    st.f = rng.uniform(1e-5, 1e-4, n)
    pre = (np.stack([np.ones(n), rng.uniform(-0.6, -0.3, n), rng.uniform(-0.3, 0.3, n)], 1)
           * rng.uniform(0.0, 4e-3, n)[:, None])
    for k in range(1, 5):
        r = gtn_update(pre * k / 4, st, prm, time_increment=dt)
        assert r.converged.all()
        st = r.state
    inc = (np.stack([np.ones(n), rng.uniform(-0.2, 1.0, n), rng.uniform(-0.5, 0.5, n)], 1)
           * rng.uniform(4e-3, 1.5e-2, n)[:, None])
    strain = pre + inc
    r, diag, D, stable = _fd_tangent_stable(strain, st, prm, h=1e-8, time_increment=dt)
    assert r.converged.all()
    sub = (diag["substeps"] > 1) & ~r.state.failed & stable
    assert sub.sum() >= 20
    err = np.linalg.norm(r.tangent - D, axis=(1, 2)) / np.linalg.norm(D, axis=(1, 2))
    assert err[sub].max() < 1e-4, np.sort(err[sub])[-5:]


def test_rate_dependent_phase_needs_a_time_increment():
    with pytest.raises(ValueError, match="time_increment"):
        gtn_update(np.zeros((1, 3)), GTNState.initial(1, FERRITE), _rate(FERRITE, 0.01))
    with pytest.raises(ValueError, match="rate_sensitivity"):
        _rate(FERRITE, -0.01)
    with pytest.raises(ValueError, match="reference_rate"):
        _rate(FERRITE, 0.01, rate=0.0)


# ---------------------------------------------------------------------------
# frozen porosity (the building block of the staggered nonlocal RVE)
# ---------------------------------------------------------------------------
def test_frozen_porosity_holds_f_reports_the_local_growth_and_has_an_exact_tangent():
    """With ``frozen_porosity`` the return map keeps f at its old value (the stress is on the
    yield surface of the old f), reports f_old + (1 - f_old) tr(d eps_p) + A d ebar, and its
    tangent is d sigma / d eps of that update (central differences, batch of random states)."""
    phase, eps, st = random_states(300, seed=11)
    strain = eps * 1.08 + np.array([2e-3, -1e-3, 5e-4])
    r, diag, D_fd, stable = _fd_tangent_stable(strain, st, PHASES, h=1e-8, phase=phase,
                                               frozen_porosity=True)
    plastic = (diag["iterations"] > 0) & ~r.state.failed & r.converged
    assert plastic.sum() > 150
    for k, prm in enumerate(PHASES):
        sel = plastic & (phase == k)
        phi = yield_function(prm, r.stress[sel], r.state.epsbar_p[sel], st.f[sel])
        assert np.abs(phi).max() < 1e-9
        d_ep = r.state.eps_p[sel] - st.eps_p[sel]
        d_eb = r.state.epsbar_p[sel] - st.epsbar_p[sel]
        growth = ((1 - st.f[sel]) * d_ep[:, :3].sum(1)
                  + prm.nucleation_rate(r.state.epsbar_p[sel]) * d_eb)
        single = diag["substeps"][sel] == 1  # sub-stepped points sum the growth of each sub-step
        np.testing.assert_allclose(r.state.f[sel][single], st.f[sel][single] + growth[single],
                                   rtol=1e-10, atol=1e-14)
    err = np.linalg.norm(r.tangent - D_fd, axis=(1, 2)) / np.linalg.norm(D_fd, axis=(1, 2))
    assert err[plastic & stable].max() < 1e-5
    # no damage softening left in the tangent: its symmetric part is positive definite
    sym = 0.5 * (r.tangent + np.swapaxes(r.tangent, 1, 2))
    assert np.linalg.eigvalsh(sym[plastic]).min() > 0


def test_frozen_porosity_at_its_fixed_point_is_the_local_update():
    """Iterating f_given <- f_old + (frozen update's growth at f_given) converges to the
    implicit local update (the staggered scheme's limit of a vanishing nonlocal length)."""
    phase, eps, st = random_states(200, seed=5)
    strain = eps * 1.05 + np.array([3e-3, -1.5e-3, 0.0])
    local = gtn_update(strain, st, PHASES, phase)
    given = st.f.copy()
    for _ in range(60):
        trial = GTNState(st.stress, st.eps_p, st.epsbar_p, given, st.failed)
        frozen = gtn_update(strain, trial, PHASES, phase, frozen_porosity=True)
        nxt = st.f + (frozen.state.f - given)
        if np.abs(nxt - given).max() < 1e-14:
            break
        given = nxt
    ok = local.converged & frozen.converged & ~local.state.failed
    assert ok.sum() > 150
    np.testing.assert_allclose(given[ok], local.state.f[ok], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(frozen.stress[ok], local.stress[ok], rtol=1e-8, atol=1e-6)
