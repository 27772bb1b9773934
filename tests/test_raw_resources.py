"""`resources:` (raw resources, the escape hatch) through the CLI: a chain of `sim.data` applied, left alone,
updated, replaced by `triggers_replace` and destroyed; a `local.directory`; a raw resource after a component and
reading its output; located errors; `mlplat graph --json` edges; the docs list every raw kind."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REPO, run_mlplat


class RawStack:
    """A stack file in `root` whose `resources:` (and other top-level keys) a test edits, run through the CLI."""

    def __init__(self, root: Path, resources: list[dict[str, Any]], **top: Any) -> None:
        self.root, self.path = root, root / "stack.yaml"
        self.doc: dict[str, Any] = {"apiVersion": "mlplat/v1", "metadata": {"name": "raw"}, "target": "sim",
                                    "targets": {"sim": {"store": ":memory:"}}, **top, "resources": resources}
        self.write()

    def write(self) -> None:
        self.path.write_text(yaml.safe_dump(self.doc, sort_keys=False))

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_mlplat(*args, "-f", str(self.path), cwd=self.root, check=check)

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)

    def record(self, address: str) -> dict[str, Any]:
        return json.loads(self.run("state", "show", address).stdout)

    def actions(self) -> dict[str, str]:
        return {c["address"]: c["action"] for c in self.json("preview")["changes"]}

    def fails(self, *args: str) -> str:
        proc = self.run(*args, check=False)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc.stderr


def test_sim_data_chain_applies_updates_replaces_and_destroys(tmp_path: Path) -> None:
    stack = RawStack(tmp_path, [
        {"name": "r0", "kind": "sim.data", "inputs": {"input": "hello"}},
        {"name": "r1", "kind": "sim.data", "inputs": {"input": "${resource:r0.output}"}, "depends_on": ["r0"]},
        {"name": "r2", "kind": "sim.data", "inputs": {"input": {"upstream": "${resource:r1.id}"}}},
    ])
    assert stack.actions() == {"r0.data.main": "create", "r1.data.main": "create", "r2.data.main": "create"}
    stack.run("apply", "--yes")
    listed = {r["address"]: r["kind"] for r in stack.json("state", "list")["resources"]}
    assert listed == {"r0.data.main": "sim.data", "r1.data.main": "sim.data", "r2.data.main": "sim.data"}
    r0, r1, r2 = (stack.record(f"r{i}.data.main") for i in range(3))
    assert r1["inputs"]["input"] == r1["outputs"]["output"] == "hello"  # r0's output, like terraform_data
    assert r2["inputs"]["input"] == {"upstream": r1["id"]} and r2["depends_on"] == ["r1.data.main"]
    assert set(r0["outputs"]) == {"id", "output"} and r0["outputs"]["id"] == r0["id"]

    assert stack.run("preview", "--detailed-exitcode").returncode == 0  # a second apply has nothing to do

    stack.doc["resources"][0]["inputs"]["input"] = "world"  # in place: r1 reads the new output at apply
    stack.write()
    assert stack.actions() == {"r0.data.main": "update", "r1.data.main": "update", "r2.data.main": "noop"}
    stack.run("apply", "--yes")
    assert stack.record("r1.data.main")["outputs"]["output"] == "world"
    assert stack.record("r1.data.main")["id"] == r1["id"] and stack.record("r0.data.main")["id"] == r0["id"]

    stack.doc["resources"][1]["inputs"]["triggers_replace"] = {"version": 2}  # a new r1, so r2 follows its id
    stack.write()
    assert stack.actions() == {"r0.data.main": "noop", "r1.data.main": "replace", "r2.data.main": "update"}
    stack.run("apply", "--yes")
    new_r1 = stack.record("r1.data.main")
    assert new_r1["id"] != r1["id"] and stack.record("r2.data.main")["inputs"]["input"] == {"upstream": new_r1["id"]}
    assert stack.run("preview", "--detailed-exitcode").returncode == 0

    stack.doc["resources"][2]["target"] = "other"  # another target: replaced, not migrated
    stack.doc["targets"]["other"] = {"type": "sim", "store": ":memory:"}
    stack.write()
    assert stack.actions()["r2.data.main"] == "replace"
    stack.run("apply", "--yes")
    assert stack.record("r2.data.main")["target"] == "other"

    stack.run("destroy", "--yes")
    assert not (tmp_path / ".mlplat" / "raw.db").exists()


def test_local_directory_after_a_component_reading_its_output(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "data.csv").write_text("a,b\n")
    stack = RawStack(tmp_path, [
        {"name": "scratch", "kind": "local.directory", "target": "local", "inputs": {"path": "work/scratch"},
         "depends_on": ["shared"]},
        {"name": "where", "kind": "sim.data", "inputs": {"input": "${resource:shared.id}",
                                                          "triggers_replace": "${resource:scratch.path}"}},
    ], storage=[{"name": "shared", "size_gb": 5}])
    stack.doc["targets"]["local"] = {}
    stack.write()
    edges = stack.json("graph")["edges"]
    assert ["shared.filesystem.main", "scratch.directory.main"] in edges  # depends_on a component: its resources
    assert ["shared.filesystem.main", "where.data.main"] in edges  # a component's output: a Ref to its resource
    assert ["scratch.directory.main", "where.data.main"] in edges
    stack.run("apply", "--yes")
    scratch = tmp_path / "work" / "scratch"
    assert scratch.is_dir()
    where = stack.record("where.data.main")
    assert where["inputs"] == {"input": stack.record("shared.filesystem.main")["id"],
                               "triggers_replace": str(scratch)}
    stack.run("destroy", "--yes")
    assert not scratch.exists()

    stack.doc["resources"] = [{"name": "taken", "kind": "local.directory", "target": "local",
                               "inputs": {"path": "taken"}}]
    stack.write()
    err = stack.fails("apply", "--yes")
    assert "holds files mlplat did not make" in err and "mlplat import taken.directory.main" in err
    assert (tmp_path / "taken" / "data.csv").read_text() == "a,b\n"
    stack.doc["resources"][0]["inputs"]["adopt_existing"] = True  # said explicitly: taken over, content kept
    stack.write()
    stack.run("apply", "--yes")
    assert (tmp_path / "taken" / "data.csv").read_text() == "a,b\n"
    assert stack.record("taken.directory.main")["id"] == str(tmp_path / "taken")


def test_aws_raw_kinds_against_moto(tmp_path: Path, moto_server: Any) -> None:
    """An ECR repository, an SNS topic (its subscriptions in any order) and a model package group made, left alone
    by a second plan, read by a sim.data through a reference, and destroyed — on the moto server."""
    moto_server.reset()
    stack = RawStack(tmp_path, [
        {"name": "repo", "kind": "aws.ecr_repository", "target": "aws", "inputs": {"name": "team/extra"}},
        {"name": "topic", "kind": "aws.alert_topic", "target": "aws", "inputs": {"name": "extra-alerts",
         "subscriptions": [{"protocol": "email", "endpoint": "b@example.com"},
                           {"protocol": "email", "endpoint": "a@example.com"}]}},
        {"name": "group", "kind": "aws.model_package_group", "target": "aws", "inputs": {"name": "extra-group"}},
        {"name": "note", "kind": "sim.data", "inputs": {"input": "${resource:repo.uri}"}},
    ])
    stack.doc["targets"]["aws"] = {"region": moto_server.region, "endpoint_url": moto_server.url,
                                   "poll_interval_s": 0}
    stack.write()
    stack.run("apply", "--yes")
    assert stack.run("preview", "--detailed-exitcode").returncode == 0
    repo = stack.record("repo.ecr_repository.main")
    assert repo["inputs"] == {"name": "team/extra", "scan_on_push": True, "tag_mutability": "MUTABLE"}
    assert stack.record("note.data.main")["outputs"]["output"] == repo["outputs"]["uri"]
    assert stack.record("topic.alert_topic.main")["outputs"]["arn"].endswith(":extra-alerts")
    stack.run("destroy", "--yes")
    assert "DeleteRepository" in moto_server.calls and "DeleteTopic" in moto_server.calls


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_located_errors(tmp_path: Path) -> None:
    stack = RawStack(tmp_path, [
        {"name": "r0", "kind": "sim.data", "inputs": {"inptu": "x"}},
        {"name": "r1", "kind": "sim.filesystem", "inputs": {"size_gb": "ten"}},
        {"name": "r2", "kind": "sim.dta"},
        {"name": "r3", "kind": "local.directory", "inputs": {"path": "d"}},
        {"name": "r4", "kind": "sim.data", "inputs": {"input": "id-${resource:r0.id}",
                                                      "triggers_replace": "${resource:r9.id}"},
         "depends_on": ["r00"]},
        {"name": "r5", "kind": "sim.data", "inputs": {"input": "${resource:disk.idd}"}},
        {"name": "r6", "kind": "sim.data", "inputs": {"input": {"db_password": "hunter2"}}},
    ], storage=[{"name": "disk", "size_gb": 5}])
    err = stack.fails("validate")
    path = stack.path.name
    assert f"{path}:{_line_of(stack.path, 'inptu')}:" in err
    assert "resources[0].inputs.inptu: unknown key 'inptu'; did you mean 'input'?" in err
    assert f"{path}:{_line_of(stack.path, 'size_gb: ten')}:" in err
    assert "resources[1].inputs.size_gb: expected a whole number, got the text 'ten'" in err
    assert "resources[2].kind: target 'sim' (sim) has no raw kind 'sim.dta'; did you mean 'sim.data'?" in err
    assert "its raw kinds: sim.cluster, sim.data, sim.filesystem, sim.registry" in err
    assert "resources[3].kind: local.directory is a raw kind of local targets" in err
    assert "resources[4].inputs.input: a ${resource:NAME.OUTPUT} reference must be the whole value" in err
    assert "resources[4].inputs.triggers_replace: ${resource:r9.id} names no raw resource or component" in err
    assert f"{path}:{_line_of(stack.path, '- r00')}:" in err
    assert "resources[4].depends_on[0]: 'r00' names no raw resource or component (did you mean r0?)" in err
    assert "resources[5].inputs.input: component 'disk' exports no 'idd'; it exports: id" in err
    assert "resources[6].inputs.input.db_password: secrets may not be written in the stack file" in err
    assert "hunter2" not in err

    stack.doc["resources"] = [{"name": "disk", "kind": "sim.data"}]
    stack.write()
    assert "resources[0].name: duplicate component name 'disk'" in stack.fails("validate")

    stack.doc["resources"] = [{"name": "a", "kind": "sim.data", "inputs": {"input": "${resource:b.id}"}},
                              {"name": "b", "kind": "sim.data", "depends_on": ["a"]}]
    stack.write()
    assert "resources[0].depends_on: a dependency cycle among raw resources: a.data.main, b.data.main" in \
        stack.fails("validate")

    stack.doc["resources"] = []
    stack.doc["storage"] = [{"name": "disk", "size_gb": "${resource:x.id}"}]
    stack.write()
    assert "storage[0].size_gb: ${resource:...} references are allowed only in the inputs of a raw resource" in \
        stack.fails("validate")


def test_a_reference_may_stand_for_a_typed_input(tmp_path: Path) -> None:
    """A reference where the kind wants a number is checked at apply (by the provider), not refused at validate."""
    stack = RawStack(tmp_path, [
        {"name": "size", "kind": "sim.data", "inputs": {"input": 42}},
        {"name": "fs", "kind": "sim.filesystem", "inputs": {"size_gb": "${resource:size.output}"}},
    ])
    stack.run("apply", "--yes")
    record = stack.record("fs.filesystem.main")
    assert record["inputs"] == {"size_gb": 42, "kind": "nas"} and record["depends_on"] == ["size.data.main"]


def _gen_raw_kinds() -> Any:
    spec = importlib.util.spec_from_file_location("gen_raw_kinds", REPO / "docs" / "gen_raw_kinds.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_docs_list_every_raw_kind() -> None:
    from provisioner import plugins

    page = (REPO / "docs" / "raw-resources.md").read_text(encoding="utf-8")
    assert page == _gen_raw_kinds().render(page), "run .venv/bin/python docs/gen_raw_kinds.py"
    kinds = [kind for t in plugins.target_types().values() for kind in t.raw_kinds]
    assert {"sim.data", "local.directory", "aws.ecr_repository"} <= set(kinds)
    for kind in kinds:
        assert f"#### `{kind}`" in page, kind


@pytest.mark.parametrize("kind", ["sim.data", "local.directory", "aws.ecr_repository", "aws.alert_topic"])
def test_every_input_has_a_description_and_unknown_keys_are_refused(kind: str) -> None:
    from provisioner import plugins

    model = next(t.raw_kinds[kind] for t in plugins.target_types().values() if kind in t.raw_kinds)
    assert model.model_config.get("extra") == "forbid"
    assert all(f.description for f in model.model_fields.values()), kind


_YAML_CASES = {
    "scalars": "a: 1\nb: 1.5\nc: true\nd: null\ne: ~\nf: 2024-01-01\ng: '1'\nh: !!str 12\ni: yes\nj: 0x1F\nl:\n"
               "m: \"x\\ny\"\n1: an int key\n? explicit\n: v\nn: !!binary aGVsbG8=\n",
    "blocks": "a: |\n  line1\n  line2\nb: >\n  folded\n  text\nc: [1, {x: y}, [z]]\nd: {}\ne: []\n",
    "nesting": "name: héllo\nlist:\n  - ü\n  - - nested\n    - 2\n  - {k: [1, 2]}\n",
    "top-level list": "- a\n- b\n",
    "unused anchor": "a: &x 1\nb: 2\n",
}
#: what the one pass leaves to the general path (which reports the errors among them)
_YAML_LEFT = {
    "merge key": "base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n",
    "duplicate key": "a: 1\na: 2\n",
    "list as key": "[a]: 1\n",
    "two documents": "a: 1\n---\nb: 2\n",
    "empty": "# only a comment\n",
    "tagged mapping": "a: !!set {x, y}\n",
    "unknown tag": "a: !foo bar\n",
    "syntax error": "a: [1, 2\n",
    "too deep": "a: " + "[" * 70 + "]" * 70 + "\n",
}


def test_the_one_pass_yaml_reader_matches_the_general_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Big stack files are read in one pass over the parser's events (provisioner/spec/fastyaml.py); what it reads
    must equal what the general path (compose, index, construct) reads, locations included."""
    from provisioner.errors import SpecError
    from provisioner.spec import fastyaml, loader

    big = (REPO / "stacks" / "quickstart.yaml").read_text()
    for name, text in {**_YAML_CASES, "quickstart": big}.items():
        fast = fastyaml.parse(text, loader._Loader, loader.MAX_DEPTH)
        with monkeypatch.context() as patch:
            patch.setattr(fastyaml, "parse", lambda *args: None)
            general = loader._parse(text, Path("x.yaml"))
        assert fast == general, name
    for name, text in _YAML_LEFT.items():
        assert fastyaml.parse(text, loader._Loader, loader.MAX_DEPTH) is None, name
    with pytest.raises(SpecError, match="nested more than 64 levels deep"):
        loader._parse(_YAML_LEFT["too deep"], Path("x.yaml"))
