"""stacks/onprem.yaml through the CLI against the fake Kubernetes API server, as a user would run it: create → no-op
→ a weight change that patches only the HTTPRoute → a model change that rolls one Deployment → a `kubectl edit`
shown as drift, refused as a field-manager conflict, then taken back with force_conflicts → destroy leaves nothing;
and the quickstart platform moved local → onprem → local under load through its local front door.

The "kubectl" here is the real kubernetes client with another field manager, never the plugin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from stack_file import CliStack, quickstart_doc, round_trip

from conftest import FAKE_CLOUD_TIMEOUTS, STACKS, require_module

require_module("kubernetes", "the onprem extra is part of the test extra")

GATEWAY = "gateway.networking.k8s.io/v1"
FAST = {"poll_interval_s": 0.02, "timeouts": FAKE_CLOUD_TIMEOUTS}


class OnpremStack(CliStack):
    """A stack file in a temporary directory pointed at the fake cluster (MLPLAT_KUBECONFIG), and its CLI."""

    def __init__(self, directory: Path, cluster: Any, doc: dict[str, Any], name: str = "onprem") -> None:
        self.cluster, self.server = cluster, cluster.server
        super().__init__(directory, doc, name, {"MLPLAT_KUBECONFIG": str(cluster.kubeconfig)})

    def kubectl(self) -> Any:
        """The real client as `kubectl` would use it (its own field manager)."""
        from kubernetes import config
        from kubernetes.dynamic import DynamicClient

        return DynamicClient(config.new_client_from_config(config_file=str(self.cluster.kubeconfig)))

    def route(self, namespace: str, name: str) -> dict[str, Any]:
        found = self.server.get(GATEWAY, "HTTPRoute", name, namespace)
        assert found is not None, f"no HTTPRoute {namespace}/{name}"
        return found

    def leftovers(self, stack: str) -> list[str]:
        """Every object in the fake carrying this stack's label, or in its namespace (the built-in ones aside)."""
        found = []
        for obj in (o for objects in list(self.server.store.values()) for o in list(objects.values())):
            meta = obj.get("metadata", {})
            if (meta.get("labels") or {}).get("mlplat.dev/stack") == stack or \
                    meta.get("namespace") == f"mlplat-{stack}" or meta.get("name") == f"mlplat-{stack}":
                found.append(f"{obj.get('kind')} {meta.get('namespace', '')}/{meta.get('name')}")
        return found


def deployment(server: Any, namespace: str, path: str) -> dict[str, Any]:
    """The one Deployment of an endpoint path (its name carries the model's hash)."""
    found = [d for d in server.objects("apps", "deployments", namespace)
             if d["metadata"].get("labels", {}).get("mlplat.dev/path") == path]
    assert len(found) == 1, [d["metadata"]["name"] for d in found]
    return found[0]


def weights(route: dict[str, Any]) -> dict[str, int]:
    return {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}


def onprem_doc(cluster: Any) -> dict[str, Any]:
    doc = yaml.safe_load((STACKS / "onprem.yaml").read_text())
    doc["targets"]["onprem"].update(FAST)  # keeps kubeconfig: ${env:MLPLAT_KUBECONFIG}
    return doc


def test_onprem_stack_life_cycle_through_the_cli(tmp_path: Path, kube_cluster: Any) -> None:
    stack = OnpremStack(tmp_path, kube_cluster, onprem_doc(kube_cluster))
    server = kube_cluster.server
    namespace = "mlplat-vision"

    # create
    preview = stack.cli("preview").stdout
    assert "iris.http_route.main" in preview and "gateway_api" in preview, preview  # discovery shown
    stack.cli("apply", "--yes")
    outputs = stack.outputs()
    assert outputs["iris.url"] == f"{server.gateway_url}/{namespace}/iris"
    assert outputs["models.model.iris:1"].startswith(f"oci://models.{namespace}.svc.cluster.local:5000/models/iris:1@")
    assert outputs["shared.nfs"] == f"nfs.lab.internal:/exports/mlplat/{namespace}/shared"
    assert server.get("v1", "Namespace", namespace, "") is not None
    assert weights(stack.route(namespace, "iris")) == {"iris-production": 90, "iris-experimental": 10}
    pod = deployment(server, namespace, "experimental")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    quota = server.get("v1", "ResourceQuota", "train-big", namespace)
    assert quota["spec"]["hard"] == {"requests.nvidia.com/gpu": "16"}

    # no-op
    assert stack.changes() == {}
    assert "No changes" in stack.cli("preview").stdout

    # a weight change is one apply of the HTTPRoute: no Deployment is touched
    applied = server.count("apply", "deployments")
    stack.doc["serving"][0]["paths"]["production"]["weight"] = 70
    stack.doc["serving"][0]["paths"]["experimental"]["weight"] = 30
    stack.write()
    assert stack.changes() == {"iris.http_route.main": "update"}
    stack.cli("apply", "--yes")
    assert server.count("apply", "deployments") == applied
    assert weights(stack.route(namespace, "iris")) == {"iris-production": 70, "iris-experimental": 30}
    assert stack.changes() == {}

    # a path's model change is a new Deployment up beside the old one, then the old one deleted
    old = deployment(server, namespace, "experimental")["metadata"]["name"]
    stack.doc["serving"][0]["paths"]["experimental"]["model"] = "iris:1"
    stack.write()
    assert stack.changes() == {"iris.deployment.experimental": "replace"}
    stack.cli("apply", "--yes")
    new = deployment(server, namespace, "experimental")
    assert new["metadata"]["name"] != old
    assert {"name": "MODEL_URI", "value": outputs["models.model.iris:1"]} in \
        new["spec"]["template"]["spec"]["containers"][0]["env"]
    assert stack.changes() == {}

    # kubectl edit: drift in preview; apply refuses to take the other manager's field, force_conflicts takes it
    kubectl = stack.kubectl()
    routes = kubectl.resources.get(api_version=GATEWAY, kind="HTTPRoute")
    live = stack.route(namespace, "iris")
    rules = live["spec"]["rules"]
    rules[0]["backendRefs"][0]["weight"], rules[0]["backendRefs"][1]["weight"] = 50, 50
    kubectl.patch(routes, body={"spec": {"rules": rules}}, name="iris", namespace=namespace,
                  content_type="application/merge-patch+json", field_manager="kubectl-edit")
    preview = stack.cli("preview").stdout
    assert "iris.http_route.main" in preview and "changed outside mlplat" in preview, preview
    refused = stack.cli("apply", "--yes", check=False)
    assert refused.returncode != 0
    assert "iris.http_route.main" in refused.stderr and "kubectl-edit" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    stack.doc["targets"]["onprem"]["force_conflicts"] = True
    stack.write()
    stack.cli("apply", "--yes")
    assert weights(stack.route(namespace, "iris")) == {"iris-production": 70, "iris-experimental": 30}
    assert stack.changes() == {}

    # destroy leaves nothing of the stack: its namespace, the cluster-scoped volume and priority classes
    stack.cli("destroy", "--yes")
    assert stack.leftovers("vision") == []
    assert json.loads(stack.cli("state", "list", "--json").stdout)["resources"] == []


# -- migration: the quickstart platform local → onprem → local under load ----------------------------------------


def test_quickstart_round_trip_local_onprem_local(tmp_path: Path, kube_cluster: Any) -> None:
    doc = quickstart_doc({"onprem": {"kubeconfig": str(kube_cluster.kubeconfig), "nfs_server": "10.0.0.2", **FAST}})
    stack = OnpremStack(tmp_path, kube_cluster, doc, "quickstart")

    def arrived(outputs: dict[str, Any]) -> None:
        assert outputs["iris.engine"] == "gateway"
        assert outputs["models.model.iris:1"].startswith("oci://models.mlplat-quickstart.svc.cluster.local:5000/")
        assert sum(kube_cluster.server.served.values()) > 0, "the cluster served requests"

    def left_nothing() -> None:
        assert stack.leftovers("quickstart") == [], "nothing of the platform is left on the cluster"

    round_trip(stack, "onprem", arrived=arrived, left_nothing=left_nothing)
