"""The task-affinity notebook in a real browser: JupyterLab (headless) + system Chromium driven by Playwright.

Why: nbval checks the kernel side only; this checks that the plotly heatmap and the ipywidgets slider actually
render in JupyterLab. Never a downloaded browser: Chromium comes from the system (``apt-get install -y chromium``).
Set MTLWB_SKIP_BROWSER=1 to skip on a machine without one; otherwise a missing Chromium fails loudly.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
OUT = ROOT / "reports" / "browser"

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with code {proc.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"jupyter lab did not answer {url} within {timeout} s")


@pytest.fixture
def chromium() -> str:
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    if os.environ.get("MTLWB_SKIP_BROWSER") == "1":
        pytest.skip(f"MTLWB_SKIP_BROWSER=1 and no {CHROMIUM}")
    pytest.fail(f"{CHROMIUM} not found: install the system browser (`apt-get install -y chromium`, done by "
                "`make browser`) or set MTLWB_SKIP_BROWSER=1 to skip the browser test")


@pytest.fixture
def lab():
    """JupyterLab on a free localhost port, token off; its whole process group is killed afterwards."""
    port = _free_port()
    OUT.mkdir(parents=True, exist_ok=True)
    log = open(OUT / "jupyterlab.log", "w")  # noqa: SIM115  (closed in finally)
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.open_browser=False",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           "--IdentityProvider.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
           f"--ServerApp.root_dir={ROOT}", "--allow-root", "--LabApp.expose_app_in_browser=True",
           "--FileContentsManager.delete_to_trash=False"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_http(f"{url}/api/status", proc, timeout=90)
        yield url
    finally:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, sig)            # the server and the kernels it started
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                pass
        log.close()


def test_task_affinity_notebook_renders_in_chromium(chromium, lab):
    from playwright.sync_api import sync_playwright

    # a copy under reports/ (ignored by git): JupyterLab's autosave must not write outputs into notebooks/
    nb = OUT / "task_affinity.ipynb"
    shutil.copyfile(ROOT / "notebooks" / "task_affinity.ipynb", nb)
    rel = nb.relative_to(ROOT).as_posix()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{lab}/lab/tree/{rel}", wait_until="domcontentloaded", timeout=90_000)
            page.wait_for_function("() => window.jupyterapp && window.jupyterapp.commands"
                                   ".isEnabled('notebook:run-all-cells')", timeout=90_000)
            page.wait_for_selector(".jp-Notebook", timeout=60_000)
            page.wait_for_function("() => { const s = document.querySelector('.jp-Notebook-ExecutionIndicator');"
                                   " return !s || s.getAttribute('data-status') !== 'busy'; }", timeout=60_000)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            heatmap = page.wait_for_selector(".js-plotly-plot", timeout=240_000)
            slider = page.wait_for_selector(".jupyter-widgets.widget-slider, .widget-slider", timeout=240_000)
            page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 5", timeout=240_000)
            assert heatmap.is_visible() and slider is not None
            assert page.locator(".js-plotly-plot .heatmaplayer").count() >= 1
            heatmap.scroll_into_view_if_needed()
            page.screenshot(path=str(OUT / "task_affinity.png"), full_page=False)
        finally:
            browser.close()
    assert (OUT / "task_affinity.png").stat().st_size > 10_000
