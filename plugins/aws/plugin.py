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


#: Kinds that are AWS objects with no charge of their own: SageMaker model registry objects and models are free,
#: an endpoint bills the instances its config names (priced on the config), and an EFS mount target is a network
#: interface with no charge (the file system bills its storage).
_FREE_KINDS = frozenset({"aws.model_package_group", "aws.model_package", "aws.model", "aws.endpoint",
                         "aws.efs_mount_target"})


@hookimpl
def mlplat_estimate_cost(resource: Resource) -> float | None:
    """On-demand USD per hour of HyperPod groups and endpoint variants, from the accelerator catalog; 0.0 for kinds
    that cost nothing; None for what costs money but has no price here (EFS, FSx for Lustre, ECR, S3 artifacts bill
    per GB stored), and for a group or variant whose instance type has no catalog price. The catalog's prices are
    EC2 on-demand prices; SageMaker bills its ml.* instances at its own rates, which may be higher."""
    if not resource.kind.startswith("aws."):
        return None
    if resource.kind in _FREE_KINDS:
        return 0.0
    if resource.kind == "aws.hyperpod_cluster":
        units = resource.inputs["groups"]
    elif resource.kind == "aws.endpoint_config":
        units = [*resource.inputs["variants"], *resource.inputs["shadow_variants"]]
    else:  # aws.efs, aws.fsx_lustre, aws.ecr_repository, aws.model_artifact: billed per GB, no price here
        return None
    from provisioner import catalog

    prices = {f"ml.{o.instance_type}": o.price_usd_hour
              for name in catalog.names() for o in catalog.offerings("aws", name)}
    total = 0.0
    for unit in units:
        price = prices.get(unit["instance_type"])
        if price is None:  # not a guess of 0: the preview total leaves out what it cannot price
            return None
        total += price * unit["count"]
    return total
