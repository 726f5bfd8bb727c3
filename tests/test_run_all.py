"""Tests of run_all.py on tiny throwaway notebooks (each kernel start costs a second or two)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import run_all

PARAMETERS = 'profile = "default"\nscale = 1\ntag = "none"\n'

PROBE = """
import json, os, sys
import numpy as np
from lib.paths import results_root
from lib.stages import cached_stage, load_stage
path = cached_stage(profile, "toy", {"scale": scale}, lambda: {"x": np.arange(4) * scale})
probe = {"profile": profile, "scale": scale, "tag": tag, "executable": sys.executable,
         "notebook": os.environ.get("STUDY_NOTEBOOK"), "data": os.environ.get("STUDY_DATA_DIR"),
         "x_sum": int(load_stage(path)["x"].sum())}
(results_root() / profile / f"probe_{os.environ['STUDY_NOTEBOOK']}.json").write_text(
    json.dumps(probe))
"""


def _notebook(folder: Path, name: str, *cells: str) -> Path:
    """Write a notebook whose first cell is the tagged parameters cell, then ``cells``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    params = nbformat.v4.new_code_cell(PARAMETERS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params] + [nbformat.v4.new_code_cell(c) for c in cells]
    path = folder / name
    nbformat.write(nb, path)
    return path


@pytest.fixture
def study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Two probe notebooks plus a non-notebook file; run_all's env changes undone afterwards."""
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    _notebook(nbdir, "01_first.ipynb", PROBE)
    _notebook(nbdir, "02_second.ipynb", PROBE)
    (nbdir / "notes.ipynb").write_text("{}")  # not NN_*: ignored
    for var in ("STUDY_DATA_DIR", "STUDY_RESULTS_DIR", "STUDY_NOTEBOOK", "JUPYTER_PATH",
                "PYTHONPATH"):
        if var in os.environ:
            monkeypatch.setenv(var, os.environ[var])
        else:
            monkeypatch.delenv(var, raising=False)
    return {"notebooks": nbdir, "results": tmp_path / "results", "data": tmp_path / "data"}


def _args(study: dict[str, Path], *extra: str) -> list[str]:
    return ["--notebooks-dir", str(study["notebooks"]), "--results-dir", str(study["results"]),
            "--data-dir", str(study["data"]), *extra]


def _probe(study: dict[str, Path], profile: str, stem: str) -> dict:
    return json.loads((study["results"] / profile / f"probe_{stem}.json").read_text())


def test_list_and_selection(study, capsys) -> None:
    assert run_all.main(_args(study, "--list")) == 0
    assert capsys.readouterr().out.split() == ["01_first", "02_second"]
    assert run_all.main(_args(study, "--list", "--only", "2")) == 0
    assert capsys.readouterr().out.split() == ["02_second"]
    assert run_all.main(_args(study, "--list", "--only", "second,01_first")) == 0
    assert capsys.readouterr().out.split() == ["01_first", "02_second"]
    assert run_all.main(_args(study, "--list", "--from", "02")) == 0
    assert capsys.readouterr().out.split() == ["02_second"]
    assert run_all.main(_args(study, "--list", "--only", "07")) == 2
    assert "no notebook matches '07'" in capsys.readouterr().err


def test_parse_overrides() -> None:
    assert run_all.parse_overrides(["n=3", "x=0.25", "s=abc", "l=[1, 2]", "b=false"]) == {
        "n": 3, "x": 0.25, "s": "abc", "l": [1, 2], "b": False}
    with pytest.raises(ValueError, match="key=value"):
        run_all.parse_overrides(["novalue"])
    with pytest.raises(ValueError, match="--profile"):
        run_all.parse_overrides(["profile=paper"])


def test_runs_all_injects_parameters_and_summarizes(study, capsys) -> None:
    code = run_all.main(_args(study, "--profile", "smoke", "-p", "scale=3", "-p", "tag=hello"))
    out = capsys.readouterr().out
    assert code == 0
    for stem in ("01_first", "02_second"):
        probe = _probe(study, "smoke", stem)
        assert (probe["profile"], probe["scale"], probe["tag"]) == ("smoke", 3, "hello")
        assert probe["notebook"] == stem
        assert probe["x_sum"] == 18  # (0 + 1 + 2 + 3) * 3
        assert Path(probe["data"]) == study["data"].resolve()
        assert Path(probe["executable"]).resolve() == Path(sys.executable).resolve()
        executed = nbformat.read(study["results"] / "smoke" / "notebooks" / f"{stem}.ipynb", 4)
        injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert len(injected) == 1 and "scale = 3" in injected[0].source
    assert (study["data"] / "smoke").glob("toy-*.h5")
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.startswith(("01_first", "02_second"))}
    # notebook 01 computes the toy stage, 02 finds it cached
    assert rows["01_first"][2:] == ["1", "0", "ok"]
    assert rows["02_second"][2:] == ["0", "1", "ok"]
    assert "stages run" in out and "total" in out

    before = (study["results"] / "smoke" / "notebooks" / "02_second.ipynb").stat().st_mtime_ns
    assert run_all.main(_args(study, "--profile", "smoke", "--only", "01", "-p", "scale=3")) == 0
    out = capsys.readouterr().out
    assert "[1/1] 01_first" in out and "02_second" not in out
    assert (study["results"] / "smoke" / "notebooks" / "02_second.ipynb").stat().st_mtime_ns \
        == before
    row = next(line.split() for line in out.splitlines() if line.startswith("01_first"))
    assert row[2:] == ["0", "1", "ok"]


def test_from_runs_later_notebooks_only(study, capsys) -> None:
    assert run_all.main(_args(study, "--profile", "smoke", "--from", "second")) == 0
    assert _probe(study, "smoke", "02_second")["scale"] == 1
    assert not (study["results"] / "smoke" / "probe_01_first.json").exists()
    assert not (study["results"] / "smoke" / "notebooks" / "01_first.ipynb").exists()


def test_failure_stops_with_the_notebooks_error(study) -> None:
    _notebook(study["notebooks"], "02_second.ipynb",
              "def label(n):\n    raise ValueError(f'fraction {n} out of range')\n", "label(42)")
    _notebook(study["notebooks"], "03_third.ipynb", PROBE)
    proc = subprocess.run(
        [sys.executable, str(Path(run_all.__file__)), *_args(study, "--profile", "smoke",
                                                             "--from", "02")],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1, proc.stderr
    partial = study["results"].resolve() / "smoke" / "notebooks" / "02_second.ipynb"
    assert "FAILED: 02_second" in proc.stderr
    assert "ValueError: fraction 42 out of range" in proc.stderr
    assert "label(42)" in proc.stderr  # the traceback tail
    assert f"partial output: {partial}" in proc.stderr
    assert partial.exists()
    assert not (study["results"] / "smoke" / "notebooks" / "03_third.ipynb").exists()
    row = next(line.split() for line in proc.stdout.splitlines() if line.startswith("02_second"))
    assert row[2:] == ["0", "0", "FAILED"]  # the summary's row


def test_missing_notebooks_dir(study, tmp_path, capsys) -> None:
    code = run_all.main(["--notebooks-dir", str(tmp_path / "nope"), "--list"])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_unknown_parameter_stops_before_anything_runs(study, capsys) -> None:
    code = run_all.main(_args(study, "--profile", "smoke", "-p", "bogus=1", "-p", "scale=2"))
    err = capsys.readouterr().err
    assert code == 2
    assert "-p bogus: not a parameter of the selected notebook(s) 01_first, 02_second" in err
    assert "their parameters: profile, scale, tag" in err
    assert not (study["results"] / "smoke" / "notebooks").exists()


def test_parameter_of_one_selected_notebook_is_accepted(study) -> None:
    nb = nbformat.read(study["notebooks"] / "02_second.ipynb", 4)
    nb.cells[0].source += "n_jobs = None\n"
    nbformat.write(nb, study["notebooks"] / "02_second.ipynb")
    known = run_all.notebook_parameters(sorted(study["notebooks"].glob("0*.ipynb")))
    assert known == {"01_first": {"profile", "scale", "tag"},
                     "02_second": {"profile", "scale", "tag", "n_jobs"}}
    run_all.check_overrides({"n_jobs": 1}, known)  # in one of them: fine
    with pytest.raises(ValueError, match="-p n_job:"):
        run_all.check_overrides({"n_job": 1}, known)


@pytest.mark.parametrize("address, message", [
    ("localhost:8786", "looks like tcp://HOST:PORT"),
    ("tcp://127.0.0.1:9", "cannot reach the Dask scheduler at tcp://127.0.0.1:9"),
])
def test_bad_scheduler_fails_fast_before_running(study, capsys, address, message) -> None:
    import time

    t0 = time.monotonic()
    code = run_all.main(_args(study, "--profile", "smoke", "--scheduler", address))
    assert code == 2 and message in capsys.readouterr().err
    assert time.monotonic() - t0 < 30  # CONNECT_TIMEOUT_S = 10 s, not a hang
    assert not (study["results"] / "smoke" / "notebooks").exists()


def test_interrupt_says_how_to_resume(study) -> None:
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) during a notebook: exit 130,
    a message naming the notebook and the command to rerun, no raw traceback."""
    import signal
    import time

    started = study["results"] / "02_sleeping"
    _notebook(study["notebooks"], "02_second.ipynb",
              f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\ntime.sleep(60)")
    proc = subprocess.Popen(
        [sys.executable, str(Path(run_all.__file__)), *_args(study, "--profile", "smoke")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        # a terminal's child gets SIGINT at its default; an earlier test of the suite can leave it
        # ignored in this process, and an ignored signal stays ignored across exec
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not started.exists():  # notebook 02's kernel is in its sleep (a fixed wait was flaky under load)
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted during 02_second" in err and "rerun the same command to resume" in err
    assert "run_all.py" in err.splitlines()[-1]
    assert "Traceback" not in err and "Task exception was never retrieved" not in err
    row = next(line.split() for line in out.splitlines() if line.startswith("02_second"))
    assert row[-1] == "interrupted"
