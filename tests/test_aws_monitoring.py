"""Monitoring on the aws target (issue 13), end to end on the moto server: an endpoint's `monitoring:` block as
DataCaptureConfig, a Model Monitor data-quality job definition and schedule, an SNS topic and CloudWatch alarms;
capture drift in preview; destroy leaving none; `usage` from CloudWatch; the per-framework serving containers;
and the fake server's own Model Monitor calls. Every claim about what exists is checked with boto3 on the server."""

from __future__ import annotations

import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.api import Stack
from provisioner.errors import SpecError
from provisioner.operations import detached

from conftest import STACKS, AwsAccount, require_module, run_mlplat

require_module("boto3", "the aws extra is part of the test extra")

from aws_moto import confirm_all  # noqa: E402  (after the boto3 check: it imports boto3)

ENDPOINT = "vision-iris"
SCHEDULE = "vision-iris-data-quality"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
EMAILS = ["ml-oncall@example.com", "ops@example.com"]
WEBHOOK = "https://hooks.example.com/mlplat/alerts"
ANALYZER = "156813124566.dkr.ecr.us-east-1.amazonaws.com/sagemaker-model-monitor-analyzer"


def baseline_rows() -> list[list[float]]:
    """30 iris-like rows (deterministic)."""
    return [[round(4.8 + (i % 7) * 0.3, 1), round(2.9 + (i % 5) * 0.2, 1), round(1.2 + (i % 9) * 0.6, 1),
             round(0.1 + (i % 6) * 0.4, 1)] for i in range(30)]


class MonitoredStack:
    """stacks/aws.yaml without the training cluster, its endpoint monitored, pointed at the moto server."""

    def __init__(self, directory: Path, account: AwsAccount) -> None:
        self.dir, self.account = directory, account
        self.path = directory / "aws.yaml"
        shutil.copytree(STACKS / "models", directory / "models")
        with (directory / "baseline.csv").open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(FEATURES)
            writer.writerows(baseline_rows())
        self.doc = yaml.safe_load((STACKS / "aws.yaml").read_text())
        del self.doc["clusters"]
        settings = self.doc["targets"]["aws"]
        settings.update(account.settings(bucket=settings["bucket"]))
        self.doc["serving"][0]["monitoring"] = {
            "capture": {"sample_percent": 20},
            "drift": {"baseline": "baseline.csv", "metric": "ks", "threshold": 0.3, "schedule": "hourly"},
            "alerts": {"emails": list(EMAILS), "webhook": WEBHOOK}}
        self.write()

    @property
    def monitoring(self) -> dict[str, Any]:
        return self.doc["serving"][0]["monitoring"]  # type: ignore[no-any-return]

    def write(self) -> MonitoredStack:
        self.path.write_text(yaml.safe_dump(self.doc, sort_keys=False))
        return self

    def cli(self, *args: str, check: bool = True) -> Any:
        return run_mlplat(*args, "-f", str(self.path), cwd=self.dir, check=check, env=self.account.env())

    def changes(self) -> dict[str, str]:
        plan = json.loads(self.cli("preview", "--json").stdout)
        return {c["address"]: c["action"] for c in plan["changes"] if c["action"] != "noop"}

    def open(self) -> Stack:
        os.environ.setdefault("MLPLAT_AWS_BUCKET", self.account.bucket)
        return Stack(self.path)

    def client(self, service: str) -> Any:
        return self.account.server.client(service)


@pytest.fixture
def monitored(tmp_path: Path, aws_account: AwsAccount) -> MonitoredStack:
    return MonitoredStack(tmp_path, aws_account)


def live_capture(sm: Any) -> tuple[str, dict[str, Any]]:
    """(the endpoint's config, that config's DataCaptureConfig)."""
    config = sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    return config, sm.describe_endpoint_config(EndpointConfigName=config).get("DataCaptureConfig", {})


def monitoring_objects(stack: MonitoredStack) -> dict[str, int]:
    """How many of each monitoring object (and endpoint config) the account holds."""
    sm, s3 = stack.client("sagemaker"), stack.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=stack.account.bucket).get("Contents", [])]
    return {"endpoint_configs": len(sm.list_endpoint_configs()["EndpointConfigs"]),
            "endpoints": len(sm.list_endpoints()["Endpoints"]),
            "job_definitions": len(sm.list_data_quality_job_definitions()["JobDefinitionSummaries"]),
            "schedules": len(sm.list_monitoring_schedules()["MonitoringScheduleSummaries"]),
            "alarms": len(stack.client("cloudwatch").describe_alarms()["MetricAlarms"]),
            "topics": len(stack.client("sns").list_topics()["Topics"]),
            "subscriptions": len(stack.client("sns").list_subscriptions()["Subscriptions"]),
            "baseline_objects": len([k for k in keys if "/monitoring/" in k])}


def test_monitoring_lifecycle_on_sagemaker(monitored: MonitoredStack) -> None:
    server, sm = monitored.account.server, monitored.client("sagemaker")
    bucket = monitored.account.bucket
    monitored.cli("apply", "--yes")

    # capture: the endpoint config's DataCaptureConfig, and the endpoint runs with it
    config, capture = live_capture(sm)
    assert capture == {"EnableCapture": True, "InitialSamplingPercentage": 20,
                       "DestinationS3Uri": f"s3://{bucket}/mlplat/capture/{ENDPOINT}",
                       "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
                       "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]}}
    summary = sm.describe_endpoint(EndpointName=ENDPOINT)["DataCaptureConfig"]
    assert (summary["CaptureStatus"], summary["CurrentSamplingPercentage"]) == ("Started", 20)

    # drift: the job definition reads the endpoint's capture against a baseline made from baseline.csv
    [summary] = sm.list_data_quality_job_definitions(EndpointName=ENDPOINT)["JobDefinitionSummaries"]
    job = sm.describe_data_quality_job_definition(JobDefinitionName=summary["MonitoringJobDefinitionName"])
    assert job["DataQualityAppSpecification"]["ImageUri"] == ANALYZER
    assert job["DataQualityJobInput"]["EndpointInput"]["EndpointName"] == ENDPOINT
    assert job["JobResources"]["ClusterConfig"] == {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge",
                                                     "VolumeSizeInGB": 20}
    assert job["RoleArn"] == "arn:aws:iam::123456789012:role/mlplat-sagemaker"
    assert job["DataQualityJobOutputConfig"]["MonitoringOutputs"][0]["S3Output"]["S3Uri"] == (
        f"s3://{bucket}/mlplat/monitoring/{ENDPOINT}/reports")
    s3 = monitored.client("s3")

    def s3_json(uri: str) -> Any:
        key = uri.removeprefix(f"s3://{bucket}/")
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    baseline = job["DataQualityBaselineConfig"]
    constraints = s3_json(baseline["ConstraintsResource"]["S3Uri"])
    assert [f["name"] for f in constraints["features"]] == FEATURES
    assert {f["inferred_type"] for f in constraints["features"]} == {"Fractional"}
    assert constraints["monitoring_config"]["distribution_constraints"]["comparison_threshold"] == 0.3
    stats = s3_json(baseline["StatisticsResource"]["S3Uri"])
    assert stats["dataset"]["item_count"] == 30
    first = stats["features"][0]["numerical_statistics"]
    column = [row[0] for row in baseline_rows()]
    assert first["mean"] == pytest.approx(statistics.fmean(column))
    assert first["std_dev"] == pytest.approx(statistics.pstdev(column))
    assert (first["min"], first["max"]) == (min(column), max(column))
    assert sum(b["count"] for b in first["distribution"]["kll"]["buckets"]) == 30
    assert sorted(first["distribution"]["kll"]["sketch"]["data"][0]) == sorted(column)
    preprocessor = job["DataQualityAppSpecification"]["RecordPreprocessorSourceUri"]
    assert s3.head_object(Bucket=bucket, Key=preprocessor.removeprefix(f"s3://{bucket}/"))["ContentLength"] > 0

    # the schedule runs that definition hourly on the endpoint
    [listed] = sm.list_monitoring_schedules(EndpointName=ENDPOINT)["MonitoringScheduleSummaries"]
    schedule = sm.describe_monitoring_schedule(MonitoringScheduleName=listed["MonitoringScheduleName"])
    assert schedule["MonitoringScheduleName"] == SCHEDULE and schedule["MonitoringScheduleStatus"] == "Scheduled"
    assert schedule["EndpointName"] == ENDPOINT and schedule["MonitoringType"] == "DataQuality"
    assert schedule["MonitoringScheduleConfig"]["ScheduleConfig"]["ScheduleExpression"] == "cron(0 * ? * * *)"
    assert schedule["MonitoringScheduleConfig"]["MonitoringJobDefinitionName"] == job["JobDefinitionName"]
    tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=schedule["MonitoringScheduleArn"])["Tags"]}
    assert tags["mlplat:address"] == "iris.monitoring_schedule.main"

    # alerts: an SNS topic the e-mails and the webhook subscribe to (pending their confirmation), and an alarm per
    # feature on the schedule's drift metric, notifying the topic
    sns = monitored.client("sns")
    [topic] = [t["TopicArn"] for t in sns.list_topics()["Topics"]]
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert sorted((s["Protocol"], s["Endpoint"]) for s in subscriptions) == [
        ("email", EMAILS[0]), ("email", EMAILS[1]), ("https", WEBHOOK)]
    assert {s["SubscriptionArn"] for s in subscriptions} == {"PendingConfirmation"}
    outputs = json.loads(monitored.cli("output", "--json").stdout)
    assert outputs["iris.alert_topic"] == topic and outputs["iris.monitoring_schedule"] == SCHEDULE
    alarms = monitored.client("cloudwatch").describe_alarms()["MetricAlarms"]
    assert sorted(a["MetricName"] for a in alarms) == sorted(f"feature_baseline_drift_{f}" for f in FEATURES)
    for alarm in alarms:
        assert alarm["Namespace"] == "aws/sagemaker/Endpoints/data-metrics"
        assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {"Endpoint": ENDPOINT,
                                                                       "MonitoringSchedule": SCHEDULE}
        assert (alarm["Threshold"], alarm["ComparisonOperator"], alarm["Period"]) == (
            0.3, "GreaterThanThreshold", 3600)
        assert alarm["AlarmActions"] == [topic] and alarm["ActionsEnabled"] is True
    assert monitored.cli("preview", "--detailed-exitcode", check=False).returncode == 0

    # recipients confirming changes nothing mlplat manages
    assert confirm_all() == 3
    assert monitored.changes() == {}

    # a new sampling rate is a new config swapped in blue/green; nothing else changes
    monitored.monitoring["capture"]["sample_percent"] = 50
    monitored.write()
    assert monitored.changes() == {"iris.endpoint_config.main": "replace", "iris.endpoint.main": "update"}
    server.clear_calls()
    monitored.cli("apply", "--yes")
    assert [server.count(a) for a in ("CreateEndpointConfig", "UpdateEndpoint", "DeleteEndpointConfig",
                                      "DeleteEndpoint", "UpdateMonitoringSchedule")] == [1, 1, 1, 0, 0]
    assert server.calls.index("UpdateEndpoint") < server.calls.index("DeleteEndpointConfig")
    new_config, capture = live_capture(sm)
    assert new_config != config and capture["InitialSamplingPercentage"] == 50
    assert monitored.changes() == {}

    # someone swaps in a config of their own with another sampling rate: preview shows it, apply puts ours back
    variants = sm.describe_endpoint_config(EndpointConfigName=new_config)["ProductionVariants"]
    sm.create_endpoint_config(EndpointConfigName="by-hand", ProductionVariants=[
        {k: v for k, v in variant.items() if k in ("VariantName", "ModelName", "InitialInstanceCount",
                                                   "InstanceType", "InitialVariantWeight")} for variant in variants],
        DataCaptureConfig={**capture, "InitialSamplingPercentage": 5})
    sm.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName="by-hand")
    preview = monitored.cli("preview", "--detailed-exitcode", check=False)
    assert preview.returncode == 2, preview.stdout
    assert "iris.endpoint.main" in preview.stdout and "by-hand" in preview.stdout, preview.stdout
    assert "sample_percent" in preview.stdout and "5" in preview.stdout, preview.stdout
    monitored.cli("apply", "--yes")
    assert live_capture(sm) == (new_config, capture)
    sm.delete_endpoint_config(EndpointConfigName="by-hand")

    # a daily check with another threshold: the schedule is updated in place, the baseline and alarms too
    monitored.monitoring["drift"].update(schedule="daily", threshold=0.25)
    monitored.write()
    changes = monitored.changes()
    assert changes == {"iris.monitoring_baseline.main": "update", "iris.monitoring_schedule.main": "update",
                       **{f"iris.metric_alarm.{f.replace('_', '-')}": "update" for f in FEATURES}}, changes
    server.clear_calls()
    monitored.cli("apply", "--yes")
    assert server.count("UpdateMonitoringSchedule") == 1 and server.count("CreateMonitoringSchedule") == 0
    schedule = sm.describe_monitoring_schedule(MonitoringScheduleName=SCHEDULE)
    assert schedule["MonitoringScheduleConfig"]["ScheduleConfig"]["ScheduleExpression"] == "cron(0 0 ? * * *)"
    assert {(a["Threshold"], a["Period"]) for a in monitored.client("cloudwatch").describe_alarms()["MetricAlarms"]
            } == {(0.25, 86400)}
    assert s3_json(baseline["ConstraintsResource"]["S3Uri"])["monitoring_config"]["distribution_constraints"][
        "comparison_threshold"] == 0.25
    assert monitored.changes() == {}

    # an alarm edited in the console is drift, put back in place
    alarm = next(a for a in monitored.client("cloudwatch").describe_alarms()["MetricAlarms"])
    monitored.client("cloudwatch").put_metric_alarm(
        AlarmName=alarm["AlarmName"], MetricName=alarm["MetricName"], Namespace=alarm["Namespace"],
        Statistic="Maximum", Dimensions=alarm["Dimensions"], Period=86400, EvaluationPeriods=1, Threshold=0.9,
        ComparisonOperator="GreaterThanThreshold", AlarmActions=alarm["AlarmActions"],
        AlarmDescription=alarm["AlarmDescription"], TreatMissingData="notBreaching")
    assert list(monitored.changes().values()) == ["update"]

    # destroy: schedule, then job definition, then endpoint; nothing of it is left
    server.clear_calls()
    monitored.cli("destroy", "--yes")
    calls = server.calls
    assert (calls.index("DeleteMonitoringSchedule") < calls.index("DeleteDataQualityJobDefinition")
            < calls.index("DeleteEndpoint")), calls
    assert monitoring_objects(monitored) == dict.fromkeys(
        ("endpoint_configs", "endpoints", "job_definitions", "schedules", "alarms", "topics", "subscriptions",
         "baseline_objects"), 0)


def test_a_changed_baseline_is_a_new_job_definition_the_schedule_moves_to(monitored: MonitoredStack) -> None:
    """Job definitions are immutable: a new output location (here: a new bucket prefix) makes a new one, the
    schedule is updated to it in place, then the old one is deleted (it could not be while in use)."""
    server, sm = monitored.account.server, monitored.client("sagemaker")
    monitored.cli("apply", "--yes")
    old = sm.describe_monitoring_schedule(MonitoringScheduleName=SCHEDULE)["MonitoringScheduleConfig"][
        "MonitoringJobDefinitionName"]
    monitored.doc["targets"]["aws"]["prefix"] = "ml/prod"
    monitored.write()
    changes = monitored.changes()
    assert changes["iris.data_quality_job_definition.main"] == "replace"
    assert changes["iris.monitoring_schedule.main"] == "update"
    server.clear_calls()
    monitored.cli("apply", "--yes")
    calls = server.calls
    assert (calls.index("CreateDataQualityJobDefinition") < calls.index("UpdateMonitoringSchedule")
            < calls.index("DeleteDataQualityJobDefinition"))
    [job] = sm.list_data_quality_job_definitions()["JobDefinitionSummaries"]
    assert job["MonitoringJobDefinitionName"] != old
    assert sm.describe_monitoring_schedule(MonitoringScheduleName=SCHEDULE)["MonitoringScheduleConfig"][
        "MonitoringJobDefinitionName"] == job["MonitoringJobDefinitionName"]
    assert monitored.changes() == {}
    monitored.cli("destroy", "--yes")
    assert monitoring_objects(monitored)["job_definitions"] == 0


def test_schedule_create_resumed_from_its_checkpoint_waits_without_creating_again(monitored: MonitoredStack
                                                                                  ) -> None:
    monitored.cli("apply", "--yes")
    server, sm = monitored.account.server, monitored.client("sagemaker")
    provider = monitored.open().provider_for("aws", "aws.monitoring_schedule")
    job = sm.describe_monitoring_schedule(MonitoringScheduleName=SCHEDULE)["MonitoringScheduleConfig"][
        "MonitoringJobDefinitionName"]
    inputs = {"name": "resumed", "job_definition": job, "endpoint": ENDPOINT, "cron": "cron(0 * ? * * *)"}

    class Crash(BaseException):
        pass

    def crash(operation: str) -> None:
        raise Crash(operation)

    with pytest.raises(Crash):
        provider.create("x.monitoring_schedule.main", inputs,
                        detached("x.monitoring_schedule.main", token="t1", on_checkpoint=crash))
    server.clear_calls()
    created = provider.create("x.monitoring_schedule.main", inputs, detached(
        "x.monitoring_schedule.main", token="t1", operation="CreateMonitoringSchedule resumed"))
    assert server.count("CreateMonitoringSchedule") == 0 and created.id == "resumed"
    found = provider.find("x.monitoring_schedule.main", inputs, detached("x", "find", token="t1"))
    assert found is not None and found.outputs == created.outputs
    assert provider.find("x.monitoring_schedule.main", inputs, detached("x", "find", token="other")) is None
    provider.delete("resumed", inputs, detached("x", "delete"))
    monitored.cli("destroy", "--yes")
    assert monitoring_objects(monitored)["schedules"] == 0


def test_monitoring_resources_forgotten_and_imported_back_plan_nothing(monitored: MonitoredStack) -> None:
    """`import_` rebuilds each monitoring resource's inputs from the cloud alone."""
    monitored.cli("apply", "--yes")
    kinds = ("aws.monitoring_baseline", "aws.data_quality_job_definition", "aws.monitoring_schedule",
             "aws.alert_topic", "aws.metric_alarm")
    stack = monitored.open()
    records = [r for r in stack.state.resources().values() if r.kind in kinds]
    assert sorted({r.kind for r in records}) == sorted(kinds)
    for record in records:
        stack.forget(record.address)
        change = stack.import_resource(record.address, record.id)
        assert change.action == "noop", (record.address, change.changed)
    stack.close()
    assert monitored.changes() == {}
    monitored.cli("destroy", "--yes")
    assert monitoring_objects(monitored)["alarms"] == 0


def test_usage_reads_cloudwatch_per_variant(monitored: MonitoredStack) -> None:
    monitored.cli("apply", "--yes")
    cloudwatch = monitored.client("cloudwatch")
    now = datetime.now(UTC) - timedelta(seconds=30)

    def put(namespace: str, metric: str, variant: str, values: list[float], counts: list[float] | None = None) -> None:
        datum: dict[str, Any] = {"MetricName": metric, "Timestamp": now, "Values": values, "Dimensions": [
            {"Name": "EndpointName", "Value": ENDPOINT}, {"Name": "VariantName", "Value": variant}]}
        if counts:
            datum["Counts"] = counts
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=[datum])

    # production: 600 requests in the window (per-minute sums, as SageMaker publishes), 6 5XX and 3 4XX errors,
    # latencies 1..100 ms (in µs); experimental (one T4 GPU): GPUUtilization 30 and 50
    put("AWS/SageMaker", "Invocations", "production", [100.0, 200.0, 300.0])
    put("AWS/SageMaker", "Invocation5XXErrors", "production", [6.0])
    put("AWS/SageMaker", "Invocation4XXErrors", "production", [3.0])
    put("AWS/SageMaker", "ModelLatency", "production", [i * 1000.0 for i in range(1, 101)])
    put("/aws/sagemaker/Endpoints", "GPUUtilization", "experimental", [30.0, 50.0])
    stack = monitored.open()
    records = list(stack.state.resources().values())
    usage = stack.targets["aws"].usage(records, 300)
    by_path = {p.path: p for p in usage.endpoints}
    assert set(by_path) == {"production", "experimental"}
    production = by_path["production"]
    assert production.endpoint == "iris" and production.target == "aws"
    assert production.requests_per_s == pytest.approx(2.0)
    assert production.error_rate == pytest.approx(9 / 600)
    assert production.p95_ms == pytest.approx(95.0)
    assert production.gpu_util_percent is None and production.source.startswith("CloudWatch")
    experimental = by_path["experimental"]
    assert experimental.requests_per_s is None and experimental.p95_ms is None
    assert experimental.gpu_util_percent == pytest.approx(40.0)
    assert usage.pools == [] and not any("production" in n for n in usage.notes)
    json.dumps(usage.to_json())

    # nothing published in the window (an empty account): a note per variant, no numbers, no error
    monitored.account.server.reset()
    quiet = stack.targets["aws"].usage(records, 300)
    assert all(p.requests_per_s is None and p.p95_ms is None for p in quiet.endpoints)
    assert sum("no datapoints in the window" in n for n in quiet.notes) == 2, quiet.notes


def test_hyperpod_pools_report_their_nodes(tmp_path: Path, aws_account: AwsAccount) -> None:
    stack_file = tmp_path / "stack.yaml"
    stack_file.write_text(yaml.safe_dump({
        "apiVersion": "mlplat/v1", "metadata": {"name": "vision"}, "target": "aws",
        "targets": {"aws": aws_account.settings()},
        "clusters": [{"name": "train", "gpu_pools": [
            {"name": "small", "accelerator": "A10G", "gpus_per_node": 1, "nodes": {"min": 2, "max": 2}}]}]}))
    run_mlplat("apply", "--yes", "-f", str(stack_file), cwd=tmp_path, env=aws_account.env())
    stack = Stack(stack_file)
    usage = stack.targets["aws"].usage(list(stack.state.resources().values()), 300)
    [pool] = usage.pools
    assert (pool.component, pool.pool, pool.nodes, pool.gpus, pool.gpu_util_percent) == ("train", "small", 2, 2, None)
    assert any("HyperPod publishes no GPU utilisation" in n for n in usage.notes)
    run_mlplat("destroy", "--yes", "-f", str(stack_file), cwd=tmp_path, env=aws_account.env())


# -- validate-time refusals and the per-framework container --------------------------------------------------------

def refusals(stack: MonitoredStack) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as caught:
        stack.open().validate()
    return [(r["code"], r["path"]) for r in caught.value.reasons]


def test_what_sagemaker_monitoring_cannot_do_is_refused_at_validate(monitored: MonitoredStack) -> None:
    monitored.monitoring["drift"]["metric"] = "psi"
    monitored.monitoring["capture"]["destination"] = "gs://elsewhere/capture"
    paths = monitored.doc["serving"][0]["paths"]
    paths["experimental"] = {"model": "iris:2", "mode": "shadow", "mirror_percent": 10}
    paths["production"] = {"model": "iris:1"}
    monitored.monitoring["shadow_comparison"] = {"min_agreement": 0.9}
    monitored.write()
    assert sorted(refusals(monitored)) == [
        ("capture-destination-unsupported", "serving[0].monitoring.capture.destination"),
        ("drift-metric-unsupported", "serving[0].monitoring.drift.metric"),
        ("monitoring-unsupported", "serving[0].monitoring.shadow_comparison")]


def test_a_threshold_no_ks_distance_reaches_is_a_warning(monitored: MonitoredStack) -> None:
    monitored.monitoring["drift"]["threshold"] = 5
    monitored.write()
    warnings = monitored.open().validate()
    assert any("never flags drift" in w.message for w in warnings), warnings


def test_validating_a_monitored_stack_imports_no_boto3(monitored: MonitoredStack) -> None:
    code = ("import sys; from provisioner.api import Stack; Stack(sys.argv[1]).validate(); "
            "assert not [m for m in sys.modules if m.startswith(('boto3', 'botocore'))]")
    subprocess.run([sys.executable, "-c", code, str(monitored.path)], check=True,
                   env={**os.environ, **monitored.account.env()})


def test_a_framework_selects_its_sagemaker_container(monitored: MonitoredStack) -> None:
    models = monitored.doc["registry"]["models"]
    models[0]["framework"] = "sklearn"
    models[1]["framework"] = "onnx"
    monitored.write()
    resources, _ = monitored.open().lower()
    images = {r.inputs["model"]: r.inputs["image"] for r in resources.values() if r.kind == "aws.model_package"}
    assert images == {"iris:1": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
                      "iris:2": "763104351884.dkr.ecr.us-east-1.amazonaws.com/sagemaker-tritonserver:24.05-py3"}

    # mlplat-linear keeps the registry's own image, as before
    models[1]["framework"] = "mlplat-linear"
    monitored.write()
    resources, _ = monitored.open().lower()
    image = resources["models.model_package.iris:2"].inputs["image"]
    assert image["tag"] == "latest" and image["repository"].address == "models.ecr_repository.iris-server"

    # a framework AWS has no container for needs serving_image: refused at validate where an endpoint serves it
    models[1]["framework"] = "mlflow"
    monitored.write()
    assert refusals(monitored) == [("model-format-unsupported", "serving[0].paths.experimental.model")]
    monitored.doc["targets"]["aws"]["serving_image"] = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlflow:2"
    monitored.write()
    resources, _ = monitored.open().lower()
    assert resources["models.model_package.iris:2"].inputs["image"] == (
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlflow:2")


def test_a_drift_feature_missing_from_the_baseline_is_an_error(monitored: MonitoredStack) -> None:
    monitored.monitoring["drift"]["features"] = ["sepal_length", "colour"]
    monitored.write()
    with pytest.raises(Exception, match="colour are not columns of the baseline"):
        monitored.open().validate()


# -- the fake server's Model Monitor, as SageMaker's API reference says ----------------------------------------------

def test_fake_model_monitor_validates_like_sagemaker(monitored: MonitoredStack) -> None:
    from botocore.exceptions import ClientError

    monitored.cli("apply", "--yes")
    sm = monitored.client("sagemaker")
    job = sm.describe_monitoring_schedule(MonitoringScheduleName=SCHEDULE)["MonitoringScheduleConfig"][
        "MonitoringJobDefinitionName"]

    def error(call: Any, **kwargs: Any) -> tuple[str, str]:
        with pytest.raises(ClientError) as caught:
            call(**kwargs)
        return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]

    config = {"ScheduleConfig": {"ScheduleExpression": "cron(0 * ? * * *)"}, "MonitoringJobDefinitionName": job,
              "MonitoringType": "DataQuality"}
    assert error(sm.create_monitoring_schedule, MonitoringScheduleName=SCHEDULE,
                 MonitoringScheduleConfig=config)[0] == "ResourceInUse"
    code, message = error(sm.create_monitoring_schedule, MonitoringScheduleName="bad_name",
                          MonitoringScheduleConfig=config)
    assert code == "ValidationException" and "at 'monitoringScheduleName' failed to satisfy constraint" in message
    assert "Invalid ScheduleExpression" in error(sm.create_monitoring_schedule, MonitoringScheduleName="s2",
                                                 MonitoringScheduleConfig={**config, "ScheduleConfig": {
                                                     "ScheduleExpression": "rate(1 hour)"}})[1]
    assert "Could not find DataQuality job definition" in error(
        sm.create_monitoring_schedule, MonitoringScheduleName="s2",
        MonitoringScheduleConfig={**config, "MonitoringJobDefinitionName": "nope"})[1]
    assert error(sm.describe_monitoring_schedule, MonitoringScheduleName="nope")[0] == "ResourceNotFound"
    assert error(sm.delete_monitoring_schedule, MonitoringScheduleName="nope")[0] == "ResourceNotFound"
    assert "is used by monitoring schedule" in error(sm.delete_data_quality_job_definition,
                                                     JobDefinitionName=job)[1]
    # an endpoint without data capture cannot be monitored
    sm.create_endpoint_config(EndpointConfigName="plain", ProductionVariants=[
        {"VariantName": "v", "ModelName": sm.list_models()["Models"][0]["ModelName"], "InitialInstanceCount": 1,
         "InstanceType": "ml.m5.large"}])
    sm.create_endpoint(EndpointName="plain", EndpointConfigName="plain")
    described = sm.describe_data_quality_job_definition(JobDefinitionName=job)
    request = {k: described[k] for k in ("DataQualityAppSpecification", "DataQualityJobOutputConfig",
                                         "JobResources", "RoleArn", "DataQualityBaselineConfig")}
    sm.create_data_quality_job_definition(JobDefinitionName="plain-dq", DataQualityJobInput={
        "EndpointInput": {"EndpointName": "plain", "LocalPath": "/opt/ml/processing/input"}}, **request)
    assert "does not have data capture enabled" in error(
        sm.create_monitoring_schedule, MonitoringScheduleName="plain",
        MonitoringScheduleConfig={**config, "MonitoringJobDefinitionName": "plain-dq"})[1]
    assert error(sm.create_data_quality_job_definition, JobDefinitionName="plain-dq", DataQualityJobInput={
        "EndpointInput": {"EndpointName": "plain", "LocalPath": "/x"}}, **request)[0] == "ResourceInUse"
    assert "Member must have value less than or equal to 100" in error(
        sm.create_endpoint_config, EndpointConfigName="c2", ProductionVariants=[
            {"VariantName": "v", "ModelName": sm.list_models()["Models"][0]["ModelName"],
             "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}],
        DataCaptureConfig={"InitialSamplingPercentage": 101, "DestinationS3Uri": "s3://b/c",
                           "CaptureOptions": [{"CaptureMode": "Input"}]})[1]
    sm.delete_data_quality_job_definition(JobDefinitionName="plain-dq")
    sm.delete_endpoint(EndpointName="plain")
    sm.delete_endpoint_config(EndpointConfigName="plain")
    monitored.cli("destroy", "--yes")
