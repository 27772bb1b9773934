"""Tests for tests/aws_moto.py: the real-HTTP moto server and our SageMaker/EFS additions."""

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from aws_moto import MotoServer, started_server

ROLE = "arn:aws:iam::123456789012:role/sagemaker"
CONTAINER = {"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/llm:1", "ModelDataUrl": "s3://b/m.tar.gz"}
LIFECYCLE = {"SourceS3Uri": "s3://sagemaker-lifecycle/scripts", "OnCreate": "on_create.sh"}


@pytest.fixture(scope="module")
def server() -> Iterator[MotoServer]:
    srv = started_server()
    yield srv
    srv.stop()


@pytest.fixture
def aws(server: MotoServer) -> MotoServer:
    server.reset()
    return server


def _code(err: pytest.ExceptionInfo[ClientError]) -> str:
    return str(err.value.response["Error"]["Code"])


def _variant(name: str, model: str, count: int = 1, weight: float = 1.0, itype: str = "ml.m5.large") -> dict[str, Any]:
    return {
        "VariantName": name,
        "ModelName": model,
        "InitialInstanceCount": count,
        "InstanceType": itype,
        "InitialVariantWeight": weight,
    }


def _group(name: str, count: int, itype: str = "ml.g5.xlarge") -> dict[str, Any]:
    return {
        "InstanceGroupName": name,
        "InstanceType": itype,
        "InstanceCount": count,
        "LifeCycleConfig": LIFECYCLE,
        "ExecutionRole": ROLE,
    }


def _endpoint_setup(sm: Any) -> None:
    for model in ("m1", "m2"):
        sm.create_model(ModelName=model, ExecutionRoleArn=ROLE, PrimaryContainer=CONTAINER)
    sm.create_endpoint_config(EndpointConfigName="c1", ProductionVariants=[_variant("blue", "m1", 1, 1.0)])
    sm.create_endpoint_config(
        EndpointConfigName="c2",
        ProductionVariants=[_variant("blue", "m1", 2, 0.9), _variant("green", "m2", 1, 0.1, "ml.c5.xlarge")],
        ShadowProductionVariants=[_variant("shadow", "m2", 1, 1.0)],
    )
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="c1")


def _weights(desc: dict[str, Any]) -> dict[str, tuple[float, int]]:
    return {v["VariantName"]: (v["CurrentWeight"], v["CurrentInstanceCount"]) for v in desc["ProductionVariants"]}


# -- call log --------------------------------------------------------------------------------


def test_call_log_names_actions_for_every_protocol(aws: MotoServer) -> None:
    aws.client("sagemaker").list_endpoints()
    aws.client("ecr").create_repository(repositoryName="repo")
    efs = aws.client("efs")
    fs_id = efs.create_file_system(CreationToken="tok")["FileSystemId"]
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    mt_id = efs.create_mount_target(FileSystemId=fs_id, SubnetId=subnet)["MountTargetId"]
    efs.describe_file_systems(FileSystemId=fs_id)
    efs.delete_mount_target(MountTargetId=mt_id)
    efs.delete_file_system(FileSystemId=fs_id)
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="a/b.json", Body=b"{}")
    s3.head_object(Bucket="bkt", Key="a/b.json")
    s3.get_object(Bucket="bkt", Key="a/b.json")["Body"].read()
    s3.list_objects_v2(Bucket="bkt", Prefix="a/")
    s3.delete_object(Bucket="bkt", Key="a/b.json")
    assert aws.calls == [
        "ListEndpoints",
        "CreateRepository",
        "CreateFileSystem",
        "CreateVpc",
        "CreateSubnet",
        "CreateMountTarget",
        "DescribeFileSystems",
        "DeleteMountTarget",
        "DeleteFileSystem",
        "CreateBucket",
        "PutObject",
        "HeadObject",
        "GetObject",
        "ListObjectsV2",
        "DeleteObject",
    ]
    assert aws.count("CreateVpc") == 1
    aws.clear_calls()
    assert aws.calls == []


def test_reset_empties_backends_and_log(aws: MotoServer) -> None:
    aws.client("ecr").create_repository(repositoryName="repo")
    aws.reset()
    assert aws.calls == []
    assert aws.client("ecr").describe_repositories()["repositories"] == []


def test_subprocess_reaches_server_with_env(aws: MotoServer) -> None:
    aws.client("ecr").create_repository(repositoryName="repo")
    code = (
        "import boto3,sys; c=boto3.client('ecr', endpoint_url=sys.argv[1]);"
        "print(c.describe_repositories()['repositories'][0]['repositoryName'])"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | aws.env()
    out = subprocess.run([sys.executable, "-c", code, aws.url], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "repo"
    assert aws.calls == ["CreateRepository", "DescribeRepositories"]


# -- throttling ------------------------------------------------------------------------------


def test_throttle_json_protocol_then_succeeds_without_side_effect(aws: MotoServer) -> None:
    sm, ecr = aws.client("sagemaker"), aws.client("ecr")
    with aws.throttle(2):
        for _ in range(2):
            with pytest.raises(ClientError) as err:
                sm.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer=CONTAINER)
            assert _code(err) == "ThrottlingException"
            assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
            assert sm.list_models()["Models"] == []  # reads are not throttled; nothing was created
        sm.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer=CONTAINER)
        with pytest.raises(ClientError) as err:  # each action has its own budget
            ecr.create_repository(repositoryName="repo")
        assert _code(err) == "ThrottlingException"
    ecr.create_repository(repositoryName="repo")  # leaving the block switches throttling off
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == ["m"]
    assert aws.count("CreateModel") == 3
    assert aws.throttled == ["CreateModel", "CreateModel", "CreateRepository"]


def test_throttle_efs_rest_json(aws: MotoServer) -> None:
    efs = aws.client("efs")
    with aws.throttle(1):
        with pytest.raises(ClientError) as err:
            efs.create_file_system(CreationToken="tok")
        assert _code(err) == "ThrottlingException"
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert efs.describe_file_systems()["FileSystems"] == []
        efs.create_file_system(CreationToken="tok")
    assert len(efs.describe_file_systems()["FileSystems"]) == 1


def test_throttle_s3_ec2_and_query_shapes(aws: MotoServer) -> None:
    s3, ec2, iam = aws.client("s3"), aws.client("ec2"), aws.client("iam")
    with aws.throttle(1):
        with pytest.raises(ClientError) as err:
            s3.create_bucket(Bucket="bkt")
        assert _code(err) == "SlowDown"
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        with pytest.raises(ClientError) as err:
            ec2.create_vpc(CidrBlock="10.0.0.0/16")
        assert _code(err) == "RequestLimitExceeded"
        with pytest.raises(ClientError) as err:
            iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")
        assert _code(err) == "Throttling"
        assert ec2.describe_vpcs()["Vpcs"] == [v for v in ec2.describe_vpcs()["Vpcs"] if v["IsDefault"]]
        s3.create_bucket(Bucket="bkt")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["bkt"]
    assert aws.throttled == ["CreateBucket", "CreateVpc", "CreateRole"]


def test_throttle_explicit_actions_only(aws: MotoServer) -> None:
    sm = aws.client("sagemaker")
    with aws.throttle(1, actions={"ListModels"}):
        sm.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer=CONTAINER)
        with pytest.raises(ClientError) as err:
            sm.list_models()
        assert _code(err) == "ThrottlingException"
        assert len(sm.list_models()["Models"]) == 1


# -- SageMaker UpdateEndpoint / shadow variants ----------------------------------------------


def test_update_endpoint_switches_config_and_variants(aws: MotoServer) -> None:
    sm = aws.client("sagemaker")
    _endpoint_setup(sm)
    before = sm.describe_endpoint(EndpointName="ep")
    assert before["EndpointStatus"] == "InService"
    assert _weights(before) == {"blue": (1.0, 1)}
    arn = sm.update_endpoint(EndpointName="ep", EndpointConfigName="c2")["EndpointArn"]
    after = sm.describe_endpoint(EndpointName="ep")
    assert arn == after["EndpointArn"]
    assert after["EndpointConfigName"] == "c2"
    assert _weights(after) == {"blue": (0.9, 2), "green": (0.1, 1)}
    assert [v["VariantName"] for v in after["ShadowProductionVariants"]] == ["shadow"]
    assert after["LastModifiedTime"] >= before["LastModifiedTime"]
    config = sm.describe_endpoint_config(EndpointConfigName="c2")
    assert [v["VariantName"] for v in config["ShadowProductionVariants"]] == ["shadow"]
    assert aws.calls.count("UpdateEndpoint") == 1


def test_update_endpoint_retain_all_variant_properties(aws: MotoServer) -> None:
    sm = aws.client("sagemaker")
    _endpoint_setup(sm)
    sm.update_endpoint_weights_and_capacities(
        EndpointName="ep", DesiredWeightsAndCapacities=[{"VariantName": "blue", "DesiredWeight": 0.5}]
    )
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="c2", RetainAllVariantProperties=True)
    assert _weights(sm.describe_endpoint(EndpointName="ep"))["blue"][0] == 0.5
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="c1")
    sm.update_endpoint(
        EndpointName="ep",
        EndpointConfigName="c2",
        RetainAllVariantProperties=True,
        ExcludeRetainedVariantProperties=[{"VariantPropertyType": "DesiredWeight"}],
    )
    assert _weights(sm.describe_endpoint(EndpointName="ep")) == {"blue": (0.9, 1), "green": (0.1, 1)}


def test_update_endpoint_errors(aws: MotoServer) -> None:
    sm = aws.client("sagemaker")
    _endpoint_setup(sm)
    with pytest.raises(ClientError) as err:
        sm.update_endpoint(EndpointName="ep", EndpointConfigName="missing")
    assert _code(err) == "ValidationException"
    assert "Could not find endpoint configuration" in str(err.value)
    with pytest.raises(ClientError) as err:
        sm.update_endpoint(EndpointName="nope", EndpointConfigName="c2")
    assert _code(err) == "ValidationException"
    assert "Could not find endpoint" in str(err.value)
    assert sm.describe_endpoint(EndpointName="ep")["EndpointConfigName"] == "c1"


# -- SageMaker UpdateCluster -----------------------------------------------------------------


def test_update_cluster_count_add_delete_and_type_change(aws: MotoServer) -> None:
    sm = aws.client("sagemaker")
    sm.create_cluster(ClusterName="hp", InstanceGroups=[_group("workers", 2), _group("login", 1, "ml.m5.large")])
    arn = sm.update_cluster(
        ClusterName="hp", InstanceGroups=[_group("workers", 4), _group("extra", 1)], InstanceGroupsToDelete=["login"]
    )["ClusterArn"]
    desc = sm.describe_cluster(ClusterName="hp")
    assert desc["ClusterArn"] == arn
    groups = {g["InstanceGroupName"]: g for g in desc["InstanceGroups"]}
    assert set(groups) == {"workers", "extra"}
    assert (groups["workers"]["CurrentCount"], groups["workers"]["TargetCount"]) == (4, 4)
    assert groups["extra"]["InstanceType"] == "ml.g5.xlarge"
    nodes = sm.list_cluster_nodes(ClusterName="hp")["ClusterNodeSummaries"]
    assert sorted(n["InstanceGroupName"] for n in nodes) == ["extra"] + ["workers"] * 4

    sm.update_cluster(ClusterName="hp", InstanceGroups=[_group("extra", 2)])  # unlisted groups are kept
    groups = {g["InstanceGroupName"]: g for g in sm.describe_cluster(ClusterName="hp")["InstanceGroups"]}
    assert (groups["workers"]["TargetCount"], groups["extra"]["TargetCount"]) == (4, 2)

    with pytest.raises(ClientError) as err:
        sm.update_cluster(ClusterName="hp", InstanceGroups=[_group("workers", 4, "ml.g5.2xlarge")])
    assert _code(err) == "ValidationException"
    groups = {g["InstanceGroupName"]: g for g in sm.describe_cluster(ClusterName="hp")["InstanceGroups"]}
    assert groups["workers"]["InstanceType"] == "ml.g5.xlarge"

    with pytest.raises(ClientError) as err:
        sm.update_cluster(ClusterName="missing", InstanceGroups=[_group("workers", 1)])
    assert _code(err) == "ResourceNotFound"


# -- SageMaker model packages ----------------------------------------------------------------


def test_delete_model_package_and_group(aws: MotoServer) -> None:
    sm = aws.client("sagemaker")
    sm.create_model_package_group(ModelPackageGroupName="grp", Tags=[{"Key": "team", "Value": "ml"}])
    spec = {
        "Containers": [CONTAINER],
        "SupportedContentTypes": ["application/json"],
        "SupportedResponseMIMETypes": ["application/json"],
    }
    arns = [
        sm.create_model_package(ModelPackageGroupName="grp", InferenceSpecification=spec)["ModelPackageArn"]
        for _ in range(2)
    ]
    assert [a.rsplit("/", 1)[-1] for a in arns] == ["1", "2"]
    sm.add_tags(ResourceArn=arns[0], Tags=[{"Key": "k", "Value": "v"}])
    assert sm.list_tags(ResourceArn=arns[0])["Tags"] == [{"Key": "k", "Value": "v"}]

    with pytest.raises(ClientError) as err:
        sm.delete_model_package_group(ModelPackageGroupName="grp")
    assert _code(err) == "ConflictException"

    sm.delete_model_package(ModelPackageName=arns[0])
    third = sm.create_model_package(ModelPackageGroupName="grp", InferenceSpecification=spec)["ModelPackageArn"]
    assert third.endswith("/3")  # versions keep increasing; no reuse of a deleted number
    listed = sm.list_model_packages(ModelPackageGroupName="grp")["ModelPackageSummaryList"]
    assert sorted(p["ModelPackageVersion"] for p in listed) == [2, 3]
    with pytest.raises(ClientError) as err:
        sm.describe_model_package(ModelPackageName=arns[0])
    assert _code(err) == "ValidationException"
    with pytest.raises(ClientError) as err:
        sm.delete_model_package(ModelPackageName=arns[0])
    assert _code(err) == "ValidationException"

    for arn in (arns[1], third):
        sm.delete_model_package(ModelPackageName=arn)
    sm.delete_model_package_group(ModelPackageGroupName="grp")
    assert sm.list_model_package_groups()["ModelPackageGroupSummaryList"] == []
    with pytest.raises(ClientError) as err:
        sm.delete_model_package_group(ModelPackageGroupName="grp")
    assert _code(err) == "ValidationException"


# -- status delays ---------------------------------------------------------------------------


def test_delay_status_endpoint_creating_then_updating(aws: MotoServer) -> None:
    sm = aws.client("sagemaker")
    with aws.delay_status(2):
        _endpoint_setup(sm)
        statuses = [sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] for _ in range(3)]
        assert statuses == ["Creating", "Creating", "InService"]
        sm.update_endpoint(EndpointName="ep", EndpointConfigName="c2")
        statuses = [sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] for _ in range(3)]
        assert statuses == ["Updating", "Updating", "InService"]
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="c1")
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "InService"


def test_delay_status_cluster(aws: MotoServer) -> None:
    sm = aws.client("sagemaker")
    with aws.delay_status(1):
        sm.create_cluster(ClusterName="hp", InstanceGroups=[_group("workers", 1)])
        assert sm.describe_cluster(ClusterName="hp")["ClusterStatus"] == "Creating"
        assert sm.describe_cluster(ClusterName="hp")["ClusterStatus"] == "InService"
        sm.update_cluster(ClusterName="hp", InstanceGroups=[_group("workers", 2)])
        assert sm.describe_cluster(ClusterName="hp")["ClusterStatus"] == "Updating"
        assert sm.describe_cluster(ClusterName="hp")["ClusterStatus"] == "InService"


# -- EFS ---------------------------------------------------------------------------------------


def test_efs_creation_token_conflict_carries_file_system_id(aws: MotoServer) -> None:
    efs = aws.client("efs")
    fs_id = efs.create_file_system(CreationToken="tok")["FileSystemId"]
    with pytest.raises(ClientError) as err:
        efs.create_file_system(CreationToken="tok")
    assert _code(err) == "FileSystemAlreadyExists"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert fs_id in err.value.response["Error"]["Message"]
    assert err.value.response.get("FileSystemId") == fs_id
