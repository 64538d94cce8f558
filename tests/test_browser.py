"""The task-affinity notebook in a real browser: JupyterLab (headless) + system Chromium driven by Playwright.

Why: nbval checks the kernel side only; this checks that the plotly heatmap and the ipywidgets slider actually
render in JupyterLab. Never a downloaded browser: Chromium comes from the system (``apt-get install -y chromium``).
Set MTLWB_SKIP_BROWSER=1 to skip on a machine without one; otherwise a missing Chromium fails loudly.

Every wait has its own short deadline and fails naming what was missing, with the page's console errors and the
notebook's state (execution counts, error outputs, kernel status); JupyterLab's log is in reports/browser/.
Clean-up: kernels run in their own sessions, so they are shut down through the REST API, then the server is
asked to stop, then its process group and any kernel group still alive are killed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
OUT = ROOT / "reports" / "browser"
NOTEBOOK = ROOT / "notebooks" / "task_affinity.ipynb"

# Deadlines (seconds); generous for 2 shared cores, far below a silent CI hang.
SERVER_START = 60
APP_READY = 60
KERNEL_READY = 60
RUN_ALL = 240   # a fresh checkout first trains the tiny run into reports/runs/nb-task-affinity
CLEANUP = 10

pytestmark = pytest.mark.slow

# State of the open notebook, read from JupyterLab's own models (no guessing from the DOM).
NOTEBOOK_STATE_JS = """() => {
  const app = window.jupyterapp;
  const panel = app && app.shell.currentWidget;
  const state = {app: !!app, panel: !!(panel && panel.node.classList.contains('jp-NotebookPanel')),
                 kernel: null, status: null, codeCells: 0, executed: 0, counts: [], errors: [],
                 plotly: document.querySelectorAll('.js-plotly-plot').length,
                 heatmaps: document.querySelectorAll('.js-plotly-plot .heatmaplayer').length,
                 sliders: document.querySelectorAll('.widget-slider').length,
                 dialogs: Array.from(document.querySelectorAll('.jp-Dialog')).map(d => d.innerText.slice(0, 200))};
  if (!panel || !panel.context || !panel.content || !panel.content.model) return state;
  const sc = panel.context.sessionContext;
  const kernel = sc.session && sc.session.kernel;
  state.kernel = kernel ? kernel.id : null;
  state.status = kernel ? kernel.status : sc.kernelDisplayStatus;
  const cells = panel.content.model.cells;
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    if (cell.type !== 'code') continue;
    state.codeCells += 1;
    state.counts.push(cell.executionCount);
    if (cell.executionCount !== null && cell.executionCount !== undefined) state.executed += 1;
    for (const o of cell.outputs.toJSON()) {
      if (o.output_type === 'error') state.errors.push(`cell ${i}: ${o.ename}: ${o.evalue}`);
    }
  }
  return state;
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, method: str = "GET", timeout: float = 5) -> bytes:
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=timeout) as r:
        return r.read()


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with code {proc.returncode} before serving {url}; "
                               f"log tail:\n{_tail(log)}")
        try:
            _request(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"jupyter lab did not answer {url} within {timeout} s; log tail:\n{_tail(log)}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (the kernels a server started), read from /proc."""
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(entry.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _kill_group(pgid: int, proc: subprocess.Popen | None = None) -> None:
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc is not None:
                if proc.poll() is not None:
                    return
            elif not _alive(pgid):
                return
            time.sleep(0.1)


def _stop_lab(url: str, proc: subprocess.Popen) -> None:
    """Kernels via the REST API, then the server; whatever is left of either is killed by process group."""
    kernel_pids = _children(proc.pid) if proc.poll() is None else []
    if proc.poll() is None:
        try:
            for k in json.loads(_request(f"{url}/api/kernels")):
                try:
                    _request(f"{url}/api/kernels/{k['id']}", method="DELETE", timeout=CLEANUP)
                except OSError:
                    pass
        except (OSError, ValueError):
            pass
        try:
            _request(f"{url}/api/shutdown", method="POST", timeout=CLEANUP)
        except OSError:
            pass
        try:
            proc.wait(timeout=CLEANUP)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        _kill_group(proc.pid, proc)
    for pid in kernel_pids:               # each kernel leads its own session/process group (with its children)
        if _alive(pid):
            _kill_group(pid)
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=CLEANUP)


@pytest.fixture
def chromium() -> str:
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    if os.environ.get("MTLWB_SKIP_BROWSER") == "1":
        pytest.skip(f"MTLWB_SKIP_BROWSER=1 and no {CHROMIUM}")
    pytest.fail(f"{CHROMIUM} not found: install the system browser (`apt-get install -y chromium`, done by "
                "`make browser`) or set MTLWB_SKIP_BROWSER=1 to skip the browser test")


@pytest.fixture
def lab(tmp_path):
    """JupyterLab on a free localhost port, token off, with its own (empty) config, runtime and workspace dirs."""
    port = _free_port()
    OUT.mkdir(parents=True, exist_ok=True)
    log_path = OUT / "jupyterlab.log"
    env = dict(os.environ)
    for var, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                     ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"), ("JUPYTERLAB_SETTINGS_DIR", "settings")):
        env[var] = str(tmp_path / sub)
        (tmp_path / sub).mkdir()
    env.pop("JUPYTER_TOKEN", None)
    # no "get notified about Jupyter news?" toast over the screenshot, no update check
    notification = tmp_path / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    # render every cell (no virtual scrolling), so the screenshot shows the figures it was taken for
    tracker = tmp_path / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.open_browser=False",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           "--IdentityProvider.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
           f"--ServerApp.root_dir={ROOT}", "--allow-root", "--LabApp.expose_app_in_browser=True",
           f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
           f"--LabApp.user_settings_dir={tmp_path / 'settings'}",
           "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--FileContentsManager.delete_to_trash=False",
           # safety net if this process is SIGKILLed before its clean-up runs: the server stops by itself
           "--ServerApp.shutdown_no_activity_timeout=600",
           "--MappingKernelManager.cull_idle_timeout=600", "--MappingKernelManager.cull_interval=60"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_http(f"{url}/api/status", proc, log_path, timeout=SERVER_START)
            yield url
        finally:
            _stop_lab(url, proc)


def test_task_affinity_notebook_renders_in_chromium(chromium, lab, tmp_path):
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    # a copy under reports/ (ignored by git): JupyterLab's autosave must not write outputs into notebooks/
    nb = OUT / "task_affinity.ipynb"
    shutil.copyfile(NOTEBOOK, nb)
    rel = nb.relative_to(ROOT).as_posix()
    shot = OUT / "task_affinity.png"
    shot.unlink(missing_ok=True)
    (OUT / "task_affinity-failure.png").unlink(missing_ok=True)
    console: list[str] = []

    with sync_playwright() as p:
        user_data = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)    # fresh --user-data-dir
        ctx = p.chromium.launch_persistent_context(user_data, executable_path=chromium, headless=True,
                                                   args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000},
                                                   timeout=60_000)
        try:
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            page.set_default_timeout(30_000)
            page.on("console", lambda m: console.append(f"console.{m.type}: {m.text[:500]}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: console.append(f"pageerror: {str(e)[:500]}"))
            page.on("crash", lambda *_: console.append("renderer crashed"))

            def state() -> dict:
                try:
                    return page.evaluate(NOTEBOOK_STATE_JS)
                except PlaywrightError as e:
                    return {"unavailable": str(e)[:300]}

            def fail(what: str, timeout: float) -> None:
                try:
                    page.screenshot(path=str(OUT / "task_affinity-failure.png"))
                except PlaywrightError:
                    pass
                errors = "\n".join(console[-40:]) or "(none)"
                pytest.fail(f"{what} not seen within {timeout:.0f} s.\nnotebook state: {state()}\n"
                            f"browser console errors:\n{errors}\nscreenshot: reports/browser/task_affinity-failure.png;"
                            f" JupyterLab log: reports/browser/jupyterlab.log", pytrace=False)

            def wait_until(what: str, check, timeout: float, interval: float = 0.5) -> dict:
                deadline = time.monotonic() + timeout
                while True:
                    s = state()
                    if s.get("errors"):
                        pytest.fail(f"the notebook raised while waiting for {what}: {s['errors']}\n"
                                    f"state: {s}\nbrowser console errors:\n" + "\n".join(console[-40:]),
                                    pytrace=False)
                    if check(s):
                        return s
                    if "renderer crashed" in console or time.monotonic() > deadline:
                        fail(what, timeout)
                    page.wait_for_timeout(interval * 1000)

            # `?reset`: start from an empty layout, whatever workspace a previous run left
            page.goto(f"{lab}/lab/tree/{rel}?reset", wait_until="domcontentloaded", timeout=APP_READY * 1000)
            wait_until("JupyterLab with the notebook open (window.jupyterapp, a NotebookPanel)",
                       lambda s: s.get("panel") is True and s.get("codeCells", 0) > 0, APP_READY)
            wait_until("an idle python kernel for the notebook (no kernel-selection dialog)",
                       lambda s: s.get("kernel") and s.get("status") == "idle" and not s.get("dialogs"),
                       KERNEL_READY)

            # The file browser open, as a person works: the notebook is then ~1000 px wide, and every figure must fit.
            page.evaluate("() => window.jupyterapp.shell.activateById('filebrowser')")
            page.wait_for_timeout(500)
            assert not page.evaluate("() => window.jupyterapp.shell.leftCollapsed"), "the file browser did not open"
            # The stored notebook carries execution counts: clear them, so "executed" means executed here.
            # Run all without awaiting the command's promise (a stuck cell must not block Playwright forever).
            page.evaluate("""async () => {
                const c = window.jupyterapp.commands;
                await c.execute('notebook:clear-all-cell-outputs');
                c.execute('notebook:run-all-cells');
            }""")
            t0 = time.monotonic()
            wait_until("every code cell executed with the kernel idle again",
                       lambda s: s["executed"] == s["codeCells"] and s["status"] == "idle"
                       and time.monotonic() - t0 > 1, RUN_ALL)
            wait_until("the affinity heatmap (.js-plotly-plot .heatmaplayer)",
                       lambda s: s["plotly"] >= 1 and s["heatmaps"] >= 1, 30)
            wait_until("the ipywidgets slider (.widget-slider)", lambda s: s["sliders"] >= 1, 30)

            page.wait_for_timeout(1_000)                 # let every plot lay out
            # a plot drawn wider than the notebook is cut off (the output area scrolls): compare what plotly drew
            cut = page.evaluate("""() => {
                const notebook = window.jupyterapp.shell.currentWidget.content.node.getBoundingClientRect();
                return [...document.querySelectorAll('.js-plotly-plot')].map(p => {
                    const drawn = (p.querySelector('.main-svg') || p).getBoundingClientRect();
                    const title = p.querySelector('.gtitle');
                    return {title: title ? title.textContent : '', width: drawn.width, right: drawn.right,
                            notebook: notebook.right};
                }).filter(p => p.right > p.notebook);
            }""")
            assert not cut, f"figures wider than the notebook with the file browser open: {cut}"
            heatmap = page.locator(".js-plotly-plot").first
            heatmap.scroll_into_view_if_needed(timeout=10_000)
            page.wait_for_timeout(1_000)                 # let the scrolled-to plot paint
            assert heatmap.is_visible(), "the first plotly plot is in the DOM but not visible"
            page.screenshot(path=str(shot), timeout=30_000)
            heatmap.screenshot(path=str(OUT / "task_affinity_heatmap.png"), timeout=30_000)
        finally:
            ctx.close()
    assert shot.stat().st_size > 10_000, f"{shot} is suspiciously small ({shot.stat().st_size} bytes)"


def test_sweep_report_renders_offline_with_the_table_under_the_verdict(chromium, tmp_path):
    """summary.html as a reader opens it with no network: nothing requested beyond the file itself (it loaded
    require.js and MathJax from a CDN: 12 console errors offline), the figures drawn, and the metrics table on the
    first screen, right under the verdict (it sat ~4000 px further down)."""
    from playwright.sync_api import sync_playwright

    from mtlwb.sweeps.report import render_report
    from tests.helpers.sweep_records import write_paired

    html = render_report(write_paired(tmp_path / "sweep"))
    console: list[str] = []
    blocked: list[str] = []

    def offline(route) -> None:
        if route.request.url.startswith(("file:", "data:", "blob:")):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: console.append(f"console.{m.type}: {m.text[:300]}")
                    if m.type == "error" else None)
            page.on("pageerror", lambda e: console.append(f"pageerror: {str(e)[:300]}"))
            page.route("**/*", offline)
            page.goto(html.as_uri(), wait_until="load", timeout=60_000)
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length > 0",
                                   timeout=30_000)
            page.wait_for_timeout(1_000)
            plots = page.evaluate("document.querySelectorAll('.js-plotly-plot .main-svg').length")
            verdict_y, table_y = page.evaluate("""() => {
                const heading = [...document.querySelectorAll('h2')].find(h => h.innerText.startsWith('Verdict'));
                const table = document.querySelector('table.dataframe');
                return [heading.getBoundingClientRect().top, table.getBoundingClientRect().top];
            }""")
            page.screenshot(path=str(OUT / "sweep_report_offline.png"))
        finally:
            browser.close()
    assert blocked == [], f"the report asked the network for {blocked}"
    assert console == [], "\n".join(console)
    assert plots >= 3
    assert 0 < table_y - verdict_y < 500, (verdict_y, table_y)
    assert table_y < 1000                                          # on the first screen
