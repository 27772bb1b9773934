"""Targeted changes through the CLI: `preview/apply --target`, `--replace`, `destroy --target` and
`refresh --preview`, on the `sim` target (a simulated cloud keeping one JSON file per object) and on `local`
(stacks/quickstart.yaml)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import run_mlplat

STACK = """\
apiVersion: mlplat/v1
metadata:
  name: demo
target: sim
targets:
  sim:
    store: cloud
    tagged_ids: true
clusters:
  - name: train
    gpu_pools:
      - {name: gpu, accelerator: h100, gpus_per_node: 8, nodes: {min: 1, max: 2}}
storage:
  - {name: shared, size_gb: 10}
registry:
  name: models
  models:
    - {name: iris, version: "1", artifact: iris.json}
serving:
  - name: iris
    paths:
      production: {model: "iris:1", weight: 100}
"""


class Sim:
    """A stack on the sim target in a temporary directory; every command is a real `mlplat` process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "iris.json").write_text("{}")
        self.write()

    def write(self, size_gb: int = 10, max_nodes: int = 2) -> None:
        text = STACK.replace("size_gb: 10", f"size_gb: {size_gb}").replace("max: 2", f"max: {max_nodes}")
        (self.root / "mlplat.yaml").write_text(text)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_mlplat(*args, cwd=self.root, check=check)

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)

    def plan(self, *args: str) -> dict[str, str]:
        """address -> action of the changes `preview` shows (noops left out)."""
        data = self.json("preview", *args)
        return {c["address"]: c["action"] for c in data["changes"] if c["action"] != "noop"}

    def ids(self) -> dict[str, str]:
        return {r["address"]: r["id"] for r in self.json("state", "list")["resources"]}

    def serial(self) -> int:
        return self.json("state", "list")["serial"]

    def cloud(self, id: str) -> dict[str, Any]:
        return json.loads((self.root / "cloud" / "objects" / f"{id}.json").read_text())


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    return Sim(tmp_path)


@pytest.fixture
def applied(sim: Sim) -> Sim:
    sim.run("apply", "--yes")
    return sim


def test_apply_target_changes_only_the_targeted_component(applied: Sim) -> None:
    sim = applied
    sim.write(size_gb=30, max_nodes=4)  # two components changed
    assert sim.plan() == {"shared.filesystem.main": "update", "train.pool.gpu": "update"}

    data = sim.json("preview", "--target", "shared")
    assert data["targets"] == ["shared"]
    assert data["left_out"] == ["train.pool.gpu"]
    assert [(c["address"], c["action"]) for c in data["changes"]] == [("shared.filesystem.main", "update")]

    result = sim.run("apply", "--target", "shared", "--yes")
    assert "resource targeting is in effect (--target shared)" in result.stdout
    assert "left out (still pending): 1 change(s): train.pool.gpu" in result.stdout
    assert "run a full `mlplat apply`" in result.stdout.split("Apply complete!")[1]  # warned again after apply
    ids = sim.ids()
    assert sim.cloud(ids["shared.filesystem.main"])["inputs"]["size_gb"] == 30
    assert sim.cloud(ids["train.pool.gpu"])["inputs"]["max"] == 2  # left as it was

    assert sim.plan() == {"train.pool.gpu": "update"}  # still pending
    sim.run("apply", "--yes")
    assert sim.cloud(ids["train.pool.gpu"])["inputs"]["max"] == 4
    assert sim.plan() == {}


def test_target_of_a_new_resource_pulls_its_dependencies(sim: Sim) -> None:
    data = sim.json("preview", "--target", "iris.endpoint.main")
    # the endpoint needs its config, its model and the registry's model (and the registry) first
    assert {c["address"]: c["action"] for c in data["changes"]} == {
        "iris.endpoint.main": "create", "iris.endpoint_config.main": "create", "iris.model.production": "create",
        "models.model.iris:1": "create", "models.registry.main": "create"}
    assert set(data["left_out"]) == {"shared.filesystem.main", "train.cluster.main", "train.pool.gpu"}

    sim.run("apply", "--target", "train.pool.gpu", "--yes")
    assert sorted(sim.ids()) == ["train.cluster.main", "train.pool.gpu"]
    # outputs name only what exists: `mlplat output` shows no value of a resource not made yet
    outputs = sim.json("output")
    assert set(outputs) == {"train.id"}
    assert outputs["train.id"] == sim.ids()["train.cluster.main"]
    assert sim.run("output", "iris.url", check=False).returncode == 1

    assert sim.plan() == {a: "create" for a in ("iris.endpoint.main", "iris.endpoint_config.main",
                                                "iris.model.production", "models.model.iris:1",
                                                "models.registry.main", "shared.filesystem.main")}
    sim.run("apply", "--yes")
    assert set(sim.json("output")) == {"iris.url", "models.id", "models.model.iris:1", "shared.id", "train.id"}


def test_unknown_addresses_are_errors_that_say_what_is_close(applied: Sim) -> None:
    result = applied.run("preview", "--target", "shard", check=False)
    assert result.returncode == 1
    assert "--target shard: no resource of the stack file or the state has that address (did you mean shared?)" \
        in result.stderr
    assert "Traceback" not in result.stderr

    result = applied.run("apply", "--replace", "train.cluster", "--yes", check=False)
    assert result.returncode == 1
    assert "--replace train.cluster: no resource 'train.cluster' in the state (did you mean train.cluster.main?)" \
        in result.stderr

    applied.run("preview", "-o", "plan.json")
    result = applied.run("apply", "plan.json", "--target", "shared", check=False)
    assert result.returncode == 1
    assert "do not go with a saved plan" in result.stderr


def test_replace_makes_a_new_object_and_moves_its_users(applied: Sim) -> None:
    sim = applied
    before = sim.ids()
    data = sim.json("preview", "--replace", "train.cluster.main")
    changes = {c["address"]: c for c in data["changes"] if c["action"] != "noop"}
    assert data["replace"] == ["train.cluster.main"]
    assert changes["train.cluster.main"]["action"] == "replace"
    assert changes["train.cluster.main"]["forces_replacement"] == ["--replace"]
    assert changes["train.pool.gpu"]["action"] == "replace"  # its cluster input changes: forces a new pool
    assert set(changes) == {"train.cluster.main", "train.pool.gpu"}
    text = sim.run("preview", "--replace", "train.cluster.main").stdout
    assert "train.cluster.main sim.cluster (replace: requested with --replace)" in text

    sim.run("apply", "--replace", "train.cluster.main", "--yes")
    after = sim.ids()
    assert after["train.cluster.main"] != before["train.cluster.main"]
    assert after["train.pool.gpu"] != before["train.pool.gpu"]
    assert sim.cloud(after["train.pool.gpu"])["inputs"]["cluster"] == after["train.cluster.main"]
    assert not (sim.root / "cloud" / "objects" / f"{before['train.cluster.main']}.json").exists()
    assert {a: i for a, i in after.items() if not a.startswith("train.")} == \
        {a: i for a, i in before.items() if not a.startswith("train.")}
    assert sim.json("output")["train.id"] == after["train.cluster.main"]
    assert sim.plan() == {}


def test_replace_honours_create_before_destroy_and_moves_the_users_of_the_old_object(applied: Sim) -> None:
    # a replace in a targeted plan deletes the old object: what still uses it moves off it in the same plan
    data = applied.json("preview", "--target", "models.registry.main", "--replace", "models.registry.main")
    assert {c["address"]: c["action"] for c in data["changes"] if c["action"] != "noop"} == {
        "models.registry.main": "replace", "models.model.iris:1": "replace", "iris.model.production": "replace",
        "iris.endpoint_config.main": "replace", "iris.endpoint.main": "update"}

    data = applied.json("preview", "--replace", "iris.endpoint_config.main")
    changes = {c["address"]: c for c in data["changes"] if c["action"] != "noop"}
    config = changes["iris.endpoint_config.main"]
    assert (config["action"], config["create_before_destroy"]) == ("replace", True)  # the provider's replace_mode
    assert changes["iris.endpoint.main"]["action"] == "update"  # points at the new config
    before = applied.ids()
    applied.run("apply", "--replace", "iris.endpoint_config.main", "--yes")
    after = applied.ids()
    assert after["iris.endpoint_config.main"] != before["iris.endpoint_config.main"]
    assert applied.cloud(after["iris.endpoint.main"])["inputs"]["config"] == after["iris.endpoint_config.main"]
    assert not (applied.root / "cloud" / "objects" / f"{before['iris.endpoint_config.main']}.json").exists()


def test_saved_targeted_plan_is_shown_and_applied_exactly(applied: Sim) -> None:
    sim = applied
    sim.write(size_gb=30, max_nodes=4)
    sim.run("preview", "--target", "train", "-o", "plan.json")
    shown = sim.run("show", "plan.json").stdout
    assert "resource targeting is in effect (--target train)" in shown
    assert "left out (still pending): 1 change(s): shared.filesystem.main" in shown
    assert json.loads((sim.root / "plan.json").read_text())["targets"] == ["train"]
    sim.run("apply", "plan.json")
    assert sim.plan() == {"shared.filesystem.main": "update"}


def test_destroy_target_deletes_the_resource_and_what_depends_on_it(applied: Sim) -> None:
    sim = applied
    data = sim.json("preview", "--destroy", "--target", "train.cluster.main")
    assert [(c["address"], c["action"]) for c in data["changes"]] == [("train.pool.gpu", "delete"),
                                                                        ("train.cluster.main", "delete")]
    sim.run("destroy", "--target", "train.cluster.main", "--yes")
    assert "train.cluster.main" not in sim.ids() and "train.pool.gpu" not in sim.ids()
    assert "shared.filesystem.main" in sim.ids()
    outputs = sim.json("output")
    assert "train.id" not in outputs and outputs["shared.id"] == sim.ids()["shared.filesystem.main"]
    assert sim.plan() == {"train.cluster.main": "create", "train.pool.gpu": "create"}


def test_refresh_preview_shows_drift_and_writes_nothing(applied: Sim) -> None:
    sim = applied
    ids = sim.ids()
    path = sim.root / "cloud" / "objects" / f"{ids['shared.filesystem.main']}.json"
    obj = json.loads(path.read_text())
    obj["inputs"]["size_gb"] = 50  # resized outside mlplat
    path.write_text(json.dumps(obj))
    (sim.root / "cloud" / "objects" / f"{ids['train.pool.gpu']}.json").unlink()  # deleted outside mlplat
    serial = sim.serial()

    data = sim.json("refresh", "--preview")
    assert data["drift"] == {"shared.filesystem.main": {"size_gb": [10, 50]}, "train.pool.gpu": "gone"}
    assert data["preview"] is True and data["serial"] == serial
    text = sim.run("refresh", "--preview").stdout
    assert "A refresh would record 2 resource(s)" in text
    assert "shared.filesystem.main: size_gb: 10 → 50" in text
    assert "train.pool.gpu: deleted outside mlplat" in text
    assert sim.run("refresh", "--preview", "--detailed-exitcode", check=False).returncode == 2
    assert sim.serial() == serial  # nothing written
    assert sim.ids() == ids

    assert sim.json("refresh")["drift"] == data["drift"]
    assert sim.serial() > serial
    assert "train.pool.gpu" not in sim.ids()
    assert sim.json("refresh", "--preview")["drift"] == {}
    assert sim.run("refresh", "--preview", "--detailed-exitcode", check=False).returncode == 0


# -- local ------------------------------------------------------------------------------------------------------
def test_local_target_refresh_preview_and_destroy_target(quickstart_dir: Path) -> None:
    """On the local target: apply only the storage (no model servers start), see its directory deleted outside
    mlplat in `refresh --preview` without recording it, then delete it with `destroy --target`."""
    def mlplat(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_mlplat(*args, "-f", "quickstart.yaml", cwd=quickstart_dir, check=check)

    plan = json.loads(mlplat("preview", "--target", "shared", "--json").stdout)
    assert {c["address"] for c in plan["changes"]} == {"shared.directory.main"}
    assert "iris.router.main" in plan["left_out"]
    mlplat("apply", "--target", "shared", "--yes")
    listed = json.loads(mlplat("state", "list", "--json").stdout)
    assert [r["address"] for r in listed["resources"]] == ["shared.directory.main"]
    folder = Path(listed["resources"][0]["id"])
    assert folder.is_dir()

    shutil.rmtree(folder)
    preview = json.loads(mlplat("refresh", "--preview", "--json").stdout)
    assert preview["drift"] == {"shared.directory.main": "gone"}
    assert json.loads(mlplat("state", "list", "--json").stdout)["serial"] == listed["serial"]
    assert mlplat("preview", "--target", "shared", "--json").stdout.count('"$gone"') == 1  # still recorded

    mlplat("apply", "--target", "shared", "--yes")  # re-creates it
    assert folder.is_dir()
    mlplat("destroy", "--target", "shared", "--yes")
    assert not folder.exists()
    assert mlplat("state", "list").stdout == ""
