"""Environments of one stack file (dev, staging, prod…): where their values live, which one is selected, and the
`mlplat env list/new/select` commands.

Layout beside the stack file `stacks/quickstart.yaml`:
  stacks/quickstart.prod.yaml                the `prod` environment's variable values (`variables: {NAME: value}`)
  stacks/.mlplat/quickstart.environment      the environment `mlplat env select` chose (one line)
The `default` environment has no file: its values are the variables' defaults (and --var).

Imported by the spec loader: only the standard library at module level.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.errors import MlplatError, SpecError

DEFAULT_ENVIRONMENT = "default"
ENVIRONMENT_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
#: the environment variable naming the environment when -e is not given
ENV_VARIABLE = "MLPLAT_ENV"
_NAME_HINT = "environment names are 1-20 characters: lower-case letters, digits and '-', starting with a letter"


def check_name(environment: str, source: str = "environment") -> str:
    if environment != DEFAULT_ENVIRONMENT and not ENVIRONMENT_PATTERN.fullmatch(environment):
        raise MlplatError(f"{source} {environment!r} is not a valid environment name", hint=_NAME_HINT)
    return environment


def values_file(stack: Path, environment: str) -> Path:
    """`stacks/quickstart.yaml` + prod -> `stacks/quickstart.prod.yaml`."""
    return stack.with_name(f"{stack.stem}.{environment}.yaml")


def selection_file(stack: Path, stack_name: str) -> Path:
    return stack.parent / ".mlplat" / f"{stack_name}.environment"


def found_environments(stack: Path) -> list[str]:
    """`default` and every environment with a values file beside the stack file, sorted."""
    names = set()
    prefix = f"{stack.stem}."
    if stack.parent.is_dir():
        for candidate in stack.parent.glob(f"{glob_escape(stack.stem)}.*.yaml"):
            middle = candidate.name[len(prefix):-len(".yaml")]
            if ENVIRONMENT_PATTERN.fullmatch(middle) and middle != DEFAULT_ENVIRONMENT:
                names.add(middle)
    return [DEFAULT_ENVIRONMENT, *sorted(names)]


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def selected(stack: Path, stack_name: str | None) -> tuple[str, str]:
    """(environment, why) when -e is not given: $MLPLAT_ENV, else the one `mlplat env select` recorded, else
    default."""
    chosen = os.environ.get(ENV_VARIABLE, "").strip()
    if chosen:
        return check_name(chosen, f"${ENV_VARIABLE}"), f"${ENV_VARIABLE}"
    if stack_name:
        record = selection_file(stack, stack_name)
        try:
            chosen = record.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            chosen = ""
        if chosen:
            return check_name(chosen, f"the environment recorded in {record}"), f"mlplat env select ({record})"
    return DEFAULT_ENVIRONMENT, "default"


def missing_environment(stack: Path, environment: str, why: str) -> SpecError:
    """The error for an environment without a values file."""
    known = found_environments(stack)
    close = difflib.get_close_matches(environment, known, n=1, cutoff=0.6)
    chosen_by = "" if why == "-e" else f" (chosen by {why})"
    hint = f"did you mean {close[0]!r}? " if close else ""
    hint += f"environments of this stack: {', '.join(known)}; create it with: mlplat env new {environment} -f {stack}"
    return SpecError([f"{values_file(stack, environment)}: environment {environment!r}{chosen_by} has no values "
                      "file"], hint=hint)


# -- mlplat env list / new / select ---------------------------------------------------------------------------------
@dataclass
class EnvironmentInfo:
    name: str
    selected: bool
    file: str | None
    stack: str | None  # the effective stack name (state key, working directories)
    resources: int | None  # recorded resources; None when unknown
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "selected": self.selected, "file": self.file, "stack": self.stack,
                "has_state": None if self.resources is None else self.resources > 0, "resources": self.resources,
                **({"problem": self.problem} if self.problem else {})}


def list_environments(stack: Path) -> list[EnvironmentInfo]:
    from provisioner.spec.variables import read_declarations

    name = read_declarations(stack).stack_name
    current, _ = selected(stack, name)
    out = []
    for environment in found_environments(stack):
        file = None if environment == DEFAULT_ENVIRONMENT else str(values_file(stack, environment))
        info = EnvironmentInfo(environment, environment == current, file, None, None)
        try:
            info.stack, info.resources = _recorded(stack, environment)
        except MlplatError as err:
            info.problem = err.message.splitlines()[0]
        out.append(info)
    if current not in {i.name for i in out}:  # selected, but its values file is gone
        out.append(EnvironmentInfo(current, True, str(values_file(stack, current)), None, None,
                                   "selected, but its values file does not exist"))
    return out


def _recorded(stack: Path, environment: str) -> tuple[str, int]:
    """The environment's effective stack name and how many resources its state records (a state that does not
    exist yet is not created)."""
    from provisioner import spec
    from provisioner.state import open_state

    loaded = spec.load(stack, environment=environment)
    name, cfg = loaded.platform.metadata.name, loaded.platform.state
    directory = loaded.directory.resolve()
    if cfg.backend == "sqlite" and not cfg.url:
        db = Path(cfg.path) if cfg.path else Path(".mlplat") / f"{name}.db"
        if not (db if db.is_absolute() else directory / db).is_file():
            return name, 0
    state = open_state(name, directory, url=cfg.url, backend=cfg.backend, path=cfg.path)
    try:
        return name, len(state.resources())
    finally:
        state.close()


def render_list(infos: list[EnvironmentInfo]) -> str:
    width = max(len(i.name) for i in infos)
    lines = []
    for i in infos:
        mark = "*" if i.selected else " "
        if i.problem:
            state = f"state unknown: {i.problem}"
        elif i.resources:
            state = f"{i.resources} resource{'s' if i.resources != 1 else ''} recorded"
        else:
            state = "no state"
        lines.append(f"{mark} {i.name:<{width}}  {i.stack or '?'}  {state}" + (f"  ({i.file})" if i.file else ""))
    return "\n".join(lines) + "\n"


def new_environment(stack: Path, environment: str) -> Path:
    """Write `<stem>.<environment>.yaml` with every declared variable: its default as the value (null where there
    is none), its description and type as a comment."""
    from provisioner.spec.variables import RESERVED, read_declarations

    check_name(environment)
    if environment == DEFAULT_ENVIRONMENT:
        raise MlplatError("the default environment has no values file: its values are the variables' defaults",
                          hint="pick another name, e.g. mlplat env new dev")
    target = values_file(stack, environment)
    if target.exists():
        raise MlplatError(f"{target} already exists: environment {environment!r} is already defined",
                          hint=f"edit {target}, or pick another name")
    declared = read_declarations(stack)
    lines = [f"# Variable values of stack {declared.stack_name or stack.stem} in environment {environment}:",
             f"#   mlplat preview -e {environment} -f {stack}",
             "# Precedence: a variable's default < this file < --var NAME=VALUE.", "variables:"]
    for name, variable in declared.variables.items():
        if name in RESERVED:
            continue
        about = f"{variable.description} ({variable.type})" if variable.description else variable.type
        if variable.default is None:
            about += "; required: no default, set a value"
        lines.append(f"  # {' '.join(about.split())}")
        lines.append(f"  {name}: {json.dumps(variable.default)}" if variable.default is not None else f"  {name}:")
    if not declared.variables:
        lines[-1] = "variables: {}  # the stack declares no variables yet"
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def select_environment(stack: Path, environment: str) -> Path:
    """Record `environment` as the stack's selected one (`default` removes the record)."""
    from provisioner.spec.variables import read_declarations

    check_name(environment)
    name = read_declarations(stack).stack_name
    if not name:
        raise MlplatError(f"{stack}: metadata.name is missing or not a plain name: cannot record the selection")
    if environment != DEFAULT_ENVIRONMENT and not values_file(stack, environment).is_file():
        raise missing_environment(stack, environment, "-e")
    record = selection_file(stack, name)
    if environment == DEFAULT_ENVIRONMENT:
        record.unlink(missing_ok=True)
    else:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(environment + "\n", encoding="utf-8")
    return record
