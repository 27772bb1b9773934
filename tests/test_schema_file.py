"""The JSON Schema for editors: what `mlplat schema` prints is the committed copy and the package copy, it describes
every key, it knows each target type's settings, the accelerator catalog and the raw resource kinds, and it agrees
with the engine: the example stacks validate, files the engine refuses do not."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REPO, STACKS, require_module, run_mlplat

jsonschema = require_module("jsonschema", reason="the test extra installs it: pip install -e '.[test]'")

QUICKSTART = STACKS / "quickstart.yaml"


@pytest.fixture(scope="module")
def printed() -> str:
    return run_mlplat("schema", cwd=REPO).stdout


@pytest.fixture(scope="module")
def schema(printed: str) -> dict[str, Any]:
    return json.loads(printed)


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> Any:
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture(scope="module")
def draft7(schema: dict[str, Any]) -> Any:
    """Editors' validators are draft-07 at heart (a $ref's sibling keywords ignored): the schema must work so too."""
    return jsonschema.Draft7Validator({**schema, "$schema": "http://json-schema.org/draft-07/schema#"})


def errors(validator: Any, data: Any) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(data)]


def quickstart() -> dict[str, Any]:
    return yaml.safe_load(QUICKSTART.read_text())


def with_targets(targets: dict[str, Any]) -> dict[str, Any]:
    data = quickstart()
    data["targets"] = targets
    return data


# -- one schema, three places -----------------------------------------------------------------------------------
def test_committed_and_packaged_copies_are_what_mlplat_schema_prints(printed: str, schema: dict[str, Any]) -> None:
    committed = (REPO / "schema" / "mlplat.schema.json").read_text(encoding="utf-8")
    packaged = (REPO / "provisioner" / "spec" / "mlplat.schema.json").read_text(encoding="utf-8")
    assert printed == committed, "regenerate it: mlplat schema --write"
    assert printed == packaged, "regenerate it: mlplat schema --write"
    assert {"apiVersion", "metadata", "serving", "clusters", "storage", "registry"} <= set(schema["properties"])
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].startswith("urn:mlplat:") and schema["title"] == "mlplat stack file"


def test_path_names_the_installed_copy_outside_a_checkout(tmp_path: Path, printed: str) -> None:
    shown = run_mlplat("schema", "--path", cwd=tmp_path).stdout.strip()
    path = Path(shown)
    assert path.is_absolute() and path.name == "mlplat.schema.json", shown
    assert path.read_text(encoding="utf-8") == printed
    # it is package data, so a wheel carries it (the editable install here reads it from the source tree)
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "mlplat.schema.json" in package_data["provisioner.spec"]
    assert path.parent.name == "spec" and path.parent.parent.name == "provisioner"


def test_write_regenerates_both_copies(tmp_path: Path, printed: str) -> None:
    """`mlplat schema --write` is the one command that refreshes them (run here on copies of the files)."""
    code = textwrap.dedent(f"""\
        from pathlib import Path
        import provisioner.schema as s
        s.PACKAGED = Path({str(tmp_path / 'pkg.json')!r})
        s.COMMITTED = Path({str(tmp_path / 'repo' / 'schema' / 'mlplat.schema.json')!r})
        (Path({str(tmp_path)!r}) / 'repo' / 'schema').mkdir(parents=True)
        (Path({str(tmp_path)!r}) / 'repo' / 'pyproject.toml').write_text('')  # a source checkout
        print([str(p) for p in s.write()])
        """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "pkg.json" in result.stdout and "mlplat.schema.json" in result.stdout
    assert (tmp_path / "pkg.json").read_text() == printed
    assert (tmp_path / "repo" / "schema" / "mlplat.schema.json").read_text() == printed


# -- descriptions ------------------------------------------------------------------------------------------------
def _undescribed(node: Any, where: str) -> list[str]:
    """Properties without a description, everywhere but inside `if` (a condition, not a key a user writes)."""
    missing: list[str] = []
    if isinstance(node, dict):
        for key, prop in (node.get("properties") or {}).items():
            if isinstance(prop, dict) and not prop.get("description"):
                missing.append(f"{where}.{key}")
        for key, value in node.items():
            if key != "if":
                missing += _undescribed(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            missing += _undescribed(value, f"{where}/{i}")
    return missing


def test_every_property_has_a_description(schema: dict[str, Any]) -> None:
    assert _undescribed(schema, "#") == []
    core = {"Platform", "Metadata", "Cluster", "GpuPool", "Storage", "Registry", "Serving", "ServingPath", "Timeouts"}
    for name in core & set(schema["$defs"]):
        assert schema["$defs"][name].get("description"), f"$defs/{name} has no description"


# -- accelerators ------------------------------------------------------------------------------------------------
def test_accelerators_are_the_catalog_enum_and_every_accepted_spelling_validates(validator: Any,
                                                                                  schema: dict[str, Any]) -> None:
    from provisioner import catalog

    accelerator = schema["$defs"]["Accelerator"]
    assert accelerator["anyOf"][0]["enum"] == catalog.names()
    pool = schema["$defs"]["GpuPool"]["properties"]["accelerator"]
    path = schema["$defs"]["ServingPath"]["properties"]["accelerator"]
    assert {"$ref": "#/$defs/Accelerator"} in pool["anyOf"] and {"$ref": "#/$defs/Accelerator"} in path["anyOf"]

    def pool_with(name: str) -> dict[str, Any]:
        data = quickstart()
        data["clusters"] = [{"name": "c", "gpu_pools": [{"name": "p", "accelerator": name, "gpus_per_node": 1}]}]
        return data

    spellings = [*catalog._spellings(), "H100", "NVIDIA H100 80GB", "nvidia_a100", " Tesla-T4 ", "A100--80GB"]
    for spelling in spellings:
        catalog.normalize(spelling)  # the engine accepts it ...
        assert errors(validator, pool_with(spelling)) == [], spelling  # ... and so does the schema
    for wrong in ("h999", "nvidia", "a100-60gb", "h100x", "", "t 4 x"):
        with pytest.raises(Exception, match="unknown accelerator"):
            catalog.normalize(wrong)
        assert errors(validator, pool_with(wrong)), wrong


# -- targets -----------------------------------------------------------------------------------------------------
def test_each_target_type_has_its_settings_model_plus_type_and_timeouts(schema: dict[str, Any]) -> None:
    from provisioner import plugins

    types = plugins.target_types()
    assert {"local", "sim", "aws", "gcp", "azure", "onprem"} <= set(types)
    targets = schema["properties"]["targets"]
    for name, target in types.items():
        node = schema["$defs"][f"target.{name}"]
        fields = {f.alias or key for key, f in target.settings_model.model_fields.items()}
        assert set(node["properties"]) == fields | {"type", "timeouts"}, name
        assert node["additionalProperties"] is False
        assert node["properties"]["type"]["const"] == name
        assert name in targets["properties"]  # `targets: {aws: {...}}` without `type:`
    assert targets["additionalProperties"] == {"$ref": "#/$defs/target"}


def test_target_settings_are_checked_by_type(validator: Any) -> None:
    ok = [
        {"local": {}},
        {"aws": {"region": "us-east-1", "timeouts": {"create": "45m", "aws.endpoint": {"create": 90}}}},
        {"prod": {"type": "aws", "region": "eu-west-1", "bucket": "${env:MLPLAT_AWS_BUCKET}"}},
        {"aws": {"type": "sim", "latency_ms": 5}},  # a target named aws of type sim
        {"cloud": {"type": "sim", "throttle_first": 2, "monitoring": ["capture"]}},
        {"mine": {"type": "third-party", "anything": 1}},  # a type this schema does not know: not checked
    ]
    for targets in ok:
        assert errors(validator, with_targets(targets)) == [], targets
    wrong = [
        ({"aws": {"region": "us-east-1", "regoin": "x"}}, "regoin"),  # unknown key
        ({"aws": {"profile": "p"}}, "region"),  # required setting missing
        ({"prod": {"type": "aws", "region": "us-east-1", "latency_ms": 5}}, "latency_ms"),  # a sim key on aws
        ({"aws": {"type": "sim", "region": "us-east-1"}}, "region"),  # an aws key on a sim target named aws
        ({"local": {"timeouts": {"create": "soon"}}}, "soon"),
        ({"aws": {"region": "Frankfurt"}}, "Frankfurt"),
        ({"gcp": {"project": "my-project", "region": "us-central1", "filestore_tier": "PREMIUM"}}, "PREMIUM"),
        ({"sim": {"latency_ms": "fast"}}, "fast"),
    ]
    for targets, word in wrong:
        found = errors(validator, with_targets(targets))
        assert any(word in e for e in found), (targets, found)


def test_the_engine_refuses_what_the_schema_refuses(tmp_path: Path, validator: Any) -> None:
    data = with_targets({"local": {"hots": "127.0.0.1"}})
    data["clusters"][0]["gpu_pools"][0]["accelerator"] = "h999"
    assert len(errors(validator, data)) == 2
    (tmp_path / "stack.yaml").write_text(yaml.safe_dump(data))
    result = run_mlplat("validate", "-f", "stack.yaml", cwd=tmp_path, check=False)
    assert result.returncode != 0 and "h999" in result.stderr, result.stderr


# -- whole files -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(STACKS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_stack_validates(validator: Any, draft7: Any, path: Path) -> None:
    text = path.read_text()
    assert "# yaml-language-server: $schema=../schema/mlplat.schema.json" in text, "editors find the schema by it"
    assert errors(validator, yaml.safe_load(text)) == []
    assert errors(draft7, yaml.safe_load(text)) == []


def _broken(change: str) -> dict[str, Any]:
    data = quickstart()
    if change == "unknown top-level key":
        data["clusterz"] = []
    elif change == "no metadata":
        del data["metadata"]
    elif change == "wrong apiVersion":
        data["apiVersion"] = "mlplat/v2"
    elif change == "gpus as text":
        data["clusters"][0]["gpu_pools"][0]["gpus_per_node"] = "two"
    elif change == "bad name":
        data["serving"][0]["name"] = "Iris_Endpoint"
    elif change == "unknown storage kind":
        data["storage"] = [{"name": "s", "kind": "ceph"}]
    elif change == "weight over 100":
        data["serving"][0]["paths"]["production"]["weight"] = 120
    elif change == "unknown key in a path":
        data["serving"][0]["paths"]["production"]["wieght"] = 80
    return data


@pytest.mark.parametrize("change", ["unknown top-level key", "no metadata", "wrong apiVersion", "gpus as text",
                                    "bad name", "unknown storage kind", "weight over 100", "unknown key in a path"])
def test_a_wrong_file_does_not_validate(validator: Any, draft7: Any, change: str) -> None:
    assert errors(validator, _broken(change)), change
    assert errors(draft7, _broken(change)), change


def test_what_the_engine_resolves_or_converts_validates_too(tmp_path: Path, schema: dict[str, Any],
                                                             validator: Any) -> None:
    """References are resolved before the engine checks a value (a whole ${var:NAME} keeps its type), a single
    front door needs no list, a YAML number is a version's text: the schema accepts what `mlplat validate` does."""
    data = quickstart()
    data["metadata"]["name"] = "${env:STACK_NAME}"
    data["serving"][0]["front_door"] = "local"
    data["registry"]["models"][0]["version"] = 3
    data["serving"][0]["paths"]["production"]["model"] = "iris:3"
    if "variables" in schema["properties"]:
        data["variables"] = {"replicas": {"type": "integer", "default": 1, "description": "per path"}}
        data["serving"][0]["paths"]["production"]["replicas"] = "${var:replicas}"
    assert errors(validator, data) == []
    shutil.copytree(STACKS / "models", tmp_path / "models")
    (tmp_path / "stack.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    run_mlplat("validate", "-f", "stack.yaml", cwd=tmp_path, env={"STACK_NAME": "refs"})
    data["serving"][0]["paths"]["production"]["replicas"] = "${nope:replicas}"
    assert errors(validator, data), "only the schemes the loader knows"


# -- raw resource kinds ------------------------------------------------------------------------------------------
TOY_PLUGIN = '''\
from pydantic import BaseModel, ConfigDict, Field

from provisioner.plugins import hookimpl
from provisioner.target import Target


class ToySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    zone: str = Field("z1", description="Where the toy lives")


class Thing(BaseModel):
    """Inputs of a schematoy.thing."""

    model_config = ConfigDict(extra="forbid")
    size: int = Field(ge=1, description="How big")
    label: str = Field("x", pattern="^[a-z]+$", description="What it is called")


class Bare(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToyTarget(Target):
    name = "schematoy"
    description = "a toy for the schema test"
    settings_model = ToySettings
    raw_kinds = {"schematoy.thing": Thing, "schematoy.bare": Bare}


@hookimpl
def mlplat_targets():
    return [ToyTarget]
'''


def test_raw_kind_inputs_follow_the_kind_s_model(tmp_path: Path, schema: dict[str, Any]) -> None:
    (tmp_path / "schematoy_plugin.py").write_text(TOY_PLUGIN)
    env = {"MLPLAT_PLUGINS": "schematoy_plugin", "PYTHONPATH": str(tmp_path)}
    toy = json.loads(run_mlplat("schema", cwd=tmp_path, env=env).stdout)
    if "resources" not in toy["properties"]:
        pytest.skip("the stack file has no resources: yet")
    assert "target.schematoy" in toy["$defs"] and "schematoy" in toy["properties"]["targets"]["properties"]
    check = jsonschema.Draft202012Validator(toy)

    def with_resource(**resource: Any) -> dict[str, Any]:
        data = quickstart()
        data["targets"] = {"schematoy": {}}
        data["resources"] = [{"name": "r1", "kind": "schematoy.thing", "target": "schematoy", **resource}]
        return data

    assert errors(check, with_resource(inputs={"size": 3, "label": "abc"})) == []
    assert errors(check, with_resource(inputs={"size": "${resource:r0.id}"})) == []
    assert errors(check, with_resource(kind="schematoy.bare", inputs={})) == []
    assert errors(check, with_resource(kind="other.kind", inputs={"free": "form"})) == []  # not this schema's
    for inputs in ({"size": 0}, {"size": "big"}, {"size": 1, "colour": "red"}, {"label": "abc"}, {"size": 1,
                                                                                                   "label": "A!"}):
        assert errors(check, with_resource(inputs=inputs)), inputs
    assert errors(check, with_resource()), "inputs with a required key must be given"
    assert errors(check, with_resource(kind="schematoy.bare", inputs={"x": 1}))
    assert _undescribed(toy, "#") == []


def test_without_raw_kinds_inputs_are_free_form(monkeypatch: pytest.MonkeyPatch) -> None:
    from provisioner import plugins
    from provisioner.schema import build

    for target in plugins.target_types().values():
        monkeypatch.setattr(target, "raw_kinds", {})
    bare = build()
    if "RawResource" not in bare["$defs"]:
        pytest.skip("the stack file has no resources: yet")
    assert "allOf" not in bare["$defs"]["RawResource"]
    assert not [name for name in bare["$defs"] if name.startswith("inputs.")]
    check = jsonschema.Draft202012Validator(bare)
    data = quickstart()
    data["resources"] = [{"name": "r1", "kind": "any.kind", "inputs": {"whatever": [1, 2]}}]
    assert errors(check, data) == []
    data["resources"][0]["kind"] = "no-dot"
    assert errors(check, data)


# -- start-up ----------------------------------------------------------------------------------------------------
def test_help_and_validate_do_not_import_the_schema_generator() -> None:
    for argv in (["mlplat", "--help"], ["mlplat", "validate", "-f", str(QUICKSTART)]):
        code = (f"import sys\nfrom provisioner.cli import main\nsys.argv = {argv!r}\n"
                "try:\n    main()\nexcept SystemExit:\n    pass\n"
                "loaded = [m for m in ('provisioner.schema', 'jsonschema') if m in sys.modules]\n"
                "assert not loaded, loaded\n")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
        assert result.returncode == 0, (argv, result.stderr)

