"""Real-browser helpers for the UI tests: Debian's Chromium driven by Playwright (sync API, `executable_path`:
`playwright install` downloads nothing here), the UI server started in-process or as the real `mlplat ui`
process, screenshots into docs/ui/ and the browser's own timings.

Chromium is found as `$MLPLAT_CHROMIUM`, else `chromium` (or `chromium-browser`) on PATH; `.ci/run` installs
Debian's `chromium` where none exists. Under CI a missing browser or playwright fails the tests; elsewhere they
are skipped with the reason.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from conftest import REPO, in_ci, require_module

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

    from provisioner.ui.server import UiServer

#: the screenshots the README shows
SHOTS = REPO / "docs" / "ui"
#: no sandbox (containers, root in CI), no GPU, /tmp instead of a small /dev/shm
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1280, "height": 860}
URL_LINE = re.compile(r"(http://127\.0\.0\.1:(\d+)/\?token=([A-Za-z0-9_\-]+))")


def unavailable(reason: str) -> NoReturn:
    """Skip on a developer machine; fail under CI, where the browser tests must run."""
    if in_ci():
        pytest.fail(f"CI must run the browser tests: {reason}", pytrace=False)
    pytest.skip(reason)


def chromium_path() -> str | None:
    given = os.environ.get("MLPLAT_CHROMIUM")
    if given:
        return given if Path(given).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def launched_chromium(headless: bool = True) -> Iterator[Browser]:
    """Playwright's Chromium: Debian's binary, headless. Raises when playwright or the binary is missing."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise FileNotFoundError("no Chromium binary: install Debian's `chromium` (apt-get install chromium) or set "
                                "$MLPLAT_CHROMIUM")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=headless,
                                             timeout=60_000)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module", name="browser")
def browser_fixture() -> Iterator[Browser]:
    """Chromium for a test module (import `browser_fixture, page_fixture` into it: the fixtures `browser`,
    `page`)."""
    require_module("playwright.sync_api", "playwright is part of the test extra (the browser tests drive Chromium)")
    if chromium_path() is None:
        unavailable("no Chromium binary (`chromium` on PATH or $MLPLAT_CHROMIUM): apt-get install chromium")
    with launched_chromium() as browser:
        yield browser


@pytest.fixture(name="page")
def page_fixture(browser: Browser) -> Iterator[Page]:
    """A fresh context (no cookies) and page; waits end after 15 s."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


class Ui:
    """A UI server running in this process (a daemon thread), for one or more stack files."""

    def __init__(self, server: UiServer) -> None:
        self.server = server
        self.base = f"http://127.0.0.1:{server.port}"
        self.token = server.app.token

    @property
    def url(self) -> str:
        return self.server.url

    def page_url(self, name: str, stack: str | None = None, **params: str) -> str:
        from urllib.parse import urlencode

        query = {"stack": stack or self.server.app.keys[0], **params}
        return f"{self.base}/{name}?{urlencode(query)}"

    def open(self, page: Page, name: str, stack: str | None = None, **params: str) -> Any:
        """Load a page as a user does: the first load with the token (its 303 keeps it in a cookie), later ones
        with the cookie alone. Returns the main response (after the redirect)."""
        url = self.page_url(name, stack, **params)
        if not any(c["name"] == "mlplat_ui" for c in page.context.cookies(self.base)):
            url += f"&token={self.token}"
        response = page.goto(url, wait_until="load")
        assert response is not None and response.status == 200, (response and response.status, page.content()[:2000])
        return response


@contextmanager
def ui_server(*stacks: Path) -> Iterator[Ui]:
    """`mlplat ui` in-process: `make_server(UiApp([...]), 0)` on a free port, `serve_forever` in a thread."""
    from provisioner.ui.app import UiApp
    from provisioner.ui.server import make_server

    server = make_server(UiApp(list(stacks)), 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                              name="mlplat-ui-test")
    thread.start()
    try:
        yield Ui(server)
    finally:
        server.shutdown()
        server.server_close()
        server.app.close()
        thread.join(timeout=10)


def mlplat_command() -> list[str]:
    """The console script a user runs (the venv's `mlplat`), else the module."""
    script = Path(sys.executable).with_name("mlplat")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "provisioner.cli"]


class UiProcess:
    """The real `mlplat ui -f STACK --port 0 --no-browser` in a subprocess; `started` is when it was spawned
    (time.perf_counter) and `printed` when its URL line arrived."""

    def __init__(self, *stacks: Path, cwd: Path, timeout: float = 30) -> None:
        args = [*mlplat_command(), "ui", *[a for s in stacks for a in ("-f", str(s))], "--port", "0", "--no-browser"]
        env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.errors: list[str] = []
        # both pipes read all along: a full pipe would block the server
        threading.Thread(target=self._drain, daemon=True).start()
        threading.Thread(target=lambda: self.errors.extend(self.proc.stderr or ()), daemon=True).start()
        deadline = self.started + timeout
        while True:
            left = deadline - time.perf_counter()
            if left <= 0 or (self.proc.poll() is not None and self.lines.empty()):
                code = self.stop()
                raise AssertionError(f"`mlplat ui` printed no URL within {timeout:g} s (exit {code})\n"
                                     f"stdout: {''.join(self.output)}\nstderr: {''.join(self.errors)}")
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            found = URL_LINE.search(line)
            if found:
                self.printed = time.perf_counter()
                self.line = line.strip()
                self.url, self.port, self.token = found.group(1), int(found.group(2)), found.group(3)
                return

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def stop(self, timeout: float = 10) -> int:
        """Ctrl-C (SIGINT), then terminate, then kill: its exit status."""
        for send in (lambda: self.proc.send_signal(signal.SIGINT), self.proc.terminate, self.proc.kill):
            if self.proc.poll() is not None:
                break
            send()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                continue
        return self.proc.wait(timeout)


def screenshot(page: Page, name: str) -> Path:
    """The whole page into docs/ui/NAME (the README's pictures)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def navigation_ms(page: Page) -> float:
    """The last navigation's load time in the browser (Navigation Timing: loadEventEnd - startTime), in ms."""
    return float(page.evaluate("""() => {
        const n = performance.getEntriesByType("navigation")[0];
        return n.loadEventEnd - n.startTime;
    }"""))


def wait_for_reload(page: Page, action: Any, timeout_ms: float = 30_000) -> None:
    """Run `action()` (a click whose handler reloads the page when its request ends) and wait for the new page."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.evaluate("() => { window.__mlplatBeforeReload = true; }")
    action()
    try:
        page.wait_for_function("() => window.__mlplatBeforeReload === undefined && document.readyState === "
                               "'complete'", timeout=timeout_ms)
    except PlaywrightTimeout:
        message = page.locator("#plan-message").all_text_contents()
        raise AssertionError(f"the page did not reload within {timeout_ms / 1000:g} s; it says {message}") from None


def sim_stack_text(n: int, name: str = "ui-big") -> str:
    """A stack of N raw `sim.data` resources (as bench/cli_speed.py writes it): applied in about a second."""
    lines = ["apiVersion: mlplat/v1", "metadata:", f"  name: {name}", "target: sim", "targets:", "  sim:",
             "    store: ':memory:'", "resources:"]
    for i in range(n):
        lines += [f"  - name: r{i}", "    kind: sim.data", f"    inputs: {{input: r{i}}}"]
    return "\n".join(lines) + "\n"
