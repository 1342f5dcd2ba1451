"""A hub user in a real browser: log in, use the Assignments tab, answer an exercise.

Each :class:`Session` is a Chromium context of its own (its own cookies), so two
students and an instructor can be logged in at once, as in a classroom. The steps are
what a user does with the mouse and keyboard; nothing calls nbgrader behind the page.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, FrameLocator, Locator, Page
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
WINDOW = {"width": 1280, "height": 800}
SPAWN_S = 180  # a first server start on a loaded 2-core machine
STEP_MS = 60_000


@dataclass
class Session:
    """One user logged in to the hub, with their JupyterLab open."""

    user: str
    hub_url: str
    context: BrowserContext
    page: Page

    @property
    def server_url(self) -> str:
        return f"{self.hub_url}/user/{self.user}/"

    def screenshot(self, folder: Path, name: str) -> Path:
        path = folder / f"{self.user}-{name}.png"
        self.page.screenshot(path=str(path))
        return path

    def api_token(self) -> str:
        """A new API token of this user (as the hub's token page makes one)."""
        xsrf = next(
            c["value"]
            for c in self.context.cookies()
            if c["name"] == "_xsrf" and c["path"].startswith("/hub")
        )
        reply = self.page.request.post(
            f"{self.hub_url}/hub/api/users/{self.user}/tokens",
            headers={"X-XSRFToken": xsrf},
            data={"note": "hub test", "expires_in": 900},
        )
        assert reply.status == 201, reply.text()
        return reply.json()["token"]

    def nbgrader_menu(self) -> list[str]:
        """The entries of the Nbgrader menu ([] when there is no such menu)."""
        menu = self.page.get_by_role("menuitem", name="Nbgrader", exact=True)
        if not menu.count():
            return []
        menu.click()
        items = self.page.locator(".lm-Menu-content .lm-Menu-itemLabel").all_inner_texts()
        self.page.keyboard.press("Escape")
        return [item.strip() for item in items if item.strip()]

    def side_panels(self) -> list[str]:
        """The titles of the right side bar's panels (e.g. "Create Assignment")."""
        return self.page.locator(".jp-SideBar.jp-mod-right .lm-TabBar-tabLabel").all_inner_texts()

    def formgrader_row(self, lesson: str) -> str:
        """Open Formgrader (Nbgrader menu); the text of ``lesson``'s row in its list."""
        self.page.get_by_role("menuitem", name="Nbgrader", exact=True).click()
        self.page.get_by_role("menuitem", name="Formgrader", exact=True).click()
        rows = self.page.frame_locator("#formgrader iframe").locator("#main-table tr")
        row = rows.filter(has_text=lesson).first
        row.wait_for(timeout=STEP_MS)
        return row.inner_text()

    def assignments(self) -> Locator:
        """Open (or show) the Assignments tab: Nbgrader menu, Assignment List."""
        tab = self.page.get_by_role("tab", name="Assignments")
        if tab.count():
            tab.click()
        else:
            self.page.get_by_role("menuitem", name="Nbgrader", exact=True).click()
            self.page.get_by_role("menuitem", name="Assignment List").click()
        panel = self.page.locator("#nbgrader-assignment-list")
        panel.wait_for(timeout=STEP_MS)
        return panel

    def refresh_assignments(self) -> Locator:
        panel = self.assignments()
        panel.locator("#refresh_assignments_list").click()
        panel.locator("#released_assignments_list_loading").wait_for(
            state="hidden", timeout=STEP_MS
        )
        return panel

    def fetch(self, lesson: str) -> None:
        """Fetch ``lesson`` from the released assignments."""
        panel = self.refresh_assignments()
        row = panel.locator("#released_assignments_list .list_item", has_text=lesson)
        row.get_by_role("button", name="Fetch").click()
        panel.locator(
            "#fetched_assignments_list .assignment-notebooks-link", has_text=lesson
        ).wait_for(timeout=STEP_MS)

    def open_fetched_notebook(self, lesson: str) -> None:
        """Open the fetched lesson's notebook from the Assignments tab."""
        panel = self.assignments()
        panel.locator(".assignment-notebooks-link", has_text=lesson).click()
        panel.locator(f"#nbgrader-mlcourse-{lesson} a", has_text=lesson).click()
        self.page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=STEP_MS)

    def notebook_toolbar(self) -> str:
        return self.page.locator(".jp-NotebookPanel-toolbar").first.inner_text()

    def answer(self, cell_text: str, source: str) -> None:
        """Replace the code of the cell showing ``cell_text`` by ``source``, then save."""
        cell = self.page.locator(".jp-NotebookPanel .jp-CodeCell", has_text=cell_text).first
        cell.locator(".cm-content").click()
        self.page.keyboard.press("Control+A")
        self.page.keyboard.insert_text(source)
        self.page.keyboard.press("Escape")
        # Save until the tab is clean: an edit the editor applies just after a save marks
        # the notebook changed again (seen once in 4 runs), and a learner saves again too.
        dirty = self.page.locator(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty")
        for _ in range(3):
            self.page.keyboard.press("Control+S")
            try:
                dirty.wait_for(state="detached", timeout=STEP_MS // 3)
                return
            except PlaywrightTimeoutError:
                continue
        dirty.wait_for(state="detached", timeout=1_000)  # still unsaved: fail with the log

    def submit(self, lesson: str) -> str:
        """Submit the fetched lesson; returns the submission's timestamp as listed."""
        panel = self.assignments()
        row = panel.locator("#fetched_assignments_list .list_item", has_text=lesson).first
        row.get_by_role("button", name="Submit").click()
        entry = panel.locator("#submitted_assignments_list .nested_list_item").first
        entry.wait_for(timeout=STEP_MS)
        return entry.inner_text().strip()

    def fetch_feedback(self, lesson: str) -> FrameLocator:
        """Fetch the lesson's feedback and open it; returns the page's frame."""
        panel = self.refresh_assignments()
        row = panel.locator("#submitted_assignments_list .list_item", has_text=lesson).first
        row.get_by_role("button", name="Fetch Feedback").click()
        link = panel.locator("#submitted_assignments_list").get_by_text("(view feedback)")
        link.wait_for(timeout=STEP_MS)
        link.click()
        page_item = self.page.locator(".jp-DirListing-item", has_text=f"{lesson}.html")
        page_item.wait_for(timeout=STEP_MS)
        page_item.dblclick()
        frame = self.page.frame_locator(".jp-HTMLViewer iframe")
        frame.locator("body").get_by_text("Score").first.wait_for(timeout=STEP_MS)
        return frame

    def close(self) -> None:
        self.context.close()


def log_in(browser: Browser, hub_url: str, user: str, password: str) -> Session:
    """Log in at the hub's login page and wait for the user's JupyterLab."""
    context = browser.new_context(viewport=WINDOW)
    page = context.new_page()
    page.goto(f"{hub_url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", password)
    page.click("#login_submit")
    page.locator(".jp-LabShell").wait_for(timeout=SPAWN_S * 1000)
    page.locator(".jp-DirListing-content").wait_for(timeout=STEP_MS)
    time.sleep(0.5)  # let the lab settle (menus are built after the shell)
    return Session(user, hub_url, context, page)
