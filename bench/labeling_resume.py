"""Kill the homogenization labelling of a profile half-way, restart it, compare with a full run.

Runs ``homogenization_labels`` for the profile's stochastic database in a scratch data folder
as a subprocess, SIGKILLs it once ``--kill-at`` of its chunks are on disk, starts it again, and
checks that the resumed result equals the uninterrupted stage file in ``data/<profile>/``
(run the profile's notebook 03 first). Prints the timings and the comparison.

Usage:  python bench/labeling_resume.py [--profile default] [--kill-at 0.5]
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from lib.paths import data_dir  # noqa: E402
from lib.profiles import get_profile  # noqa: E402
from lib.stages import load_stage  # noqa: E402

LABEL = (
    "import sys; sys.path.insert(0, {root!r});"
    "from lib.microstructures.stochastic import stochastic_database;"
    "from lib.fe.labeling import homogenization_labels;"
    "print(homogenization_labels({profile!r}, stochastic_database({profile!r})))"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--kill-at", type=float, default=0.5, help="fraction of chunks done before the kill")
    args = parser.parse_args()
    profile = get_profile(args.profile)
    reference_files = sorted(data_dir(profile.name).glob("homogenization_labels-*.h5"))
    if not reference_files:
        sys.exit(f"no uninterrupted labels in {data_dir(profile.name)}: run notebook 03 for this profile first")
    reference = load_stage(reference_files[-1])
    n_chunks = -(-profile.n_stochastic // profile.label_chunk)

    scratch = Path(tempfile.mkdtemp(prefix="resume-"))
    try:
        (scratch / profile.name).mkdir()
        for db in data_dir(profile.name).glob("stochastic_db-*.h5"):
            shutil.copy(db, scratch / profile.name / db.name)
        env = dict(os.environ, STUDY_DATA_DIR=str(scratch), STUDY_RESULTS_DIR=str(scratch / "results"))
        command = [sys.executable, "-c", LABEL.format(root=str(REPO_ROOT), profile=profile.name)]

        t0 = time.perf_counter()
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        target = max(1, int(args.kill_at * n_chunks))
        while proc.poll() is None and len(list(scratch.glob("*/homogenization_labels-*.chunks/chunk_*.h5"))) < target:
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_after = time.perf_counter() - t0
        done = len(list(scratch.glob("*/homogenization_labels-*.chunks/chunk_*.h5")))

        t0 = time.perf_counter()
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        resumed_seconds = time.perf_counter() - t0
        resumed = load_stage(Path(out.stdout.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    identical = all(np.array_equal(resumed[k], reference[k]) for k in reference)
    print(f"profile {profile.name}: {profile.n_stochastic} samples in {n_chunks} chunks of {profile.label_chunk}")
    print(f"killed (SIGKILL) after {killed_after:.1f} s with {done}/{n_chunks} chunks on disk")
    print(f"resumed run finished in {resumed_seconds:.1f} s (the remaining {n_chunks - done} chunks + merge)")
    print(f"every sample labelled once: {len(resumed[next(iter(resumed))]) == profile.n_stochastic}; "
          f"identical to the uninterrupted run: {identical}")


if __name__ == "__main__":
    main()
