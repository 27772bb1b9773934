"""stacks/azure.yaml through the CLI against the fake Azure, as a user would run it: create → no-op → a traffic
change in place → a model change → drift made in the portal shown and corrected → destroy leaves nothing; the
minted endpoint key never printed; and the quickstart platform moved local → azure → local under load through its
local front door (the gateway sends the endpoint's key as a bearer token to its scoring URI)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from stack_file import CliStack, moved, quickstart_doc, round_trip, torn_down

from conftest import STACKS, AzureWorkspace, require_module

require_module("azure.ai.ml", "the azure extra is part of the test extra")

PASSPHRASE = "azure lifecycle state passphrase"


class AzureStack(CliStack):
    """A stack file in a temporary directory pointed at the fake Azure, and its CLI."""

    def __init__(self, directory: Path, workspace: AzureWorkspace, doc: dict[str, Any], name: str = "azure") -> None:
        self.workspace, self.server = workspace, workspace.server
        super().__init__(directory, doc, name, {"MLPLAT_AZURE_SUBSCRIPTION": self.server.subscription,
                                                "MLPLAT_STATE_PASSPHRASE": PASSPHRASE}, ("models", "data"))

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


def azure_quickstart_doc(workspace: AzureWorkspace) -> dict[str, Any]:
    """The quickstart on local with an azure target on the fake (`auth: key`: on local a key the stack gives, on
    azure one Azure mints)."""
    return quickstart_doc({"azure": workspace.settings(serving_image="mlplatacr.azurecr.io/quickstart/iris:latest")})


def test_quickstart_round_trip_local_azure_local(tmp_path: Path, azure_workspace: AzureWorkspace) -> None:
    from azure_fake.console import console_objects

    stack = AzureStack(tmp_path, azure_workspace, azure_quickstart_doc(azure_workspace), "quickstart")
    server = azure_workspace.server

    def arrived(outputs: dict[str, Any]) -> None:
        assert server.count("Scoring.Score") > 0, "Azure ML served requests"

    def left_nothing() -> None:
        assert console_objects(server) == Counter(), "nothing of the platform is left on azure"

    round_trip(stack, "azure", arrived=arrived, left_nothing=left_nothing)


# -- migration: aws → azure (a moto server and the fake Azure) -----------------------------------------------------


def test_migration_aws_to_azure_under_load(tmp_path: Path, azure_workspace: AzureWorkspace, aws_account: Any) -> None:
    """The quickstart platform on aws behind a local front door, moved whole to azure with traffic shifted in
    steps: no failed request, nothing left on aws, the artifacts copied with their sha256."""
    from azure_fake.console import console_objects

    from contract_targets import aws_objects

    doc = azure_quickstart_doc(azure_workspace)
    doc["target"] = "aws"
    doc["targets"]["aws"] = aws_account.settings()
    stack = AzureStack(tmp_path, azure_workspace, doc, "quickstart")
    # the front door signs for SageMaker from the standard chain, through a shared-credentials file
    credentials = tmp_path / "aws-credentials"
    credentials.write_text("[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    credentials.chmod(0o600)
    stack.env.update({**aws_account.env(), "AWS_SHARED_CREDENTIALS_FILE": str(credentials)})
    stack.cli("apply", "--yes")
    with torn_down(stack):
        moved(stack, "aws", "azure", stack.outputs()["iris.url"])
        outputs = stack.outputs()
        for ref in ("iris:1", "iris:2"):
            assert outputs[f"models.model.{ref}"].startswith("https://mlplatstore.blob.core.windows.net/"), outputs
        assert aws_objects(aws_account) == Counter(), "nothing of the platform is left on aws"
        assert sum(console_objects(azure_workspace.server).values()) > 0
        assert "No changes" in stack.cli("preview").stdout
    assert console_objects(azure_workspace.server) == Counter()
