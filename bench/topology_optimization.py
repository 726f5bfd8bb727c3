"""Benchmark: SIMP inverse homogenization at 128² (SPEC B6).

Prints, in one run on one core:
  (a) seconds per evaluation of a density (the four periodic problems + the adjoint gradients
      of Ex, Ey, nu, alpha: one TO iteration's physics) against one homogenization of a binary
      cell of the same size by the study's ``PeriodicHomogenizer`` (goal: <= 2x, i.e. the
      sensitivities are nearly free), and the same evaluation without gradients;
  (b) per case, one SIMP run from a perturbed uniform start: iterations, seconds, seconds per
      iteration, the objective before and after, and the binary design's FE value.

Usage:  python bench/topology_optimization.py [--size 128] [--repeat 5] [--cases case1 case2 case3]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.design import topology_optimization as to  # noqa: E402
from lib.fe.homogenization import (MATERIAL_CASES, PeriodicHomogenizer,  # noqa: E402
                                   engineering_constants)
from lib.models.training import CASES  # noqa: E402


def timed(fn, repeat: int) -> float:
    fn()  # warm-up (PARDISO analysis)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cases", nargs="+", default=list(CASES))
    args = parser.parse_args()
    n = args.size
    rng = np.random.default_rng(0)
    with threadpool_limits(1):
        case = MATERIAL_CASES["boron_aluminium"]
        dens = to.DensityHomogenizer(n, case)
        hom = PeriodicHomogenizer(n)
        rho = rng.random((n, n))
        img = (rho > 0.6).astype(np.uint8)
        t_grad = timed(lambda: dens.evaluate(rho), args.repeat)
        t_plain = timed(lambda: dens.evaluate(rho, gradients=False), args.repeat)
        t_hom = timed(lambda: hom.homogenize(img, case), args.repeat)
        print(f"size {n}², one core, median of {args.repeat}")
        print("| what | seconds | / homogenization |\n|---|---|---|")
        print(f"| PeriodicHomogenizer.homogenize (binary cell) | {t_hom:.3f} | 1.00 |")
        print(f"| DensityHomogenizer.evaluate, no gradients | {t_plain:.3f} | {t_plain / t_hom:.2f} |")
        print(f"| DensityHomogenizer.evaluate + adjoint gradients (one TO iteration) | {t_grad:.3f} | "
              f"{t_grad / t_hom:.2f} |")
        print()
        print("| case | iterations | seconds | s / iteration | objective start → end | binary design (FE) |")
        print("|---|---|---|---|---|---|")
        for name in args.cases:
            mat = MATERIAL_CASES[CASES[name].material]
            d = to.DensityHomogenizer(n, mat)
            x0 = np.clip(0.395 + 0.1 * to.density_filter(rng.standard_normal((n, n)), 3.0), 0, 1)
            result = to.optimize(d, name, x0, to.TOSettings())
            design = to.binarize_at_fraction(result.density, 0.395)
            props = PeriodicHomogenizer(n).homogenize(design, mat)
            c = engineering_constants(props.stiffness)
            fe = {"case1": min(c["Ex"], c["Ey"]), "case2": min(c["nu_xy"], c["nu_yx"]),
                  "case3": max(props.thermal_expansion[:2])}[name]
            it = len(result.objective)
            print(f"| {name} | {it} | {result.seconds:.1f} | {result.seconds / it:.3f} | "
                  f"{result.objective[0]:.4g} → {result.objective[-1]:.4g} | {fe:.4g} "
                  f"(fraction {design.mean():.3f}) |")


if __name__ == "__main__":
    main()
