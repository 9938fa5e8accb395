"""Real browser: JupyterLab and the Voila app started by the test, Debian's chromium driven by Playwright.

The quickstart notebook runs in JupyterLab, a dashboard filter is changed, the comparison chart is seen
rendered; chapter 01 runs there too and shows the advisor's chart and ranked table; chapters 07 and 08 run there
and show the doctors' findings; then the Voila app serves the same workspace and its Compare tab shows the chart.
Screenshots are kept under test-artifacts/browser/ (or $WORKBENCH_TEST_ARTIFACTS); the Voila test also writes the
README's screenshot, docs/compare-dashboard.png, from the app it drove, at a laptop's viewport.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("WORKBENCH_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "browser"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SMALL = {"VAL_IMAGES": 8, "TRAIN_IMAGES": 8, "SECONDS": 0.3}
SMALL_ADVISOR = {"MEASURE_SECONDS": 0.3, "VAL_IMAGES": 8}
SERVE = [sys.executable, str(ROOT / "scripts" / "serve_app.py")]  # what `make lab` and `make app` run
README_SCREENSHOT = ROOT / "docs" / "compare-dashboard.png"
LAPTOP = {"width": 1366, "height": 768}

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900, method="thread")]  # signals do not reach Playwright's loop
# the notebook in front: its document loaded, its kernel connected and idle (a run-all before that does nothing)
KERNEL_IDLE = (
    "(widget => widget?.context?.isReady && widget.sessionContext?.isReady"
    " && widget.sessionContext.session?.kernel?.status === 'idle'"
    " && widget.sessionContext.session.kernel.connectionStatus === 'connected')"
    "(window.jupyterapp?.shell?.currentWidget)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _with_parameters(source: Path, target: Path, values: dict) -> None:
    """Copy a notebook, overriding assignments in its parameters cell."""
    notebook = nbformat.read(source, as_version=4)
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    lines = cell.source.splitlines()
    for name, value in values.items():
        lines = [f"{name} = {value!r}" if line.startswith(f"{name} =") else line for line in lines]
    cell.source = "\n".join(lines)
    nbformat.write(notebook, target)


def _wait_http(url: str, process: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=5)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {seconds} s:\n{log.read_text()[-3000:]}")


def _serve(command: list[str], cwd: Path, url: str, log: Path, token: str):
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "False", "JUPYTER_PLATFORM_DIRS": "1"}
    env["WORKBENCH_TOKEN"] = token
    handle = log.open("w")
    process = subprocess.Popen(command, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_http(url, process, log)
    except Exception:
        process.terminate()
        raise
    return process


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A folder holding small-parameter copies of the quickstart and app notebooks (one workspace for both)."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed: run `make browser-deps` (make test does it)")
    folder = tmp_path_factory.mktemp("site")
    _with_parameters(ROOT / "notebooks" / "00_quickstart.ipynb", folder / "00_quickstart.ipynb", SMALL)
    _with_parameters(
        ROOT / "notebooks" / "01_where_to_deploy.ipynb", folder / "01_where_to_deploy.ipynb", SMALL_ADVISOR
    )
    _with_parameters(ROOT / "notebooks" / "app.ipynb", folder / "app.ipynb", {"TRAIN_IMAGES": 8, "VAL_IMAGES": 8})
    for chapter in ("07_accuracy_drop", "08_slow_inference"):  # their defaults are already small
        shutil.copy(ROOT / "notebooks" / f"{chapter}.ipynb", folder / f"{chapter}.ipynb")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _page(browser, viewport: dict | None = None):
    page = browser.new_page(viewport=viewport or {"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    return page


def _lab(site):
    port, token = _free_port(), secrets.token_hex(16)
    command = [*SERVE, "lab", f"--port={port}", f"--notebook-dir={site}", "--LabApp.expose_app_in_browser=True"]
    server = _serve(command, site, f"http://127.0.0.1:{port}/api/status?token={token}", site / "lab.log", token)
    return server, port, token


NO_TRACEBACK = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] :text('Traceback')"


# A code cell of the notebook in front queued or run shows [*] or [n] in its prompt; one never run shows "[ ]".
CELLS_STARTED = (
    "Array.from(window.jupyterapp.shell.currentWidget.node.querySelectorAll('.jp-CodeCell .jp-InputPrompt'))"
    ".some(prompt => /\\[(\\*|\\d+)\\]/.test(prompt.textContent))"
)


def _run_all(page, port: int, token: str, notebook: str, tries: int = 3) -> None:
    """Open a notebook and run all its cells, asking again (at most `tries` times) while no cell has started:
    a run-all issued while the notebook is still being attached to its kernel does nothing."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.goto(f"http://127.0.0.1:{port}/lab/tree/{notebook}?token={token}")
    page.wait_for_function(KERNEL_IDLE, timeout=120_000, polling=500)
    for attempt in range(1, tries + 1):
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        try:
            page.wait_for_function(CELLS_STARTED, timeout=10_000, polling=250)
            return
        except PlaywrightTimeout:  # run-all was not taken: ask again
            prompts = page.evaluate(
                "Array.from(window.jupyterapp.shell.currentWidget.node.querySelectorAll('.jp-InputPrompt'))"
                ".map(p => p.textContent).slice(0, 6)"
            )
            print(f"{notebook}: no cell started 10 s after run-all number {attempt}: {prompts}")
            page.wait_for_function(KERNEL_IDLE, timeout=60_000, polling=500)
    raise AssertionError(f"{notebook}: no cell started after {tries} run-all commands")


def _print_state(page, log: Path) -> None:
    """What a failed browser test leaves in the CI output: the cells' prompts and last outputs, the server's log."""
    state = page.evaluate(
        "Array.from(window.jupyterapp.shell.currentWidget.node.querySelectorAll('.jp-Cell'))"
        ".map(cell => (cell.querySelector('.jp-InputPrompt')?.textContent ?? '') + ' '"
        " + (cell.querySelector('.jp-OutputArea')?.innerText ?? '').slice(-300)).join('\\n')"
    )
    print(f"--- notebook in front ---\n{state}\n--- {log.name} ---\n{log.read_text()[-3000:]}")


def test_quickstart_runs_in_jupyterlab_and_shows_the_chart(site, browser):
    server, port, token = _lab(site)
    page = _page(browser)
    try:
        _run_all(page, port, token, "00_quickstart.ipynb")
        chart = page.locator(".jp-OutputArea .js-plotly-plot .scatterlayer .trace").first
        chart.wait_for(timeout=400_000)  # the whole notebook has run up to the dashboard
        assert not page.locator(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] :text('Traceback')"
        ).count()
        legend = page.locator(".jp-OutputArea .js-plotly-plot .legend .traces")
        page.wait_for_function(
            "document.querySelectorAll('.jp-OutputArea .js-plotly-plot .legend .traces').length >= 3", polling=500
        )
        before = legend.count()
        runtime = page.locator(".jp-OutputArea .widget-select-multiple select").first
        runtime.select_option("openvino")  # the Runtime filter: keep only OpenVINO rows
        page.wait_for_function(
            f"document.querySelectorAll('.jp-OutputArea .js-plotly-plot .legend .traces').length < {before}",
            polling=500,
        )
        comparison = page.locator(".jp-OutputArea .js-plotly-plot", has=page.locator(".scatterlayer .trace")).first
        comparison.scroll_into_view_if_needed()
        comparison.screenshot(path=str(ARTIFACTS / "lab-chart.png"))
        page.screenshot(path=str(ARTIFACTS / "lab-quickstart.png"), full_page=False)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "lab-failure.png"))
        raise
    finally:
        page.close()
        _stop(server)
    assert (site / "workbench-runs" / "workbench.db").is_file()


def test_where_to_deploy_runs_in_jupyterlab_and_shows_the_ranking(site, browser):
    server, port, token = _lab(site)
    page = _page(browser)
    try:
        _run_all(page, port, token, "01_where_to_deploy.ipynb")
        ranked = page.locator(".jp-OutputArea-output table.dataframe", has=page.locator("th:text-is('reasons')"))
        ranked.first.wait_for(timeout=240_000)  # the catalog, the model's measurements and the ranking have run
        assert ranked.first.locator("tbody tr").count() >= 3
        advisor_chart = page.locator(
            ".jp-OutputArea .js-plotly-plot", has=page.locator(".legend .traces :text('the requirements')")
        ).first
        advisor_chart.wait_for(timeout=60_000)
        assert advisor_chart.locator(".scatterlayer .trace").count() >= 2
        page.get_by_text("Estimated against measured p50 on this machine").first.wait_for(timeout=60_000)
        assert not page.locator(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] :text('Traceback')"
        ).count()
        advisor_chart.scroll_into_view_if_needed()
        advisor_chart.screenshot(path=str(ARTIFACTS / "lab-advisor-chart.png"))
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "lab-advisor-failure.png"))
        raise
    finally:
        page.close()
        _stop(server)


def test_troubleshooting_chapters_run_in_jupyterlab(site, browser):
    """07: the doctor's sentence, its ranked findings and its side-by-side picture are shown, and the exercise's
    last cell answers; 08: the speed doctor's levers table and the timing of the recommended spec are shown."""
    server, port, token = _lab(site)
    page = _page(browser)
    try:
        _run_all(page, port, token, "07_accuracy_drop.ipynb")
        page.get_by_text("Most likely cause:").first.wait_for(timeout=240_000)
        findings = page.locator(".jp-OutputArea-output table.dataframe", has=page.locator("th:text-is('verdict')"))
        findings.first.wait_for(timeout=60_000)
        assert findings.first.locator("tbody tr:has(td:text-is('cause'))").count() >= 1
        picture = page.locator(".jp-OutputArea-output img").first
        picture.wait_for(timeout=60_000)
        assert picture.evaluate("image => image.naturalWidth") > 100  # reference and deployment side by side
        page.get_by_text("share of the reference's boxes found:").first.wait_for(timeout=120_000)
        page.get_by_text("not yet: read the doctor's fix line above").first.wait_for(timeout=240_000)
        assert not page.locator(NO_TRACEBACK).count()
        page.screenshot(path=str(ARTIFACTS / "lab-07-accuracy-drop.png"), full_page=False)

        _run_all(page, port, token, "08_slow_inference.ipynb")
        page.get_by_text("recommended:").first.wait_for(timeout=300_000)
        levers = page.locator(".jp-OutputArea-output table.dataframe", has=page.locator("th:text-is('check')"))
        assert levers.first.locator("tbody tr").count() >= 2  # warm-up and the levers asked for
        page.get_by_text("the same number of boxes on").first.wait_for(timeout=120_000)  # the fix, timed again
        answer = page.get_by_text("faster by 1.5x or more").or_(page.get_by_text("not yet: read the fix line above"))
        answer.first.wait_for(timeout=300_000)  # the exercise has run to its last cell
        assert not page.locator(NO_TRACEBACK).count()
        page.screenshot(path=str(ARTIFACTS / "lab-08-slow-inference.png"), full_page=False)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "lab-troubleshooting-failure.png"))
        _print_state(page, site / "lab.log")
        raise
    finally:
        page.close()
        _stop(server)


def _measured_workspace(folder: Path) -> None:
    """A workspace with a few measured variants (the demo model in PyTorch, ONNX Runtime, OpenVINO f32 and INT8),
    so the app's chart, and the README's screenshot of it, has several points even when this test runs alone."""
    import workbench as wb

    session = wb.Session.open(folder / "workbench-runs")
    if session.model_id is None:
        wb.open_model(session, wb.ModelChoice(shapes=wb.ShapesConfig(train=8, val=8)))
    workspace, source = session.workspace, session.model_id
    exports = [
        wb.ExportConfig(format="onnx", imgsz=320),
        wb.ExportConfig(format="openvino", imgsz=320),
        wb.ExportConfig(format="openvino", imgsz=320, precision="int8", data=str(session.data_yaml)),
    ]
    exported = [wb.export(workspace, source, config) for config in exports]  # an earlier export is reused
    plan = wb.MeasurePlan(imgsz=(320,), seconds=0.2, stage_images=2)
    wb.measure_variants(session, [source, *exported], plan)


def _tab_titles() -> tuple[str, ...]:
    """The app's tabs, from the widget itself (so the test follows a tab added or renamed)."""
    from workbench.core.services.session import Session
    from workbench.core.store.workspace import Workspace
    from workbench.widgets import Workbench

    with tempfile.TemporaryDirectory() as folder:
        return tuple(Workbench(session=Session(Workspace(Path(folder) / "ws")), background=False).tabs.titles)


def test_voila_app_serves_the_workbench_and_its_chart(site, browser):
    _measured_workspace(site)
    port, token = _free_port(), secrets.token_hex(16)
    command = [*SERVE, "app", f"--port={port}", f"--notebook-dir={site}"]
    server = _serve(command, site, f"http://127.0.0.1:{port}/login", site / "voila.log", token)
    page = _page(browser, LAPTOP)
    try:
        page.goto(f"http://127.0.0.1:{port}/?token={token}", timeout=300_000)
        tab = page.get_by_role("tab", name="Compare")
        tab.wait_for(timeout=300_000)
        assert page.get_by_role("tab").all_inner_texts() == list(_tab_titles())
        tab.click()  # the dashboard builds its figures now, in a visible tab: no Refresh needed
        page.get_by_text("measured rows").wait_for(timeout=60_000)
        page.locator(".js-plotly-plot .scatterlayer .trace").first.wait_for(timeout=120_000)
        assert page.locator(".js-plotly-plot .legend .traces").count() >= 2  # the variant and the Pareto front
        assert page.locator(".js-plotly-plot .scatterlayer .point").count() >= 4  # the four measured variants
        page.wait_for_timeout(1000)  # plotly's transitions settle
        page.screenshot(path=str(ARTIFACTS / "voila-compare.png"))
        # the README's picture: the app on a laptop's screen, scrolled to its workspace line and tabs, the chart in view
        app = "bar => (bar.closest('.widget-tab') || bar).parentElement.scrollIntoView({block: 'start'})"
        page.get_by_role("tablist").first.evaluate(app)
        page.wait_for_timeout(500)
        chart = page.locator(".js-plotly-plot").first.bounding_box()
        assert chart["y"] >= 0 and chart["y"] + chart["height"] <= LAPTOP["height"], chart
        page.screenshot(path=str(README_SCREENSHOT))
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "voila-failure.png"))
        raise
    finally:
        page.close()
        _stop(server)
