"""The documentation holds together: no dangling links, a current stack-file reference, and a getting-started
guide whose safe commands run.

* Every relative link in the Markdown files below points at a file or directory that exists, and every `#anchor`
  (in the same file or another .md file) matches a heading's GitHub-style slug.
* docs/stack-reference.md equals a fresh `docs/gen_reference.py` run (regenerate it with
  `.venv/bin/python docs/gen_reference.py`).
* The guide's `mlplat validate` / `mlplat preview` lines for stacks/quickstart.yaml run in a temp copy of stacks/.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
from pathlib import Path

import pytest

from conftest import REPO, run_mlplat

DOCS = REPO / "docs"
CHECKED = sorted({REPO / "README.md", REPO / "CHANGELOG.md", REPO / "plugins" / "README.md",
                  REPO / "bench" / "README.md", *DOCS.glob("*.md")})

_FENCE = re.compile(r"^(```|~~~)")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup and punctuation dropped (but '-' and '_'), lower case, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = text.replace("`", "").strip().lower()
    return "".join("-" if ch == " " else ch for ch in text if ch.isalnum() or ch in "-_ ")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in _prose_lines(path.read_text(encoding="utf-8")):
        if match := _HEADING.match(line):
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            out.add(base if count == 0 else f"{base}-{count}")
    return out


def links(path: Path) -> list[tuple[int, str]]:
    found = []
    for number, line in _prose_lines(path.read_text(encoding="utf-8")):
        line = _INLINE_CODE.sub("code", line)
        found += [(number, m.group(1)) for m in _LINK.finditer(line)]
    return found


def problems(path: Path, root: Path = REPO) -> list[str]:
    out = []
    for number, target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: — not checked here (no network)
            continue
        where = f"{path.relative_to(root)}:{number}: ({target})"
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            out.append(f"{where} points at a missing file")
            continue
        if not dest.is_relative_to(root):
            out.append(f"{where} leaves the repository")
            continue
        if anchor:
            if dest.suffix != ".md":
                out.append(f"{where} has an anchor into a file that is not Markdown")
            elif anchor not in anchors(dest):
                out.append(f"{where} names no heading of {dest.relative_to(root)}")
    return out


def test_the_checked_files_exist() -> None:
    names = {p.relative_to(REPO).as_posix() for p in CHECKED}
    assert {"README.md", "CHANGELOG.md", "docs/getting-started.md", "docs/concepts.md", "docs/stack-reference.md",
            "docs/plugin-authors.md"} <= names
    assert all(p.exists() for p in CHECKED)


@pytest.mark.parametrize("path", CHECKED, ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_dangling_links(path: Path) -> None:
    found = problems(path)
    assert not found, "\n".join(found)


def test_the_link_checker_catches_dangling_links(tmp_path: Path) -> None:
    """Guard against a vacuous checker: bad files and bad anchors are reported, good ones are not."""
    page = REPO / "docs" / "concepts.md"
    assert links(page), "the checker found no links at all"
    assert "state-locks-and-secrets" in anchors(REPO / "README.md")
    assert slug("3. Hooks (`provisioner/plugins.py`, class `Hooks`)") == "3-hooks-provisionerpluginspy-class-hooks"
    (tmp_path / "other.md").write_text("# Other `page`\n## Same\n## Same\n")
    bad = tmp_path / "bad.md"
    bad.write_text("# Title\n[a](missing.md) [b](#nowhere) [c](#title) `[d](in-code.md)`\n"
                   "[f](other.md#other-page) [g](other.md#same-1) [h](other.md#same-2) [i](https://example.com/x)\n"
                   "```\n[e](fenced.md)\n```\n")
    found = problems(bad, root=tmp_path)
    assert found == ["bad.md:2: (missing.md) points at a missing file",
                     "bad.md:2: (#nowhere) names no heading of bad.md",
                     "bad.md:3: (other.md#same-2) names no heading of other.md"], found


def test_license_matches_pyproject() -> None:
    assert 'license = { text = "Apache-2.0" }' in (REPO / "pyproject.toml").read_text()
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply the Apache License" in text


def _generator():
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stack_reference_is_current() -> None:
    gen = _generator()
    committed = (DOCS / "stack-reference.md").read_text(encoding="utf-8")
    assert committed == gen.render(), (
        "docs/stack-reference.md is stale: regenerate it with `.venv/bin/python docs/gen_reference.py`")


def test_stack_reference_covers_every_section() -> None:
    text = (DOCS / "stack-reference.md").read_text(encoding="utf-8")
    for heading in ("metadata", "targets", "state", "clusters[].gpu_pools[]", "storage[]", "registry.images[]",
                    "registry.models[]", "serving[].paths", "serving[].migration", "serving[].monitoring.capture",
                    "serving[].monitoring.drift", "serving[].monitoring.alerts",
                    "serving[].monitoring.shadow_comparison"):
        assert f"\n## {heading}\n" in text, heading
    assert "| `sample_percent` | integer | **required** |" in text


def _guide_commands() -> list[list[str]]:
    """`mlplat validate` / `mlplat preview` lines on stacks/quickstart.yaml from the guide's bash blocks."""
    text = (DOCS / "getting-started.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```$", text, re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:2] in (["mlplat", "validate"], ["mlplat", "preview"]) and "stacks/quickstart.yaml" in words:
                assert "-o" not in words and "--out" not in words
                commands.append(words[1:])
    return commands


def test_getting_started_safe_commands_run(tmp_path: Path) -> None:
    commands = _guide_commands()
    assert len(commands) >= 3, commands  # validate, preview, preview --detailed-exitcode
    shutil.copytree(REPO / "stacks", tmp_path / "stacks", ignore=shutil.ignore_patterns(".mlplat"))
    for args in commands:
        proc = run_mlplat(*args, cwd=tmp_path, check=False, timeout=60)
        allowed = {0, 2} if "--detailed-exitcode" in args else {0}  # 2: changes (nothing applied here)
        assert proc.returncode in allowed, f"mlplat {' '.join(args)} exited {proc.returncode}\n{proc.stderr}"
    plan = run_mlplat("preview", "-f", "stacks/quickstart.yaml", cwd=tmp_path).stdout
    assert "Plan: 9 to create" in plan, plan  # the guide says so
