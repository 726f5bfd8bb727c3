"""Time the Part B stochastic generators (SPEC B1) on one core and print a table.

    OMP_NUM_THREADS=1 python bench/bench_stochastic.py [n_per_category]

Default: 1,000 samples per category (the ``default`` profile's 4,000), generated exactly as
the ``stochastic_db`` stage does (same seeds), without writing anything.
"""
from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.microstructures.stochastic import generate_stochastic_sample, sample_seeds  # noqa: E402
from lib.profiles import STOCHASTIC_CATEGORIES, get_profile  # noqa: E402


def main(n_per_category: int = 1000) -> None:
    prof = get_profile("default")
    rows, total = [], 0.0
    for cat in STOCHASTIC_CATEGORIES:
        seeds = sample_seeds(prof.seed, cat, n_per_category)
        t0 = time.perf_counter()
        for s in seeds:
            generate_stochastic_sample(cat, int(s), prof.image_size)
        dt = time.perf_counter() - t0
        total += dt
        rows.append((cat, n_per_category, dt, 1e3 * dt / n_per_category))
    rows.append(("all", n_per_category * len(STOCHASTIC_CATEGORIES), total,
                 1e3 * total / (n_per_category * len(STOCHASTIC_CATEGORIES))))
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"{'category':<10} {'samples':>8} {'seconds':>9} {'ms/sample':>10}")
    for cat, n, dt, ms in rows:
        print(f"{cat:<10} {n:>8d} {dt:>9.2f} {ms:>10.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
