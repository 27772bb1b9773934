"""Load a stack file: YAML -> dict with a location for every key and item -> typed `Platform`.

Every problem becomes a `SpecError` whose lines read `file:line:col: path: message` plus a hint.
"""

from __future__ import annotations

import difflib
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from provisioner.errors import SpecError
from provisioner.secrets import SECRET_NAME, Secret
from provisioner.spec.model import SECRET_KEY, Platform

Loc = tuple[str | int, ...]
_REF = re.compile(r"\$\{([a-z]+):([^}]*)\}")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class LoadedStack:
    """A validated stack plus where each of its values came from (for located errors later in the pipeline)."""

    platform: Platform
    path: Path
    key_locations: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    value_locations: dict[Loc, tuple[int, int]] = field(default_factory=dict)

    @property
    def directory(self) -> Path:
        return self.path.parent

    def where(self, loc: Loc) -> str:
        """`file:line:col` of the deepest known prefix of `loc`."""
        line, col = _nearest(loc, self.key_locations, self.value_locations)
        return f"{self.path}:{line}:{col}"

    def describe(self, err: Any, prefix: Loc, model: Any) -> list[str]:
        """Located messages for a pydantic ValidationError raised validating the part of the file at `prefix`."""
        return _describe_validation_errors(err, self.key_locations, self.value_locations, self.path, model, prefix)

    def problem(self, loc: Loc, message: str) -> str:
        """One located problem line: `file:line:col: path: message`."""
        return f"{self.where(loc)}: {format_loc(loc)}: {message}"

    def error(self, loc: Loc, message: str, hint: str | None = None) -> SpecError:
        return SpecError([self.problem(loc, message)], hint=hint)


def load(path: str | Path) -> LoadedStack:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([f"{path}: no such stack file"], hint="pass the stack file with -f PATH") from None
    except OSError as err:
        raise SpecError([f"{path}: cannot read: {err.strerror}"]) from None
    return loads(text, path)


def loads(text: str, path: str | Path = "<stack>") -> LoadedStack:
    path = Path(path)
    data, key_locs, value_locs = _parse(text, path)
    if not isinstance(data, dict):
        raise SpecError([f"{path}:1:1: a stack file is a YAML mapping (apiVersion, metadata, ...)"])
    problems: list[str] = []
    _reject_inline_secrets(data.get("targets"), key_locs, path, problems)
    serving = data.get("serving")
    if isinstance(serving, list):
        _reject_inline_secrets(dict(enumerate(serving)), key_locs, path, problems, "serving")
    _resolve_references(data, (), value_locs, path, problems)
    if problems:
        raise SpecError(problems, hint="reference secrets as ${secret:NAME} and export NAME in the environment")
    try:
        platform = Platform.model_validate(data)
    except Exception as err:  # pydantic.ValidationError; imported lazily by type name to keep start-up lean
        if type(err).__name__ != "ValidationError":
            raise
        raise SpecError(_describe_validation_errors(err, key_locs, value_locs, path, Platform)) from None
    return LoadedStack(platform, path, key_locs, value_locs)


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top)"


def _parse(text: str, path: Path) -> tuple[Any, dict[Loc, tuple[int, int]], dict[Loc, tuple[int, int]]]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError([f"{path}:1:1: the stack file is empty"], hint="start from stacks/quickstart.yaml")
        key_locs: dict[Loc, tuple[int, int]] = {}
        value_locs: dict[Loc, tuple[int, int]] = {}
        problems: list[str] = []
        _index(node, (), key_locs, value_locs, path, problems)
        if problems:
            raise SpecError(problems)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else f"{path}:1:1"
        message = err.problem or err.context
        opened = err.context_mark
        if err.problem and err.context and opened and mark and (opened.line, opened.column) != (mark.line, mark.column):
            # e.g. an unclosed '[' or quote: the problem shows where parsing gave up; name where it began
            message += f" ({err.context} that starts at line {opened.line + 1}, column {opened.column + 1})"
        raise SpecError([f"{where}: YAML syntax error: {message}"],
                        hint="check indentation and quoting around this position") from None
    finally:
        loader.dispose()
    return data, key_locs, value_locs


def _index(node: yaml.Node, loc: Loc, key_locs: dict, value_locs: dict, path: Path, problems: list[str]) -> None:
    value_locs[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            here = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(f"{path}:{here[0]}:{here[1]}: {format_loc(loc)}: a key must be a plain name, "
                                "not a list or mapping")
                continue
            key = key_node.value
            if key in seen:
                problems.append(f"{path}:{here[0]}:{here[1]}: {format_loc((*loc, key))}: duplicate key "
                                f"(first given on line {seen[key]}); keep one")
                continue
            seen[key] = here[0]
            key_locs[(*loc, key)] = here
            _index(value_node, (*loc, key), key_locs, value_locs, path, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*loc, i), key_locs, value_locs, path, problems)


def _resolve_references(data: Any, loc: Loc, locs: dict, path: Path, problems: list[str]) -> Any:
    """Replace `${env:NAME}` and `${secret:NAME}` in place (both read the environment variable NAME).

    A `${secret:...}` value, or an `${env:...}` one whose NAME looks secret (…_TOKEN, …PASSWORD, …API_KEY), becomes
    a `Secret`: sealed in the state, masked in every output.
    """
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in list(items):
        if isinstance(value, dict | list):
            _resolve_references(value, (*loc, key), locs, path, problems)
        elif isinstance(value, str) and "${" in value:
            data[key] = _substitute(value, (*loc, key), locs, path, problems)
            if SECRET_KEY.search(str(key)) and data[key]:  # whatever fills a secret-looking key is one
                data[key] = Secret(data[key])
    return data


def _substitute(value: str, loc: Loc, locs: dict, path: Path, problems: list[str]) -> str:
    secret = False

    def replace(match: re.Match[str]) -> str:
        nonlocal secret
        scheme, name = match.group(1), match.group(2)
        line, col = locs.get(loc, (1, 1))
        if scheme not in ("env", "secret"):
            problems.append(f"{path}:{line}:{col}: {format_loc(loc)}: unsupported reference ${{{scheme}:...}}; "
                            "use ${env:NAME} or ${secret:NAME}")
            return ""
        if name not in os.environ:
            problems.append(f"{path}:{line}:{col}: {format_loc(loc)}: environment variable {name} is not set")
            return ""
        secret = secret or scheme == "secret" or bool(SECRET_NAME.search(name))
        return os.environ[name]

    resolved = _REF.sub(replace, value)
    return Secret(resolved) if secret else resolved


def _reject_inline_secrets(targets: Any, locs: dict, path: Path, problems: list[str], section: str = "targets") -> None:
    """A secret-looking setting must be a reference (checked before references are substituted).

    Reported at the key; the value is never echoed.
    """
    if not isinstance(targets, dict):
        return
    for target, settings in targets.items():
        if not isinstance(settings, dict):
            continue
        for key, value in settings.items():
            if not SECRET_KEY.search(str(key)) or isinstance(value, bool) or value in (None, ""):
                continue
            if isinstance(value, int | float) or (isinstance(value, str) and not _REF.fullmatch(value.strip())):
                line, col = locs.get((section, target, key), (1, 1))
                where = f"{section}[{target}]" if isinstance(target, int) else f"{section}.{target}"
                problems.append(f"{path}:{line}:{col}: {where}.{key}: secrets may not be written in "
                                "the stack file; write ${secret:NAME} and export NAME instead")


def _describe_validation_errors(err: Any, key_locs: dict, value_locs: dict, path: Path, model: Any,
                                prefix: Loc = ()) -> list[str]:
    problems = []
    for e in err.errors(include_url=False):
        inner: Loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and "[" in p))  # drop union tags
        loc: Loc = (*prefix, *inner)
        kind = e["type"]
        if kind == "extra_forbidden":
            line, col = key_locs.get(loc) or value_locs.get(loc, (1, 1))
            candidates = _field_names(model, inner[:-1])
            close = difflib.get_close_matches(str(loc[-1]), candidates, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"allowed keys here: {', '.join(candidates)}"
            problems.append(f"{path}:{line}:{col}: {format_loc(loc)}: unknown key {loc[-1]!r}; {hint}")
            continue
        if kind == "missing":
            line, col = _nearest(loc[:-1], key_locs, value_locs)
            problems.append(f"{path}:{line}:{col}: {format_loc(loc)}: required key {loc[-1]!r} is missing; add it")
            continue
        ctx = e.get("ctx") or {}
        if "at" in ctx:  # provisioner.spec.model.located: the error belongs to a part of the validated object
            loc = (*loc, *ctx["at"])
        if ("at" in ctx or isinstance(e.get("input"), dict | list)) and loc in key_locs:
            line, col = key_locs[loc]  # a located error, or one about a whole mapping or list: point at the key
        else:
            line, col = value_locs.get(loc) or _nearest(loc, key_locs, value_locs)
        message = e["msg"].removeprefix("Value error, ")
        if "first" in ctx:
            first_line, _ = _nearest((*prefix, *inner, *ctx["first"]), key_locs, value_locs)
            message += f" (first given on line {first_line})"
        if kind == "string_pattern_mismatch" and loc and loc[-1] == "name":
            message = f"invalid name {e.get('input')!r}: names are 1-40 characters of a-z, 0-9 and '-', " \
                      "starting with a letter"
        elif kind == "string_pattern_mismatch" and loc and loc[-1] == "model":
            message = f"invalid model reference {e.get('input')!r}: write name:version, e.g. iris:1"
        elif kind == "literal_error":
            message = f"{e.get('input')!r} is not allowed: {message}"
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            message = "expected a mapping (indented `key: value` lines)"
        elif kind == "list_type":
            message = "expected a list (lines starting with `- `)"
        problems.append(f"{path}:{line}:{col}: {format_loc(loc)}: {message}")
    return problems


def _nearest(loc: Loc, key_locs: dict, value_locs: dict) -> tuple[int, int]:
    for end in range(len(loc), -1, -1):
        if loc[:end] in key_locs:
            return key_locs[loc[:end]]
        if loc[:end] in value_locs:
            return value_locs[loc[:end]]
    return (1, 1)


def _field_names(model: Any, loc: Loc) -> list[str]:
    """The keys `model` accepts at `loc` (aliases where defined), for did-you-mean hints."""
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return []
        model = _unwrap(fields[part].annotation)
    fields = getattr(model, "model_fields", {})
    return [f.alias or name for name, f in fields.items()]


def _unwrap(annotation: Any) -> Any:
    """list[X] / X | None / dict[str, X] -> X (the model class a nested key belongs to)."""
    while True:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if hasattr(annotation, "model_fields") or not args:
            return annotation
        annotation = args[-1]
