"""Modules (issue 17): a stack file's `include:` adds the components of other files, and every mistake in a module
is reported at the module's file:line:col with the include site (`(included from stack.yaml:L:C)`).

Positions asserted below are counted by hand from the YAML written in each test (line 1 is the first line after
`dedent`, column 1 the first character).
"""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path

import pytest

from provisioner.errors import SpecError
from provisioner.spec import load

from conftest import REPO, STACKS, run_mlplat

STACK = """\
    apiVersion: mlplat/v1
    metadata:
      name: modular
    target: local
    include:
      - modules/serving.yaml
    clusters:
      - name: train
        gpu_pools:
          - {name: cpu, accelerator: cpu}
"""
SERVING_MODULE = """\
    # the model registry and its endpoint
    registry:
      name: models
      models:
        - {name: iris, version: "1", artifact: models/iris-v1.json}
        - {name: iris, version: "2", artifact: models/iris-v2.json}
    serving:
      - name: iris
        paths:
          production: {model: "iris:1", weight: 80}
          experimental: {model: "iris:2", weight: 20}
"""


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """stack.yaml including modules/serving.yaml, whose model artifacts lie beside it (modules/models/)."""
    write(tmp_path, "stack.yaml", STACK)
    write(tmp_path, "modules/serving.yaml", SERVING_MODULE)
    shutil.copytree(STACKS / "models", tmp_path / "modules" / "models")
    return tmp_path


def problems(stack: Path) -> list[str]:
    with pytest.raises(SpecError) as info:
        load(stack)
    return info.value.problems


def only_problem(stack: Path) -> str:
    found = problems(stack)
    assert len(found) == 1, found
    return found[0]


# -- merging -------------------------------------------------------------------------------------------------------
def test_module_components_follow_the_stacks_own_with_paths_relative_to_the_module(project: Path):
    loaded = load(project / "stack.yaml")
    platform = loaded.platform
    assert [c.name for c in platform.components()] == ["train", "models", "iris"]
    assert platform.include == ["modules/serving.yaml"]
    # relative to the module when written; relative to the stack file once merged (what targets read)
    assert [m.artifact for m in platform.registry.models] == ["modules/models/iris-v1.json",
                                                              "modules/models/iris-v2.json"]
    module = project / "modules" / "serving.yaml"
    assert loaded.where(("serving", 0, "paths", "experimental")) == f"{module}:11:7"
    assert loaded.where(("registry", "models", 1)) == f"{module}:6:7"
    assert loaded.where(("clusters", 0, "name")) == f"{project / 'stack.yaml'}:8:5"
    assert loaded.problem(("serving", 0, "name"), "x") == \
        f"{module}:8:5: serving[0].name: x (included from {project / 'stack.yaml'}:6:5)"


def test_nested_include_is_relative_to_the_module_and_keeps_the_include_chain(tmp_path: Path):
    stack = write(tmp_path, "stack.yaml", STACK.replace("modules/serving.yaml", "modules/all.yaml"))
    write(tmp_path, "modules/all.yaml", """\
        storage:
          - {name: shared, size_gb: 5}
        include: [parts/more.yaml]
    """)
    write(tmp_path, "modules/parts/more.yaml", """\
        storage:
          - {name: scratch, size_gb: -1}
    """)
    problem = only_problem(stack)
    more, all_ = tmp_path / "modules/parts/more.yaml", tmp_path / "modules/all.yaml"
    assert problem.startswith(f"{more}:2:30: storage[1].size_gb: ")
    assert problem.endswith(f"(included from {all_}:3:11, from {tmp_path / 'stack.yaml'}:6:5)")
    write(tmp_path, "modules/parts/more.yaml", "storage:\n  - {name: scratch, size_gb: 1}\n")
    assert [s.name for s in load(stack).platform.storage] == ["shared", "scratch"]


def test_env_and_secret_references_resolve_inside_a_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    stack = write(tmp_path, "stack.yaml", STACK)
    write(tmp_path, "modules/serving.yaml", """\
        storage:
          - name: shared
            size_gb: 7
            mount_path: ${env:MODULE_MOUNT}
        serving:
          - name: iris
            auth: key
            api_key: ${secret:MODULE_KEY}
            paths:
              production: {model: "iris:1"}
    """)
    monkeypatch.setenv("MODULE_MOUNT", "/mnt/from-env")
    monkeypatch.setenv("MODULE_KEY", "k" * 20)
    platform = load(stack).platform
    assert platform.storage[0].mount_path == "/mnt/from-env"
    assert platform.serving[0].api_key == "k" * 20
    monkeypatch.delenv("MODULE_MOUNT")
    module = tmp_path / "modules/serving.yaml"
    assert only_problem(stack) == (f"{module}:4:17: storage[0].mount_path: environment variable MODULE_MOUNT is "
                                   f"not set (included from {tmp_path / 'stack.yaml'}:6:5)")
    module.write_text(module.read_text().replace("${env:MODULE_MOUNT}", "/mnt").replace("${secret:MODULE_KEY}",
                                                                                      "inline-key-0123456789"))
    assert only_problem(stack) == (f"{module}:8:5: serving[0].api_key: secrets may not be written in the stack file; "
                                   "write ${secret:NAME} and export NAME instead (included from "
                                   f"{tmp_path / 'stack.yaml'}:6:5)")


def test_stack_variables_fill_module_values_and_an_unknown_one_is_located_in_the_module(tmp_path: Path):
    stack = write(tmp_path, "stack.yaml", STACK + """\
    variables:
      shared_size: {type: integer, default: 12}
    """)
    module = write(tmp_path, "modules/serving.yaml", """\
        storage:
          - name: shared
            size_gb: ${var:shared_size}
    """)
    assert load(stack, variables={"shared_size": "30"}).platform.storage[0].size_gb == 30
    module.write_text(module.read_text().replace("shared_size", "shared_sise"))
    problem = only_problem(stack)  # line 3 of the module: at the key or at the value
    assert re.fullmatch(re.escape(f"{module}:3:") + r"(5|14)" + re.escape(
        ": storage[0].size_gb: unknown variable 'shared_sise' in ${var:shared_sise}; did you mean "
        f"${{var:shared_size}}? (included from {stack}:6:5)"), problem), problem


# -- located errors --------------------------------------------------------------------------------------------
def test_unknown_key_in_a_module_item_names_the_module_and_the_include_site(project: Path):
    module = project / "modules/serving.yaml"
    module.write_text(module.read_text().replace("    paths:", "    pahts:"))
    found = problems(project / "stack.yaml")
    assert f"{module}:9:5: serving[0].pahts: unknown key 'pahts'; did you mean 'paths'? " \
           f"(included from {project / 'stack.yaml'}:6:5)" in found


def test_bad_value_in_a_module_is_located_in_the_module(project: Path):
    module = project / "modules/serving.yaml"
    module.write_text(module.read_text().replace('"iris:2"', '"iris-2"'))
    assert only_problem(project / "stack.yaml") == (
        f"{module}:11:29: serving[0].paths.experimental.model: invalid model reference 'iris-2': write "
        f"name:version, e.g. iris:1 (included from {project / 'stack.yaml'}:6:5)")


def test_yaml_syntax_error_and_duplicate_key_in_a_module(project: Path):
    module = project / "modules/serving.yaml"
    module.write_text("serving:\n  - name: [iris\n")
    problem = only_problem(project / "stack.yaml")
    assert problem.startswith(f"{module}:3:1: YAML syntax error: ")
    assert problem.endswith(f"(included from {project / 'stack.yaml'}:6:5)")
    module.write_text("storage:\n  - name: a\n    name: b\n")
    assert only_problem(project / "stack.yaml") == (
        f"{module}:3:5: storage[0].name: duplicate key (first given on line 2); keep one "
        f"(included from {project / 'stack.yaml'}:6:5)")


def test_missing_module_file_suggests_the_nearest(project: Path):
    stack = project / "stack.yaml"
    stack.write_text(stack.read_text().replace("modules/serving.yaml", "modules/servng.yaml"))
    problem = only_problem(stack)
    assert problem == (f"{stack}:6:5: include[0]: no such module file {project / 'modules/servng.yaml'}; "
                       "did you mean 'modules/serving.yaml'?")


def test_include_cycle_is_refused_naming_the_chain(tmp_path: Path):
    stack = write(tmp_path, "stack.yaml", STACK.replace("modules/serving.yaml", "a.yaml"))
    write(tmp_path, "a.yaml", "include: [b.yaml]\n")
    write(tmp_path, "b.yaml", "storage: []\ninclude:\n  - a.yaml\n")
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert only_problem(stack) == (f"{b}:3:5: include[0]: include cycle: {stack} -> {a} -> {b} -> {a}; a module "
                                   f"cannot include itself or a file that includes it (included from {a}:1:11, "
                                   f"from {stack}:6:5)")
    write(tmp_path, "b.yaml", "include: [stack.yaml]\n")
    assert "include cycle" in only_problem(stack)


def test_a_module_included_twice_is_refused(tmp_path: Path):
    stack = write(tmp_path, "stack.yaml", STACK.replace("modules/serving.yaml", "a.yaml\n      - a.yaml"))
    write(tmp_path, "a.yaml", "storage:\n  - {name: shared}\n")
    assert only_problem(stack) == (f"{stack}:7:5: include[1]: {tmp_path / 'a.yaml'} is already included (from "
                                   f"{stack}:6:5); include a module once")


def test_duplicate_component_name_across_files_names_both_places(project: Path):
    module = project / "modules/serving.yaml"
    module.write_text(module.read_text().replace("- name: iris", "- name: train"))
    assert only_problem(project / "stack.yaml") == (
        f"{module}:8:5: serving[0].name: duplicate component name 'train': component names must be unique (first "
        f"given at {project / 'stack.yaml'}:8:5) (included from {project / 'stack.yaml'}:6:5)")


def test_stack_level_keys_are_refused_in_a_module(project: Path):
    module = project / "modules/serving.yaml"
    module.write_text("target: aws\nmetadata: {name: x}\nservng: []\n" + textwrap.dedent(SERVING_MODULE))
    site = f"(included from {project / 'stack.yaml'}:6:5)"
    assert problems(project / "stack.yaml") == [
        f"{module}:1:1: target: 'target' belongs in the stack file, not in a module: a module holds only component "
        f"definitions (clusters, storage, serving, resources, registry) and include {site}",
        f"{module}:2:1: metadata: 'metadata' belongs in the stack file, not in a module: a module holds only "
        f"component definitions (clusters, storage, serving, resources, registry) and include {site}",
        f"{module}:3:1: servng: unknown key 'servng'; did you mean 'serving'? {site}",
    ]


def test_a_second_registry_in_a_module_names_the_first(project: Path):
    stack = project / "stack.yaml"
    stack.write_text(stack.read_text() + "registry: {name: other}\n")
    assert only_problem(stack) == (
        f"{project / 'modules/serving.yaml'}:2:1: registry: a stack has one registry, and one is already defined at "
        f"{stack}:11:1; move these models and images there (included from {stack}:6:5)")


def test_an_artifact_outside_the_stack_directory_is_still_refused(tmp_path: Path):
    stack = write(tmp_path / "stack", "stack.yaml", STACK.replace("modules/serving.yaml", "../shared/serving.yaml"))
    write(tmp_path, "shared/serving.yaml", SERVING_MODULE)
    shutil.copytree(STACKS / "models", tmp_path / "shared" / "models")
    found = problems(stack)
    assert found[0].startswith(f"{tmp_path / 'stack/../shared/serving.yaml'}:5:44: registry.models[0].artifact: "
                               "artifact '../shared/models/iris-v1.json' resolves to ")
    assert found[0].endswith(f"(included from {stack}:6:5)")


# -- through the CLI -------------------------------------------------------------------------------------------
def test_cli_validates_and_previews_a_stack_with_a_module_on_the_local_target(project: Path):
    result = run_mlplat("validate", "-f", "stack.yaml", cwd=project)
    assert "3 components" in result.stdout
    plan = json.loads(run_mlplat("preview", "-f", "stack.yaml", "--json", cwd=project).stdout)
    addresses = {c["address"] for c in plan["changes"]}
    assert {"train.gpu_pool.cpu", "models.registry.main", "iris.router.main"} <= addresses, addresses


def test_cli_applies_and_destroys_module_components_on_sim(tmp_path: Path):
    stack = write(tmp_path, "stack.yaml", f"""\
        apiVersion: mlplat/v1
        metadata:
          name: modular
        target: sim
        targets:
          sim:
            store: {json.dumps(str(tmp_path / "cloud"))}
        include: [modules/storage.yaml]
    """)
    write(tmp_path, "modules/storage.yaml", """\
        storage:
          - {name: shared, size_gb: 10}
        clusters:
          - name: train
            gpu_pools:
              - {name: gpu, accelerator: h100, gpus_per_node: 8}
    """)
    run_mlplat("apply", "-f", stack.name, "--yes", cwd=tmp_path)
    listed = run_mlplat("state", "list", "-f", stack.name, cwd=tmp_path).stdout
    assert sorted(line.split("\t")[0] for line in listed.splitlines()) == [
        "shared.filesystem.main", "train.cluster.main", "train.pool.gpu"]
    assert len(list((tmp_path / "cloud" / "objects").glob("*.json"))) == 3
    run_mlplat("destroy", "-f", stack.name, "--yes", cwd=tmp_path)
    assert not list((tmp_path / "cloud" / "objects").glob("*.json"))


def test_cli_reports_a_module_error_at_the_module_without_traceback(project: Path):
    module = project / "modules/serving.yaml"
    module.write_text(module.read_text().replace("weight: 20", "weight: twenty"))
    result = run_mlplat("validate", "-f", "stack.yaml", cwd=project, check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert ("modules/serving.yaml:11:47: serving[0].paths.experimental.weight: expected a whole number, got the "
            "text 'twenty' (included from stack.yaml:6:5)") in result.stderr


def test_cli_capability_and_lowering_errors_name_the_module(project: Path):
    write(project, "modules/gpu.yaml", """\
        clusters:
          - name: big
            gpu_pools:
              - {name: gpu, accelerator: h100, gpus_per_node: 8}
    """)
    stack = project / "stack.yaml"
    stack.write_text(stack.read_text().replace("  - modules/serving.yaml\n", "  - modules/serving.yaml\n"
                                                                           "  - modules/gpu.yaml\n"))
    result = run_mlplat("validate", "-f", "stack.yaml", "--json", cwd=project, check=False)
    assert result.returncode == 1, result.stderr
    error = json.loads(result.stdout.splitlines()[0])
    assert error["error"].startswith("modules/gpu.yaml:4:21: clusters[1].gpu_pools[0].accelerator: target 'local' "
                                     "(local) does not offer accelerator 'h100'")
    assert error["error"].endswith("(included from stack.yaml:7:5)")
    assert error["reasons"][0]["at"] == "modules/gpu.yaml:4:21"
    stack.write_text(stack.read_text().replace("  - modules/gpu.yaml\n", ""))
    module = project / "modules/serving.yaml"
    module.write_text(module.read_text().replace("iris-v1.json", "iris-v9.json"))
    result = run_mlplat("preview", "-f", "stack.yaml", cwd=project, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert ("modules/serving.yaml:2:1: registry 'models' on target 'local': model iris:1: artifact "
            "modules/models/iris-v9.json not found") in result.stderr
    assert "(included from stack.yaml:6:5)" in result.stderr


def test_cli_raw_resources_in_a_module_are_located_there(tmp_path: Path):
    write(tmp_path, "stack.yaml", f"""\
        apiVersion: mlplat/v1
        metadata: {{name: raw}}
        target: sim
        targets:
          sim: {{store: {json.dumps(str(tmp_path / "cloud"))}}}
        include: [mods/raw.yaml]
    """)
    module = write(tmp_path, "mods/raw.yaml", """\
        resources:
          - name: r0
            kind: sim.data
            inputs: {input: "x"}
    """)
    run_mlplat("validate", "-f", "stack.yaml", cwd=tmp_path)
    module.write_text(module.read_text().replace("sim.data", "sim.dat"))
    result = run_mlplat("validate", "-f", "stack.yaml", cwd=tmp_path, check=False)
    assert result.returncode == 1
    line = result.stderr.splitlines()[0]
    assert line.startswith("Error: mods/raw.yaml:3:5: resources[0].kind: ") and "'sim.dat'" in line
    assert line.endswith("(included from stack.yaml:6:11)")


def test_fmt_formats_a_stack_with_include_and_leaves_the_module_alone(project: Path):
    stack, module = project / "stack.yaml", project / "modules/serving.yaml"
    module.write_text(module.read_text().replace("name: models", "name: ${env:FMT_REGISTRY_NAME}"))
    stack.write_text("include: [modules/serving.yaml]   \n" + stack.read_text().replace("include:\n  - modules/"
                                                                                          "serving.yaml\n", ""))
    before = module.read_text()
    run_mlplat("fmt", "-f", "stack.yaml", cwd=project)
    text = stack.read_text()
    assert text.index("target: local") < text.index("include: [modules/serving.yaml]\n") < text.index("clusters:")
    assert module.read_text() == before  # fmt formats the one file it is given
    run_mlplat("validate", "-f", "stack.yaml", cwd=project, env={"FMT_REGISTRY_NAME": "models"})


def test_the_docs_example_loads_and_its_error_is_the_one_shown(tmp_path: Path):
    text = (REPO / "docs" / "modules.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```yaml\n# file: (\S+)\n(.*?)^```$", text, re.S | re.M)
    assert [name for name, _ in blocks] == ["platform.yaml", "modules/serving.yaml"]
    for name, body in blocks:
        write(tmp_path, name, f"# file: {name}\n{body}")
    shutil.copytree(STACKS / "models", tmp_path / "modules" / "models")
    assert "3 components" in run_mlplat("validate", "-f", "platform.yaml", cwd=tmp_path).stdout
    module = tmp_path / "modules/serving.yaml"
    module.write_text(module.read_text().replace('"iris:1"', '"iris-1"'))
    shown = re.search(r"^```text\n(.*?)\n```$", text, re.S | re.M).group(1)
    result = run_mlplat("validate", "-f", "platform.yaml", cwd=tmp_path, check=False)
    assert result.stderr.splitlines()[0] == f"Error: {shown}"
