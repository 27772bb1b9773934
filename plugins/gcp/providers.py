"""Resource kinds of the gcp target → their providers."""

from __future__ import annotations

from mlplat_plugins.gcp.compute import PersistentResource
from mlplat_plugins.gcp.monitoring import MonitoringJob
from mlplat_plugins.gcp.registry import ArtifactRepository, GcsObject, ModelVersion
from mlplat_plugins.gcp.serving import DeployedModel, Endpoint, TrafficSplit
from mlplat_plugins.gcp.storage import FilestoreInstance

PROVIDERS = {
    "gcp.persistent_resource": PersistentResource,
    "gcp.filestore_instance": FilestoreInstance,
    "gcp.artifact_repository": ArtifactRepository,
    "gcp.model_artifact": GcsObject,
    "gcp.model_version": ModelVersion,
    "gcp.endpoint": Endpoint,
    "gcp.deployed_model": DeployedModel,
    "gcp.traffic_split": TrafficSplit,
    "gcp.monitoring_baseline": GcsObject,
    "gcp.monitoring_job": MonitoringJob,
}
