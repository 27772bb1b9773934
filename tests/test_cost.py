"""`provisioner.cost` and `mlplat cost`: figures checked against sums worked by hand from the catalog rows.

The rows used (plugins/*/catalog.csv, on-demand USD/hour in the pricing region):
aws (us-east-1, dated 2026-11-25): p5.48xlarge (h100 x8) 55.04, g5.xlarge (a10g x1) 1.006, m5.xlarge (cpu,
smallest) 0.192, g4dn.xlarge (t4 x1) 0.526; p5e.48xlarge (h200 x8, no price) and p5en.48xlarge (h200 x8) 63.296.
gcp (us-central1): n2-standard-2 (cpu, smallest) 0.09712 (2026-11-25), a3-highgpu-8g (h100 x8) 88.49 (2026-08-20).
azure (eastus, 2026-11-25): Standard_D4s_v3 (cpu, 4 vCPUs, 0.192; ties with D4s_v5 and wins on its name), no cpu size
sold for serving, Standard_ND96isr_H200_v5 (h200 x8) without a price.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from provisioner import cost
from provisioner.graph import Resource
from provisioner.spec import loads
from provisioner.spec.model import Platform

from conftest import STACKS, Cli

MONTH = 730


def platform_of(text: str) -> Platform:
    return loads(text).platform


def stack(body: str, target: str = "aws") -> str:
    return f"apiVersion: mlplat/v1\nmetadata: {{name: t}}\ntarget: {target}\n{body}"


def aws_stack_report() -> cost.CostReport:
    platform = cost.load_platform(STACKS / "aws.yaml")  # ${env:MLPLAT_AWS_BUCKET} need not be set
    return cost.estimate_platform(platform, cost.stack_target_types(platform))


def printed(render, *args, **kwargs) -> str:
    out = io.StringIO()
    render(Console(file=out, width=200, no_color=True, highlight=False), *args, **kwargs)
    return out.getvalue()


# -- figures --------------------------------------------------------------------------------------------------
def test_the_aws_stack_costs_the_sum_of_its_instances(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLPLAT_AWS_BUCKET", raising=False)
    report = aws_stack_report()
    assert "MLPLAT_AWS_BUCKET" not in os.environ  # the placeholder is gone again
    train, shared, models, iris = report.components
    # pool big: h100 x8 -> p5.48xlarge 55.04 x nodes.min 2; pool small: a10g x1 -> g5.xlarge 1.006 x 1
    assert train.hourly == pytest.approx(55.04 * 2 + 1.006 * 1)  # 111.086
    assert [(i.instance_type, i.count, i.unit_price) for i in train.items] == [
        ("p5.48xlarge", 2, 55.04), ("g5.xlarge", 1, 1.006)]
    assert train.items[0].what == "pool big: 2 x p5.48xlarge"
    assert "scales up to 4 nodes ($220.16/h)" in train.items[0].note  # 55.04 x 4
    # production: cpu -> m5.xlarge 0.192 (the smallest cpu type SageMaker sells); experimental: t4 x1 -> g4dn.xlarge
    assert iris.hourly == pytest.approx(0.192 + 0.526)
    assert [i.what for i in iris.items] == ["path production: 1 x m5.xlarge", "path experimental: 1 x g4dn.xlarge"]
    assert report.hourly == pytest.approx(111.086 + 0.718)  # 111.804
    assert report.monthly == pytest.approx(111.804 * MONTH)  # 81,616.92
    assert (shared.hourly, models.hourly) == (0.0, 0.0)
    assert shared.unpriced == ["storage shared (nas 100 GB): no storage prices in the catalog"]
    assert models.unpriced == ["registry models (1 image, 2 models): no registry prices in the catalog"]
    assert (report.priced_count, report.unpriced_count) == (4, 2)
    assert report.price_dates == ["2026-11-25"]
    assert {i.price_source for c in report.components for i in c.items} == {
        "skypilot-org/skypilot-catalog@00148f2af3672e2229b4f7bf8157d5a3f36e3c35 catalogs/v8/aws/vms.csv"}
    data = report.to_json()
    assert data["hourly_usd"] == pytest.approx(111.804) and data["unpriced"] == 2


def test_a_shadow_path_and_replicas_count() -> None:
    platform = platform_of(stack("""\
registry: {name: r, models: [{name: m, version: "1", artifact: s3://b/m1}, {name: m, version: "2", artifact: s3://b/m2}]}
serving:
  - name: ep
    paths:
      production: {model: "m:1", replicas: 3}
      experimental: {model: "m:2", mode: shadow, accelerator: t4, replicas: 2}
"""))
    report = cost.estimate_platform(platform, {"aws": "aws"})
    ep = report.component("ep")
    assert ep is not None
    assert ep.hourly == pytest.approx(0.192 * 3 + 0.526 * 2)  # 1.628
    assert ep.items[1].what == "path experimental (shadow): 2 x g4dn.xlarge"


def test_the_same_platform_on_other_clouds() -> None:
    platform = cost.load_platform(STACKS / "aws.yaml")
    gcp = cost.estimate_platform(platform, {}, override="gcp")
    train = gcp.component("train")
    assert train is not None
    assert train.hourly == pytest.approx(88.49 * 2)  # a3-highgpu-8g; a10g is not sold on gcp
    assert train.unpriced == ["pool small: a10g is not offered on gcp"]
    assert gcp.price_dates == ["2026-08-20", "2026-11-25"]  # the a3 row is dated by its own source
    azure = cost.estimate_platform(platform, {}, override="azure")
    iris = azure.component("iris")
    assert iris is not None
    assert iris.hourly == pytest.approx(0.526)  # Standard_NC4as_T4_v3; the cpu serving size has no catalog price
    assert iris.unpriced == ["path production: Standard_DS3_v2 has no price in the catalog"]


def test_an_instance_type_without_a_price_is_unpriced_not_zero() -> None:
    platform = platform_of(stack("""\
clusters:
  - name: c
    gpu_pools: [{name: p, accelerator: h200, gpus_per_node: 8}]
"""))
    azure = cost.estimate_platform(platform, {}, override="azure").components[0]
    assert azure.hourly == 0.0 and azure.priced_count == 0
    assert azure.items[0].instance_type == "Standard_ND96isr_H200_v5" and azure.items[0].unit_price is None
    assert azure.unpriced == ["pool p: Standard_ND96isr_H200_v5 has no price in the catalog"]
    aws = cost.estimate_platform(platform, {}, override="aws").components[0]
    assert aws.hourly == pytest.approx(63.296)  # p5en.48xlarge is priced, so it is picked over p5e.48xlarge


def test_a_gpu_count_not_offered_is_unpriced_with_the_catalogs_message() -> None:
    platform = platform_of(stack("""\
clusters:
  - name: c
    gpu_pools:
      - {name: odd, accelerator: h100, gpus_per_node: 3}
      - {name: ok, accelerator: h100, gpus_per_node: 1, nodes: {min: 2, max: 2}}
"""))
    c = cost.estimate_platform(platform, {"aws": "aws"}).components[0]
    assert c.hourly == pytest.approx(6.88 * 2)  # p5.4xlarge (h100 x1) x 2
    assert c.unpriced == ["pool odd: h100 is not offered on aws with 3 GPU(s) per instance; available counts: 1, 8"]
    assert (c.priced_count, c.unpriced_count) == (1, 1)


def test_a_free_target_costs_nothing() -> None:
    platform = cost.load_platform(STACKS / "quickstart.yaml")
    report = cost.estimate_platform(platform, cost.stack_target_types(platform))
    assert cost.stack_target_types(platform) == {"local": "local"}
    assert report.hourly == 0.0 and report.monthly == 0.0
    assert (report.priced_count, report.unpriced_count) == (5, 0)  # pool, storage, registry, two paths
    assert {i.price_source for c in report.components for i in c.items} == {"this machine"}
    assert report.price_dates == []


def test_a_target_type_without_prices_prices_nothing() -> None:
    platform = platform_of(stack("""\
targets: {edge: {type: k8s}}
clusters: [{name: c, target: edge, gpu_pools: [{name: p, accelerator: t4}]}]
storage: [{name: s, target: edge}]
""", target="edge"))
    report = cost.estimate_platform(platform, cost.stack_target_types(platform))
    assert cost.stack_target_types(platform) == {"edge": "k8s"}
    assert report.hourly == 0.0 and report.priced_count == 0
    assert report.unpriced_count == 2
    assert report.components[0].unpriced[0].startswith("pool p: no prices for target type 'k8s' (catalog target "
                                                       "types: aws, azure, gcp")


# -- delta and rendering --------------------------------------------------------------------------------------
def test_delta_and_render_costs() -> None:
    current = aws_stack_report()
    platform = cost.load_platform(STACKS / "aws.yaml")
    platform.clusters[0].gpu_pools[0].nodes.min = 3  # one more p5.48xlarge
    platform.serving.clear()
    desired = cost.estimate_platform(platform, cost.stack_target_types(platform))
    change = cost.delta(desired, current)
    assert change["components"]["train"]["hourly"] == pytest.approx(55.04)
    assert change["components"]["iris"]["hourly"] == pytest.approx(-0.718)  # removed: 0.192 + 0.526
    assert change["total"]["hourly"] == pytest.approx(55.04 - 0.718)  # 54.322
    assert change["total"]["monthly"] == pytest.approx(54.322 * MONTH)
    assert change["total"]["complete"] is False  # storage and registry are unpriced on both sides
    text = printed(cost.render_costs, desired, current)
    assert "train (aws): $166.13/h, $121,271.98/month (Δ +$55.04/h)" in text  # 55.04*3 + 1.006 = 166.126
    assert "shared (aws): $0.00/h, $0.00/month + 1 unpriced (Δ +$0.00/h)" in text
    assert "iris (removed): (Δ -$0.72/h)" in text
    assert "Total: $166.13/h, $121,271.98/month (Δ +$54.32/h); 2 priced / 2 unpriced; prices as of 2026-11-25" \
        in text  # 166.126 * 730 = 121,271.98
    assert "unpriced: storage shared (nas 100 GB): no storage prices in the catalog" in text


# -- the command ----------------------------------------------------------------------------------------------
def no_aws_env(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    for key in list(os.environ):
        if key.startswith("AWS_") or key == "MLPLAT_AWS_BUCKET":
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(home))  # no ~/.aws either


def test_compare_quickstart_on_three_clouds(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_aws_env(monkeypatch, tmp_path)
    out = cli("cost", "-f", str(STACKS / "quickstart.yaml"), "--compare", "aws,gcp,azure", cwd=tmp_path).stdout
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:5]]
            for line in out.splitlines() if line.startswith("│") and line.split("│")[1].strip()}
    # cluster: one cpu node; serving: two cpu paths; storage and registry unpriced everywhere
    assert rows["train (cluster)"] == ["$0.19/h", "$0.10/h", "$0.19/h"]  # 0.192, 0.09712, 0.192
    assert rows["iris (serving)"] == ["$0.38/h", "$0.19/h", "unpriced"]  # 2 x 0.192, 2 x 0.09712
    assert rows["shared (storage)"] == ["unpriced"] * 3
    assert rows["Total"] == ["≥ $0.58/h", "≥ $0.29/h", "≥ $0.19/h"]  # 0.576, 0.29136, 0.192
    assert rows["priced / unpriced"] == ["3 / 2", "3 / 2", "1 / 4"]
    assert rows["prices as of"] == ["2026-11-25"] * 3
    assert "≥ $420.48/mo" in out and "≥ $212.69/mo" in out and "≥ $140.16/mo" in out  # x 730
    assert "azure: unpriced: path production: Standard_DS3_v2 has no price in the catalog" in out

    data = json.loads(cli("cost", "-f", str(STACKS / "quickstart.yaml"), "--compare", "aws,gcp,azure", "--json",
                          cwd=tmp_path).stdout)["compare"]
    assert sorted(data) == ["aws", "azure", "gcp"]  # --json sorts keys
    assert data["aws"]["hourly_usd"] == pytest.approx(3 * 0.192)
    assert data["gcp"]["hourly_usd"] == pytest.approx(3 * 0.09712)
    assert data["azure"]["hourly_usd"] == pytest.approx(0.192)
    assert data["gcp"]["monthly_usd"] == pytest.approx(3 * 0.09712 * MONTH)
    assert {t: (d["priced"], d["unpriced"]) for t, d in data.items()} == {"aws": (3, 2), "gcp": (3, 2),
                                                                           "azure": (1, 4)}
    assert data["aws"]["components"][0]["items"][0]["instance_type"] == "m5.xlarge"


def test_cost_of_the_aws_stack_needs_no_credentials_and_imports_no_sdk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_aws_env(monkeypatch, tmp_path)
    code = ("import sys; from provisioner.cli import app\n"
            f"for extra in ([], ['--compare', 'aws,gcp,azure'], ['--json']):\n"
            f"    sys.argv = ['mlplat', 'cost', '-f', {str(STACKS / 'aws.yaml')!r}, *extra]\n"
            "    app(standalone_mode=False)\n"
            "sdk = sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'azure')\n"
            "             or m.startswith(('google.api_core', 'google.auth', 'google.cloud.')))\n"
            "assert not sdk, sdk\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    assert "train (aws): $111.09/h, $81,092.78/month" in proc.stdout  # 111.086 x 730 = 81,092.78
    assert "Total: $111.80/h, $81,616.92/month; 4 priced / 2 unpriced; prices as of 2026-11-25" in proc.stdout
    assert "pool big: 2 x p5.48xlarge, $55.04/h each; scales up to 4 nodes ($220.16/h)" in proc.stdout


def test_an_unknown_type_to_compare_is_an_error(cli: Cli, tmp_path: Path) -> None:
    proc = cli("cost", "-f", str(STACKS / "quickstart.yaml"), "--compare", "aws,k8s", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "unknown target type 'k8s' to compare" in proc.stderr
    assert "catalog target types: aws, azure, gcp" in proc.stderr


# -- the aws plugin's preview estimate -------------------------------------------------------------------------
def test_the_aws_estimate_does_not_guess() -> None:
    from mlplat_plugins.aws.plugin import mlplat_estimate_cost as estimate

    def res(kind: str, **inputs: object) -> Resource:
        return Resource(f"x.{kind}.main", f"aws.{kind}", "aws", dict(inputs))

    groups = [{"instance_type": "ml.p5.48xlarge", "count": 2}, {"instance_type": "ml.g5.xlarge", "count": 1}]
    assert estimate(resource=res("hyperpod_cluster", groups=groups)) == pytest.approx(55.04 * 2 + 1.006)
    variants = [{"instance_type": "ml.m5.xlarge", "count": 1}]
    shadow = [{"instance_type": "ml.g4dn.xlarge", "count": 2}]
    assert estimate(resource=res("endpoint_config", variants=variants, shadow_variants=shadow)) == pytest.approx(
        0.192 + 0.526 * 2)
    unknown = [{"instance_type": "ml.p5e.48xlarge", "count": 1}]  # a catalog row without a price
    assert estimate(resource=res("hyperpod_cluster", groups=unknown)) is None
    for kind in ("efs", "fsx_lustre", "ecr_repository", "model_artifact"):  # billed per GB: no price here
        assert estimate(resource=res(kind)) is None, kind
    for kind in ("model_package_group", "model_package", "model", "endpoint", "efs_mount_target"):
        assert estimate(resource=res(kind)) == 0.0, kind
    assert estimate(resource=res("route53_record")) is None  # a kind it does not know
