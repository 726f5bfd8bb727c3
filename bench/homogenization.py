"""Benchmark: seconds per 128x128 sample of periodic homogenization (3 unit strains + thermal).

Prints, on the same samples (aluminium/foam, SPEC B2 Case 3, all four load cases):
  (a) a plain SfePy script a user would write: a new Problem per sample, SfePy's default
      direct solver (ls.scipy_direct), one ``pb.solve()`` per load case;
  (b) this pipeline on one core (``PeriodicHomogenizer``: one problem, materials updated,
      one PARDISO factorization per sample, four right-hand sides);
  (c) the bare linear algebra on the same matrix: PARDISO analysis + factorization + solve
      of the four right-hand sides, and factorization + solve alone;
and, with ``--workers``, the labelling throughput for joblib workers x BLAS/MKL threads.

Usage:  python bench/homogenization.py [--samples 8] [--plain-samples 2] [--workers]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.fe.homogenization import MATERIAL_CASES, PeriodicHomogenizer, plane_stress_stiffness  # noqa: E402
from lib.fe.labeling import label_images  # noqa: E402
from lib.fe.linear_solver import SPDSolver  # noqa: E402
from lib.microstructures.stochastic import generate_stochastic_sample  # noqa: E402
from lib.profiles import STOCHASTIC_CATEGORIES  # noqa: E402

CASE = MATERIAL_CASES["aluminium_foam"]


def sample_images(n: int, size: int = 128) -> np.ndarray:
    """``n`` database-like images, cycling through the four Part B categories."""
    return np.stack([generate_stochastic_sample(STOCHASTIC_CATEGORIES[i % 4], seed=1000 + i, size=size)[0]
                     for i in range(n)])


def plain_sfepy_homogenize(img: np.ndarray) -> np.ndarray:
    """What a user would write from SfePy's examples: everything rebuilt for every sample."""
    from sfepy.base.base import output
    output.set_output(quiet=True)
    import sfepy.discrete.fem.periodic as per
    from sfepy.discrete import (Equation, Equations, FieldVariable, Function, Functions, Integral,
                                Material, Problem)
    from sfepy.discrete.conditions import Conditions, EssentialBC, PeriodicBC
    from sfepy.discrete.fem import Field, FEDomain
    from sfepy.mesh.mesh_generators import gen_block_mesh
    from sfepy.solvers.ls import ScipyDirect
    from sfepy.solvers.nls import Newton
    from sfepy.terms import Term

    n = img.shape[0]
    h = 1.0 / n
    d_white, d_black = CASE.white.stiffness, CASE.black.stiffness
    a_white, a_black = CASE.white.thermal_expansion, CASE.black.thermal_expansion
    load = {"case": 0}

    def material(ts, coors, mode=None, **kwargs):
        if mode != "qp":
            return None
        col = np.clip((coors[:, 0] / h).astype(int), 0, n - 1)
        row = n - 1 - np.clip((coors[:, 1] / h).astype(int), 0, n - 1)
        white = img[row, col].astype(bool)
        d = np.where(white[:, None, None], d_white, d_black)
        if load["case"] < 3:
            stress = d[:, :, load["case"]]
        else:
            stress = -d[:, :, :2].sum(axis=2) * np.where(white, a_white, a_black)[:, None]
        return {"D": d, "S": np.ascontiguousarray(stress[:, :, None])}

    mesh = gen_block_mesh((1, 1), (n + 1, n + 1), (0.5, 0.5), verbose=False)
    domain = FEDomain("domain", mesh)
    tol = 1e-3 * h
    omega = domain.create_region("Omega", "all")
    regions = {name: domain.create_region(name, expr, "facet") for name, expr in [
        ("Left", f"vertices in (x < {tol})"), ("Right", f"vertices in (x > {1 - tol})"),
        ("Bottom", f"vertices in (y < {tol})"), ("Top", f"vertices in (y > {1 - tol})")]}
    corner = domain.create_region("Corner", f"vertices in (x < {tol}) & (y < {tol})", "vertex")
    field = Field.from_args("u", np.float64, 2, omega, approx_order=1)
    u = FieldVariable("u", "unknown", field)
    v = FieldVariable("v", "test", field, primary_var_name="u")
    m = Material("m", function=Function("material", material))
    integral = Integral("i", order=3)
    eq = Equation("eq", Term.new("dw_lin_elastic(m.D, v, u)", integral, omega, m=m, v=v, u=u)
                  + Term.new("dw_lin_prestress(m.S, v)", integral, omega, m=m, v=v))
    pb = Problem("plain", equations=Equations([eq]))
    functions = Functions([Function("match_x_line", per.match_x_line),
                           Function("match_y_line", per.match_y_line)])
    pb.set_bcs(ebcs=Conditions([EssentialBC("fix", corner, {"u.all": 0.0})]),
               epbcs=Conditions([
                   PeriodicBC("px", [regions["Left"], regions["Right"]], {"u.all": "u.all"}, match="match_y_line"),
                   PeriodicBC("py", [regions["Bottom"], regions["Top"]], {"u.all": "u.all"}, match="match_x_line")]))
    pb.functions = functions
    pb.set_solver(Newton({"i_max": 1, "eps_a": 1e-10}, lin_solver=ScipyDirect({})))
    mean_stress = np.empty((3, 4))
    for k in range(4):
        load["case"] = k
        pb.update_materials(mode="force")
        state = pb.solve(save_results=False)
        stress = pb.evaluate("ev_cauchy_stress.3.Omega(m.D, u)", u=state.get_state_parts()["u"],
                             mode="eval", copy_materials=False)
        mean_stress[:, k] = np.ravel(stress)
    # stress of the fluctuations, plus the stress of the applied unit strains, gives C
    voigt = (img.mean() * d_white + (1 - img.mean()) * d_black)
    return voigt + mean_stress[:, :3]


def time_per_sample(fn, images: np.ndarray) -> tuple[float, list]:
    """Median seconds per sample, and the results."""
    seconds, results = [], []
    for img in images:
        t0 = time.perf_counter()
        results.append(fn(img))
        seconds.append(time.perf_counter() - t0)
    return float(np.median(seconds)), results


def bare_linear_algebra(hom: PeriodicHomogenizer, images: np.ndarray) -> tuple[float, float]:
    """(analysis + factorization + 4-RHS solve, factorization + solve) seconds per matrix."""
    systems = []
    for img in images:
        white = hom.fe.pixels_to_cells(img).astype(bool)
        stiffness = np.where(white[:, None, None], CASE.white.stiffness, CASE.black.stiffness)
        hom.fe.set_stiffness(stiffness)
        matrix = hom.fe.assemble_stiffness()
        rhs = np.column_stack([hom.fe.assemble_stress_load(stiffness[:, :, k]) for k in range(3)]
                              + [hom.fe.assemble_stress_load(stiffness[:, :, 0])])
        systems.append((matrix, rhs))
    solver = SPDSolver()
    solver.factorize(systems[0][0])
    t0 = time.perf_counter()
    for matrix, rhs in systems:
        solver.factorize(matrix, reanalyse=True)
        solver.solve(rhs)
    scratch = (time.perf_counter() - t0) / len(systems)
    t0 = time.perf_counter()
    for matrix, rhs in systems:
        solver.factorize(matrix)
        solver.solve(rhs)
    return scratch, (time.perf_counter() - t0) / len(systems)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=8, help="samples for (b) and (c)")
    parser.add_argument("--plain-samples", type=int, default=2, help="samples for the slow (a)")
    parser.add_argument("--workers", action="store_true", help="also time joblib workers x threads")
    args = parser.parse_args()
    images = sample_images(max(args.samples, args.plain_samples))

    with threadpool_limits(limits=1):
        t_plain, plain_stiffness = time_per_sample(plain_sfepy_homogenize, images[: args.plain_samples])
        t0 = time.perf_counter()
        hom = PeriodicHomogenizer(128)
        t_setup = time.perf_counter() - t0
        hom.homogenize(images[0], CASE)  # first call: PARDISO analysis
        t_pipeline, props = time_per_sample(lambda img: hom.homogenize(img, CASE), images[: args.samples])
        t_scratch, t_numeric = bare_linear_algebra(hom, images[: args.samples])

    print(f"\nPeriodic homogenization, 128x128, 4 load cases, one core ({args.samples} samples; "
          f"(a) on {args.plain_samples}); pipeline set-up once: {t_setup:.2f} s")
    print(f"{'method':<62}{'s/sample':>10}{'vs (b)':>9}")
    rows = [
        ("(a) plain SfePy script (new Problem, ls.scipy_direct)", t_plain),
        ("(b) this pipeline (PeriodicHomogenizer, PARDISO)", t_pipeline),
        ("(c) bare PARDISO: analysis + factorization + 4-RHS solve", t_scratch),
        ("(c') bare PARDISO: factorization + 4-RHS solve (analysis reused)", t_numeric),
    ]
    for name, seconds in rows:
        print(f"{name:<62}{seconds:>10.4f}{seconds / t_pipeline:>8.2f}x")
    deviation = max(np.abs(a - p.stiffness).max() / np.abs(p.stiffness).max()
                    for a, p in zip(plain_stiffness, props))
    print(f"largest relative difference between the stiffness of (a) and (b): {deviation:.1e}")
    print(f"speed-up (a)/(b) = {t_plain / t_pipeline:.1f}x;  (b)/(c) = {t_pipeline / t_scratch:.2f};  "
          f"(b)/(c') = {t_pipeline / t_numeric:.2f}")

    if args.workers:
        batch = sample_images(48)
        print("\nLabelling throughput, both material cases per sample (48 samples)")
        print(f"{'workers':>8}{'threads':>9}{'s/sample':>10}")
        for n_jobs, threads in [(1, 1), (1, 2), (2, 1), (2, 2)]:
            label_images(batch[:4], n_jobs=n_jobs, threads_per_worker=threads)  # start workers
            t0 = time.perf_counter()
            label_images(batch, n_jobs=n_jobs, threads_per_worker=threads)
            print(f"{n_jobs:>8}{threads:>9}{(time.perf_counter() - t0) / len(batch):>10.4f}")


if __name__ == "__main__":
    main()
