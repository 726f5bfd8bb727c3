"""Micro-benchmark of the GTN constitutive update (lib/fe/gtn_material.py).

Builds realistic states for N quadrature points (ferrite/martensite mix, each
point driven along a tension-dominated plane-strain path to a random strain
level, so porosities range from 0 to beyond fc), then times one update with a
small strain increment in three regimes:

* elastic   : increment that unloads every point (no return mapping)
* plastic   : increment 2e-3 continuing the loading (all live points plastic)
* large     : increment 2e-2 (global-Newton-like first iterate)

Run:  OMP_NUM_THREADS=1 python bench/gtn_material.py [N]
Prints a table: wall and process-CPU ms per call (best of 5), CPU us per
point, plastic points, non-converged points, local Newton iterations, points
that needed sub-steps and points that failed in the step.
"""

from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lib.fe.gtn_material import FERRITE, MARTENSITE, GTNState, gtn_update  # noqa: E402


def build_states(n: int, seed: int = 0):
    """States of n points after 30 steps along random tension-dominated paths."""
    rng = np.random.default_rng(seed)
    params = (FERRITE, MARTENSITE)
    phase = (rng.random(n) < 0.3).astype(np.int64)
    # direction: eps_xx = 1, eps_yy in [-1, 0], gamma in [-0.5, 0.5]
    direc = np.stack([np.ones(n), rng.uniform(-1.0, 0.0, n), rng.uniform(-0.5, 0.5, n)], 1)
    level = np.where(phase == 0, rng.uniform(0.0, 0.5, n), rng.uniform(0.0, 0.1, n))
    st = GTNState.initial(n, params, phase)
    nsteps = 60
    reached = np.zeros(n)          # strain level of the last converged state
    for k in range(1, nsteps + 1):
        go = reached == level * (k - 1) / nsteps   # points whose path is intact
        r = gtn_update(direc * (level * k / nsteps)[:, None], st, params, phase)
        keep = r.converged & go
        st = GTNState(np.where(keep[:, None], r.state.stress, st.stress),
                      np.where(keep[:, None], r.state.eps_p, st.eps_p),
                      np.where(keep, r.state.epsbar_p, st.epsbar_p),
                      np.where(keep, r.state.f, st.f),
                      np.where(keep, r.state.failed, st.failed))
        reached = np.where(keep, level * k / nsteps, reached)
    return params, phase, direc, reached, st


def timeit(fun, repeat=5):
    """Best wall time and best process CPU time over `repeat` calls (the CPU
    time is the robust figure on a shared machine)."""
    best = cpu = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        c0 = time.process_time()
        out = fun()
        cpu = min(cpu, time.process_time() - c0)
        best = min(best, time.perf_counter() - t0)
    return best, cpu, out


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 16384
    t0 = time.perf_counter()
    gtn_update(np.zeros((4, 3)), GTNState.initial(4), FERRITE)   # JIT compile / cache load
    t_compile = time.perf_counter() - t0
    params, phase, direc, level, st = build_states(n)
    eps = direc * level[:, None]
    print(f"GTN update benchmark: {n} points, {platform.processor() or platform.machine()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, first call {t_compile:.2f} s "
          f"(JIT compile or cache load)")
    print(f"state: f median {np.median(st.f):.3g}, f > fc: {(st.f > 0.15).sum()}, "
          f"failed: {st.failed.sum()}")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} logical CPUs")
    print(f"{'regime':<10}{'wall ms':>9}{'cpu ms':>8}{'us/point':>10}{'plastic':>9}"
          f"{'nonconv':>9}{'it mean':>9}{'it max':>8}{'substep':>9}{'failed':>8}")
    for name, de in (("elastic", -2e-3), ("plastic", 2e-3), ("large", 2e-2)):
        strain = eps + de * direc
        diag = {}
        t, c, r = timeit(lambda: gtn_update(strain, st, params, phase, diagnostics=diag))
        it = diag["iterations"]
        pl = it > 0
        print(f"{name:<10}{t * 1e3:>9.2f}{c * 1e3:>8.2f}{c / n * 1e6:>10.3f}{pl.sum():>9d}"
              f"{(~r.converged).sum():>9d}{(it[pl].mean() if pl.any() else 0):>9.2f}"
              f"{it.max():>8d}{(diag['substeps'] > 1).sum():>9d}"
              f"{(r.state.failed & ~st.failed).sum():>8d}")


if __name__ == "__main__":
    main()
