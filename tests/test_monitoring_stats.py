"""Drift statistics (PSI, Jensen-Shannon distance, KS) with values checked by hand, baseline files, and the
mapping of captured request instances to the baseline's features."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from provisioner.errors import MlplatError
from provisioner.monitoring import baseline, drift
from provisioner.monitoring.run import drift_scores, shadow_scores
from provisioner.spec.model import DriftCheck, ShadowComparison

HUNDRED = [float(i) for i in range(100)]
#: 0..49 twice: the first five deciles of HUNDRED hold 20 % each, the last five nothing
LOW_HALF = [float(i) for i in range(50)] * 2


# -- binning ---------------------------------------------------------------------------------------------------
def test_deciles_interpolate_between_order_statistics() -> None:
    # position (n - 1) * q = 99 * 0.1 = 9.9 → between 9 and 10
    assert drift.cut_points(HUNDRED) == pytest.approx([9.9, 19.8, 29.7, 39.6, 49.5, 59.4, 69.3, 79.2, 89.1])
    assert drift.binned_shares(HUNDRED, drift.cut_points(HUNDRED)) == pytest.approx([0.1] * 10)


def test_a_value_on_a_cut_point_is_in_the_lower_bin_and_outliers_in_the_outer_bins() -> None:
    cuts = [1.0, 2.0]
    assert drift.binned_shares([1.0, 2.0, 2.5, -100.0, 1000.0], cuts) == pytest.approx([0.4, 0.2, 0.4])


def test_a_feature_with_few_distinct_values_has_fewer_bins() -> None:
    assert drift.cut_points([0.0] * 50 + [1.0] * 50) == [0.0, 0.5, 1.0]  # 0.5 = the median, between the two
    assert drift.cut_points([5.0] * 10) == [5.0]


# -- PSI -------------------------------------------------------------------------------------------------------
def test_identical_samples_score_zero_on_every_metric() -> None:
    rng = random.Random(1)
    sample = [rng.gauss(5, 1) for _ in range(300)]
    for metric in drift.METRICS:
        assert drift.score(metric, sample, list(sample)) == pytest.approx(0.0, abs=1e-12), metric
    cats = ["a", "b", "b", "c"]
    for metric in drift.METRICS:
        assert drift.score(metric, cats, cats * 3) == pytest.approx(0.0, abs=1e-12), metric


def test_psi_of_a_known_shift() -> None:
    # five bins 0.1 → 0.2: (0.2 - 0.1) ln 2 each; five bins 0.1 → empty (epsilon 1e-4): (1e-4 - 0.1) ln(1e-4 / 0.1)
    expected = 5 * 0.1 * math.log(2) + 5 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert expected == pytest.approx(3.79700, abs=1e-5)
    assert drift.score("psi", HUNDRED, LOW_HALF) == pytest.approx(expected, rel=1e-12)


def test_psi_of_shares() -> None:
    assert drift.psi_of([0.5, 0.5], [0.75, 0.25]) == pytest.approx(0.25 * math.log(1.5) + 0.25 * math.log(2))
    assert drift.psi_of([0.5, 0.5], [0.75, 0.25]) == pytest.approx(0.274653, abs=1e-6)


# -- Jensen-Shannon --------------------------------------------------------------------------------------------
def test_js_distance_of_a_known_shift() -> None:
    # m = 0.15 on the low bins, 0.05 on the high ones; KL(p||m) = 0.5 log2(2/3) + 0.5, KL(q||m) = log2(4/3)
    divergence = (0.5 * math.log2(2 / 3) + 0.5 + math.log2(4 / 3)) / 2
    assert math.sqrt(divergence) == pytest.approx(0.557923, abs=1e-6)
    assert drift.score("jensen_shannon", HUNDRED, LOW_HALF) == pytest.approx(math.sqrt(divergence), rel=1e-12)


def test_js_distance_of_disjoint_samples_is_one() -> None:
    assert drift.score("jensen_shannon", ["a", "b"], ["c", "d"]) == pytest.approx(1.0)
    assert drift.score("jensen_shannon", [0.0] * 10 + [1.0] * 10, [50.0] * 5) == pytest.approx(1.0)


# -- KS --------------------------------------------------------------------------------------------------------
def test_ks_statistic_is_the_largest_ecdf_gap() -> None:
    assert drift.ks_statistic([1, 2, 3, 4], [3, 4, 5, 6]) == pytest.approx(0.5)  # at x = 2: 2/4 - 0
    assert drift.ks_statistic([1, 2, 3], [4, 5, 6]) == pytest.approx(1.0)
    assert drift.ks_statistic([1, 1, 2], [1, 2, 2]) == pytest.approx(1 / 3)  # ties step together
    assert drift.score("ks", HUNDRED, LOW_HALF) == pytest.approx(0.5)  # at x = 49: 0.5 vs 1.0


def test_ks_on_a_categorical_feature_is_the_total_variation_distance() -> None:
    assert drift.score("ks", ["a", "a", "b", "b"], ["a", "a", "a", "b"]) == pytest.approx(0.25)


# -- categorical ------------------------------------------------------------------------------------------------
def test_categorical_psi_counts_each_category_as_a_bin() -> None:
    assert drift.score("psi", ["a", "a", "b", "b"], ["a", "a", "a", "b"]) == pytest.approx(0.274653, abs=1e-6)
    # a new category: baseline share 0 → epsilon
    expected = (0.5 - 1e-4) * math.log(0.5 / 1e-4) + (0.5 - 1.0) * math.log(0.5)
    assert drift.score("psi", ["a", "a"], ["a", "c"]) == pytest.approx(expected)


def test_scores_refuse_what_they_cannot_compare() -> None:
    with pytest.raises(ValueError, match="unknown drift metric"):
        drift.score("chi2", [1.0], [1.0])
    with pytest.raises(ValueError, match="values in both"):
        drift.score("psi", [1.0], [])
    with pytest.raises(ValueError, match="not all numbers"):
        drift.score("psi", [1.0, 2.0], ["x"])


# -- baseline files --------------------------------------------------------------------------------------------
def test_csv_baseline_numbers_are_floats_text_is_categorical_and_empty_cells_are_missing(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_text("sepal_length,sepal_width,colour\n5.1,3.5,red\n4.9,,blue\n7,3.2, green \n\n")
    base = baseline.load(path)
    assert base.columns == ["sepal_length", "sepal_width", "colour"]
    assert base.rows == 3
    assert base.values == {"sepal_length": [5.1, 4.9, 7.0], "sepal_width": [3.5, 3.2],
                           "colour": ["red", "blue", "green"]}
    assert all(type(v) is float for v in base.values["sepal_length"])


def test_json_lines_baseline(tmp_path: Path) -> None:
    path = tmp_path / "b.jsonl"
    path.write_text('{"a": 1, "b": "x"}\n\n{"a": 2.5, "c": true}\n')
    base = baseline.load(path)
    assert base.columns == ["a", "b", "c"]
    assert base.values == {"a": [1.0, 2.5], "b": ["x"], "c": ["true"]}


@pytest.mark.parametrize(("text", "message"), [
    ("", "is empty"),
    ("a,a\n1,2\n", "unique, non-empty column names"),
    ("a,b\n1,2,3\n", "b.csv:2: 3 cells, the header names 2 columns"),
    ("a,b\n", "holds no rows"),
])
def test_bad_csv_baselines_are_clean_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "b.csv"
    path.write_text(text)
    with pytest.raises(MlplatError, match=message):
        baseline.load(path)


def test_a_missing_baseline_is_a_clean_error(tmp_path: Path) -> None:
    with pytest.raises(MlplatError, match="cannot read the drift baseline"):
        baseline.load(tmp_path / "nope.csv")


# -- request instances → features ------------------------------------------------------------------------------
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.mark.parametrize(("request_body", "count"), [
    ({"instances": [[5.1, 3.5, 1.4, 0.2], [6.0, 3.0, 4.5, 1.5]]}, 2),  # SageMaker / TF Serving
    ({"inputs": [[5.1, 3.5, 1.4, 0.2]]}, 1),
    ([[5.1, 3.5, 1.4, 0.2], [6.0, 3.0, 4.5, 1.5], [7.0, 3.1, 6.0, 2.2]], 3),  # a bare list of instances
    ([5.1, 3.5, 1.4, 0.2], 1),  # one instance as a bare list
    ({"sepal_length": 5.1, "petal_width": 0.2}, 1),  # one instance by name
    ({"text": "not json"}, 0),
    ("plain", 0),
    (None, 0),
])
def test_instances_of_request_shapes(request_body: object, count: int) -> None:
    assert len(baseline.instances(request_body)) == count


def test_list_instances_map_by_position_and_objects_by_name() -> None:
    assert baseline.features([5.1, 3.5, 1.4, 0.2], COLUMNS) == dict(zip(COLUMNS, [5.1, 3.5, 1.4, 0.2], strict=True))
    assert baseline.features([5.1, 3.5], COLUMNS) == {"sepal_length": 5.1, "sepal_width": 3.5}
    assert baseline.features({"petal_width": "0.2", "other": 1, "sepal_length": None}, COLUMNS) == {
        "petal_width": 0.2}
    assert baseline.features(7, COLUMNS) == {"sepal_length": 7.0}


def test_columns_of_captured_rows() -> None:
    rows = [{"request": {"instances": [[1, 2, 3, 4], [5, 6, 7, 8]]}},
            {"request": [{"petal_length": 9}]},
            {"response": {"predictions": []}}]  # request not kept
    assert baseline.columns_of(rows, COLUMNS) == {"sepal_length": [1.0, 5.0], "sepal_width": [2.0, 6.0],
                                                  "petal_length": [3.0, 7.0, 9.0], "petal_width": [4.0, 8.0]}


# -- the run's per-feature and shadow arithmetic ---------------------------------------------------------------
def test_drift_scores_per_feature_with_min_rows_and_a_categorical_column(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    lines = ["x,kind"] + [f"{i},{'ab'[i % 2]}" for i in range(100)]
    path.write_text("\n".join(lines) + "\n")
    rows = [{"status": 200, "request": {"instances": [[float(i % 50), "a"]]}} for i in range(100)]
    rows.append({"status": 400, "request": {"instances": [[1000.0, "z"]]}})  # refused: not counted
    check = DriftCheck(baseline="b.csv", metric="psi", threshold=0.2, min_rows=50)
    notes: list[str] = []
    scores = {f.feature: f for f in drift_scores(path, check, rows, notes)}
    assert scores["x"].rows == 100 and scores["x"].status == "drift"
    assert scores["x"].score == pytest.approx(drift.score("psi", [float(i) for i in range(100)], LOW_HALF))
    # every captured kind is "a" against a 50/50 baseline: 0.5 ln 2 + (1e-4 - 0.5) ln(1e-4 / 0.5)
    assert scores["kind"].score == pytest.approx(0.5 * math.log(2) + (1e-4 - 0.5) * math.log(1e-4 / 0.5))
    few = drift_scores(path, DriftCheck(baseline="b.csv", features=["x"], min_rows=500), rows, notes)
    assert [(f.status, f.score) for f in few] == [("not enough rows (100/500)", None)]
    unknown = drift_scores(path, DriftCheck(baseline="b.csv", features=["nope"]), rows, notes)
    assert unknown[0].status.startswith("not a baseline column")
    assert notes == []


def test_shadow_agreement_sums_instances_and_waits_for_min_pairs() -> None:
    pairs = [{"primary": "production", "shadow": "experimental", "instances": 4, "agreements": 3,
              "primary_ms": 2.0, "shadow_ms": 5.0} for _ in range(10)]
    pairs.append({"primary": "production", "shadow": "experimental", "instances": 0, "agreements": 0,
                  "primary_ms": 2.0, "shadow_ms": 2.0, "shadow_status": 500})
    [score] = shadow_scores(pairs, ShadowComparison(min_agreement=0.9, min_pairs=10, max_latency_delta_ms=2))
    assert (score.pairs, score.instances, score.agreements) == (10, 40, 30)
    assert score.agreement == pytest.approx(0.75)
    assert score.latency_delta_ms == pytest.approx(30 / 11)  # every pair with both times
    assert score.status == "low agreement, slow"
    [waiting] = shadow_scores(pairs, ShadowComparison(min_agreement=0.9, min_pairs=11))
    assert waiting.status == "not enough pairs (10/11)" and waiting.agreement == pytest.approx(0.75)


def test_json_lines_baseline_by_content(tmp_path: Path) -> None:
    path = tmp_path / "baseline.data"
    path.write_text("\n".join(json.dumps({"f": i}) for i in range(3)))
    assert baseline.load(path).values == {"f": [0.0, 1.0, 2.0]}
