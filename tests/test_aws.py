"""The aws target end to end: the real plugin and boto3 against a moto server on 127.0.0.1, through the engine
and the CLI. Every claim about what exists is checked with boto3 list/describe calls on the server."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.api import Stack
from provisioner.events import Event
from provisioner.operations import detached

from conftest import STACKS, AwsAccount, require_module, run_mlplat
from contract_targets import aws_objects

require_module("boto3", "the aws extra is part of the test extra")


@pytest.fixture
def aws_stack(tmp_path: Path, aws_account: AwsAccount) -> AwsStack:
    """stacks/aws.yaml, pointed at the moto server (endpoint_url, its subnet and security group)."""
    shutil.copytree(STACKS / "models", tmp_path / "models")
    return AwsStack(tmp_path / "aws.yaml", aws_account).write()


class AwsStack:
    def __init__(self, path: Path, account: AwsAccount) -> None:
        self.path, self.account = path, account
        self.doc = yaml.safe_load((STACKS / "aws.yaml").read_text())
        settings = self.doc["targets"]["aws"]
        settings.update(account.settings(bucket=settings["bucket"]))  # keep ${env:MLPLAT_AWS_BUCKET}

    def write(self) -> AwsStack:
        self.path.write_text(yaml.safe_dump(self.doc, sort_keys=False))
        return self

    def cli(self, *args: str, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run_mlplat(*args, "-f", str(self.path), cwd=self.path.parent, check=check,
                          env={**self.account.env(), **(env or {})})

    def changes(self) -> dict[str, str]:
        plan = json.loads(self.cli("preview", "--json").stdout)
        return {c["address"]: c["action"] for c in plan["changes"] if c["action"] != "noop"}

    def open(self, events: list[Event] | None = None) -> Stack:
        os.environ.setdefault("MLPLAT_AWS_BUCKET", self.account.bucket)
        return Stack(self.path, listeners=[events.append] if events is not None else None)

    @property
    def sm(self) -> Any:
        return self.account.server.client("sagemaker")


def endpoint_weights(sm: Any, name: str = "vision-iris") -> dict[str, float]:
    endpoint = sm.describe_endpoint(EndpointName=name)
    return {v["VariantName"]: v["CurrentWeight"] for v in endpoint["ProductionVariants"]}


def test_platform_lifecycle_on_sagemaker(aws_stack: AwsStack) -> None:
    server = aws_stack.account.server
    aws_stack.cli("apply", "--yes")
    objects = aws_objects(aws_stack.account)
    assert len(objects) == 14 and set(objects.values()) == {1}, objects  # 13 resources + HyperPod lifecycle script
    assert aws_stack.cli("preview", "--detailed-exitcode", check=False).returncode == 0

    outputs = json.loads(aws_stack.cli("output", "--json").stdout)
    assert outputs["iris.url"] == ("https://runtime.sagemaker.us-east-1.amazonaws.com/endpoints/vision-iris/"
                                   "invocations")
    assert outputs["models.image.iris-server"].endswith(".dkr.ecr.us-east-1.amazonaws.com/vision/iris-server")
    assert re.fullmatch(r"fs-[0-9a-f]+\.efs\.us-east-1\.amazonaws\.com", outputs["shared.dns_name"])
    assert outputs["train.arn"].startswith("arn:aws:sagemaker:us-east-1:") and "cluster/" in outputs["train.arn"]
    cluster = aws_stack.sm.describe_cluster(ClusterName="vision-train")
    assert {g["InstanceGroupName"]: (g["InstanceType"], g["TargetCount"]) for g in cluster["InstanceGroups"]} == {
        "big-h100": ("ml.p5.48xlarge", 2), "small-a10g": ("ml.g5.xlarge", 1)}
    assert endpoint_weights(aws_stack.sm) == {"production": 90.0, "experimental": 10.0}

    # a weight change is applied in place on the endpoint: no new config, no endpoint replacement
    aws_stack.doc["serving"][0]["paths"]["production"]["weight"] = 70
    aws_stack.doc["serving"][0]["paths"]["experimental"]["weight"] = 30
    aws_stack.write()
    assert aws_stack.changes() == {"iris.endpoint.main": "update"}
    server.clear_calls()
    aws_stack.cli("apply", "--yes")
    assert server.count("UpdateEndpointWeightsAndCapacities") == 1
    for action in ("CreateEndpointConfig", "UpdateEndpoint", "CreateEndpoint", "DeleteEndpoint"):
        assert server.count(action) == 0, action
    assert endpoint_weights(aws_stack.sm) == {"production": 70.0, "experimental": 30.0}

    # so is scaling a path: more instances behind the same config
    aws_stack.doc["serving"][0]["paths"]["production"]["replicas"] = 3
    aws_stack.write()
    assert aws_stack.changes() == {"iris.endpoint.main": "update"}
    aws_stack.cli("apply", "--yes")
    variants = aws_stack.sm.describe_endpoint(EndpointName="vision-iris")["ProductionVariants"]
    assert {v["VariantName"]: v["CurrentInstanceCount"] for v in variants} == {"production": 3, "experimental": 1}
    assert endpoint_weights(aws_stack.sm) == {"production": 70.0, "experimental": 30.0}

    # a model change is blue/green: new model and config, UpdateEndpoint, then the old config and model go
    old_config = aws_stack.sm.describe_endpoint(EndpointName="vision-iris")["EndpointConfigName"]
    aws_stack.doc["serving"][0]["paths"]["experimental"]["model"] = "iris:1"
    aws_stack.write()
    assert aws_stack.changes() == {"iris.model.experimental": "replace", "iris.endpoint_config.main": "replace",
                                   "iris.endpoint.main": "update"}
    server.clear_calls()
    aws_stack.cli("apply", "--yes")
    assert [server.count(a) for a in ("CreateModel", "CreateEndpointConfig", "UpdateEndpoint", "DeleteEndpointConfig",
                                      "DeleteModel", "CreateEndpoint", "DeleteEndpoint")] == [1, 1, 1, 1, 1, 0, 0]
    assert server.calls.index("UpdateEndpoint") < server.calls.index("DeleteEndpointConfig")
    endpoint = aws_stack.sm.describe_endpoint(EndpointName="vision-iris")
    assert endpoint["EndpointConfigName"] != old_config
    assert [c["EndpointConfigName"] for c in aws_stack.sm.list_endpoint_configs()["EndpointConfigs"]] == [
        endpoint["EndpointConfigName"]]
    assert endpoint_weights(aws_stack.sm) == {"production": 70.0, "experimental": 30.0}
    assert aws_stack.changes() == {}

    # GPU pools: a count change is UpdateCluster; a new accelerator replaces that group, not the cluster
    pools = aws_stack.doc["clusters"][0]["gpu_pools"]
    pools[0]["nodes"]["min"] = 3
    pools[1].update(accelerator="A100", gpus_per_node=8)
    aws_stack.write()
    assert aws_stack.changes() == {"train.hyperpod_cluster.main": "update"}
    server.clear_calls()
    aws_stack.cli("apply", "--yes")
    assert server.count("UpdateCluster") == 1 and server.count("DeleteCluster") == 0
    cluster = aws_stack.sm.describe_cluster(ClusterName="vision-train")
    assert {g["InstanceGroupName"]: (g["InstanceType"], g["TargetCount"]) for g in cluster["InstanceGroups"]} == {
        "big-h100": ("ml.p5.48xlarge", 3), "small-a100-40gb": ("ml.p4d.24xlarge", 1)}

    # drift made in the console shows in preview and apply puts it back
    aws_stack.sm.update_endpoint_weights_and_capacities(EndpointName="vision-iris", DesiredWeightsAndCapacities=[
        {"VariantName": "production", "DesiredWeight": 5.0}, {"VariantName": "experimental", "DesiredWeight": 95.0}])
    preview = aws_stack.cli("preview", "--detailed-exitcode", check=False)
    assert preview.returncode == 2
    assert "iris.endpoint.main" in preview.stdout and "5.0 → 70.0" in preview.stdout, preview.stdout
    aws_stack.cli("apply", "--yes")
    assert endpoint_weights(aws_stack.sm) == {"production": 70.0, "experimental": 30.0}

    # destroy leaves nothing: every list call on the account comes back empty
    aws_stack.cli("destroy", "--yes")
    assert aws_objects(aws_stack.account) == {}
    assert aws_stack.sm.list_endpoints()["Endpoints"] == []
    assert aws_stack.sm.list_clusters()["ClusterSummaries"] == []
    assert server.client("efs").describe_file_systems()["FileSystems"] == []
    assert server.client("s3").list_objects_v2(Bucket=aws_stack.account.bucket).get("KeyCount") == 0
    assert json.loads(aws_stack.cli("state", "list", "--json").stdout)["resources"] == []


def nas_stack(directory: Path, account: AwsAccount) -> Path:
    """A stack with one EFS volume on the moto account."""
    stack = directory / "stack.yaml"
    stack.write_text(yaml.safe_dump({
        "apiVersion": "mlplat/v1", "metadata": {"name": "nas"}, "target": "aws",
        "targets": {"aws": account.settings()}, "storage": [{"name": "shared"}]}))
    return stack


def test_killed_after_create_file_system_finds_it_by_creation_token(tmp_path: Path, aws_account: AwsAccount) -> None:
    stack = nas_stack(tmp_path, aws_account)
    env = aws_account.env()
    killed = run_mlplat("apply", "--yes", "-f", str(stack), cwd=tmp_path, check=False,
                        env={**env, "MLPLAT_CRASH_AT": "before-done:1"})  # EFS made, its done record not written
    assert killed.returncode == -9, killed.stderr
    efs = aws_account.server.client("efs")
    assert len(efs.describe_file_systems()["FileSystems"]) == 1

    resumed = run_mlplat("apply", "--yes", "-f", str(stack), cwd=tmp_path, env=env)
    assert "shared.efs.main" in resumed.stdout + resumed.stderr
    file_systems = efs.describe_file_systems()["FileSystems"]
    assert len(file_systems) == 1 and aws_account.server.count("CreateFileSystem") == 1
    assert len(efs.describe_mount_targets(FileSystemId=file_systems[0]["FileSystemId"])["MountTargets"]) == 1
    assert run_mlplat("preview", "--detailed-exitcode", "-f", str(stack), cwd=tmp_path, env=env).returncode == 0


def test_shadow_mode_mirrors_to_a_shadow_variant(aws_stack: AwsStack) -> None:
    paths = aws_stack.doc["serving"][0]["paths"]
    paths["production"] = {"model": "iris:1"}
    paths["experimental"] = {"model": "iris:2", "mode": "shadow", "mirror_percent": 25}
    del aws_stack.doc["clusters"]
    aws_stack.write()
    aws_stack.cli("apply", "--yes")
    endpoint = aws_stack.sm.describe_endpoint(EndpointName="vision-iris")
    config = aws_stack.sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    assert [(v["VariantName"], v["InitialVariantWeight"]) for v in config["ProductionVariants"]] == [
        ("production", 100.0)]
    assert [(v["VariantName"], v["InitialVariantWeight"]) for v in config["ShadowProductionVariants"]] == [
        ("experimental", 25.0)]
    assert aws_stack.changes() == {}
    aws_stack.cli("destroy", "--yes")
    assert aws_objects(aws_stack.account) == {}


def test_lustre_storage_is_fsx(tmp_path: Path, aws_account: AwsAccount) -> None:
    stack = tmp_path / "stack.yaml"
    stack.write_text(yaml.safe_dump({
        "apiVersion": "mlplat/v1", "metadata": {"name": "scratch"}, "target": "aws",
        "targets": {"aws": aws_account.settings()}, "storage": [{"name": "fast", "kind": "lustre", "size_gb": 2000}]}))
    env = aws_account.env()
    run_mlplat("apply", "--yes", "-f", str(stack), cwd=tmp_path, env=env)
    fsx = aws_account.server.client("fsx")
    [fs] = fsx.describe_file_systems()["FileSystems"]
    assert fs["FileSystemType"] == "LUSTRE" and fs["StorageCapacity"] == 2400
    assert run_mlplat("preview", "--detailed-exitcode", "-f", str(stack), cwd=tmp_path, env=env).returncode == 0
    run_mlplat("destroy", "--yes", "-f", str(stack), cwd=tmp_path, env=env)
    assert [f for f in fsx.describe_file_systems()["FileSystems"] if f["Lifecycle"] != "DELETING"] == []


def test_cloud_error_names_the_resource_and_aws_message(aws_stack: AwsStack) -> None:
    proc = aws_stack.cli("apply", "--yes", check=False, env={"MLPLAT_AWS_BUCKET": "no-such-bucket"})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "models.model_artifact.iris:1" in proc.stderr and "no-such-bucket does not exist" in proc.stderr


def test_waits_on_endpoint_status_report_progress(aws_stack: AwsStack) -> None:
    del aws_stack.doc["clusters"]
    aws_stack.write()
    events: list[Event] = []
    stack = aws_stack.open(events)
    with aws_stack.account.server.delay_status(3):
        stack.apply(stack.plan())
    waits = [e for e in events if e.kind == "progress" and e.address == "iris.endpoint.main"]
    assert waits and "Creating" in str(waits[0].data), waits


def test_validate_does_not_import_boto3(aws_stack: AwsStack) -> None:
    """validate calls no cloud; preview does (discovery asks STS which account it is planning for)."""
    code = ("import sys; from provisioner.api import Stack; s = Stack(sys.argv[1]); s.validate(); "
            "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules, "
            "[m for m in sys.modules if m.startswith('boto')]")
    subprocess.run([sys.executable, "-c", code, str(aws_stack.path)], check=True,
                   env={**os.environ, **aws_stack.account.env()})


def test_credentials_in_the_stack_file_are_refused(aws_stack: AwsStack) -> None:
    aws_stack.doc["targets"]["aws"]["aws_secret_access_key"] = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    aws_stack.write()
    proc = aws_stack.cli("validate", check=False)
    assert proc.returncode == 1 and "targets.aws" in proc.stderr
    assert "wJalrXUtnFEMI" not in proc.stdout + proc.stderr


def test_throttled_reads_during_preview_are_retried(aws_stack: AwsStack) -> None:
    del aws_stack.doc["clusters"]
    aws_stack.write()
    aws_stack.cli("apply", "--yes")
    server = aws_stack.account.server
    with server.throttle(2, actions={"DescribeEndpoint", "DescribeFileSystems", "HeadObject"}):
        assert {c.action for c in aws_stack.open().plan().changes} == {"noop"}
    assert "DescribeEndpoint" in server.throttled and "HeadObject" in server.throttled


def test_registry_and_network_drift_is_put_back_in_place(aws_stack: AwsStack) -> None:
    del aws_stack.doc["clusters"], aws_stack.doc["serving"]
    aws_stack.write()
    aws_stack.cli("apply", "--yes")
    account, server = aws_stack.account, aws_stack.account.server
    ecr, efs, ec2 = server.client("ecr"), server.client("efs"), server.client("ec2")
    ecr.put_image_tag_mutability(repositoryName="vision/iris-server", imageTagMutability="IMMUTABLE")
    ecr.put_image_scanning_configuration(repositoryName="vision/iris-server",
                                         imageScanningConfiguration={"scanOnPush": False})
    vpc = ec2.describe_subnets(SubnetIds=[account.subnet])["Subnets"][0]["VpcId"]
    other = ec2.create_security_group(GroupName="other", Description="out of band", VpcId=vpc)["GroupId"]
    [mount] = efs.describe_mount_targets(FileSystemId=efs.describe_file_systems()["FileSystems"][0]["FileSystemId"])[
        "MountTargets"]
    efs.modify_mount_target_security_groups(MountTargetId=mount["MountTargetId"], SecurityGroups=[other])

    assert aws_stack.changes() == {"models.ecr_repository.iris-server": "update",
                                   f"shared.efs_mount_target.{account.subnet}": "update"}
    server.clear_calls()
    aws_stack.cli("apply", "--yes")
    assert {a for a in server.calls if not a.startswith(("Describe", "List", "Head", "Get"))} == {
        "PutImageTagMutability", "PutImageScanningConfiguration", "ModifyMountTargetSecurityGroups"}
    repo = ecr.describe_repositories(repositoryNames=["vision/iris-server"])["repositories"][0]
    assert repo["imageTagMutability"] == "MUTABLE" and repo["imageScanningConfiguration"]["scanOnPush"] is True
    groups = efs.describe_mount_target_security_groups(MountTargetId=mount["MountTargetId"])["SecurityGroups"]
    assert groups == [account.security_group]
    assert aws_stack.changes() == {}


class CrashAtCheckpoint(BaseException):
    """Escapes the provider like a kill would: the cloud operation started and was checkpointed, no wait yet."""


def _serving_objects(sm: Any) -> None:
    """A model and an endpoint config in the moto account, for an endpoint to be made from."""
    sm.create_model(ModelName="m1", ExecutionRoleArn="arn:aws:iam::123456789012:role/mlplat-sagemaker",
                    PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/iris:1",
                                      "ModelDataUrl": "s3://sagemaker-mlplat-artifacts/m.tar.gz"})
    sm.create_endpoint_config(EndpointConfigName="c1", ProductionVariants=[
        {"VariantName": "blue", "ModelName": "m1", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large",
         "InitialVariantWeight": 1.0}])


def test_endpoint_create_resumed_from_its_checkpoint_waits_without_creating_again(aws_stack: AwsStack) -> None:
    server, sm = aws_stack.account.server, aws_stack.sm
    _serving_objects(sm)
    provider = aws_stack.open().provider_for("aws", "aws.endpoint")
    address = "iris.endpoint.main"
    inputs = {"name": "vision-iris", "config": "c1", "weights": {"blue": 1.0}, "instances": {"blue": 1}}
    checkpoints: list[str] = []

    def crash(operation: str) -> None:
        checkpoints.append(operation)
        raise CrashAtCheckpoint(operation)

    with server.delay_status(3):  # the endpoint reports Creating for its next 3 describes
        with pytest.raises(CrashAtCheckpoint):
            provider.create(address, inputs, detached(address, token="t1", on_checkpoint=crash))
        assert checkpoints == ["CreateEndpoint vision-iris"]
        server.clear_calls()
        created = provider.create(address, inputs, detached(address, token="t1", operation=checkpoints[0]))

    assert server.count("CreateEndpoint") == 0 and server.count("UpdateEndpoint") == 0
    assert server.count("DescribeEndpoint") >= 4  # it waited through Creating to InService
    assert [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]] == ["vision-iris"]
    found = provider.find(address, inputs, detached(address, "find", token="t1"))
    assert found is not None and (created.id, created.outputs) == (found.id, found.outputs)
    assert created.outputs["arn"] == sm.describe_endpoint(EndpointName="vision-iris")["EndpointArn"]


def test_efs_create_killed_mid_wait_is_resumed_not_repeated(tmp_path: Path, aws_account: AwsAccount) -> None:
    stack = nas_stack(tmp_path, aws_account)
    env = aws_account.env()
    killed = run_mlplat("apply", "--yes", "-f", str(stack), cwd=tmp_path, check=False,
                        env={**env, "MLPLAT_CRASH_AT": "poll:1"})  # CreateFileSystem issued and checkpointed
    assert killed.returncode == -9, killed.stderr
    server = aws_account.server
    assert server.count("CreateFileSystem") == 1

    resumed = run_mlplat("apply", "--yes", "-f", str(stack), cwd=tmp_path, env=env)
    assert "shared.efs.main" in resumed.stdout + resumed.stderr
    assert server.count("CreateFileSystem") == 1
    [fs] = server.client("efs").describe_file_systems()["FileSystems"]
    state = json.loads(run_mlplat("state", "list", "--json", "-f", str(stack), cwd=tmp_path, env=env).stdout)
    assert fs["FileSystemId"] in json.dumps(state)
    assert run_mlplat("preview", "--detailed-exitcode", "-f", str(stack), cwd=tmp_path, env=env).returncode == 0


def test_find_returns_what_the_create_with_its_token_made_never_an_excluded_id(aws_account: AwsAccount,
                                                                             tmp_path: Path) -> None:
    stack = tmp_path / "stack.yaml"
    stack.write_text(yaml.safe_dump({
        "apiVersion": "mlplat/v1", "metadata": {"name": "scratch"}, "target": "aws",
        "targets": {"aws": aws_account.settings()}, "storage": [{"name": "fast", "kind": "lustre"}]}))
    provider = Stack(stack).provider_for("aws", "aws.fsx_lustre")
    address = "fast.fsx_lustre.main"
    inputs = {"token": "mlplat-fast", "storage_gb": 1200, "subnet": aws_account.subnet, "security_groups": []}

    def found(token: str, *exclude: str) -> str | None:
        seen = provider.find(address, inputs, detached(address, "find", token=token, exclude=frozenset(exclude)))
        return seen.id if seen else None

    # the address names two file systems: a replace's predecessor and its replacement
    old = provider.create(address, inputs, detached(address, token="token-old")).id
    new = provider.create(address, inputs, detached(address, token="token-new", exclude=frozenset({old}))).id
    assert old != new
    assert found("token-new") == new and found("token-old") == old
    assert found("token-new", new) is None
    assert found("token-other") is None  # that create made nothing
    # an entry journalled without a token (an older mlplat): by address, still never an excluded id
    assert found("", old) == new
    assert found("", old, new) is None

    # name-keyed objects too: the endpoint is found for its own token, not for another, never when excluded
    _serving_objects(aws_account.server.client("sagemaker"))
    endpoints = Stack(stack).provider_for("aws", "aws.endpoint")
    served = {"name": "ep", "config": "c1", "weights": {"blue": 1.0}, "instances": {"blue": 1}}
    endpoints.create("s.endpoint.main", served, detached("s.endpoint.main", token="t-ep"))
    assert endpoints.find("s.endpoint.main", served, detached("s.endpoint.main", "find", token="t-ep")) is not None
    assert endpoints.find("s.endpoint.main", served, detached("s.endpoint.main", "find", token="t-x")) is None
    assert endpoints.find("s.endpoint.main", served, detached("s.endpoint.main", "find", token="t-ep",
                                                              exclude=frozenset({"ep"}))) is None
