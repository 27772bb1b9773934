"""`mlplat import` on the aws target, and its plan-time discovery: a brownfield account's objects, made out of band
with boto3 on the moto server (as a team would have made them before mlplat), are adopted into the state, and from
then on are planned, updated, replaced and deleted as if mlplat had made them. Every claim about what exists is
checked with boto3 list/describe calls on the server."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner import catalog
from provisioner.api import Stack
from provisioner.errors import PlanError

from conftest import STACKS, AwsAccount, require_module, run_mlplat

require_module("boto3", "the aws extra is part of the test extra")

ROLE = "arn:aws:iam::123456789012:role/mlplat-sagemaker"
OTHER_ACCOUNT = "210987654321"


class Brownfield:
    """A stack file pointed at the moto account, and the account's objects."""

    def __init__(self, directory: Path, account: AwsAccount, doc: dict[str, Any]) -> None:
        self.directory, self.account, self.doc = directory, account, doc
        self.path = directory / "stack.yaml"
        self.write()

    def write(self) -> None:
        self.path.write_text(yaml.safe_dump(self.doc, sort_keys=False))

    def cli(self, *args: str, check: bool = True, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        return run_mlplat(*args, "-f", str(self.path), cwd=self.directory, check=check,
                          env={**self.account.env(), **(env or {})})

    def open(self) -> Stack:
        return Stack(self.path)

    def client(self, service: str) -> Any:
        return self.account.server.client(service)

    def changes(self, stack: Stack | None = None) -> dict[str, tuple[str, list[str]]]:
        """The next plan's changes (refreshed), but the noops: address -> (action, changed fields)."""
        stack = stack or self.open()
        try:
            return {c.address: (c.action, c.changed) for c in stack.plan().changes if c.action != "noop"}
        finally:
            stack.close()

    def inventory(self) -> dict[str, list[str]]:
        """Every object in the moto account, by kind: what a duplicate would show in."""
        sm, efs, ecr = self.client("sagemaker"), self.client("efs"), self.client("ecr")
        groups = [g["ModelPackageGroupName"] for g in sm.list_model_package_groups()["ModelPackageGroupSummaryList"]]
        file_systems = [f["FileSystemId"] for f in efs.describe_file_systems()["FileSystems"]]
        return {
            "ecr": sorted(r["repositoryName"] for r in ecr.describe_repositories()["repositories"]),
            "s3": sorted(o["Key"] for o in self.client("s3").list_objects_v2(Bucket=self.account.bucket).get(
                "Contents", [])),
            "package_groups": sorted(groups),
            "packages": sorted(p["ModelPackageArn"] for g in groups for p in sm.list_model_packages(
                ModelPackageGroupName=g)["ModelPackageSummaryList"]),
            "efs": sorted(file_systems),
            "mount_targets": sorted(m["MountTargetId"] for f in file_systems
                                    for m in efs.describe_mount_targets(FileSystemId=f)["MountTargets"]),
            "fsx": sorted(f["FileSystemId"] for f in self.client("fsx").describe_file_systems()["FileSystems"]
                          if f["Lifecycle"] != "DELETING"),
            "clusters": sorted(c["ClusterName"] for c in sm.list_clusters()["ClusterSummaries"]),
            "models": sorted(m["ModelName"] for m in sm.list_models()["Models"]),
            "endpoint_configs": sorted(c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]),
            "endpoints": sorted(e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]),
        }

    def mutations(self) -> list[str]:
        """The writes the server received since its call log was cleared."""
        return [a for a in self.account.server.calls if not a.startswith(("Describe", "List", "Head", "Get"))]


@pytest.fixture
def platform(tmp_path: Path, aws_account: AwsAccount) -> Brownfield:
    """stacks/aws.yaml (stack `vision`) pointed at the moto account."""
    shutil.copytree(STACKS / "models", tmp_path / "models")
    doc = yaml.safe_load((STACKS / "aws.yaml").read_text())
    doc["targets"]["aws"].update(aws_account.settings())
    return Brownfield(tmp_path, aws_account, doc)


def make_brownfield_platform(bf: Brownfield) -> dict[str, str]:
    """What a team made by hand before mlplat, matching stacks/aws.yaml but for two things: the artifact of iris:2
    was uploaded with `aws s3 cp` (no sha256 metadata) and the ECR repository does not scan on push. Returns the id
    of each object by the stack's address for it."""
    account, bucket = bf.account, bf.account.bucket
    sm, s3, ecr, efs = bf.client("sagemaker"), bf.client("s3"), bf.client("ecr"), bf.client("efs")
    ids: dict[str, str] = {}

    repo = ecr.create_repository(repositoryName="vision/iris-server", imageTagMutability="MUTABLE",
                                 imageScanningConfiguration={"scanOnPush": False})["repository"]
    ids["models.ecr_repository.iris-server"] = repo["repositoryName"]
    for version in ("1", "2"):
        body = (bf.directory / "models" / f"iris-v{version}.json").read_bytes()
        key = f"mlplat/models/iris/{version}/iris-v{version}.json"
        metadata = {"sha256": hashlib.sha256(body).hexdigest()} if version == "1" else {}
        s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata)
        ids[f"models.model_artifact.iris:{version}"] = f"{bucket}/{key}"
    sm.create_model_package_group(ModelPackageGroupName="vision-models")
    ids["models.model_package_group.main"] = "vision-models"
    for version in ("1", "2"):
        ids[f"models.model_package.iris:{version}"] = sm.create_model_package(
            ModelPackageGroupName="vision-models", ModelApprovalStatus="Approved",
            InferenceSpecification={
                "Containers": [{"Image": f"{repo['repositoryUri']}:latest",
                                "ModelDataUrl": f"s3://{bucket}/mlplat/models/iris/{version}/iris-v{version}.json"}],
                "SupportedContentTypes": ["application/json"], "SupportedResponseMIMETypes": ["application/json"]},
        )["ModelPackageArn"]

    fs = efs.create_file_system(CreationToken="team-shared-fs", PerformanceMode="generalPurpose", Encrypted=True)
    ids["shared.efs.main"] = fs["FileSystemId"]
    mount = efs.create_mount_target(FileSystemId=fs["FileSystemId"], SubnetId=account.subnet,
                                    SecurityGroups=[account.security_group])
    ids[f"shared.efs_mount_target.{account.subnet}"] = mount["MountTargetId"]

    lifecycle = {"SourceS3Uri": f"s3://{bucket}/mlplat/hyperpod/", "OnCreate": "on_create.sh"}
    sm.create_cluster(ClusterName="vision-train", InstanceGroups=[
        {"InstanceGroupName": name, "InstanceType": kind, "InstanceCount": count, "ExecutionRole": ROLE,
         "LifeCycleConfig": lifecycle, "ThreadsPerCore": 1}
        for name, kind, count in (("big-h100", "ml.p5.48xlarge", 2), ("small-a10g", "ml.g5.xlarge", 1))],
        VpcConfig={"Subnets": [account.subnet], "SecurityGroupIds": [account.security_group]})
    ids["train.hyperpod_cluster.main"] = "vision-train"

    for path, name, version in (("production", "iris-prod", "1"), ("experimental", "iris-canary", "2")):
        sm.create_model(ModelName=name, ExecutionRoleArn=ROLE,
                        PrimaryContainer={"ModelPackageName": ids[f"models.model_package.iris:{version}"]},
                        VpcConfig={"Subnets": [account.subnet], "SecurityGroupIds": [account.security_group]})
        ids[f"iris.model.{path}"] = name
    sm.create_endpoint_config(EndpointConfigName="iris-config", ProductionVariants=[
        {"VariantName": "production", "ModelName": "iris-prod", "InstanceType": "ml.m5.xlarge",
         "InitialInstanceCount": 1, "InitialVariantWeight": 90.0},
        {"VariantName": "experimental", "ModelName": "iris-canary", "InstanceType": "ml.g4dn.xlarge",
         "InitialInstanceCount": 1, "InitialVariantWeight": 10.0}])
    ids["iris.endpoint_config.main"] = "iris-config"
    sm.create_endpoint(EndpointName="vision-iris", EndpointConfigName="iris-config")
    ids["iris.endpoint.main"] = "vision-iris"
    return ids


def test_a_brownfield_platform_is_imported_then_managed_as_if_mlplat_had_made_it(platform: Brownfield) -> None:
    server = platform.account.server
    ids = make_brownfield_platform(platform)
    made = platform.inventory()
    assert sum(len(v) for v in made.values()) == 13 and made["s3"] and made["endpoints"] == ["vision-iris"]

    # one through the CLI, as a user runs it: the repository differs from the stack file in one field
    server.clear_calls()
    proc = platform.cli("import", "models.ecr_repository.iris-server", "vision/iris-server")
    assert "imported models.ecr_repository.iris-server (id vision/iris-server)" in proc.stdout
    assert "The next apply changes it" in proc.stdout and "scan_on_push" in proc.stdout, proc.stdout
    assert platform.mutations() == []  # import only reads: Terraform's rule, and safe with read-only credentials

    # the rest through the API, dependencies first (so references are known): all match but the artifact
    stack = platform.open()
    nexts = {}
    for address, id in ids.items():
        if address != "models.ecr_repository.iris-server":
            change = stack.import_resource(address, id)
            nexts[address] = (change.action, change.changed)
    assert {a: n for a, n in nexts.items() if n[0] != "noop"} == {
        "models.model_artifact.iris:2": ("update", ["sha256"])}, nexts
    records = stack.state.resources()
    assert {a: r.id for a, r in records.items()} == ids
    assert records["shared.efs.main"].outputs["id"] == ids["shared.efs.main"]
    assert records["iris.model.production"].outputs == {"name": "iris-prod", "arn": (
        "arn:aws:sagemaker:us-east-1:123456789012:model/iris-prod")}
    stack.close()
    assert platform.mutations() == []

    # the next plan, refreshed, shows exactly the two differences from the stack file
    assert platform.changes() == {"models.ecr_repository.iris-server": ("update", ["scan_on_push"]),
                                  "models.model_artifact.iris:2": ("update", ["sha256"])}
    server.clear_calls()
    platform.cli("apply", "--yes")
    assert sorted(platform.mutations()) == ["PutImageScanningConfiguration", "PutObject"], platform.mutations()
    assert platform.inventory() == made  # nothing made twice
    head = platform.client("s3").head_object(Bucket=platform.account.bucket,
                                             Key="mlplat/models/iris/2/iris-v2.json")
    assert head["Metadata"]["sha256"] == platform.open().lower()[0]["models.model_artifact.iris:2"].inputs["sha256"]
    assert platform.client("ecr").describe_repositories(repositoryNames=["vision/iris-server"])["repositories"][0][
        "imageScanningConfiguration"]["scanOnPush"] is True
    assert platform.changes() == {}
    assert platform.cli("preview", "--detailed-exitcode", check=False).returncode == 0

    # live values change in place on the imported endpoint
    paths = platform.doc["serving"][0]["paths"]
    paths["production"]["weight"], paths["experimental"]["weight"] = 70, 30
    platform.write()
    assert platform.changes() == {"iris.endpoint.main": ("update", ["weights"])}
    # a model change is blue/green: new model and config, then the imported ones are deleted like mlplat's own
    paths["experimental"]["model"] = "iris:1"
    platform.write()
    assert {a: c[0] for a, c in platform.changes().items()} == {
        "iris.model.experimental": "replace", "iris.endpoint_config.main": "replace", "iris.endpoint.main": "update"}
    server.clear_calls()
    platform.cli("apply", "--yes")
    assert [server.count(a) for a in ("CreateModel", "CreateEndpointConfig", "UpdateEndpoint", "DeleteEndpointConfig",
                                      "DeleteModel", "CreateEndpoint", "DeleteEndpoint")] == [1, 1, 1, 1, 1, 0, 0]
    sm = platform.client("sagemaker")
    now = platform.inventory()
    assert now["models"] == sorted(["iris-prod", platform.open().state.resources()["iris.model.experimental"].id])
    assert "iris-canary" not in now["models"] and "iris-config" not in now["endpoint_configs"]
    assert now["endpoint_configs"] == [sm.describe_endpoint(EndpointName="vision-iris")["EndpointConfigName"]]
    weights = {v["VariantName"]: v["CurrentWeight"]
               for v in sm.describe_endpoint(EndpointName="vision-iris")["ProductionVariants"]}
    assert weights == {"production": 70.0, "experimental": 30.0}
    assert platform.changes() == {}

    # destroy deletes the imported objects as it deletes its own: the account is left empty
    platform.cli("destroy", "--yes")
    assert {k: v for k, v in platform.inventory().items() if v} == {}


def test_import_errors_name_the_address_and_never_show_a_traceback(platform: Brownfield) -> None:
    ecr, efs = platform.client("ecr"), platform.client("efs")
    ecr.create_repository(repositoryName="vision/iris-server")
    fs = efs.create_file_system(CreationToken="team-fs")["FileSystemId"]
    mount = efs.create_mount_target(FileSystemId=fs, SubnetId=platform.account.subnet)["MountTargetId"]

    def refused(address: str, id: str) -> str:
        proc = platform.cli("import", address, id, check=False)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
        return " ".join(proc.stderr.split())  # rich wraps long lines

    # no object with that id, and an object of another kind (a mount target is not a file system)
    assert ("models.ecr_repository.iris-server: target 'aws' has no aws.ecr_repository with id 'vision/nope'"
            in refused("models.ecr_repository.iris-server", "vision/nope"))
    assert f"shared.efs.main: target 'aws' has no aws.efs with id '{mount}'" in refused("shared.efs.main", mount)
    assert f"no aws.efs_mount_target with id '{fs}'" in refused(f"shared.efs_mount_target.{platform.account.subnet}",
                                                                fs)
    # an ARN where the name is the id
    assert "no aws.endpoint with id" in refused(
        "iris.endpoint.main", "arn:aws:sagemaker:us-east-1:123456789012:endpoint/vision-iris")
    # an address the stack file does not have
    message = refused("models.ecr_repository.iris-srever", "vision/iris-server")
    assert "the stack file has no resource models.ecr_repository.iris-srever" in message
    assert "did you mean models.ecr_repository.iris-server" in message
    assert json.loads(platform.cli("state", "list", "--json").stdout)["resources"] == []

    # imported once, not twice; and one object is one address
    platform.cli("import", "shared.efs.main", fs)
    assert f"shared.efs.main is already managed (id {fs})" in refused("shared.efs.main", fs)
    [record] = json.loads(platform.cli("state", "list", "--json").stdout)["resources"]
    assert fs in json.dumps(record)


def test_a_model_package_is_imported_only_by_its_versioned_arn(platform: Brownfield) -> None:
    sm = platform.client("sagemaker")
    sm.create_model_package_group(ModelPackageGroupName="vision-models")
    arn = sm.create_model_package(ModelPackageGroupName="vision-models", InferenceSpecification={
        "Containers": [{"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/other:7", "ModelDataUrl": "s3://b/m"}],
        "SupportedContentTypes": ["application/json"], "SupportedResponseMIMETypes": ["application/json"]},
    )["ModelPackageArn"]
    stack = platform.open()
    provider = stack.provider_for("aws", "aws.model_package")
    inputs = stack.lower()[0]["models.model_package.iris:1"].inputs
    assert provider.import_("models.model_package.iris:1", "vision-models", inputs) is None  # the group's name
    seen = provider.import_("models.model_package.iris:1", arn, inputs)
    assert seen is not None and seen.outputs["arn"] == arn
    # the image as the package has it, in the stack's form ({repository, tag}): it differs, so the plan shows it
    assert seen.inputs["image"] == {"repository": "123456789012.dkr.ecr.us-east-1.amazonaws.com/other", "tag": "7"}
    assert seen.inputs["model_data_url"] == "s3://b/m"
    stack.import_resource("models.model_package_group.main", "vision-models")
    change = stack.import_resource("models.model_package.iris:1", arn)
    assert change.action == "replace" and {"image", "model_data_url"} <= set(change.forces_replacement)
    stack.close()


def test_an_artifact_or_model_unlike_the_stack_plans_a_replacement(platform: Brownfield) -> None:
    bucket = platform.account.bucket
    platform.client("s3").put_object(Bucket=bucket, Key="team/iris.json", Body=b"{}")
    platform.client("sagemaker").create_model(ModelName="hand-made", ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/iris:1", "ModelDataUrl": f"s3://{bucket}/team/iris.json"})
    stack = platform.open()
    with pytest.raises(PlanError, match=re.escape(f"has no aws.model_artifact with id '{bucket}/team/nope'")):
        stack.import_resource("models.model_artifact.iris:1", f"{bucket}/team/nope")
    # the object the id names, not the one the stack file would upload: the plan moves it to the stack's key
    change = stack.import_resource("models.model_artifact.iris:1", f"{bucket}/team/iris.json")
    assert change.action == "replace" and change.forces_replacement == ["key"]
    assert stack.state.resources()["models.model_artifact.iris:1"].outputs == {"uri": f"s3://{bucket}/team/iris.json"}
    # a model serving an image, where the stack serves the registry's package, in no VPC: all of it shows
    change = stack.import_resource("iris.model.production", "hand-made")
    assert change.action == "replace"
    assert {"image", "model_data_url", "model_package", "subnets", "security_groups"} <= set(change.changed)
    assert change.before["image"] == "123456789012.dkr.ecr.us-east-1.amazonaws.com/iris:1"
    stack.close()


def lustre_stack(directory: Path, account: AwsAccount) -> Brownfield:
    return Brownfield(directory, account, {
        "apiVersion": "mlplat/v1", "metadata": {"name": "scratch"}, "target": "aws",
        "targets": {"aws": account.settings()}, "storage": [{"name": "fast", "kind": "lustre", "size_gb": 2000}]})


def test_fsx_for_lustre_is_imported_and_another_fsx_type_is_refused(tmp_path: Path, aws_account: AwsAccount) -> None:
    bf = lustre_stack(tmp_path, aws_account)
    fsx = bf.client("fsx")
    windows = fsx.create_file_system(FileSystemType="WINDOWS", StorageCapacity=32, SubnetIds=[aws_account.subnet],
                                     WindowsConfiguration={"ThroughputCapacity": 8})["FileSystem"]["FileSystemId"]
    lustre = fsx.create_file_system(FileSystemType="LUSTRE", StorageCapacity=2400, SubnetIds=[aws_account.subnet],
                                    SecurityGroupIds=[aws_account.security_group],
                                    LustreConfiguration={"DeploymentType": "SCRATCH_2"})["FileSystem"]["FileSystemId"]
    stack = bf.open()
    with pytest.raises(PlanError, match=re.escape(f"fast.fsx_lustre.main: target 'aws' has no aws.fsx_lustre "
                                                  f"with id '{windows}'")):
        stack.import_resource("fast.fsx_lustre.main", windows)
    assert stack.import_resource("fast.fsx_lustre.main", lustre).action == "noop"
    stack.close()
    assert bf.changes() == {}
    aws_account.server.clear_calls()
    bf.cli("apply", "--yes")
    assert aws_account.server.count("CreateFileSystem") == 0 and bf.inventory()["fsx"] == sorted([windows, lustre])

    # a bigger size is an in-place update of the imported file system (moto has no UpdateFileSystem to apply it)
    bf.doc["storage"][0]["size_gb"] = 4000
    bf.write()
    assert bf.changes() == {"fast.fsx_lustre.main": ("update", ["storage_gb"])}
    bf.doc["storage"][0]["size_gb"] = 2000
    bf.write()
    bf.cli("destroy", "--yes")
    assert bf.inventory()["fsx"] == [windows]  # only what was never imported is left


def test_an_imported_cluster_that_differs_plans_exactly_the_difference(platform: Brownfield) -> None:
    account, ec2 = platform.account, platform.client("ec2")
    vpc = ec2.describe_subnets(SubnetIds=[account.subnet])["Subnets"][0]["VpcId"]
    other = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.2.0/24")["Subnet"]["SubnetId"]
    platform.client("sagemaker").create_cluster(ClusterName="vision-train", InstanceGroups=[
        {"InstanceGroupName": "big-h100", "InstanceType": "ml.p5.48xlarge", "InstanceCount": 1, "ExecutionRole": ROLE,
         "LifeCycleConfig": {"SourceS3Uri": f"s3://{account.bucket}/mlplat/hyperpod/", "OnCreate": "on_create.sh"}},
    ], VpcConfig={"Subnets": [other], "SecurityGroupIds": [account.security_group]})
    # in another network than the stack's it cannot be adopted as it is: the plan replaces it
    stack = platform.open()
    change = stack.import_resource("train.hyperpod_cluster.main", "vision-train")
    stack.close()
    assert change.action == "replace" and change.forces_replacement == ["subnets"]
    assert change.before["subnets"] == [other] and change.before["name"] == "vision-train"
    # pointed at its network, only its instance groups differ: one pool smaller, the other missing
    platform.doc["targets"]["aws"]["subnets"] = [other]
    platform.write()
    assert platform.changes()["train.hyperpod_cluster.main"] == ("update", ["groups"])
    assert [(g["name"], g["count"]) for g in platform.open().state.resources()["train.hyperpod_cluster.main"].inputs[
        "groups"]] == [("big-h100", 1)]


# -- discovery ----------------------------------------------------------------------------------------------------
def registry_stack(directory: Path, account: AwsAccount) -> Brownfield:
    return Brownfield(directory, account, {
        "apiVersion": "mlplat/v1", "metadata": {"name": "imgs"}, "target": "aws",
        "targets": {"aws": account.settings()}, "registry": {"name": "reg", "images": [{"name": "srv"}]}})


def other_account_env(account: AwsAccount) -> dict[str, str]:
    """Credentials of a role in another account (moto's STS hands them out for any role ARN)."""
    creds = account.server.client("sts").assume_role(RoleArn=f"arn:aws:iam::{OTHER_ACCOUNT}:role/deployer",
                                                     RoleSessionName="other-account")["Credentials"]
    return {"AWS_ACCESS_KEY_ID": creds["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
            "AWS_SESSION_TOKEN": creds["SessionToken"]}


def test_a_saved_plan_is_refused_in_another_account_or_region(tmp_path: Path, aws_account: AwsAccount) -> None:
    bf = registry_stack(tmp_path, aws_account)
    preview = bf.cli("preview", "-o", str(tmp_path / "plan.json"))
    assert "123456789012" in preview.stdout
    saved = json.loads((tmp_path / "plan.json").read_text())
    assert saved["discovery"] == {"aws": {"account": "123456789012", "region": "us-east-1"}}

    # the same stack with another account's credentials: refused before any change, naming target and key
    other = other_account_env(aws_account)
    assert bf.open().targets["aws"].discover()["account"] == "123456789012"
    aws_account.server.clear_calls()
    proc = bf.cli("apply", str(tmp_path / "plan.json"), check=False, env=other)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    message = " ".join(proc.stderr.split())
    assert f"target 'aws': account was \"123456789012\", now \"{OTHER_ACCOUNT}\"" in message, message
    assert "region" not in message.split("account was")[1]  # only what changed is named
    assert bf.mutations() == []
    assert bf.inventory()["ecr"] == []

    # the region is part of it too: the stack file now points elsewhere
    bf.doc["targets"]["aws"]["region"] = "us-west-2"
    bf.write()
    stack = bf.open()
    from provisioner.plan import Plan

    with pytest.raises(PlanError, match=re.escape('target \'aws\': region was "us-east-1", now "us-west-2"')):
        stack.apply(Plan.loads((tmp_path / "plan.json").read_text(), stack.state.codec))
    stack.close()
    bf.doc["targets"]["aws"]["region"] = "us-east-1"
    bf.write()

    # with the credentials it was made with, it applies
    bf.cli("apply", str(tmp_path / "plan.json"))
    assert bf.inventory()["ecr"] == ["imgs/srv"]


def test_discovery_names_the_account_of_the_credentials(tmp_path: Path, aws_account: AwsAccount,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    bf = registry_stack(tmp_path, aws_account)
    for key, value in other_account_env(aws_account).items():
        monkeypatch.setenv(key, value)
    assert bf.open().targets["aws"].discover() == {"account": OTHER_ACCOUNT, "region": "us-east-1"}


# -- capabilities -------------------------------------------------------------------------------------------------
def test_serving_accelerators_are_those_sagemaker_sells(tmp_path: Path, aws_account: AwsAccount,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    rows = catalog._offerings

    def ec2_only_t4(target: str) -> tuple[Any, ...]:  # SageMaker hosting sells no t4 type
        return tuple(replace(o, serving=False) if o.accelerator == "t4" else o for o in rows(target))

    target = registry_stack(tmp_path, aws_account).open().targets["aws"]
    caps = target.capabilities()
    assert "t4" in caps.serving_accelerators and caps.serving_accelerators == caps.training_accelerators
    assert "h100-nvl" not in caps.training_accelerators  # no aws rows at all
    monkeypatch.setattr(catalog, "_offerings", ec2_only_t4)
    caps = target.capabilities()
    assert "t4" in caps.training_accelerators and "t4" not in caps.serving_accelerators
    assert caps.serving_accelerators == caps.training_accelerators - {"t4"}
