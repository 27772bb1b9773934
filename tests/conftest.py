"""Shared fixtures: run the real `mlplat` CLI in a subprocess, copy example stacks into a temp dir."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from aws_moto import MotoServer

#: fixture modules of their own: a PostgreSQL server started for the tests
pytest_plugins = ["pg_server"]

REPO = Path(__file__).resolve().parents[1]
STACKS = REPO / "stacks"

Cli = Callable[..., subprocess.CompletedProcess[str]]


def run_mlplat(*args: str, cwd: Path, env: dict[str, str] | None = None, check: bool = True,
               timeout: float = 120, stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    """The console script exactly as a user runs it (no TTY on stdin)."""
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "provisioner.cli", *args], cwd=cwd, env=full_env, text=True,
                          capture_output=True, timeout=timeout, stdin=stdin)
    if check and proc.returncode != 0:
        raise AssertionError(f"mlplat {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\n"
                             f"stderr:\n{proc.stderr}")
    return proc


def in_ci() -> bool:
    """$CI set to a true value (.ci/run exports CI=true; so do the hosted CI services)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off")


def require_module(name: str, reason: str) -> ModuleType:
    """`pytest.importorskip(name)` on a developer machine; under CI a missing module fails the run instead, so an
    incomplete test extra cannot silently skip a suite (at module level it fails that file's collection)."""
    if not in_ci():
        return pytest.importorskip(name, reason=reason)
    try:
        return importlib.import_module(name)
    except ImportError as err:
        problem = str(err)
    pytest.fail(f"CI must run the tests that need {name}, and it cannot be imported ({problem}): {reason}",
                pytrace=False)


@pytest.fixture
def cli() -> Cli:
    return run_mlplat


@pytest.fixture
def quickstart_dir(tmp_path: Path) -> Path:
    """stacks/quickstart.yaml and its models, copied so that state and processes live under tmp_path."""
    shutil.copy(STACKS / "quickstart.yaml", tmp_path / "quickstart.yaml")
    shutil.copytree(STACKS / "models", tmp_path / "models")
    return tmp_path


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto server on 127.0.0.1 for the session (real HTTP; subprocesses reach it through endpoint_url)."""
    require_module("boto3", "the aws extra is part of the test extra")
    from aws_moto import started_server

    server = started_server()
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())  # in-process plugin calls sign with the fake account's keys
    yield server
    server.stop()
    if os.environ.get("MLPLAT_MOTO_ACTIONS"):  # which AWS APIs the tests exercised, for the record
        Path(os.environ["MLPLAT_MOTO_ACTIONS"]).write_text("\n".join(sorted(server.actions_seen)) + "\n")
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def aws_account(moto_server: MotoServer) -> AwsAccount:
    """An empty AWS account on the moto server with an artifact bucket, a VPC, a subnet and a security group."""
    moto_server.reset()
    moto_server.clear_calls()
    return AwsAccount.create(moto_server)


@dataclass
class AwsAccount:
    server: MotoServer
    bucket: str
    subnet: str
    security_group: str

    @classmethod
    def create(cls, server: MotoServer) -> AwsAccount:
        bucket = "sagemaker-mlplat-artifacts"  # HyperPod reads lifecycle scripts only from sagemaker-* buckets
        server.client("s3").create_bucket(Bucket=bucket)
        ec2 = server.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="mlplat", Description="mlplat tests", VpcId=vpc)["GroupId"]
        server.clear_calls()
        return cls(server, bucket, subnet, group)

    def settings(self, **extra: Any) -> dict[str, Any]:
        """targets.aws settings pointing at the moto server, with waits polled fast."""
        return {"region": self.server.region, "endpoint_url": self.server.url, "bucket": self.bucket,
                "role_arn": "arn:aws:iam::123456789012:role/mlplat-sagemaker", "subnets": [self.subnet],
                "security_groups": [self.security_group], "poll_interval_s": 0.02, **extra}

    def env(self) -> dict[str, str]:
        return {**self.server.env(), "MLPLAT_AWS_BUCKET": self.bucket}


# --- gcp: the real Google clients against tests/gcp_fake on 127.0.0.1 ---------------------------------------

#: waits on a fake cloud's operations end within two minutes (they finish after a few polls): a wait the fake
#: never ends fails the test instead of holding the run for the kinds' hour-long defaults
FAKE_CLOUD_TIMEOUTS = {"create": "2m", "update": "2m", "delete": "2m"}


@pytest.fixture(scope="session")
def gcp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One fake Google Cloud server on 127.0.0.1 for the session, and Application Default Credentials for it: a
    service account key file (GOOGLE_APPLICATION_CREDENTIALS) whose token endpoint is the fake, so the plugin's
    google.auth.default() and every client work as they do against Google (subprocesses inherit the variable)."""
    require_module("google.cloud.aiplatform_v1", "the gcp extra is part of the test extra")
    from gcp_fake import started_server
    from gcp_fake.auth import write_adc

    server = started_server()
    adc = write_adc(server, tmp_path_factory.mktemp("gcp-adc"))
    saved = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    os.environ["GOOGLE_APPLICATION_CREDENTIALS"] = str(adc)
    yield server
    server.stop()
    if os.environ.get("MLPLAT_GCP_ACTIONS"):  # which Google API methods the tests exercised, for the record
        Path(os.environ["MLPLAT_GCP_ACTIONS"]).write_text("\n".join(sorted(server.actions_seen)) + "\n")
    if saved is None:
        os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    else:
        os.environ["GOOGLE_APPLICATION_CREDENTIALS"] = saved


@pytest.fixture
def gcp_project(gcp_server: Any) -> GcpProject:
    """An empty project on the fake server with an artifact bucket."""
    gcp_server.reset()
    gcp_server.create_bucket(GcpProject.bucket)
    return GcpProject(gcp_server)


@dataclass
class GcpProject:
    server: Any
    bucket: str = "mlplat-artifacts"

    def settings(self, **extra: Any) -> dict[str, Any]:
        """targets.gcp settings pointing at the fake server, with waits polled fast and bounded (`timeouts=None`:
        without the engine's `timeouts`, for a settings model made directly)."""
        return _without_none({"project": self.server.project, "region": self.server.region,
                              "endpoint_url": self.server.url, "bucket": self.bucket, "poll_interval_s": 0.02,
                              "timeouts": FAKE_CLOUD_TIMEOUTS, **extra})


# --- azure: azure-ai-ml, azure-identity and the storage clients against tests/azure_fake on 127.0.0.1 -------------

#: what DefaultAzureCredential must not find on a test machine before the fake's service principal
_AZURE_AMBIENT = ("AZURE_USERNAME", "AZURE_PASSWORD", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_FEDERATED_TOKEN_FILE",
                  "MSI_ENDPOINT", "IDENTITY_ENDPOINT", "AZURE_AUTHORITY_HOST")


@pytest.fixture(scope="session")
def azure_server() -> Iterator[Any]:
    """One fake Azure (ARM, Entra ID, storage) on 127.0.0.1 for the session, and a service principal for
    DefaultAzureCredential in the environment (subprocesses inherit it), whose token endpoint is the fake."""
    require_module("azure.ai.ml", "the azure extra is part of the test extra")
    from azure_fake import started_server

    server = started_server()
    env = {**server.env(), **dict.fromkeys(_AZURE_AMBIENT)}
    saved = {k: os.environ.get(k) for k in env}
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    yield server
    server.stop()
    if os.environ.get("MLPLAT_AZURE_ACTIONS"):  # which Azure operations the tests exercised, for the record
        Path(os.environ["MLPLAT_AZURE_ACTIONS"]).write_text("\n".join(sorted(server.actions_seen)) + "\n")
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def azure_workspace(azure_server: Any) -> AzureWorkspace:
    """An empty workspace on the fake server (its default blob datastore and storage account exist)."""
    azure_server.reset()
    return AzureWorkspace(azure_server)


@dataclass
class AzureWorkspace:
    server: Any

    def settings(self, **extra: Any) -> dict[str, Any]:
        """targets.azure settings pointing at the fake server, with waits polled fast and bounded (`timeouts=None`:
        without the engine's `timeouts`, for a settings model made directly)."""
        return _without_none({"subscription": self.server.subscription, "resource_group": self.server.resource_group,
                              "workspace": self.server.workspace, "location": self.server.location,
                              "endpoint_url": self.server.url, "poll_interval_s": 0.02,
                              "timeouts": FAKE_CLOUD_TIMEOUTS, **extra})


def _without_none(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if not (k == "timeouts" and v is None)}


# --- onprem: the real kubernetes client against tests/kube_fake (a fake API server and data plane) on 127.0.0.1 ---


@pytest.fixture(scope="session")
def kube_server() -> Iterator[Any]:
    """One fake Kubernetes API server (and its Gateway data plane) on 127.0.0.1 for the session; only the gateway
    API group installed (tests `install`/`uninstall` the others; `reset()` restores this)."""
    require_module("kubernetes", "the onprem extra is part of the test extra")
    from kube_fake import started_server

    server = started_server()
    yield server
    server.stop()


@pytest.fixture
def kube_cluster(kube_server: Any, tmp_path: Path) -> KubeCluster:
    """An empty cluster (built-in namespaces and the Gateway only) and a kubeconfig for it."""
    kube_server.reset()
    return KubeCluster(kube_server, kube_server.write_kubeconfig(tmp_path / "kubeconfig"))


@dataclass
class KubeCluster:
    server: Any
    kubeconfig: Path
