"""What a learner sees: the lessons run in JupyterLab, in a real (headless) browser.

JupyterLab is started with ``course.lab_command`` -- the command line of
``python3 course.py lab``: loopback address, login token -- on a temporary copy of the
repository, so running the lessons never touches the committed notebooks. Headless
Chromium (Debian's ``chromium`` package, driven by Playwright) then does what a learner
does with every lesson that has an explorer widget (a code cell calling ``explorer(``):
open it, clear the outputs, Run All, and check that

* no cell shows an error or anything on stderr,
* every figure is rendered (as many as the committed notebook has, each decoded),
* moving each explorer's first control changes its summary line and its plot.

A screenshot is saved when a check fails; its path is in the failure message.

Chromium is looked for at ``$MLCOURSE_CHROMIUM`` (default ``/usr/bin/chromium``). Without
it the tests are skipped, unless ``MLCOURSE_REQUIRE_BROWSER=1`` (which ``course.py test``
sets where it installed Chromium itself) makes its absence a failure.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import nbformat
import psutil
import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from mlcourse.notebooks import lesson_kernel_environment, lesson_paths

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("MLCOURSE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
# Left out of the server's copy of the repository: environments, caches, run outputs.
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", "venv", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache",
    ".ipynb_checkpoints", "runs", "mlruns", "mlflow.db", ".nbgrader", "node_modules",
    "test-artifacts",
)  # fmt: skip
SERVER_START_S = 90
RUN_ALL_S = 300  # a lesson's lite mode takes 10-30 s here; generous for slow CI machines
WIDGET_UPDATE_S = 60
STDERR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
FIGURE = '.jp-OutputArea-output[data-mime-type="image/png"] img'
EXPLORER = ".mlcourse-explorer"
SUMMARY = ".mlcourse-summary"
PLOT = "img.mlcourse-plot"


def load_course() -> ModuleType:
    """``course.py`` as a module (it sits at the repository root, outside any package)."""
    spec = importlib.util.spec_from_file_location("course", ROOT / "course.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lessons_with_widgets() -> list[Path]:
    """Lessons with a code cell that builds an explorer widget."""
    found = []
    for path in lesson_paths():
        nb = nbformat.read(path, as_version=4)
        if any(c.cell_type == "code" and "explorer(" in c.source for c in nb.cells):
            found.append(path)
    return found


def committed_figures(path: Path) -> int | None:
    """How many PNG figures the committed (lite-mode) notebook shows; ``None`` if it was
    committed without outputs (test_notebooks.py reports that)."""
    nb = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    if not any(cell.execution_count for cell in code):
        return None
    return sum("image/png" in output.get("data", {}) for cell in code for output in cell.outputs)


WIDGET_LESSONS = lessons_with_widgets()


def test_lessons_with_widgets_are_found():
    # Guards the discovery itself: lesson 00 has an explorer, so an empty list is a bug.
    assert "00_setup_and_reproducibility.ipynb" in [p.name for p in WIDGET_LESSONS]


# --- the JupyterLab server ------------------------------------------------------------


class Lab:
    """A running JupyterLab server: its address, token and log."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, token: str, log: Path):
        self.process, self.port, self.token, self.log = process, port, token, log
        self.base = f"http://127.0.0.1:{port}"

    def api(self, method: str, path: str, *, token: bool = True) -> tuple[int, bytes]:
        """Call the REST API; returns (status, body)."""
        request = urllib.request.Request(self.base + path, method=method)
        if token:
            request.add_header("Authorization", f"token {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop_kernels(self) -> None:
        """Shut down every kernel (each lesson's kernel holds torch: ~1 GB)."""
        status, body = self.api("GET", "/api/sessions")
        if status == 200:
            for session in json.loads(body):
                self.api("DELETE", f"/api/sessions/{session['id']}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def copy_course(destination: Path) -> Path:
    """Copy the repository (lessons, lock, data, configs) without environments or caches.

    Lessons read files relative to their folder (``../requirements.lock``), so the copy
    keeps the layout; the kernel still imports the installed ``mlcourse`` package.
    """

    def ignore(directory: str, names: list[str]) -> set[str]:
        ignored = set(NOT_COPIED(directory, names))
        if Path(directory) == ROOT / "benchmarks":
            ignored |= {"results"} & set(names)  # benchmark outputs
        return ignored

    shutil.copytree(ROOT, destination, ignore=ignore)
    return destination


def lab_environment(home: Path) -> dict[str, str]:
    """Server and kernel environment: Jupyter, IPython and matplotlib state in ``home``,
    lessons on the CPU (as everywhere in the test suite)."""
    env = lesson_kernel_environment(os.environ)
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "IPYTHONDIR",
                 "MPLCONFIGDIR"):  # fmt: skip
        env[name] = str(home / name.lower())
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    settings = Path(env["JUPYTER_CONFIG_DIR"]) / "lab" / "user-settings" / "@jupyterlab"
    for plugin, values in {
        # no "news" toast and no update check covering the notebook (and no network)
        "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
        # every cell in the DOM, so every figure is really rendered and can be checked
        "notebook-extension/tracker": {"windowingMode": "none"},
    }.items():
        target = settings / f"{plugin}.jupyterlab-settings"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    return env


@pytest.fixture(scope="module")
def chromium_path() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    message = (
        f"no Chromium at {CHROMIUM}: install Debian/Ubuntu's `chromium` package "
        "(or point MLCOURSE_CHROMIUM at a Chromium/Chrome binary)"
    )
    if os.environ.get("MLCOURSE_REQUIRE_BROWSER") == "1":
        pytest.fail(message + " -- required here (MLCOURSE_REQUIRE_BROWSER=1)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab at a copy of ``notebooks/``, started exactly as ``course.py lab`` does."""
    tmp = tmp_path_factory.mktemp("lab")
    course_copy = copy_course(tmp / "course")
    env = lab_environment(tmp / "home")
    port, token = free_port(), secrets.token_hex(16)
    command = load_course().lab_command(
        sys.executable,
        course_copy / "notebooks",
        ["--no-browser", f"--port={port}", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={token}", "--LabApp.extension_manager=readonly"],
    )  # fmt: skip
    log = tmp / "jupyterlab.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=course_copy, env=env, stdout=out, stderr=out)
    server = Lab(process, port, token, log)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"JupyterLab exited with {process.returncode}:\n{server.log_tail()}")
            with contextlib.suppress(OSError):
                if server.api("GET", "/api/status")[0] == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab not ready in {SERVER_START_S} s:\n{server.log_tail()}")
            time.sleep(0.5)
        yield server
    finally:
        with contextlib.suppress(OSError):
            server.api("POST", "/api/shutdown")
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait(timeout=15)


@pytest.fixture(scope="module")
def browser(chromium_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    home = tmp_path_factory.mktemp("chromium")
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
    }
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium_path), args=CHROMIUM_ARGS, headless=True, env=env
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots of failures go (``$MLCOURSE_ARTIFACTS`` or pytest's temp dir)."""
    folder = os.environ.get("MLCOURSE_ARTIFACTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("browser-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def screenshot_on_failure(page: Page, path: Path, lab: Lab) -> Iterator[None]:
    """Re-raise any failure with a full-page screenshot and the server log attached."""
    try:
        yield
    except BaseException as error:
        with contextlib.suppress(Exception):
            page.screenshot(path=str(path), full_page=True)
            error.add_note(f"screenshot of the page: {path}")
        error.add_note(f"JupyterLab log ({lab.log}), last lines:\n{lab.log_tail(15)}")
        raise


# --- the learner's actions ---------------------------------------------------------------


def open_notebook(page: Page, lab: Lab, name: str, code_cells: int) -> None:
    """Open a lesson in a fresh workspace and wait for its kernel to be idle."""
    workspace = re.sub(r"[^a-z0-9]+", "-", name.lower())
    page.goto(f"{lab.base}/lab/workspaces/{workspace}/tree/{name}?reset&token={lab.token}")
    expect(page.locator(".jp-NotebookPanel .jp-CodeCell")).to_have_count(
        code_cells, timeout=SERVER_START_S * 1000
    )
    expect(page.locator(".jp-StatusBar-TextItem", has_text="| Idle")).to_be_visible(
        timeout=SERVER_START_S * 1000
    )


def menu(page: Page, *labels: str) -> None:
    """Click through the main menu, e.g. ``menu(page, "Run", "Run All Cells")``."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(labels[0])}$")).click()
    for label in labels[1:]:
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(label)}$")).click()


def run_all(page: Page) -> None:
    """Clear every output, Run All, and wait until the last cell ran or one failed."""
    menu(page, "Edit", "Clear Outputs of All Cells")
    expect(page.locator(".jp-NotebookPanel .jp-OutputArea-output")).to_have_count(0)
    menu(page, "Run", "Run All Cells")
    page.wait_for_function(
        """() => {
            const prompts = [...document.querySelectorAll(
                '.jp-NotebookPanel .jp-CodeCell .jp-InputArea-prompt')].map(p => p.textContent);
            const failed = document.querySelector(
                '.jp-NotebookPanel .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"], '
                + '.jp-NotebookPanel .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]');
            const idle = document.querySelector('.jp-Notebook-ExecutionIndicator')
                ?.getAttribute('data-status') === 'idle';
            const running = prompts.some(p => p.includes('*'));
            return idle && !running && (failed || prompts.every(p => /^\\[\\d+\\]:$/.test(p.trim())));
        }""",
        timeout=RUN_ALL_S * 1000,
        polling=500,
    )


def assert_no_errors(page: Page) -> None:
    errors = page.locator(STDERR).all_inner_texts()
    errors += page.locator(
        '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"]'
    ).all_inner_texts()
    assert not errors, "cells showed errors or stderr output:\n" + "\n---\n".join(
        e[-2000:] for e in errors
    )
    unrendered = page.get_by_text("Error displaying widget").count()
    assert unrendered == 0, f"{unrendered} widget(s) failed to render ('Error displaying widget')"


def assert_figures_rendered(page: Page, expected: int | None) -> None:
    """Every figure decodes, and there are as many as in the committed notebook."""
    figures = page.locator(f".jp-NotebookPanel {FIGURE}")
    if expected is not None:
        expect(figures).to_have_count(expected)
    widths = figures.evaluate_all("imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
    assert all(w > 0 for w in widths), f"figures not decoded (naturalWidth per figure: {widths})"


def move_first_control(explorer: Locator) -> str:
    """Move the explorer's first control as a learner would; returns what was done."""
    control = explorer.locator(":scope > .widget-hbox > *").first
    slider = control.get_by_role("slider")
    if slider.count():
        handle = slider.first
        now, top = handle.get_attribute("aria-valuenow"), handle.get_attribute("aria-valuemax")
        key = "ArrowLeft" if now is not None and now == top else "ArrowRight"
        handle.focus()
        handle.press(key)
        return f"slider {key} from {now}"
    select = control.locator("select")
    if select.count():
        current = select.first.input_value()
        options = select.first.locator("option").evaluate_all("os => os.map(o => o.value)")
        other = next((o for o in options if o != current), None)
        assert other is not None, f"the first control is a dropdown with one option ({options})"
        select.first.select_option(other)
        return f"dropdown {current!r} -> {other!r}"
    checkbox = control.locator("input[type=checkbox]")
    if checkbox.count():
        checkbox.first.click()
        return "checkbox toggled"
    buttons = control.locator("button:not(.mod-active)")
    if buttons.count():
        buttons.first.click()
        return "toggle button clicked"
    raise AssertionError(
        "the explorer's first control is not a slider, dropdown, checkbox or toggle buttons "
        f"(HTML: {control.inner_html()[:300]}); teach tests/test_browser.py to move it"
    )


def decoded_width(img: Locator) -> int:
    """The image's natural width once loaded; 0 if it is empty or cannot be decoded."""
    img.evaluate("i => i.decode().catch(() => null)")
    return img.evaluate("i => i.complete ? i.naturalWidth : 0")


def check_explorer(explorer: Locator) -> None:
    summary, plot = explorer.locator(SUMMARY), explorer.locator(PLOT)
    expect(summary).to_have_count(1)
    expect(plot).to_have_count(1)
    expect(summary).not_to_have_text("")
    before_text, before_src = summary.inner_text(), plot.get_attribute("src")
    assert before_src and decoded_width(plot) > 0, "the explorer shows no plot"
    action = move_first_control(explorer)
    timeout = WIDGET_UPDATE_S * 1000
    try:
        expect(summary).not_to_have_text(before_text, timeout=timeout)
        expect(plot).not_to_have_attribute("src", before_src, timeout=timeout)
    except AssertionError as error:
        error.add_note(f"after: {action}; summary before: {before_text!r}")
        raise
    expect(summary).not_to_have_text("")
    assert decoded_width(plot) > 0, "the explorer's new plot is not a decodable image"


# --- the tests ------------------------------------------------------------------------


def test_lab_serves_loopback_with_a_token(lab: Lab):
    status, _ = lab.api("GET", "/api/status", token=False)
    assert status == 403, f"the server answered {status} without the token"
    assert lab.api("GET", "/api/status")[0] == 200
    listening = {
        c.laddr.ip
        for c in psutil.Process(lab.process.pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }
    assert listening == {"127.0.0.1"}, f"JupyterLab listens on {sorted(listening)}"


@pytest.mark.parametrize("path", WIDGET_LESSONS, ids=[p.stem for p in WIDGET_LESSONS])
def test_lesson_runs_and_its_widgets_respond(
    path: Path, lab: Lab, browser: Browser, artifacts: Path
):
    nb = nbformat.read(path, as_version=4)
    code_cells = sum(c.cell_type == "code" for c in nb.cells)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        with screenshot_on_failure(page, artifacts / f"{path.stem}.png", lab):
            open_notebook(page, lab, path.name, code_cells)
            run_all(page)
            assert_no_errors(page)
            assert_figures_rendered(page, committed_figures(path))
            explorers = page.locator(f".jp-NotebookPanel {EXPLORER}")
            expect(explorers.first).to_be_visible()
            for index in range(explorers.count()):
                explorers.nth(index).scroll_into_view_if_needed()
                check_explorer(explorers.nth(index))
    finally:
        context.close()
        lab.stop_kernels()
