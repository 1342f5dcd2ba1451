"""What a learner sees: the course's JupyterLab, in a real (headless) browser.

JupyterLab is started with ``course.lab_command`` -- the command line of
``python3 course.py lab``, i.e. ``python -m mlcourse.lab`` -- on a temporary copy of the
repository, so nothing a test does touches the committed notebooks. Headless Chromium
(Debian's ``chromium`` package, driven by Playwright), in a 1280x800 window, then checks:

* the start page opens first, with every lesson's name in full in the file browser, and
  no nbgrader tool, news pop-up or nbgrader warning anywhere (learner mode);
* a learner opens every lesson of ``my-work/`` in turn, runs it all and closes it: no cell
  fails or writes to stderr, every figure renders, no formula shows a MathJax error, every
  explorer's image is shown at no more than its natural size and the explorer fits the
  window, moving its first control redraws it, closing the tab shuts its kernel down,
  and the server plus kernels stay under 2 GB all along; the repository's notebooks are
  unchanged afterwards (the learner's saves went to ``my-work/``);
* a kernel started by this JupyterLab reports the course's numerics pins;
* a wrong exercise answer in a student copy shows the short check report, without
  traceback frames from ``mlcourse``;
* instructor mode (``--instructor``) does show nbgrader's menu and Formgrader.

Screenshots are saved as artifacts (``$MLCOURSE_ARTIFACTS``, or ``browser-artifacts`` in
pytest's temporary folder), with ``measurements.json``: time to the first result, peak
memory, explorer image sizes. A failure adds a screenshot and the server log's end.

Chromium is looked for at ``$MLCOURSE_CHROMIUM`` (default ``/usr/bin/chromium``). Without
it the tests are skipped, unless ``MLCOURSE_REQUIRE_BROWSER=1`` (which ``course.py test``
sets where it installed Chromium itself) makes its absence a failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import nbformat
import psutil
import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from mlcourse.lab_settings import NBGRADER_LAB_EXTENSION
from mlcourse.notebooks import lesson_kernel_environment, lesson_paths
from mlcourse.numerics import PIN_VARIABLES

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
# What running the course writes at the repository's top level: a learner's work, the
# launcher's settings, an instructor's course folder.
NOT_COPIED_AT_TOP = {"my-work", ".mlcourse-lab", "course"}
WINDOW = {"width": 1280, "height": 800}  # the window the explorers must fit
MEMORY_LIMIT_BYTES = 2_000_000_000  # Binder's limit is about 2 GB (checked on the PSS sum)
SERVER_START_S = 90
RUN_ALL_S = 300  # a lesson's lite mode takes 10-30 s here; generous for slow CI machines
WIDGET_UPDATE_S = 60
KERNEL_SHUTDOWN_S = 30
STDERR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
ERROR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"]'
FIGURE = '.jp-OutputArea-output[data-mime-type="image/png"] img'
EXPLORER = ".mlcourse-explorer"
SUMMARY = ".mlcourse-summary"
PLOT = "img.mlcourse-plot"
NOTEBOOK_SCROLLER = ".jp-NotebookPanel .jp-WindowedPanel-outer"


def load_course() -> ModuleType:
    """``course.py`` as a module (it sits at the repository root, outside any package)."""
    spec = importlib.util.spec_from_file_location("course", ROOT / "course.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def committed_figures(path: Path) -> int | None:
    """How many PNG figures the committed (lite-mode) notebook shows; ``None`` if it was
    committed without outputs (test_notebooks.py reports that)."""
    nb = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    if not any(cell.execution_count for cell in code):
        return None
    return sum("image/png" in output.get("data", {}) for cell in code for output in cell.outputs)


LESSONS = lesson_paths()
MEASUREMENTS: dict[str, Any] = {"window": WINDOW, "explorer_images": {}, "lessons": {}}


# --- the JupyterLab server ------------------------------------------------------------


class Lab:
    """A running JupyterLab server: its address, token, log and files."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, token: str, log: Path,
                 course: Path, ready_s: float):  # fmt: skip
        self.process, self.port, self.token, self.log = process, port, token, log
        self.course, self.work, self.ready_s = course, course / "my-work", ready_s
        self.base = f"http://127.0.0.1:{port}"

    def api(self, method: str, path: str, body: Any = None, *, token: bool = True):
        """Call the REST API; returns (status, body)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if token:
            request.add_header("Authorization", f"token {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def kernels(self) -> list[dict[str, Any]]:
        status, body = self.api("GET", "/api/kernels")
        assert status == 200, body
        return json.loads(body)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop_kernels(self) -> None:
        """Shut down every session's kernel (each lesson's kernel holds torch: ~1 GB)."""
        status, body = self.api("GET", "/api/sessions")
        if status == 200:
            for session in json.loads(body):
                self.api("DELETE", f"/api/sessions/{session['id']}")

    def url(self, path: str) -> str:
        return f"{self.base}{path}{'&' if '?' in path else '?'}token={self.token}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def copy_course(destination: Path) -> Path:
    """Copy the repository (lessons, start page, data, configs) without environments,
    caches or a learner's work; the kernels still import the installed ``mlcourse``."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        ignored = set(NOT_COPIED(directory, names))
        if Path(directory) == ROOT:
            ignored |= NOT_COPIED_AT_TOP & set(names)
        if Path(directory) == ROOT / "benchmarks":
            ignored |= {"results"} & set(names)  # benchmark outputs
        return ignored

    shutil.copytree(ROOT, destination, ignore=ignore)
    return destination


def jupyter_home(home: Path) -> dict[str, str]:
    """The server's environment: Jupyter, IPython and matplotlib state in ``home``.

    The one setting made here is test mechanics: every cell in the DOM (no windowing),
    so every figure and formula is really rendered and can be checked. Everything a
    learner sees comes from the course's launcher.
    """
    env = dict(os.environ)
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "IPYTHONDIR",
                 "MPLCONFIGDIR"):  # fmt: skip
        env[name] = str(home / name.lower())
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    env.pop("JUPYTER_CONFIG_PATH", None)
    settings = Path(env["JUPYTER_CONFIG_DIR"]) / "lab" / "user-settings" / "@jupyterlab"
    target = settings / "notebook-extension" / "tracker.jupyterlab-settings"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"windowingMode": "none"}))
    return env


@contextlib.contextmanager
def running_lab(tmp: Path, *args: str) -> Iterator[Lab]:
    """The course's JupyterLab on a fresh copy of the repository, as ``course.py lab ARGS``."""
    course = copy_course(tmp / "course")
    env = jupyter_home(tmp / "home")
    port, token = free_port(), secrets.token_hex(16)
    command = load_course().lab_command(
        sys.executable,
        [*args, f"--project={course}", "--no-browser", f"--port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
         "--LabApp.extension_manager=readonly"],
    )  # fmt: skip
    log = tmp / "jupyterlab.log"
    start = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=course, env=env, stdout=out, stderr=out)
    server = Lab(process, port, token, log, course, ready_s=0.0)
    try:
        deadline = start + SERVER_START_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"JupyterLab exited with {process.returncode}:\n{server.log_tail()}")
            with contextlib.suppress(OSError):
                if server.api("GET", "/api/status")[0] == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab not ready in {SERVER_START_S} s:\n{server.log_tail()}")
            time.sleep(0.2)
        server.ready_s = time.monotonic() - start
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
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The learner's JupyterLab (the default mode of ``course.py lab``)."""
    with running_lab(tmp_path_factory.mktemp("learner")) as server:
        yield server


class MemorySampler:
    """Samples the memory of a process and all its descendants, in a thread.

    Two sums: resident memory (RSS, which counts the shared libraries of every torch
    process again: an upper bound) and proportional memory (PSS: shared pages split
    between the processes sharing them, what they really take together). Peaks are kept
    per ``phase`` (e.g. the lesson open at the time).
    """

    def __init__(self, pid: int, interval_s: float = 0.2) -> None:
        self.process, self.interval_s = psutil.Process(pid), interval_s
        self.phase, self.samples = "", 0
        self.peaks: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def peak(self, kind: str) -> int:
        """The highest ``"rss"`` or ``"pss"`` sum over all phases, in bytes."""
        return max((p[kind] for p in self.peaks.values()), default=0)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, pss, processes = 0, 0, []
            for process in [self.process, *self.process.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    memory = process.memory_full_info()
                    rss, pss = rss + memory.rss, pss + memory.pss
                    processes.append(f"{process.name()} {memory.pss / 1e6:.0f} MB")
            peak = self.peaks.setdefault(self.phase, {"rss": 0, "pss": 0, "processes": []})
            if pss > peak["pss"]:
                peak.update(pss=pss, processes=processes)
            peak["rss"] = max(peak["rss"], rss)
            self.samples += 1
            self._stop.wait(self.interval_s)


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
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where screenshots and measurements go (``$MLCOURSE_ARTIFACTS`` or pytest's temp dir)."""
    folder = os.environ.get("MLCOURSE_ARTIFACTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("browser-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    yield path
    (path / "measurements.json").write_text(json.dumps(MEASUREMENTS, indent=2) + "\n")


@contextlib.contextmanager
def learner_page(browser: Browser, lab: Lab, shot: Path) -> Iterator[Page]:
    """A fresh 1280x800 browser page; on failure a screenshot and the server log are
    attached to the error, and on success the screenshot is kept as an artifact."""
    context = browser.new_context(viewport=WINDOW)
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
        page.screenshot(path=str(shot))
    except BaseException as error:
        with contextlib.suppress(Exception):
            page.screenshot(path=str(shot.with_suffix(".failed.png")), full_page=True)
            error.add_note(f"screenshot of the page: {shot.with_suffix('.failed.png')}")
        error.add_note(f"JupyterLab log ({lab.log}), last lines:\n{lab.log_tail(15)}")
        raise
    finally:
        context.close()
        lab.stop_kernels()  # after a failure too: the next test starts with none


# --- the learner's actions ---------------------------------------------------------------


def open_notebook(page: Page, lab: Lab, name: str) -> None:
    """Open a notebook of ``my-work/`` and wait for its kernel: a double click in the file
    browser when it lists the notebook, else by its address."""
    nb = nbformat.read(lab.work / name, as_version=4)
    code_cells = sum(c.cell_type == "code" for c in nb.cells)
    item = page.locator(".jp-DirListing-itemText", has_text=re.compile(f"^{re.escape(name)}$"))
    if "/lab" in page.url and item.count() == 1:
        item.dblclick()
    else:  # a fresh layout: no tab a failed test left open comes back
        page.goto(lab.url(f"/lab/tree/{name}?reset"))
    panel = page.locator(".jp-NotebookPanel:visible")
    expect(panel.locator(".jp-CodeCell")).to_have_count(code_cells, timeout=SERVER_START_S * 1000)
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
    expect(page.locator(".jp-NotebookPanel:visible .jp-OutputArea-output")).to_have_count(0)
    menu(page, "Run", "Run All Cells")
    page.wait_for_function(
        """() => {
            const panel = [...document.querySelectorAll('.jp-NotebookPanel')]
                .find(p => p.offsetParent !== null);
            const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
                .map(p => p.textContent);
            const failed = panel.querySelector(
                '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"], '
                + '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]');
            const idle = panel.querySelector('.jp-Notebook-ExecutionIndicator')
                ?.getAttribute('data-status') === 'idle';
            const running = prompts.some(p => p.includes('*'));
            return idle && !running && (failed || prompts.every(p => /^\\[\\d+\\]:$/.test(p.trim())));
        }""",
        timeout=RUN_ALL_S * 1000,
        polling=500,
    )


def close_notebook(page: Page, lab: Lab) -> None:
    """Close the current tab as a learner does (saving it), and wait for its kernel to stop."""
    page.locator(
        ".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabCloseIcon"
    ).click()
    save = page.locator(".jp-Dialog button", has_text=re.compile("^Save$"))
    with contextlib.suppress(Exception):
        save.click(timeout=3000)
    expect(page.locator(".jp-NotebookPanel:visible")).to_have_count(0)
    deadline = time.monotonic() + KERNEL_SHUTDOWN_S
    while lab.kernels():
        assert time.monotonic() < deadline, (
            f"the kernel of a closed notebook still runs after {KERNEL_SHUTDOWN_S} s: "
            f"{lab.kernels()}"
        )
        time.sleep(0.5)


def assert_no_errors(page: Page) -> None:
    errors = page.locator(f".jp-NotebookPanel:visible {STDERR}").all_inner_texts()
    errors += page.locator(f".jp-NotebookPanel:visible {ERROR}").all_inner_texts()
    assert not errors, "cells showed errors or stderr output:\n" + "\n---\n".join(
        e[-2000:] for e in errors
    )
    unrendered = page.get_by_text("Error displaying widget").count()
    assert unrendered == 0, f"{unrendered} widget(s) failed to render ('Error displaying widget')"


def assert_figures_rendered(page: Page, expected: int | None) -> None:
    """Every figure decodes, and there are as many as in the committed notebook."""
    figures = page.locator(f".jp-NotebookPanel:visible {FIGURE}")
    if expected is not None:
        expect(figures).to_have_count(expected)
    widths = figures.evaluate_all("imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
    assert all(w > 0 for w in widths), f"figures not decoded (naturalWidth per figure: {widths})"


def assert_formulas_typeset(page: Page, path: Path) -> None:
    """Every formula is typeset by MathJax, and none shows a MathJax error."""
    nb = nbformat.read(path, as_version=4)
    has_math = any(c.cell_type == "markdown" and "$" in c.source for c in nb.cells)
    panel = page.locator(".jp-NotebookPanel:visible")
    if has_math:  # the check below has teeth only if MathJax ran at all
        expect(panel.locator("mjx-container").first).to_be_attached(timeout=30_000)
    broken = panel.locator("mjx-merror")
    texts = broken.evaluate_all(
        "es => es.map(e => e.getAttribute('data-mjx-error') || e.textContent)"
    )
    assert not texts, f"MathJax could not typeset {len(texts)} formula(s): {texts}"


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


def image_size(img: Locator) -> dict[str, float]:
    """The image's natural and shown sizes (0 natural size: empty or not decodable)."""
    img.evaluate("i => i.decode().catch(() => null)")
    return img.evaluate(
        """i => ({natural_width: i.complete ? i.naturalWidth : 0,
                  natural_height: i.complete ? i.naturalHeight : 0,
                  shown_width: i.getBoundingClientRect().width,
                  shown_height: i.getBoundingClientRect().height,
                  pixel_ratio: window.devicePixelRatio})"""
    )


def assert_explorer_fits(page: Page, explorer: Locator, label: str) -> dict[str, float]:
    """The explorer's image is not upscaled, and the explorer (controls, summary and image)
    fits in the notebook's visible area."""
    size = image_size(explorer.locator(PLOT))
    assert size["natural_width"] > 0, f"{label}: the explorer shows no plot"
    assert size["shown_width"] <= size["natural_width"] + 0.5, f"{label}: image upscaled: {size}"
    assert size["shown_height"] <= size["natural_height"] + 0.5, f"{label}: image upscaled: {size}"
    box = explorer.bounding_box()
    view = page.locator(NOTEBOOK_SCROLLER).bounding_box()
    assert box is not None and view is not None
    assert box["height"] <= view["height"], (
        f"{label}: the explorer is {box['height']:.0f} px tall, the notebook shows "
        f"{view['height']:.0f} px of a {WINDOW['height']} px window"
    )
    assert box["width"] <= view["width"], f"{label}: explorer {box} wider than notebook {view}"
    return {**size, "explorer_height": box["height"], "visible_height": view["height"]}


def check_explorer(explorer: Locator) -> None:
    summary, plot = explorer.locator(SUMMARY), explorer.locator(PLOT)
    expect(summary).to_have_count(1)
    expect(plot).to_have_count(1)
    expect(summary).not_to_have_text("")
    before_text, before_src = summary.inner_text(), plot.get_attribute("src")
    action = move_first_control(explorer)
    timeout = WIDGET_UPDATE_S * 1000
    try:
        expect(summary).not_to_have_text(before_text, timeout=timeout)
        expect(plot).not_to_have_attribute("src", before_src, timeout=timeout)
    except AssertionError as error:
        error.add_note(f"after: {action}; summary before: {before_text!r}")
        raise
    expect(summary).not_to_have_text("")
    assert image_size(plot)["natural_width"] > 0, "the explorer's new plot does not decode"


def notebook_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


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


def test_start_page_opens_first_without_nbgrader_or_news(
    lab: Lab, browser: Browser, artifacts: Path
):
    with learner_page(browser, lab, artifacts / "start-page.png") as page:
        page.goto(lab.url("/"))  # what `course.py lab` opens
        page.wait_for_url(re.compile(r"/lab/tree/START\.md"))
        heading = page.locator(".jp-RenderedMarkdown h1").first  # rendered, not the source
        expect(heading).to_be_visible(timeout=SERVER_START_S * 1000)
        links = page.locator(".jp-RenderedMarkdown a[href*='.ipynb']")
        lesson_names = [p.name for p in LESSONS]
        hrefs = links.evaluate_all("as => as.map(a => decodeURI(a.getAttribute('href')))")
        shown = {href.split("?")[0].rsplit("/", 1)[-1] for href in hrefs}
        assert set(lesson_names) <= shown, f"the start page links {sorted(hrefs)}"
        # the file browser shows my-work/, every lesson name in full
        names = page.locator(".jp-DirListing-itemText")
        expect(names.filter(has_text=lesson_names[-1])).to_be_visible()
        cut = names.evaluate_all(
            "es => es.filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent)"
        )
        assert not cut, f"names cut off in the file browser: {cut}"
        # no nbgrader anywhere, and no news pop-up
        page.wait_for_timeout(1500)  # the news question would show by now
        menus = page.locator(".lm-MenuBar-itemLabel").all_inner_texts()
        assert not [m for m in menus if "nbgrader" in m.lower()], f"menu bar: {menus}"
        tabs = page.locator(".jp-SideBar .lm-TabBar-tab").evaluate_all(
            "ts => ts.map(t => (t.getAttribute('title') || '') + ' ' + t.textContent)"
        )
        assert not [t for t in tabs if re.search("assignment|nbgrader", t, re.I)], tabs
        toasts = page.locator(".Toastify__toast").all_inner_texts()
        assert not toasts, f"notifications shown: {toasts}"
        page_config = page.evaluate(
            "() => JSON.parse(document.getElementById('jupyter-config-data').textContent)"
        )
        assert NBGRADER_LAB_EXTENSION in page_config["disabledExtensions"]
    assert lab.api("GET", "/formgrader")[0] == 404
    assert "nbgrader" not in lab.log_text().lower(), "nbgrader ran in learner mode"


def check_lesson(page: Page, path: Path, artifacts: Path, opened_at: float) -> None:
    """Run a lesson (opened at ``opened_at``) and check what the learner sees."""
    toolbar = page.locator(".jp-NotebookPanel:visible .jp-NotebookPanel-toolbar")
    expect(toolbar.get_by_text("Validate")).to_have_count(0)
    run_all(page)
    MEASUREMENTS["lessons"][path.stem] = {"open_to_done_s": time.monotonic() - opened_at}
    assert_no_errors(page)
    assert_figures_rendered(page, committed_figures(path))
    assert_formulas_typeset(page, path)
    explorers = page.locator(f".jp-NotebookPanel:visible {EXPLORER}")
    for index in range(explorers.count()):
        explorer, label = explorers.nth(index), f"{path.stem} explorer {index + 1}"
        explorer.scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts / f"{path.stem}-explorer-{index + 1}.png"))
        MEASUREMENTS["explorer_images"][label] = assert_explorer_fits(page, explorer, label)
        check_explorer(explorer)


def test_a_learner_works_through_every_lesson_within_2_gb(
    lab: Lab, browser: Browser, artifacts: Path
):
    """Lessons 00 to 06 one after another in one session, each opened from the file
    browser, run, checked and closed; every lesson's problems are reported together."""
    repository = notebook_hashes(lab.course / "notebooks")
    problems = []
    with (
        MemorySampler(lab.process.pid) as memory,
        learner_page(browser, lab, artifacts / "last-lesson.png") as page,
    ):
        for number, path in enumerate(LESSONS):
            start, memory.phase = time.monotonic(), path.stem
            if number == 0:
                page.goto(lab.url("/lab/tree/START.md?reset"))  # my-work/ in the file browser
                expect(page.locator(".jp-DirListing-itemText").first).to_be_visible(
                    timeout=SERVER_START_S * 1000
                )
            open_notebook(page, lab, path.name)
            try:
                check_lesson(page, path, artifacts, opened_at=start)
            except AssertionError as error:
                page.screenshot(path=str(artifacts / f"{path.stem}.failed.png"), full_page=True)
                problems.append(f"{path.stem}: {error}")
            close_notebook(page, lab)
    first = MEASUREMENTS["lessons"].get(LESSONS[0].stem, {}).get("open_to_done_s", float("nan"))
    MEASUREMENTS.update(
        server_ready_s=lab.ready_s,
        first_result_s=lab.ready_s + first,
        peak_pss_bytes=memory.peak("pss"),
        peak_rss_bytes=memory.peak("rss"),
        memory_by_lesson=memory.peaks,
        memory_samples=memory.samples,
    )
    assert memory.samples > 10
    if memory.peak("pss") >= MEMORY_LIMIT_BYTES:
        problems.append(
            f"server and kernels peaked at {memory.peak('pss') / 1e9:.2f} GB (PSS): {memory.peaks}"
        )
    if notebook_hashes(lab.course / "notebooks") != repository:
        problems.append("the learner's session changed the repository's notebooks")
    assert not problems, "\n\n".join(problems)


def test_kernels_get_the_course_numerics_pins(lab: Lab, browser: Browser, artifacts: Path):
    code = (
        "import json\nfrom mlcourse.numerics import numerics_fingerprint\n"
        "fp = numerics_fingerprint()\n"
        "print(json.dumps({'pins': fp['pins'], 'capability': fp['torch']['capability']}))"
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}  # fmt: skip
    (lab.work / "pins.ipynb").write_text(nbformat.writes(nb))
    expected = lesson_kernel_environment(os.environ)
    with learner_page(browser, lab, artifacts / "pins.png") as page:
        open_notebook(page, lab, "pins.ipynb")
        run_all(page)
        assert_no_errors(page)
        text = page.locator(".jp-NotebookPanel:visible .jp-OutputArea-output").first.inner_text()
        close_notebook(page, lab)
    reported = json.loads(text)
    assert reported["pins"] == {name: expected.get(name) for name in PIN_VARIABLES}
    wanted = expected.get("ATEN_CPU_CAPABILITY")
    if wanted:
        assert reported["capability"].lower() == wanted.lower(), reported


def wrong_answer_copy(lab: Lab) -> tuple[str, str]:
    """A student copy whose first exercise holds a plausible wrong answer (from the lesson's
    test module); returns its path in ``my-work/`` and the exercise's id."""
    for path in lesson_paths(lab.work / "student"):
        module = ROOT / "tests" / f"test_lesson_{path.stem}.py"
        spec = importlib.util.spec_from_file_location(f"wrong_answers_{path.stem}", module)
        if spec is None or spec.loader is None:
            continue
        tests = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(ROOT / "tests"))
        try:
            spec.loader.exec_module(tests)
        finally:
            sys.path.remove(str(ROOT / "tests"))
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            answers = getattr(tests, "WRONG_ANSWERS", {}).get(grade_id, [])
            answers = [a for a in answers if "NotImplementedError" not in a]
            stub = re.search(r"^( *)raise NotImplementedError\(\)$", cell.source, re.M)
            if answers and stub and not answers[0].lstrip().startswith("def "):
                body = "".join(f"{stub.group(1)}{line}\n" for line in answers[0].splitlines())
                cell.source = cell.source[: stub.start()] + body + cell.source[stub.end() + 1 :]
                name = f"student/{path.stem}-wrong.ipynb"
                (lab.work / name).write_text(nbformat.writes(nb))
                return name, grade_id
    pytest.fail("no student copy with a WRONG_ANSWERS body for its first exercise was found")


def test_a_wrong_answer_gets_a_short_report_without_library_frames(
    lab: Lab, browser: Browser, artifacts: Path
):
    name, grade_id = wrong_answer_copy(lab)
    with learner_page(browser, lab, artifacts / "wrong-answer.png") as page:
        open_notebook(page, lab, name)
        run_all(page)
        errors = page.locator(f".jp-NotebookPanel:visible :is({ERROR}, {STDERR})")
        expect(errors).to_have_count(1)
        errors.first.scroll_into_view_if_needed()
        report = errors.first.inner_text()
        page.screenshot(path=str(artifacts / "wrong-answer-report.png"))
        close_notebook(page, lab)
    assert report.startswith("Check failed"), f"{grade_id}: not the check's report:\n{report}"
    assert "expected" in report and "got" in report, report
    assert "Traceback" not in report and "mlcourse" not in report and 'File "' not in report, report
    assert len(report.strip().splitlines()) <= 8, f"a long report:\n{report}"


@pytest.fixture(scope="module")
def instructor_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """``course.py lab --instructor`` on another copy of the repository."""
    with running_lab(tmp_path_factory.mktemp("instructor"), "--instructor") as server:
        yield server


def test_instructor_mode_has_nbgrader(instructor_lab: Lab, browser: Browser, artifacts: Path):
    lab = instructor_lab
    with learner_page(browser, lab, artifacts / "instructor.png") as page:
        page.goto(lab.url("/lab"))
        nbgrader = page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader")
        expect(nbgrader).to_be_visible(timeout=SERVER_START_S * 1000)
        nbgrader.click()
        items = page.locator(".lm-Menu-itemLabel").all_inner_texts()
        assert any("Formgrader" in i for i in items), items
    assert lab.api("GET", "/formgrader")[0] in (200, 302)
    assert "No nbgrader_config.py" not in lab.log_text(), lab.log_tail()
