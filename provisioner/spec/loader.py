"""Load a stack file: YAML -> dict with a location for every key and item -> typed `Platform`.

Every problem becomes a `SpecError` whose lines read `file:line:col: path: message` plus a hint.
"""

from __future__ import annotations

import codecs
import difflib
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from provisioner.artifacts import ARTIFACT_ROOTS_HINT, confinement_problem
from provisioner.errors import SpecError
from provisioner.secrets import SECRET_NAME, Secret
from provisioner.spec import fastyaml
from provisioner.spec.model import SECRET_KEY, Platform
from provisioner.spec.modules import (
    Origins,
    first_given,
    located,
    merge_includes,
    origin_of,
    relocate_lines,
)
from provisioner.spec.variables import Resolved
from provisioner.spec.variables import resolve as resolve_variables

Loc = tuple[str | int, ...]
_REF = re.compile(r"\$\{([a-z]+):([^}]*)\}")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_NON_PRINTABLE = yaml.reader.Reader.NON_PRINTABLE
#: values that aliases (`*name`) may repeat in all; a "billion laughs" file would repeat billions
ALIAS_BUDGET = 10_000
#: lists and mappings nested deeper than this are refused (a stack file is a few levels deep)
MAX_DEPTH = 64


@dataclass
class LoadedStack:
    """A validated stack plus where each of its values came from (for located errors later in the pipeline)."""

    platform: Platform
    path: Path
    key_locations: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    value_locations: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    #: the module file each component merged from an `include:` came from (provisioner.spec.modules)
    origins: Origins = field(default_factory=dict)
    #: the environment it was loaded in and its variables' values (provisioner.spec.variables)
    variables: Resolved = field(default_factory=Resolved)

    @property
    def environment(self) -> str:
        return self.variables.environment

    @property
    def directory(self) -> Path:
        return self.path.parent

    def where(self, loc: Loc) -> str:
        """`file:line:col` of the deepest known prefix of `loc`."""
        line, col = _nearest(loc, self.key_locations, self.value_locations)
        origin = origin_of(loc, self.origins)
        return f"{origin.path if origin else self.path}:{line}:{col}"

    def included(self, loc: Loc) -> str:
        """` (included from file:line:col)` when `loc` is in a component merged from a module, else ''."""
        origin = origin_of(loc, self.origins)
        return origin.note if origin else ""

    def describe(self, err: Any, prefix: Loc, model: Any) -> list[str]:
        """Located messages for a pydantic ValidationError raised validating the part of the file at `prefix`."""
        return _describe_validation_errors(err, self.key_locations, self.value_locations, self.path, model, prefix,
                                           self.origins)

    def problem(self, loc: Loc, message: str) -> str:
        """One located problem line: `file:line:col: path: message`."""
        return f"{self.where(loc)}: {format_loc(loc)}: {message}{self.included(loc)}"

    def error(self, loc: Loc, message: str, hint: str | None = None) -> SpecError:
        return SpecError([self.problem(loc, message)], hint=hint)


def load(path: str | Path, *, environment: str | None = None,
         variables: dict[str, str] | None = None) -> LoadedStack:
    """`environment`: its variable values come from `<stack>.<environment>.yaml`; `variables`: NAME -> text given
    on the command line (parsed as the declared type), over the environment's values."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SpecError([f"{path}: no such stack file"], hint="pass the stack file with -f PATH") from None
    except OSError as err:
        raise SpecError([f"{path}: cannot read: {err.strerror}"]) from None
    return loads(data, path, environment=environment, variables=variables, select=True)


def loads(text: str | bytes, path: str | Path = "<stack>", *, environment: str | None = None,
          variables: dict[str, str] | None = None, select: bool = False) -> LoadedStack:
    """`text` is the stack file's content; bytes must be UTF-8 (a leading byte-order mark is skipped).
    `select`: without `environment`, use $MLPLAT_ENV or the one `mlplat env select` recorded (else default)."""
    path = Path(path)
    if isinstance(text, bytes):
        text = _decode(text, path)
    data, key_locs, value_locs = _parse(text, path)
    if not isinstance(data, dict):
        raise SpecError([f"{path}:1:1: a stack file is a YAML mapping (apiVersion, metadata, ...)"])
    origins = merge_includes(data, key_locs, value_locs, path) if "include" in data else {}
    problems: list[str] = []
    _reject_inline_secrets(data.get("targets"), key_locs, path, problems)
    serving = data.get("serving")
    if isinstance(serving, list):
        _reject_inline_secrets(dict(enumerate(serving)), key_locs, path, problems, "serving")
    try:
        resolved = resolve_variables(data, key_locs, value_locs, path, problems, environment=environment,
                                     overrides=variables, select=select)
    except SpecError as err:  # a ${var:} problem inside a component from a module: name the module
        raise SpecError(relocate_lines(err.problems, path, origins), hint=err.hint) from None
    _resolve_references(data, (), value_locs, path, problems)
    if problems:
        raise SpecError(relocate_lines(problems, path, origins),
                        hint="reference secrets as ${secret:NAME} and export NAME in the environment")
    try:
        platform = Platform.model_validate(data)
    except Exception as err:  # pydantic.ValidationError; imported lazily by type name to keep start-up lean
        if type(err).__name__ != "ValidationError":
            raise
        raise SpecError(_describe_validation_errors(err, key_locs, value_locs, path, Platform, (), origins)) from None
    problems = _confine_artifacts(platform, path, value_locs, origins)
    if problems:
        raise SpecError(problems, hint=ARTIFACT_ROOTS_HINT)
    return LoadedStack(platform, path, key_locs, value_locs, origins, resolved)


def _confine_artifacts(platform: Platform, path: Path, value_locs: dict, origins: Origins | None = None) -> list[str]:
    """A model artifact given as a path must lie (symlinks followed) under the stack's directory or a listed
    registry.artifact_roots entry: a stack file may not copy /etc/passwd into a registry."""
    registry = platform.registry
    if registry is None:
        return []
    problems = []
    for i, model in enumerate(registry.models):
        problem = confinement_problem(model.artifact, path.parent, registry.artifact_roots)
        if problem:
            loc: Loc = ("registry", "models", i, "artifact")
            line, col = value_locs.get(loc) or _nearest(loc, {}, value_locs)
            problems.append(located(path, loc, (line, col), f"{format_loc(loc)}: {problem}", origins))
    return problems


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top)"


def _decode(data: bytes, path: Path) -> str:
    """UTF-8 text of a stack file (a leading byte-order mark is skipped); a located error at the first bad byte, or
    at the first NUL of a file that looks like UTF-16 or UTF-32."""
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    wide = _wide_encoding(data)
    try:
        text = data[start:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = start + err.start
    else:
        if not wide:
            return text
        offset = data.index(b"\0")
    line_start = data.rfind(b"\n", 0, offset) + 1
    line = data.count(b"\n", 0, offset) + 1
    col = len(data[max(line_start, start):offset].decode("utf-8", "replace")) + 1
    looks = f"; it looks like {wide}" if wide else ""
    raise SpecError([f"{path}:{line}:{col}: the stack file is not UTF-8 text (byte 0x{data[offset]:02x} at offset "
                     f"{offset}{looks})"], hint="save the file as UTF-8")


#: byte-order marks of the wide encodings (UTF-32 first: its little-endian mark begins with UTF-16's)
_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
              (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


def _wide_encoding(data: bytes) -> str | None:
    """The wide encoding `data` looks like: UTF-16 or UTF-32 when it starts with that byte-order mark, UTF-16 when
    its first bytes have a NUL at every other offset (UTF-16 without a mark); else None."""
    for bom, name in _WIDE_BOMS:
        if data.startswith(bom):
            return name
    head = data[:256]
    even, odd = head[0::2].count(0), head[1::2].count(0)
    if len(head) >= 4 and (even == 0) != (odd == 0) and max(even, odd) >= len(head) // 4:
        return "UTF-16"
    return None


def _position(text: str, index: int) -> tuple[int, int]:
    """1-based (line, column) of the character at `index`."""
    index = max(0, min(index, len(text)))
    return text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1


def _refuse_unreadable_characters(text: str, path: Path) -> None:
    """YAML refuses control characters (NUL, ...) and a str may hold lone surrogates; say where, before parsing."""
    bad = _NON_PRINTABLE.search(text)
    if bad:
        line, col = _position(text, bad.start())
        raise SpecError([f"{path}:{line}:{col}: character U+{ord(bad.group()):04X} is not allowed in a stack file "
                         "(control characters and unpaired surrogates cannot be read)"],
                        hint="remove it; if the file is binary or was saved as UTF-16, save it as UTF-8 text")


class _Open:
    """A list or mapping being read by `_check_structure`."""

    __slots__ = ("anchor", "items", "key", "mapping", "size")

    def __init__(self, anchor: str | None, mapping: bool) -> None:
        self.anchor, self.mapping, self.size, self.items, self.key = anchor, mapping, 0, 0, None

    def add(self, event: yaml.Event, size: int) -> None:
        if self.mapping and self.items % 2 == 0:  # a key
            self.key = event.value if isinstance(event, yaml.ScalarEvent) else "?"
        self.size += size
        self.items += 1


def _open_loc(frames: list[_Open]) -> Loc:
    """Where the next value goes: the path through the open lists and mappings."""
    loc: list[str | int] = []
    for frame in frames:
        if not frame.mapping:
            loc.append(frame.items)
        elif frame.items % 2:
            loc.append(frame.key)
        else:
            break  # at a key
    return tuple(loc)


def _check_structure(text: str, path: Path) -> bool:
    """One pass over the parse events before anything is built: refuse nesting deeper than MAX_DEPTH, and aliases
    that would repeat more than ALIAS_BUDGET values in all (a "billion laughs" file expands exponentially) or that
    name the list or mapping they are inside (a cycle). Only sizes are counted: nothing is expanded.

    True when the file uses aliases.
    """
    loader = _Loader(text)
    sizes: dict[str, int | None] = {}  # anchor -> values it stands for (None while it is still open)
    lines: dict[str, int] = {}  # anchor -> line it was defined on
    frames: list[_Open] = []
    repeated = 0
    try:
        while True:
            event = loader.get_event()
            mark = event.start_mark
            where = f"{path}:{mark.line + 1}:{mark.column + 1}"
            if isinstance(event, yaml.CollectionStartEvent):
                if len(frames) >= MAX_DEPTH:
                    raise SpecError([f"{where}: {format_loc(_open_loc(frames))}: nested more than {MAX_DEPTH} "
                                     "levels deep"], hint="a stack file is a few levels deep; check the brackets")
                if event.anchor is not None:
                    sizes[event.anchor], lines[event.anchor] = None, mark.line + 1
                frames.append(_Open(event.anchor, isinstance(event, yaml.MappingStartEvent)))
                continue
            if isinstance(event, yaml.CollectionEndEvent):
                frame = frames.pop()
                size = frame.size + 1
                if frame.anchor is not None:
                    sizes[frame.anchor] = size
            elif isinstance(event, yaml.ScalarEvent):
                size = 1
                if event.anchor is not None:
                    sizes[event.anchor], lines[event.anchor] = 1, mark.line + 1
            elif isinstance(event, yaml.AliasEvent):
                anchor = event.anchor
                if anchor in sizes and sizes[anchor] is None:
                    raise SpecError([f"{where}: {format_loc(_open_loc(frames))}: alias *{anchor} is inside the value "
                                     f"anchored &{anchor} on line {lines[anchor]}: a value cannot contain itself"],
                                    hint="write the repeated part out instead of the alias")
                size = sizes.get(anchor) or 1  # an undefined alias is reported when the document is composed
                repeated += size
                if repeated > ALIAS_BUDGET:
                    raise SpecError([f"{where}: {format_loc(_open_loc(frames))}: alias *{anchor} (anchor &{anchor} "
                                     f"on line {lines.get(anchor, mark.line + 1)}) makes aliases repeat more than "
                                     f"{ALIAS_BUDGET} values in all; refusing to expand them"],
                                    hint="aliases are for small reuse: write the values out, or reuse smaller parts")
            elif isinstance(event, yaml.DocumentEndEvent | yaml.StreamEndEvent):
                return repeated > 0  # the first document; composing it reports any other
            else:
                continue
            if frames:
                frames[-1].add(event, size)
    finally:
        loader.dispose()


def _unshared(data: Any) -> Any:
    """A copy in which no list or mapping appears twice (aliases share them), so each place is resolved once."""
    if isinstance(data, dict):
        return {key: _unshared(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_unshared(item) for item in data]
    return data


def _parse(text: str, path: Path) -> tuple[Any, dict[Loc, tuple[int, int]], dict[Loc, tuple[int, int]]]:
    _refuse_unreadable_characters(text, path)
    loader = _Loader(text)
    try:
        fast = fastyaml.parse(text, _Loader, MAX_DEPTH)  # one pass, no alias; None: what it leaves to this path
        if fast is not None:
            return fast
        aliased = _check_structure(text, path)
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
        if aliased:
            data = _unshared(data)
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
    except yaml.YAMLError as err:  # yaml.reader.ReaderError is not a MarkedYAMLError: it carries an offset
        line, col = _position(text, getattr(err, "position", 0))
        raise SpecError([f"{path}:{line}:{col}: cannot read the stack file: {getattr(err, 'reason', err)}"],
                        hint="save the file as UTF-8 text without control characters") from None
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
        if scheme == "resource":  # an output known at apply: provisioner.raw turns it into a Ref
            if loc[:1] == ("resources",) and loc[2:3] == ("inputs",):
                return match.group(0)
            problems.append(f"{path}:{line}:{col}: {format_loc(loc)}: ${{resource:...}} references are allowed "
                            "only in the inputs of a raw resource (resources[*].inputs)")
            return ""
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
                                prefix: Loc = (), origins: Origins | None = None) -> list[str]:
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
            problems.append(located(path, loc, (line, col), f"{format_loc(loc)}: unknown key {loc[-1]!r}; {hint}",
                                    origins))
            continue
        if kind == "missing":
            line, col = _nearest(loc[:-1], key_locs, value_locs)
            problems.append(located(path, loc, (line, col), f"{format_loc(loc)}: required key {loc[-1]!r} is "
                                    "missing; add it", origins))
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
            first = (*prefix, *inner, *ctx["first"])
            message += f" (first given {first_given(path, loc, first, _nearest(first, key_locs, value_locs), origins)})"
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
        elif kind in ("int_type", "int_parsing", "int_from_float"):
            message = f"expected a whole number, got {_shown(e.get('input'), 'int')}"
        elif kind in ("bool_type", "bool_parsing"):
            message = f"expected true or false, got {_shown(e.get('input'), 'bool')}"
        problems.append(located(path, loc, (line, col), f"{format_loc(loc)}: {message}", origins))
    return problems


def _shown(value: Any, kind: str) -> str:
    """A YAML value as the user wrote it, for "expected X, got Y" (a secret is never shown); a quoted value that
    would be a `kind` (int, bool) without its quotes says so."""
    if isinstance(value, Secret):
        return "a secret"
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, str):
        if len(value) > 40 or "\n" in value:
            return "a text"
        tag = yaml.resolver.Resolver().resolve(yaml.ScalarNode, value, (True, False))
        return f"the text {value!r}" + (" (remove the quotes)" if tag == f"tag:yaml.org,2002:{kind}" else "")
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)


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
