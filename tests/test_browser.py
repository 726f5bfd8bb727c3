"""The notebooks as a user meets them: JupyterLab in a real (headless) browser, sliders moved.

Starts JupyterLab from this interpreter (the study's venv) on 127.0.0.1 with a token set here,
opens notebook 04 in Debian's Chromium driven by Playwright (no browser download: the
executable is found on PATH or in ``STUDY_CHROMIUM``), runs every cell under the smoke profile
on the stages the session's smoke run cached, checks that no cell ended in an error, moves the
target-strain slider and checks that the structures drawn under it change. Every process the
test starts (server, kernel, browser) is stopped at the end. Skipped, with the reason, when
Chromium or Playwright is missing. ``STUDY_SCREENSHOT_DIR``: also save the screenshot there
(the README's).
"""
from __future__ import annotations

import base64
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "04_vqvae_pixelcnn.ipynb"
CHROMIUM = os.environ.get("STUDY_CHROMIUM") or shutil.which("chromium") or \
    shutil.which("chromium-browser")

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - the pinned venv has it
    sync_playwright = None

pytestmark = [
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed in this "
                       "environment (it is in requirements.txt)"),
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium not found (Debian: apt-get install "
                       "chromium; or set STUDY_CHROMIUM): the real-browser slider test is skipped"),
]

SERVER_START_S = 90
RUN_ALL_S = 15 * 60
REDRAW_S = 90

# JavaScript run in the page (JupyterLab started with expose_app_in_browser)
_JS_PANEL = "window.jupyterapp && window.jupyterapp.shell.currentWidget"
_JS_KERNEL_IDLE = (f"(() => {{ const w = {_JS_PANEL}; const k = w && w.sessionContext && "
                   "w.sessionContext.session && w.sessionContext.session.kernel; "
                   "return !!k && k.status === 'idle'; })()")
_JS_CELLS = """() => {
  const nb = window.jupyterapp.shell.currentWidget.content;
  return nb.widgets.filter(c => c.model.type === 'code').map(c => ({
    count: c.model.executionCount,
    errors: c.model.outputs.toJSON().filter(o => o.output_type === 'error')
                               .map(o => o.ename + ': ' + o.evalue)}));
}"""
_JS_SLIDER_IMAGE = """() => {
  const imgs = [...document.querySelectorAll('.jupyter-widgets-output-area img, .widget-output img')];
  return imgs.length ? imgs[imgs.length - 1].src : null;
}"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """Stop ``proc`` and everything it started (its own process group: kernels included)."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture
def lab(smoke_study: dict, tmp_path: Path) -> Iterator[dict]:
    """A JupyterLab server on 127.0.0.1 over a copy of notebook 04, on the smoke run's data."""
    if smoke_study["proc"].returncode != 0:
        pytest.fail("the session's smoke run failed (see test_notebooks_smoke); "
                    "notebook 04 has no stages to open")
    work = tmp_path / "lab"
    (work / "notebooks").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "notebooks" / NOTEBOOK, work / "notebooks" / NOTEBOOK)
    (work / "lib").symlink_to(REPO_ROOT / "lib")  # the notebook finds lib/ above its folder
    home = tmp_path / "jupyter"
    # no "get notified about Jupyter news?" toast over the page (and the screenshot)
    notices = home / "lab-settings" / "@jupyterlab" / "apputils-extension"
    notices.mkdir(parents=True)
    (notices / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port, token = _free_port(), secrets.token_hex(16)
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ,
           "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
           "PYTHONPATH": str(REPO_ROOT),
           "STUDY_DATA_DIR": str(smoke_study["data"]),
           "STUDY_RESULTS_DIR": str(tmp_path / "results"),
           "JUPYTER_PATH": str(Path(sys.prefix) / "share" / "jupyter"),
           "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "lab-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "lab-workspaces"),
           "IPYTHONDIR": str(home / "ipython"),
           "OMP_NUM_THREADS": "1"}
    env.pop("STUDY_DASK_SCHEDULER", None)
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
           f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
           "--LabApp.expose_app_in_browser=True", "--ServerApp.port_retries=0"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(tmp_path / "jupyterlab.log", "w")
    proc = subprocess.Popen(cmd, env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                    json.load(r)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail("JupyterLab did not start:\n" +
                                (tmp_path / "jupyterlab.log").read_text()[-3000:])
                time.sleep(0.5)
        yield {"url": url, "token": token, "log": tmp_path / "jupyterlab.log"}
    finally:
        _stop(proc)
        log.close()


def _png(src: str) -> np.ndarray:
    """The pixels of a ``data:image/png;base64,...`` image source, (H, W, C) floats in [0, 1]."""
    assert src.startswith("data:image/png;base64,"), src[:60]
    return matplotlib.image.imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))


def test_sliders_regenerate_structures_in_jupyterlab(lab: dict, tmp_path: Path) -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu",
                                           "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.goto(f"{lab['url']}/lab/tree/notebooks/{NOTEBOOK}?token={lab['token']}")
            page.wait_for_function(_JS_KERNEL_IDLE, timeout=SERVER_START_S * 1000)
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            # every code cell has run (an execution count) and the kernel is idle again
            page.wait_for_function(
                f"(() => {{ const nb = {_JS_PANEL}.content; return nb.widgets.every(c => "
                f"c.model.type !== 'code' || c.model.executionCount !== null) && "
                f"{_JS_KERNEL_IDLE}; }})()", timeout=RUN_ALL_S * 1000, polling=1000)
            cells = page.evaluate(_JS_CELLS)
            errors = [e for c in cells for e in c["errors"]]
            assert not errors, f"cells ended in errors: {errors}"
            assert all(c["count"] is not None for c in cells)

            before = page.wait_for_function(_JS_SLIDER_IMAGE, timeout=60_000).json_value()
            slider = page.locator(".widget-slider", has_text="target ε_f").first
            slider.scroll_into_view_if_needed()
            readout = slider.locator(".widget-readout")
            assert readout.inner_text().strip() == "0.30"
            slider.locator(".noUi-handle").first.focus()
            page.keyboard.press("End")  # noUiSlider: to the maximum, one value change
            page.wait_for_function(f"() => ({_JS_SLIDER_IMAGE})() !== {json.dumps(before)}",
                                   timeout=REDRAW_S * 1000, polling=500)
            after = page.evaluate(_JS_SLIDER_IMAGE)
            assert readout.inner_text().strip() == "0.90"
            shot = tmp_path / "04_sliders_jupyterlab.png"
            slider.locator("xpath=ancestor::div[contains(@class,'widget-vbox')][1]").screenshot(
                path=str(shot))
            if os.environ.get("STUDY_SCREENSHOT_DIR"):
                shutil.copy(shot, Path(os.environ["STUDY_SCREENSHOT_DIR"]) / shot.name)
        finally:
            browser.close()
    a, b = _png(before), _png(after)
    assert a.shape == b.shape
    # the title changes too; the structures (most of the image) must change, not just it
    changed = np.abs(a - b).max(axis=-1) > 0.1
    assert changed.mean() > 0.005, f"only {100 * changed.mean():.2f} % of the pixels changed"
