"""Monitoring on Vertex AI: an endpoint's `monitoring:` block.

- capture → the endpoint's predict_request_response_logging_config (serving.py's Endpoint: sampling rate, BigQuery
            table)
- drift   → the baseline in GCS (`gcp.monitoring_baseline`, registry.py's GcsObject) and a
            ModelDeploymentMonitoringJob over every deployed path (`gcp.monitoring_job`): per deployed model an
            objective config with the baseline as training dataset and a drift threshold per feature (Vertex AI
            measures numerical drift as the Jensen-Shannon divergence), run every whole hour or day
- alerts  → that job's e-mail alerts (model_monitoring_alert_config.email_alert_config)
"""

from __future__ import annotations

import re
from typing import Any

from mlplat_plugins.gcp.base import TOKEN_LABEL, GcpProvider
from provisioner.cloud import unless_missing
from provisioner.operations import StepContext
from provisioner.provider import Created, Observed

JOB_NAME = re.compile(r"projects/[^/]+/locations/[^/]+/modelDeploymentMonitoringJobs/[0-9]+")
#: input → the job's field an UpdateModelDeploymentMonitoringJob mask names for it
MASK = {"display_name": "display_name", "deployed": "model_deployment_monitoring_objective_configs",
        "baseline_uri": "model_deployment_monitoring_objective_configs",
        "baseline_format": "model_deployment_monitoring_objective_configs",
        "features": "model_deployment_monitoring_objective_configs",
        "threshold": "model_deployment_monitoring_objective_configs",
        "interval_hours": "model_deployment_monitoring_schedule_config",
        "sample_rate": "logging_sampling_strategy", "emails": "model_monitoring_alert_config"}


class MonitoringJob(GcpProvider):
    """A ModelDeploymentMonitoringJob on the endpoint. Vertex AI assigns its id, so the create's token is a label
    and `find` (and a create retried after a lost answer) lists the jobs carrying it. Everything but the endpoint
    changes in place (UpdateModelDeploymentMonitoringJob with an update mask), a new deployed model id included.

    Import ID: projects/<p>/locations/<r>/modelDeploymentMonitoringJobs/<id>."""

    force_new = frozenset({"endpoint"})
    import_id = JOB_NAME

    @staticmethod
    def _body(inputs: dict[str, Any]) -> dict[str, Any]:
        """The job's fields from the inputs (as the API's snake_case message fields)."""
        objective = {
            "training_dataset": {"gcs_source": {"uris": [inputs["baseline_uri"]]},
                                 "data_format": inputs["baseline_format"]},
            "prediction_drift_detection_config": {
                "drift_thresholds": {f: {"value": inputs["threshold"]} for f in inputs["features"]}}}
        body: dict[str, Any] = {
            "display_name": inputs["display_name"], "endpoint": inputs["endpoint"],
            "model_deployment_monitoring_objective_configs": [
                {"deployed_model_id": str(i), "objective_config": objective}
                for i in sorted(str(v) for v in inputs["deployed"].values())],
            "model_deployment_monitoring_schedule_config": {
                "monitor_interval": {"seconds": int(inputs["interval_hours"]) * 3600}},
            "logging_sampling_strategy": {"random_sample_config": {"sample_rate": inputs["sample_rate"]}},
            "model_monitoring_alert_config": {"email_alert_config": {"user_emails": list(inputs["emails"])}}}
        if not inputs["emails"]:
            body["model_monitoring_alert_config"] = {}
        return body

    def _get(self, name: str) -> dict[str, Any] | None:
        from mlplat_plugins.gcp.sdk import to_dict

        found = unless_missing(lambda: self.gcp.jobs.get_model_deployment_monitoring_job(request={"name": name}))
        return to_dict(found) if found is not None else None

    def _own(self, ctx: StepContext, inputs: dict[str, Any]) -> dict[str, Any] | None:
        """The job this create (ctx.token) made, if any, not one a replace excludes."""
        from mlplat_plugins.gcp.sdk import to_dict

        if not ctx.token:
            return None
        pager = self.gcp.jobs.list_model_deployment_monitoring_jobs(request={
            "parent": self.location, "filter": f'labels.{TOKEN_LABEL}="{ctx.token}"'})
        for job in pager:
            seen = to_dict(job)
            if seen["name"] not in ctx.exclude and self.token_of(seen.get("labels")) == ctx.token \
                    and seen.get("endpoint") == inputs["endpoint"]:
                return seen
        return None

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        from mlplat_plugins.gcp.sdk import to_dict

        job = self._own(ctx, inputs)  # a create retried after its answer was lost: adopt what it made
        if job is None:
            body = {**self._body(inputs), "labels": self.labels(ctx)}
            job = to_dict(self.gcp.jobs.create_model_deployment_monitoring_job(request={
                "parent": self.location, "model_deployment_monitoring_job": body}))
        return Created(job["name"], {"name": job["name"]})

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        job = self._get(id)
        if job is None:
            return None
        return Observed(self._observed(job, inputs), {"name": id})

    @staticmethod
    def _observed(job: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
        configs = job.get("model_deployment_monitoring_objective_configs") or []
        ids = [str(c.get("deployed_model_id")) for c in configs]
        wanted = {str(v): path for path, v in (inputs.get("deployed") or {}).items()}
        deployed = {wanted.get(i, f"deployedModels/{i}"): i for i in ids}
        if set(ids) == set(wanted):
            deployed = dict(inputs["deployed"])
        objective = (configs[0].get("objective_config") or {}) if configs else {}
        dataset = objective.get("training_dataset") or {}
        thresholds = {f: (t or {}).get("value") for f, t in
                      ((objective.get("prediction_drift_detection_config") or {}).get("drift_thresholds")
                       or {}).items()}
        features = list(thresholds)
        if set(features) == set(inputs.get("features") or []):
            features = list(inputs["features"])  # the stack's order
        values = set(thresholds.values())
        threshold = values.pop() if len(values) == 1 else None
        interval = (job.get("model_deployment_monitoring_schedule_config") or {}).get("monitor_interval")
        seconds = _seconds(interval)
        sampling = ((job.get("logging_sampling_strategy") or {}).get("random_sample_config") or {})
        emails = ((job.get("model_monitoring_alert_config") or {}).get("email_alert_config") or {}).get(
            "user_emails") or []
        return {**inputs, "display_name": job.get("display_name"), "endpoint": job.get("endpoint"),
                "deployed": deployed, "baseline_uri": ((dataset.get("gcs_source") or {}).get("uris") or [None])[0],
                "baseline_format": dataset.get("data_format") or None, "features": features, "threshold": threshold,
                "interval_hours": int(seconds // 3600) if seconds % 3600 == 0 else seconds / 3600,
                "sample_rate": sampling.get("sample_rate"), "emails": sorted(emails)}

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        paths = sorted({MASK[k] for k in MASK if prior.get(k) != desired.get(k)})
        if paths:
            body = {**self._body(desired), "name": id}
            self.run_operation(ctx, "UpdateModelDeploymentMonitoringJob",
                               lambda: self.gcp.jobs.update_model_deployment_monitoring_job(request={
                                   "model_deployment_monitoring_job": body,
                                   "update_mask": {"paths": paths}}),
                               self.gcp.jobs, f"monitoring job {id}")
        return {"name": id}

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        job = self._own(ctx, inputs)
        return Created(job["name"], {"name": job["name"]}) if job is not None else None

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        unless_missing(lambda: self.run_operation(
            ctx, "DeleteModelDeploymentMonitoringJob",
            lambda: self.gcp.jobs.delete_model_deployment_monitoring_job(request={"name": id}), self.gcp.jobs,
            f"monitoring job {id}"))


def _seconds(interval: Any) -> float:
    """A Duration as to_dict gives it ("3600s", or a timedelta / dict)."""
    if interval is None:
        return 0.0
    if isinstance(interval, str):
        return float(interval.rstrip("s") or 0)
    if isinstance(interval, dict):
        return float(interval.get("seconds", 0)) + float(interval.get("nanos", 0)) / 1e9
    total = getattr(interval, "total_seconds", None)
    return float(total()) if total else float(interval)
