"""`mlplat migrate` edits the stack file the way a person would: only the `target:` values of the components it
moves change (a key is added after `name:` where there was none); comments, order, quoting and layout stay.

The edit is made on the text, at the places PyYAML's composer reports, then re-read to check it says what was
meant."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from provisioner.errors import MlplatError

#: the top-level lists (and the registry mapping) that hold components
SECTIONS = ("clusters", "storage", "registry", "serving")


@dataclass
class _Edit:
    start: int  # offset in the text
    end: int
    text: str


def set_targets(path: Path, moves: dict[str, str | None]) -> str:
    """The stack file's text with each named component's `target:` set (None removes the key, so the component
    follows the stack's default target again). Raises MlplatError for a component the file does not declare."""
    text = path.read_text(encoding="utf-8")
    root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if not isinstance(root, yaml.MappingNode):
        raise MlplatError(f"{path}: not a stack file (a YAML mapping)")
    found: dict[str, yaml.MappingNode] = {}
    for key, value in root.value:
        if key.value not in SECTIONS:
            continue
        items = value.value if isinstance(value, yaml.SequenceNode) else [value]
        for item in items:
            if isinstance(item, yaml.MappingNode):
                name = next((v.value for k, v in item.value if k.value == "name"), None)
                if isinstance(name, str):
                    found[name] = item
    missing = sorted(set(moves) - set(found))
    if missing:
        raise MlplatError(f"{path} declares no component {', '.join(map(repr, missing))}",
                          hint=f"components: {', '.join(sorted(found)) or 'none'}")
    edits = [edit for name, target in moves.items() for edit in _edits(text, found[name], target)]
    for edit in sorted(edits, key=lambda e: e.start, reverse=True):
        text = text[:edit.start] + edit.text + text[edit.end:]
    return text


def _edits(text: str, node: yaml.MappingNode, target: str | None) -> list[_Edit]:
    pairs = {k.value: (k, v) for k, v in node.value}
    if "target" in pairs:
        key, value = pairs["target"]
        if target is not None:
            return [_Edit(value.start_mark.index, value.end_mark.index, target)]
        return [_remove(text, node, key, value)]
    if target is None:
        return []
    name_key, name_value = pairs["name"]
    if node.flow_style:
        return [_Edit(name_value.end_mark.index, name_value.end_mark.index, f", target: {target}")]
    line_end = text.find("\n", name_value.end_mark.index)
    line_end = len(text) if line_end < 0 else line_end
    indent = " " * name_key.start_mark.column
    return [_Edit(line_end, line_end, f"\n{indent}target: {target}")]


def _remove(text: str, node: yaml.MappingNode, key: yaml.Node, value: yaml.Node) -> _Edit:
    if node.flow_style:
        start = text.rfind(",", 0, key.start_mark.index)
        return _Edit(start if start >= 0 else key.start_mark.index, value.end_mark.index, "")
    line_start = text.rfind("\n", 0, key.start_mark.index) + 1
    line_end = text.find("\n", value.end_mark.index)
    prefix = text[line_start:key.start_mark.index]
    if prefix.strip() and prefix.strip() != "-":  # not alone on its line: drop just the pair
        return _Edit(key.start_mark.index, value.end_mark.index, "")
    if prefix.strip() == "-":  # `- target: x` opens the item: the next key takes its place
        return _Edit(key.start_mark.index, (line_end + 1 + len(prefix)) if line_end >= 0 else len(text), "")
    return _Edit(line_start, line_end + 1 if line_end >= 0 else len(text), "")
