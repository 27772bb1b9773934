"""Typed stack variables (`variables:`) and their values per environment.

A value is the variable's `default`, overridden by the environment's values file (`<stem>.<env>.yaml`), overridden
by `--var NAME=VALUE`. `${var:NAME}` in any value of the stack file is replaced before the components are
validated: a value that is exactly the reference takes the variable's typed value (an integer stays an integer),
inside a longer text the value is written as text. `${var:environment}` is the environment's name.

For a non-default environment the stack's name (the state key, working directories, cloud names) becomes
`<name>-<environment>`, and an explicit SQLite state file gets `-<environment>` before its suffix, so each
environment has its own state.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from provisioner import environments
from provisioner.errors import MlplatError, SpecError

VariableType = Literal["string", "number", "integer", "boolean", "list", "map"]
VARIABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
#: built-in variables: set by mlplat, never declared
RESERVED = frozenset({"environment"})
_VAR_REF = re.compile(r"\$\{var:([^}]*)\}")
_ANY_REF = re.compile(r"\$\{[a-z]+:[^}]*\}")
HINT = ("declare variables under `variables:` in the stack file; set their values with --var NAME=VALUE or in the "
        "environment's values file (<stack>.<env>.yaml); see docs/environments.md")

Loc = tuple[str | int, ...]


class Variable(BaseModel):
    """One declared variable (`variables.NAME`)."""

    model_config = ConfigDict(extra="forbid")

    type: VariableType = Field("string", description="string, number, integer, boolean, list or map")
    default: Any = Field(None, description="Value when neither the environment's values file nor --var sets one "
                                           "(leave out to require a value)")
    description: str = Field("", description="What the variable is for (written as a comment by `mlplat env new`)")

    @model_validator(mode="after")
    def _default_has_the_type(self) -> Variable:
        if self.default is not None:
            problem = type_problem(self.type, self.default)
            if problem:
                from provisioner.spec.model import located

                raise located(f"default {problem}", "default")
        return self


# -- types ----------------------------------------------------------------------------------------------------------
def type_problem(kind: str, value: Any) -> str | None:
    """Why `value` (as YAML read it) is not a `kind`; None when it is."""
    ok = {
        "string": isinstance(value, str),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "list": isinstance(value, list),
        "map": isinstance(value, dict),
    }[kind]
    if ok:
        return None
    if isinstance(value, str) and _ANY_REF.search(value):
        return None  # reported as a reference (refused in variable values)
    hint = " (quote it to make it text)" if kind == "string" and not isinstance(value, list | dict) else ""
    return f"must be {_article(kind)}, got {_described(value)}{hint}"


def parse_text(kind: str, text: str) -> Any:
    """A --var value, given as text, as the declared type; ValueError says why it is not one."""
    if kind == "string":
        return text
    if kind == "integer":
        if re.fullmatch(r"[+-]?\d+", text.strip()):
            return int(text)
        raise ValueError(f"{text!r} is not a whole number")
    if kind == "number":
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        return int(value) if re.fullmatch(r"[+-]?\d+", text.strip()) else value
    if kind == "boolean":
        lowered = text.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        raise ValueError(f"{text!r} is not true or false")
    import yaml

    try:
        value = yaml.safe_load(text)  # JSON is YAML: [1, 2], {"a": 1}, a: 1
    except yaml.YAMLError:
        raise ValueError(f"{text!r} is not YAML or JSON") from None
    problem = type_problem(kind, value)
    if problem:
        raise ValueError(f"{text!r} {problem}; write it as YAML or JSON, e.g. "
                         + ("'[a, b]'" if kind == "list" else "'{a: 1}'"))
    return value


def as_text(value: Any) -> str:
    """A value interpolated into a longer text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _article(kind: str) -> str:
    return {"string": "a text (string)", "number": "a number", "integer": "a whole number (integer)",
            "boolean": "true or false (boolean)", "list": "a list", "map": "a mapping (map)"}[kind]


def _described(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the text {value!r}" if len(value) <= 40 else "a text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return repr(value)


# -- declarations -------------------------------------------------------------------------------------------------
@dataclass
class Declarations:
    variables: dict[str, Variable]
    stack_name: str | None  # metadata.name as written, when it is a plain name


def read_declarations(stack: Path) -> Declarations:
    """The stack file's declared variables (validated, errors located), without resolving anything else."""
    from provisioner.spec.loader import _decode, _parse

    try:
        data = stack.read_bytes()
    except OSError as err:
        raise SpecError([f"{stack}: cannot read the stack file: {err.strerror}"]) from None
    parsed, key_locs, value_locs = _parse(_decode(data, stack), stack)
    if not isinstance(parsed, dict):
        raise SpecError([f"{stack}:1:1: a stack file is a YAML mapping (apiVersion, metadata, ...)"])
    problems: list[str] = []
    declared = _declarations(parsed.get("variables"), key_locs, value_locs, stack, problems)
    if problems:
        raise SpecError(problems, hint=HINT)
    return Declarations(declared, _plain_name(parsed))


def _plain_name(data: dict[str, Any]) -> str | None:
    from provisioner.spec.model import NAME_PATTERN

    meta = data.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    return name if isinstance(name, str) and re.fullmatch(NAME_PATTERN, name) else None


def _declarations(section: Any, key_locs: dict, value_locs: dict, path: Path, problems: list[str]
                  ) -> dict[str, Variable]:
    from provisioner.spec.loader import _describe_validation_errors, _nearest, format_loc

    if section is None:
        return {}
    if not isinstance(section, dict):
        line, col = _nearest(("variables",), key_locs, value_locs)
        problems.append(f"{path}:{line}:{col}: variables: expected a mapping of NAME: {{type, default, "
                        "description}}")
        return {}
    declared: dict[str, Variable] = {}
    for name, spec in section.items():
        loc: Loc = ("variables", name)
        line, col = key_locs.get(loc, (1, 1))
        where = f"{path}:{line}:{col}: {format_loc(loc)}"
        if not isinstance(name, str) or not VARIABLE_NAME.fullmatch(name):
            problems.append(f"{where}: invalid variable name {name!r}: names are lower-case letters, digits and "
                            "'_', starting with a letter or '_'")
            continue
        if name in RESERVED:
            problems.append(f"{where}: {name!r} is built in (the environment's name, ${{var:{name}}}): it cannot "
                            "be declared; pick another name")
            continue
        refs = _references(spec.get("default") if isinstance(spec, dict) else None, (*loc, "default"))
        for at, _ in refs:
            line, col = value_locs.get(at) or _nearest(at, key_locs, value_locs)
            problems.append(f"{path}:{line}:{col}: {format_loc(at)}: a variable's default is a plain value: "
                            "references (${env:…}, ${secret:…}, ${var:…}) are not resolved here")
        if refs:
            continue
        try:
            declared[name] = Variable.model_validate({} if spec is None else spec)
        except Exception as err:
            if type(err).__name__ != "ValidationError":
                raise
            problems.extend(_describe_validation_errors(err, key_locs, value_locs, path, Variable, loc))
    return declared


def _references(value: Any, loc: Loc) -> list[tuple[Loc, str]]:
    """(location, text) of every string holding a `${scheme:…}` reference in `value`."""
    if isinstance(value, str):
        return [(loc, value)] if _ANY_REF.search(value) else []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [found for key, item in items for found in _references(item, (*loc, key))]


# -- resolution -----------------------------------------------------------------------------------------------------
@dataclass
class Resolved:
    """The environment a stack was loaded in and its variables' values."""

    environment: str = environments.DEFAULT_ENVIRONMENT
    values: dict[str, Any] = field(default_factory=dict)
    #: the --var texts given (recorded in a saved plan, so it is applied as it was made)
    overrides: dict[str, str] = field(default_factory=dict)
    declared: dict[str, Variable] = field(default_factory=dict)


def resolve(data: dict[str, Any], key_locs: dict, value_locs: dict, path: Path, problems: list[str], *,
            environment: str | None, overrides: dict[str, str] | None, select: bool) -> Resolved:
    """Choose the environment, compute every variable's value and replace the `${var:…}` references in `data`
    (in place). `select`: without `environment`, take $MLPLAT_ENV or the `mlplat env select` record.

    Raises SpecError for a variable problem; appends to `problems` a secret-looking key filled from a variable
    (the loader reports it with the other inline secrets)."""
    from provisioner.spec.loader import _nearest, format_loc

    environment, why = _choose(data, path, environment, select)
    mine: list[str] = []
    declared = _declarations(data.get("variables"), key_locs, value_locs, path, mine)
    values: dict[str, Any] = {}
    where_set: dict[str, str] = {}
    for name, variable in declared.items():
        if variable.default is not None:
            values[name] = copy.deepcopy(variable.default)
    if environment != environments.DEFAULT_ENVIRONMENT:
        file = environments.values_file(path, environment)
        if not file.is_file():
            raise environments.missing_environment(path, environment, why)
        for name, value in _read_values_file(file, declared, mine).items():
            values[name] = value
            where_set[name] = str(file)
    for name, text in (overrides or {}).items():
        problem = _override_problem(name, declared, path)
        if problem:
            mine.append(problem)
            continue
        try:
            values[name] = parse_text(declared[name].type, text)
        except ValueError as err:
            mine.append(f"--var {name}={text}: variable {name} is of type {declared[name].type}: {err}")
    for name, variable in declared.items():
        if name not in values:
            line, col = key_locs.get(("variables", name), (1, 1))
            file_hint = (f"in {environments.values_file(path, environment)}" if environment !=
                         environments.DEFAULT_ENVIRONMENT else "in an environment's values file (-e ENV)")
            mine.append(f"{path}:{line}:{col}: variables.{name}: variable {name} ({variable.type}) has no value in "
                        f"environment {environment!r}: it has no default; set it with --var {name}=… or "
                        f"{file_hint}")
    values["environment"] = environment
    raw_state = copy.deepcopy(data.get("state"))
    references = _references({k: v for k, v in data.items() if k != "variables"}, ())
    uses_variables = any("${var:" in text for _, text in references)  # else two walks of a big file are skipped
    if uses_variables:
        _refuse_secret_variables(data, (), value_locs, path, problems)
    for loc, text in references:
        for match in _VAR_REF.finditer(text):
            name = match.group(1)
            if name not in values and name not in declared:
                line, col = value_locs.get(loc) or _nearest(loc, key_locs, value_locs)
                known = sorted({*declared, *RESERVED})
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
                hint = f"did you mean ${{var:{close[0]}}}?" if close else \
                    f"declared variables: {', '.join(known)}" if declared else "declare it under variables:"
                mine.append(f"{path}:{line}:{col}: {format_loc(loc)}: unknown variable {name!r} in "
                            f"${{var:{name}}}; {hint}")
    if mine:
        raise SpecError([*problems, *mine], hint=HINT)
    if uses_variables:
        _substitute(data, values)
    if isinstance(data.get("variables"), dict):
        data["variables"] = {name: v.model_dump() for name, v in declared.items()}
    if environment != environments.DEFAULT_ENVIRONMENT:
        _rename_for_environment(data, environment, value_locs, path)
        _separate_sqlite_state(data, raw_state, environment)
    return Resolved(environment, values, dict(overrides or {}), declared)


def _choose(data: dict[str, Any], path: Path, environment: str | None, select: bool) -> tuple[str, str]:
    if environment:
        return environments.check_name(environment), "-e"
    if select:
        return environments.selected(path, _plain_name(data))
    return environments.DEFAULT_ENVIRONMENT, "default"


def _override_problem(name: str, declared: dict[str, Variable], path: Path) -> str | None:
    if name in RESERVED:
        return f"--var {name}=…: {name!r} is built in (the environment's name): choose the environment with -e"
    if name in declared:
        return None
    close = difflib.get_close_matches(name, list(declared), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else (f"declared variables: {', '.join(declared)}" if declared
                                                        else "it declares no variables")
    return f"--var {name}=…: {path} declares no variable {name!r}; {hint}"


def _read_values_file(file: Path, declared: dict[str, Variable], problems: list[str]) -> dict[str, Any]:
    """An environment's values file, `variables: {NAME: value}`; its problems are located in it."""
    from provisioner.spec.loader import _decode, _nearest, _parse, format_loc

    try:
        raw = file.read_bytes()
    except OSError as err:
        raise SpecError([f"{file}: cannot read the environment's values file: {err.strerror}"]) from None
    text = _decode(raw, file)
    if not text.strip():
        return {}
    data, key_locs, value_locs = _parse(text, file)
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(f"{file}:1:1: an environment's values file is a YAML mapping: variables: {{NAME: value}}")
        return {}
    for key in data:
        if key != "variables":
            line, col = key_locs.get((key,), (1, 1))
            close = " (did you mean 'variables'?)" if difflib.get_close_matches(str(key), ["variables"]) else ""
            problems.append(f"{file}:{line}:{col}: {key}: unknown key {key!r}{close}; an environment's values file "
                            "holds only variables: {NAME: value}")
    section = data.get("variables")
    if section is None:
        return {}
    if not isinstance(section, dict):
        line, col = _nearest(("variables",), key_locs, value_locs)
        problems.append(f"{file}:{line}:{col}: variables: expected a mapping of NAME: value")
        return {}
    values = {}
    for name, value in section.items():
        loc: Loc = ("variables", name)
        line, col = key_locs.get(loc, (1, 1))
        if name in RESERVED:
            problems.append(f"{file}:{line}:{col}: {format_loc(loc)}: {name!r} is built in (the environment's "
                            "name); remove it")
            continue
        if name not in declared:
            close = difflib.get_close_matches(str(name), list(declared), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else (
                f"declared variables: {', '.join(declared)}" if declared else "the stack declares no variables")
            problems.append(f"{file}:{line}:{col}: {format_loc(loc)}: the stack declares no variable {name!r}; "
                            f"{hint}")
            continue
        if value is None:
            continue  # written by `mlplat env new` for a variable without default: not set here
        refs = _references(value, loc)
        if refs:
            at = refs[0][0]
            line, col = value_locs.get(at) or _nearest(at, key_locs, value_locs)
            problems.append(f"{file}:{line}:{col}: {format_loc(at)}: a variable's value is a plain value: "
                            "references (${env:…}, ${secret:…}, ${var:…}) are not resolved here")
            continue
        problem = type_problem(declared[name].type, value)
        if problem:
            line, col = value_locs.get(loc, (line, col))
            problems.append(f"{file}:{line}:{col}: {format_loc(loc)}: variable {name} is of type "
                            f"{declared[name].type}: the value {problem}")
            continue
        values[name] = value
    return values


def _refuse_secret_variables(data: Any, loc: Loc, value_locs: dict, path: Path, problems: list[str],
                             secret: bool = False) -> None:
    """A secret-looking key (password, token, api_key…) filled from a variable: variables are plain text in the
    stack file and the values files, so a secret there is refused, as a secret written inline is."""
    from provisioner.spec.loader import _nearest, format_loc
    from provisioner.spec.model import SECRET_KEY

    if isinstance(data, str):
        if secret and _VAR_REF.search(data):
            if any(f": {format_loc(loc)}: secrets may not be written" in p for p in problems):
                return  # already refused as an inline secret
            line, col = _nearest(loc, {}, value_locs)
            problems.append(f"{path}:{line}:{col}: {format_loc(loc)}: a secret may not come from a variable "
                            "(${var:…} values are plain text in the stack and values files); write "
                            "${secret:NAME} and export NAME instead")
        return
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        if loc == () and key == "variables":
            continue
        _refuse_secret_variables(value, (*loc, key), value_locs, path, problems,
                                 secret or (isinstance(key, str) and bool(SECRET_KEY.search(key))))


def _substitute(data: Any, values: dict[str, Any], top: bool = True) -> None:
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in list(items):
        if top and key == "variables":
            continue
        if isinstance(value, dict | list):
            _substitute(value, values, False)
        elif isinstance(value, str) and "${var:" in value:
            whole = _VAR_REF.fullmatch(value)
            data[key] = copy.deepcopy(values[whole.group(1)]) if whole else _VAR_REF.sub(
                lambda m: as_text(values[m.group(1)]), value)


def _rename_for_environment(data: dict[str, Any], environment: str, value_locs: dict, path: Path) -> None:
    """metadata.name -> `<name>-<environment>`: the environment's own state, working area and cloud names."""
    from provisioner.spec.model import NAME_PATTERN

    meta = data.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        return  # the model reports it
    renamed = f"{name}-{environment}"
    if not re.fullmatch(NAME_PATTERN, renamed):
        line, col = value_locs.get(("metadata", "name"), (1, 1))
        raise SpecError([f"{path}:{line}:{col}: metadata.name: in environment {environment!r} the stack is named "
                         f"{renamed!r} ({len(renamed)} characters), and stack names have at most 40"],
                        hint="shorten metadata.name or the environment's name")
    meta["name"] = renamed


def _separate_sqlite_state(data: dict[str, Any], raw_state: Any, environment: str) -> None:
    """An explicit SQLite state file holds one stack: give each environment its own (`state-prod.db`), unless the
    path already names the environment (`${var:environment}`)."""
    state = data.get("state")
    if not isinstance(state, dict) or not isinstance(raw_state, dict):
        return
    for key in ("path", "url"):
        raw = raw_state.get(key)
        if isinstance(raw, str) and "${var:environment}" not in raw and isinstance(state.get(key), str):
            if key == "path" and state.get("backend", "sqlite") == "sqlite":
                state[key] = per_environment_path(state[key], environment)
            elif key == "url":
                state[key] = per_environment_state_url(state[key], environment)


def per_environment_path(path: str, environment: str) -> str:
    p = Path(path)
    return str(p.with_name(f"{p.stem}-{environment}{p.suffix}")) if p.name else path


def per_environment_state_url(url: str | None, environment: str) -> str | None:
    """A `sqlite://` state URL for `environment` (others are keyed by the stack's name, already per
    environment)."""
    if not url or environment == environments.DEFAULT_ENVIRONMENT or not url.startswith("sqlite://"):
        return url
    return "sqlite://" + per_environment_path(url.removeprefix("sqlite://"), environment)


def plan_environment(recorded_environment: str, recorded_variables: dict[str, str], environment: str | None,
                     variables: dict[str, str]) -> tuple[str | None, dict[str, str]]:
    """The environment and --var values to open a saved plan's stack with: the plan's own. A different -e or
    --var on the command line is refused (the plan was made with the values it records)."""
    if not recorded_environment:  # a plan saved before environments existed
        return environment, variables
    if environment and environment != recorded_environment:
        raise MlplatError(f"this plan was made in environment {recorded_environment!r}, not {environment!r}",
                          hint=f"apply it without -e (it uses {recorded_environment!r}), or make a new plan: "
                               f"mlplat preview -e {environment} -o plan.json")
    if variables and variables != recorded_variables:
        given = ", ".join(f"{k}={v}" for k, v in sorted(recorded_variables.items())) or "none"
        raise MlplatError(f"this plan was made with other --var values ({given})",
                          hint="apply it without --var (it uses the values it was made with), or make a new plan "
                               "with these values")
    return recorded_environment, dict(recorded_variables)


#: --var text standing in for a variable without default, per type (for `mlplat fmt`, which needs no values)
_PLACEHOLDERS = {"string": "mlplat-fmt-placeholder", "number": "1", "integer": "1", "boolean": "false", "list": "[]",
                 "map": "{}"}


def placeholders(text: str | bytes) -> dict[str, str]:
    """--var values for the declared variables of a stack file's `text` that have no default."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}  # the loader reports it, located
    section = data.get("variables") if isinstance(data, dict) else None
    if not isinstance(section, dict):
        return {}
    out = {}
    for name, declared in section.items():
        declared = declared if isinstance(declared, dict) else {}
        kind = declared.get("type", "string")
        if isinstance(name, str) and declared.get("default") is None and kind in _PLACEHOLDERS:
            out[name] = _PLACEHOLDERS[kind]
    return out
