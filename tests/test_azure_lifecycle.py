"""stacks/azure.yaml through the CLI against the fake Azure, as a user would run it: create → no-op → a traffic
change in place → a model change → drift made in the portal shown and corrected → destroy leaves nothing; the
minted endpoint key never printed; and the quickstart platform moved local → azure → local under load through its
local front door (the gateway sends the endpoint's key as a bearer token to its scoring URI)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from front_door_load import Load

from conftest import STACKS, AzureWorkspace, require_module, run_mlplat
from local_processes import kill_all, servers_under

require_module("azure.ai.ml", "the azure extra is part of the test extra")

PASSPHRASE = "azure lifecycle state passphrase"


class AzureStack:
    """A stack file in a temporary directory pointed at the fake Azure, and its CLI."""

    def __init__(self, directory: Path, workspace: AzureWorkspace, doc: dict[str, Any], name: str = "azure") -> None:
        self.directory, self.workspace, self.server = directory, workspace, workspace.server
        self.path = directory / f"{name}.yaml"
        shutil.copytree(STACKS / "models", directory / "models", dirs_exist_ok=True)
        shutil.copytree(STACKS / "data", directory / "data", dirs_exist_ok=True)
        self.doc = doc
        self.write()
        self.env = {"MLPLAT_AZURE_SUBSCRIPTION": self.server.subscription, "MLPLAT_STATE_PASSPHRASE": PASSPHRASE}

    def write(self) -> None:
        self.path.write_text(yaml.safe_dump(self.doc, sort_keys=False))

    def cli(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run_mlplat(*args, "-f", str(self.path), cwd=self.directory, env=self.env, check=check,
                          timeout=timeout)

    def changes(self) -> dict[str, str]:
        plan = json.loads(self.cli("preview", "--json").stdout)
        return {c["address"]: c["action"] for c in plan["changes"] if c["action"] != "noop"}

    def outputs(self) -> dict[str, Any]:
        return json.loads(self.cli("output", "--json").stdout)  # type: ignore[no-any-return]

    def endpoint(self, name: str) -> dict[str, Any]:
        return self.server.objects["online_endpoints"][name.lower()]  # type: ignore[no-any-return]


def azure_doc(workspace: AzureWorkspace) -> dict[str, Any]:
    doc = yaml.safe_load((STACKS / "azure.yaml").read_text())
    settings = doc["targets"]["azure"]
    settings.update(workspace.settings(subscription=settings["subscription"]))  # keep ${env:...}
    return doc


def test_azure_stack_life_cycle_through_the_cli(tmp_path: Path, azure_workspace: AzureWorkspace) -> None:
    from azure_fake.console import console_objects

    stack = AzureStack(tmp_path, azure_workspace, azure_doc(azure_workspace))
    server = azure_workspace.server

    created = stack.cli("apply", "--yes")
    outputs = stack.outputs()
    assert outputs["iris.url"] == "https://vision-iris.eastus.inference.ml.azure.com/score"
    assert outputs["models.image.iris-server"] == "mlplatacr.azurecr.io/vision/iris-server"
    assert outputs["train.compute.big"] and outputs["shared.datastore"] == "vision_shared"
    key = server.objects["endpoint_keys"]["vision-iris"]["primaryKey"]
    # the minted key is sealed: never on the screen, in --json, or in the state files in plaintext
    assert outputs["iris.key"] != key and key not in json.dumps(outputs) and key not in created.stdout
    assert not [p for p in (tmp_path / ".mlplat").rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
    live = stack.endpoint("vision-iris")["properties"]
    assert sorted(live["traffic"].values()) == [10, 90] and live["authMode"] == "Key"
    assert len(server.deployments("vision-iris")) == 2
    assert sum(console_objects(server).values()) == 12
    assert stack.changes() == {}
    assert "No changes" in stack.cli("preview").stdout

    # a traffic change is one endpoint update: no deployment made or deleted
    puts = server.count("OnlineDeployments.CreateOrUpdate") + server.count("OnlineDeployments.Delete")
    stack.doc["serving"][0]["paths"]["production"]["weight"] = 70
    stack.doc["serving"][0]["paths"]["experimental"]["weight"] = 30
    stack.write()
    assert stack.changes() == {"iris.endpoint_traffic.main": "update"}
    stack.cli("apply", "--yes")
    assert server.count("OnlineDeployments.CreateOrUpdate") + server.count("OnlineDeployments.Delete") == puts
    assert sorted(stack.endpoint("vision-iris")["properties"]["traffic"].values()) == [30, 70]

    # a path's model change: a new deployment, the traffic moved to it, the old one deleted
    stack.doc["serving"][0]["paths"]["experimental"]["model"] = "iris:1"
    stack.write()
    changes = stack.changes()
    assert changes["iris.online_deployment.experimental"] == "replace", changes
    stack.cli("apply", "--yes")
    deployments = server.deployments("vision-iris")
    assert len(deployments) == 2, deployments
    assert sorted(stack.endpoint("vision-iris")["properties"]["traffic"].values()) == [30, 70]
    assert all(sum(t.values()) == 100 for t in server.traffic_log["vision-iris"][1:]), server.traffic_log
    assert stack.changes() == {}

    # drift made in the portal: the split set by hand shows in preview, and apply puts it back
    names = sorted(stack.endpoint("vision-iris")["properties"]["traffic"])
    server.set_traffic("vision-iris", {names[0]: 50, names[1]: 50})
    preview = stack.cli("preview").stdout
    assert "iris.endpoint_traffic.main" in preview and "changed outside mlplat" in preview, preview
    stack.cli("apply", "--yes")
    assert sorted(stack.endpoint("vision-iris")["properties"]["traffic"].values()) == [30, 70]
    assert stack.changes() == {}

    stack.cli("destroy", "--yes")
    assert console_objects(server) == Counter()


# -- migration: the quickstart platform local → azure → local under load -------------------------------------------


COMPONENTS = ("train", "shared", "models", "iris")


def quickstart_doc(workspace: AzureWorkspace) -> dict[str, Any]:
    """stacks/quickstart.yaml with an azure target on the fake, and iris behind a local front door shifting
    10 → 50 → 100 % in 1 s windows; `auth: key`: on local a key the stack gives, on azure one Azure mints."""
    doc = yaml.safe_load((STACKS / "quickstart.yaml").read_text())
    doc["targets"] = {"azure": workspace.settings(serving_image="mlplatacr.azurecr.io/quickstart/iris:latest")}
    doc["serving"][0]["front_door"] = ["local"]
    doc["serving"][0]["migration"] = {"steps": [10, 50, 100], "window_s": 1}
    return doc


def migrate_under_load(stack: AzureStack, *args: str) -> tuple[dict[str, Any], Load]:
    url = stack.outputs()["iris.front_door.local.url"]
    with Load(url, threads=4) as load:
        time.sleep(1.0)
        out = stack.cli("migrate", *args, "--yes", "--json", timeout=400).stdout
        time.sleep(1.0)
    return json.loads(out), load


def test_quickstart_round_trip_local_azure_local(tmp_path: Path, azure_workspace: AzureWorkspace) -> None:
    from azure_fake.console import console_objects

    stack = AzureStack(tmp_path, azure_workspace, quickstart_doc(azure_workspace), "quickstart")
    server = azure_workspace.server
    local_root = tmp_path / ".mlplat" / "quickstart" / "local"
    stack.cli("apply", "--yes")
    try:
        url = stack.outputs()["iris.url"]
        front_door = servers_under(local_root / "front_doors")
        assert len(front_door) == 1, front_door

        report, load = migrate_under_load(stack, *COMPONENTS, "--to", "azure")
        print(f"\n[local → azure] failed {len(load.failures)} of {len(load.served) + len(load.failures)}; "
              f"per route {dict(load.routes())}; phases {json.dumps(report.get('migrations'), sort_keys=True)}")
        assert load.failures == [], load.failures[:5]
        assert set(report["migrations"]) == set(COMPONENTS)
        routes = load.routes()
        assert routes["local"] > 0 and routes["azure"] > 0, routes
        assert load.last(30) == Counter({"azure": 30}), "after the move every request reaches Azure ML"
        assert stack.outputs()["iris.url"] == url, "the front door's URL survives the move"
        assert server.count("Scoring.Score") > 0
        assert servers_under(local_root / "serving") == {}
        assert "No changes" in stack.cli("preview").stdout

        report, load = migrate_under_load(stack, *COMPONENTS, "--to", "local")
        print(f"[azure → local] failed {len(load.failures)} of {len(load.served) + len(load.failures)}; "
              f"per route {dict(load.routes())}")
        assert load.failures == [], load.failures[:5]
        assert load.last(30) == Counter({"local": 30})
        assert stack.outputs()["iris.url"] == url
        assert servers_under(local_root / "serving"), "the endpoint serves on local again"
        assert console_objects(server) == Counter(), "nothing of the platform is left on azure"
        assert "No changes" in stack.cli("preview").stdout
    finally:
        stack.cli("destroy", "--yes", check=False)
        left = servers_under(tmp_path)
        kill_all(tmp_path)
        assert not left, f"destroy left server processes: {left}"


# -- migration: aws → azure (a moto server and the fake Azure) -----------------------------------------------------


def test_migration_aws_to_azure_under_load(tmp_path: Path, azure_workspace: AzureWorkspace, aws_account: Any) -> None:
    """The quickstart platform on aws behind a local front door, moved whole to azure with traffic shifted in
    steps: no failed request, nothing left on aws, the artifacts copied with their sha256."""
    from azure_fake.console import console_objects

    from contract_targets import aws_objects

    doc = quickstart_doc(azure_workspace)
    doc["target"] = "aws"
    doc["targets"]["aws"] = aws_account.settings()
    stack = AzureStack(tmp_path, azure_workspace, doc, "quickstart")
    # the front door signs for SageMaker from the standard chain, through a shared-credentials file
    credentials = tmp_path / "aws-credentials"
    credentials.write_text("[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    credentials.chmod(0o600)
    stack.env.update({**aws_account.env(), "AWS_SHARED_CREDENTIALS_FILE": str(credentials)})
    stack.cli("apply", "--yes")
    try:
        url = stack.outputs()["iris.url"]
        report, load = migrate_under_load(stack, *COMPONENTS, "--to", "azure")
        print(f"\n[aws → azure] failed {len(load.failures)} of {len(load.served) + len(load.failures)}; "
              f"per route {dict(load.routes())}; phases {json.dumps(report.get('migrations'), sort_keys=True)}")
        assert load.failures == [], load.failures[:5]
        routes = load.routes()
        assert routes["aws"] > 0 and routes["azure"] > 0, routes
        assert load.last(30) == Counter({"azure": 30})
        outputs = stack.outputs()
        assert outputs["iris.url"] == url
        for ref in ("iris:1", "iris:2"):
            assert outputs[f"models.model.{ref}"].startswith("https://mlplatstore.blob.core.windows.net/"), outputs
        assert aws_objects(aws_account) == Counter(), "nothing of the platform is left on aws"
        assert sum(console_objects(azure_workspace.server).values()) > 0
        assert "No changes" in stack.cli("preview").stdout
    finally:
        stack.cli("destroy", "--yes", check=False)
        left = servers_under(tmp_path)
        kill_all(tmp_path)
        assert not left, f"destroy left server processes: {left}"
    assert console_objects(azure_workspace.server) == Counter()
