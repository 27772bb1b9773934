"""`mlplat fmt` (issue 17): canonical layout, comments kept, same platform, --check, --diff, idempotence."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import assert_no_traceback

from provisioner import fmt as fmt_module
from provisioner.errors import MlplatError
from provisioner.spec import load

REPO = Path(__file__).resolve().parent.parent
STACKS = sorted((REPO / "stacks").glob("*.yaml"))

MESSY = """\
# head comment   
# yaml-language-server: $schema=../schema/mlplat.schema.json
serving:    # the endpoint
    -   auth: none   
        name: iris    # its name
        paths:
            production: {model: "iris:1", weight: 100}
registry:
    models:
        -   {name: iris, version: "1", artifact: models/iris-v1.json}   # v1
    # the registry's name
    name: models
metadata:
    name: messy  
    description: A messy file   # described
apiVersion: mlplat/v1
target: local


"""  # noqa: W291 (trailing spaces are the point)


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLPLAT_")}
    env["COLUMNS"] = "250"
    return subprocess.run([sys.executable, "-m", "provisioner.cli", *args], cwd=cwd, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


def comments(text: str) -> list[str]:
    return sorted(m.group().rstrip() for m in re.finditer(r"#.*", text))


def assert_canonical(text: str) -> None:
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert all(line == line.rstrip() for line in text.splitlines())
    assert "\t" not in text
    for line in text.splitlines():
        indent = len(line) - len(line.lstrip(" "))
        assert indent % 2 == 0, line
    top = [line.split(":")[0] for line in text.splitlines() if re.match(r"[A-Za-z_]\w*:", line)]
    known = [k for k in fmt_module.TOP_LEVEL_ORDER if k in top]
    assert top[:len(known)] == known, top


@pytest.fixture
def stacks(tmp_path: Path) -> Path:
    """A copy of stacks/ (with the models the stack files point at): the repo's own files are never rewritten."""
    shutil.copytree(REPO / "stacks", tmp_path / "stacks")
    return tmp_path / "stacks"


@pytest.mark.parametrize("name", [p.name for p in STACKS])
def test_every_stack_is_or_becomes_canonical_and_loads_the_same(stacks: Path, name: str,
                                                                monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLPLAT_AWS_BUCKET", "sagemaker-test")
    monkeypatch.setenv("MLPLAT_GCP_BUCKET", "mlplat-test")
    monkeypatch.setenv("MLPLAT_AZURE_SUBSCRIPTION", "00000000-0000-0000-0000-000000000001")
    monkeypatch.setenv("MLPLAT_KUBECONFIG", "/nonexistent/kubeconfig")
    path = stacks / name
    original = path.read_text()
    before = load(path).platform.model_dump()
    result = run("fmt", "-f", str(path), cwd=stacks)
    assert result.returncode == 0, result.stderr
    formatted = path.read_text()
    assert_canonical(formatted)
    assert comments(formatted) == comments(original)
    assert load(path).platform.model_dump() == before
    assert (REPO / "stacks" / name).read_text() == original  # the repo's file is untouched
    again = run("fmt", "-f", str(path), "--check", cwd=stacks)
    assert again.returncode == 0, again.stdout + again.stderr


def test_messy_file_comes_out_canonical_with_every_comment(stacks: Path):
    path = stacks / "messy.yaml"
    path.write_text(MESSY)
    before = load(path).platform.model_dump()
    result = run("fmt", "-f", str(path), cwd=stacks)
    assert result.returncode == 0, result.stderr
    assert "formatted" in result.stdout
    text = path.read_text()
    assert_canonical(text)
    assert comments(text) == comments(MESSY)
    assert load(path).platform.model_dump() == before
    assert text.startswith("# head comment\n# yaml-language-server")
    lines = text.splitlines()
    assert lines[2:5] == ["apiVersion: mlplat/v1", "metadata:", "  name: messy"]
    assert re.fullmatch(r"  description: A messy file +# described", lines[5])  # ruamel keeps a comment's column
    assert "target: local" in lines
    assert lines.index("target: local") < lines.index("registry:") < lines.index("serving:    # the endpoint")
    # components: schema order (name first), 2-space indentation, sequences indented under their key
    assert any(re.fullmatch(r"  - name: iris +# its name", ln) for ln in lines)
    assert lines.index("    auth: none") > lines.index("    paths:")
    assert lines.index("  name: models") < lines.index("  models:")
    assert '    - {name: iris, version: "1", artifact: models/iris-v1.json}' in text  # flow and quotes kept
    assert load(path).platform.registry.models[0].version == "1"
    # idempotent
    assert fmt_module.canonical_text(text) == text
    assert run("fmt", "-f", str(path), cwd=stacks).stdout.endswith("is already formatted\n")
    assert path.read_text() == text


def test_check_exit_codes_and_no_write(stacks: Path):
    path = stacks / "messy.yaml"
    path.write_text(MESSY)
    result = run("fmt", "-f", str(path), "--check", cwd=stacks)
    assert result.returncode == 1
    assert str(path) in result.stdout
    assert_no_traceback(result)
    assert path.read_text() == MESSY
    run("fmt", "-f", str(path), cwd=stacks)
    clean = run("fmt", "-f", str(path), "--check", cwd=stacks)
    assert clean.returncode == 0 and clean.stdout == ""


def test_diff_prints_a_unified_diff_and_writes_nothing(stacks: Path):
    path = stacks / "messy.yaml"
    path.write_text(MESSY)
    result = run("fmt", "-f", str(path), "--diff", cwd=stacks)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"--- {path} (original)\n+++ {path} (formatted)\n@@ ")
    assert "-serving:    # the endpoint\n" in result.stdout
    assert "+  name: messy\n" in result.stdout
    assert path.read_text() == MESSY
    both = run("fmt", "-f", str(path), "--diff", "--check", cwd=stacks)
    assert both.returncode == 1 and both.stdout.startswith("--- ") and path.read_text() == MESSY


def test_invalid_yaml_gives_the_loaders_located_error_and_is_untouched(stacks: Path):
    path = stacks / "broken.yaml"
    text = "apiVersion: mlplat/v1\nmetadata:\n  name: broken\n  description: [unclosed\ntarget: local\n"
    path.write_text(text)
    result = run("fmt", "-f", str(path), cwd=stacks)
    assert result.returncode == 1
    assert_no_traceback(result)
    assert re.search(rf"{re.escape(str(path))}:\d+:\d+", result.stderr), result.stderr
    assert path.read_text() == text
    assert not [p for p in stacks.iterdir() if p.name.endswith(".fmt")]


def test_a_different_platform_is_refused_and_nothing_written(stacks: Path, monkeypatch: pytest.MonkeyPatch):
    path = stacks / "messy.yaml"
    path.write_text(MESSY)
    real = fmt_module.canonical_text
    monkeypatch.setattr(fmt_module, "canonical_text", lambda text: real(text).replace("messy file", "tidy file"))
    with pytest.raises(MlplatError, match="would load to a different platform"):
        fmt_module.format_file(path)
    monkeypatch.setattr(fmt_module, "canonical_text", lambda text: real(text).replace("weight: 100", "weight: 99"))
    with pytest.raises(MlplatError, match="would not load"):
        fmt_module.format_file(path)
    assert path.read_text() == MESSY


def test_help_does_not_import_ruamel():
    code = ("import sys\nfrom provisioner.cli import main\nsys.argv = ['mlplat', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\nassert 'ruamel' not in sys.modules, 'ruamel imported'\n"
            "assert not any(m.startswith('ruamel') for m in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
