"""Monitoring on AWS: an endpoint's `monitoring:` block as SageMaker Model Monitor, CloudWatch and SNS, and what
`mlplat top` reads (`usage`).

- capture → the endpoint config's DataCaptureConfig (serving.py: a change is a new config, swapped in blue/green)
- drift   → `aws.monitoring_baseline`: the baseline dataset, and the statistics.json / constraints.json SageMaker's
            analyzer compares captured requests with (computed here from the dataset, in the prebuilt container's
            schema), plus a record preprocessor mapping each captured request's `instances` to the baseline's
            features, all in S3; `aws.data_quality_job_definition` (the analyzer image, that baseline, the
            endpoint's captured data); `aws.monitoring_schedule` running it hourly or daily
- alerts  → `aws.alert_topic` (an SNS topic, e-mail and http(s) subscriptions) and one `aws.metric_alarm` per
            checked feature on the schedule's `feature_baseline_drift_<feature>` metric, notifying the topic

The drift distance SageMaker computes for a numerical feature is the L-infinity distance of the baseline's and the
captured data's distributions (the Kolmogorov-Smirnov statistic; `comparison_method: Simple`), so only `metric: ks`
maps to it (the target's `check` refuses the others).
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlplat_plugins.aws.base import ADDRESS_TAG, TOKEN_TAG, AwsProvider, tag_value
from mlplat_plugins.aws.compute import SAGEMAKER_NAME
from mlplat_plugins.aws.sdk import AwsApiError
from provisioner import cloud
from provisioner.cloud import content_name, operation_id, or_existing, unless_missing
from provisioner.errors import MlplatError, RetryableError
from provisioner.operations import StepContext
from provisioner.progress import report
from provisioner.provider import Created, Observed

if TYPE_CHECKING:
    from mlplat_plugins.aws.target import AwsTarget
    from provisioner.monitoring import Usage
    from provisioner.state.base import ResourceRecord

#: S3 user metadata naming the create (or update) that wrote an object: the engine's token
TOKEN_METADATA = "mlplat-token"
#: where Model Monitor publishes a data-quality job's metrics (dimensions Endpoint, MonitoringSchedule)
DATA_METRICS_NAMESPACE = "aws/sagemaker/Endpoints/data-metrics"
#: cron expressions CreateMonitoringSchedule documents for hourly and daily runs
SCHEDULES = {"hourly": "cron(0 * ? * * *)", "daily": "cron(0 0 ? * * *)"}
#: KLL sketch parameters of the prebuilt container's statistics.json
KLL_K, KLL_C = 2048, 0.64


# -- the baseline: statistics.json, constraints.json and the record preprocessor -----------------------------------

def read_baseline(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and rows of a baseline dataset: a CSV file with a header row, or JSON lines (one object a row)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise MlplatError(f"cannot read the drift baseline {path}: {err}") from None
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        columns: list[str] = []
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise MlplatError(f"{path}:{number} is not a JSON object (the baseline is JSON lines)") from None
            if not isinstance(row, dict):
                raise MlplatError(f"{path}:{number} is not a JSON object (the baseline is JSON lines)")
            columns += [k for k in row if k not in columns]
            rows.append(row)
        return columns, rows
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if not header:
        raise MlplatError(f"the drift baseline {path} is empty", hint="give a CSV file with a header row")
    return header, [dict(zip(header, (_cell(v) for v in row), strict=False)) for row in reader if row]


def _cell(text: str) -> Any:
    if text.strip() == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _inferred_type(values: list[Any]) -> str:
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "Integral"
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "Fractional"
    return "String" if values else "Unknown"


def kll_levels(values: list[float], k: int = KLL_K, c: float = KLL_C) -> list[list[float]]:
    """A KLL sketch of `values` (level h items weigh 2**h): level capacities k·c^(H-1-h), a full level compacted by
    keeping every other sorted item (alternating offsets instead of a coin, so the same data gives the same sketch).
    Up to k values it is all of them, exactly."""
    levels: list[list[float]] = [list(values)]
    flips = 0
    while True:
        height = len(levels)
        full = next((h for h in range(height) if len(levels[h]) > max(2, int(k * c ** (height - 1 - h)))), None)
        if full is None:
            return levels
        items = sorted(levels[full])
        kept = [items.pop()] if len(items) % 2 else []
        if full + 1 == height:
            levels.append([])
        levels[full + 1].extend(items[flips % 2::2])
        levels[full] = kept
        flips += 1


def _buckets(values: list[float], count: int = 10) -> list[dict[str, float]]:
    """The prebuilt container's materialized distribution: 10 equal-width buckets from min to max."""
    low, high = min(values), max(values)
    if low == high:
        return [{"lower_bound": low, "upper_bound": high, "count": float(len(values))}]
    width = (high - low) / count
    counts = [0] * count
    for v in values:
        counts[min(int((v - low) / width), count - 1)] += 1
    return [{"lower_bound": low + i * width, "upper_bound": low + (i + 1) * width, "count": float(n)}
            for i, n in enumerate(counts)]


def baseline_documents(columns: list[str], rows: list[dict[str, Any]], features: list[str],
                       threshold: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """(statistics.json, constraints.json) of the baseline's `features`, in the schema of SageMaker's prebuilt
    Model Monitor container; the distribution comparison is the L-infinity (KS) distance against `threshold`."""
    stats_features, constraint_features = [], []
    for name in features:
        present = [r.get(name) for r in rows if r.get(name) is not None]
        common = {"num_present": len(present), "num_missing": len(rows) - len(present)}
        kind = _inferred_type(present)
        completeness = len(present) / len(rows) if rows else 0.0
        if kind in ("Integral", "Fractional"):
            numbers = [float(v) for v in present]
            mean = sum(numbers) / len(numbers)
            stats_features.append({"name": name, "inferred_type": kind, "numerical_statistics": {
                "common": common, "mean": mean, "sum": sum(numbers),
                "std_dev": math.sqrt(sum((v - mean) ** 2 for v in numbers) / len(numbers)),
                "min": min(numbers), "max": max(numbers),
                "distribution": {"kll": {"buckets": _buckets(numbers), "sketch": {
                    "parameters": {"c": KLL_C, "k": float(KLL_K)}, "data": kll_levels(numbers)}}}}})
            constraint_features.append({"name": name, "inferred_type": kind, "completeness": completeness,
                                        "num_constraints": {"is_non_negative": min(numbers) >= 0}})
        else:
            counts: dict[str, int] = {}
            for v in present:
                counts[str(v)] = counts.get(str(v), 0) + 1
            stats_features.append({"name": name, "inferred_type": kind, "string_statistics": {
                "common": common, "distinct_count": float(len(counts)),
                "distribution": {"categorical": {"buckets": [{"value": v, "count": float(n)}
                                                             for v, n in sorted(counts.items())]}}}})
            constraint: dict[str, Any] = {"name": name, "inferred_type": kind, "completeness": completeness}
            if len(counts) <= 20:  # "observed values, for small cardinality"
                constraint["string_constraints"] = {"domains": sorted(counts)}
            constraint_features.append(constraint)
    statistics = {"version": 0.0, "dataset": {"item_count": float(len(rows))}, "features": stats_features}
    constraints = {"version": 0.0, "features": constraint_features, "monitoring_config": {
        "evaluate_constraints": "Enabled", "emit_metrics": "Enabled",
        "datatype_check_threshold": 1.0, "domain_content_threshold": 1.0,
        "distribution_constraints": {"perform_comparison": "Enabled", "comparison_threshold": threshold,
                                     "comparison_method": "Simple", "categorical_comparison_threshold": threshold,
                                     "categorical_drift_method": "LInfinity"}}}
    return statistics, constraints


PREPROCESSOR = '''"""Model Monitor record preprocessor written by mlplat: each captured request {"instances": [...]}
becomes one record per instance, named by the baseline's columns, keeping the checked features."""
import base64
import json

COLUMNS = %(columns)s
FEATURES = %(features)s


def preprocess_handler(inference_record, logger=None):
    endpoint_input = inference_record.endpoint_input
    data = endpoint_input.data
    if getattr(endpoint_input, "encoding", "") == "BASE64":
        data = base64.b64decode(data).decode("utf-8")
    try:
        body = json.loads(data)
    except ValueError:
        return []
    rows = body.get("instances", []) if isinstance(body, dict) else body
    records = []
    for row in rows if isinstance(rows, list) else []:
        named = row if isinstance(row, dict) else dict(zip(COLUMNS, row)) if isinstance(row, list) else None
        if named is not None:
            records.append({name: named.get(name) for name in FEATURES})
    return records
'''


def preprocessor_source(columns: list[str], features: list[str]) -> str:
    return PREPROCESSOR % {"columns": json.dumps(columns), "features": json.dumps(features)}


class MonitoringBaseline(AwsProvider):
    """The drift baseline in S3 under `prefix`: the dataset, statistics.json, constraints.json and preprocessor.py,
    each carrying the dataset's sha256 in its metadata. `read` reports the features and threshold constraints.json
    holds, so an edited file shows as drift, and the sha256 as "incomplete" when one of the four is missing.

    A new bucket or prefix is a new baseline made before the old one is deleted (the job definition moves to it
    first); a new dataset format writes the dataset under its new name and deletes the old one.

    Import ID: `bucket/prefix`."""

    replace_mode = "create_before_destroy"
    force_new = frozenset({"bucket", "prefix"})
    #: the dataset's local path: only this machine knows it
    write_only = frozenset({"source"})

    @staticmethod
    def keys(inputs: dict[str, Any]) -> dict[str, str]:
        prefix = inputs["prefix"]
        return {"dataset": f"{prefix}/dataset.{inputs['format']}", "statistics": f"{prefix}/statistics.json",
                "constraints": f"{prefix}/constraints.json", "preprocessor": f"{prefix}/preprocessor.py"}

    def _outputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {f"{k}_uri": f"s3://{inputs['bucket']}/{key}" for k, key in self.keys(inputs).items()}

    def _put(self, inputs: dict[str, Any], ctx: StepContext) -> None:
        source = Path(inputs["source"])
        columns, rows = read_baseline(source)
        missing = [f for f in inputs["features"] if f not in columns]
        if missing:
            raise MlplatError(f"drift features {', '.join(missing)} are not columns of {source}")
        statistics, constraints = baseline_documents(columns, rows, inputs["features"], inputs["threshold"])
        bodies: dict[str, tuple[bytes, str]] = {
            "dataset": (source.read_bytes(), "text/csv" if inputs["format"] == "csv" else "application/jsonlines"),
            "statistics": (json.dumps(statistics, indent=1).encode(), "application/json"),
            "constraints": (json.dumps(constraints, indent=1).encode(), "application/json"),
            "preprocessor": (preprocessor_source(columns, inputs["features"]).encode(), "text/x-python")}
        metadata = {"sha256": inputs["sha256"], **({TOKEN_METADATA: ctx.token} if ctx.token else {})}
        for part, key in self.keys(inputs).items():
            body, content_type = bodies[part]
            try:
                self.aws.s3.put_object(Bucket=inputs["bucket"], Key=key, Body=body, Metadata=metadata,
                                       ContentType=content_type, ServerSideEncryption="AES256")
            except AwsApiError as err:
                if err.code == "NoSuchBucket":
                    raise MlplatError(f"S3 bucket {inputs['bucket']} does not exist",
                                      hint="create it or set targets.<aws>.bucket to one you own") from None
                raise

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        self._put(inputs, ctx)
        return Created(f"{inputs['bucket']}/{inputs['prefix']}", self._outputs(inputs))

    def _head(self, inputs: dict[str, Any], key: str) -> dict[str, Any] | None:
        return unless_missing(lambda: self.aws.s3.head_object(Bucket=inputs["bucket"], Key=key))

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        keys = self.keys(inputs)
        dataset = self._head(inputs, keys["dataset"])
        if dataset is None:
            return None
        sha256 = dataset.get("Metadata", {}).get("sha256", "unknown")
        heads = [self._head(inputs, keys[part]) for part in ("statistics", "preprocessor")]
        constraints = unless_missing(lambda: self.aws.s3.get_object(Bucket=inputs["bucket"], Key=keys["constraints"]))
        observed = dict(inputs)
        if constraints is None or any(h is None or h.get("Metadata", {}).get("sha256") != sha256 for h in heads):
            observed["sha256"] = "incomplete"
            return Observed(observed, self._outputs(inputs))
        try:
            document = json.loads(constraints["Body"].read())
            observed.update(sha256=sha256, features=[f["name"] for f in document["features"]],
                            threshold=document["monitoring_config"]["distribution_constraints"]["comparison_threshold"])
        except (ValueError, KeyError, TypeError):
            observed["sha256"] = "unreadable constraints.json"
        return Observed(observed, self._outputs(inputs))

    def import_(self, address: str, id: str, inputs: dict[str, Any]) -> Observed | None:
        bucket, _, prefix = id.partition("/")
        return self.read(id, {**inputs, "bucket": bucket, "prefix": prefix}) if bucket and prefix else None

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        self._put(desired, ctx)
        old = self.keys(prior)["dataset"] if prior.get("format") else None
        if old is not None and old != self.keys(desired)["dataset"]:
            self.aws.s3.delete_object(Bucket=desired["bucket"], Key=old)
        return self._outputs(desired)

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        id = f"{inputs['bucket']}/{inputs['prefix']}"
        seen = self.read(id, inputs) if id not in ctx.exclude else None
        if seen is None or seen.inputs["sha256"] != inputs["sha256"]:
            return None  # (re)written by the next create: putting the same keys again is idempotent
        head = self._head(inputs, self.keys(inputs)["dataset"]) or {}
        if ctx.token and head.get("Metadata", {}).get(TOKEN_METADATA) != ctx.token:
            return None
        return Created(id, self._outputs(inputs))

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        for key in self.keys(inputs).values():
            self.aws.s3.delete_object(Bucket=inputs["bucket"], Key=key)


# -- SageMaker Model Monitor ---------------------------------------------------------------------------------------

class DataQualityJobDefinition(AwsProvider):
    """What each scheduled run does: the analyzer image reads the endpoint's captured data through the record
    preprocessor, compares it with the baseline and writes its report to `output_uri` (and CloudWatch metrics).
    Job definitions are immutable: a change is a new definition (content-hashed name), the schedule moves to it,
    then the old one is deleted.

    Import ID: the definition's name."""

    replace_mode = "create_before_destroy"
    force_new = frozenset({"base_name", "endpoint", "image", "role_arn", "constraints_uri", "statistics_uri",
                           "preprocessor_uri", "output_uri", "instance_type", "instance_count", "volume_gb",
                           "max_runtime_s"})
    import_id = SAGEMAKER_NAME

    @staticmethod
    def name_of(inputs: dict[str, Any]) -> str:
        return content_name(inputs["base_name"], inputs)

    def _describe(self, name: str) -> dict[str, Any] | None:
        return unless_missing(lambda: self.aws.sagemaker.describe_data_quality_job_definition(JobDefinitionName=name))

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        name = self.name_of(inputs)
        request = {
            "JobDefinitionName": name, "RoleArn": inputs["role_arn"], "Tags": self.tags(address, ctx),
            "DataQualityBaselineConfig": {"ConstraintsResource": {"S3Uri": inputs["constraints_uri"]},
                                          "StatisticsResource": {"S3Uri": inputs["statistics_uri"]}},
            "DataQualityAppSpecification": {"ImageUri": inputs["image"],
                                            "RecordPreprocessorSourceUri": inputs["preprocessor_uri"],
                                            "Environment": {"publish_cloudwatch_metrics": "Enabled"}},
            "DataQualityJobInput": {"EndpointInput": {"EndpointName": inputs["endpoint"],
                                                      "LocalPath": "/opt/ml/processing/input/endpoint",
                                                      "S3InputMode": "File",
                                                      "S3DataDistributionType": "FullyReplicated"}},
            "DataQualityJobOutputConfig": {"MonitoringOutputs": [{"S3Output": {
                "S3Uri": inputs["output_uri"], "LocalPath": "/opt/ml/processing/output", "S3UploadMode": "EndOfJob"}}]},
            "JobResources": {"ClusterConfig": {"InstanceCount": inputs["instance_count"],
                                               "InstanceType": inputs["instance_type"],
                                               "VolumeSizeInGB": inputs["volume_gb"]}},
            "StoppingCondition": {"MaxRuntimeInSeconds": inputs["max_runtime_s"]},
        }
        arn = or_existing(lambda: self.aws.sagemaker.create_data_quality_job_definition(**request)["JobDefinitionArn"],
                          lambda: self._adopt(name, ctx))
        return Created(name, {"name": name, "arn": arn})

    def _adopt(self, name: str, ctx: StepContext) -> str:
        seen = self.find_named(name, ctx, lambda: self._describe(name), lambda d: d["JobDefinitionArn"])
        if seen is None:
            raise MlplatError(f"data-quality job definition {name} exists and was not made by this apply",
                              hint="delete it, or rename the endpoint")
        return str(seen["JobDefinitionArn"])

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        job = self._describe(id)
        if job is None:
            return None
        baseline = job.get("DataQualityBaselineConfig") or {}
        app = job.get("DataQualityAppSpecification") or {}
        cluster = (job.get("JobResources") or {}).get("ClusterConfig") or {}
        outputs = (job.get("DataQualityJobOutputConfig") or {}).get("MonitoringOutputs") or [{}]
        observed = {
            "base_name": inputs["base_name"], "role_arn": job.get("RoleArn"),
            "endpoint": ((job.get("DataQualityJobInput") or {}).get("EndpointInput") or {}).get("EndpointName"),
            "image": app.get("ImageUri"), "preprocessor_uri": app.get("RecordPreprocessorSourceUri"),
            "constraints_uri": (baseline.get("ConstraintsResource") or {}).get("S3Uri"),
            "statistics_uri": (baseline.get("StatisticsResource") or {}).get("S3Uri"),
            "output_uri": (outputs[0].get("S3Output") or {}).get("S3Uri"),
            "instance_type": cluster.get("InstanceType"), "instance_count": cluster.get("InstanceCount"),
            "volume_gb": cluster.get("VolumeSizeInGB"),
            "max_runtime_s": (job.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds"),
        }
        return Observed(observed, {"name": id, "arn": job["JobDefinitionArn"]})

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        name = self.name_of(inputs)
        seen = self.find_named(name, ctx, lambda: self._describe(name), lambda d: d["JobDefinitionArn"])
        return Created(name, {"name": name, "arn": seen["JobDefinitionArn"]}) if seen is not None else None

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        unless_missing(lambda: self.aws.sagemaker.delete_data_quality_job_definition(JobDefinitionName=id))


class MonitoringSchedule(AwsProvider):
    """Runs the data-quality job definition on a cron. Creating and updating it is an operation: the schedule is
    Pending until SageMaker has scheduled it (and refuses an update or delete meanwhile), so each is checkpointed
    and waited on; a new job definition or cron is UpdateMonitoringSchedule, in place.

    Import ID: the schedule's name."""

    force_new = frozenset({"name"})
    timeouts = {"create": 900.0, "update": 900.0, "delete": 900.0}
    import_id = SAGEMAKER_NAME

    def _describe(self, name: str) -> dict[str, Any] | None:
        return unless_missing(lambda: self.aws.sagemaker.describe_monitoring_schedule(MonitoringScheduleName=name))

    @staticmethod
    def _config(inputs: dict[str, Any]) -> dict[str, Any]:
        return {"ScheduleConfig": {"ScheduleExpression": inputs["cron"]},
                "MonitoringJobDefinitionName": inputs["job_definition"], "MonitoringType": "DataQuality"}

    def _settled(self, ctx: StepContext, name: str, phase: str) -> dict[str, Any]:
        return cloud.wait_for_status(ctx, lambda: self._describe(name), f"monitoring schedule {name}", phase,
                                     ready=("Scheduled", "Stopped"), failed=("Failed",),
                                     status_of=lambda s: s["MonitoringScheduleStatus"],
                                     reason_of=lambda s: s.get("FailureReason"), **self.intervals)

    @staticmethod
    def _observed(schedule: dict[str, Any]) -> dict[str, Any]:
        config = schedule.get("MonitoringScheduleConfig") or {}
        return {"name": schedule["MonitoringScheduleName"], "endpoint": schedule.get("EndpointName"),
                "job_definition": config.get("MonitoringJobDefinitionName"),
                "cron": (config.get("ScheduleConfig") or {}).get("ScheduleExpression")}

    @staticmethod
    def _outputs(schedule: dict[str, Any]) -> dict[str, Any]:
        return {"name": schedule["MonitoringScheduleName"], "arn": schedule["MonitoringScheduleArn"]}

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        name = inputs["name"]
        if ctx.operation is None:
            or_existing(lambda: self.aws.sagemaker.create_monitoring_schedule(
                MonitoringScheduleName=name, MonitoringScheduleConfig=self._config(inputs),
                Tags=self.tags(address, ctx)), lambda: self._adopt(name, ctx))
            ctx.checkpoint(operation_id("CreateMonitoringSchedule", name))
        schedule = self._settled(ctx, name, "Pending")
        if any(self._observed(schedule)[k] != inputs[k] for k in ("job_definition", "cron")):
            return Created(name, self.update(name, self._observed(schedule), inputs, ctx))  # adopted: converge
        return Created(name, self._outputs(schedule))

    def _adopt(self, name: str, ctx: StepContext) -> None:
        if self.find_named(name, ctx, lambda: self._describe(name), lambda s: s["MonitoringScheduleArn"]) is None:
            raise MlplatError(f"monitoring schedule {name} exists and was not made by this apply",
                              hint="delete it (aws sagemaker delete-monitoring-schedule), or rename the endpoint")
        report(f"monitoring schedule {name} exists already (a retried create): adopting it")

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        schedule = self._describe(id)
        if schedule is None:
            return None
        return Observed(self._observed(schedule), self._outputs(schedule))

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        schedule = self._settled(ctx, id, "Pending")  # SageMaker refuses to update a Pending schedule
        if any(self._observed(schedule)[k] != desired[k] for k in ("job_definition", "cron")):
            self.aws.sagemaker.update_monitoring_schedule(MonitoringScheduleName=id,
                                                          MonitoringScheduleConfig=self._config(desired))
            ctx.checkpoint(operation_id("UpdateMonitoringSchedule", id, desired["job_definition"]))
            schedule = self._settled(ctx, id, "Updating")
        return self._outputs(schedule)

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        name = inputs["name"]
        seen = self.find_named(name, ctx, lambda: self._describe(name), lambda s: s["MonitoringScheduleArn"])
        return Created(name, self._outputs(seen)) if seen is not None else None

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        if cloud.operation_of(ctx, "DeleteMonitoringSchedule") is None:
            seen = self._describe(id)
            if seen is None:
                return
            if seen["MonitoringScheduleStatus"] == "Pending":  # SageMaker refuses to delete it before it settles
                self._settled(ctx, id, "Pending")
        self.delete_and_wait(ctx, "DeleteMonitoringSchedule", id,
                             lambda: self.aws.sagemaker.delete_monitoring_schedule(MonitoringScheduleName=id),
                             lambda: self._describe(id), f"monitoring schedule {id}")


# -- alerts: SNS and CloudWatch -------------------------------------------------------------------------------

class AlertTopic(AwsProvider):
    """An SNS topic and its subscriptions (`{"protocol": "email" | "https" | "http", "endpoint": ...}`). E-mail and
    http(s) subscribers confirm from the message SNS sends them; until then a subscription is "PendingConfirmation"
    (the `pending` output counts them) and SNS cannot remove it (it lapses after three days).

    Import ID: the topic's ARN."""

    force_new = frozenset({"name"})

    def _arn_of(self, name: str) -> str | None:
        for topic in self.aws.sns.paginate("list_topics", "Topics"):
            if topic["TopicArn"].rsplit(":", 1)[-1] == name:
                return str(topic["TopicArn"])
        return None

    def _tags(self, arn: str) -> list[dict[str, str]]:
        return self.aws.sns.list_tags_for_resource(ResourceArn=arn).get("Tags", [])

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        name, tags = inputs["name"], self.tags(address, ctx)
        try:
            arn = self.aws.sns.create_topic(Name=name, Tags=tags)["TopicArn"]
        except AwsApiError as err:  # the name exists with other tags: ours from an earlier create, or a stranger's
            arn = self._arn_of(name) if "already exists" in err.cloud_message else None
            if arn is None or tag_value(self._tags(arn), ADDRESS_TAG) != address:
                raise MlplatError(f"SNS topic {name} exists and was not made by mlplat for {address}",
                                  hint="delete or rename it") from err
            self.aws.sns.tag_resource(ResourceArn=arn, Tags=tags)
        for sub in inputs["subscriptions"]:
            self.aws.sns.subscribe(TopicArn=arn, Protocol=sub["protocol"], Endpoint=sub["endpoint"])
        return Created(arn, self._outputs(arn))

    def _subscriptions(self, arn: str) -> list[dict[str, Any]]:
        return self.aws.sns.paginate("list_subscriptions_by_topic", "Subscriptions", TopicArn=arn)

    def _outputs(self, arn: str, subscriptions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        subscriptions = self._subscriptions(arn) if subscriptions is None else subscriptions
        return {"arn": arn, "name": arn.rsplit(":", 1)[-1],
                "pending": sum(s["SubscriptionArn"] == "PendingConfirmation" for s in subscriptions)}

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        if unless_missing(lambda: self.aws.sns.get_topic_attributes(TopicArn=id)) is None:
            return None
        subscriptions = self._subscriptions(id)
        observed = {"name": id.rsplit(":", 1)[-1],
                    "subscriptions": sorted(({"protocol": s["Protocol"], "endpoint": s["Endpoint"]}
                                             for s in subscriptions), key=lambda s: (s["protocol"], s["endpoint"]))}
        return Observed(observed, self._outputs(id, subscriptions))

    def import_(self, address: str, id: str, inputs: dict[str, Any]) -> Observed | None:
        return self.read(id, inputs) if id.startswith("arn:") and ":sns:" in id else None

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        live = self._subscriptions(id)
        wanted = {(s["protocol"], s["endpoint"]) for s in desired["subscriptions"]}
        have = {(s["Protocol"], s["Endpoint"]) for s in live}
        for protocol, endpoint in sorted(wanted - have):
            self.aws.sns.subscribe(TopicArn=id, Protocol=protocol, Endpoint=endpoint)
        for sub in live:
            if (sub["Protocol"], sub["Endpoint"]) in wanted:
                continue
            if sub["SubscriptionArn"] == "PendingConfirmation":
                report(f"{sub['Protocol']} subscription of {sub['Endpoint']} to {id} is still pending confirmation: "
                       "SNS cannot remove it, and deletes it unconfirmed after three days")
            else:
                unless_missing(lambda arn=sub["SubscriptionArn"]: self.aws.sns.unsubscribe(SubscriptionArn=arn))
        return self._outputs(id)

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        name = inputs["name"]
        arn = cloud.find_own(name, ctx, lambda: self._arn_of(name), lambda a: tag_value(self._tags(a), TOKEN_TAG))
        if arn is None or arn in ctx.exclude:
            return None
        return Created(arn, self._outputs(arn))

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        self.aws.sns.delete_topic(TopicArn=id)  # deletes its subscriptions; a topic already gone is no error


class MetricAlarm(AwsProvider):
    """A CloudWatch alarm on one metric (PutMetricAlarm creates and replaces it whole, so an update is the same
    call); its actions notify the alert topic.

    Import ID: the alarm's name."""

    force_new = frozenset({"name"})

    def _describe(self, name: str) -> dict[str, Any] | None:
        alarms = self.aws.cloudwatch.describe_alarms(AlarmNames=[name], AlarmTypes=["MetricAlarm"])
        return next(iter(alarms.get("MetricAlarms", [])), None)

    def _put(self, inputs: dict[str, Any], tags: list[dict[str, str]] | None) -> dict[str, Any]:
        args: dict[str, Any] = {
            "AlarmName": inputs["name"], "AlarmDescription": inputs["description"], "ActionsEnabled": True,
            "AlarmActions": list(inputs["actions"]), "Namespace": inputs["namespace"], "MetricName": inputs["metric"],
            "Dimensions": [{"Name": k, "Value": v} for k, v in sorted(inputs["dimensions"].items())],
            "Statistic": inputs["statistic"], "Period": inputs["period"], "EvaluationPeriods": 1,
            "DatapointsToAlarm": 1, "Threshold": float(inputs["threshold"]),
            "ComparisonOperator": inputs["comparison"], "TreatMissingData": inputs["treat_missing"]}
        if tags:  # CloudWatch ignores Tags when the alarm exists
            args["Tags"] = tags
        self.aws.cloudwatch.put_metric_alarm(**args)
        alarm = self._describe(inputs["name"])
        if alarm is None:
            raise RetryableError(f"alarm {inputs['name']} is not listed yet after PutMetricAlarm")
        return alarm

    @staticmethod
    def _outputs(alarm: dict[str, Any]) -> dict[str, Any]:
        return {"name": alarm["AlarmName"], "arn": alarm["AlarmArn"]}

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        existing = self._describe(inputs["name"])
        if existing is not None:  # PutMetricAlarm would overwrite it: only ours (a retried create)
            tags = self.aws.cloudwatch.list_tags_for_resource(ResourceARN=existing["AlarmArn"]).get("Tags", [])
            if tag_value(tags, ADDRESS_TAG) != address:
                raise MlplatError(f"CloudWatch alarm {inputs['name']} exists and was not made by mlplat for {address}",
                                  hint="delete or rename it")
        alarm = self._put(inputs, self.tags(address, ctx))
        return Created(alarm["AlarmName"], self._outputs(alarm))

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        alarm = self._describe(id)
        if alarm is None:
            return None
        observed = {
            "name": alarm["AlarmName"], "description": alarm.get("AlarmDescription", ""),
            "namespace": alarm.get("Namespace"), "metric": alarm.get("MetricName"),
            "dimensions": {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])},
            "statistic": alarm.get("Statistic"), "period": alarm.get("Period"),
            "threshold": alarm.get("Threshold"), "comparison": alarm.get("ComparisonOperator"),
            "actions": list(alarm.get("AlarmActions", [])), "treat_missing": alarm.get("TreatMissingData")}
        return Observed(observed, self._outputs(alarm))

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        return self._outputs(self._put(desired, None))

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        name = inputs["name"]

        def token_of(alarm: dict[str, Any]) -> str | None:
            tags = self.aws.cloudwatch.list_tags_for_resource(ResourceARN=alarm["AlarmArn"]).get("Tags", [])
            return tag_value(tags, TOKEN_TAG)

        alarm = cloud.find_own(name, ctx, lambda: self._describe(name), token_of)
        return Created(name, self._outputs(alarm)) if alarm is not None else None

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        unless_missing(lambda: self.aws.cloudwatch.delete_alarms(AlarmNames=[id]))


# -- `mlplat top`: CloudWatch ----------------------------------------------------------------------------------

#: per endpoint variant: query id prefix → (namespace, metric, statistic)
VARIANT_METRICS = {
    "inv": ("AWS/SageMaker", "Invocations", "Sum"),
    "err5": ("AWS/SageMaker", "Invocation5XXErrors", "Sum"),
    "err4": ("AWS/SageMaker", "Invocation4XXErrors", "Sum"),
    "lat": ("AWS/SageMaker", "ModelLatency", "p95"),  # microseconds
    "gpu": ("/aws/sagemaker/Endpoints", "GPUUtilization", "Average"),  # percent, summed over the instance's GPUs
}


def _gpus_per_instance() -> dict[str, int]:
    """SageMaker instance type → GPUs, from the aws catalog."""
    from provisioner import catalog

    gpus = {}
    for accelerator in catalog.accelerators_offered("aws"):
        for offering in catalog.offerings("aws", accelerator):
            gpus[f"ml.{offering.instance_type}"] = offering.gpus
    return gpus


def usage(target: AwsTarget, records: list[ResourceRecord], window_s: float) -> Usage:
    """Per endpoint variant: requests/s (Invocations), error rate ((Invocation5XXErrors + Invocation4XXErrors) /
    Invocations), p95 ModelLatency (µs → ms) from AWS/SageMaker, and GPUUtilization from /aws/sagemaker/Endpoints
    (divided by the instance's GPUs: SageMaker sums it over them), over the last `window_s` seconds (one period);
    per HyperPod pool the nodes SageMaker reports. What cannot be read becomes a note, never an error."""
    from provisioner.monitoring import PathUsage, PoolUsage, Usage

    result = Usage()
    name = target.context.target_name
    period = max(60, math.ceil(window_s / 60.0) * 60)
    gpus = _gpus_per_instance()
    configs = {r.address.split(".", 1)[0]: r for r in records if r.kind == "aws.endpoint_config"}
    queries, paths = [], []
    for record in records:
        if record.kind != "aws.endpoint":
            continue
        component = record.address.split(".", 1)[0]
        config = configs.get(component)
        variants = ([*config.inputs.get("variants", []), *config.inputs.get("shadow_variants", [])]
                    if config else [{"name": v} for v in record.inputs.get("weights", {})])
        for variant in variants:
            index = len(paths)
            paths.append((component, record.id, variant["name"], gpus.get(variant.get("instance_type") or "")))
            for prefix, (namespace, metric, stat) in VARIANT_METRICS.items():
                dimensions = [{"Name": "EndpointName", "Value": record.id},
                              {"Name": "VariantName", "Value": variant["name"]}]
                queries.append({"Id": f"{prefix}{index}", "ReturnData": True, "MetricStat": {
                    "Metric": {"Namespace": namespace, "MetricName": metric, "Dimensions": dimensions},
                    "Period": period, "Stat": stat}})
    values: dict[str, list[float]] = {}
    if queries:
        end = time.time()
        try:
            for start in range(0, len(queries), 500):  # GetMetricData takes 500 queries a call
                pages = _metric_data(target, queries[start:start + 500], end - period, end)
                values.update(pages)
        except (AwsApiError, RetryableError, MlplatError) as err:
            result.notes.append(f"CloudWatch GetMetricData failed: {err}")
            values = {}
    source = f"CloudWatch ({target.settings.region})"
    for index, (component, endpoint, variant, gpu_count) in enumerate(paths):
        got = {prefix: values.get(f"{prefix}{index}", []) for prefix in VARIANT_METRICS}
        path = PathUsage(endpoint=component, path=variant, target=name, source=source)
        if not any(got.values()):
            result.notes.append(f"{component}/{variant} (SageMaker endpoint {endpoint}): no datapoints in the window "
                                f"({period} s)")
        invocations = sum(got["inv"]) if got["inv"] else None
        if invocations is not None:
            path.requests_per_s = invocations / period
            errors = sum(got["err5"]) + sum(got["err4"])
            path.error_rate = errors / invocations if invocations else None
        if got["lat"]:
            path.p95_ms = max(got["lat"]) / 1000.0
        if got["gpu"]:
            utilisation = sum(got["gpu"]) / len(got["gpu"])
            path.gpu_util_percent = utilisation / gpu_count if gpu_count else utilisation
        result.endpoints.append(path)
    result.pools.extend(_pools(target, records, gpus, result.notes, PoolUsage))
    return result


def _metric_data(target: AwsTarget, queries: list[dict[str, Any]], start: float, end: float
                 ) -> dict[str, list[float]]:
    from datetime import UTC, datetime

    found: dict[str, list[float]] = {}
    args: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": datetime.fromtimestamp(start, UTC),
                            "EndTime": datetime.fromtimestamp(end, UTC), "ScanBy": "TimestampDescending"}
    while True:
        page = target.clients().cloudwatch.get_metric_data(**args)
        for result in page.get("MetricDataResults", []):
            found.setdefault(result["Id"], []).extend(float(v) for v in result.get("Values", []))
        if not page.get("NextToken"):
            return found
        args["NextToken"] = page["NextToken"]


def _pools(target: AwsTarget, records: list[ResourceRecord], gpus: dict[str, int], notes: list[str],
           pool_usage: Any) -> list[Any]:
    """HyperPod instance groups: the nodes DescribeCluster reports and their GPUs. HyperPod (Slurm) publishes no GPU
    utilisation to CloudWatch, so that is a note."""
    pools = []
    for record in records:
        if record.kind != "aws.hyperpod_cluster":
            continue
        component = record.address.split(".", 1)[0]
        try:
            cluster = target.clients().sagemaker.describe_cluster(ClusterName=record.id)
        except (AwsApiError, RetryableError) as err:
            notes.append(f"{component}: DescribeCluster {record.id} failed: {err}")
            cluster = {}
        live = {g["InstanceGroupName"]: g for g in cluster.get("InstanceGroups", [])}
        for group in record.inputs.get("groups", []):
            nodes = live.get(group["name"], {}).get("CurrentCount")
            per = gpus.get(group["instance_type"])
            pools.append(pool_usage(component=component, pool=group.get("pool", group["name"]),
                                    target=target.context.target_name, nodes=nodes,
                                    gpus=nodes * per if nodes is not None and per is not None else None,
                                    source=f"SageMaker HyperPod {record.id}"))
        notes.append(f"{component}: HyperPod publishes no GPU utilisation to CloudWatch; install the HyperPod "
                     "observability add-on (DCGM exporter → Amazon Managed Prometheus) to see it")
    return pools
