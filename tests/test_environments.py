"""Typed variables (`variables:`, `${var:NAME}`, `--var`) and environments (`-e`, `<stack>.<env>.yaml`, `mlplat env
list/new/select`), through the CLI on the `sim` target, plus the loader's behaviour through `provisioner.spec.loads`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner import spec
from provisioner.errors import SpecError

STACK = """\
apiVersion: mlplat/v1
metadata:
  name: {name}
  description: stack of ${{var:environment}}
target: sim
targets:
  sim:
    store: cloud-${{var:environment}}
variables:
  min_nodes:
    type: integer
    default: 1
    description: Fewest nodes in the GPU pool
  max_nodes:
    type: integer
    default: 2
    description: Most nodes in the GPU pool
  size_gb: {{type: integer, default: 10}}
clusters:
  - name: train
    gpu_pools:
      - name: gpu
        accelerator: h100
        gpus_per_node: 8
        nodes: {{min: "${{var:min_nodes}}", max: "${{var:max_nodes}}"}}
storage:
  - {{name: shared, size_gb: "${{var:size_gb}}"}}
"""


class EnvProject:
    """A stack file with variables in a temp directory; each environment's sim cloud is `cloud-<env>/`."""

    def __init__(self, root: Path, name: str = "demo") -> None:
        self.root = root
        self.stack = root / "mlplat.yaml"
        self.stack.write_text(STACK.format(name=name))

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("MLPLAT_")}
        return subprocess.run([sys.executable, "-m", "provisioner.cli", *args], cwd=self.root, text=True,
                              env={**clean, "COLUMNS": "250", "NO_COLOR": "1", **env}, capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=120)

    def ok(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        result = self.run(*args, **env)
        assert result.returncode == 0, f"mlplat {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
        return result

    def fails(self, *args: str, **env: str) -> str:
        result = self.run(*args, **env)
        assert result.returncode != 0, f"mlplat {' '.join(args)} succeeded:\n{result.stdout}"
        assert "Traceback" not in result.stderr
        return " ".join(result.stderr.split())

    def pool(self, *env_args: str) -> dict:
        return json.loads(self.ok("state", "show", "train.pool.gpu", *env_args).stdout)["inputs"]

    def addresses(self, *env_args: str) -> list[str]:
        return [line.split("\t")[0] for line in self.ok("state", "list", *env_args).stdout.splitlines()]


@pytest.fixture
def project(tmp_path: Path) -> EnvProject:
    return EnvProject(tmp_path)


# -- the loader, in process --------------------------------------------------------------------------------------
def test_typed_values_defaults_and_interpolation_through_loads(tmp_path):
    text = STACK.format(name="demo").replace("  size_gb: {type: integer, default: 10}\n", """\
  size_gb: {type: integer, default: 10}
  spot: {type: boolean, default: true}
  labels: {type: map, default: {team: ml}}
  images: {type: list, default: [a, b]}
  tag: {default: v1}
""").replace("storage:", """\
registry:
  name: models
  images: [{name: "server-${var:tag}-${var:environment}"}]
storage:""")
    text = text.replace("  description: stack of ${var:environment}\n",
                        "  description: pool ${var:max_nodes} ${var:spot} ${var:images}\n  labels: ${var:labels}\n")
    loaded = spec.loads(text, tmp_path / "mlplat.yaml")
    platform = loaded.platform
    pool = platform.clusters[0].gpu_pools[0]
    assert (pool.nodes.min, pool.nodes.max) == (1, 2)  # exact references keep the integer type
    assert platform.storage[0].size_gb == 10
    assert platform.metadata.labels == {"team": "ml"}  # a map stays a map
    assert platform.metadata.description == 'pool 2 true ["a","b"]'  # inside text: written as text
    assert platform.registry.images[0].name == "server-v1-default"
    assert platform.targets["sim"]["store"] == "cloud-default"
    assert loaded.environment == "default" and platform.metadata.name == "demo"
    assert platform.variables["max_nodes"].type == "integer"
    assert loaded.variables.values["images"] == ["a", "b"]


def test_var_overrides_are_parsed_per_declared_type(tmp_path):
    text = STACK.format(name="demo").replace("  size_gb: {type: integer, default: 10}\n",
                                             "  size_gb: {type: integer, default: 10}\n  flags: {type: list}\n"
                                             "  ratio: {type: number, default: 1}\n  enabled: {type: boolean}\n")
    loaded = spec.loads(text, tmp_path / "mlplat.yaml", variables={
        "max_nodes": "3", "flags": '["x", "y"]', "ratio": "0.5", "enabled": "false"})
    assert loaded.platform.clusters[0].gpu_pools[0].nodes.max == 3
    assert loaded.variables.values["flags"] == ["x", "y"]
    assert loaded.variables.values["ratio"] == 0.5 and loaded.variables.values["enabled"] is False
    for name, value, expected in (("max_nodes", "three", "is of type integer: 'three' is not a whole number"),
                                  ("enabled", "maybe", "is of type boolean: 'maybe' is not true or false"),
                                  ("flags", "{a: 1}", "must be a list, got a mapping")):
        with pytest.raises(SpecError) as err:
            spec.loads(text, tmp_path / "mlplat.yaml", variables={"flags": "[]", "enabled": "true", name: value})
        assert f"--var {name}={value}: variable {name}" in err.value.message and expected in err.value.message


def test_declaration_mistakes_are_located_in_the_stack_file(tmp_path):
    text = """\
apiVersion: mlplat/v1
metadata: {name: demo}
variables:
  Bad-Name: {}
  environment: {type: string}
  count: {type: integer, default: "3"}
  region: {type: strin}
  secretive: {default: "${env:HOME}"}
"""
    with pytest.raises(SpecError) as err:
        spec.loads(text, tmp_path / "s.yaml")
    problems = err.value.problems
    assert any(p.startswith(f"{tmp_path / 's.yaml'}:4:3: variables.Bad-Name: invalid variable name") for p in problems)
    assert any(":5:3: variables.environment: 'environment' is built in" in p for p in problems)
    assert any(":6:26: variables.count.default: default must be a whole number (integer), got the text '3'" in p
               for p in problems)
    assert any(":7:18: variables.region.type:" in p and "'strin' is not allowed" in p for p in problems)
    assert any(":8:24: variables.secretive.default: a variable's default is a plain value" in p for p in problems)


# -- through the CLI -----------------------------------------------------------------------------------------------
def test_var_override_and_a_bad_value_through_the_cli(project):
    data = json.loads(project.ok("validate", "--json", "--var", "max_nodes=4", "--var", "size_gb=20").stdout)
    assert data["valid"] and data["stack"] == "demo" and data["environment"] == "default"
    message = project.fails("validate", "--var", "max_nodes=lots")
    assert "--var max_nodes=lots: variable max_nodes is of type integer: 'lots' is not a whole number" in message
    message = project.fails("validate", "--var", "max_node=3")
    assert "mlplat.yaml declares no variable 'max_node'; did you mean 'max_nodes'?" in message
    message = project.fails("validate", "--var", "environment=prod")
    assert "'environment' is built in" in message
    # a value the component refuses is reported where the reference is
    message = project.fails("validate", "--var", "min_nodes=5")
    assert "mlplat.yaml:25:9: clusters[0].gpu_pools[0].nodes: nodes.min (5) is greater than nodes.max (2)" in message


def test_unknown_variable_reference_is_located_with_did_you_mean(project):
    project.stack.write_text(project.stack.read_text().replace("${var:size_gb}", "${var:size_g}"))
    message = project.fails("preview")
    assert "mlplat.yaml:27:29: storage[0].size_gb: unknown variable 'size_g' in ${var:size_g}; did you mean " \
           "${var:size_gb}?" in message


def test_dev_and_prod_side_by_side_each_with_its_own_state(project):
    assert "wrote mlplat.dev.yaml" in project.ok("env", "new", "dev").stdout
    project.ok("env", "new", "prod")
    prod = project.root / "mlplat.prod.yaml"
    prod.write_text(prod.read_text().replace("max_nodes: 2", "max_nodes: 8"))

    project.ok("apply", "-e", "dev", "--yes")
    project.ok("apply", "--env", "prod", "--yes", "--var", "size_gb=50")
    assert project.pool("-e", "dev")["max"] == 2 and project.pool("-e", "prod")["max"] == 8
    expected = ["shared.filesystem.main", "train.cluster.main", "train.pool.gpu"]
    assert project.addresses("-e", "dev") == project.addresses("-e", "prod") == expected
    db = project.root / ".mlplat"
    assert (db / "demo-dev.db").is_file() and (db / "demo-prod.db").is_file() and not (db / "demo.db").exists()
    assert (project.root / "cloud-dev" / "objects").is_dir() and (project.root / "cloud-prod" / "objects").is_dir()
    assert json.loads(project.ok("output", "--json", "-e", "prod").stdout)  # outputs per environment

    listing = json.loads(project.ok("env", "list", "--json").stdout)
    by_name = {e["name"]: e for e in listing["environments"]}
    assert list(by_name) == ["default", "dev", "prod"] and listing["selected"] == "default"
    assert by_name["prod"] == {"name": "prod", "selected": False, "file": "mlplat.prod.yaml", "stack": "demo-prod",
                               "has_state": True, "resources": 3}
    assert by_name["default"]["has_state"] is False and by_name["default"]["file"] is None
    assert not (db / "demo.db").exists()  # listing does not create a state
    assert project.addresses() == []  # the default environment has nothing

    # a change in one environment leaves the other alone
    project.ok("apply", "-e", "dev", "--yes", "--var", "max_nodes=3")
    assert project.pool("-e", "dev")["max"] == 3 and project.pool("-e", "prod")["max"] == 8
    project.ok("destroy", "-e", "dev", "--yes")
    assert project.addresses("-e", "dev") == [] and len(project.addresses("-e", "prod")) == 3
    rows = [line.split() for line in project.ok("env", "list").stdout.splitlines()]
    assert rows == [["*", "default", "demo", "no", "state"], ["dev", "demo-dev", "no", "state", "(mlplat.dev.yaml)"],
                    ["prod", "demo-prod", "3", "resources", "recorded", "(mlplat.prod.yaml)"]]


def test_env_select_mlplat_env_and_e_precedence(project):
    project.ok("env", "new", "staging")
    message = project.fails("env", "select", "stagign")
    assert "environment 'stagign' has no values file" in message and "did you mean 'staging'?" in message
    assert project.ok("env", "select", "staging").stdout == "selected environment staging\n"
    assert (project.root / ".mlplat" / "demo.environment").read_text() == "staging\n"

    def stack_name(*args: str, **env: str) -> str:
        return json.loads(project.ok("validate", "--json", *args, **env).stdout)["stack"]

    assert stack_name() == "demo-staging"  # the selection
    assert stack_name(MLPLAT_ENV="default") == "demo"  # $MLPLAT_ENV over the selection
    assert stack_name("-e", "staging", MLPLAT_ENV="default") == "demo-staging"  # -e over both
    assert "* staging" in project.ok("env", "list").stdout
    assert json.loads(project.ok("env", "list", "--json", MLPLAT_ENV="default").stdout)["selected"] == "default"
    message = project.fails("validate", MLPLAT_ENV="nope")
    assert "environment 'nope' (chosen by $MLPLAT_ENV) has no values file" in message
    message = project.fails("validate", MLPLAT_ENV="Bad_Env")
    assert "$MLPLAT_ENV 'Bad_Env' is not a valid environment name" in message
    project.ok("env", "select", "default")
    assert stack_name() == "demo" and not (project.root / ".mlplat" / "demo.environment").exists()


def test_env_new_writes_every_variable_and_refuses_an_existing_file(project):
    project.stack.write_text(project.stack.read_text().replace(
        "  size_gb: {type: integer, default: 10}\n", "  size_gb: {type: integer, default: 10}\n"
        "  region: {description: Where it runs}\n  zones: {type: list, default: [a, b]}\n"))
    project.ok("env", "new", "prod")
    written = (project.root / "mlplat.prod.yaml").read_text()
    assert "  # Most nodes in the GPU pool (integer)\n  max_nodes: 2\n" in written
    assert "  # Where it runs (string); required: no default, set a value\n  region:\n" in written
    assert '  zones: ["a", "b"]\n' in written
    message = project.fails("validate", "-e", "prod")  # region still has no value
    assert "mlplat.yaml:19:3: variables.region: variable region (string) has no value in environment 'prod': it " \
           "has no default; set it with --var region=… or in mlplat.prod.yaml" in message
    assert json.loads(project.ok("validate", "--json", "-e", "prod", "--var", "region=eu").stdout)["valid"]

    message = project.fails("env", "new", "prod")
    assert "mlplat.prod.yaml already exists" in message
    assert "the default environment has no values file" in project.fails("env", "new", "default")
    assert "'Prod!' is not a valid environment name" in project.fails("env", "new", "Prod!")
    message = project.fails("validate", "-e", "prd")
    assert "mlplat.prd.yaml: environment 'prd' has no values file" in message and "did you mean 'prod'?" in message


def test_values_file_errors_are_located_in_the_values_file(project):
    values = project.root / "mlplat.prod.yaml"
    values.write_text("variables:\n  max_nodes: many\n  size_g: 5\n  environment: x\n")
    message = project.fails("preview", "-e", "prod")
    assert "mlplat.prod.yaml:2:14: variables.max_nodes: variable max_nodes is of type integer: the value must be a " \
           "whole number (integer), got the text 'many'" in message
    assert "mlplat.prod.yaml:3:3: variables.size_g: the stack declares no variable 'size_g'; did you mean " \
           "'size_gb'?" in message
    assert "mlplat.prod.yaml:4:3: variables.environment: 'environment' is built in" in message
    values.write_text("variables:\n  max_nodes: [1\n")
    assert "mlplat.prod.yaml:3:1: YAML syntax error" in project.fails("preview", "-e", "prod")
    values.write_text("variable:\n  max_nodes: 3\n")
    assert "mlplat.prod.yaml:1:1: variable: unknown key 'variable' (did you mean 'variables'?)" in \
        project.fails("preview", "-e", "prod")


def test_secret_looking_keys_may_not_come_from_a_variable(project):
    secret_value = "plain-text-key-0123456789"
    project.stack.write_text(project.stack.read_text().replace(
        "  size_gb: {type: integer, default: 10}\n",
        f"  size_gb: {{type: integer, default: 10}}\n  key: {{default: {secret_value}}}\n") + """\
registry:
  name: models
  models: [{name: iris, version: "1", artifact: models/iris.json}]
serving:
  - name: iris
    auth: key
    api_key: ${var:key}
    paths:
      production: {model: "iris:1"}
""")
    result = project.run("validate")
    message = " ".join(result.stderr.split())
    assert result.returncode != 0
    assert "mlplat.yaml:35:14: serving[0].api_key: a secret may not come from a variable" in message
    assert "write ${secret:NAME} and export NAME instead" in message
    assert secret_value not in result.stderr + result.stdout
    # the same in a target's settings, refused before anything is substituted
    project.stack.write_text(project.stack.read_text().replace("    store: cloud-${var:environment}\n",
                                                               "    store: cloud-${var:environment}\n"
                                                               "    password: ${var:key}\n"))
    message = project.fails("validate")
    assert "targets.sim.password: a secret may not come from a variable" in message


def test_saved_plan_is_applied_in_the_environment_it_was_made_in(project):
    project.ok("env", "new", "prod")
    project.ok("preview", "-e", "prod", "--var", "max_nodes=5", "-o", "plan.json")
    saved = json.loads((project.root / "plan.json").read_text())
    assert saved["stack"] == "demo-prod" and saved["environment"] == "prod"
    assert saved["variables"] == {"max_nodes": "5"}
    assert "made in environment 'prod', not 'default'" in project.fails("apply", "plan.json", "-e", "default")
    assert "made with other --var values (max_nodes=5)" in project.fails("apply", "plan.json", "--var",
                                                                         "max_nodes=6")
    project.ok("apply", "plan.json")  # no -e, nothing selected: the plan's environment
    assert project.pool("-e", "prod")["max"] == 5 and project.addresses() == []


def test_stack_name_too_long_for_an_environment(tmp_path):
    project = EnvProject(tmp_path, name="a" * 36)
    project.ok("env", "new", "prod")
    assert project.ok("validate").returncode == 0
    message = project.fails("validate", "-e", "prod")
    assert f"mlplat.yaml:3:9: metadata.name: in environment 'prod' the stack is named '{'a' * 36}-prod' (41 " \
           "characters), and stack names have at most 40" in message


def test_explicit_sqlite_state_file_and_cost_per_environment(project):
    project.stack.write_text(project.stack.read_text().replace("target: sim\n", "target: sim\nstate:\n"
                                                               "  path: states/main.db\n"))
    project.ok("env", "new", "prod")
    project.ok("apply", "-e", "prod", "--yes")
    assert (project.root / "states" / "main-prod.db").is_file() and not (project.root / "states/main.db").exists()
    one = json.loads(project.ok("cost", "--compare", "aws", "--json", "-e", "prod").stdout)
    two = json.loads(project.ok("cost", "--compare", "aws", "--json", "-e", "prod", "--var", "min_nodes=2").stdout)
    hourly = one["compare"]["aws"]["components"][0]["hourly_usd"]
    assert hourly > 0 and two["compare"]["aws"]["components"][0]["hourly_usd"] == pytest.approx(2 * hourly)


def test_the_doc_example_runs(tmp_path):
    """docs/environments.md: its stack file and prod values file load as the page says."""
    import re

    from conftest import REPO

    blocks = re.findall(r"^```yaml\n(.*?)^```$", (REPO / "docs" / "environments.md").read_text(), re.S | re.M)
    (tmp_path / "platform.yaml").write_text(blocks[0])
    (tmp_path / "platform.prod.yaml").write_text(blocks[1])
    project = EnvProject.__new__(EnvProject)
    project.root, project.stack = tmp_path, tmp_path / "platform.yaml"
    default = json.loads(project.ok("validate", "--json", "-f", "platform.yaml").stdout)
    assert default["stack"] == "platform"
    prod = spec.load(tmp_path / "platform.yaml", environment="prod", variables={"max_nodes": "12"}).platform
    pool = prod.clusters[0].gpu_pools[0]
    assert (prod.metadata.name, pool.nodes.max, pool.spot, prod.storage[0].size_gb) == ("platform-prod", 12, False,
                                                                                       500)
    assert prod.targets["sim"]["store"] == "cloud-prod"
    project.stack.write_text(blocks[0].replace("${var:shared_gb}", "${var:shared_g}"))
    assert "platform.yaml:30:14: storage[0].size_gb: unknown variable 'shared_g' in ${var:shared_g}; did you mean " \
           "${var:shared_gb}?" in project.fails("validate", "-f", "platform.yaml")
    (tmp_path / "platform.prod.yaml").write_text("variables:\n  max_nodes:\n")
    project.stack.write_text(blocks[0].replace("    default: 1\n", ""))
    assert "platform.yaml:10:3: variables.max_nodes: variable max_nodes (integer) has no value in environment " \
           "'prod': it has no default; set it with --var max_nodes=… or in platform.prod.yaml" in \
           project.fails("validate", "-f", "platform.yaml", "-e", "prod")


def test_fmt_keeps_variables_after_state_and_needs_no_values(project):
    text = project.stack.read_text().replace("  size_gb: {type: integer, default: 10}\n",
                                             "  size_gb: {type: integer}\n")
    variables = text[text.index("variables:"):text.index("clusters:")]
    project.stack.write_text(text.replace(variables, "") + variables)  # variables: written last
    result = project.ok("fmt")  # size_gb has no value: fmt formats anyway
    assert result.stdout == "formatted mlplat.yaml\n"
    formatted = project.stack.read_text()
    assert formatted.index("targets:") < formatted.index("variables:") < formatted.index("clusters:")
    assert "size_gb: {type: integer}" in formatted
