"""Per-target harnesses for the plugin-contract suite (tests/test_contract*.py), and the suite's shared helpers.

Every target gets the whole contract suite for free: a new target joins by adding a `Harness` subclass here (and
to `HARNESSES`). A harness is the target's *cloud console*: it writes the contract stack for its target, lists what
really exists in the target (by resource address), and changes or deletes things behind mlplat's back — without
going through the plugin's providers, so a provider bug cannot hide itself. Everything else the suite needs (which
kinds replace create-before-destroy, which outputs are secret, what the target accepts) it reads from the plugin
itself: `Target.capabilities()`, the providers' `replace_mode`, `secret_outputs`, `importable`.

What a harness must provide (see each docstring):

    target          the target type (as in `targets:` of a stack file)
    expected_kinds  resources per kind that the contract stack lowers to on this target
    bad_settings    target settings its settings model must reject
    auth            the `auth:` of the contract stack's endpoint (one the target supports)
    sdk             SDK modules no plugin may import at plugin-module import (besides `Target.sdk`)
    prepare         get what the target needs from other fixtures
    settings        the contract stack's `targets.<target>` settings
    cloud_objects   what exists in the target now, counted per resource address
    make_drift      change one object out of band; return its address
    delete_out_of_band  delete one recorded object out of band
    throttled       make the target throttle reads or writes for a while
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from graphlib import TopologicalSorter
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import pytest

from provisioner.api import Stack
from provisioner.apply import ApplyOptions, RetryPolicy
from provisioner.errors import RetryableError
from provisioner.events import Event

from conftest import FAKE_CLOUD_TIMEOUTS, STACKS, AwsAccount

if TYPE_CHECKING:
    from provisioner.plan import Plan
    from provisioner.provider import ResourceProvider
    from provisioner.state.base import ResourceRecord

Calls = Literal["reads", "writes"]
#: provider methods that read the target, and those that change it (what `Harness.throttled` throttles)
READ_METHODS = ("read", "find", "import_")
WRITE_METHODS = ("create", "update", "delete")

#: the contract stack's fixed head: the target's settings are on line 5 (bad settings are located there)
HEAD = """\
apiVersion: mlplat/v1
metadata: {{name: contract}}
target: {target}
targets:
  {target}: {settings}
storage:
  - {{name: shared, size_gb: {size_gb}}}
registry:
  name: models
  models:
    - {{name: iris, version: "1", artifact: models/iris-v1.json}}
    - name: iris
      version: "2"
      artifact: models/iris-v2.json
"""


class Harness:
    """The contract suite's view of one target. Subclasses set the class attributes and implement the methods that
    raise NotImplementedError; `write_stack` is shared (never overridden)."""

    #: the target type, as written under `targets:` (e.g. "aws")
    target: ClassVar[str]
    #: resources per kind that the default contract stack (`write_stack()`) lowers to on this target; the suite
    #: checks the lowered graph and the objects in the cloud against it
    expected_kinds: ClassVar[Counter[str]]
    #: target settings the target's settings model must reject (with the file location of `targets.<target>`)
    bad_settings: ClassVar[dict[str, Any]]
    #: the endpoint's `auth:` in the contract stack: one of the target's `Capabilities.auth_modes`
    auth: ClassVar[str] = "none"
    #: SDK modules (beyond the target type's `Target.sdk`) that importing the plugin module and calling its
    #: `mlplat_targets` hook must not import, e.g. ("boto3", "botocore")
    sdk: ClassVar[tuple[str, ...]] = ()
    #: the contract stack's storage size: one the target accepts (Filestore's smallest tier starts at 1 TiB)
    size_gb: ClassVar[int] = 10

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._stack_args: dict[str, Any] = {}
        shutil.copytree(STACKS / "models", directory / "models", dirs_exist_ok=True)

    def prepare(self, request: pytest.FixtureRequest) -> None:
        """Get what the target needs from other fixtures (a fake cloud server, an account). Default: nothing."""

    def settings(self) -> dict[str, Any]:
        """The contract stack's `targets.<target>` settings: everything the target needs to work in this test's
        directory (and nothing that makes it refuse the contract stack). Default: none."""
        return {}

    def front_door_settings(self) -> dict[str, Any]:
        """Settings added to `settings()` for the endpoint to have a front door on this target (a DNS zone the
        harness made in its fake cloud). Default: none needed."""
        return {}

    def write_stack(self, *, production: int = 80, experimental: int | None = 20, experimental_model: str = "iris:2",
                    shadow: int | None = None, accelerator: str | None = None, framework: str | None = None,
                    auth: str | None = None, api_key: str | None = None, pool_accelerator: str | None = None,
                    pool_nodes_max: int = 1, spot: bool = False, size_gb: int | None = None, replicas: int = 1,
                    settings: dict[str, Any] | None = None, front_door: bool = False,
                    monitoring: str | None = None) -> Path:
        """Write the contract stack (storage, a registry of two model versions, one endpoint with two paths) and
        return its path. `experimental=None`: production only; `shadow=N`: the experimental path mirrors N% of
        requests instead of taking a weight; `accelerator`: the production path's; `framework`: iris:2's;
        `pool_accelerator`: add a training cluster with one pool of it (`pool_nodes_max` nodes at most, `spot`);
        `size_gb`: the storage's (default the harness's `size_gb`); `replicas`: the production path's; `settings`:
        instead of `settings()`; `front_door`: the endpoint gets a front door on the target (with
        `front_door_settings()`); `monitoring`: the endpoint's monitoring block, as YAML lines (indented under
        `monitoring:` by this function)."""
        self._stack_args = {"production": production, "experimental": experimental,
                            "experimental_model": experimental_model, "shadow": shadow, "accelerator": accelerator,
                            "framework": framework, "auth": auth, "api_key": api_key,
                            "pool_accelerator": pool_accelerator, "pool_nodes_max": pool_nodes_max, "spot": spot,
                            "size_gb": size_gb, "replicas": replicas, "settings": settings,
                            "front_door": front_door, "monitoring": monitoring}
        chosen = self.settings() if settings is None else settings
        size_gb = self.size_gb if size_gb is None else size_gb
        if front_door:
            chosen = {**chosen, **self.front_door_settings()}
        lines = [HEAD.format(target=self.target, size_gb=size_gb, settings=json.dumps(chosen))]
        if framework is not None:
            lines.append(f"      framework: {framework}\n")
        if pool_accelerator is not None:
            gpus = "" if pool_accelerator == "cpu" else "\n        gpus_per_node: 1"
            lines.append(f"clusters:\n  - name: train\n    gpu_pools:\n      - name: p0\n"
                         f"        accelerator: {pool_accelerator}{gpus}\n")
            if pool_nodes_max != 1:
                lines.append(f"        nodes: {{min: 1, max: {pool_nodes_max}}}\n")
            if spot:
                lines.append("        spot: true\n")
        lines.append(f"serving:\n  - name: iris\n    auth: {auth or self.auth}\n")
        if front_door:
            lines.append(f"    front_door: {self.target}\n")
        if api_key is not None:
            lines.append(f"    api_key: {api_key}\n")
        if monitoring is not None:
            lines.append("    monitoring:\n" + "".join(f"      {line}\n" for line in monitoring.splitlines()))
        lines.append('    paths:\n      production:\n        model: "iris:1"\n')
        if experimental is not None and shadow is None:
            lines.append(f"        weight: {production}\n")
        if accelerator is not None:
            lines.append(f"        accelerator: {accelerator}\n")
        if replicas != 1:
            lines.append(f"        replicas: {replicas}\n")
        if shadow is not None:
            lines.append(f'      experimental:\n        model: "{experimental_model}"\n        mode: shadow\n'
                         f"        mirror_percent: {shadow}\n")
        elif experimental is not None:
            lines.append(f'      experimental:\n        model: "{experimental_model}"\n'
                         f"        weight: {experimental}\n")
        path = self.directory / "stack.yaml"
        path.write_text("".join(lines))
        return path

    def rewrite_stack(self) -> Path:
        """The last stack written again (after a change of `settings()`, e.g. while throttled)."""
        return self.write_stack(**self._stack_args)

    def cloud_objects(self) -> Counter[str]:
        """What exists in the target right now, counted per resource address (found through the target's own
        listing — tags, metadata, markers — never through the state). A duplicate is a count above 1; an object no
        address names must still be counted (under whatever name it has), so that it shows as an orphan."""
        raise NotImplementedError

    def make_drift(self) -> str:
        """Change one object out of band (as a person at the cloud console would) so that the next refresh sees
        a changed input that an in-place update corrects; return its address."""
        raise NotImplementedError

    def delete_out_of_band(self, record: ResourceRecord) -> None:
        """Delete the object `record` names (`record.id`, of `record.kind`) behind mlplat's back, without the
        plugin's providers. Called for every recorded object of the contract stack, dependents first."""
        raise NotImplementedError

    @contextmanager
    def throttled(self, times: int, calls: Calls) -> Iterator[None]:
        """While inside, the target answers the first `times` calls of each kind of `calls` with its throttling
        error: "reads" (what `read`/`find` send), "writes" (what `create`/`update`/`delete` send). A cloud that
        can throttle (a fake server, a simulator setting) does it itself; a target that never throttles (this
        machine) emulates it with `wrap_providers` and `throttling`."""
        raise NotImplementedError
        yield


# -- wrapping the providers a Stack hands out ------------------------------------------------------------------

Wrap = Callable[[str, str, "ResourceProvider"], None]


@contextmanager
def wrap_providers(wrap: Wrap) -> Iterator[None]:
    """While inside, `wrap(target, kind, provider)` is called on every provider a Stack makes (once per Stack and
    (target, kind)); it may replace the provider's methods on the instance."""
    original = Stack.provider_for

    def provider_for(self: Stack, target: str, kind: str) -> Any:
        fresh = (target, kind) not in self._providers
        provider = original(self, target, kind)
        if fresh:
            wrap(target, kind, provider)
        return provider

    Stack.provider_for = provider_for  # type: ignore[method-assign]
    try:
        yield
    finally:
        Stack.provider_for = original  # type: ignore[method-assign]


def throttling(times: int, calls: Calls) -> Wrap:
    """A `wrap_providers` wrapper answering the first `times` `calls` per (method, object) with a 429."""
    counts: Counter[tuple[str, str]] = Counter()

    def wrap(target: str, kind: str, provider: ResourceProvider) -> None:
        for method in READ_METHODS if calls == "reads" else WRITE_METHODS:
            real = getattr(provider, method)

            def throttled(key: str, *args: Any, _real: Any = real, _method: str = method) -> Any:
                counts[(_method, key)] += 1
                if counts[(_method, key)] <= times:
                    raise RetryableError("429 Too Many Requests", retry_after=0.01)
                return _real(key, *args)

            setattr(provider, method, throttled)

    return wrap


# -- the suite's shared helpers ------------------------------------------------------------------------------------

#: attempts: a step may make three writes in a row (azure's model delete: the version, its blob, the emptied
#: container), each refused twice by `throttled(2, "writes")`, so 7 attempts pass it
FAST_RETRIES = ApplyOptions(retry=RetryPolicy(attempts=8, base_delay=0.01, max_delay=0.05))
PASSPHRASE = "the contract suite's state passphrase"


def contract_harness(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     known_bugs: dict[str, str]) -> Iterator[Harness]:
    """The body of each contract module's `harness` fixture: a harness in its own directory with the default
    stack written; a state key (a target may have secret outputs); a known plugin bug marks the test a strict
    xfail; afterwards everything is destroyed (no process, no object is left behind)."""
    monkeypatch.setenv("MLPLAT_STATE_PASSPHRASE", PASSPHRASE)
    reason = known_bugs.get(request.node.name)
    if reason:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
    h: Harness = request.param(tmp_path)
    h.prepare(request)
    h.write_stack()
    yield h
    h.write_stack()
    with opened(h) as stack:
        if not stack.state.resources() and not stack.state.pending():
            return
        try:
            stack.apply(stack.plan(destroy=True))
        except Exception:
            if not reason:
                raise
            with contextlib.suppress(Exception):  # what a known bug keeps the plugin from destroying
                delete_out_of_band(h, stack.state.resources())


def delete_out_of_band(h: Harness, records: dict[str, ResourceRecord]) -> None:
    """Every object of `records` deleted behind mlplat's back (`Harness.delete_out_of_band`), dependents first."""
    graph = {a: [d for d in r.depends_on if d in records] for a, r in records.items()}
    for address in reversed(list(TopologicalSorter(graph).static_order())):
        h.delete_out_of_band(records[address])


@contextmanager
def opened(h: Harness, *listeners: Callable[[Event], None]) -> Iterator[Stack]:
    """The harness's stack, with fast retries, closed afterwards."""
    stack = Stack(h.directory / "stack.yaml", options=FAST_RETRIES, listeners=list(listeners))
    try:
        yield stack
    finally:
        stack.close()


def apply(h: Harness, *listeners: Callable[[Event], None], destroy: bool = False, check: bool = False) -> Plan:
    """Plan (or plan the destroy) and apply it; returns the plan. `check`: then assert that it converged."""
    with opened(h, *listeners) as stack:
        plan = stack.plan(destroy=destroy)
        stack.apply(plan)
        if check:
            problems = not_converged(h, stack, destroyed=destroy)
            assert not problems, "\n".join(problems)
        return plan


def actions(h: Harness) -> dict[str, str]:
    with opened(h) as stack:
        return {c.address: c.action for c in stack.plan().changes}


def not_converged(h: Harness, stack: Stack | None = None, *, destroyed: bool = False) -> list[str]:
    """What is wrong after an apply (or a destroy) finished: every resource of the stack file exists exactly once
    in the cloud and is the one recorded; no object is left that no record names (an orphan), nothing is deposed
    or pending, and the next plan changes nothing. Empty: all good."""
    if stack is None:
        with opened(h) as stack:
            return not_converged(h, stack, destroyed=destroyed)
    problems = []
    objects = h.cloud_objects()
    desired = {} if destroyed else stack.lower()[0]
    records = stack.state.resources()
    duplicated = {a: n for a, n in objects.items() if n > 1}
    if duplicated:
        problems.append(f"duplicated in the cloud: {duplicated}")
    if set(objects) != set(desired):
        problems.append(f"the cloud holds {sorted(set(objects) - set(desired))} that the stack does not declare "
                        f"and lacks {sorted(set(desired) - set(objects))}")
    if set(records) != set(desired):
        problems.append(f"the state records {sorted(set(records) - set(desired))} beyond the stack and lacks "
                        f"{sorted(set(desired) - set(records))}")
    deposed = {r.address: r.deposed for r in records.values() if r.deposed}
    if deposed:
        problems.append(f"deposed objects still recorded: {deposed}")
    if stack.state.pending():
        problems.append(f"journal entries still pending: {[e.record.address for e in stack.state.pending()]}")
    if not destroyed and not problems:
        changes = [(c.address, c.action) for c in stack.plan().changes if c.action != "noop" or c.deposed]
        if changes:
            problems.append(f"the next plan is not a no-op: {changes}")
    return problems


def assert_converged(h: Harness, *, destroyed: bool = False) -> None:
    problems = not_converged(h, destroyed=destroyed)
    assert not problems, "\n".join(problems)


# -- the harnesses -------------------------------------------------------------------------------------------------


class SimHarness(Harness):
    """The simulated cloud in the test's directory, with every knob the suite exercises: a new id per create (so a
    repeated create is a visible duplicate), a stack-scoped namespace, minted endpoint keys (secret outputs), a
    mirror limit below 100%, one model format, and a concurrency limit."""

    target = "sim"
    bad_settings: ClassVar[dict[str, Any]] = {"latency_ms": -5}
    expected_kinds = Counter({
        "sim.namespace": 1, "sim.filesystem": 1, "sim.registry": 1,
        "sim.model": 4,  # 2 registry versions + 2 path models
        "sim.endpoint_config": 1, "sim.endpoint": 1, "sim.endpoint_key": 1})

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self._throttle: dict[str, int] = {}

    def settings(self) -> dict[str, Any]:
        return {"store": "cloud", "tagged_ids": True, "namespace": True, "endpoint_keys": True,
                "max_mirror_percent": 50, "model_formats": ["mlplat-linear"], "max_concurrency": 2,
                "latency_ms": 2, **self._throttle}

    def _paths(self) -> list[Path]:
        return sorted((self.directory / "cloud" / "objects").glob("*.json"))

    def cloud_objects(self) -> Counter[str]:
        return Counter(json.loads(p.read_text())["address"] for p in self._paths())

    def make_drift(self) -> str:
        for path in self._paths():
            obj = json.loads(path.read_text())
            if obj["kind"] == "sim.filesystem":
                obj["inputs"]["size_gb"] = 999
                path.write_text(json.dumps(obj))
                return obj["address"]
        raise AssertionError("no filesystem to drift")

    def delete_out_of_band(self, record: ResourceRecord) -> None:
        (self.directory / "cloud" / "objects" / f"{record.id}.json").unlink()

    @contextmanager
    def throttled(self, times: int, calls: Calls) -> Iterator[None]:
        from mlplat_plugins.sim.providers import store_for

        store_for(self.directory / "cloud").calls.clear()  # the simulator counts each object's calls from here
        self._throttle = {"throttle_reads" if calls == "reads" else "throttle_first": times}
        self.rewrite_stack()
        try:
            yield
        finally:
            self._throttle = {}
            self.rewrite_stack()


class LocalHarness(Harness):
    """This machine: directories with an owner marker, a directory registry, server processes."""

    target = "local"
    bad_settings: ClassVar[dict[str, Any]] = {"hots": "0.0.0.0"}
    expected_kinds = Counter({"local.directory": 1, "local.registry": 1, "local.model_version": 2,
                              "local.model_server": 2, "local.router": 1})
    #: the file naming the resource a directory belongs to (plugins/local)
    MARKER = ".mlplat-owner"

    @property
    def root(self) -> Path:
        return self.directory / ".mlplat" / "contract" / "local"

    def cloud_objects(self) -> Counter[str]:
        from mlplat_plugins.local.runtime.processes import find_running

        found: Counter[str] = Counter()
        for marker in self.root.rglob(self.MARKER):
            runtime = marker.parent / "runtime.json"
            if runtime.exists() and find_running(runtime) is None:
                continue  # a stopped process is not a live resource
            found[marker.read_text().strip()] += 1
        for meta in self.root.glob("registry/*/*/*/meta.json"):
            data = json.loads(meta.read_text())
            found[f"models.model_version.{data['name']}:{data['version']}"] += 1
        return found

    def make_drift(self) -> str:
        import time

        from mlplat_plugins.local.runtime.processes import find_running, reload

        config = self.root / "serving" / "iris" / "router" / "config.json"
        data = json.loads(config.read_text())
        data["routes"][0]["weight"], data["routes"][1]["weight"] = 10, 90
        config.write_text(json.dumps(data))
        info = find_running(config.parent / "runtime.json")
        assert info is not None
        reload(info.pid)
        for _ in range(100):  # the router applies SIGHUP asynchronously
            if _router_weights(info.url) == [10, 90]:
                break
            time.sleep(0.02)
        return "iris.router.main"

    def delete_out_of_band(self, record: ResourceRecord) -> None:
        from mlplat_plugins.local.runtime.processes import is_alive, read_runtime, stop

        path = Path(record.id)
        info = read_runtime(path / "runtime.json")
        if info is not None and is_alive(info.pid):
            stop(info.pid)
        shutil.rmtree(path)

    @contextmanager
    def throttled(self, times: int, calls: Calls) -> Iterator[None]:
        """The local machine never throttles: emulated by wrapping the providers the target hands out."""
        with wrap_providers(throttling(times, calls)):
            yield


def _router_weights(url: str) -> list[int]:
    import urllib.request

    with urllib.request.urlopen(url + "/-/config", timeout=3) as resp:
        return [r["weight"] for r in json.loads(resp.read())["routes"]]


class AwsHarness(Harness):
    """boto3 against the moto server; every object is found through its mlplat:address tag."""

    target = "aws"
    bad_settings: ClassVar[dict[str, Any]] = {"region": "moon-1"}
    expected_kinds = Counter({"aws.efs": 1, "aws.efs_mount_target": 1, "aws.model_package_group": 1,
                              "aws.model_artifact": 2, "aws.model_package": 2, "aws.model": 2,
                              "aws.endpoint_config": 1, "aws.endpoint": 1})
    auth = "iam"
    sdk = ("boto3", "botocore")
    account: AwsAccount
    #: the services the aws target calls (their read operations are what `throttled(..., "reads")` throttles)
    SERVICES = ("sagemaker", "efs", "s3", "ecr", "fsx", "ec2", "sts")

    def prepare(self, request: pytest.FixtureRequest) -> None:
        self.account = request.getfixturevalue("aws_account")

    def settings(self) -> dict[str, Any]:
        return self.account.settings(serving_image="123456789012.dkr.ecr.us-east-1.amazonaws.com/iris:latest")

    def front_door_settings(self) -> dict[str, Any]:
        zone = "contract.example.com"
        route53 = self.account.server.client("route53")
        if not route53.list_hosted_zones_by_name(DNSName=zone)["HostedZones"]:
            route53.create_hosted_zone(Name=zone, CallerReference=f"contract-{self.directory.name}")
        return {"dns_zone": zone}

    def cloud_objects(self) -> Counter[str]:
        return aws_objects(self.account)

    def make_drift(self) -> str:
        sm = self.account.server.client("sagemaker")
        name = sm.list_endpoints()["Endpoints"][0]["EndpointName"]
        sm.update_endpoint_weights_and_capacities(EndpointName=name, DesiredWeightsAndCapacities=[
            {"VariantName": "production", "DesiredWeight": 10.0},
            {"VariantName": "experimental", "DesiredWeight": 90.0}])
        return "iris.endpoint.main"

    def delete_out_of_band(self, record: ResourceRecord) -> None:
        client, id = self.account.server.client, record.id
        deletes: dict[str, Callable[[], Any]] = {
            "aws.endpoint": lambda: client("sagemaker").delete_endpoint(EndpointName=id),
            "aws.endpoint_config": lambda: client("sagemaker").delete_endpoint_config(EndpointConfigName=id),
            "aws.model": lambda: client("sagemaker").delete_model(ModelName=id),
            "aws.model_package": lambda: client("sagemaker").delete_model_package(ModelPackageName=id),
            "aws.model_package_group": lambda: client("sagemaker").delete_model_package_group(
                ModelPackageGroupName=id),
            "aws.model_artifact": lambda: client("s3").delete_object(Bucket=id.split("/", 1)[0],
                                                                     Key=id.split("/", 1)[1]),
            "aws.efs_mount_target": lambda: client("efs").delete_mount_target(MountTargetId=id),
            "aws.efs": lambda: client("efs").delete_file_system(FileSystemId=id),
            "aws.ecr_repository": lambda: client("ecr").delete_repository(repositoryName=id, force=True),
        }
        deletes[record.kind]()

    @contextmanager
    def throttled(self, times: int, calls: Calls) -> Iterator[None]:
        """Writes: the first `times` requests of each mutating action; reads: of each Describe/Get/Head/List
        action of the services the target calls (real AWS throttles describes too)."""
        if calls == "writes":
            with self.account.server.throttle(times):
                yield
            return
        import botocore.session

        session = botocore.session.get_session()
        reads = {op for service in self.SERVICES for op in session.get_service_model(service).operation_names
                 if op.startswith(("Describe", "Get", "Head", "List"))}
        with self.account.server.throttle(times, reads):
            yield


def aws_objects(account: AwsAccount) -> Counter[str]:
    """Every object in the moto account, counted per mlplat address (from tags, metadata or S3 key)."""
    server, found = account.server, Counter[str]()
    sm, efs, ecr = server.client("sagemaker"), server.client("efs"), server.client("ecr")

    def tagged(arn: str) -> str:
        tags = sm.list_tags(ResourceArn=arn)["Tags"]
        return next((t["Value"] for t in tags if t["Key"] == "mlplat:address"), arn)

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
            found[package.get("CustomerMetadataProperties", {}).get("mlplat:address",
                                                                   summary["ModelPackageArn"])] += 1
    for fs in efs.describe_file_systems()["FileSystems"]:
        address = next((t["Value"] for t in fs["Tags"] if t["Key"] == "mlplat:address"), fs["FileSystemId"])
        found[address] += 1
        for mount in efs.describe_mount_targets(FileSystemId=fs["FileSystemId"])["MountTargets"]:
            found[address.replace(".efs.main", f".efs_mount_target.{mount['SubnetId']}")] += 1
    for repo in ecr.describe_repositories()["repositories"]:
        tags = ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
        found[next((t["Value"] for t in tags if t["Key"] == "mlplat:address"), repo["repositoryArn"])] += 1
    route53 = server.client("route53")
    checks = {}  # health check id -> the front door its tag names
    for check in route53.list_health_checks()["HealthChecks"]:
        tags = route53.list_tags_for_resource(ResourceType="healthcheck", ResourceId=check["Id"])
        checks[check["Id"]] = next((t["Value"] for t in tags["ResourceTagSet"]["Tags"]
                                    if t["Key"] == "mlplat:address"), f"health check {check['Id']}")
    used = set()
    for zone in route53.list_hosted_zones()["HostedZones"]:  # a front door: weighted sets under one name
        names: dict[str, str] = {}
        for rrset in route53.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]:
            if "SetIdentifier" in rrset:
                used.add(rrset.get("HealthCheckId"))
                names.setdefault(rrset["Name"], checks.get(rrset.get("HealthCheckId"), f"record {rrset['Name']}"))
        found.update(names.values())
    found.update(address for id, address in checks.items() if id not in used)  # a health check left behind
    for obj in server.client("s3").list_objects_v2(Bucket=account.bucket).get("Contents", []):
        parts = obj["Key"].split("/")  # <prefix>/models/<name>/<version>/<file>
        address = f"models.model_artifact.{parts[-3]}:{parts[-2]}" if "models" in parts else obj["Key"]
        found[address] += 1
    return found


class ToyHarness(Harness):
    """The toy target (tests/toy_plugin, a fake cloud of JSON files in tests/toy_cloud.py), loaded for the test
    through $MLPLAT_PLUGINS; the harness is the toy cloud's console (`ToyCloud.objects/edit/remove`)."""

    target = "toy"
    expected_kinds = Counter({"toy.space": 1, "toy.share": 1, "toy.model": 2, "toy.deployment": 2,
                              "toy.endpoint": 1})
    bad_settings: ClassVar[dict[str, Any]] = {"project": "toy-contract", "endpoint_url": "/nowhere", "colour": "blue"}
    auth = "none"
    sdk = ("toy_cloud",)

    def prepare(self, request: pytest.FixtureRequest) -> None:
        import os

        from toy_cloud import ToyCloud

        from provisioner import plugins

        tests = str(Path(__file__).parent)
        monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
        plugins_env = os.environ.get("MLPLAT_PLUGINS", "")
        monkeypatch.setenv("MLPLAT_PLUGINS", ",".join(filter(None, (plugins_env, "toy_plugin.plugin"))))
        # subprocesses (the no-SDK import check, the CLI) must find toy_plugin and toy_cloud too
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, (tests, os.environ.get("PYTHONPATH")))))

        plugins.reset()  # the plugin manager is built once per process: load it again with the toy
        request.addfinalizer(plugins.reset)
        self.cloud = ToyCloud(self.directory / "toy-cloud")
        self.cloud.configure(polls=2)

    def settings(self) -> dict[str, Any]:
        return {"project": "toy-contract", "endpoint_url": f"file://{self.directory / 'toy-cloud'}",
                "poll_interval_s": 0.02}

    def cloud_objects(self) -> Counter[str]:
        from toy_cloud import COLLECTIONS

        found: Counter[str] = Counter()
        for collection in COLLECTIONS:
            for obj in self.cloud.objects(collection):
                found[obj["labels"].get("mlplat-address") or f"{collection}/{obj['name']}"] += 1
        return found

    def make_drift(self) -> str:
        endpoint = self.cloud.objects("endpoint")[0]
        traffic = endpoint["spec"]["traffic"]
        for path in traffic.values():
            path["weight"] = 100 // len(traffic)
        self.cloud.edit("endpoint", endpoint["name"], traffic=traffic)
        return endpoint["labels"]["mlplat-address"]

    def delete_out_of_band(self, record: ResourceRecord) -> None:
        self.cloud.remove(record.kind.split(".", 1)[1], record.id)

    @contextmanager
    def throttled(self, times: int, calls: Calls) -> Iterator[None]:
        self.cloud.throttle(times, calls)
        try:
            yield
        finally:
            self.cloud.throttle(0, calls)


class GcpHarness(Harness):
    """The real Google clients against the fake server (tests/gcp_fake); every object is found through the fake's
    state and counted by the address it carries (a description, a display name, a label, GCS metadata)."""

    target = "gcp"
    bad_settings: ClassVar[dict[str, Any]] = {"project": "Not A Project", "region": "us-central1"}
    expected_kinds = Counter({"gcp.filestore_instance": 1, "gcp.model_artifact": 2, "gcp.model_version": 2,
                              "gcp.endpoint": 1, "gcp.deployed_model": 2, "gcp.traffic_split": 1})
    auth = "iam"
    # not `google` / `google.cloud`: google-cloud-aiplatform's *-nspkg.pth makes those two namespace modules at
    # interpreter start-up, before any import
    sdk = ("google.cloud.aiplatform_v1", "google.cloud.storage", "google.api_core", "google.auth")
    size_gb = 1024  # Filestore BASIC_HDD's minimum
    project: Any

    def prepare(self, request: pytest.FixtureRequest) -> None:
        self.project = request.getfixturevalue("gcp_project")

    @property
    def fake(self) -> Any:
        return self.project.server

    def settings(self) -> dict[str, Any]:
        return self.project.settings(serving_image="us-docker.pkg.dev/mlplat-test/serving/iris-server:latest")

    def cloud_objects(self) -> Counter[str]:
        return gcp_objects(self.fake)

    def make_drift(self) -> str:
        endpoint = next(iter(self.fake.objects["endpoints"]))
        ids = sorted(self.fake.objects["endpoints"][endpoint].get("trafficSplit") or {})
        self.fake.set_traffic(endpoint, {ids[0]: 50, ids[1]: 50})
        return "iris.traffic_split.main"

    def delete_out_of_band(self, record: ResourceRecord) -> None:
        from gcp_fake.console import console_delete

        console_delete(self.fake, record.kind, record.id)

    @contextmanager
    def throttled(self, times: int, calls: Calls) -> Iterator[None]:
        """429 RESOURCE_EXHAUSTED for the first `times` calls of each Google API method that reads (Get*, List*,
        GetOperation, the GCS object reads) or writes."""
        with self.fake.throttle(times, calls):
            yield


def gcp_objects(fake: Any) -> Counter[str]:
    """Every object on the fake Google Cloud server, counted per mlplat address."""
    from gcp_fake.console import console_objects

    return console_objects(fake)


class AzureHarness(Harness):
    """azure-ai-ml, azure-identity and the storage clients against the fake Azure (tests/azure_fake); every object
    is found through the fake's state by the `mlplat-address` tag or metadata it carries."""

    target = "azure"
    bad_settings: ClassVar[dict[str, Any]] = {"subscription": "not-a-uuid", "resource_group": "rg",
                                              "workspace": "ws", "location": "eastus"}
    expected_kinds = Counter({"azure.file_share": 1, "azure.datastore": 1, "azure.model": 2,
                              "azure.online_endpoint": 1, "azure.online_deployment": 2, "azure.endpoint_traffic": 1})
    auth = "key"  # minted by Azure: a secret output
    sdk = ("azure.ai.ml", "azure.identity", "azure.core", "azure.storage.blob", "azure.storage.fileshare")
    workspace: Any

    def prepare(self, request: pytest.FixtureRequest) -> None:
        self.workspace = request.getfixturevalue("azure_workspace")

    @property
    def fake(self) -> Any:
        return self.workspace.server

    def settings(self) -> dict[str, Any]:
        return self.workspace.settings(serving_image="mlplatacr.azurecr.io/contract/iris-server:latest")

    def cloud_objects(self) -> Counter[str]:
        from azure_fake.console import console_objects

        return console_objects(self.fake)

    def make_drift(self) -> str:
        endpoint = next(iter(self.fake.objects["online_endpoints"]))
        names = sorted(self.fake.objects["online_endpoints"][endpoint]["properties"].get("traffic") or {})
        self.fake.set_traffic(endpoint, {names[0]: 50, names[1]: 50})
        return "iris.endpoint_traffic.main"

    def delete_out_of_band(self, record: ResourceRecord) -> None:
        from azure_fake.console import console_delete

        console_delete(self.fake, record.kind, record.id, record.inputs)

    @contextmanager
    def throttled(self, times: int, calls: Calls) -> Iterator[None]:
        """429 TooManyRequests with Retry-After for the first `times` calls of each distinct read (GET, HEAD) or
        write, ARM and storage alike."""
        with self.fake.throttle(times, calls):
            yield


class OnpremHarness(Harness):
    """The real kubernetes client against the fake API server (tests/kube_fake); every object is found in the
    fake's store by the `mlplat.dev/address` annotation it carries (an object of the stack without one is counted
    under its kind and name), every model by the annotations of its OCI manifest in the fake registry."""

    target = "onprem"
    bad_settings: ClassVar[dict[str, Any]] = {"namespace_prefix": "Not A Label", "nfs_server": "10.0.0.2"}
    expected_kinds = Counter({"onprem.namespace": 1, "onprem.persistent_volume": 1,
                              "onprem.persistent_volume_claim": 1, "onprem.deployment": 3, "onprem.service": 3,
                              "onprem.model_artifact": 2, "onprem.http_route": 1})
    sdk = ("kubernetes", "urllib3", "pulumi", "pulumi_kubernetes")
    cluster: Any

    def prepare(self, request: pytest.FixtureRequest) -> None:
        self.cluster = request.getfixturevalue("kube_cluster")

    @property
    def fake(self) -> Any:
        return self.cluster.server

    def settings(self) -> dict[str, Any]:
        # the drift check changes a route as `kubectl edit` would: apply takes the field back (force_conflicts)
        return {"kubeconfig": str(self.cluster.kubeconfig), "nfs_server": "10.0.0.2", "poll_interval_s": 0.02,
                "force_conflicts": True, "timeouts": FAKE_CLOUD_TIMEOUTS}

    def cloud_objects(self) -> Counter[str]:
        from kube_fake.console import console_objects

        return console_objects(self.fake, "contract")

    def make_drift(self) -> str:
        def half(route: dict[str, Any]) -> None:
            for backend in route["spec"]["rules"][0]["backendRefs"]:
                backend["weight"] = 50

        self.fake.edit("gateway.networking.k8s.io/v1", "HTTPRoute", "iris", "mlplat-contract", half)
        return "iris.http_route.main"

    def delete_out_of_band(self, record: ResourceRecord) -> None:
        from kube_fake.console import console_delete

        console_delete(self.fake, record.kind, record.id, record.inputs)

    @contextmanager
    def throttled(self, times: int, calls: Calls) -> Iterator[None]:
        """429 TooManyRequests with Retry-After for the first `times` of each distinct read (get, list, a GET or
        HEAD through the service proxy) or write (apply, delete, other requests through the proxy)."""
        actions = {"get", "list", "proxy-read"} if calls == "reads" else {"apply", "delete", "proxy-write"}
        with self.fake.throttle(times, actions, per_request=True):
            yield


HARNESSES: list[type[Harness]] = [SimHarness, LocalHarness, AwsHarness, GcpHarness, AzureHarness, OnpremHarness,
                                  ToyHarness]


def state_files(h: Harness) -> bytes:
    """Every byte under the stack's .mlplat directory (the sqlite state, its WAL and backup, the targets' work
    areas), for checks that a secret never reaches the disk in plaintext."""
    root = h.directory / ".mlplat"
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.suffix != ".log")
