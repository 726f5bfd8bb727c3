"""Benchmark: how much the periodic designs depend on the choices the paper leaves open.

For each case, the ``--n-sources`` best outliers of the default database, Grad-RAM as notebook 08
(reference activations of 1,024 training structures, the recipe's shift averaging), critical
regions at ``--threshold``; then designs for each variant of the thickening (the smoothing
that breaks distance ties, in pixels) and of the white fraction inside the paper's window
0.39-0.40, each homogenized. Prints per case and variant: designs, balanced ones, designs
beating every database sample, best and median margin.

Needs the default profile's database, labels and trained regressors (``run_all.py --profile
default --only 01,03,06``). Usage::

    python bench/design_choices.py --n-sources 100 --threshold 0.5
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from lib.design.periodic_design import design_from_region, design_metrics
from lib.explain.gradram import case_heatmaps, critical_region, select_outliers
from lib.fe.labeling import label_images, homogenization_labels
from lib.microstructures.stochastic import stochastic_database
from lib.models.training import CASES, case_targets, get_recipe, trained_case
from lib.profiles import get_profile
from lib.stages import load_stage

VARIANTS = {  # name: (fraction, smoothing)
    "reference (0.395, smoothing 1 px)": (0.395, 1.0),
    "no smoothing (ties by position)": (0.395, 0.0),
    "smoothing 2 px": (0.395, 2.0),
    "fraction 0.39": (0.39, 1.0),
    "fraction 0.40": (0.40, 1.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-sources", type=int, default=100)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--n-jobs", type=int, default=-1)
    args = parser.parse_args()
    prof = get_profile("default")
    recipe = get_recipe(prof)
    database = stochastic_database(prof)
    labels_path = homogenization_labels(prof, database)
    images, labels = load_stage(database)["images"], load_stage(labels_path)
    print(f"{args.n_sources} best outliers per case, threshold {args.threshold}")
    print("| case | variant | designs | balanced | beat every sample (balanced) | best margin | "
          "median margin | s |")
    print("|---|---|---|---|---|---|---|---|")
    for name in CASES:
        tc = trained_case(prof.name, name, database, labels_path, recipe=recipe)
        values = case_targets(labels, tc.case)
        sources = select_outliers(values, tc.case.goal, 0.1)[:args.n_sources]
        maps = case_heatmaps(tc, images[sources],
                             reference_images=images[tc.database_sample("train", 1024)])
        regions = critical_region(maps["map_x"], maps["map_y"], args.threshold)
        for variant, (fraction, smoothing) in VARIANTS.items():
            t0 = time.perf_counter()
            designs = [design_from_region(images[s], r, fraction, smoothing)[0]
                       for s, r in zip(sources, regions)]
            designs = np.stack([d for d in designs if d is not None])
            props = label_images(designs, [tc.case.material], n_jobs=args.n_jobs)
            xy = np.column_stack([props[key] for key in tc.case.label_keys])
            m = design_metrics(xy, values, tc.case.goal)
            ok = m["balanced"] & m["beats_all"]
            print(f"| {name} | {variant} | {len(designs)} | {int(m['balanced'].sum())} | "
                  f"{int(m['beats_all'].sum())} ({int(ok.sum())}) | {m['margin'].max():+.1%} | "
                  f"{np.median(m['margin']):+.1%} | {time.perf_counter() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
