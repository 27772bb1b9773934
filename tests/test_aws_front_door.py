"""The aws target's part of migrations: the Route 53 front door (weighted records with health checks), the serving
`upstream` a front door forwards to, and the S3 artifact store. Real boto3 against the moto server on 127.0.0.1;
every claim about what exists is checked with boto3 list/get calls on the server."""

from __future__ import annotations

import hashlib
import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.api import Stack
from provisioner.errors import MlplatError, RetryableError, SpecError
from provisioner.operations import detached

from conftest import STACKS, AwsAccount, require_module, run_mlplat

require_module("boto3", "the aws extra is part of the test extra")

ZONE = "ml.example.com"
RECORD = f"iris.vision.{ZONE}"
ADDRESS = "iris.front_door.aws"
EAST = "https://runtime.sagemaker.us-east-1.amazonaws.com/endpoints/vision-iris"
WEST = "https://runtime.sagemaker.us-west-2.amazonaws.com/endpoints/vision-iris"


def upstream(name: str, weight: int, url: str) -> dict[str, Any]:
    return {"name": name, "weight": weight, "url": url, "api_key": None,
            "sign": {"kind": "sigv4", "service": "sagemaker", "region": url.split(".")[2], "profile": None}}


def inputs(*upstreams: dict[str, Any]) -> dict[str, Any]:
    return {"zone": ZONE, "record": RECORD, "upstreams": list(upstreams)}


def write_stack(directory: Path, account: AwsAccount, *, front_door: bool = False, **settings: Any) -> Path:
    """stacks/aws.yaml without its cluster, pointed at the moto account; the endpoint behind an aws front door."""
    shutil.copytree(STACKS / "models", directory / "models", dirs_exist_ok=True)
    doc = yaml.safe_load((STACKS / "aws.yaml").read_text())
    del doc["clusters"]
    doc["targets"]["aws"] = account.settings(**settings)
    if front_door:
        doc["serving"][0]["front_door"] = "aws"
    path = directory / "aws.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class Door:
    """The front door provider, and Route 53 as boto3 sees it."""

    def __init__(self, directory: Path, account: AwsAccount) -> None:
        self.server = account.server
        self.route53 = account.server.client("route53")
        self.zone_id = self.route53.create_hosted_zone(Name=ZONE, CallerReference="tests")["HostedZone"]["Id"].split(
            "/")[-1]
        self.stack = Stack(write_stack(directory, account, dns_zone=ZONE))
        self.provider: Any = self.stack.provider_for("aws", "aws.front_door")
        self.id = f"{self.zone_id}/{RECORD}"

    def sets(self) -> dict[str, dict[str, Any]]:
        """The record's weighted sets by SetIdentifier (boto3's ListResourceRecordSets)."""
        found = self.route53.list_resource_record_sets(HostedZoneId=self.zone_id)["ResourceRecordSets"]
        return {s["SetIdentifier"]: s for s in found if s["Name"] == f"{RECORD}."}

    def checks(self) -> set[str]:
        return {c["Id"] for c in self.route53.list_health_checks()["HealthChecks"]}

    def create(self, desired: dict[str, Any], token: str = "t-create", **values: Any) -> Any:
        return self.provider.create(ADDRESS, desired, detached(ADDRESS, token=token, **values))

    def update(self, prior: dict[str, Any], desired: dict[str, Any], token: str) -> dict[str, Any]:
        outputs: dict[str, Any] = self.provider.update(self.id, prior, desired, detached(ADDRESS, "update",
                                                                                         token=token))
        return outputs

    def assert_live(self, desired: dict[str, Any]) -> dict[str, str]:
        """Route 53 holds exactly the desired upstreams, each with a health check, and no other health check."""
        sets = self.sets()
        assert {n: (s["Weight"], s["TTL"], s["Type"]) for n, s in sets.items()} == {
            u["name"]: (u["weight"], 60, "CNAME") for u in desired["upstreams"]}
        for u in desired["upstreams"]:
            host = u["url"].split("/")[2]
            assert sets[u["name"]]["ResourceRecords"] == [{"Value": host}]
            check = self.route53.get_health_check(HealthCheckId=sets[u["name"]]["HealthCheckId"])["HealthCheck"]
            config = check["HealthCheckConfig"]
            assert (config["Type"], config["FullyQualifiedDomainName"], config["Port"], config["ResourcePath"],
                    config["RequestInterval"], config["FailureThreshold"]) == (
                "HTTPS", host, 443, "/endpoints/vision-iris", 30, 3)
        health = {n: s["HealthCheckId"] for n, s in sets.items()}
        assert self.checks() == set(health.values())
        observed = self.provider.read(self.id, desired)
        assert observed is not None and observed.inputs == desired  # no drift right after a change
        assert self.provider.weights(self.id) == {u["name"]: u["weight"] for u in desired["upstreams"]}
        return health


@pytest.fixture
def door(tmp_path: Path, aws_account: AwsAccount) -> Door:
    return Door(tmp_path, aws_account)


def test_upstreams_shift_in_place_one_atomic_change_each(door: Door) -> None:
    one = inputs(upstream("aws", 100, EAST))
    created = door.create(one)
    assert created.id == door.id
    health = door.assert_live(one)
    assert created.outputs == {"url": f"https://{RECORD}", "zone_id": door.zone_id, "record": RECORD,
                               "health_checks": health}
    tags = door.route53.list_tags_for_resource(ResourceType="healthcheck", ResourceId=health["aws"])["ResourceTagSet"]
    assert {t["Key"]: t["Value"] for t in tags["Tags"]}["mlplat:address"] == ADDRESS

    prior, steps = one, [(90, 10), (50, 50)]
    for n, (east, west) in enumerate(steps):
        desired = inputs(upstream("aws", east, EAST), upstream("west", west, WEST))
        door.server.clear_calls()
        outputs = door.update(prior, desired, token=f"t-step{n}")
        assert door.server.count("ChangeResourceRecordSets") == 1  # both weights move in one batch
        assert door.server.count("GetChange") >= 1  # waited for INSYNC
        now = door.assert_live(desired)
        assert now["aws"] == health["aws"]  # a weight change keeps the health check
        assert outputs["health_checks"] == now and outputs["url"] == f"https://{RECORD}"
        prior = desired

    last = inputs(upstream("west", 100, WEST))
    outputs = door.update(prior, last, token="t-last")
    assert door.assert_live(last) == outputs["health_checks"]
    assert health["aws"] not in door.checks()  # the removed upstream's health check went with its record
    door.server.clear_calls()
    door.update(last, last, token="t-noop")
    assert door.server.count("ChangeResourceRecordSets") == door.server.count("CreateHealthCheck") == 0


def test_read_reports_drift_and_update_puts_it_back(door: Door) -> None:
    desired = inputs(upstream("aws", 90, EAST), upstream("west", 10, WEST))
    door.create(desired)
    moved = dict(door.sets()["aws"], Weight=30)  # changed in the console
    door.route53.change_resource_record_sets(HostedZoneId=door.zone_id, ChangeBatch={
        "Changes": [{"Action": "UPSERT", "ResourceRecordSet": moved}]})
    observed = door.provider.read(door.id, desired)
    assert observed is not None
    assert [(u["name"], u["weight"]) for u in observed.inputs["upstreams"]] == [("aws", 30), ("west", 10)]
    assert observed.inputs != desired

    door.route53.change_resource_record_sets(HostedZoneId=door.zone_id, ChangeBatch={
        "Changes": [{"Action": "DELETE", "ResourceRecordSet": door.sets()["west"]}]})
    observed = door.provider.read(door.id, desired)
    assert observed is not None and [u["name"] for u in observed.inputs["upstreams"]] == ["aws"]

    door.update(observed.inputs, desired, token="t-fix")
    door.assert_live(desired)


def test_delete_removes_records_and_health_checks(door: Door) -> None:
    desired = inputs(upstream("aws", 50, EAST), upstream("west", 50, WEST))
    door.create(desired)
    assert len(door.checks()) == 2
    door.provider.delete(door.id, desired, detached(ADDRESS, "delete", token="t-delete"))
    assert door.sets() == {} and door.checks() == set()
    assert door.provider.read(door.id, desired) is None
    door.provider.delete(door.id, desired, detached(ADDRESS, "delete", token="t-again"))  # gone: success
    names = [s["Type"] for s in door.route53.list_resource_record_sets(HostedZoneId=door.zone_id)[
        "ResourceRecordSets"]]
    assert sorted(names) == ["NS", "SOA"]  # the zone itself is untouched


class CrashAtCheckpoint(BaseException):
    """Escapes the provider like a kill would: the record change was made and checkpointed, not waited on."""


def test_find_after_a_crash_and_a_resumed_create(door: Door) -> None:
    desired = inputs(upstream("aws", 100, EAST))
    checkpoints: list[str] = []

    def crash(operation: str) -> None:
        checkpoints.append(operation)
        raise CrashAtCheckpoint(operation)

    with pytest.raises(CrashAtCheckpoint):
        door.create(desired, token="t-1", on_checkpoint=crash)
    assert checkpoints and checkpoints[0].startswith("ChangeResourceRecordSets ")

    def find(token: str, *exclude: str) -> Any:
        return door.provider.find(ADDRESS, desired, detached(ADDRESS, "find", token=token,
                                                             exclude=frozenset(exclude)))

    found = find("t-1")
    assert found is not None and found.id == door.id
    assert found.outputs["health_checks"] == {"aws": door.sets()["aws"]["HealthCheckId"]}
    assert find("t-other") is None and find("t-1", door.id) is None
    assert find("") is not None  # journalled without a token: by address

    door.server.clear_calls()  # recovery resumes the checkpointed change: nothing is made twice
    resumed = door.create(desired, token="t-1", operation=checkpoints[0])
    assert door.server.count("ChangeResourceRecordSets") == 0
    assert resumed.outputs == found.outputs
    door.assert_live(desired)


def test_retried_create_reuses_its_health_checks_and_a_new_one_sweeps_orphans(door: Door) -> None:
    desired = inputs(upstream("aws", 90, EAST), upstream("west", 10, WEST))
    with door.server.throttle(1, actions={"ChangeResourceRecordSets"}), pytest.raises(RetryableError):
        door.create(desired, token="t-1")
    made = door.checks()
    assert len(made) == 2 and door.sets() == {}
    assert door.provider.find(ADDRESS, desired, detached(ADDRESS, "find", token="t-1")) is None

    door.create(desired, token="t-1")  # the engine's retry: the same CallerReferences give the same checks
    assert door.checks() == made and door.server.count("CreateHealthCheck") == 4
    door.assert_live(desired)

    door.provider.delete(door.id, desired, detached(ADDRESS, "delete"))
    with door.server.throttle(1, actions={"ChangeResourceRecordSets"}), pytest.raises(RetryableError):
        door.create(desired, token="t-2")  # a crash here: recovery finds nothing, the next apply creates anew
    orphans = door.checks()
    assert len(orphans) == 2
    door.create(desired, token="t-3")
    assert not orphans & door.checks()
    door.assert_live(desired)


def test_import_rebuilds_the_inputs_from_route53(door: Door) -> None:
    desired = inputs(upstream("aws", 70, EAST), upstream("west", 30, WEST))
    door.create(desired)
    seen = door.provider.import_(ADDRESS, door.id, {**desired, "zone": None})
    assert seen is not None and seen.inputs == desired
    assert door.provider.import_(ADDRESS, f"/hostedzone/{door.id}", desired).inputs == desired
    assert door.provider.import_(ADDRESS, "not-an-id", desired) is None
    assert door.provider.import_(ADDRESS, f"ZNOSUCHZONE/{RECORD}", desired) is None


def test_a_record_mlplat_did_not_make_is_not_taken_over(door: Door) -> None:
    door.route53.change_resource_record_sets(HostedZoneId=door.zone_id, ChangeBatch={"Changes": [
        {"Action": "UPSERT", "ResourceRecordSet": {"Name": RECORD, "Type": "CNAME", "SetIdentifier": "theirs",
                                                   "Weight": 1, "TTL": 300,
                                                   "ResourceRecords": [{"Value": "example.org"}]}}]})
    with pytest.raises(MlplatError, match="did not make"):
        door.create(inputs(upstream("aws", 100, EAST)))
    assert list(door.sets()) == ["theirs"] and door.checks() == set()


def test_mixed_record_types_and_a_missing_zone_are_clear_errors(door: Door) -> None:
    with pytest.raises(MlplatError, match="mixes host names and IP addresses"):
        door.create(inputs(upstream("aws", 50, EAST), upstream("edge", 50, "http://52.94.236.248:8080/v1")))
    door.route53.delete_hosted_zone(Id=door.zone_id)
    with pytest.raises(MlplatError) as err:
        door.create(inputs(upstream("aws", 100, EAST)))
    assert f"no hosted zone named {ZONE}" in err.value.message and "create-hosted-zone" in str(err.value.hint)
    assert door.provider.find(ADDRESS, inputs(upstream("aws", 100, EAST)), detached(ADDRESS, "find")) is None


def test_an_ip_upstream_is_an_a_record_with_an_ip_health_check(door: Door) -> None:
    desired = inputs(upstream("edge", 100, "http://52.94.236.248:8080/v1/predict"))
    assert door.create(desired).outputs["url"] == f"http://{RECORD}"
    [edge] = door.sets().values()
    assert (edge["Type"], edge["ResourceRecords"]) == ("A", [{"Value": "52.94.236.248"}])
    config = door.route53.get_health_check(HealthCheckId=edge["HealthCheckId"])["HealthCheck"]["HealthCheckConfig"]
    assert (config["Type"], config["IPAddress"], config["Port"], config["ResourcePath"]) == (
        "HTTP", "52.94.236.248", 8080, "/v1/predict")
    observed = door.provider.read(door.id, desired)
    assert observed is not None and observed.inputs == desired
    assert door.provider.read(door.id, desired).outputs["url"] == f"http://{RECORD}"

    hostname = inputs(upstream("aws", 100, EAST))  # a change of record type: DELETE A and UPSERT CNAME, one batch
    door.update(desired, hostname, token="t-type")
    door.assert_live(hostname)


def test_the_fake_route53_keeps_the_rules_the_provider_relies_on(door: Door) -> None:
    """Where moto differs from the Route 53 API reference, tests/aws_moto.py follows the reference."""
    from botocore.exceptions import ClientError

    config = {"Type": "HTTPS", "FullyQualifiedDomainName": "example.org", "Port": 443, "ResourcePath": "/"}
    first = door.route53.create_health_check(CallerReference="ref-1", HealthCheckConfig=config)["HealthCheck"]
    again = door.route53.create_health_check(CallerReference="ref-1", HealthCheckConfig=config)["HealthCheck"]
    assert first["Id"] == again["Id"] and len(door.checks()) == 1
    door.route53.delete_health_check(HealthCheckId=first["Id"])
    with pytest.raises(ClientError, match="HealthCheckAlreadyExists"):  # a deleted check's reference stays used
        door.route53.create_health_check(CallerReference="ref-1", HealthCheckConfig=config)

    def weighted(name: str, value: str) -> dict[str, Any]:
        return {"Name": name, "Type": "CNAME", "SetIdentifier": "aws", "Weight": 1, "TTL": 60,
                "ResourceRecords": [{"Value": value}]}

    door.route53.change_resource_record_sets(HostedZoneId=door.zone_id, ChangeBatch={"Changes": [
        {"Action": "CREATE", "ResourceRecordSet": weighted(f"a.{ZONE}", "one.example.org")},
        {"Action": "CREATE", "ResourceRecordSet": weighted(f"b.{ZONE}", "two.example.org")}]})
    with pytest.raises(ClientError, match="do not match the current values"):
        door.route53.change_resource_record_sets(HostedZoneId=door.zone_id, ChangeBatch={"Changes": [
            {"Action": "DELETE", "ResourceRecordSet": weighted(f"a.{ZONE}", "stale.example.org")}]})
    change = door.route53.change_resource_record_sets(HostedZoneId=door.zone_id, ChangeBatch={"Changes": [
        {"Action": "DELETE", "ResourceRecordSet": weighted(f"a.{ZONE}", "one.example.org")}]})["ChangeInfo"]
    assert change["Status"] == "PENDING"
    assert door.route53.get_change(Id=change["Id"])["ChangeInfo"]["Status"] == "INSYNC"
    names = [s["Name"] for s in door.route53.list_resource_record_sets(HostedZoneId=door.zone_id)[
        "ResourceRecordSets"] if s.get("SetIdentifier")]
    assert names == [f"b.{ZONE}."]  # only a's set went (moto drops every set with that SetIdentifier)


# -- lowering ----------------------------------------------------------------------------------------------------


def test_lowering_without_dns_zone_names_the_setting(tmp_path: Path, aws_account: AwsAccount) -> None:
    with pytest.raises(SpecError) as err:
        Stack(write_stack(tmp_path, aws_account, front_door=True)).lower()
    assert "targets.aws.dns_zone is required for front doors" in str(err.value)


def test_lowering_the_front_door_upstream_and_checksums(tmp_path: Path, aws_account: AwsAccount) -> None:
    stack = Stack(write_stack(tmp_path, aws_account, front_door=True, dns_zone=f"{ZONE}."))
    resources, outputs = stack.lower()
    front = resources[ADDRESS]
    assert front.kind == "aws.front_door"
    assert (front.inputs["zone"], front.inputs["record"]) == (ZONE, RECORD)
    assert front.inputs["upstreams"] == [{
        "name": "aws", "weight": 100, "url": f"{aws_account.server.url}/endpoints/vision-iris", "api_key": None,
        "sign": {"kind": "sigv4", "service": "sagemaker", "region": "us-east-1", "profile": None}}]
    digest = hashlib.sha256((tmp_path / "models" / "iris-v1.json").read_bytes()).hexdigest()
    assert outputs["models.sha256.iris:1"] == digest
    assert stack.targets["aws"].capabilities().front_door == "dns"

    on_aws = Stack(write_stack(tmp_path / "real", aws_account, front_door=True, dns_zone=ZONE, endpoint_url=None))
    assert [u["url"] for u in on_aws.lower()[0][ADDRESS].inputs["upstreams"]] == [EAST]


def test_apply_and_destroy_an_endpoint_behind_its_front_door(tmp_path: Path, aws_account: AwsAccount) -> None:
    route53 = aws_account.server.client("route53")
    zone = route53.create_hosted_zone(Name=ZONE, CallerReference="e2e")["HostedZone"]["Id"]
    path, env = write_stack(tmp_path, aws_account, front_door=True, dns_zone=ZONE), aws_account.env()

    def mlplat(*args: str) -> Any:
        return run_mlplat(*args, "-f", str(path), cwd=tmp_path, env=env, check=False)

    assert mlplat("apply", "--yes").returncode == 0
    [only] = [s for s in route53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
              if s["Name"] == f"{RECORD}."]
    assert (only["SetIdentifier"], only["Weight"], only["Type"]) == ("aws", 100, "A")  # moto's 127.0.0.1
    assert [c["Id"] for c in route53.list_health_checks()["HealthChecks"]] == [only["HealthCheckId"]]
    outputs = json.loads(mlplat("output", "--json").stdout)
    assert outputs["iris.url"] == outputs["iris.front_door.aws.url"] == f"http://{RECORD}"
    assert mlplat("preview", "--detailed-exitcode").returncode == 0

    assert mlplat("destroy", "--yes").returncode == 0
    assert route53.list_health_checks()["HealthChecks"] == []
    assert {s["Type"] for s in route53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]} == {
        "NS", "SOA"}


# -- the upstream itself ---------------------------------------------------------------------------------------


def signed_post(url: str, sign: dict[str, Any], body: bytes) -> tuple[int, bytes]:
    """POST `body` to `url`, SigV4-signed as the upstream's `sign` says, credentials from the standard chain."""
    import botocore.session
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    credentials = botocore.session.Session(profile=sign["profile"]).get_credentials()
    request = AWSRequest("POST", url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(credentials, sign["service"], sign["region"]).add_auth(request)
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST",
                                                           headers=dict(request.headers.items())), timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_signed_invocation_of_the_upstream_answers(tmp_path: Path, aws_account: AwsAccount) -> None:
    stack = Stack(write_stack(tmp_path, aws_account, front_door=True, dns_zone=ZONE))
    [up] = stack.lower()[0][ADDRESS].inputs["upstreams"]
    sm = aws_account.server.client("sagemaker")
    sm.create_model(ModelName="m1", ExecutionRoleArn="arn:aws:iam::123456789012:role/mlplat-sagemaker",
                    PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/iris:1",
                                      "ModelDataUrl": "s3://sagemaker-mlplat-artifacts/m.tar.gz"})
    sm.create_endpoint_config(EndpointConfigName="c1", ProductionVariants=[
        {"VariantName": "production", "ModelName": "m1", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large",
         "InitialVariantWeight": 1.0}])

    status, body = signed_post(up["url"] + "/invocations", up["sign"], b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}')
    assert status == 400 and json.loads(body)["__type"].endswith("ValidationError")  # no such endpoint yet

    sm.create_endpoint(EndpointName="vision-iris", EndpointConfigName="c1")
    aws_account.server.clear_calls()
    status, _ = signed_post(up["url"] + "/invocations", up["sign"], b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}')
    assert status == 200 and aws_account.server.calls == ["InvokeEndpoint"]


# -- the artifact store ------------------------------------------------------------------------------------------


def test_s3_artifact_store_round_trip(tmp_path: Path, aws_account: AwsAccount) -> None:
    stack = Stack(write_stack(tmp_path, aws_account))
    store = stack.targets["aws"].artifact_store()
    assert store is not None and store.reads("s3://any/key") and not store.reads(str(tmp_path / "x"))
    s3, server = aws_account.server.client("s3"), aws_account.server
    source = tmp_path / "models" / "iris-v1.json"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()

    uri = store.put(source, "iris/1/iris-v1.json", digest)
    assert uri == f"s3://{aws_account.bucket}/mlplat/artifacts/iris/1/iris-v1.json"
    head = s3.head_object(Bucket=aws_account.bucket, Key="mlplat/artifacts/iris/1/iris-v1.json")
    assert head["Metadata"] == {"sha256": digest}
    server.clear_calls()
    assert store.put(source, "iris/1/iris-v1.json", digest) == uri  # the same content: kept, not uploaded again
    assert server.count("PutObject") == 0

    fetched = tmp_path / "fetched" / "iris.json"
    store.fetch(uri, fetched)
    assert fetched.read_bytes() == source.read_bytes()
    assert store.sha256(uri) == digest

    bare = f"s3://{aws_account.bucket}/elsewhere/plain.json"  # uploaded without mlplat's metadata: computed
    s3.put_object(Bucket=aws_account.bucket, Key="elsewhere/plain.json", Body=b"plain")
    assert store.sha256(bare) == hashlib.sha256(b"plain").hexdigest()

    store.delete(uri)
    assert store.sha256(uri) is None
    store.delete(uri)  # gone already: fine
    with pytest.raises(MlplatError, match="does not exist"):
        store.fetch(uri, tmp_path / "missing.json")
    assert not (tmp_path / "missing.json").exists()

    unbucketed = Stack(write_stack(tmp_path / "nobucket", aws_account, bucket=None))
    assert unbucketed.targets["aws"].artifact_store() is None
