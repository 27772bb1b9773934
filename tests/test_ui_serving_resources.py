"""`mlplat ui`'s Serving and Resources pages over real stacks: the quickstart (80/20 canary) and the monitoring
example (a shadow path, drift, shadow agreement) applied on the local target, a sim stack (a target that keeps no
checksum), the UI server in this process, traffic through the front door. The observed split comes from the
sampler (`mlplat top`'s source) measuring 1 s windows in its own thread; every wait is bounded."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, TypeVar

import pytest

from provisioner.api import Stack
from provisioner.ui import serving
from provisioner.ui.app import UiApp
from provisioner.ui.sampler import Samplers
from provisioner.ui.server import make_server

from conftest import STACKS
from local_processes import kill_all, servers_under

T = TypeVar("T")
TOKEN = "serving-resources-test-token"
ENV = {"MLPLAT_LOCAL_GPUS": "", "MLPLAT_UI_WINDOW_S": "1"}
SIM_STACK = """\
apiVersion: mlplat/v1
metadata:
  name: simres
target: sim
clusters:
  - name: train
    gpu_pools:
      - {name: gpu, accelerator: h100, gpus_per_node: 8, nodes: {min: 1, max: 3}}
storage:
  - {name: scratch, kind: lustre, size_gb: 1200, mount_path: /mnt/scratch}
registry:
  name: models
  models:
    - {name: iris, version: "1", artifact: models/iris-v1.json}
serving:
  - name: iris
    paths:
      production: {model: "iris:1", weight: 100}
"""
IRIS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


@dataclass
class Ui:
    directory: Path
    app: UiApp
    base: str

    def get(self, path: str, token: str | None = TOKEN) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        request = urllib.request.Request(self.base + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def json(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, (status, body)
        return json.loads(body)


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    directory = tmp_path_factory.mktemp("ui-serving")
    shutil.copytree(STACKS / "models", directory / "models")
    shutil.copytree(STACKS / "data", directory / "data")
    for name in ("quickstart.yaml", "monitoring.yaml"):
        shutil.copy(STACKS / name, directory / name)
    (directory / "simres.yaml").write_text(SIM_STACK)
    paths = [directory / "quickstart.yaml", directory / "monitoring.yaml", directory / "simres.yaml"]
    with pytest.MonkeyPatch.context() as patch:
        for key, value in ENV.items():
            patch.setenv(key, value)
        applied: list[Path] = []
        app = UiApp(paths, token=TOKEN)
        server = make_server(app, 0)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        try:
            for path in paths:
                with Stack(path) as stack:
                    applied.append(path)
                    stack.apply(stack.plan())
            thread.start()
            yield Ui(directory, app, f"http://127.0.0.1:{server.port}")
        finally:
            if thread.is_alive():
                server.shutdown()
            server.server_close()
            app.close()
            for path in applied:
                with Stack(path) as stack:
                    stack.apply(stack.plan(destroy=True))
            kill_all(directory)
    assert not servers_under(directory)


def post(url: str, body: Any) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 15.0, every: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:g} s")
        time.sleep(every)


class Tags(HTMLParser):
    """Every start tag's attributes, and the text of each <code class="checksum">."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.checksums: list[str] = []
        self._in_checksum = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        self.tags.append((tag, found))
        self._in_checksum = tag == "code" and "checksum" in found.get("class", "").split()

    def handle_data(self, data: str) -> None:
        if self._in_checksum:
            self.checksums.append(data)
            self._in_checksum = False

    def having(self, attribute: str, tag: str | None = None) -> list[dict[str, str]]:
        return [a for t, a in self.tags if attribute in a and (tag is None or t == tag)]


def paths_of(view: dict[str, Any], endpoint: str = "iris") -> dict[str, dict[str, Any]]:
    found = next(e for e in view["endpoints"] if e["name"] == endpoint)
    return {p["path"]: p for p in found["paths"]}


def test_serving_declares_the_split_and_its_front_door_answers(ui: Ui) -> None:
    view = ui.json("/api/serving?stack=quickstart")
    (endpoint,) = view["endpoints"]
    paths = paths_of(view)
    assert (paths["production"]["declared"], paths["experimental"]["declared"]) == (0.8, 0.2)
    assert (paths["production"]["model"], paths["experimental"]["model"]) == ("iris:1", "iris:2")
    assert endpoint["url"].startswith("http://127.0.0.1:") and endpoint["monitoring"] is None
    answer = post(endpoint["url"] + "/invocations", {"instances": IRIS})
    assert len(answer["predictions"]) == 2
    assert view["window_s"] == 1.0


def test_the_observed_split_follows_the_declared_one_under_traffic(ui: Ui) -> None:
    url = ui.json("/api/serving?stack=quickstart")["endpoints"][0]["url"]  # the sampler runs from here on
    stop, sent = threading.Event(), [0]

    def traffic() -> None:
        deadline = time.monotonic() + 20
        while not stop.is_set() and time.monotonic() < deadline:
            post(url + "/invocations", {"instances": IRIS[:1]})
            sent[0] += 1
            time.sleep(0.01)

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    began = time.monotonic()

    def close_enough() -> dict[str, Any] | None:
        paths = paths_of(ui.json("/api/serving?stack=quickstart"))
        observed = [paths[p]["observed"] for p in ("production", "experimental")]
        if None in observed or sent[0] < 100:
            return None
        ok = abs(observed[0] - 0.8) <= 0.12 and abs(observed[1] - 0.2) <= 0.12
        return paths if ok else None

    try:
        paths = wait_for("observed split within 0.12 of 80/20", close_enough, timeout=15)
    finally:
        stop.set()
        sender.join(timeout=10)
    assert time.monotonic() - began < 15
    assert paths["production"]["observed"] + paths["experimental"]["observed"] == pytest.approx(1.0)
    for name in ("production", "experimental"):
        assert paths[name]["requests_per_s"] > 0 and paths[name]["error_rate"] == 0.0
        assert paths[name]["p95_ms"] > 0 and paths[name]["sources"][0].startswith("/metrics of http://127.0.0.1:")

    status, page = ui.get("/serving?stack=quickstart")
    assert status == 200
    tags = Tags(page)
    rows = {a["data-path"]: a for a in tags.having("data-endpoint", "tr")}
    assert set(rows) == {"production", "experimental"} and rows["production"]["data-endpoint"] == "iris"
    assert (rows["production"]["data-declared"], rows["experimental"]["data-declared"]) == ("0.8", "0.2")
    for row in rows.values():
        assert row["data-observed"] == "" or 0 <= float(row["data-observed"]) <= 1
    (door,) = tags.having("data-front-door")
    assert door["data-front-door"] == "iris" and url in page
    assert [a["data-refresh"] for a in tags.having("data-refresh")] == ["2"]
    assert "measured over the last 1 s at " in page and 'class="splitbar"' in page


def test_a_shadow_path_is_no_part_of_the_split_and_monitoring_is_shown(ui: Ui) -> None:
    url = ui.json("/api/serving?stack=monitoring")["endpoints"][0]["url"]
    for _ in range(60):  # half of them mirrored to the shadow (mirror_percent: 50): > min_pairs 20 compared
        post(url + "/invocations", {"instances": IRIS})

    def report() -> dict[str, Any] | None:
        serving.forget_monitoring(ui.app, "monitoring")  # the page keeps a report 30 s
        endpoint = ui.json("/api/serving?stack=monitoring")["endpoints"][0]
        shadow = (endpoint["monitoring"] or {}).get("shadow") or []
        return endpoint if endpoint["monitoring"]["rows"] >= 60 and shadow and shadow[0]["pairs"] >= 20 else None

    endpoint = wait_for("a monitoring report of the traffic", report, timeout=10)
    paths = {p["path"]: p for p in endpoint["paths"]}
    assert paths["experimental"]["shadow"] and paths["experimental"]["mirror"] == 0.5
    assert paths["experimental"]["observed"] is None and paths["production"]["declared"] == 1.0
    monitoring = endpoint["monitoring"]
    assert monitoring["error"] is None and monitoring["checked_by"] == "mlplat"
    assert {f["feature"] for f in monitoring["features"]} and all(f["metric"] == "psi" for f in monitoring["features"])
    (shadow,) = monitoring["shadow"]
    assert (shadow["primary"], shadow["shadow"]) == ("production", "experimental")
    assert 0 <= shadow["agreement"] <= 1 and shadow["status"] in ("ok", "low agreement", "slow", "low agreement, slow")
    assert isinstance(monitoring["alerts"], list) and "deliveries" not in monitoring  # the UI never sends alerts

    status, page = ui.get("/serving?stack=monitoring")
    assert status == 200
    tags = Tags(page)
    rows = {a["data-path"]: a for a in tags.having("data-endpoint", "tr")}
    assert rows["experimental"]["data-mode"] == "shadow" and rows["experimental"]["data-observed"] == ""
    assert rows["production"]["data-declared"] == "1"
    assert tags.having("data-monitoring") and tags.having("data-feature", "tr") and tags.having("data-shadow", "tr")


def test_resources_show_pools_storage_and_models_with_checksums(ui: Ui) -> None:
    def measured() -> dict[str, Any] | None:
        found = ui.json("/api/resources?stack=quickstart")
        return found if found["measured_at"] is not None else None

    view = wait_for("a measured pool", measured, timeout=10)
    (pool,) = view["pools"]
    assert pool["key"] == "train/cpu" and (pool["accelerator"], pool["nodes_min"], pool["nodes_max"]) == ("cpu", 1, 1)
    assert pool["nodes"] == 1 and pool["gpus"] == 0 and pool["target"] == "local"
    (volume,) = view["storage"]
    assert volume["component"] == "shared" and volume["address"].startswith("shared.")
    assert (volume["kind"], volume["size_gb"], volume["mount_path"]) == ("nas", 5, "/mnt/shared") and volume["id"]
    models = {m["ref"]: m for m in view["models"]}
    assert set(models) == {"iris:1", "iris:2"}
    for ref, file in (("iris:1", "iris-v1.json"), ("iris:2", "iris-v2.json")):
        digest = hashlib.sha256((ui.directory / "models" / file).read_bytes()).hexdigest()
        assert models[ref]["checksum"] == f"sha256:{digest}" and models[ref]["version"] == ref[-1]

    status, page = ui.get("/resources?stack=quickstart")
    assert status == 200
    tags = Tags(page)
    assert [a["data-pool"] for a in tags.having("data-pool", "tr")] == ["train/cpu"]
    assert [a["data-component"] for a in tags.having("data-storage", "tr")] == ["shared"]
    assert tags.having("data-storage", "tr")[0]["data-storage"] == volume["address"]
    assert [a["data-model"] for a in tags.having("data-model", "tr")] == ["iris:1", "iris:2"]
    assert tags.checksums == [models["iris:1"]["checksum"], models["iris:2"]["checksum"]]


def test_a_target_that_keeps_no_checksum_shows_a_dash(ui: Ui) -> None:
    view = ui.json("/api/resources?stack=simres")
    (model,) = view["models"]
    assert model["ref"] == "iris:1" and model["checksum"] is None and model["records"]
    (pool,) = view["pools"]
    assert (pool["key"], pool["accelerator"], pool["gpus_per_node"], pool["nodes_max"]) == ("train/gpu", "h100", 8, 3)
    assert {(s["component"], s["kind"], s["size_gb"]) for s in view["storage"]} == {("scratch", "lustre", 1200)}
    status, page = ui.get("/resources?stack=simres")
    assert status == 200 and Tags(page).checksums == ["-"]


@pytest.mark.parametrize("path", ["/serving?stack=quickstart", "/api/serving?stack=quickstart",
                                  "/resources?stack=quickstart", "/api/resources?stack=quickstart"])
def test_requests_without_the_token_are_refused(ui: Ui, path: str) -> None:
    assert ui.get(path, token=None)[0] == 401
    assert ui.get(path, token="not-the-token")[0] == 401


# -- the sampler on its own ----------------------------------------------------------------------------------------
def test_the_sampler_never_blocks_stops_when_unread_and_restarts(ui: Ui) -> None:
    samplers = Samplers(ui.app, window_s=0.2, idle_s=0.6)
    try:
        began = time.monotonic()
        assert samplers.read("simres") is None and time.monotonic() - began < 0.1
        sample = wait_for("a first sample", lambda: samplers.read("simres"), timeout=5, every=0.05)
        assert sample.window_s == 0.2 and sample.measured_at <= time.time()
        sampler = samplers.sampler("simres")
        wait_for("the idle sampler to stop", lambda: True if not sampler.running else None, timeout=5)
        began = time.monotonic()
        again = samplers.read("simres")  # the last sample, at once; and it measures again
        assert again is not None and again.measured_at >= sample.measured_at and time.monotonic() - began < 0.1
        assert sampler.running
    finally:
        samplers.stop()
    assert not samplers.sampler("simres").running


def test_a_stack_file_that_breaks_is_a_note_and_the_sampler_goes_on(ui: Ui) -> None:
    broken = ui.directory / "broken.yaml"
    broken.write_text("apiVersion: mlplat/v1\nmetadata: {name: broken}\nclusters: 3\n")
    app = UiApp([broken], token=TOKEN)
    samplers = Samplers(app, window_s=0.1, idle_s=5)
    try:
        samplers.read("broken")
        sample = wait_for("a sample", lambda: samplers.read("broken"), timeout=5, every=0.05)
        assert any("could not measure the traffic" in n for n in sample.usage.notes), sample.usage.notes
        later = wait_for("a later sample", lambda: s if (s := samplers.read("broken")) is not sample else None,
                         timeout=5, every=0.05)
        assert later.measured_at > sample.measured_at and samplers.sampler("broken").running
    finally:
        samplers.stop()
