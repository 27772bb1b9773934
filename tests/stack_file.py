"""A stack file a test edits as a dict, and what mlplat does with it: through the Python API (`StackFile`), or
through the CLI as a user runs it (`CliStack`); and the quickstart platform moved to a cloud target and back under
load through its local front door (`round_trip`), as each cloud's lifecycle test does."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self, TypeVar

import yaml
from front_door_load import Load
from json_lines import summary_of

from conftest import STACKS, run_mlplat
from local_processes import kill_all, servers_under

T = TypeVar("T")
#: the quickstart's components, all moved by a round trip
COMPONENTS = ("train", "shared", "models", "iris")


class StackFile:
    """A stack file at `path`, written from `doc` (edit the dict, then `write()`), opened through the Python API
    for each call."""

    def __init__(self, path: Path, doc: dict[str, Any]) -> None:
        self.path, self.doc = path, doc
        self.write()

    def write(self) -> Self:
        self.path.write_text(yaml.safe_dump(self.doc, sort_keys=False))
        return self

    def open(self, events: list[Any] | None = None) -> Any:
        """The stack file as a `provisioner.api.Stack` (the caller closes it), its events appended to `events`."""
        from provisioner.api import Stack

        return Stack(self.path, listeners=[events.append] if events is not None else None)

    def run(self, fn: Callable[[Any], T], events: list[Any] | None = None) -> T:
        """`fn(stack)` on the stack file opened as a `provisioner.api.Stack` (closed afterwards)."""
        with self.open(events) as stack:
            return fn(stack)

    def changes(self) -> dict[str, str]:
        """{address: action} of the next plan, no-ops left out."""
        return self.run(lambda s: {c.address: c.action for c in s.plan().changes if c.action != "noop"})

    def drift(self) -> dict[str, Any]:
        return self.run(lambda s: {c.address: c.drift for c in s.plan().changes if c.drift})

    def apply(self, events: list[Any] | None = None, *, destroy: bool = False) -> dict[str, str]:
        """Plan and apply; {address: action} of what the plan changed (no-ops left out)."""
        def plan_and_apply(stack: Any) -> dict[str, str]:
            plan = stack.plan(destroy=destroy)
            stack.apply(plan)
            return {c.address: c.action for c in plan.changes if c.action != "noop"}

        return self.run(plan_and_apply, events)

    def destroy(self) -> None:
        self.apply(destroy=True)

    def outputs(self) -> dict[str, Any]:
        return self.run(lambda s: s.outputs())

    def records(self) -> dict[str, Any]:
        """{address: ResourceRecord} of the state."""
        return self.run(lambda s: dict(s.state.resources()))


class CliStack(StackFile):
    """A stack file named `<name>.yaml` in `directory` (with copies of the stacks/ folders it points at), run
    through the CLI exactly as a user runs it, with `env` added to the environment."""

    def __init__(self, directory: Path, doc: dict[str, Any], name: str, env: dict[str, str] | None = None,
                 folders: tuple[str, ...] = ("models",)) -> None:
        self.directory = directory
        for folder in folders:
            shutil.copytree(STACKS / folder, directory / folder, dirs_exist_ok=True)
        self.env = dict(env or {})
        super().__init__(directory / f"{name}.yaml", doc)

    def cli(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run_mlplat(*args, "-f", str(self.path), cwd=self.directory, env=self.env, check=check,
                          timeout=timeout)

    def changes(self) -> dict[str, str]:
        plan = json.loads(self.cli("preview", "--json").stdout)
        return {c["address"]: c["action"] for c in plan["changes"] if c["action"] != "noop"}

    def outputs(self) -> dict[str, Any]:
        return json.loads(self.cli("output", "--json").stdout)  # type: ignore[no-any-return]


def quickstart_doc(targets: dict[str, Any]) -> dict[str, Any]:
    """stacks/quickstart.yaml with `targets`, and iris behind a local front door shifting 10 → 50 → 100 % in 1 s
    windows."""
    doc = yaml.safe_load((STACKS / "quickstart.yaml").read_text())
    doc["targets"] = targets
    doc["serving"][0]["front_door"] = ["local"]
    doc["serving"][0]["migration"] = {"steps": [10, 50, 100], "window_s": 1}
    return doc


def migrate_under_load(stack: CliStack, *args: str) -> tuple[dict[str, Any], Load]:
    """`mlplat migrate ARGS` while 4 clients call the front door: (the migration's report, the load)."""
    url = stack.outputs()["iris.front_door.local.url"]
    with Load(url, threads=4) as load:
        time.sleep(1.0)
        out = stack.cli("migrate", *args, "--yes", "--json", timeout=400).stdout
        time.sleep(1.0)
    return summary_of(out), load


def moved(stack: CliStack, source: str, target: str, url: str) -> tuple[dict[str, Any], Load]:
    """Move every quickstart component from `source` to `target` under load: no request fails, traffic reached
    both, the last 30 requests reach `target`, the front door's URL stays."""
    report, load = migrate_under_load(stack, *COMPONENTS, "--to", target)
    print(f"\n[{source} → {target}] failed {len(load.failures)} of {len(load.served) + len(load.failures)}; "
          f"per route {dict(load.routes())}; phases {json.dumps(report.get('migrations'), sort_keys=True)}")
    assert load.failures == [], load.failures[:5]
    routes = load.routes()
    assert routes[source] > 0 and routes[target] > 0, routes
    assert load.last(30) == Counter({target: 30}), f"after the move every request reaches {target}"
    assert stack.outputs()["iris.url"] == url, "the front door's URL survives the move"
    return report, load


@contextmanager
def torn_down(stack: CliStack) -> Iterator[None]:
    """Destroy the stack afterwards, whatever happened: no server process may be left under its directory."""
    try:
        yield
    finally:
        stack.cli("destroy", "--yes", check=False)
        left = servers_under(stack.directory)
        kill_all(stack.directory)
        assert not left, f"destroy left server processes: {left}"


def round_trip(stack: CliStack, target: str, *, arrived: Callable[[dict[str, Any]], None],
               left_nothing: Callable[[], None]) -> None:
    """The quickstart applied on local, moved whole to `target` and back under load through its local front door
    (the same front door process throughout); `arrived(outputs)` checks the platform on `target`,
    `left_nothing()` that nothing of it is left there after the way back."""
    local_root = stack.directory / ".mlplat" / stack.path.stem / "local"
    stack.cli("apply", "--yes")
    with torn_down(stack):
        url = stack.outputs()["iris.url"]
        front_door = servers_under(local_root / "front_doors")
        assert len(front_door) == 1, front_door

        report, _ = moved(stack, "local", target, url)
        assert set(report["migrations"]) == set(COMPONENTS)
        arrived(stack.outputs())
        assert servers_under(local_root / "serving") == {}
        assert servers_under(local_root / "front_doors") == front_door, "the same front door process serves"
        assert "No changes" in stack.cli("preview").stdout

        moved(stack, target, "local", url)
        assert servers_under(local_root / "serving"), "the endpoint serves on local again"
        left_nothing()
        assert "No changes" in stack.cli("preview").stdout
