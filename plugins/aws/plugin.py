"""Entry point of the aws target (group `mlplat.plugins`). Imports no AWS SDK."""

from __future__ import annotations

from pathlib import Path

from provisioner.catalog import CatalogFile
from provisioner.graph import Resource
from provisioner.plugins import hookimpl


@hookimpl
def mlplat_targets() -> list[type]:
    from mlplat_plugins.aws.target import AwsTarget

    return [AwsTarget]


@hookimpl
def mlplat_catalog() -> list[CatalogFile]:
    """The AWS rows of the accelerator catalog: EC2 instance types, and whether SageMaker endpoints sell them."""
    return [CatalogFile("aws", Path(__file__).with_name("catalog.csv"))]


@hookimpl
def mlplat_estimate_cost(resource: Resource) -> float | None:
    """On-demand USD per hour from the accelerator catalog: HyperPod groups and endpoint variants."""
    if not resource.kind.startswith("aws."):
        return None
    from provisioner import catalog

    prices = {f"ml.{o.instance_type}": o.price_usd_hour or 0.0
              for name in catalog.names() for o in catalog.offerings("aws", name)}
    if resource.kind == "aws.hyperpod_cluster":
        return sum(prices.get(g["instance_type"], 0.0) * g["count"] for g in resource.inputs["groups"])
    if resource.kind == "aws.endpoint_config":
        variants = [*resource.inputs["variants"], *resource.inputs["shadow_variants"]]
        return sum(prices.get(v["instance_type"], 0.0) * v["count"] for v in variants)
    return 0.0
