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

import pytest

from conftest import STACKS, AwsAccount

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
    auth: {auth}
    paths:
      production: {{model: "iris:1", weight: {production}}}
      experimental: {{model: "{experimental_model}", weight: {experimental}}}
"""


class Harness:
    target: ClassVar[str]
    bad_settings: ClassVar[dict[str, Any]]
    #: resources lowered from STACK on this target
    expected_resources: ClassVar[int]
    auth: ClassVar[str] = "none"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        shutil.copytree(STACKS / "models", directory / "models", dirs_exist_ok=True)

    def prepare(self, request: pytest.FixtureRequest) -> None:
        """Get what the target needs from other fixtures (a fake cloud server, an account)."""

    def settings(self) -> dict[str, Any]:
        return {}

    def write_stack(self, production: int = 80, experimental: int = 20, experimental_model: str = "iris:2",
                    settings: dict[str, Any] | None = None) -> Path:
        path = self.directory / "stack.yaml"
        path.write_text(STACK.format(target=self.target, settings=json.dumps(settings or self.settings()),
                                     auth=self.auth, production=production, experimental=experimental,
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

            def create_throttled(address: str, inputs: dict[str, Any], ctx: Any) -> Any:
                counts[address] += 1
                if counts[address] <= times:
                    raise RetryableError("429 Too Many Requests", retry_after=0.01)
                return create(address, inputs, ctx)

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


class AwsHarness(Harness):
    """boto3 against the moto server; every object is found through its mlplat:address tag."""

    target = "aws"
    bad_settings: ClassVar[dict[str, Any]] = {"region": "moon-1"}
    # EFS + mount target, package group, 2 artifacts + 2 packages, 2 SageMaker models, endpoint config, endpoint
    expected_resources = 11
    auth = "iam"
    account: AwsAccount

    def prepare(self, request: pytest.FixtureRequest) -> None:
        self.account = request.getfixturevalue("aws_account")

    def settings(self) -> dict[str, Any]:
        return self.account.settings(serving_image="123456789012.dkr.ecr.us-east-1.amazonaws.com/iris:latest")

    def cloud_objects(self) -> Counter[str]:
        return aws_objects(self.account)

    def make_drift(self) -> str:
        sm = self.account.server.client("sagemaker")
        name = sm.list_endpoints()["Endpoints"][0]["EndpointName"]
        sm.update_endpoint_weights_and_capacities(EndpointName=name, DesiredWeightsAndCapacities=[
            {"VariantName": "production", "DesiredWeight": 10.0},
            {"VariantName": "experimental", "DesiredWeight": 90.0}])
        return "iris.endpoint.main"

    @contextmanager
    def throttled(self, times: int) -> Iterator[None]:
        with self.account.server.throttle(times):
            yield


def aws_objects(account: AwsAccount) -> Counter[str]:
    """Every object in the moto account, counted per mlplat address (from tags, metadata or S3 key)."""
    server, found = account.server, Counter[str]()
    sm, efs, ecr = server.client("sagemaker"), server.client("efs"), server.client("ecr")

    def tagged(arn: str) -> str:
        tags = sm.list_tags(ResourceArn=arn)["Tags"]
        return next(t["Value"] for t in tags if t["Key"] == "mlplat:address")

    for model in sm.list_models()["Models"]:
        found[tagged(model["ModelArn"])] += 1
    for config in sm.list_endpoint_configs()["EndpointConfigs"]:
        found[tagged(config["EndpointConfigArn"])] += 1
    for endpoint in sm.list_endpoints()["Endpoints"]:
        found[tagged(endpoint["EndpointArn"])] += 1
    for cluster in sm.list_clusters()["ClusterSummaries"]:
        found[tagged(cluster["ClusterArn"])] += 1
    for group in sm.list_model_package_groups()["ModelPackageGroupSummaryList"]:
        found[tagged(group["ModelPackageGroupArn"])] += 1
        for summary in sm.list_model_packages(ModelPackageGroupName=group["ModelPackageGroupName"])[
                "ModelPackageSummaryList"]:
            package = sm.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
            found[package["CustomerMetadataProperties"]["mlplat:address"]] += 1
    for fs in efs.describe_file_systems()["FileSystems"]:
        address = next(t["Value"] for t in fs["Tags"] if t["Key"] == "mlplat:address")
        found[address] += 1
        for mount in efs.describe_mount_targets(FileSystemId=fs["FileSystemId"])["MountTargets"]:
            found[address.replace(".efs.main", f".efs_mount_target.{mount['SubnetId']}")] += 1
    for repo in ecr.describe_repositories()["repositories"]:
        tags = ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
        found[next(t["Value"] for t in tags if t["Key"] == "mlplat:address")] += 1
    for obj in server.client("s3").list_objects_v2(Bucket=account.bucket).get("Contents", []):
        parts = obj["Key"].split("/")  # <prefix>/models/<name>/<version>/<file>
        address = f"models.model_artifact.{parts[-3]}:{parts[-2]}" if "models" in parts else obj["Key"]
        found[address] += 1
    return found


HARNESSES: list[type[Harness]] = [SimHarness, LocalHarness, AwsHarness]
