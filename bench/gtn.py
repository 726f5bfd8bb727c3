"""Benchmark: seconds to fracture per GTN RVE, this pipeline against a plain SfePy Newton loop.

In one run, on the same structures (Voronoi "random" dual-phase structures by default, the
128x128 image block-averaged onto each FE grid with ``lib.fe.fracture_labels.coarsen``), one
core (OMP_NUM_THREADS=1 and threadpoolctl), prints per grid and structure:

(a) this pipeline, ``lib.fe.gtn_rve.GTNRVE`` (one SfePy problem per grid, B-bar, element-level
    einsum assembly through SfePy's assembler, nonsymmetric PARDISO with the analysis reused,
    bordered Newton, adaptive load steps, failed points frozen): wall seconds to its fracture
    criteria, increments, Newton iterations, and one iteration split into constitutive update,
    assembly and solve (``RVEResult.seconds`` / ``n_newton``);
(b) the Newton loop a user would write with SfePy's documented API: a Problem with a material
    function, every iteration ``ev_cauchy_strain`` at the quadrature points, the same GTN update
    (``lib.fe.gtn_material.gtn_update``), the tangent matrix and five load vectors re-assembled
    with SfePy terms (``dw_lin_elastic``, ``dw_lin_prestress``) through ``Problem.evaluate``,
    and SfePy's default linear solver ``ls.scipy_direct`` (a new factorization per call), the
    same bordered formulation for zero mean lateral stress, fixed small steps (halved and
    retried when Newton fails, the one remedy a user adds), no predictor and **no B-bar** (full 2x2 integration: volumetric locking of the plastic
    flow makes its response stiffer; it is a cost reference, not a second set of labels).
    It runs to the same criteria, or until ``--plain-cap`` seconds; a capped run's time to
    the pipeline's end strain is extrapolated linearly in strain (with fixed steps the number
    of increments is proportional to strain; it is an estimate: iterations per increment are
    high at yield and grow again as damage localizes — on a 16x16 Voronoi structure a 10 s cap
    extrapolated to 69 s where the full run took 57 s).

Usage::

    OMP_NUM_THREADS=1 python bench/gtn.py                         # 64 and 128, 2 structures
    OMP_NUM_THREADS=1 python bench/gtn.py --grids 32 64 --seeds 11 --plain-cap 60
    OMP_NUM_THREADS=1 python bench/gtn.py --grids 128 --pipeline-timeout 600 --no-plain

Goals (issue 12): (a) >= 5x faster than (b); <= 40 s per RVE at 64x64 and <= 300 s at 128x128
(stretch 10 s and 60 s); assembly and other overhead under a third of an iteration.
"""
from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.fe.fracture_labels import coarsen, load_drop_strain_at, fracture_strain_at  # noqa: E402
from lib.fe.gtn_material import FERRITE, MARTENSITE, GTNState, gtn_update  # noqa: E402
from lib.fe.gtn_rve import GTNRVE, FractureCriteria, LoadStepping  # noqa: E402
from lib.microstructures.dual_phase import generate_dual_phase  # noqa: E402

PHASES = (FERRITE, MARTENSITE)


@dataclass
class Run:
    """One tension run of either method."""

    method: str
    grid: int
    seed: int
    wall: float = float("nan")
    end_strain: float = float("nan")
    fracture_strain: float = float("nan")
    load_drop_strain: float = float("nan")
    tensile_strength: float = float("nan")
    n_increments: int = 0
    n_newton: int = 0
    n_cuts: int = 0
    split: dict = field(default_factory=dict)  # seconds in total per part
    status: str = ""
    capped: bool = False
    extrapolated: float = float("nan")


# --------------------------------------------------------------------------------------------
# (a) the pipeline
# --------------------------------------------------------------------------------------------
class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout


def run_pipeline(rve: GTNRVE, img: np.ndarray, grid: int, seed: int, timeout: float) -> Run:
    out = Run("pipeline", grid, seed)
    old = signal.signal(signal.SIGALRM, _alarm)
    if timeout > 0:
        signal.setitimer(signal.ITIMER_REAL, timeout)
    t0 = time.perf_counter()
    try:
        res = rve.run(img)
    except _Timeout:
        out.wall = time.perf_counter() - t0
        out.status = f"stopped after {timeout:g} s (--pipeline-timeout)"
        out.capped = True
        return out
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    out.wall = time.perf_counter() - t0
    out.end_strain = float(res.strain[-1])
    out.fracture_strain, out.load_drop_strain = res.fracture_strain, res.load_drop_strain
    out.tensile_strength = res.tensile_strength
    out.n_increments, out.n_newton, out.n_cuts = res.n_increments, res.n_newton, res.n_cuts
    out.split = dict(res.seconds)
    out.status = res.status
    return out


# --------------------------------------------------------------------------------------------
# (b) the plain SfePy Newton loop
# --------------------------------------------------------------------------------------------
class PlainSfePyTension:
    """Periodic plane-strain tension of a pixel image written the plain way with SfePy."""

    def __init__(self, img: np.ndarray) -> None:
        from sfepy.base.base import output

        output.set_output(quiet=True)
        import sfepy.discrete.fem.periodic as per
        from sfepy.discrete import (Equation, Equations, FieldVariable, Function, Functions,
                                    Integral, Integrals, Material, Problem)
        from sfepy.discrete.conditions import Conditions, EssentialBC, PeriodicBC
        from sfepy.discrete.fem import Field, FEDomain
        from sfepy.mesh.mesh_generators import gen_block_mesh
        from sfepy.solvers.ls import ScipyDirect
        from sfepy.terms import Term

        n = img.shape[0]
        h = 1.0 / n
        self.data: dict[str, np.ndarray] = {}
        data = self.data

        def material(ts, coors, mode=None, **kwargs):
            if mode != "qp":
                return None
            if "phase" not in data:  # first call: phase of each quadrature point
                col = np.clip((coors[:, 0] / h).astype(int), 0, n - 1)
                row = n - 1 - np.clip((coors[:, 1] / h).astype(int), 0, n - 1)
                data["phase"] = img[row, col].astype(np.int64)
                data["D"] = np.zeros((len(coors), 3, 3))
                data["S"] = np.zeros((len(coors), 3, 1))
            return {"D": data["D"], "S": data["S"]}

        mesh = gen_block_mesh((1, 1), (n + 1, n + 1), (0.5, 0.5), verbose=False)
        domain = FEDomain("domain", mesh)
        tol = 1e-3 * h
        omega = domain.create_region("Omega", "all")
        reg = {name: domain.create_region(name, expr, "facet") for name, expr in [
            ("Left", f"vertices in (x < {tol})"), ("Right", f"vertices in (x > {1 - tol})"),
            ("Bottom", f"vertices in (y < {tol})"), ("Top", f"vertices in (y > {1 - tol})")]}
        corner = domain.create_region("Corner", f"vertices in (x < {tol}) & (y < {tol})", "vertex")
        fld = Field.from_args("u", np.float64, 2, omega, approx_order=1)
        self.u = FieldVariable("u", "unknown", fld)
        self.v = FieldVariable("v", "test", fld, primary_var_name="u")
        self.m = Material("m", function=Function("material", material))
        integral = Integral("i", order=3)  # 2 x 2 Gauss points
        self.integrals = Integrals([integral])
        eq = Equation("eq", Term.new("dw_lin_elastic(m.D, v, u)", integral, omega, m=self.m,
                                     v=self.v, u=self.u)
                      + Term.new("dw_lin_prestress(m.S, v)", integral, omega, m=self.m, v=self.v))
        self.pb = Problem("plain_gtn", equations=Equations([eq]))
        functions = Functions([Function("match_x_line", per.match_x_line),
                               Function("match_y_line", per.match_y_line)])
        self.pb.set_bcs(ebcs=Conditions([EssentialBC("fix", corner, {"u.all": 0.0})]),
                        epbcs=Conditions([
                            PeriodicBC("px", [reg["Left"], reg["Right"]], {"u.all": "u.all"},
                                       match="match_y_line"),
                            PeriodicBC("py", [reg["Bottom"], reg["Top"]], {"u.all": "u.all"},
                                       match="match_x_line")]))
        self.pb.functions = functions
        self.pb.time_update(functions=functions)
        self.pb.update_materials()
        self.ls = ScipyDirect({})  # SfePy's default direct solver, default options
        self.n_dofs = self.pb.equations.variables.adi.n_dof["u"]
        self.phase = data["phase"]
        self.errors: list[tuple[int, int, float]] = []  # (increment, iteration, error)

    def _evaluate(self, expr: str, **kw):
        return self.pb.evaluate(expr, copy_materials=False, integrals=self.integrals,
                                verbose=False, **kw)

    def run(self, criteria: FractureCriteria, step: float, tolerance: float, max_newton: int,
            cap: float, end_strain_hint: float) -> Run:
        out = Run("plain", 0, 0)
        split = {"constitutive": 0.0, "assembly": 0.0, "solve": 0.0}
        n_qp = len(self.phase)
        state = GTNState.initial(n_qp, PHASES, self.phase)
        u = np.zeros(self.n_dofs)
        macro = np.zeros(3)
        history = {"strain": [0.0], "stress": [0.0], "void": [0.0]}
        sigma_ref, n = FERRITE.sigma_y, int(np.sqrt(n_qp / 4))
        t_start = time.perf_counter()
        status = "converged"
        d_exx = step
        while macro[0] < criteria.max_strain - 1e-12:
            macro_try = macro.copy()
            macro_try[0] += d_exx
            u_try = u.copy()
            ok = False
            for it in range(1, max_newton + 1):
                t0 = time.perf_counter()
                self.u.set_data(self.pb.equations.make_full_vec(u_try))
                eps = self._evaluate("ev_cauchy_strain.i.Omega(u)", mode="qp", u=self.u)
                strain = eps.reshape(-1, 3) + macro_try
                upd = gtn_update(strain, state, PHASES, self.phase)
                stress = upd.stress[:, [0, 1, 3]]
                t1 = time.perf_counter()
                split["constitutive"] += t1 - t0
                # re-assemble everything with SfePy terms
                self.data["D"][:] = upd.tangent
                self.data["S"][:] = stress[:, :, None]
                self.pb.update_materials(mode="force", verbose=False)
                residual = self._evaluate("dw_lin_prestress.i.Omega(m.S, v)", mode="weak",
                                          m=self.m, v=self.v)
                mean_stress = stress.mean(axis=0)  # equal Gauss weights on the pixel grid
                scale = max(abs(mean_stress[0]), sigma_ref)
                error = max(np.abs(residual).max() / (scale / n), np.abs(mean_stress[1:]).max() / scale)
                self.errors.append((out.n_increments, it, error))
                if it > 1 and error < tolerance:
                    split["assembly"] += time.perf_counter() - t1
                    ok = True
                    break
                matrix = self._evaluate("dw_lin_elastic.i.Omega(m.D, v, u)", mode="weak",
                                        dw_mode="matrix", m=self.m, v=self.v, u=self.u)
                cols, rows = [], []
                for j in (1, 2):  # d R_u / d(E_yy, G_xy) and d <sigma_yy, sigma_xy> / d u
                    self.data["S"][:] = upd.tangent[:, :, j, None]
                    self.pb.update_materials(mode="force", verbose=False)
                    cols.append(self._evaluate("dw_lin_prestress.i.Omega(m.S, v)", mode="weak",
                                               m=self.m, v=self.v))
                    self.data["S"][:] = upd.tangent[:, j, :, None]
                    self.pb.update_materials(mode="force", verbose=False)
                    rows.append(self._evaluate("dw_lin_prestress.i.Omega(m.S, v)", mode="weak",
                                               m=self.m, v=self.v))
                k_u_e, k_e_u = np.column_stack(cols), np.column_stack(rows)
                k_e_e = upd.tangent.mean(axis=0)[1:, 1:]
                t2 = time.perf_counter()
                split["assembly"] += t2 - t1
                x = np.column_stack([self.ls(rhs, mtx=matrix)
                                     for rhs in (residual, k_u_e[:, 0], k_u_e[:, 1])])
                schur = k_e_e - k_e_u.T @ x[:, 1:]
                d_macro = np.linalg.solve(schur, -mean_stress[1:] + k_e_u.T @ x[:, 0])
                u_try = u_try - x[:, 0] - x[:, 1:] @ d_macro
                macro_try[1:] += d_macro
                split["solve"] += time.perf_counter() - t2
                out.n_newton += 1
                if time.perf_counter() - t_start > cap:
                    break
            out.n_newton += 1 if ok else 0
            if not ok:
                if time.perf_counter() - t_start > cap:
                    out.capped = True
                    status = f"stopped at the --plain-cap of {cap:g} s"
                    break
                d_exx *= 0.5  # the one remedy a user adds: halve the step and retry
                out.n_cuts += 1
                if d_exx < 1e-3 * step:
                    status = (f"failed: Newton did not converge in {max_newton} iterations at "
                              f"E_xx = {macro_try[0]:.4f}, even with the step cut to {d_exx:.1e}")
                    break
                continue
            d_exx = step
            u, macro, state = u_try, macro_try, upd.state
            out.n_increments += 1
            history["strain"].append(macro[0])
            history["stress"].append(mean_stress[0])
            history["void"].append(float(state.f.mean()))
            stresses = np.asarray(history["stress"])
            if (history["void"][-1] >= criteria.mean_void_critical
                    and stresses[-1] < (1 - criteria.load_drop) * stresses.max()):
                break
            if time.perf_counter() - t_start > cap:
                out.capped = True
                status = f"stopped at the --plain-cap of {cap:g} s"
                break
        out.wall = time.perf_counter() - t_start
        strain = np.asarray(history["strain"])
        out.end_strain = float(strain[-1])
        out.fracture_strain = fracture_strain_at(strain, history["void"], criteria.mean_void_critical)
        out.load_drop_strain = load_drop_strain_at(strain, history["stress"], criteria.load_drop)
        out.tensile_strength = float(np.max(history["stress"]))
        out.split, out.status = split, status
        if out.capped and out.end_strain > 0 and np.isfinite(end_strain_hint):
            out.extrapolated = out.wall * max(end_strain_hint, out.end_strain) / out.end_strain
        return out


# --------------------------------------------------------------------------------------------
def structures(category: str, seeds: list[int]) -> list[np.ndarray]:
    return [generate_dual_phase(category, seed, 128)[0] for seed in seeds]


def per_iteration(run: Run) -> str:
    if run.n_newton == 0 or not run.split:
        return "–"
    total = sum(run.split.values())
    def ms(seconds: float) -> str:
        value = seconds / run.n_newton * 1e3
        return f"{value:.0f}" if value >= 100 else f"{value:.3g}"

    keys = ("constitutive", "assembly", "solve") + (("bifurcation",) if "bifurcation" in run.split else ())
    parts = [ms(run.split.get(k, 0.0)) for k in keys]
    share = run.split.get("assembly", 0.0) / total if total else float("nan")
    return f"{ms(total)} = {' + '.join(parts)} ms (assembly {100 * share:.0f} %)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", type=int, nargs="+", default=[64, 128], help="FE grids (divide 128)")
    parser.add_argument("--category", default="random", help="dual-phase category of the structures")
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12], help="structure seeds")
    parser.add_argument("--mean-void-critical", type=float, default=FractureCriteria().mean_void_critical)
    parser.add_argument("--load-drop", type=float, default=FractureCriteria().load_drop)
    parser.add_argument("--pipeline-timeout", type=float, default=0.0,
                        help="stop a pipeline run after this many seconds (0: none)")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain SfePy loop")
    parser.add_argument("--plain-cap", type=float, default=120.0, help="seconds per plain run")
    parser.add_argument("--plain-step", type=float, default=1e-3, help="fixed E_xx step of the plain loop")
    parser.add_argument("--plain-max-newton", type=int, default=25)
    parser.add_argument("--no-bifurcation-check", action="store_true",
                        help="run the pipeline without its Hill check (GTNRVE(bifurcation_check=False))")
    args = parser.parse_args()
    criteria = FractureCriteria(mean_void_critical=args.mean_void_critical, load_drop=args.load_drop)
    stepping = LoadStepping()
    images = structures(args.category, args.seeds)

    print(f"GTN RVE to fracture, one core; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores visible, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print(f"structures: {args.category}, seeds {args.seeds}; criteria f̄_crit = "
          f"{criteria.mean_void_critical:g} and a {100 * criteria.load_drop:g} % load drop "
          f"(both, as GTNRVE stops); plain loop: fixed step {args.plain_step:g}, cap {args.plain_cap:g} s, no B-bar")
    with threadpool_limits(limits=1):
        warm = GTNRVE(8, criteria=criteria)  # numba: load the compiled GTN kernels once
        warm.run(np.zeros((8, 8), np.uint8))
        runs: list[tuple[Run, Run | None]] = []
        for grid in args.grids:
            t0 = time.perf_counter()
            rve = GTNRVE(grid, criteria=criteria, stepping=stepping,
                         bifurcation_check=not args.no_bifurcation_check)
            setup = time.perf_counter() - t0
            print(f"\n{grid}x{grid}: pipeline set-up (SfePy problem, once per grid) {setup:.2f} s", flush=True)
            for seed, img128 in zip(args.seeds, images):
                img = coarsen(img128, grid)
                a = run_pipeline(rve, img, grid, seed, args.pipeline_timeout)
                print(f"  seed {seed}: pipeline {a.wall:.1f} s, {a.n_increments} increments, "
                      f"{a.n_newton} iterations, {a.n_cuts} cuts, FS {a.fracture_strain:.4f}, load drop at "
                      f"{a.load_drop_strain:.4f}, TS {a.tensile_strength:.0f} MPa, {a.status}", flush=True)
                b = None
                if not args.no_plain:
                    t0 = time.perf_counter()
                    plain = PlainSfePyTension(img)
                    build = time.perf_counter() - t0
                    b = plain.run(criteria, args.plain_step, stepping.tolerance, args.plain_max_newton,
                                  args.plain_cap, a.end_strain)
                    b.grid, b.seed = grid, seed
                    b.wall += build
                    if np.isfinite(b.extrapolated):
                        b.extrapolated += build
                    print(f"  seed {seed}: plain   {b.wall:.1f} s (incl. {build:.2f} s set-up), "
                          f"{b.n_increments} increments, {b.n_newton} iterations, reached E_xx = "
                          f"{b.end_strain:.4f} ({b.n_cuts} step cuts), FS {b.fracture_strain:.4f}, TS {b.tensile_strength:.0f} MPa, "
                          f"{b.status}", flush=True)
                runs.append((a, b))

    print("\n| grid | seed | method | s to fracture | increments | iterations | ms per iteration = "
          "constitutive + assembly + solve | FS (f̄) | load-drop strain | TS MPa | plain / pipeline |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for a, b in runs:
        for r in (a, b):
            if r is None:
                continue
            seconds = f"{r.wall:.1f}"
            if r.capped and np.isfinite(r.extrapolated):
                seconds = f"> {r.wall:.0f} (≈ {r.extrapolated:.0f} extrapolated)"
            elif r.capped:
                seconds = f"> {r.wall:.0f}"
            ratio = ""
            if r is b and np.isfinite(a.wall) and not a.capped:
                t_plain = r.extrapolated if r.capped else r.wall
                ratio = f"{'≈ ' if r.capped else ''}{t_plain / a.wall:.1f}×"
            print(f"| {r.grid} | {r.seed} | {r.method} | {seconds} | {r.n_increments} | {r.n_newton} | "
                  f"{per_iteration(r)} | {r.fracture_strain:.4f} | {r.load_drop_strain:.4f} | "
                  f"{r.tensile_strength:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
