"""CLI conventions (issue 17): --version, shell completion, an example in every command's help, -f everywhere,
the missing-stack-file message, `state show --json`, `state mv` and `show PLAN`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import Project, assert_no_traceback

MLPLAT = str(Path(sys.executable).with_name("mlplat"))  # the console script: completion keys on its name


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLPLAT_", "_MLPLAT_"))}
    return {**env, "COLUMNS": "250", **extra}


def test_version_prints_the_package_version():
    from importlib.metadata import version

    result = subprocess.run([sys.executable, "-m", "provisioner.cli", "--version"], capture_output=True, text=True,
                            env=clean_env(), timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"mlplat {version('mlplat')}\n"


def test_bash_completion_script_and_completions_name_the_commands():
    script = subprocess.run([MLPLAT], capture_output=True, text=True, timeout=60,
                            env=clean_env(_MLPLAT_COMPLETE="source_bash"))
    assert script.returncode == 0, script.stderr
    assert "_mlplat_completion" in script.stdout and "complete_bash" in script.stdout
    shown = subprocess.run([MLPLAT, "--show-completion", "bash"], capture_output=True, text=True, timeout=60,
                           env=clean_env())
    assert shown.returncode == 0 and "_mlplat_completion" in shown.stdout
    # what the script asks for as the user types: the commands
    words = subprocess.run([MLPLAT], capture_output=True, text=True, timeout=60,
                           env=clean_env(_MLPLAT_COMPLETE="complete_bash", COMP_WORDS="mlplat ", COMP_CWORD="1"))
    names = words.stdout.split()
    assert {"validate", "preview", "apply", "destroy", "show", "state"} <= set(names), words.stdout
    sub = subprocess.run([MLPLAT], capture_output=True, text=True, timeout=60,
                         env=clean_env(_MLPLAT_COMPLETE="complete_bash", COMP_WORDS="mlplat state ", COMP_CWORD="2"))
    assert {"list", "show", "rm", "mv"} <= set(sub.stdout.split()), sub.stdout


def _commands() -> list[list[str]]:
    import typer

    from provisioner.cli import app

    group = typer.main.get_command(app)
    found: list[list[str]] = [[]]

    def walk(cmd, prefix: list[str]) -> None:
        for name, sub in getattr(cmd, "commands", {}).items():
            found.append([*prefix, name])
            walk(sub, [*prefix, name])

    walk(group, [])
    return found


def test_every_command_help_has_an_example_and_every_stack_reader_takes_f():
    from typer.testing import CliRunner

    from provisioner.cli import app

    runner = CliRunner()
    commands = _commands()
    assert ["state", "mv"] in commands and ["show"] in commands
    no_stack = {("plugins",), ("schema",), ("state",), ("env",), ()}
    for path in commands:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "250"})
        assert result.exit_code == 0, (path, result.output)
        assert "Example: mlplat" in result.output, f"mlplat {' '.join(path)} --help has no example"
        if tuple(path) not in no_stack:
            assert "-f, --file" in result.output, f"mlplat {' '.join(path)} does not take -f"


def test_missing_stack_file_given_with_f_suggests_the_nearest_yaml(project):
    (project.root / "stacks").mkdir()
    (project.root / "stacks" / "quickstart.yaml").write_text(project.stack.read_text())
    (project.root / "stacks" / "aws.yaml").write_text(project.stack.read_text())

    result = project.run("validate", "-f", "stacks/quikstart.yaml")
    assert result.returncode == 1
    assert "stacks/quikstart.yaml: no such stack file (it does not exist)" in result.stderr
    assert "did you mean stacks/quickstart.yaml?" in result.stderr
    assert "-f" not in result.stderr.replace("stacks/quikstart.yaml", "")  # they passed -f already
    assert_no_traceback(result)
    # the same from a command that opens the stack for its state
    result = project.run("state", "list", "-f", "stacks/quikstart.yaml")
    assert result.returncode == 1 and "did you mean stacks/quickstart.yaml?" in result.stderr


def test_missing_default_stack_file_suggests_f_or_the_environment(project):
    project.stack.unlink()
    result = project.run("preview")
    assert result.returncode == 1
    assert "no stack file: ./mlplat.yaml does not exist" in result.stderr
    assert "-f STACK" in result.stderr and "$MLPLAT_STACK" in result.stderr
    assert_no_traceback(result)


def test_state_show_json(project):
    project.ok("apply", "--yes")
    plain = project.ok("state", "show", "shared.filesystem.main").stdout
    explicit = project.ok("state", "show", "shared.filesystem.main", "--json").stdout
    assert plain == explicit and json.loads(explicit)["address"] == "shared.filesystem.main"


def test_state_mv_after_a_rename_makes_the_next_plan_a_no_op(project):
    project.ok("apply", "--yes")
    ids = {r["address"]: r["id"] for r in json.loads(project.ok("state", "list", "--json").stdout)["resources"]}
    project.stack.write_text(project.stack.read_text().replace("name: shared", "name: data"))
    before = json.loads(project.ok("preview", "--json", "--no-refresh").stdout)["summary"]
    assert before["create"] == 1 and before["delete"] == 1

    moved = json.loads(project.ok("state", "mv", "shared.filesystem.main", "data.filesystem.main", "--json").stdout)
    assert moved == {"moved": "shared.filesystem.main", "to": "data.filesystem.main", "kind": moved["kind"],
                     "id": ids["shared.filesystem.main"]}
    assert "data.filesystem.main" in project.state_list() and "shared.filesystem.main" not in project.state_list()
    assert project.run("preview", "--detailed-exitcode").returncode == 0  # no changes
    assert "No changes" in project.ok("preview").stdout or "no changes" in project.ok("preview").stdout.lower()


def test_state_mv_refusals(project):
    project.ok("apply", "--yes")
    cases = [
        (("state", "mv", "nothing.here", "data.filesystem.main"), "no resource 'nothing.here' in the state"),
        (("state", "mv", "shared.filesystem.main", "train.cluster.main"), "already recorded"),
        (("state", "mv", "shared.filesystem.main", "data.filesystem.main"), "the stack file has no resource"),
    ]
    for args, message in cases:
        result = project.run(*args)
        assert result.returncode == 1 and message in result.stderr, (args, result.stderr)
        assert_no_traceback(result)
    # a destination the stack file lowers with another kind
    project.stack.write_text(project.stack.read_text().replace("name: train", "name: data"))
    result = project.run("state", "mv", "shared.filesystem.main", "data.cluster.main")
    assert result.returncode == 1 and "cannot move shared.filesystem.main" in result.stderr, result.stderr
    assert "shared.filesystem.main" in project.state_list()  # nothing changed


def test_state_mv_rewrites_the_depends_on_of_other_records(project):
    project.ok("apply", "--yes")
    db = project.state_db()
    record = db.resources()["train.pool.gpu"]
    record.depends_on = [*record.depends_on, "shared.filesystem.main"]
    db.put(record)
    db.close()
    project.stack.write_text(project.stack.read_text().replace("name: shared", "name: data"))
    project.ok("state", "mv", "shared.filesystem.main", "data.filesystem.main")
    db = project.state_db()
    try:
        deps = db.resources()["train.pool.gpu"].depends_on
        assert "data.filesystem.main" in deps and "shared.filesystem.main" not in deps
        assert any(e.op == "move" and e.phase == "done" for e in db.journal())
    finally:
        db.close()


def test_show_renders_a_saved_plan_as_preview_does(project, tmp_path: Path):
    plan = tmp_path / "plan.json"
    previewed = project.ok("preview", "-o", str(plan)).stdout
    shown = project.ok("show", str(plan)).stdout
    assert shown.strip() and shown.strip() in previewed  # preview adds the "Saved the plan" note
    as_json = json.loads(project.ok("show", str(plan), "--json").stdout)
    assert as_json["summary"] == json.loads(project.ok("preview", "--json").stdout)["summary"]
    assert {c["address"] for c in as_json["changes"]} >= {"shared.filesystem.main"}
    # from another directory, with -f
    other = tmp_path / "elsewhere"
    other.mkdir()
    assert project.ok("show", str(plan), "-f", str(project.stack), cwd=other).stdout == shown
    missing = project.run("show", str(tmp_path / "nope.json"))
    assert missing.returncode == 1 and "cannot read plan" in missing.stderr
