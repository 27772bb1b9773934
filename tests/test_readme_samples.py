"""The README's stack-file samples validate on the targets they declare, as written and with every variation the
README documents.

A sample is a ```yaml block holding `apiVersion: mlplat/v1`. Its variations, each validated on its own:

* a line ending `# or: VALUE`: VALUE in place of that line's value;
* a commented-out `# key: value` line: uncommented;
* a ```yaml block without `apiVersion` after the sample (before the next one): its top-level keys replace the
  sample's ("replace `targets:` and `clusters:` above with these").

The model artifacts a sample names are copied from stacks/. `validate` needs no cloud credentials and makes no
network call (the README says so of the AWS sample): both are taken away here.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from pathlib import Path

import pytest
import yaml

from provisioner.api import Stack

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
STACKS = REPO / "stacks"

_BLOCK = re.compile(r"^```yaml\n(.*?)^```$", re.S | re.M)
_OR = re.compile(r"^(?P<head>\s*(?:- )?(?:[\w-]+:\s*)?)(?P<value>\S.*?)\s+# or: (?P<alt>.+?)\s*$")
_COMMENTED_KEY = re.compile(r"^(?P<indent>\s*)# (?P<line>[a-z_]+: \S.*)$")


def yaml_blocks(readme: str) -> list[tuple[int, str]]:
    """(README line of the block's first line, text) of every ```yaml block."""
    return [(readme.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in _BLOCK.finditer(readme)]


def is_stack(text: str) -> bool:
    return re.search(r"^apiVersion: mlplat/v1\s*(#.*)?$", text, re.M) is not None


def samples(readme: str) -> list[tuple[int, str, list[tuple[int, str]]]]:
    """(line, text, the fragments that follow it) of every stack sample."""
    found: list[tuple[int, str, list[tuple[int, str]]]] = []
    for line, text in yaml_blocks(readme):
        if is_stack(text):
            found.append((line, text, []))
        elif found:
            found[-1][2].append((line, text))
        else:
            raise AssertionError(f"README.md:{line}: a yaml block before any stack sample: which stack does it change?")
    return found


def variations(line: int, text: str, fragments: list[tuple[int, str]]) -> list[tuple[str, str]]:
    """(id, stack text) of the sample as written and of each variation it documents."""
    out = [(f"README.md:{line} as written", text)]
    lines = text.splitlines(keepends=True)
    for i, row in enumerate(lines):
        where = f"README.md:{line + i}"
        if match := _OR.match(row):
            changed = f"{match['head']}{match['alt']}\n"
            out.append((f"{where} or: {match['alt']}", "".join([*lines[:i], changed, *lines[i + 1:]])))
        elif match := _COMMENTED_KEY.match(row):
            changed = f"{match['indent']}{match['line']}\n"
            out.append((f"{where} uncommented", "".join([*lines[:i], changed, *lines[i + 1:]])))
    for fragment_line, fragment in fragments:
        data, replace = yaml.safe_load(text), yaml.safe_load(fragment)
        assert isinstance(replace, dict) and set(replace) <= set(data), \
            f"README.md:{fragment_line}: this yaml block should replace keys of the stack sample at line {line}"
        out.append((f"README.md:{line} with README.md:{fragment_line}",
                    yaml.safe_dump({**data, **replace}, sort_keys=False)))
    return out


SAMPLES = samples(README.read_text(encoding="utf-8"))
VARIATIONS = [v for line, text, fragments in SAMPLES for v in variations(line, text, fragments)]


@pytest.fixture(autouse=True)
def no_cloud(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials, no configured GPUs or plugins from the caller's environment, and no network."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "MLPLAT_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    def refuse(self: socket.socket, address: object) -> None:
        raise AssertionError(f"validate made a network call (to {address})")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def validate(text: str, directory: Path) -> None:
    """Write the stack and the model artifacts it names (from stacks/) into `directory`, and validate it."""
    path = directory / "stack.yaml"
    path.write_text(text, encoding="utf-8")
    for model in (yaml.safe_load(text).get("registry") or {}).get("models") or []:
        artifact = str(model.get("artifact", ""))
        if "://" in artifact:
            continue
        source = STACKS / artifact
        assert source.is_file(), f"the README names the model artifact {artifact}, which stacks/ does not hold"
        (directory / artifact).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, directory / artifact)
    Stack(path).validate()


def test_readme_has_stack_samples_and_the_first_runs_on_this_machine():
    assert SAMPLES, "README.md has no ```yaml block with `apiVersion: mlplat/v1`: this file would test nothing"
    assert VARIATIONS
    # the first sample is the newcomer's, read right after the quickstart: it runs on the local target
    line, text, _ = SAMPLES[0]
    assert yaml.safe_load(text).get("target", "local") == "local", f"README.md:{line}"


def test_readme_documents_its_variations():
    ids = [name for name, _ in VARIATIONS]
    assert any("mode: shadow" in name for name in ids), ids  # the split path's shadow alternative
    assert any(" with README.md:" in name for name in ids), ids  # the hybrid cluster on aws


@pytest.mark.parametrize(("name", "text"), VARIATIONS, ids=[name for name, _ in VARIATIONS])
def test_readme_sample_validates(tmp_path, name, text):
    validate(text, tmp_path)
