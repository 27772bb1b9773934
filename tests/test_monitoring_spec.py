"""The `monitoring:` block of a serving endpoint: what the stack file accepts, where a mistake is reported, and the
capability check that refuses a feature its target does not offer (at validate, at its place in the file).

Positions are counted by hand from the text written in each test (line 1 is the first line after `dedent`)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from provisioner.api import Stack
from provisioner.errors import SpecError
from provisioner.spec import load

STACKS = Path(__file__).resolve().parent.parent / "stacks"

HEAD = """\
apiVersion: mlplat/v1
metadata: {name: watched}
target: sim
targets:
  sim: SETTINGS
registry:
  name: models
  models:
    - {name: iris, version: "1", artifact: models/iris-v1.json}
    - {name: iris, version: "2", artifact: models/iris-v1.json}
serving:
  - name: iris
    paths:
      production: {model: "iris:1"}
      experimental: {model: "iris:2", mode: shadow}
    monitoring:
"""


def write(tmp_path: Path, monitoring: str, settings: dict | None = None) -> Path:
    (tmp_path / "models").mkdir(exist_ok=True)
    (tmp_path / "models" / "iris-v1.json").write_text((STACKS / "models" / "iris-v1.json").read_text())
    (tmp_path / "baseline.csv").write_text("a,b\n1,2\n")
    text = HEAD.replace("SETTINGS", json.dumps({"store": "cloud", **(settings or {})}))
    path = tmp_path / "stack.yaml"
    path.write_text(text + textwrap.indent(textwrap.dedent(monitoring), "      "))
    return path


def problem(path: Path) -> str:
    with pytest.raises(SpecError) as info:
        Stack(path).check()
    assert len(info.value.problems) == 1, info.value.problems
    return info.value.problems[0]


FULL = """\
capture: {sample_percent: 20, request: true, response: false}
drift: {baseline: baseline.csv, features: [a], metric: ks, threshold: 0.3, schedule: daily}
alerts: {webhook: "https://hooks.example.com/x", emails: [ops@example.com]}
shadow_comparison: {min_agreement: 0.9, max_latency_delta_ms: 50}
"""


def test_a_whole_monitoring_block_loads_with_its_defaults(tmp_path: Path) -> None:
    platform = load(write(tmp_path, FULL, {"monitoring": ["capture", "drift", "alerts", "shadow_comparison"]})).platform
    monitoring = platform.serving[0].monitoring
    assert monitoring is not None
    assert (monitoring.capture.sample_percent, monitoring.capture.response) == (20, False)
    assert (monitoring.drift.metric, monitoring.drift.schedule, monitoring.drift.min_rows) == ("ks", "daily", 50)
    assert monitoring.alerts.emails == ["ops@example.com"]
    assert monitoring.shadow_comparison.min_pairs == 20
    assert monitoring.features() == {"capture", "drift", "alerts", "shadow_comparison"}


def test_drift_without_captured_requests_is_refused_at_drift(tmp_path: Path) -> None:
    path = write(tmp_path, "capture: {sample_percent: 5, request: false}\ndrift: {baseline: baseline.csv}\n")
    with pytest.raises(SpecError) as info:
        load(path)
    assert info.value.problems[0].startswith(f"{path}:18:7: serving[0].monitoring.drift: drift checks read captured "
                                             "requests")


def test_an_unknown_drift_metric_names_the_choices_where_written(tmp_path: Path) -> None:
    path = write(tmp_path, "capture: {sample_percent: 5}\ndrift: {baseline: baseline.csv, metric: wasserstein}\n")
    with pytest.raises(SpecError) as info:
        load(path)
    message = info.value.problems[0]
    assert message.startswith(f"{path}:18:")
    assert "monitoring.drift.metric" in message and "'psi'" in message and "'ks'" in message


def test_a_sample_percent_over_100_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "capture: {sample_percent: 120}\n")
    with pytest.raises(SpecError) as info:
        load(path)
    assert info.value.problems[0].startswith(f"{path}:17:")
    assert "sample_percent" in info.value.problems[0] and "100" in info.value.problems[0]


def test_alerts_with_nowhere_to_go_and_a_webhook_that_is_no_url_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load(write(tmp_path, "alerts: {emails: []}\n"))
    assert "alerts need a webhook and/or emails" in info.value.problems[0]
    with pytest.raises(SpecError) as info:
        load(write(tmp_path, "alerts: {webhook: ftp://x}\n"))
    assert "webhook must be an http:// or https:// URL" in info.value.problems[0]


def test_shadow_comparison_needs_a_shadow_path(tmp_path: Path) -> None:
    path = write(tmp_path, "shadow_comparison: {}\n")
    text = path.read_text().replace("mode: shadow", "weight: 10")
    path.write_text(text.replace('"iris:1"}', '"iris:1", weight: 90}'))
    with pytest.raises(SpecError) as info:
        load(path)
    assert info.value.problems[0].startswith(f"{path}:17:7: serving[0].monitoring.shadow_comparison: "
                                             "shadow_comparison compares a shadow path with production")


def test_a_feature_the_target_does_not_offer_is_refused_at_validate_where_written(tmp_path: Path) -> None:
    path = write(tmp_path, FULL, {"monitoring": ["capture"]})
    with pytest.raises(SpecError) as info:
        Stack(path).check()
    problems = info.value.problems
    assert [p.split(": ")[0] for p in problems] == [f"{path}:19:7", f"{path}:18:7", f"{path}:20:7"]
    assert all("does not offer monitoring" in p for p in problems)
    assert [r["code"] for r in info.value.reasons] == ["monitoring-unsupported"] * 3


def test_a_target_offering_no_monitoring_refuses_capture(tmp_path: Path) -> None:
    message = problem(write(tmp_path, "capture: {sample_percent: 10}\n"))
    assert message.startswith(f"{tmp_path / 'stack.yaml'}:17:7: serving[0].monitoring.capture: ")
    assert "does not offer monitoring capture (offers: none)" in message


def test_the_local_target_offers_every_monitoring_feature(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    path.write_text(path.read_text().replace("target: sim", "target: local"))
    Stack(path).check()  # no refusal
