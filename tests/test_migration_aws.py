"""Migrations between the local target and aws (a moto server on 127.0.0.1): the quickstart platform moved whole
to aws and back under load through its front doors (a local gateway and Route 53 weighted records), a kept source
finished later, a hybrid endpoint serving locally from S3 artifacts, and what preview says about a move.

Real processes and real HTTP on 127.0.0.1 only: eight client threads send requests through the local front door
the whole time a move runs (each request bounded by a timeout, the load by a request cap and a deadline), a
poller reads the Route 53 record with boto3, and every claim about what exists is checked with boto3 on the moto
server or against the processes the operating system runs."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from front_door_load import Load, invocation
from json_lines import summary_of

from conftest import STACKS, AwsAccount, require_module, run_mlplat
from contract_targets import aws_objects
from local_processes import kill_all, servers_under

require_module("boto3", "the aws extra is part of the test extra")

ZONE = "ml.example.com"
COMPONENTS = ("train", "shared", "models", "iris")
MODELS = {"iris:1": STACKS / "models" / "iris-v1.json", "iris:2": STACKS / "models" / "iris-v2.json"}


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


SOURCE_SHA = {ref: sha256_of(path.read_bytes()) for ref, path in MODELS.items()}


# -- the platform under test ---------------------------------------------------------------------------------------


class Platform:
    """A stack file in a temporary directory pointed at the moto account, its CLI, its outputs and state, and the
    aws objects as boto3 sees them."""

    def __init__(self, directory: Path, account: AwsAccount, doc: dict[str, Any], name: str) -> None:
        self.directory, self.account, self.name = directory, account, name
        self.path = directory / f"{name}.yaml"
        shutil.copytree(STACKS / "models", directory / "models", dirs_exist_ok=True)
        self.path.write_text(yaml.safe_dump(doc, sort_keys=False))
        # the local front door signs for SageMaker from the standard chain; its process gets AWS_SHARED_CREDENTIALS_FILE
        # (not AWS_ACCESS_KEY_ID), so the moto account's keys go into a shared-credentials file
        credentials = directory / "aws-credentials"
        credentials.write_text("[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
        credentials.chmod(0o600)
        self.env = {**account.env(), "AWS_SHARED_CREDENTIALS_FILE": str(credentials)}
        self.server = account.server
        self.zone_id = ""  # the Route 53 hosted zone of targets.aws.dns_zone, where the stack has one

    @property
    def local_root(self) -> Path:
        return self.directory / ".mlplat" / self.name / "local"

    def cli(self, *args: str, check: bool = True, timeout: float = 300) -> Any:
        return run_mlplat(*args, "-f", str(self.path), cwd=self.directory, env=self.env, check=check,
                          timeout=timeout)

    def outputs(self) -> dict[str, Any]:
        return json.loads(self.cli("output", "--json").stdout)  # type: ignore[no-any-return]

    def addresses(self) -> dict[str, dict[str, Any]]:
        listing = json.loads(self.cli("state", "list", "--json").stdout)
        return {r["address"]: r for r in listing["resources"]}

    def show(self, address: str) -> dict[str, Any]:
        return json.loads(self.cli("state", "show", address).stdout)  # type: ignore[no-any-return]

    def client(self, service: str) -> Any:
        return self.server.client(service)


def quickstart_doc(account: AwsAccount) -> dict[str, Any]:
    """stacks/quickstart.yaml with targets.aws on the moto account, and iris behind two front doors (the local
    gateway first: its URL is iris.url) shifting 10 → 50 → 100 % in 2 s windows."""
    doc = yaml.safe_load((STACKS / "quickstart.yaml").read_text())
    doc["targets"] = {"aws": account.settings(dns_zone=ZONE)}
    doc["serving"][0]["front_door"] = ["local", "aws"]
    doc["serving"][0]["migration"] = {"steps": [10, 50, 100], "window_s": 2}
    return doc


def hosted_zone(account: AwsAccount) -> str:
    route53 = account.server.client("route53")
    return str(route53.create_hosted_zone(Name=ZONE, CallerReference=f"tests-{time.time()}")["HostedZone"][
        "Id"].rsplit("/", 1)[-1])


@pytest.fixture
def quickstart(tmp_path: Path, aws_account: AwsAccount) -> Iterator[Platform]:
    """The quickstart platform applied on local, with its aws front door's hosted zone."""
    platform = Platform(tmp_path, aws_account, quickstart_doc(aws_account), "quickstart")
    platform.zone_id = hosted_zone(aws_account)
    platform.cli("apply", "--yes")
    try:
        yield platform
    finally:
        platform.cli("destroy", "--yes", check=False)
        left = servers_under(tmp_path)
        kill_all(tmp_path)
        assert not left, f"destroy left server processes: {left}"


def record_sets(route53: Any, zone_id: str, record: str) -> list[dict[str, Any]]:
    found = route53.list_resource_record_sets(HostedZoneId=zone_id, StartRecordName=record)["ResourceRecordSets"]
    return [s for s in found if s["Name"] == f"{record}." and s.get("SetIdentifier")]


class WeightPoller:
    """Reads the Route 53 record's weighted sets with boto3 about every 0.2 s: each distinct {SetIdentifier:
    Weight} in the order first seen, and whether every set carried a health check each time."""

    def __init__(self, platform: Platform, record: str, deadline_s: float = 300) -> None:
        self.route53 = platform.client("route53")
        self.zone_id, self.record = platform.zone_id, record
        self.seen: list[dict[str, int]] = []
        self.reads = 0
        self.without_health_check: list[dict[str, Any]] = []
        self._deadline = time.monotonic() + deadline_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def read(self) -> dict[str, int]:
        sets = record_sets(self.route53, self.zone_id, self.record)
        self.reads += 1
        self.without_health_check.extend(s for s in sets if not s.get("HealthCheckId"))
        return {s["SetIdentifier"]: int(s["Weight"]) for s in sets}

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            weights = self.read()
            if not self.seen or self.seen[-1] != weights:
                self.seen.append(weights)
            self._stop.wait(0.2)

    def __enter__(self) -> WeightPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


def migrate_under_load(platform: Platform, *args: str) -> tuple[dict[str, Any], Load, WeightPoller]:
    """`mlplat migrate ARGS --yes --json` while the load runs through the local front door and the poller reads
    Route 53; the load starts before and goes on a little after."""
    url = platform.outputs()["iris.front_door.local.url"]
    record = f"iris.{platform.name}.{ZONE}"
    with WeightPoller(platform, record) as poller, Load(url) as load:
        time.sleep(1.0)
        out = platform.cli("migrate", *args, "--yes", "--json", timeout=400).stdout
        time.sleep(1.0)
    return summary_of(out), load, poller


def report_hop(label: str, report: dict[str, Any], load: Load, poller: WeightPoller) -> None:
    """What the test records for quoting: failed requests, requests per route, Route 53 weights seen, phases."""
    print(f"\n[{label}] failed requests: {len(load.failures)} of {len(load.served) + len(load.failures)}; "
          f"served per route: {dict(load.routes())}")
    print(f"[{label}] Route 53 weights seen ({poller.reads} reads): {poller.seen}")
    print(f"[{label}] elapsed_s: {report.get('elapsed_s')}; migrations (phase seconds): "
          f"{json.dumps(report.get('migrations'), sort_keys=True)}")


# -- 1. the whole quickstart platform local → aws → local ---------------------------------------------------------


def test_quickstart_round_trip_local_aws_local(quickstart: Platform) -> None:
    platform, account = quickstart, quickstart.account
    s3, sm = platform.client("s3"), platform.client("sagemaker")
    before = platform.outputs()
    url = before["iris.url"]
    assert url == before["iris.front_door.local.url"] and url.startswith("http://127.0.0.1:")
    assert before["iris.front_door.aws.url"] == f"http://iris.quickstart.{ZONE}"
    assert servers_under(platform.local_root / "serving"), "the endpoint serves on local"
    front_door = servers_under(platform.local_root / "front_doors")
    assert len(front_door) == 1, front_door
    route53, record = platform.client("route53"), f"iris.quickstart.{ZONE}"

    def health_checks_match_the_record() -> None:
        sets = record_sets(route53, platform.zone_id, record)
        checks = {c["Id"] for c in route53.list_health_checks()["HealthChecks"]}
        assert checks == {s["HealthCheckId"] for s in sets}, (checks, sets)

    # -- there: every component to aws --------------------------------------------------------------------------
    report, load, poller = migrate_under_load(platform, *COMPONENTS, "--to", "aws")
    report_hop("local → aws", report, load, poller)
    assert load.failures == [], f"{len(load.failures)} failed requests: {load.failures[:5]}"
    assert set(report["migrations"]) == set(COMPONENTS)
    assert set(report["migrations"]["iris"]) == {"provision", "transfer", "health-check", "shift", "teardown"}
    routes = load.routes()
    assert routes["local"] > 0 and routes["aws"] > 0, routes
    assert load.last(50) == Counter({"aws": 50}), "after the move every request reaches aws"
    # Route 53 moved in the declared steps, each change one atomic batch (no other split ever visible)
    assert poller.seen[0] == {"local": 100}, poller.seen
    assert {"local": 90, "aws": 10} in poller.seen and {"local": 50, "aws": 50} in poller.seen, poller.seen
    assert poller.seen[-1] == {"aws": 100}, poller.seen
    steps = [poller.seen.index(w) for w in ({"local": 90, "aws": 10}, {"local": 50, "aws": 50}, {"aws": 100})]
    assert steps == sorted(steps), poller.seen
    assert all(w in ({"local": 100}, {"local": 90, "aws": 10}, {"local": 50, "aws": 50}, {"aws": 100})
               for w in poller.seen), poller.seen
    assert poller.without_health_check == []

    outputs = platform.outputs()
    assert outputs["iris.url"] == url, "the front door's URL survives the move"
    for ref, sha in SOURCE_SHA.items():
        uri = outputs[f"models.model.{ref}"]
        assert uri.startswith(f"s3://{account.bucket}/"), uri
        key = uri.split("/", 3)[3]
        assert s3.head_object(Bucket=account.bucket, Key=key)["Metadata"]["sha256"] == sha
        assert sha256_of(s3.get_object(Bucket=account.bucket, Key=key)["Body"].read()) == sha
        assert outputs[f"models.sha256.{ref}"] == sha
    assert outputs["models.image.iris-server"].endswith(".dkr.ecr.us-east-1.amazonaws.com/quickstart/iris-server")
    assert outputs["train.arn"].startswith("arn:aws:sagemaker:us-east-1:") and "cluster/" in outputs["train.arn"]
    assert re.fullmatch(r"fs-[0-9a-f]+\.efs\.us-east-1\.amazonaws\.com", outputs["shared.dns_name"])
    assert outputs["iris.direct_url"].endswith("/endpoints/quickstart-iris/invocations")
    assert sm.describe_endpoint(EndpointName="quickstart-iris")["EndpointStatus"] == "InService"
    cluster = sm.describe_cluster(ClusterName="quickstart-train")
    assert [(g["InstanceGroupName"], g["InstanceType"]) for g in cluster["InstanceGroups"]] == [
        ("cpu-cpu", "ml.m5.xlarge")]
    objects = aws_objects(account)  # by mlplat address; the cluster's lifecycle script by its S3 key
    assert {a.split(".", 1)[0] for a in objects if not a.startswith("mlplat/")} == set(COMPONENTS), objects
    assert objects["mlplat/hyperpod/on_create.sh"] == 1 and set(objects.values()) == {1}, objects

    health_checks_match_the_record()

    # the local source is gone: no model servers or routers, no registry, no volume; the front door stays
    assert servers_under(platform.local_root / "serving") == {}
    assert servers_under(platform.local_root / "front_doors") == front_door, "the same front door process serves"
    assert not (platform.local_root / "registry" / "models").exists()
    assert not (platform.local_root / "volumes" / "shared").exists()
    addresses = platform.addresses()
    assert not [a for a in addresses if "~" in a or a.startswith("_migration")], addresses
    assert {addresses[a]["target"] for a in addresses if ".front_door." not in a} == {"aws"}, addresses
    text = platform.path.read_text()
    assert text.count("target: aws") == len(COMPONENTS), text
    assert "No changes" in platform.cli("preview").stdout

    # -- and back: every component to local ---------------------------------------------------------------------
    report, load, poller = migrate_under_load(platform, *COMPONENTS, "--to", "local")
    report_hop("aws → local", report, load, poller)
    assert load.failures == [], f"{len(load.failures)} failed requests: {load.failures[:5]}"
    assert set(report["migrations"]) == set(COMPONENTS)
    routes = load.routes()
    assert routes["aws"] > 0 and routes["local"] > 0, routes
    assert load.last(50) == Counter({"local": 50}), "after the move back every request reaches local"
    assert poller.seen[0] == {"aws": 100}, poller.seen
    assert {"aws": 90, "local": 10} in poller.seen and {"aws": 50, "local": 50} in poller.seen, poller.seen
    assert poller.seen[-1] == {"local": 100}, poller.seen
    assert poller.without_health_check == []

    outputs = platform.outputs()
    assert outputs["iris.url"] == url
    for ref, sha in SOURCE_SHA.items():
        path = Path(outputs[f"models.model.{ref}"])
        assert path.is_file() and path.is_relative_to(platform.local_root / "registry"), path
        assert sha256_of(path.read_bytes()) == sha
    assert servers_under(platform.local_root / "serving"), "the endpoint serves on local again"
    assert servers_under(platform.local_root / "front_doors") == front_door
    assert (platform.local_root / "volumes" / "shared").is_dir()
    health_checks_match_the_record()
    # on aws only the front door is left: no endpoint, model, config, cluster, file system, repository, artifact
    assert aws_objects(account) == Counter({"iris.front_door.aws": 1})
    assert sm.list_endpoints()["Endpoints"] == [] and sm.list_models()["Models"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert sm.list_clusters()["ClusterSummaries"] == []
    assert s3.list_objects_v2(Bucket=account.bucket).get("KeyCount") == 0
    addresses = platform.addresses()
    assert not [a for a in addresses if "~" in a or a.startswith("_migration")], addresses
    assert "target: aws" not in platform.path.read_text()
    assert "No changes" in platform.cli("preview").stdout


# -- 2. --keep-source, then --finish -------------------------------------------------------------------------------


def test_keep_source_then_finish(quickstart: Platform) -> None:
    platform = quickstart
    serving = platform.local_root / "serving"
    running = servers_under(serving)
    assert running
    doc = yaml.safe_load(platform.path.read_text())  # the registry stays local: SageMaker needs its own image
    doc["targets"]["aws"]["serving_image"] = "123456789012.dkr.ecr.us-east-1.amazonaws.com/iris:latest"
    platform.path.write_text(yaml.safe_dump(doc, sort_keys=False))

    report = summary_of(platform.cli("migrate", "iris", "--to", "aws", "--keep-source", "--yes", "--json").stdout)
    assert set(report["migrations"]["iris"]) == {"provision", "transfer", "health-check", "shift", "teardown"}
    assert servers_under(serving) == running, "--keep-source keeps the local servers running"
    record = f"iris.quickstart.{ZONE}"
    route53 = platform.client("route53")
    weights = {s["SetIdentifier"]: s["Weight"] for s in record_sets(route53, platform.zone_id, record)}
    assert weights == {"aws": 100}, "the front doors send everything to aws; the kept source serves nothing"
    url = platform.outputs()["iris.url"]
    with urllib.request.urlopen(invocation(url), timeout=10) as resp:
        assert resp.status == 200 and resp.headers["X-Mlplat-Path"] == "aws"
    held = [a for a in platform.addresses() if "~" in a]
    assert held and all(a.endswith("~local") and a.startswith("iris.") for a in held), held
    assert "_migration.iris" in platform.addresses()
    preview = platform.cli("preview").stdout
    assert "iris: moved local → aws" in preview and "source kept on local" in preview, preview
    assert "mlplat migrate --finish iris" in preview and "No changes" in preview, preview

    finished = platform.cli("migrate", "iris", "--finish", "--yes").stdout
    assert "finish moving local → aws" in finished, finished
    assert servers_under(serving) == {}, "--finish deletes the kept source"
    addresses = platform.addresses()
    assert not [a for a in addresses if "~" in a or a.startswith("_migration")], addresses
    assert "No changes" in platform.cli("preview").stdout
    assert platform.client("sagemaker").describe_endpoint(EndpointName="quickstart-iris")["EndpointStatus"] == \
        "InService"


# -- 3. hybrid: the registry on aws, the endpoint on local reading copies of the S3 artifacts -----------------------


def test_hybrid_serving_reads_artifacts_from_s3(tmp_path: Path, aws_account: AwsAccount) -> None:
    doc = yaml.safe_load((STACKS / "hybrid.yaml").read_text())
    doc["targets"]["aws"] = aws_account.settings()
    platform = Platform(tmp_path, aws_account, doc, "hybrid")
    s3 = platform.client("s3")
    try:
        plan = json.loads(platform.cli("preview", "--json").stdout)
        changes = {c["address"]: c for c in plan["changes"]}
        for ref in MODELS:
            copy = changes[f"iris.artifact_copy.{ref}"]
            assert (copy["kind"], copy["target"], copy["action"]) == ("core.artifact_copy", "local", "create"), copy
        platform.cli("apply", "--yes")

        outputs = platform.outputs()
        for ref, sha in SOURCE_SHA.items():
            uri = outputs[f"models.model.{ref}"]
            assert uri.startswith(f"s3://{aws_account.bucket}/"), uri
            recorded = s3.head_object(Bucket=aws_account.bucket, Key=uri.split("/", 3)[3])["Metadata"]["sha256"]
            copy = platform.show(f"iris.artifact_copy.{ref}")
            local = Path(copy["outputs"]["uri"])
            assert local.is_relative_to(platform.local_root / "artifacts"), local
            assert sha256_of(local.read_bytes()) == recorded == sha == copy["outputs"]["sha256"]
            assert copy["inputs"]["source"] == uri
            server = platform.show(f"iris.model_server.{'production' if ref == 'iris:1' else 'experimental'}")
            assert server["inputs"]["artifact"] == str(local), "the model server reads the local copy"

        served: Counter[str] = Counter()
        for _ in range(20):
            with urllib.request.urlopen(invocation(outputs["iris.url"]), timeout=10) as resp:
                answer = json.loads(resp.read())
                assert resp.status == 200 and resp.headers["X-Mlplat-Path"] == "local"
            assert answer["predictions"] and "label" in answer["predictions"][0], answer
            served[answer["model_id"]] += 1
        assert set(served) <= {"iris:1", "iris:2"} and served, served
        assert servers_under(platform.local_root), "served by local processes"
        assert "No changes" in platform.cli("preview").stdout
    finally:
        platform.cli("destroy", "--yes", check=False)
        left = servers_under(tmp_path)
        kill_all(tmp_path)
    assert not left, f"destroy left server processes: {left}"
    assert aws_objects(aws_account) == Counter()
    assert s3.list_objects_v2(Bucket=aws_account.bucket).get("KeyCount") == 0
    assert not list((tmp_path / ".mlplat").rglob("*.json")), "no artifact copy left on local"


# -- 4. what preview says about a move -------------------------------------------------------------------------


def test_migration_preview_shows_phases_cost_and_compatibility(quickstart: Platform) -> None:
    platform = quickstart
    original = platform.path.read_text()
    doc = yaml.safe_load(original)
    doc["serving"][0]["target"] = "aws"
    doc["targets"]["aws"]["serving_image"] = "123456789012.dkr.ecr.us-east-1.amazonaws.com/iris:latest"
    moved = yaml.safe_dump(doc, sort_keys=False)
    platform.path.write_text(moved)
    preview = platform.cli("preview").stdout
    print(preview)
    lines = preview.splitlines()
    assert "migration serving iris: move local → aws" in preview, preview
    phases = [line.strip() for line in lines if re.match(r"\s+\d\. \w", line)]
    assert [p.split(":")[0] for p in phases] == ["1. provision", "2. transfer", "3. health-check", "4. shift",
                                                   "5. teardown"], phases
    assert "create the component's resources on aws" in phases[0]
    assert "sha256" in phases[1]
    assert "10 % → 50 % → 100 %" in phases[3] and "front door" in phases[3], phases
    assert "delete the component's resources on local" in phases[4]
    on_local = next(line for line in lines if line.strip().startswith("on local:"))
    on_aws = next(line for line in lines if line.strip().startswith("on aws:"))
    assert "iris.router.main" in on_local and "iris.model_server.production" in on_local, on_local
    assert "iris.endpoint.main" in on_aws and "iris.endpoint_config.main" in on_aws, on_aws
    assert "iris.artifact_copy.iris:1" in on_aws, "serving on aws reads the local registry's artifacts via S3"
    assert "capabilities that differ (local → aws):" in preview and "front_door: \"gateway\" → \"dns\"" in preview
    assert "Cost after apply" in preview and "Δ" in preview
    iris_cost = next(line for line in lines if line.startswith("iris (aws):"))
    assert re.search(r"\(Δ \+\$0\.\d+/h\)", iris_cost), iris_cost
    assert platform.path.read_text() == moved, "preview does not touch the stack file"

    # a move the destination cannot make is an error at preview, at its place in the file
    doc["serving"][0]["paths"]["experimental"].update(accelerator="h100", gpus=3)
    bad = yaml.safe_dump(doc, sort_keys=False)
    platform.path.write_text(bad)
    refused = platform.cli("preview", check=False)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    error = refused.stderr
    print(error)
    # the aws catalog sells h100 for serving with 1 or 8 GPUs: refused where `gpus: 3` is written
    line = next(i for i, text in enumerate(bad.splitlines(), 1) if text.strip() == "gpus: 3")
    assert f"{platform.path}:{line}:" in error and "serving[0].paths.experimental.gpus" in error, error
    assert "h100 is not offered on aws with 3 GPU(s)" in error, error

    platform.path.write_text(original)
    assert "No changes" in platform.cli("preview").stdout


def test_preview_of_a_move_the_checks_accept_shows_no_refusal(quickstart: Platform) -> None:
    platform = quickstart
    doc = yaml.safe_load(platform.path.read_text())
    doc["serving"][0]["target"] = "aws"
    doc["targets"]["aws"]["serving_image"] = "123456789012.dkr.ecr.us-east-1.amazonaws.com/iris:latest"
    platform.path.write_text(yaml.safe_dump(doc, sort_keys=False))
    plan = json.loads(platform.cli("preview", "--json").stdout)  # check() passed: the move is valid
    [move] = plan["migrations"]
    assert move["compatibility"]["errors"] == [], move["compatibility"]
    assert "✗" not in platform.cli("preview").stdout


@pytest.fixture
def lustre_on_aws(tmp_path: Path, aws_account: AwsAccount) -> Iterator[Platform]:
    """FSx for Lustre applied on aws, in a stack that also declares the local target (which offers nas only)."""
    doc = {"apiVersion": "mlplat/v1", "metadata": {"name": "scratch"}, "target": "aws",
           "targets": {"aws": aws_account.settings(), "local": {}},
           "storage": [{"name": "fast", "kind": "lustre", "size_gb": 1200, "mount_path": "/mnt/fast"}]}
    platform = Platform(tmp_path, aws_account, doc, "scratch")
    fsx = platform.client("fsx")
    platform.cli("apply", "--yes")
    try:
        yield platform
    finally:
        platform.cli("destroy", "--yes", check=False)
    assert fsx.describe_file_systems()["FileSystems"] == []


def test_migrate_to_a_target_lacking_the_storage_kind_is_refused(lustre_on_aws: Platform) -> None:
    """`mlplat migrate` of a lustre volume to local is refused at planning with a located error; nothing moves and
    the stack file is left as it was."""
    platform = lustre_on_aws
    fsx = platform.client("fsx")
    [made] = fsx.describe_file_systems()["FileSystems"]
    before = platform.path.read_text()
    refused = platform.cli("migrate", "fast", "--to", "local", "--yes", check=False)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert re.search(rf"{re.escape(str(platform.path))}:\d+:\d+: storage\[0\]\.kind: target 'local' \(local\) has no "
                     r"storage of kind 'lustre' \(available: nas\)", refused.stderr), refused.stderr
    assert platform.path.read_text() == before, "the stack file is left as it was"
    assert [f["FileSystemId"] for f in fsx.describe_file_systems()["FileSystems"]] == [made["FileSystemId"]]
    assert not [a for a in platform.addresses() if "~" in a or a.startswith("_migration")]
    assert "No changes" in platform.cli("preview").stdout


def test_refused_migrate_names_the_place_in_the_file_as_left(lustre_on_aws: Platform) -> None:
    platform = lustre_on_aws
    before = platform.path.read_text()
    refused = platform.cli("migrate", "fast", "--to", "local", "--yes", check=False)
    assert refused.returncode == 1 and platform.path.read_text() == before
    kind_line = next(i for i, line in enumerate(before.splitlines(), 1) if line.strip() == "kind: lustre")
    assert f"{platform.path}:{kind_line}:3: storage[0].kind" in refused.stderr, refused.stderr
