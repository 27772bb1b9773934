"""Lowering the stack file's `resources:` (raw resources, the escape hatch) into graph resources.

Each raw resource becomes one `Resource` at `<name>.<kind after the first dot>.main` on its target, its `inputs`
checked against the input model its target's type declares for the kind (`Target.raw_kinds`). A whole-string
value `${resource:NAME.OUTPUT}` becomes a `Ref` to raw resource NAME's output (an edge the engine orders by), or
the value component NAME exports as OUTPUT; `depends_on` names raw resources or components (a component stands for
all its resources). Every problem is reported at its place in the stack file, all of them at once.

A raw resource is not a component: no capability check, no cost, no migration. A changed `target:` plans a
replacement (the kind/target of the recorded object differs).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from provisioner.errors import SpecError
from provisioner.graph import Ref, Resource
from provisioner.secrets import Secret
from provisioner.spec.model import SECRET_KEY

if TYPE_CHECKING:
    from pydantic import BaseModel

    from provisioner.api import Stack
    from provisioner.spec.loader import Loc
    from provisioner.spec.raw import RawResource
    from provisioner.target import LowerContext

RESOURCE_REF = "${resource:"
_WHOLE_REF = re.compile(r"\$\{resource:([^.}]*)\.([^}]+)\}")
_HINT = "see docs/raw-resources.md for each target's raw kinds, their inputs and ${resource:NAME.OUTPUT}"


def lower_raw(stack: Stack, ctx: LowerContext, resources: dict[str, Resource], scoped: dict[str, list[str]]) -> None:
    """Add the stack's raw resources to `resources` (components already lowered into it); SpecError listing every
    located problem."""
    platform = stack.platform
    raw_list = platform.resources
    raw_by_name = {r.name: r for r in raw_list}
    components = {c.name for c in platform.components()}
    component_resources: dict[str, list[str]] = {}
    for address in resources:
        component_resources.setdefault(address.split(".", 1)[0], []).append(address)
    problems: list[str] = []
    lowered: list[Resource] = []
    for i, raw in enumerate(raw_list):
        at: Loc = ("resources", i)
        target_name = raw.target or platform.target
        model = _input_model(stack, raw, target_name, at, problems)
        _refuse_inline_secrets(stack, raw.inputs, (*at, "inputs"), problems)
        refs = _references(stack, ctx, raw, at, raw_by_name, components, problems)
        depends_on = _dependencies(stack, raw, at, raw_by_name, components, component_resources, problems)
        if model is None or refs is None or depends_on is None:
            continue
        inputs = _checked_inputs(stack, model, raw, refs, at, problems)
        if inputs is not None:
            lowered.append(Resource(raw.address, raw.kind, target_name, inputs, depends_on=depends_on))
    if not problems:
        _refuse_cycles(stack, lowered, problems)
    if problems:
        raise SpecError(problems, hint=_HINT)
    for res in lowered:
        if res.address in resources:  # names are unique among components and resources: a plugin bug
            raise SpecError([f"two resources share the address {res.address}"])
        resources[res.address] = res
    by_target: dict[str, list[Resource]] = {}
    for res in lowered:
        by_target.setdefault(res.target, []).append(res)
    for target_name, batch in by_target.items():  # after the target's stack-scoped resources, like components
        stack._after_stack_scope(resources, batch, scoped.get(target_name, []), target_name)


def _refuse_cycles(stack: Stack, lowered: list[Resource], problems: list[str]) -> None:
    """Raw resources that depend on each other in a circle (through depends_on or references), reported at the
    first of them. Components never depend on raw resources, so a cycle lies among raw resources only."""
    from provisioner.errors import PlanError
    from provisioner.graph import topological_order

    index = {res.address: i for i, res in enumerate(lowered)}
    try:
        topological_order(index, {res.address: res.edges for res in lowered})
    except PlanError as err:
        cycle = err.message.removeprefix("dependency cycle among: ")
        first = min(index[a] for a in cycle.split(", ") if a in index)
        problems.append(stack.loaded.problem(("resources", first, "depends_on"), f"a dependency cycle among raw "
                                             f"resources: {cycle}; remove a depends_on or a ${{resource:...}}"))


def raw_kinds_of(target_type: type) -> dict[str, type[BaseModel]]:
    return dict(getattr(target_type, "raw_kinds", {}) or {})


def _input_model(stack: Stack, raw: RawResource, target_name: str, at: Loc,
                 problems: list[str]) -> type[BaseModel] | None:
    """The input model of `raw.kind` on its target; a located problem when the target's type has no such kind."""
    target = stack.targets[target_name]
    kinds = raw_kinds_of(type(target))
    model = kinds.get(raw.kind)
    if model is not None:
        return model
    from provisioner import plugins

    types = plugins.target_types()
    owner = raw.kind.split(".", 1)[0]
    where = f"target {target_name!r} ({target.name})"
    if owner != target.name and owner in types:
        of_type = sorted(n for n, t in stack.targets.items() if t.name == owner)
        fix = f"set target: to one of them ({', '.join(of_type)})" if of_type else \
            f"declare a target of type {owner} under targets: and name it in target:"
        problems.append(stack.loaded.problem((*at, "kind"), f"{raw.kind} is a raw kind of {owner} targets, and "
                                                            f"this resource is on {where}; {fix}"))
        return None
    listed = ", ".join(sorted(kinds)) or "none"
    close = difflib.get_close_matches(raw.kind, list(kinds), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    problems.append(stack.loaded.problem((*at, "kind"), f"{where} has no raw kind {raw.kind!r}; {hint}its raw "
                                                        f"kinds: {listed}"))
    return None


def _refuse_inline_secrets(stack: Stack, value: Any, loc: Loc, problems: list[str]) -> None:
    """A secret-looking key (password, token, ...) must hold a reference, as everywhere in a stack file: the
    loader seals what `${secret:NAME}` gives, a value written out would be stored in plaintext. Never echoed."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if isinstance(item, dict | list):
            _refuse_inline_secrets(stack, item, (*loc, key), problems)
        elif (isinstance(key, str) and SECRET_KEY.search(key) and not isinstance(item, Secret | bool)
              and item not in (None, "") and not (isinstance(item, str) and RESOURCE_REF in item)):
            problems.append(stack.loaded.problem((*loc, key), "secrets may not be written in the stack file; "
                                                              "write ${secret:NAME} and export NAME instead"))


def _walk_strings(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(path, string) of every string in `value` that holds a ${resource:...} reference."""
    if isinstance(value, str):
        if RESOURCE_REF in value:
            yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk_strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk_strings(item, (*path, index))


def _references(stack: Stack, ctx: LowerContext, raw: RawResource, at: Loc, raw_by_name: dict[str, RawResource],
                components: set[str], problems: list[str]) -> dict[tuple[str | int, ...], Any] | None:
    """Path in `inputs` -> what the reference there stands for (a Ref, or a component's exported value)."""
    found: dict[tuple[str | int, ...], Any] = {}
    ok = True
    for path, text in _walk_strings(raw.inputs):
        loc = (*at, "inputs", *path)
        match = _WHOLE_REF.fullmatch(text.strip())
        if match is None:
            problems.append(stack.loaded.problem(loc, "a ${resource:NAME.OUTPUT} reference must be the whole value "
                                                      "(it stands for the output's value, which may not be text)"))
            ok = False
            continue
        name, output = match.group(1), match.group(2)
        target = raw_by_name.get(name)
        if target is not None:
            found[path] = Ref(target.address, output)
            continue
        if name in components:
            exported = ctx.outputs_of(name)
            if output in exported:
                found[path] = exported[output]
                continue
            problems.append(stack.loaded.problem(loc, f"component {name!r} exports no {output!r}; it exports: "
                                                      f"{', '.join(sorted(exported)) or 'nothing'}"))
            ok = False
            continue
        problems.append(stack.loaded.problem(loc, f"${{resource:{name}.{output}}} names no raw resource or "
                                                  f"component{_did_you_mean(name, _names(stack, raw_by_name))}"))
        ok = False
    return found if ok else None


def _dependencies(stack: Stack, raw: RawResource, at: Loc, raw_by_name: dict[str, RawResource], components: set[str],
                  component_resources: dict[str, list[str]], problems: list[str]) -> tuple[str, ...] | None:
    out: list[str] = []
    ok = True
    for j, name in enumerate(raw.depends_on):
        other = raw_by_name.get(name)
        if other is not None:
            out.append(other.address)
        elif name in component_resources:
            out.extend(component_resources[name])
        elif name in components:
            continue  # a component lowered to nothing: nothing to wait for
        else:
            problems.append(stack.loaded.problem((*at, "depends_on", j), f"{name!r} names no raw resource or "
                                                 f"component{_did_you_mean(name, _names(stack, raw_by_name))}"))
            ok = False
    return tuple(dict.fromkeys(out)) if ok else None


def _checked_inputs(stack: Stack, model: type[BaseModel], raw: RawResource, refs: dict[tuple[str | int, ...], Any],
                    at: Loc, problems: list[str]) -> dict[str, Any] | None:
    """The inputs as the kind's model validates them (defaults filled in), the references put back as Refs.

    A reference stands in for a value known only at apply: a type error at its place is not one (the provider sees
    the real value). A top-level input holding a reference or a secret keeps the value as written (validation
    would turn a `Secret` into a plain string)."""
    try:
        validated = model.model_validate(raw.inputs, context={"stack_dir": stack.directory})
    except Exception as err:
        if type(err).__name__ != "ValidationError":
            raise
        errors = [e for e in err.errors(include_url=False) if not _under_ref(tuple(e["loc"]), refs)]
        if errors:
            problems.extend(stack.loaded.describe(_Errors(errors), (*at, "inputs"), model))
            return None
        values = {**_defaults(model), **_copied(raw.inputs)}
    else:
        values = validated.model_dump()
        referring = {path[0] for path in refs}
        for key, value in raw.inputs.items():
            if key in values and (key in referring or _has_secret(value)):
                values[key] = _copied(value)
    for path, value in refs.items():
        _put(values, path, value)
    return values


class _Errors:
    """A ValidationError's list of errors, filtered, for `LoadedStack.describe`."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self._errors = errors

    def errors(self, include_url: bool = False) -> list[dict[str, Any]]:
        return self._errors


def _under_ref(loc: tuple[Any, ...], refs: dict[tuple[str | int, ...], Any]) -> bool:
    return any(loc[:len(path)] == path for path in refs)


def _copied(value: Any) -> Any:
    """`value` with its dicts and lists copied (the stack file's inputs stay as written: lowering runs again after
    discovery changes), leaves kept as they are (a `Secret` stays one)."""
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copied(v) for v in value]
    return value


def _has_secret(value: Any) -> bool:
    if isinstance(value, Secret):
        return True
    if isinstance(value, dict):
        return any(_has_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_secret(v) for v in value)
    return False


def _defaults(model: type[BaseModel]) -> dict[str, Any]:
    return {name: f.get_default(call_default_factory=True) for name, f in model.model_fields.items()
            if not f.is_required()}


def _put(values: Any, path: tuple[str | int, ...], value: Any) -> None:
    for part in path[:-1]:
        values = values[part]
    values[path[-1]] = value


def _names(stack: Stack, raw_by_name: dict[str, RawResource]) -> list[str]:
    return [*raw_by_name, *(c.name for c in stack.platform.components())]


def _did_you_mean(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=3)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


# -- documentation: each target type's raw kinds and their inputs (docs/raw-resources.md) ----------------------

def raw_kinds_markdown() -> str:
    """A Markdown section per target type that declares raw kinds: each kind, what it is, and a table of its
    inputs (from the input models), for docs/raw-resources.md (`docs/gen_raw_kinds.py` writes it there)."""
    from provisioner import plugins

    lines: list[str] = []
    for type_name, target_type in sorted(plugins.target_types().items()):
        kinds = raw_kinds_of(target_type)
        if not kinds:
            continue
        lines += [f"### {type_name}", ""]
        for kind, model in sorted(kinds.items()):
            schema = model.model_json_schema()
            about = " ".join((model.__doc__ or "").split()).removeprefix(f"`{kind}`: ")
            about = about[:1].upper() + about[1:]
            defaults = _defaults(model)
            lines += [f"#### `{kind}`", "", about, "", "| input | type | default | description |",
                      "|---|---|---|---|"]
            required = set(schema.get("required", ()))
            for name, prop in schema.get("properties", {}).items():
                default = "required" if name in required else f"`{_json(defaults.get(name))}`"
                description = " ".join(prop.get("description", "").split()).replace("|", "\\|")
                lines.append(f"| `{name}` | {_type_name(prop, schema.get('$defs', {}))} | {default} | "
                             f"{description} |")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def _type_name(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in prop:
        ref = defs.get(prop["$ref"].rsplit("/", 1)[-1], {})
        fields = ", ".join(ref.get("properties", {}))
        return f"mapping ({fields})"
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    kind = prop.get("type")
    if kind == "array":
        return f"list of {_type_name(prop.get('items', {}), defs)}"
    return {"string": "text", "integer": "whole number", "boolean": "true/false", "number": "number",
            "object": "mapping", None: "any JSON"}.get(kind, str(kind))
