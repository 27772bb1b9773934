"""Resource kinds of the onprem target → their providers."""

from __future__ import annotations

from mlplat_plugins.onprem.base import KubeObject
from mlplat_plugins.onprem.inference import InferenceService
from mlplat_plugins.onprem.objects import (
    Deployment,
    HttpRoute,
    Namespace,
    PersistentVolume,
    PersistentVolumeClaim,
)
from mlplat_plugins.onprem.registry import ModelArtifact

PROVIDERS = {
    "onprem.namespace": Namespace,
    "onprem.priority_class": KubeObject,
    "onprem.resource_quota": KubeObject,
    "onprem.resource_flavor": KubeObject,
    "onprem.cluster_queue": KubeObject,
    "onprem.local_queue": KubeObject,
    "onprem.persistent_volume": PersistentVolume,
    "onprem.persistent_volume_claim": PersistentVolumeClaim,
    "onprem.deployment": Deployment,
    "onprem.service": KubeObject,
    "onprem.http_route": HttpRoute,
    "onprem.service_monitor": KubeObject,
    "onprem.inference_service": InferenceService,
    "onprem.model_artifact": ModelArtifact,
}
