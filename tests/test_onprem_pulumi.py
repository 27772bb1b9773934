"""`mlplat export --format pulumi`: the onprem objects as a Pulumi program, run under pulumi's mocks.

Each exported program is executed in a subprocess with `pulumi.runtime.set_mocks` (no Pulumi CLI, no cluster):
the mock records every resource registration (type token, name, inputs, provider, dependencies), which is compared
with what mlplat lowers (`mlplat export --format json`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pulumi")
pytest.importorskip("pulumi_kubernetes")

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "stacks" / "models"
PYTHON = sys.executable
PROVIDER = "pulumi:providers:kubernetes"
ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"

#: runs a Pulumi program under mocks; prints the registrations as JSON
MOCK_RUNNER = '''
import json, os, runpy, sys
import pulumi
from pulumi.runtime import mocks

program = sys.argv[1]
recorded, deps, urns = [], {}, {}


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args):
        recorded.append({"type": args.typ, "name": args.name, "inputs": args.inputs, "provider": args.provider})
        return [args.name + "-id", args.inputs]

    def call(self, args):
        return {}


class Monitor(mocks.MockMonitor):
    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            deps[request.name] = list(request.dependencies)
            urns[response.urn] = request.name
        return response


pulumi.runtime.set_mocks(Mocks(), project="exported", stack="test", preview=False, monitor=Monitor(Mocks()))


@pulumi.runtime.test
def run():
    sys.path.insert(0, os.path.dirname(program))
    runpy.run_path(program, run_name="__main__")
    return pulumi.Output.from_input(None)


run()
for r in recorded:
    r["depends_on"] = sorted(urns.get(u, u) for u in deps.get(r["name"], []))
print(json.dumps(recorded, default=str))
'''


def _stack(tmp_path: Path, body: str, name: str = "quickstart", other_targets: str = "") -> Path:
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    for file in ("iris-v1.json", "iris-v2.json"):
        shutil.copy(MODELS / file, models / file)
    path = tmp_path / f"{name}.yaml"
    path.write_text("apiVersion: mlplat/v1\n"
                    f"metadata: {{name: {name}}}\n"
                    "target: onprem\n"
                    "targets:\n"
                    "  onprem: {nfs_server: 10.0.0.2, gateway_url: http://gw.example}\n"
                    f"{other_targets}{body}")
    return path


REGISTRY = textwrap.dedent("""\
    registry:
      name: models
      models:
        - {name: iris, version: "1", artifact: models/iris-v1.json}
        - {name: iris, version: "2", artifact: models/iris-v2.json}
    """)
SPLIT = textwrap.dedent("""\
    clusters:
      - name: train
        gpu_pools:
          - {name: cpu, accelerator: cpu, nodes: {min: 1, max: 1}}
          - {name: big, accelerator: h100, gpus_per_node: 8, nodes: {min: 1, max: 2}}
    storage:
      - {name: shared, kind: nas, size_gb: 5, mount_path: /mnt/shared}
    """) + REGISTRY + textwrap.dedent("""\
    serving:
      - name: iris
        paths:
          production: {model: "iris:1", weight: 80}
          experimental: {model: "iris:2", weight: 20}
    """)
SHADOW = REGISTRY + textwrap.dedent("""\
    serving:
      - name: iris
        paths:
          production: {model: "iris:1", weight: 100}
          experimental: {model: "iris:2", mode: shadow, mirror_percent: 25}
    """)


def _cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "provisioner.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd or REPO, env={**os.environ, "NO_COLOR": "1", **(env or {})})


def _export(stack: Path, out: Path) -> subprocess.CompletedProcess:
    done = _cli("export", "--format", "pulumi", "-f", str(stack), "-o", str(out))
    assert done.returncode == 0, done.stderr
    return done


def _lowered(stack: Path) -> dict[str, dict[str, Any]]:
    done = _cli("export", "--format", "json", "-f", str(stack))
    assert done.returncode == 0, done.stderr
    return {r["address"]: r for r in json.loads(done.stdout)["resources"]}


def _run_mocked(program: Path, tmp_path: Path, config: dict[str, str] | None = None) -> list[dict[str, Any]]:
    runner = tmp_path / "run_mocked.py"
    runner.write_text(MOCK_RUNNER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    env["PULUMI_CONFIG"] = json.dumps({f"exported:{k}": v for k, v in (config or {}).items()})
    done = subprocess.run([PYTHON, str(runner), str(program / "__main__.py")], capture_output=True, text=True,
                          timeout=120, cwd=program, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _ints(value: Any) -> Any:
    """Mocks hand numbers back as floats: 8080.0 → 8080."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


def _has_ref(value: Any) -> bool:
    return "$ref" in json.dumps(value)


def _expected_after(lowered: dict[str, dict[str, Any]], address: str) -> set[str]:
    """What a declared object waits for: its edges, a model artifact replaced by what the artifact waits for."""
    found: set[str] = set()
    todo = list(lowered[address]["depends_on"])
    while todo:
        other = lowered[todo.pop()]
        if "manifest" in other["inputs"]:
            found.add(other["address"])
        else:
            todo += other["depends_on"]
    return found


def _by_name(recorded: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in recorded if r["type"] != PROVIDER}


def test_split_stack_program_declares_what_mlplat_lowers(tmp_path: Path) -> None:
    stack = _stack(tmp_path, SPLIT)
    out = tmp_path / "program"
    done = _export(stack, out)
    assert f"wrote {out}/ (pulumi: 5 files)" in done.stderr
    assert "2 model(s) to push" in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["Pulumi.yaml", "README.md", "__main__.py", "automation.py",
                                                      "requirements.txt"]
    for file in ("__main__.py", "automation.py"):
        compile((out / file).read_text(), file, "exec")
    assert "runtime: python" in (out / "Pulumi.yaml").read_text()
    assert "name: mlplat-quickstart" in (out / "Pulumi.yaml").read_text()
    requirements = (out / "requirements.txt").read_text().split()
    assert any(r.startswith("pulumi>=3") for r in requirements)
    assert any(r.startswith("pulumi-kubernetes>=4") for r in requirements)
    readme = (out / "README.md").read_text()
    assert readme.startswith("# mlplat-quickstart") and "\n## Models\n" in readme and "\n    " not in readme
    for step in ("pulumi stack init", "pulumi config set kubeconfig", "pulumi up", "automation.py"):
        assert step in readme

    lowered = _lowered(stack)
    recorded = _run_mocked(out, tmp_path)
    declared = _by_name(recorded)
    manifests = {a: r for a, r in lowered.items() if "manifest" in r["inputs"]}
    assert set(declared) == set(manifests)  # every object, nothing else (the artifacts are no Pulumi resources)
    assert len(declared) == len([r for r in recorded if r["type"] != PROVIDER])  # each once
    assert "models.model_artifact.iris:1" in lowered and "models.model_artifact.iris:1" not in declared

    types = {name: r["type"] for name, r in declared.items()}
    assert types["_stack.onprem.namespace.main"] == "kubernetes:core/v1:Namespace"
    assert types["train.priority_class.big"] == "kubernetes:scheduling.k8s.io/v1:PriorityClass"
    assert types["train.resource_quota.big"] == "kubernetes:core/v1:ResourceQuota"
    assert types["shared.persistent_volume.main"] == "kubernetes:core/v1:PersistentVolume"
    assert types["shared.persistent_volume_claim.main"] == "kubernetes:core/v1:PersistentVolumeClaim"
    assert types["models.deployment.main"] == "kubernetes:apps/v1:Deployment"
    assert types["iris.deployment.production"] == "kubernetes:apps/v1:Deployment"
    assert types["iris.service.production"] == "kubernetes:core/v1:Service"
    assert types["iris.http_route.main"] == ROUTE

    providers = [r for r in recorded if r["type"] == PROVIDER]
    assert len(providers) == 1 and providers[0]["inputs"]["enableServerSideApply"] in (True, "true")
    for name, r in declared.items():
        manifest = manifests[name]["inputs"]["manifest"]
        inputs = _ints(r["inputs"])
        assert inputs["metadata"]["name"] == manifest["metadata"]["name"], name
        assert inputs["metadata"].get("namespace") == manifest["metadata"].get("namespace"), name
        assert r["provider"] and "k8s-onprem" in r["provider"], name  # through the kubeconfig provider
        assert set(r["depends_on"]) == _expected_after(lowered, name), name
        if not _has_ref(manifest):  # the whole object as mlplat applies it
            assert {k: v for k, v in inputs.items() if k not in ("apiVersion", "kind")} == \
                {k: v for k, v in manifest.items() if k not in ("apiVersion", "kind")}, name
    assert declared["train.priority_class.big"]["inputs"]["globalDefault"] is False
    assert declared["_stack.onprem.namespace.main"]["inputs"]["metadata"]["name"] == "mlplat-quickstart"
    assert declared["iris.http_route.main"]["inputs"]["metadata"]["namespace"] == "mlplat-quickstart"
    assert set(declared["iris.http_route.main"]["depends_on"]) == {
        "iris.deployment.production", "iris.deployment.experimental", "iris.service.production",
        "iris.service.experimental"}
    assert set(declared["iris.deployment.production"]["depends_on"]) == {"models.deployment.main",
                                                                        "models.service.main"}

    route = _ints(declared["iris.http_route.main"]["inputs"])
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1" and route["kind"] == "HTTPRoute"
    (rule,) = route["spec"]["rules"]
    weights = {b["name"]: b["weight"] for b in rule["backendRefs"]}
    prod_name = manifests["iris.service.production"]["inputs"]["manifest"]["metadata"]["name"]
    exp_name = manifests["iris.service.experimental"]["inputs"]["manifest"]["metadata"]["name"]
    assert weights == {prod_name: 80, exp_name: 20}
    assert rule["matches"][0]["path"]["value"] == "/mlplat-quickstart/iris"

    # references to the pushed models: their blob URL (content-addressed) and URI, never dropped
    digest = hashlib.sha256((MODELS / "iris-v1.json").read_bytes()).hexdigest()
    pod = declared["iris.deployment.production"]["inputs"]["spec"]["template"]["spec"]
    fetch_url = pod["initContainers"][0]["args"][-1]
    assert fetch_url.startswith("http://models.mlplat-quickstart.svc.cluster.local:5000/") and digest in fetch_url
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["MODEL_URI"] == "oci://models.mlplat-quickstart.svc.cluster.local:5000/models/iris:1"
    assert env["MODEL_FILE"] == "/models/iris-v1.json"
    program = (out / "__main__.py").read_text()
    assert "MODELS" in program and "oras push" in program and digest in program
    assert "models.model_artifact.iris:2" in program


def test_pulumi_config_sets_provider_artifact_values_and_registry_only_stage(tmp_path: Path) -> None:
    stack = _stack(tmp_path, SPLIT)
    out = tmp_path / "program"
    _export(stack, out)
    recorded = _run_mocked(out, tmp_path, {"kubeconfig": "/etc/k/config", "context": "lab",
                                           "models-model-artifact-iris-1-blob-url": "http://mirror/iris-1"})
    (provider,) = [r for r in recorded if r["type"] == PROVIDER]
    assert provider["inputs"]["kubeconfig"] == "/etc/k/config" and provider["inputs"]["context"] == "lab"
    pod = _by_name(recorded)["iris.deployment.production"]["inputs"]["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["args"][-1] == "http://mirror/iris-1"

    staged = _by_name(_run_mocked(out, tmp_path, {"registry-only": "true"}))
    assert {"models.deployment.main", "models.service.main", "shared.persistent_volume_claim.main"} <= set(staged)
    assert not {"iris.deployment.production", "iris.deployment.experimental", "iris.http_route.main"} & set(staged)


def test_shadow_stack_mirrors_with_its_percent(tmp_path: Path) -> None:
    stack = _stack(tmp_path, SHADOW, name="shadowed")
    out = tmp_path / "program"
    _export(stack, out)
    declared = _by_name(_run_mocked(out, tmp_path))
    route = _ints(declared["iris.http_route.main"]["inputs"])
    assert declared["iris.http_route.main"]["type"] == ROUTE
    (rule,) = route["spec"]["rules"]
    mirrors = [f["requestMirror"] for f in rule["filters"] if f["type"] == "RequestMirror"]
    assert len(mirrors) == 1 and mirrors[0]["percent"] == 25
    assert mirrors[0]["backendRef"]["name"].startswith("iris-experimental")
    assert [b["weight"] for b in rule["backendRefs"]] == [100]
    assert route["metadata"]["namespace"] == "mlplat-shadowed"


def test_other_targets_are_left_out_and_said_so(tmp_path: Path) -> None:
    stack = _stack(tmp_path, textwrap.dedent("""\
        clusters:
          - name: train
            gpu_pools: [{name: cpu, accelerator: cpu, nodes: {min: 1, max: 1}}]
          - name: dev
            target: local
            gpu_pools: [{name: cpu, accelerator: cpu, nodes: {min: 1, max: 1}}]
        """), other_targets="  local: {}\n")
    out = tmp_path / "program"
    done = _export(stack, out)
    assert "left out" in done.stderr and "dev (target local, local)" in done.stderr
    program = (out / "__main__.py").read_text()
    assert "LEFT OUT" in program and "dev (target local, local)" in program
    assert "## Left out\n\n- dev (target local, local)" in (out / "README.md").read_text()
    declared = _by_name(_run_mocked(out, tmp_path))
    assert "train.priority_class.cpu" in declared
    assert not any(name.startswith(("dev.", "_stack.local")) for name in declared)


def test_discovered_apis_become_custom_resources(tmp_path: Path) -> None:
    """Kueue queues, a ServiceMonitor and a KServe InferenceService (lowered as a cluster serving them would be)
    are CustomResources; the canary gate declares the production predictor first."""
    from mlplat_plugins.onprem.pulumi_export import export_pulumi
    from provisioner.api import Stack
    from provisioner.export import write_directory

    path = _stack(tmp_path, textwrap.dedent("""\
        clusters:
          - name: train
            gpu_pools: [{name: big, accelerator: h100, gpus_per_node: 8, nodes: {min: 1, max: 2}}]
        storage:
          - {name: shared, kind: nas, size_gb: 5, mount_path: /mnt/shared}
        """) + REGISTRY + textwrap.dedent("""\
        serving:
          - name: iris
            paths:
              production: {model: "iris:1", weight: 90}
              experimental: {model: "iris:2", weight: 10}
          - name: watched
            monitoring: {capture: {sample_percent: 10}}
            paths:
              production: {model: "iris:1", weight: 100}
              experimental: {model: "iris:2", mode: shadow, mirror_percent: 5}
        """))
    stack = Stack(path)
    stack.targets["onprem"].discovered = {"kueue": True, "gateway_api": True, "prometheus_operator": True,
                                          "kserve": True, "gateway_url": "http://gw.example"}
    files = export_pulumi(stack)
    out = tmp_path / "program"
    write_directory(files, out)
    assert "kueue=yes" in files["__main__.py"]
    declared = _by_name(_run_mocked(out, tmp_path))
    types = {name: r["type"] for name, r in declared.items()}
    assert types["train.resource_flavor.big"] == "kubernetes:kueue.x-k8s.io/v1beta1:ResourceFlavor"
    assert types["train.cluster_queue.big"] == "kubernetes:kueue.x-k8s.io/v1beta1:ClusterQueue"
    assert types["train.local_queue.big"] == "kubernetes:kueue.x-k8s.io/v1beta1:LocalQueue"
    assert declared["train.local_queue.big"]["depends_on"] == ["train.cluster_queue.big"]
    v1 = hashlib.sha256((MODELS / "iris-v1.json").read_bytes()).hexdigest()
    v2 = hashlib.sha256((MODELS / "iris-v2.json").read_bytes()).hexdigest()
    isvc = _ints(declared["iris.inference_service.main"]["inputs"])
    assert types["iris.inference_service.main"] == "kubernetes:serving.kserve.io/v1beta1:InferenceService"
    assert isvc["metadata"] == stack.lower()[0]["iris.inference_service.main"].inputs["manifest"]["metadata"]
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert v2 in isvc["spec"]["predictor"]["model"]["storageUri"]  # the canary: model 2
    # KServe cannot mirror: the shadowed endpoint is an HTTPRoute, scraped by a ServiceMonitor
    assert types["watched.http_route.main"] == ROUTE
    monitor = declared["watched.service_monitor.main"]
    assert monitor["type"] == "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"
    assert monitor["inputs"]["metadata"] == {**monitor["inputs"]["metadata"], "name": "watched",
                                             "namespace": "mlplat-quickstart"}
    assert monitor["inputs"]["spec"]["endpoints"][0]["path"] == "/metrics"

    first = _by_name(_run_mocked(out, tmp_path, {"kserve-canary": "false"}))
    predictor = _ints(first["iris.inference_service.main"]["inputs"])["spec"]["predictor"]
    assert "canaryTrafficPercent" not in predictor
    assert v1 in predictor["model"]["storageUri"]  # production only: model 1


def test_directory_format_without_out_is_a_clear_error(tmp_path: Path) -> None:
    stack = _stack(tmp_path, SPLIT)
    done = _cli("export", "--format", "pulumi", "-f", str(stack))
    assert done.returncode == 1
    assert "export format pulumi writes a directory: pass -o DIR" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout and done.stdout == ""
    file = tmp_path / "a-file"
    file.write_text("keep")
    done = _cli("export", "--format", "pulumi", "-f", str(stack), "-o", str(file))
    assert done.returncode == 1 and "Traceback" not in done.stderr and file.read_text() == "keep"
    json_out = tmp_path / "resources.json"  # json is unchanged: a file
    done = _cli("export", "--format", "json", "-f", str(stack), "-o", str(json_out))
    assert done.returncode == 0 and json.loads(json_out.read_text())["stack"] == "quickstart"


def test_export_list_shows_pulumi() -> None:
    done = _cli("export", "--list")
    assert done.returncode == 0
    formats = dict(line.split("\t", 1) for line in done.stdout.splitlines())
    assert {"json", "pulumi"} <= set(formats) and "Pulumi" in formats["pulumi"]


def test_automation_script_without_pulumi_cli_says_how_to_install(tmp_path: Path) -> None:
    stack = _stack(tmp_path, SPLIT)
    out = tmp_path / "program"
    _export(stack, out)
    empty = tmp_path / "bin"
    empty.mkdir()
    done = subprocess.run([PYTHON, str(out / "automation.py"), "up", "--stack", "dev"], capture_output=True,
                          text=True, timeout=60, cwd=out, env={**os.environ, "PATH": str(empty)})
    assert done.returncode != 0
    assert "pulumi CLI is not on PATH" in done.stderr and "https://www.pulumi.com/docs/install/" in done.stderr
    assert "Traceback" not in done.stderr
    text = (out / "automation.py").read_text()
    assert "create_or_select_stack" in text and "work_dir=" in text
    assert text.index("shutil.which") < text.index("from pulumi import automation")


def test_each_onprem_target_has_its_own_provider(tmp_path: Path) -> None:
    stack = _stack(tmp_path, textwrap.dedent("""\
        clusters:
          - name: train
            gpu_pools: [{name: cpu, accelerator: cpu, nodes: {min: 1, max: 1}}]
          - name: lab
            target: lab
            gpu_pools: [{name: cpu, accelerator: cpu, nodes: {min: 1, max: 1}}]
        """), other_targets="  lab: {type: onprem, context: lab-ctx}\n")
    out = tmp_path / "program"
    _export(stack, out)
    recorded = _run_mocked(out, tmp_path, {"kubeconfig-onprem": "/etc/k/main"})
    providers = {r["name"]: r["inputs"] for r in recorded if r["type"] == PROVIDER}
    assert providers["k8s-onprem"]["kubeconfig"] == "/etc/k/main" and providers["k8s-lab"]["context"] == "lab-ctx"
    declared = _by_name(recorded)
    assert "::k8s-lab::" in declared["lab.priority_class.cpu"]["provider"]
    assert "::k8s-onprem::" in declared["train.priority_class.cpu"]["provider"]
    assert declared["lab.priority_class.cpu"]["depends_on"] == ["_stack.lab.namespace.main"]


def test_a_stack_without_onprem_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "local.yaml"
    path.write_text("apiVersion: mlplat/v1\nmetadata: {name: elsewhere}\ntarget: local\nclusters:\n"
                    "  - {name: train, gpu_pools: [{name: cpu, accelerator: cpu, nodes: {min: 1, max: 1}}]}\n")
    done = _cli("export", "--format", "pulumi", "-f", str(path), "-o", str(tmp_path / "out"))
    assert done.returncode == 1 and "nothing on an onprem target" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()
