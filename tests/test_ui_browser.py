"""`mlplat ui` in a real browser (Playwright driving Debian's Chromium): the quickstart applied on the local target,
then its pages as a user sees them — the platform graph, a weight edit's diff on the Plan page, an apply from the
page with live progress, the observed split after traffic, a killed model server failed then healed, the token
refused — with screenshots for the README (docs/ui/). Also the start-up of the real `mlplat ui` process and the
load time of a 1,000-resource platform page, measured in the browser and printed (bench/ui_speed.py is the
benchmark)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from conftest import STACKS, run_mlplat
from ui_browser import (
    Ui,
    UiProcess,
    browser_fixture,  # noqa: F401 (the fixture `browser`)
    navigation_ms,
    page_fixture,  # noqa: F401 (the fixture `page`)
    screenshot,
    sim_stack_text,
    ui_server,
    wait_for_reload,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.slow

#: the quickstart's nine resources
QUICKSTART = {
    "train.gpu_pool.cpu", "shared.directory.main", "models.registry.main", "models.image_repository.iris-server",
    "models.model_version.iris:1", "models.model_version.iris:2", "iris.model_server.production",
    "iris.model_server.experimental", "iris.router.main",
}
ROUTER = "iris.router.main"
BODY = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}).encode()


class Quickstart:
    def __init__(self, root: Path) -> None:
        self.root, self.stack = root, root / "quickstart.yaml"

    def cli(self, *args: str, check: bool = True) -> str:
        return run_mlplat(*args, "-f", str(self.stack), cwd=self.root, check=check).stdout

    def record(self, address: str) -> dict:
        return json.loads(self.cli("state", "show", address))

    def set_weights(self, production: int, experimental: int) -> None:
        text = re.sub(r'production: \{model: "iris:1", weight: \d+\}',
                      f'production: {{model: "iris:1", weight: {production}}}', self.stack.read_text())
        text = re.sub(r'experimental: \{model: "iris:2", weight: \d+\}',
                      f'experimental: {{model: "iris:2", weight: {experimental}}}', text)
        self.stack.write_text(text)


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Quickstart]:
    """stacks/quickstart.yaml applied with the CLI (local target) for the whole module; destroyed at its end."""
    root = tmp_path_factory.mktemp("ui-quickstart")
    shutil.copy(STACKS / "quickstart.yaml", root / "quickstart.yaml")
    shutil.copytree(STACKS / "models", root / "models")
    qs = Quickstart(root)
    try:
        qs.cli("apply", "--yes")
        yield qs
    finally:
        qs.cli("destroy", "--yes", check=False)


@pytest.fixture(scope="module")
def ui(quickstart: Quickstart) -> Iterator[Ui]:
    with ui_server(quickstart.stack) as server:
        yield server


def chips(page: Page) -> dict[str, str]:
    """The Platform page's resources: address -> status."""
    return page.eval_on_selector_all("a.res[data-address]",
                                     "els => Object.fromEntries(els.map(e => [e.dataset.address, e.dataset.status]))")


def open_until(ui: Ui, page: Page, name: str, done: Callable[[], bool], timeout: float = 15, **params: str) -> None:
    """Load the page again (a user's reload) until `done()` holds."""
    from playwright.sync_api import Error

    deadline = time.monotonic() + timeout
    while True:
        ui.open(page, name, **params)
        try:
            if done():
                return
        except Error:  # the page reloaded itself meanwhile (auto-refresh): load it again
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} page: condition not met within {timeout:g} s")
        time.sleep(0.5)


def invoke(url: str) -> str:
    req = urllib.request.Request(url + "/invocations", data=BODY, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()
        return resp.headers["X-Mlplat-Path"]


# --- scenarios, in order: the module's quickstart goes through them -----------------------------------------


def test_platform_page_shows_the_nine_resources_in_sync(ui: Ui, page: Page) -> None:
    ui.open(page, "platform")
    assert "token=" not in page.url  # the token went into a cookie, out of the address bar
    assert chips(page) == dict.fromkeys(QUICKSTART, "in-sync")
    assert page.get_attribute("#counts", "data-total") == "9"
    shot = screenshot(page, "platform.png")
    print(f"\nscreenshot: {shot}")

    page.click('a.res[data-address="iris.model_server.production"]')
    page.wait_for_selector("#address")
    assert page.text_content("#address").strip() == "iris.model_server.production"
    assert "iris:1" in page.text_content("#inputs")
    outputs = page.text_content("#outputs")
    assert "pid" in outputs and "url" in outputs
    assert page.locator("#history").count() == 1
    assert ui.token not in page.content()  # the access token is never in a page


def test_a_page_load_without_the_token_is_refused(ui: Ui, browser: Browser) -> None:
    context = browser.new_context()
    try:
        stranger = context.new_page()
        for url in (f"{ui.base}/platform", f"{ui.base}/platform?token=not-the-token", f"{ui.base}/"):
            response = stranger.goto(url)
            assert response is not None and response.status == 401, url
            assert stranger.locator("#refused").is_visible()
            assert stranger.locator("a.res").count() == 0
        assert context.cookies() == []
        response = stranger.goto(ui.url)  # the printed URL opens it
        assert response is not None and response.status == 200
        assert stranger.locator("a.res").count() == 9
    finally:
        context.close()


def test_plan_page_shows_the_weight_change_as_a_diff(ui: Ui, page: Page, quickstart: Quickstart) -> None:
    quickstart.set_weights(50, 50)
    ui.open(page, "plan")
    wait_for_reload(page, lambda: page.click("#run-preview"))
    row = page.locator(f'table.diff tr[data-address="{ROUTER}"][data-action="update"]')
    assert row.count() == 1, page.inner_html("#main")[:3000]
    others = page.eval_on_selector_all("table.diff tr[data-address][data-action]",
                                       "els => els.map(e => [e.dataset.address, e.dataset.action])")
    assert [a for a, action in others if action not in ("noop", "read")] == [ROUTER], others
    leaves = page.eval_on_selector_all(
        "tr.leaf[data-field]", "els => els.map(e => [e.dataset.field, e.querySelector('td.before').textContent, "
                               "e.querySelector('td.after').textContent])")
    assert any("80" in before and "50" in after for _, before, after in leaves), leaves
    assert re.search(r"\b1 to update\b", page.text_content("#plan-summary")), page.text_content("#plan-summary")
    assert page.locator("#cost").is_visible()
    assert page.get_attribute("#apply", "data-preview")
    print(f"\nscreenshot: {screenshot(page, 'plan.png')}")


def test_apply_from_the_page_then_the_serving_page_shows_the_new_split(ui: Ui, page: Page,
                                                                        quickstart: Quickstart) -> None:
    quickstart.set_weights(50, 50)
    pid = quickstart.record(ROUTER)["outputs"]["pid"]
    ui.open(page, "plan")
    wait_for_reload(page, lambda: page.click("#run-preview"))
    assert page.locator(f'tr[data-address="{ROUTER}"][data-action="update"]').count() == 1
    page.click("#apply")
    assert page.locator("dialog#confirm-apply").evaluate("d => d.open")
    page.click("#confirm-yes")
    page.wait_for_selector("body[data-run]", timeout=60_000)
    assert page.get_attribute("body", "data-run") == "done", page.text_content("#plan-message")
    lines = page.locator("#progress li").all_text_contents()
    assert any(ROUTER in line for line in lines), lines
    assert quickstart.record(ROUTER)["outputs"]["pid"] == pid  # updated live, not restarted

    url = quickstart.cli("output", "iris.url").strip()
    ui.open(page, "serving")  # the page's sampler measures the front door window after window from now on
    sent = Counter[str]()
    failures: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        """~65 requests a second (loopback): the sampler's windows are a few seconds long, so traffic goes on
        until the page has shown the split."""
        began = time.monotonic()
        while not stop.is_set() and time.monotonic() - began < 30:
            try:
                sent[invoke(url)] += 1
            except OSError as err:
                failures.append(repr(err))
            time.sleep(max(0.0, began + sum(sent.values()) * 0.015 - time.monotonic()))

    def observed() -> bool:
        row = page.locator('tr[data-endpoint="iris"][data-path="production"]')
        if row.count() != 1 or not row.get_attribute("data-observed"):
            return False
        declared, seen = float(row.get_attribute("data-declared")), float(row.get_attribute("data-observed"))
        return declared == 0.5 and abs(seen - declared) <= 0.12

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    try:
        time.sleep(3)  # ~200 requests first
        open_until(ui, page, "serving", observed, timeout=15)
    finally:
        stop.set()
        sender.join(timeout=15)
    assert failures == []
    assert sum(sent.values()) >= 150 and abs(sent["production"] / sum(sent.values()) - 0.5) <= 0.12, sent
    print(f"\nscreenshot: {screenshot(page, 'serving.png')}")


def test_a_killed_model_server_shows_failed_then_healed(ui: Ui, page: Page, quickstart: Quickstart) -> None:
    address = "iris.model_server.experimental"
    os.kill(quickstart.record(address)["outputs"]["pid"], signal.SIGKILL)
    open_until(ui, page, "platform", lambda: chips(page).get(address) == "failed", timeout=15)
    statuses = chips(page)
    # the rest in sync, or pending where it reads the server's outputs (the router gets its new URL)
    assert {a for a, s in statuses.items() if s not in ("in-sync", "pending")} == {address}, statuses
    print(f"\nscreenshot: {screenshot(page, 'platform-failed.png')}")
    quickstart.cli("apply", "--yes")
    open_until(ui, page, "platform", lambda: chips(page) == dict.fromkeys(QUICKSTART, "in-sync"), timeout=15)


def test_resources_page_lists_pools_storage_and_models(ui: Ui, page: Page) -> None:
    ui.open(page, "resources")
    assert page.locator('tr[data-pool]').count() >= 1
    assert page.locator('tr[data-storage]').count() >= 1
    models = page.eval_on_selector_all("tr[data-model]", "els => els.map(e => e.textContent)")
    assert len(models) >= 2 and all("iris" in m for m in models), models
    print(f"\nscreenshot: {screenshot(page, 'resources.png')}")


def test_history_page_lists_the_applies(ui: Ui, page: Page) -> None:
    ui.open(page, "history")
    runs = page.eval_on_selector_all("tr[data-run-id][data-verb][data-ok]",
                                     "els => els.map(e => [e.dataset.verb, e.dataset.ok])")
    assert len(runs) >= 2 and any(verb == "apply" for verb, _ in runs), runs
    print(f"\nscreenshot: {screenshot(page, 'history.png')}")


# --- timings ------------------------------------------------------------------------------------------------


def test_mlplat_ui_process_starts_and_serves_its_first_page(quickstart: Quickstart, page: Page) -> None:
    ui = UiProcess(quickstart.stack, cwd=quickstart.root)
    try:
        assert ui.line.startswith("mlplat ui: 1 stack(s) at http://127.0.0.1:"), ui.line
        response = page.goto(ui.url, wait_until="load")
        shown = time.perf_counter()
        assert response is not None and response.status == 200
        assert page.locator("a.res[data-address]").count() == 9
        print(f"\nmlplat ui start-up: URL printed {(ui.printed - ui.started) * 1000:.0f} ms after the process "
              f"started; first page loaded in Chromium {(shown - ui.started) * 1000:.0f} ms after it")
    finally:
        code = ui.stop()
    assert code == 0, ui.errors


def test_thousand_resource_platform_page_loads_in_the_browser(tmp_path: Path, page: Page) -> None:
    stack = tmp_path / "big.yaml"
    stack.write_text(sim_stack_text(1000))
    run_mlplat("apply", "-f", str(stack), "--yes", cwd=tmp_path)
    with ui_server(stack) as ui:
        ui.open(page, "platform")  # the token into the cookie; then loads as a user's
        times = []
        for _ in range(3):
            page.goto(ui.page_url("platform"), wait_until="load")
            times.append(navigation_ms(page))
            assert page.locator("a.res[data-address]").count() == 1000
        assert page.get_attribute("#counts", "data-total") == "1000"
    times.sort()
    print(f"\n1,000-resource platform page in Chromium (navigation start -> load event end): "
          f"median {times[1]:.0f} ms (runs: {', '.join(f'{t:.0f}' for t in times)})")


def test_resource_page_masks_secrets(tmp_path: Path, page: Page, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "ui-test-secret-value-5f2a"
    monkeypatch.setenv("UI_TEST_API_KEY", secret)
    monkeypatch.setenv("MLPLAT_STATE_PASSPHRASE", "ui-test-passphrase")  # secrets are stored sealed
    stack = tmp_path / "secret.yaml"
    stack.write_text("apiVersion: mlplat/v1\nmetadata: {name: ui-secret}\ntarget: sim\n"
                     "targets: {sim: {store: ':memory:'}}\nresources:\n"
                     "  - {name: keyed, kind: sim.data, inputs: {input: {api_key: '${secret:UI_TEST_API_KEY}'}}}\n")
    run_mlplat("apply", "-f", str(stack), "--yes", cwd=tmp_path)
    with ui_server(stack) as ui:
        ui.open(page, "resource", address="keyed.data.main")
        assert page.text_content("#address").strip() == "keyed.data.main"
        assert "(sensitive)" in page.text_content("#inputs")
        assert secret not in page.content()
        ui.open(page, "platform")
        assert secret not in page.content()
