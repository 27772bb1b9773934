"""Per-target harnesses for the plugin-contract suite (tests/test_contract.py).

A harness knows how to write a stack for its target, how to list what really exists in its "cloud" (by resource
address), how to change something behind mlplat's back, and which settings its target must reject. A new target
joins the contract suite by adding a harness here.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from conftest import STACKS

STACK = """\
apiVersion: mlplat/v1
metadata: {{name: contract}}
target: {target}
targets:
  {target}: {settings}
storage:
  - {{name: shared, size_gb: 10}}
registry:
  name: models
  models:
    - {{name: iris, version: "1", artifact: models/iris-v1.json}}
    - {{name: iris, version: "2", artifact: models/iris-v2.json}}
serving:
  - name: iris
    paths:
      production: {{model: "iris:1", weight: {production}}}
      experimental: {{model: "{experimental_model}", weight: {experimental}}}
"""


class Harness:
    target: ClassVar[str]
    bad_settings: ClassVar[dict[str, Any]]
    #: resources lowered from STACK on this target
    expected_resources: ClassVar[int]

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        shutil.copytree(STACKS / "models", directory / "models", dirs_exist_ok=True)

    def settings(self) -> dict[str, Any]:
        return {}

    def write_stack(self, production: int = 80, experimental: int = 20, experimental_model: str = "iris:2",
                    settings: dict[str, Any] | None = None) -> Path:
        path = self.directory / "stack.yaml"
        path.write_text(STACK.format(target=self.target, settings=json.dumps(settings or self.settings()),
                                     production=production, experimental=experimental,
                                     experimental_model=experimental_model))
        return path

    def cloud_objects(self) -> Counter[str]:
        """What exists in the target right now, counted per resource address."""
        raise NotImplementedError

    def make_drift(self) -> str:
        """Change one resource out of band; return its address."""
        raise NotImplementedError

    @contextmanager
    def throttled(self, times: int) -> Iterator[None]:
        """Make the target answer the next `times` calls per object with a throttling error."""
        raise NotImplementedError
        yield


class SimHarness(Harness):
    target = "sim"
    bad_settings: ClassVar[dict[str, Any]] = {"latency_ms": -5}
    expected_resources = 8  # filesystem, registry, 2 model versions, 2 path models, endpoint config, endpoint
    _throttle = 0

    def settings(self) -> dict[str, Any]:
        return {"store": "cloud", "throttle_first": self._throttle}

    def _objects(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in (self.directory / "cloud" / "objects").glob("*.json")]

    def cloud_objects(self) -> Counter[str]:
        return Counter(o["address"] for o in self._objects())

    def make_drift(self) -> str:
        for path in (self.directory / "cloud" / "objects").glob("*.json"):
            obj = json.loads(path.read_text())
            if obj["kind"] == "sim.filesystem":
                obj["inputs"]["size_gb"] = 999
                path.write_text(json.dumps(obj))
                return obj["address"]
        raise AssertionError("no filesystem to drift")

    @contextmanager
    def throttled(self, times: int) -> Iterator[None]:
        self._throttle = times
        self.write_stack()
        try:
            yield
        finally:
            self._throttle = 0
            self.write_stack()


class LocalHarness(Harness):
    target = "local"
    bad_settings: ClassVar[dict[str, Any]] = {"hots": "0.0.0.0"}
    expected_resources = 7

    @property
    def root(self) -> Path:
        return self.directory / ".mlplat" / "contract" / "local"

    def cloud_objects(self) -> Counter[str]:
        from mlplat_plugins.local.providers import MARKER
        from mlplat_plugins.local.runtime.processes import find_running

        found: Counter[str] = Counter()
        for marker in self.root.rglob(MARKER):
            runtime = marker.parent / "runtime.json"
            if runtime.exists() and find_running(runtime) is None:
                continue  # a stopped process is not a live resource
            found[marker.read_text().strip()] += 1
        for meta in self.root.glob("registry/*/*/*/meta.json"):
            data = json.loads(meta.read_text())
            found[f"models.model_version.{data['name']}:{data['version']}"] += 1
        return found

    def make_drift(self) -> str:
        config = self.root / "serving" / "iris" / "router" / "config.json"
        data = json.loads(config.read_text())
        data["routes"][0]["weight"], data["routes"][1]["weight"] = 10, 90
        config.write_text(json.dumps(data))
        from mlplat_plugins.local.runtime.processes import find_running, reload

        info = find_running(config.parent / "runtime.json")
        assert info is not None
        reload(info.pid)
        import time

        for _ in range(100):  # the router applies SIGHUP asynchronously
            if _router_weights(info.url) == [10, 90]:
                break
            time.sleep(0.02)
        return "iris.router.main"

    @contextmanager
    def throttled(self, times: int) -> Iterator[None]:
        """The local machine never throttles; emulate it by wrapping the providers the target hands out."""
        from mlplat_plugins.local.target import LocalTarget
        from provisioner.errors import RetryableError

        original = LocalTarget.provider
        counts: Counter[str] = Counter()

        def throttling_provider(target: LocalTarget, kind: str) -> Any:
            provider = original(target, kind)
            create = provider.create

            def create_throttled(address: str, inputs: dict[str, Any]) -> Any:
                counts[address] += 1
                if counts[address] <= times:
                    raise RetryableError("429 Too Many Requests", retry_after=0.01)
                return create(address, inputs)

            provider.create = create_throttled  # type: ignore[method-assign]
            return provider

        LocalTarget.provider = throttling_provider  # type: ignore[method-assign]
        try:
            yield
        finally:
            LocalTarget.provider = original  # type: ignore[method-assign]


def _router_weights(url: str) -> list[int]:
    import urllib.request

    with urllib.request.urlopen(url + "/-/config", timeout=3) as resp:
        return [r["weight"] for r in json.loads(resp.read())["routes"]]


HARNESSES: list[type[Harness]] = [SimHarness, LocalHarness]
