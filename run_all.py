#!/usr/bin/env python
"""Re-execute the study's notebooks headlessly, in numeric order, under one profile (papermill).

    python run_all.py --profile smoke            # every notebook, small sizes
    python run_all.py --only 03 -p n_jobs=1      # one notebook, one parameter overridden
    python run_all.py --from 05 --profile paper  # resume a long run at notebook 05
    python run_all.py --list                     # what would run
    python run_all.py --plan --profile paper     # the work and estimated time of each stage
    python run_all.py --scheduler tcp://10.0.0.5:8786   # FE labelling on a Dask cluster

Each ``notebooks/NN_*.ipynb`` gets ``profile`` and the ``-p key=value`` overrides injected
into its ``parameters`` cell and is written, executed, to ``results/<profile>/notebooks/``.
Figures land in ``results/<profile>/figures/`` (the notebooks save them) and stage caches in
``data/<profile>/``. A failing notebook stops the run with its own error and exit status 1;
an interrupted one (Ctrl-C) with exit status 130: every finished stage and chunk is kept, so
the same command resumes.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from lib.paths import results_root  # noqa: E402
from lib.profiles import PROFILE_NAMES  # noqa: E402

NOTEBOOK_RE = re.compile(r"^(\d{2})_\w[\w\-]*\.ipynb$")
KERNEL_NAME = "python3"
#: the kernel's own log: only critical lines (its TCP warning at every start and the socket
#: errors of a kernel stopped by Ctrl-C are noise; a cell's error reaches us as a message)
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TRACEBACK_TAIL_LINES = 15


@dataclass
class NotebookResult:
    """Outcome of one executed notebook, one row of the summary table."""

    stem: str
    seconds: float
    stages_run: int
    stages_cached: int
    status: str
    output: Path


def discover_notebooks(notebooks_dir: Path) -> list[Path]:
    """Return ``notebooks_dir/NN_*.ipynb`` sorted by number, then name."""
    if not notebooks_dir.is_dir():
        raise FileNotFoundError(f"notebooks folder {notebooks_dir} does not exist")
    found = [p for p in notebooks_dir.iterdir() if p.is_file() and NOTEBOOK_RE.match(p.name)]
    return sorted(found, key=lambda p: (int(p.name[:2]), p.name))


def _matches(token: str, notebook: Path) -> bool:
    """Whether ``token`` names ``notebook``: its number (``3``, ``03``), stem, or stem minus number."""
    token = token.strip()
    stem = notebook.stem
    if token.isdigit():
        return int(token) == int(stem[:2])
    return token in (stem, stem[3:], notebook.name)


def select_notebooks(notebooks: Sequence[Path], only: str | None = None,
                     start: str | None = None) -> list[Path]:
    """Apply ``--only`` (comma-separated tokens) or ``--from`` (one token) to ``notebooks``.

    Raises ValueError naming the token when it matches no notebook.
    """
    names = ", ".join(p.stem for p in notebooks) or "none"
    if only:
        chosen = []
        for token in only.split(","):
            hits = [nb for nb in notebooks if _matches(token, nb)]
            if not hits:
                raise ValueError(f"--only: no notebook matches {token.strip()!r} (have: {names})")
            chosen.extend(nb for nb in hits if nb not in chosen)
        return [nb for nb in notebooks if nb in chosen]
    if start:
        for i, nb in enumerate(notebooks):
            if _matches(start, nb):
                return list(notebooks[i:])
        if start.strip().isdigit():  # a number between notebooks: start at the next one
            later = [nb for nb in notebooks if int(nb.stem[:2]) >= int(start)]
            if later:
                return later
        raise ValueError(f"--from: no notebook matches {start!r} (have: {names})")
    return list(notebooks)


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Turn ``["n_jobs=1", "tag=abc"]`` into ``{"n_jobs": 1, "tag": "abc"}`` (JSON when it parses).

    >>> parse_overrides(["a=1", "b=0.5", "c=[1, 2]", "d=true", "e=hello"])
    {'a': 1, 'b': 0.5, 'c': [1, 2], 'd': True, 'e': 'hello'}
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"-p expects key=value with a Python identifier as key, got {item!r}")
        if key == "profile":
            raise ValueError("set the profile with --profile, not -p profile=...")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def notebook_parameters(notebooks: Sequence[Path]) -> dict[str, set[str]]:
    """``{stem: names in its parameters cell}`` (papermill's own parser)."""
    from papermill.inspection import inspect_notebook

    return {nb.stem: set(inspect_notebook(str(nb))) for nb in notebooks}


def check_overrides(overrides: dict[str, Any], known: dict[str, set[str]]) -> None:
    """ValueError naming every ``-p`` key that no selected notebook declares.

    A key needs to be a parameter of one selected notebook (``n_jobs`` is not in all of them);
    papermill itself would only print "Passed unknown parameter" and run on.
    """
    everywhere = set().union(*known.values()) if known else set()
    unknown = sorted(set(overrides) - everywhere)
    if unknown:
        raise ValueError(f"-p {', '.join(unknown)}: not a parameter of the selected notebook(s) "
                         f"{', '.join(known)}; their parameters: {', '.join(sorted(everywhere))}")


def _use_this_interpreter_kernel() -> None:
    """Make papermill's ``python3`` kernel run on this interpreter (the venv), or fail clearly.

    The venv's own kernelspec is put first on ``JUPYTER_PATH``; jupyter_client then starts
    ``sys.executable -m ipykernel_launcher``.
    """
    share = Path(sys.prefix) / "share" / "jupyter"
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join([str(share)] + ([old] if old else []))
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel as err:
        raise RuntimeError(f"no Jupyter kernel {KERNEL_NAME!r} for {sys.executable}: install "
                           f"ipykernel in this environment (it is in requirements.txt)") from err
    exe = spec.argv[0] if spec.argv else ""
    v = sys.version_info
    if exe not in {"python", f"python{v[0]}", f"python{v[0]}.{v[1]}"} and \
            os.path.realpath(exe) != os.path.realpath(sys.executable):
        raise RuntimeError(f"kernel {KERNEL_NAME!r} ({spec.resource_dir}) runs {exe}, not this "
                           f"interpreter {sys.executable}; remove that kernelspec or run "
                           f"run_all.py with the interpreter it names")


def _stage_counts(log_path: Path, offset: int, stem: str) -> tuple[int, int]:
    """Count "run" and "cached" events of notebook ``stem`` appended to the log after ``offset``."""
    if not log_path.exists():
        return 0, 0
    with open(log_path, "rb") as fh:
        fh.seek(offset)
        tail = fh.read().decode("utf-8", errors="replace")
    run = cached = 0
    for line in tail.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event.get("notebook") != stem:
            continue
        run += event.get("status") == "run"
        cached += event.get("status") == "cached"
    return run, cached


def _log_size(path: Path) -> int:
    """Current size of the stage log (0 when it does not exist yet)."""
    return path.stat().st_size if path.exists() else 0


def format_summary(results: Sequence[NotebookResult]) -> str:
    """The end-of-run table: notebook, seconds, stages run / cached, status."""
    header = ("notebook", "seconds", "stages run", "cached", "status")
    rows = [(r.stem, f"{r.seconds:.1f}", str(r.stages_run), str(r.stages_cached), r.status)
            for r in results]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(cell.ljust(w) if i in (0, 4) else cell.rjust(w)
                         for i, (cell, w) in enumerate(zip(row, widths)))

    rule = "-" * len(line(header))
    total = sum(r.seconds for r in results)
    return "\n".join([rule, line(header), rule, *map(line, rows), rule,
                      f"total {total:.1f} s"])


def _print_failure(stem: str, err: BaseException, output: Path) -> None:
    """Print the notebook's own error (name, value, traceback tail) and the partial output."""
    from papermill.exceptions import PapermillExecutionError

    print(f"\nFAILED: {stem}", file=sys.stderr)
    if isinstance(err, PapermillExecutionError):
        print(f"  cell In [{err.exec_count}] raised {err.ename}: {err.evalue}", file=sys.stderr)
        lines = _ANSI_RE.sub("", "\n".join(err.traceback)).splitlines()
        for text in lines[-TRACEBACK_TAIL_LINES:]:
            print(f"  | {text}", file=sys.stderr)
    else:
        print(f"  {type(err).__name__}: {err}", file=sys.stderr)
    print(f"  partial output: {output}", file=sys.stderr)


def _report_interrupt(stem: str, results: Sequence[NotebookResult],
                      argv: Sequence[str] | None) -> None:
    """Say what an interrupted run kept and how to resume it (instead of a raw traceback)."""
    import asyncio
    import logging

    # the kernel's pending asyncio tasks would print "Task exception was never retrieved"
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    asyncio.get_event_loop_policy().get_event_loop().set_exception_handler(lambda *_: None)
    sys.stdout.flush()
    again = " ".join(["python", "run_all.py", *(sys.argv[1:] if argv is None else argv)])
    print(f"\ninterrupted during {stem}: every stage and chunk finished so far is kept on disk; "
          f"rerun the same command to resume:\n  {again}", file=sys.stderr)
    print(format_summary(results), flush=True)


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface of run_all.py."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=PROFILE_NAMES, default="default",
                    help="size of the run (default: %(default)s)")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--only", metavar="NN[,NN]",
                       help="run only these notebooks (number, stem or name)")
    which.add_argument("--from", dest="start", metavar="NN",
                       help="run this notebook and every later one")
    ap.add_argument("--list", action="store_true", help="list the notebooks that would run")
    ap.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                    help="override a notebook parameter (value parsed as JSON when possible)")
    ap.add_argument("--results-dir", type=Path,
                    help="root of executed notebooks and figures (sets STUDY_RESULTS_DIR)")
    ap.add_argument("--data-dir", type=Path,
                    help="root of the stage caches (sets STUDY_DATA_DIR)")
    ap.add_argument("--notebooks-dir", type=Path, default=REPO_ROOT / "notebooks",
                    help="folder of the NN_*.ipynb notebooks (default: notebooks/)")
    ap.add_argument("--log-output", action="store_true",
                    help="echo the notebooks' cell output to this terminal")
    ap.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                    help="run the FE labelling stages on this Dask scheduler's workers "
                         "(sets STUDY_DASK_SCHEDULER; checked before anything runs)")
    ap.add_argument("--plan", action="store_true",
                    help="print each stage's work and estimated time for the profile, then stop")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected notebooks; return 0 on success, 1 when a notebook fails, 2 on bad input,
    130 when interrupted (Ctrl-C)."""
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        overrides = parse_overrides(args.param)
        notebooks = select_notebooks(discover_notebooks(args.notebooks_dir.resolve()),
                                     args.only, args.start)
    except (ValueError, FileNotFoundError) as err:
        print(f"run_all.py: error: {err}", file=sys.stderr)
        return 2
    if args.list:
        for nb in notebooks:
            print(nb.stem)
        return 0
    if not notebooks:
        print(f"run_all.py: no NN_*.ipynb notebooks in {args.notebooks_dir}", file=sys.stderr)
        return 1
    if args.plan:
        from lib.cost_plan import format_plan

        print(format_plan(args.profile, notebooks=[nb.stem for nb in notebooks]))
        return 0
    try:
        check_overrides(overrides, notebook_parameters(notebooks))
    except ValueError as err:
        print(f"run_all.py: error: {err}", file=sys.stderr)
        return 2
    if args.scheduler is not None or os.environ.get("STUDY_DASK_SCHEDULER"):
        from lib import cluster

        try:
            address = cluster.check_address(args.scheduler or os.environ[cluster.SCHEDULER_ENV])
            client = cluster.connect(address)
        except (ValueError, ConnectionError) as err:
            print(f"run_all.py: error: {err}", file=sys.stderr)
            return 2
        with client:
            info = cluster.cluster_summary(client)
        os.environ[cluster.SCHEDULER_ENV] = address
        print(f"FE labelling on the Dask cluster at {address}: {info['workers']} "
              f"worker(s), {info['threads']} thread(s)")

    if args.results_dir is not None:
        os.environ["STUDY_RESULTS_DIR"] = str(args.results_dir)
    if args.data_dir is not None:
        os.environ["STUDY_DATA_DIR"] = str(args.data_dir)
    for var in ("STUDY_RESULTS_DIR", "STUDY_DATA_DIR"):  # absolute: kernels run in notebooks/
        if os.environ.get(var):
            os.environ[var] = str(Path(os.environ[var]).resolve())
    # the kernels import lib from the repository whatever their working folder
    pythonpath = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + ([pythonpath] if pythonpath
                                                                     else []))
    try:
        _use_this_interpreter_kernel()
    except RuntimeError as err:
        print(f"run_all.py: error: {err}", file=sys.stderr)
        return 1
    import papermill as pm

    out_dir = results_root().resolve() / args.profile / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    from lib.stages import stage_log_path

    log_path = stage_log_path(args.profile)
    parameters = {"profile": args.profile, **overrides}
    print(f"profile {args.profile}: {len(notebooks)} notebook(s), parameters {parameters}")
    print(f"executed notebooks -> {out_dir}")
    results: list[NotebookResult] = []
    for i, nb in enumerate(notebooks, 1):
        output = out_dir / f"{nb.stem}.ipynb"
        print(f"[{i}/{len(notebooks)}] {nb.stem}", flush=True)
        os.environ["STUDY_NOTEBOOK"] = nb.stem
        offset = _log_size(log_path)
        t0 = time.perf_counter()
        failure: BaseException | None = None
        try:
            pm.execute_notebook(str(nb), str(output), parameters=parameters,
                                kernel_name=KERNEL_NAME, progress_bar=True,
                                log_output=args.log_output, cwd=str(nb.parent),
                                extra_arguments=KERNEL_ARGUMENTS)
            status = "ok"
        except KeyboardInterrupt:
            results.append(NotebookResult(nb.stem, time.perf_counter() - t0,
                                          *_stage_counts(log_path, offset, nb.stem),
                                          "interrupted", output))
            _report_interrupt(nb.stem, results, argv)
            return 130
        except Exception as err:  # the notebook's error, reported below, stops the run
            status = "FAILED"
            failure = err
        seconds = time.perf_counter() - t0
        run, cached = _stage_counts(log_path, offset, nb.stem)
        results.append(NotebookResult(nb.stem, seconds, run, cached, status, output))
        if failure is not None:
            sys.stdout.flush()
            _print_failure(nb.stem, failure, output)
            print(format_summary(results), flush=True)
            return 1
        print(f"    done in {seconds:.1f} s: {run} stage(s) run, {cached} cached", flush=True)
    print(format_summary(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
