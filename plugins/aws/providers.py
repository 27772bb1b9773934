"""Resource kinds of the aws target → their providers."""

from __future__ import annotations

from mlplat_plugins.aws.compute import HyperPodCluster
from mlplat_plugins.aws.front_door import FrontDoor
from mlplat_plugins.aws.monitoring import (
    AlertTopic,
    DataQualityJobDefinition,
    MetricAlarm,
    MonitoringBaseline,
    MonitoringSchedule,
)
from mlplat_plugins.aws.registry import EcrRepository, ModelArtifact, ModelPackage, ModelPackageGroup
from mlplat_plugins.aws.serving import Endpoint, EndpointConfig, SageMakerModel
from mlplat_plugins.aws.storage import EfsFileSystem, EfsMountTarget, FsxLustre

PROVIDERS = {
    "aws.hyperpod_cluster": HyperPodCluster,
    "aws.efs": EfsFileSystem,
    "aws.efs_mount_target": EfsMountTarget,
    "aws.fsx_lustre": FsxLustre,
    "aws.ecr_repository": EcrRepository,
    "aws.model_artifact": ModelArtifact,
    "aws.model_package_group": ModelPackageGroup,
    "aws.model_package": ModelPackage,
    "aws.model": SageMakerModel,
    "aws.endpoint_config": EndpointConfig,
    "aws.endpoint": Endpoint,
    "aws.front_door": FrontDoor,
    "aws.monitoring_baseline": MonitoringBaseline,
    "aws.data_quality_job_definition": DataQualityJobDefinition,
    "aws.monitoring_schedule": MonitoringSchedule,
    "aws.alert_topic": AlertTopic,
    "aws.metric_alarm": MetricAlarm,
}
