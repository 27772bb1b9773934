"""Resource kinds of the azure target → their providers."""

from __future__ import annotations

from mlplat_plugins.azure.compute import ComputeCluster
from mlplat_plugins.azure.monitoring import MonitorSchedule
from mlplat_plugins.azure.registry import DataAsset, ModelVersion
from mlplat_plugins.azure.serving import EndpointTraffic, OnlineDeployment, OnlineEndpoint
from mlplat_plugins.azure.storage import Datastore, FileShare

PROVIDERS = {
    "azure.compute": ComputeCluster,
    "azure.file_share": FileShare,
    "azure.datastore": Datastore,
    "azure.model": ModelVersion,
    "azure.monitoring_baseline": DataAsset,
    "azure.online_endpoint": OnlineEndpoint,
    "azure.online_deployment": OnlineDeployment,
    "azure.endpoint_traffic": EndpointTraffic,
    "azure.monitor_schedule": MonitorSchedule,
}
