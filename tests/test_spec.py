"""The stack file: what loads, and how each mistake is reported.

Every problem is a line `file:line:col: path: message`; the positions asserted below are counted by hand from
the YAML text written in each test (line 1 is the first line after `dedent`, column 1 the first character).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Literal

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from provisioner import catalog
from provisioner.errors import SpecError
from provisioner.spec import LoadedStack, load

REPO = Path(__file__).resolve().parents[1]

MINIMAL = """\
    apiVersion: mlplat/v1
    metadata:
      name: demo
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "stack.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str) -> LoadedStack:
    return load(write(tmp_path, text))


def spec_error(tmp_path: Path, text: str) -> tuple[Path, SpecError]:
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load(path)
    return path, info.value


def only_problem(tmp_path: Path, text: str) -> tuple[str, str]:
    """(`file:line:col: path: ` of the single problem, its message)."""
    path, err = spec_error(tmp_path, text)
    assert len(err.problems) == 1, err.problems
    problem = err.problems[0]
    head, sep, message = problem.partition(": ")
    assert sep and head.startswith(f"{path}:"), problem
    where, _, message = message.partition(": ")
    return f"{head}: {where}: ", message


def at(tmp_path: Path, line: int, col: int, dotted: str) -> str:
    return f"{tmp_path / 'stack.yaml'}:{line}:{col}: {dotted}: "


# --- what loads ----------------------------------------------------------------------------------------------


def test_minimal_stack_loads_with_defaults(tmp_path):
    platform = load_text(tmp_path, MINIMAL).platform

    assert platform.api_version == "mlplat/v1"
    assert platform.metadata.name == "demo"
    assert platform.metadata.description == ""
    assert platform.target == "local"
    assert platform.targets == {}
    assert platform.state.backend == "sqlite"
    assert (platform.clusters, platform.storage, platform.registry, platform.serving) == ([], [], None, [])


def test_shipped_quickstart_example_is_valid():
    stack = load(REPO / "stacks" / "quickstart.yaml")

    assert stack.platform.metadata.name == "quickstart"
    assert {c.name for c in stack.platform.components()} == {"train", "shared", "models", "iris"}


def test_component_target_overrides_the_stack_target(tmp_path):
    platform = load_text(tmp_path, MINIMAL + """\
    target: local
    storage:
      - name: shared
        kind: nas
        target: aws
      - name: scratch
    """).platform

    shared, scratch = platform.storage
    assert platform.target_of(shared) == "aws"
    assert platform.target_of(scratch) == "local"


def test_only_production_path_defaults_to_weight_100(tmp_path):
    serving = load_text(tmp_path, MINIMAL + """\
    serving:
      - name: iris
        paths:
          production: {model: "iris:1"}
    """).platform.serving[0]

    assert serving.paths.production.weight == 100
    assert serving.paths.experimental is None
    assert serving.shadow is False


def test_experimental_weight_is_inferred_from_production_weight(tmp_path):
    paths = load_text(tmp_path, MINIMAL + """\
    serving:
      - name: iris
        paths:
          production: {model: "iris:1", weight: 70}
          experimental: {model: "iris:2"}
    """).platform.serving[0].paths

    assert (paths.production.weight, paths.experimental.weight) == (70, 30)


def test_shadow_experimental_path_without_weight_gets_no_live_traffic(tmp_path):
    serving = load_text(tmp_path, MINIMAL + """\
    serving:
      - name: iris
        paths:
          production: {model: "iris:1"}
          experimental: {model: "iris:2", mode: shadow}
    """).platform.serving[0]

    assert serving.shadow is True
    assert (serving.paths.production.weight, serving.paths.experimental.weight) == (100, 0)


def test_integer_model_version_is_read_as_text(tmp_path):
    registry = load_text(tmp_path, MINIMAL + """\
    registry:
      name: models
      models:
        - name: iris
          version: 1
          artifact: models/iris-v1.json
    """).platform.registry

    assert registry.models[0].version == "1"
    assert registry.models[0].ref == "iris:1"


@pytest.mark.parametrize("spelling", ["h100", "H100", "nvidia-h100-80gb", "NVIDIA_H100"])
def test_common_accelerator_spellings_normalise_to_the_catalog_name(tmp_path, spelling):
    pool = load_text(tmp_path, MINIMAL + f"""\
    clusters:
      - name: train
        gpu_pools:
          - name: big
            accelerator: {spelling}
    """).platform.clusters[0].gpu_pools[0]

    assert pool.accelerator == "h100"
    assert pool.gpus_per_node == 1


@pytest.mark.parametrize("written", ["", "\n            gpus_per_node: 0"], ids=["left out", "zero"])
def test_cpu_pool_has_zero_gpus_per_node(tmp_path, written):
    pool = load_text(tmp_path, MINIMAL + """\
    clusters:
      - name: train
        gpu_pools:
          - name: small
            accelerator: cpu""" + written + "\n").platform.clusters[0].gpu_pools[0]

    assert pool.gpus_per_node == 0


def test_env_reference_is_replaced_by_the_variable_value(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPLAT_TEST_REGION", "eu-west-1")

    platform = load_text(tmp_path, MINIMAL + """\
    targets:
      aws:
        region: ${env:MLPLAT_TEST_REGION}
        bucket: ml-${env:MLPLAT_TEST_REGION}-data
    """).platform

    assert platform.targets["aws"] == {"region": "eu-west-1", "bucket": "ml-eu-west-1-data"}


def test_secret_target_setting_given_as_env_reference_is_accepted(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPLAT_TEST_AWS_SECRET", "from-the-environment")

    platform = load_text(tmp_path, MINIMAL + """\
    targets:
      aws:
        secret_access_key: ${env:MLPLAT_TEST_AWS_SECRET}
    """).platform

    assert platform.targets["aws"]["secret_access_key"] == "from-the-environment"


# --- YAML-level problems -------------------------------------------------------------------------------------


def test_yaml_syntax_error_names_line_and_column(tmp_path):
    path, err = spec_error(tmp_path, """\
    apiVersion: mlplat/v1
    metadata:
      name: demo: x
    """)

    assert len(err.problems) == 1
    # libyaml says "... in this context", pure-Python PyYAML "... here"
    assert err.problems[0].startswith(f"{path}:3:13: YAML syntax error: mapping values are not allowed ")
    assert err.hint


def test_unclosed_bracket_names_where_parsing_stopped_and_where_the_bracket_opened(tmp_path):
    path, err = spec_error(tmp_path, """\
    apiVersion: mlplat/v1
    metadata:
      name: [demo
    """)

    assert len(err.problems) == 1
    assert err.problems[0].startswith(f"{path}:4:1: YAML syntax error: did not find expected ',' or ']'")
    assert "starts at line 3, column 9" in err.problems[0]


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file_is_an_error(tmp_path, text):
    path, err = spec_error(tmp_path, text)

    assert err.problems == [f"{path}:1:1: the stack file is empty"]
    assert "quickstart" in err.hint


def test_top_level_must_be_a_mapping(tmp_path):
    path, err = spec_error(tmp_path, """\
    - apiVersion: mlplat/v1
    """)

    assert err.problems == [f"{path}:1:1: a stack file is a YAML mapping (apiVersion, metadata, ...)"]


def test_duplicate_key_is_an_error_at_the_second_key_naming_the_first(tmp_path):
    text = """\
    apiVersion: mlplat/v1
    metadata:
      name: demo
      name: other
    """
    assert yaml.safe_load(textwrap.dedent(text))["metadata"] == {"name": "other"}  # plain YAML keeps the last

    path, err = spec_error(tmp_path, text)

    assert err.problems == [f"{path}:4:3: metadata.name: duplicate key (first given on line 3); keep one"]


def test_list_as_a_mapping_key_is_an_error_not_a_crash(tmp_path):
    path, err = spec_error(tmp_path, """\
    ? [a, b]
    : c
    """)

    assert err.problems == [f"{path}:1:3: (top): a key must be a plain name, not a list or mapping"]


# --- unknown and missing keys --------------------------------------------------------------------------------


def test_unknown_top_level_key_suggests_the_closest_known_key(tmp_path):
    prefix, message = only_problem(tmp_path, MINIMAL + """\
    servng: []
    """)

    assert prefix == at(tmp_path, 4, 1, "servng")
    assert message == "unknown key 'servng'; did you mean 'serving'?"


def test_unknown_key_in_a_serving_path_is_reported_at_the_key_with_a_suggestion(tmp_path):
    prefix, message = only_problem(tmp_path, MINIMAL + """\
    serving:
      - name: iris
        paths:
          production:
            model: "iris:1"
            wieght: 100
    """)

    assert prefix == at(tmp_path, 9, 9, "serving[0].paths.production.wieght")
    assert message == "unknown key 'wieght'; did you mean 'weight'?"


def test_unknown_key_without_a_close_match_lists_the_allowed_keys(tmp_path):
    prefix, message = only_problem(tmp_path, MINIMAL + """\
    storage:
      - name: shared
        zzz: 1
    """)

    assert prefix == at(tmp_path, 6, 5, "storage[0].zzz")
    assert message.startswith("unknown key 'zzz'; allowed keys here: name, target, kind, size_gb, mount_path")


def test_missing_metadata_name_points_at_metadata(tmp_path):
    prefix, message = only_problem(tmp_path, """\
    apiVersion: mlplat/v1
    metadata:
      description: no name here
    """)

    assert prefix == at(tmp_path, 2, 1, "metadata.name")
    assert message == "required key 'name' is missing; add it"


def test_missing_api_version_points_at_the_top_level_mapping(tmp_path):
    prefix, message = only_problem(tmp_path, """\
    # a stack without its apiVersion
    metadata:
      name: demo
    """)

    assert prefix == at(tmp_path, 2, 1, "apiVersion")
    assert message == "required key 'apiVersion' is missing; add it"


def test_wrong_api_version_names_the_supported_one(tmp_path):
    prefix, message = only_problem(tmp_path, """\
    apiVersion: mlplat/v2
    metadata:
      name: demo
    """)

    assert prefix == at(tmp_path, 1, 13, "apiVersion")
    assert "'mlplat/v2' is not allowed" in message
    assert "'mlplat/v1'" in message


def test_mapping_given_as_null_says_a_mapping_is_expected(tmp_path):
    prefix, message = only_problem(tmp_path, """\
    apiVersion: mlplat/v1
    metadata:
    """)

    assert prefix == at(tmp_path, 2, 10, "metadata")
    assert message == "expected a mapping (indented `key: value` lines)"


# --- names ---------------------------------------------------------------------------------------------------


def test_upper_case_component_name_is_rejected_with_the_naming_rule(tmp_path):
    prefix, message = only_problem(tmp_path, MINIMAL + """\
    storage:
      - name: Shared
    """)

    assert prefix == at(tmp_path, 5, 11, "storage[0].name")
    assert message == ("invalid name 'Shared': names are 1-40 characters of a-z, 0-9 and '-', "
                       "starting with a letter")


def test_duplicate_component_names_across_categories_are_reported_at_the_second(tmp_path):
    prefix, message = only_problem(tmp_path, MINIMAL + """\
    storage:
      - name: x
    serving:
      - name: x
        paths:
          production: {model: "iris:1"}
    """)

    assert prefix == at(tmp_path, 7, 5, "serving[0].name")
    assert message == "duplicate component name 'x': component names must be unique (first given on line 5)"


def test_duplicate_model_version_in_registry_is_reported_at_the_second_entry(tmp_path):
    prefix, message = only_problem(tmp_path, MINIMAL + """\
    registry:
      name: models
      models:
        - {name: iris, version: "1", artifact: a.json}
        - {name: iris, version: 1, artifact: b.json}
    """)

    assert prefix == at(tmp_path, 8, 7, "registry.models[1]")
    assert message == "duplicate model version 'iris:1': model versions must be unique (first given on line 7)"


def test_model_reference_without_version_is_rejected_with_the_format(tmp_path):
    prefix, message = only_problem(tmp_path, MINIMAL + """\
    serving:
      - name: iris
        paths:
          production:
            model: iris
    """)

    assert prefix == at(tmp_path, 8, 16, "serving[0].paths.production.model")
    assert message == "invalid model reference 'iris': write name:version, e.g. iris:1"


# --- serving paths -------------------------------------------------------------------------------------------


def test_weights_not_summing_to_100_show_the_arithmetic_at_paths(tmp_path):
    prefix, message = only_problem(tmp_path, MINIMAL + """\
    serving:
      - name: iris
        paths:
          production: {model: "iris:1", weight: 70}
          experimental: {model: "iris:2", weight: 20}
    """)

    assert prefix == at(tmp_path, 6, 5, "serving[0].paths")
    assert message == "weights must sum to 100: production 70 + experimental 20 = 90"


def test_shadow_path_with_a_weight_is_an_error_at_the_weight(tmp_path):
    prefix, message = only_problem(tmp_path, MINIMAL + """\
    serving:
      - name: iris
        paths:
          production:
            model: "iris:1"
          experimental:
            model: "iris:2"
            mode: shadow
            weight: 10
    """)

    assert prefix == at(tmp_path, 12, 9, "serving[0].paths.experimental.weight")
    assert message == "a shadow path gets mirrored copies, not live traffic: remove its weight"


def test_production_path_in_shadow_mode_is_an_error_at_its_mode(tmp_path):
    prefix, message = only_problem(tmp_path, MINIMAL + """\
    serving:
      - name: iris
        paths:
          production:
            model: "iris:1"
            mode: shadow
    """)

    assert prefix == at(tmp_path, 9, 9, "serving[0].paths.production.mode")
    assert "put `mode: shadow` on the experimental path" in message


def test_only_live_path_with_weight_below_100_is_an_error(tmp_path):
    prefix, message = only_problem(tmp_path, MINIMAL + """\
    serving:
      - name: iris
        paths:
          production:
            model: "iris:1"
            weight: 80
    """)

    assert prefix == at(tmp_path, 9, 9, "serving[0].paths.production.weight")
    assert message == "production.weight is 80 but it is the only live path: use 100"


# --- accelerators and pools ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("written", "suggested"), [("h10", "h100"), ("a100-80", "a100-80gb")])
def test_unknown_accelerator_suggests_a_name_and_lists_the_known_ones(tmp_path, written, suggested):
    prefix, message = only_problem(tmp_path, MINIMAL + f"""\
    clusters:
      - name: train
        gpu_pools:
          - name: big
            accelerator: {written}
    """)

    assert prefix == at(tmp_path, 8, 22, "clusters[0].gpu_pools[0].accelerator")
    assert message.startswith(f"unknown accelerator {written!r} (did you mean {suggested!r}?)")
    assert message.endswith("known accelerators: " + ", ".join(catalog.names()))
    assert "\n" not in message


def test_unknown_serving_accelerator_is_reported_at_its_value(tmp_path):
    prefix, message = only_problem(tmp_path, MINIMAL + """\
    serving:
      - name: iris
        paths:
          production: {model: "iris:1", accelerator: tpu-v5}
    """)

    assert prefix == at(tmp_path, 7, 50, "serving[0].paths.production.accelerator")
    assert message.startswith("unknown accelerator 'tpu-v5'")
    assert "known accelerators: cpu, " in message


def test_zero_gpus_per_node_on_a_gpu_accelerator_is_an_error(tmp_path):
    prefix, message = only_problem(tmp_path, MINIMAL + """\
    clusters:
      - name: train
        gpu_pools:
          - name: big
            accelerator: h100
            gpus_per_node: 0
    """)

    assert prefix == at(tmp_path, 9, 9, "clusters[0].gpu_pools[0].gpus_per_node")
    assert message.startswith("gpus_per_node must be at least 1 for accelerator 'h100'")


def test_node_minimum_above_maximum_is_an_error_at_nodes(tmp_path):
    prefix, message = only_problem(tmp_path, MINIMAL + """\
    clusters:
      - name: train
        gpu_pools:
          - name: big
            accelerator: cpu
            nodes: {min: 3, max: 2}
    """)

    assert prefix == at(tmp_path, 9, 9, "clusters[0].gpu_pools[0].nodes")
    assert message == "nodes.min (3) is greater than nodes.max (2)"


# --- references and secrets ----------------------------------------------------------------------------------


def test_unset_env_reference_is_an_error_at_its_value(tmp_path, monkeypatch):
    monkeypatch.delenv("MLPLAT_TEST_UNSET", raising=False)

    path, err = spec_error(tmp_path, MINIMAL + """\
    targets:
      aws:
        region: ${env:MLPLAT_TEST_UNSET}
    """)

    assert err.problems == [f"{path}:6:13: targets.aws.region: environment variable MLPLAT_TEST_UNSET is not set"]
    assert "export" in err.hint


def test_reference_scheme_other_than_env_or_secret_is_unsupported(tmp_path):
    path, err = spec_error(tmp_path, MINIMAL + """\
    targets:
      aws:
        region: ${vault:x}
    """)

    assert err.problems == [f"{path}:6:13: targets.aws.region: unsupported reference ${{vault:...}}; "
                            "use ${env:NAME} or ${secret:NAME}"]


def test_inline_secret_in_target_settings_is_an_error_at_its_key(tmp_path):
    path, err = spec_error(tmp_path, MINIMAL + """\
    targets:
      aws:
        region: eu-west-1
        secret_access_key: AKIAIOSFODNN7EXAMPLE
    """)

    assert err.problems == [f"{path}:7:5: targets.aws.secret_access_key: secrets may not be written in the stack "
                            "file; write ${secret:NAME} and export NAME instead"]
    assert "${secret:" in err.hint


def test_inline_secret_value_never_appears_in_the_error(tmp_path):
    _, err = spec_error(tmp_path, MINIMAL + """\
    targets:
      aws:
        secret_access_key: AKIAIOSFODNN7EXAMPLE
        api_token: 8675309
    """)

    assert [p.split(": ")[1] for p in err.problems] == ["targets.aws.secret_access_key", "targets.aws.api_token"]
    for text in (str(err), repr(err), *err.problems, err.hint or ""):
        assert "AKIAIOSFODNN7EXAMPLE" not in text
        assert "8675309" not in text


def test_non_secret_flag_named_like_a_secret_is_not_a_secret(tmp_path):
    platform = load_text(tmp_path, MINIMAL + """\
    targets:
      aws:
        use_access_key: false
    """).platform

    assert platform.targets["aws"]["use_access_key"] is False


# --- messages as a whole -------------------------------------------------------------------------------------

HEAD = textwrap.dedent(MINIMAL)
BAD_STACKS = {
    "unknown key": HEAD + "servng: []\n",
    "wrong type": HEAD + "storage:\n  - name: shared\n    size_gb: lots\n",
    "not a list": HEAD + "storage: {name: shared}\n",
    "null mapping": "apiVersion: mlplat/v1\nmetadata:\n",
    "literal": HEAD + "state: {backend: mongo}\n",
    "accelerator": HEAD + "clusters:\n  - name: c\n    gpu_pools:\n      - {name: p, accelerator: tpu}\n",
    "weights": HEAD + "serving:\n  - name: s\n    paths:\n      production: {model: 'a:1', weight: 10}\n"
               "      experimental: {model: 'a:2', weight: 10}\n",
    "syntax": "apiVersion: [\n",
}


@pytest.mark.parametrize("text", BAD_STACKS.values(), ids=BAD_STACKS.keys())
def test_messages_carry_no_traceback_or_pydantic_internals(tmp_path, text):
    path, err = spec_error(tmp_path, text)

    rendered = str(err)
    for leak in ("Traceback", "errors.pydantic.dev", "https://", "pydantic", "[type=", "input_value", "Value error"):
        assert leak not in rendered
    for problem in err.problems:
        assert problem.startswith(f"{path}:")
        line, col = problem.removeprefix(f"{path}:").split(":")[:2]
        assert line.isdigit() and col.isdigit()


def test_all_problems_in_a_stack_are_reported_together(tmp_path):
    path, err = spec_error(tmp_path, """\
    apiVersion: mlplat/v2
    metadata:
      name: Demo
    servng: []
    storage:
      - name: shared
        size_gb: 0
    """)

    heads = sorted(p.split(": ")[0] + ": " + p.split(": ")[1] for p in err.problems)
    assert heads == sorted([
        f"{path}:1:13: apiVersion",
        f"{path}:3:9: metadata.name",
        f"{path}:4:1: servng",
        f"{path}:7:14: storage[0].size_gb",
    ])


# --- locations for later stages ------------------------------------------------------------------------------

LOCATED = MINIMAL + """\
    targets:
      aws:
        region: eu-west-1
    storage:
      - name: shared
    serving:
      - name: iris
        paths:
          production: {model: "iris:1"}
"""


def test_where_names_the_key_of_a_located_value(tmp_path):
    stack = load_text(tmp_path, LOCATED)
    path = tmp_path / "stack.yaml"

    assert stack.where(("serving", 0, "paths", "production", "model")) == f"{path}:12:20"
    assert stack.where(("targets", "aws", "region")) == f"{path}:6:5"
    assert stack.where(("serving", 0)) == f"{path}:10:5"


def test_where_falls_back_to_the_deepest_written_part_of_a_default_value(tmp_path):
    stack = load_text(tmp_path, LOCATED)
    path = tmp_path / "stack.yaml"

    assert stack.where(("storage", 0, "size_gb")) == f"{path}:8:5"
    assert stack.where(("state", "backend")) == f"{path}:1:1"


def test_error_builds_a_located_spec_error(tmp_path):
    stack = load_text(tmp_path, LOCATED)

    err = stack.error(("storage", 0, "name"), "not offered by this target", hint="pick another target")

    assert err.problems == [f"{tmp_path / 'stack.yaml'}:8:5: storage[0].name: not offered by this target"]
    assert err.hint == "pick another target"


class AwsSettings(BaseModel):
    """A stand-in for a target plugin's settings model."""

    model_config = ConfigDict(extra="forbid")
    region: Literal["eu-west-1", "us-east-1"]
    profile: str | None = None


def describe_settings(stack: LoadedStack, name: str) -> list[str]:
    with pytest.raises(ValidationError) as info:
        AwsSettings.model_validate(stack.platform.targets[name])
    return stack.describe(info.value, ("targets", name), AwsSettings)


def test_describe_places_target_setting_errors_under_targets_with_did_you_mean(tmp_path):
    stack = load_text(tmp_path, MINIMAL + """\
    targets:
      aws:
        regoin: eu-west-1
    """)
    path = tmp_path / "stack.yaml"

    assert sorted(describe_settings(stack, "aws")) == sorted([
        f"{path}:6:5: targets.aws.regoin: unknown key 'regoin'; did you mean 'region'?",
        f"{path}:5:3: targets.aws.region: required key 'region' is missing; add it",
    ])


def test_describe_places_a_bad_target_setting_value_at_the_value(tmp_path):
    stack = load_text(tmp_path, MINIMAL + """\
    targets:
      prod:
        region: mars
    """)

    problems = describe_settings(stack, "prod")

    assert len(problems) == 1
    assert problems[0].startswith(f"{tmp_path / 'stack.yaml'}:6:13: targets.prod.region: 'mars' is not allowed: ")
    assert "'eu-west-1'" in problems[0]
