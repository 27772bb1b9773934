"""Monitoring on Azure ML: a serving's `monitoring:` block.

- capture → each deployment's data collector (serving.py's OnlineDeployment: model_inputs and model_outputs at the
            sampling rate, registered by Azure ML as data assets)
- drift   → the baseline uploaded and registered as a data asset (`azure.monitoring_baseline`, registry.py) and a
            monitor schedule (`azure.monitor_schedule`) whose monitor definition has one data-drift signal: the
            production path's deployment's collected model inputs against the baseline, a threshold per numerical
            feature with Azure's metric (population_stability_index, jensen_shannon_distance,
            two_sample_kolmogorov_smirnov_test), run on serverless Spark every hour or day
- alerts  → that schedule's alert notification e-mails

Azure ML reads the production data of a drift signal from the deployment's data collector: a deployment without
one (no `capture`) cannot be monitored, and the schedule says so before calling Azure.
"""

from __future__ import annotations

import re
from typing import Any

from mlplat_plugins.azure.base import FAST, TOKEN_TAG, AzureProvider
from mlplat_plugins.azure.serving import state_of
from provisioner import cloud
from provisioner.cloud import operation_of
from provisioner.errors import MlplatError
from provisioner.operations import StepContext
from provisioner.provider import Created, Observed

#: a schedule's name (and import ID)
SCHEDULE_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_-]{0,254}")
#: the monitor's signal, by this name in monitoring_signals
SIGNAL = "data-drift"
#: serverless Spark that runs the monitor
SPARK_RUNTIME, SPARK_INSTANCE = "3.4", "standard_e4s_v3"
#: the path whose deployment is monitored, when the serving has it (else its first path)
PRODUCTION = "production"


def monitored_path(deployments: dict[str, Any]) -> str:
    """The path whose deployment the schedule monitors: `production` when the serving has it, else its first."""
    if not deployments:
        raise MlplatError("a monitor schedule needs a deployment to monitor (the serving has no paths)")
    return PRODUCTION if PRODUCTION in deployments else next(iter(deployments))


class MonitorSchedule(AzureProvider):
    """A monitor schedule (workspace schedules, action CreateMonitor) with one data-drift signal on the production
    path's deployment. Everything but the name changes in place (an ARM PUT of the schedule), a new deployment name
    (a path's new model) included. Schedules carry their tags in their properties; the create's token is one.

    Id and import ID: the schedule's name."""

    force_new = frozenset({"name"})
    timeouts = FAST  # a schedule is a definition: its PUT settles in seconds
    import_id = SCHEDULE_NAME

    @property
    def schedules(self) -> Any:
        return self.azure.group("schedules")

    def _entity(self, inputs: dict[str, Any], tags: dict[str, str]) -> Any:
        from azure.ai.ml import Input
        from azure.ai.ml.entities import (
            AlertNotification,
            DataDriftMetricThreshold,
            DataDriftSignal,
            MonitorDefinition,
            MonitoringTarget,
            NumericalDriftMetrics,
            RecurrenceTrigger,
            ReferenceData,
            ServerlessSparkCompute,
        )
        from azure.ai.ml.entities import MonitorSchedule as Schedule

        deployment = inputs["deployments"][monitored_path(inputs["deployments"])]
        signal = DataDriftSignal(
            reference_data=ReferenceData(input_data=Input(path=inputs["baseline"], type="uri_file"),
                                         data_context="training"),
            features=list(inputs["features"]),
            metric_thresholds=DataDriftMetricThreshold(
                numerical=NumericalDriftMetrics(**{inputs["metric"]: inputs["threshold"]})),
            alert_enabled=bool(inputs["emails"]))
        definition = MonitorDefinition(
            compute=ServerlessSparkCompute(runtime_version=SPARK_RUNTIME, instance_type=SPARK_INSTANCE),
            monitoring_target=MonitoringTarget(endpoint_deployment_id=f"azureml:{inputs['endpoint']}:{deployment}"),
            monitoring_signals={SIGNAL: signal},
            alert_notification=AlertNotification(emails=list(inputs["emails"])) if inputs["emails"] else None)
        recurrence = inputs["recurrence"]
        return Schedule(name=inputs["name"], trigger=RecurrenceTrigger(frequency=recurrence["frequency"],
                                                                        interval=int(recurrence["interval"])),
                        create_monitor=definition, tags=tags)

    def _check_capture(self, inputs: dict[str, Any]) -> None:
        """Azure ML drift reads the deployment's collected inputs: refuse clearly where there are none."""
        deployment = inputs["deployments"][monitored_path(inputs["deployments"])]
        live = self.azure.group("online_deployments").get(deployment, inputs["endpoint"])
        if live.data_collector is None:
            raise MlplatError(f"deployment {inputs['endpoint']}/{deployment} collects no data: Azure ML drift "
                              "monitoring compares its collected model inputs with the baseline",
                              hint="declare monitoring.capture on the serving")

    def _put(self, ctx: StepContext, action: str, inputs: dict[str, Any], tags: dict[str, str]) -> Any:
        name = inputs["name"]
        if operation_of(ctx, action) is None:
            self._check_capture(inputs)
            entity = self._entity(inputs, tags)
            self.start(ctx, action, name, lambda: self.schedules.begin_create_or_update(entity))
        return cloud.wait_for_status(ctx, lambda: self.schedules.get(name), f"monitor schedule {name}",
                                     "Updating" if action.startswith("Update") else "Creating",
                                     ready=("Succeeded",), failed=("Failed", "Canceled"), status_of=state_of,
                                     **self.intervals)

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        name = inputs["name"]
        if operation_of(ctx, "CreateMonitorSchedule") is None:
            live = self.get(lambda: self.schedules.get(name))
            if live is not None and (name in ctx.exclude or (live.tags or {}).get(TOKEN_TAG) != ctx.token):
                raise self.refuse_stranger("monitor schedule", name)
        self._put(ctx, "CreateMonitorSchedule", inputs, self.tags(address, ctx))
        return Created(name, {"name": name})

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        live = self.schedules.get(id)
        self._put(ctx, "UpdateMonitorSchedule", desired, dict(live.tags or {}))
        return {"name": id}

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        live = self.get(lambda: self.schedules.get(id))
        if live is None or state_of(live) == "Deleting":
            return None
        return Observed(self._observed(live, inputs), {"name": id})

    @staticmethod
    def _observed(live: Any, inputs: dict[str, Any]) -> dict[str, Any]:
        definition = live.create_monitor
        target = str(getattr(definition.monitoring_target, "endpoint_deployment_id", "") or "")
        parts = re.split(r"[:/]", target.removeprefix("azureml:"))
        endpoint, deployment = (parts[-3], parts[-1]) if "/onlineEndpoints/" in target else (parts[0], parts[-1])
        deployments = dict(inputs.get("deployments") or {})
        if deployments and deployments.get(monitored_path(deployments)) != deployment:
            deployments[monitored_path(deployments)] = deployment
        elif not deployments:
            deployments = {PRODUCTION: deployment}
        signal = (definition.monitoring_signals or {}).get(SIGNAL)
        features = list(getattr(signal, "features", None) or [])
        if set(features) == set(inputs.get("features") or []):
            features = list(inputs["features"])  # the stack's order
        metric, threshold = None, None
        thresholds = getattr(signal, "metric_thresholds", None)
        numerical = getattr(thresholds, "numerical", None) if not isinstance(thresholds, list) else None
        for name in ("population_stability_index", "jensen_shannon_distance", "two_sample_kolmogorov_smirnov_test",
                     "normalized_wasserstein_distance"):
            value = getattr(numerical, name, None)
            if value is not None:
                metric, threshold = name, value
                break
        reference = getattr(getattr(signal, "reference_data", None), "input_data", None)
        baseline = _asset_id(getattr(reference, "path", None), inputs.get("baseline"))
        notification = definition.alert_notification
        emails = sorted(getattr(notification, "emails", None) or [])
        trigger = live.trigger
        return {**inputs, "name": live.name, "endpoint": endpoint, "deployments": deployments,
                "baseline": baseline, "features": features, "metric": metric, "threshold": threshold,
                "recurrence": {"frequency": str(getattr(trigger, "frequency", "")).lower(),
                               "interval": getattr(trigger, "interval", None)},
                "emails": emails}

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        name = inputs["name"]
        found = self.find_named(name, ctx, lambda: self.schedules.get(name), lambda s: s.tags)
        return Created(name, {"name": name}) if found is not None else None

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        self.delete_and_wait(ctx, "DeleteMonitorSchedule", id, lambda: self.schedules.begin_delete(id),
                             lambda: self.schedules.get(id), f"monitor schedule {id}")


def _asset_id(path: str | None, wanted: str | None) -> str | None:
    """A data input's path (an `azureml:` id or the ARM id azure-ai-ml resolved it to) as `azureml:<name>:<version>`;
    the stack's own spelling when it names the same version."""
    if not path:
        return None
    match = re.fullmatch(r".*/data/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", path)
    live = f"azureml:{match['name']}:{match['version']}" if match else path
    if wanted is not None and wanted in (path, live):
        return wanted
    return live
