"""stacks/gcp.yaml through the CLI against the fake Google Cloud server, as a user would run it: create → no-op →
a traffic change in place → a model change → drift made in the console shown and corrected → destroy leaves
nothing; and the quickstart platform moved local → gcp → local under load through its local front door.

The "console" here is the real Vertex AI client (what `gcloud ai endpoints update` calls), never the plugin."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from stack_file import CliStack, quickstart_doc, round_trip

from conftest import STACKS, GcpProject, require_module
from local_processes import servers_under

require_module("google.cloud.aiplatform_v1", "the gcp extra is part of the test extra")

#: what a stack leaves in the fake besides buckets: every collection of objects the plugin makes
PLATFORM_COLLECTIONS = ("endpoints", "model_versions", "persistentResources", "instances", "repositories",
                        "monitoring_jobs", "gcs_objects")


class GcpStack(CliStack):
    """A stack file in a temporary directory pointed at the fake server, and its CLI."""

    def __init__(self, directory: Path, project: GcpProject, doc: dict[str, Any], name: str = "gcp") -> None:
        self.project, self.server = project, project.server
        super().__init__(directory, doc, name, {"MLPLAT_GCP_BUCKET": project.bucket}, ("models", "data"))

    def endpoint_client(self) -> Any:
        import google.auth
        from google.api_core.client_options import ClientOptions
        from google.cloud import aiplatform_v1

        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        return aiplatform_v1.EndpointServiceClient(credentials=credentials, transport="rest",
                                                   client_options=ClientOptions(api_endpoint=self.server.url))

    def leftovers(self) -> dict[str, list[str]]:
        return {c: sorted(self.server.objects.get(c, {})) for c in PLATFORM_COLLECTIONS
                if self.server.objects.get(c)}


def gcp_doc(project: GcpProject) -> dict[str, Any]:
    doc = yaml.safe_load((STACKS / "gcp.yaml").read_text())
    settings = doc["targets"]["gcp"]
    settings.update(project.settings(bucket=settings["bucket"]))  # keep ${env:MLPLAT_GCP_BUCKET}
    return doc


def test_gcp_stack_life_cycle_through_the_cli(tmp_path: Path, gcp_project: GcpProject) -> None:
    stack = GcpStack(tmp_path, gcp_project, gcp_doc(gcp_project))
    server = gcp_project.server

    # create
    assert "will be created" in stack.cli("preview").stdout or stack.changes()
    stack.cli("apply", "--yes")
    outputs = stack.outputs()
    endpoint = outputs["iris.name"]
    assert endpoint == f"projects/{server.project}/locations/{server.region}/endpoints/vision-iris"
    assert outputs["iris.url"] == f"{server.url}/v1/{endpoint}:predict"
    registry = f"{server.region}-docker.pkg.dev/{server.project}/vision-models"
    assert outputs["models.image.iris-server"] == f"{registry}/iris-server"
    assert outputs["models.model.iris:1"].startswith(f"gs://{gcp_project.bucket}/mlplat/models/iris/1/")
    assert "@" in outputs["models.version.iris:1"] and "@" in outputs["models.version.iris:2"]
    assert outputs["shared.nfs"].endswith(":/share1")
    seen = stack.endpoint_client().get_endpoint(name=endpoint)
    assert sorted(seen.traffic_split.values()) == [10, 90]
    assert len(seen.deployed_models) == 2
    assert seen.predict_request_response_logging_config.sampling_rate == pytest.approx(0.2)

    # no-op
    assert stack.changes() == {}
    assert "No changes" in stack.cli("preview").stdout

    # a traffic change is an UpdateEndpoint of the split only
    deploys = server.count("DeployModel") + server.count("UndeployModel")
    stack.doc["serving"][0]["paths"]["production"]["weight"] = 70
    stack.doc["serving"][0]["paths"]["experimental"]["weight"] = 30
    stack.write()
    assert stack.changes() == {"iris.traffic_split.main": "update"}
    stack.cli("apply", "--yes")
    assert server.count("DeployModel") + server.count("UndeployModel") == deploys
    assert sorted(stack.endpoint_client().get_endpoint(name=endpoint).traffic_split.values()) == [30, 70]
    assert stack.changes() == {}

    # a path's model change: a new deployed model, the traffic moved to it, the old one undeployed
    stack.doc["serving"][0]["paths"]["experimental"]["model"] = "iris:1"
    stack.write()
    changes = stack.changes()
    assert changes["iris.deployed_model.experimental"] == "replace", changes
    stack.cli("apply", "--yes")
    seen = stack.endpoint_client().get_endpoint(name=endpoint)
    assert len(seen.deployed_models) == 2, "the old deployed model is undeployed"
    assert {f"{m.model}@{m.model_version_id}" for m in seen.deployed_models} == {outputs["models.version.iris:1"]}
    assert sorted(seen.traffic_split.values()) == [30, 70]
    assert stack.changes() == {}

    # drift made in the console: the split changed by hand shows in preview, and apply puts it back
    from google.protobuf import field_mask_pb2

    client = stack.endpoint_client()
    seen = client.get_endpoint(name=endpoint)
    ids = list(seen.traffic_split)
    seen.traffic_split = {ids[0]: 50, ids[1]: 50}
    client.update_endpoint(endpoint=seen, update_mask=field_mask_pb2.FieldMask(paths=["traffic_split"]))
    preview = stack.cli("preview").stdout
    assert "iris.traffic_split.main" in preview and "changed outside mlplat weights.production" in preview, preview
    stack.cli("apply", "--yes")
    assert sorted(client.get_endpoint(name=endpoint).traffic_split.values()) == [30, 70]
    assert stack.changes() == {}

    # destroy leaves nothing but the bucket the stack was given
    stack.cli("destroy", "--yes")
    assert stack.leftovers() == {}
    assert json.loads(stack.cli("state", "list", "--json").stdout)["resources"] == []


# -- migration: the quickstart platform local → gcp → local under load -------------------------------------------


def test_quickstart_round_trip_local_gcp_local(tmp_path: Path, gcp_project: GcpProject) -> None:
    """The quickstart platform local → gcp → local under load, its storage at Filestore's minimum (1 TiB: local
    takes any size); clients authenticate at the gateway, which signs for Vertex AI: `auth` stays the gateway's."""
    doc = quickstart_doc({"gcp": gcp_project.settings()})
    doc["storage"][0]["size_gb"] = 1024
    stack = GcpStack(tmp_path, gcp_project, doc, "quickstart")

    def arrived(outputs: dict[str, Any]) -> None:
        assert outputs["iris.name"].endswith("/endpoints/quickstart-iris")
        for ref in ("iris:1", "iris:2"):
            assert outputs[f"models.model.{ref}"].startswith(f"gs://{gcp_project.bucket}/"), outputs
        assert gcp_project.server.count("RawPredict") > 0, "Vertex AI served requests"

    def left_nothing() -> None:
        assert stack.leftovers() == {}, "nothing of the platform is left on gcp"

    round_trip(stack, "gcp", arrived=arrived, left_nothing=left_nothing)


# -- the local gateway's Google signing ------------------------------------------------------------------------


def test_gateway_route_signs_for_vertex_with_adc(tmp_path: Path, gcp_project: GcpProject) -> None:
    """A `sign: {kind: google}` route: a bearer token from Application Default Credentials (the fake's token
    endpoint), the request sent to the route's URL itself (`:rawPredict`); without credentials, a 502 naming
    the cause. Other keys on a google sign are refused."""
    import os
    import urllib.error
    import urllib.request

    from mlplat_plugins.local.runtime.router import ConfigError, parse_route

    server = gcp_project.server
    with pytest.raises(ConfigError, match="takes no other keys"):
        parse_route({"path": "gcp", "url": f"{server.url}/x", "sign": {"kind": "google", "region": "x"}}, 0)
    # an endpoint with a model taking all traffic, made with the real clients through the plugin
    stack = GcpStack(tmp_path, gcp_project, gcp_doc(gcp_project))
    del stack.doc["clusters"], stack.doc["storage"], stack.doc["serving"][0]["monitoring"]
    stack.doc["serving"][0]["paths"] = {"production": {"model": "iris:1", "weight": 100}}
    stack.write()
    stack.cli("apply", "--yes")
    # the route a front door makes of the endpoint's upstream (the plugin's lowering: the migration test above)
    upstream = {"url": f"{server.url}/v1/{stack.outputs()['iris.name']}:rawPredict", "sign": {"kind": "google"}}

    def route_once(env: dict[str, str]) -> tuple[int, bytes]:
        config = tmp_path / "router.json"
        config.write_text(json.dumps({"endpoint": "iris", "mode": "split", "routes": [
            {"path": "gcp", "url": upstream["url"], "weight": 100, "sign": upstream["sign"]}]}))
        runtime = tmp_path / "router-runtime.json"
        runtime.unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, "-m", "mlplat_plugins.local.runtime.router", "--config",
                                 str(config), "--runtime-file", str(runtime), "--kind", "front_door", "--quiet"],
                                env=env)
        try:
            deadline = time.monotonic() + 20
            while not runtime.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            port = json.loads(runtime.read_text())["port"]
            request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations",
                                             data=b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}')
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    return answer.status, answer.read()
            except urllib.error.HTTPError as err:
                return err.code, err.read()
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    before = server.count("RawPredict")
    status, body = route_once(dict(os.environ))
    assert status == 200, body
    assert json.loads(body)["predictions"] and server.count("RawPredict") == before + 1
    assert server.count("Token") >= 1, "the token came from the service account key's token endpoint"
    no_adc = {k: v for k, v in os.environ.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"}
    status, body = route_once({**no_adc, "HOME": str(tmp_path)})
    assert status == 502 and b"Application Default Credentials" in body, body
    assert server.count("RawPredict") == before + 1, "an unsigned request never reaches Vertex AI"
    stack.cli("destroy", "--yes")


def test_hybrid_endpoint_on_gcp_serves_a_local_registry_through_gcs(tmp_path: Path, gcp_project: GcpProject) -> None:
    """Registry on this machine, endpoint on Vertex AI: the core copies each artifact into the bucket (sha256
    checked), and the endpoint's own Model Registry version is uploaded from that copy."""
    doc = yaml.safe_load((STACKS / "quickstart.yaml").read_text())
    doc["targets"] = {"gcp": gcp_project.settings(serving_image="us-docker.pkg.dev/p/serving/iris:latest")}
    doc["serving"][0].update(target="gcp", auth="iam")
    del doc["clusters"], doc["storage"]
    stack = GcpStack(tmp_path, gcp_project, doc, "hybrid")
    server = gcp_project.server
    changes = stack.changes()
    assert changes["iris.model_version.production"] == "create" and changes["iris.deployed_model.production"] == \
        "create", changes
    assert {a for a, act in changes.items() if ".artifact_copy." in a} == {"iris.artifact_copy.iris:1",
                                                                         "iris.artifact_copy.iris:2"}, changes
    stack.cli("apply", "--yes")
    try:
        copies = server.gcs_objects(gcp_project.bucket)
        assert len(copies) == 2 and all((o.get("metadata") or {}).get("sha256") for o in copies), copies
        versions = server.objects["model_versions"]
        assert len(versions) == 2, versions  # one per path: iris:1 on production, iris:2 on experimental
        uris = {v["artifactUri"] for v in server.objects["model_versions"].values()}
        assert all(u.startswith(f"gs://{gcp_project.bucket}/") for u in uris), uris
        assert sorted(stack.endpoint_client().get_endpoint(name=stack.outputs()["iris.name"]).traffic_split
                      .values()) == [20, 80]
        assert stack.changes() == {}
    finally:
        stack.cli("destroy", "--yes")
    assert stack.leftovers() == {}
    assert servers_under(tmp_path) == {}
