"""The stack file's JSON Schema for editors (yaml-language-server): what `mlplat schema` prints.

`Platform.model_json_schema()` alone leaves `targets:` free-form and accelerators plain strings. This adds what only
the installed plugins and the catalog know: each target type's settings (chosen by `type:`, which defaults to the
target's name) with the engine's `timeouts:`, the accelerator names as an enum, and the `inputs` of each raw
resource kind (`Target.raw_kinds`). The generated copy ships in the package (`PACKAGED`), so a
`# yaml-language-server: $schema=<mlplat schema --path>` line works outside a checkout.

    mlplat schema --write     # regenerate the package copy and schema/mlplat.schema.json (in a checkout)
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel

    from provisioner.target import Target

DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: a name, not a download address: editors find the file through the `$schema=` line
SCHEMA_ID = "urn:mlplat:schema:stack-file:v1"
TITLE = "mlplat stack file"
#: the copy installed with the package (package data), at a path that does not move between releases
PACKAGED = Path(__file__).resolve().parent / "spec" / "mlplat.schema.json"
#: the copy committed in a source checkout (stacks/*.yaml point at it); absent in an installed wheel
COMMITTED = Path(__file__).resolve().parents[1] / "schema" / "mlplat.schema.json"

_ACCELERATOR = "Accelerator"
_TARGET = "target"
_RESOURCE_REFERENCE = "ResourceReference"
_REFERENCE = "Reference"
_MARK = "x-mlplat-accelerator"  # put on accelerator fields while generating, replaced by a $ref to _ACCELERATOR


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


def _def_name(ref: dict[str, Any]) -> str:
    return ref["$ref"].rsplit("/", 1)[-1]


def build() -> dict[str, Any]:
    """The whole schema, in the models' field order (`render()` is its text)."""
    from pydantic.json_schema import models_json_schema

    from provisioner import plugins
    from provisioner.spec.model import Platform
    from provisioner.timeouts import Timeouts

    types = dict(sorted(plugins.target_types().items()))
    kinds: dict[str, type[BaseModel]] = {}
    for target in types.values():
        for kind, model in sorted(target.raw_kinds.items()):
            kinds.setdefault(kind, model)
    roots: list[type[BaseModel]] = [Platform, Timeouts, *(t.settings_model for t in types.values()), *kinds.values()]
    unique_roots = list(dict.fromkeys(roots))
    refs, combined = models_json_schema([(model, "validation") for model in unique_roots],
                                        schema_generator=_generator())
    defs: dict[str, Any] = combined.get("$defs", {})
    names = {model: _def_name(refs[(model, "validation")]) for model in unique_roots}

    root = defs.pop(names[Platform])
    _add_accelerators(root, defs)
    _add_targets(root, defs, types, names, names[Timeouts])
    _add_raw_kinds(root, defs, {kind: names[model] for kind, model in kinds.items()})
    _allow_references(root, defs, ["env", "secret", *(["var"] if "variables" in Platform.model_fields else [])])
    schema = {"$schema": DIALECT, "$id": SCHEMA_ID, "title": TITLE,
              **{k: v for k, v in root.items() if k != "title"}, "$defs": defs}
    _drop_unreferenced(schema)
    return schema


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def installed_path() -> Path:
    """The package copy, for `# yaml-language-server: $schema=...`."""
    return PACKAGED


def write(text: str | None = None) -> list[Path]:
    """Regenerate the package copy and, in a source checkout, the committed one; returns the files written."""
    text = render() if text is None else text
    written = []
    for path in (PACKAGED, COMMITTED):
        if path is COMMITTED and not (path.parents[1] / "pyproject.toml").is_file():  # not a source checkout
            continue
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as err:
            from provisioner.errors import MlplatError

            raise MlplatError(f"cannot write {path}: {err.strerror}",
                              hint="write your own copy instead: mlplat schema > mlplat.schema.json") from None
        written.append(path)
    return written


def _generator() -> type:
    from pydantic.json_schema import GenerateJsonSchema

    from provisioner.spec.model import normalize_accelerator

    class Generator(GenerateJsonSchema):
        """Marks the fields checked by `normalize_accelerator` (AcceleratorName) wherever they are; no field titles."""

        def field_title_should_be_set(self, schema: Any) -> bool:
            return False  # "Gpus Per Node" says less than the key itself; editors show the description

        def function_after_schema(self, schema: Any) -> Any:
            out = super().function_after_schema(schema)
            if schema.get("function", {}).get("function") is normalize_accelerator:
                out = {**out, _MARK: True}
            return out

    return Generator


# -- accelerators ---------------------------------------------------------------------------------------------------

def _accelerator_schema() -> dict[str, Any]:
    from provisioner import catalog

    spellings = sorted(catalog._spellings())  # folded: lower case, single dashes
    return {
        "title": "Accelerator",
        "description": "An accelerator of the catalog (`mlplat cost` prices them). Other spellings are accepted "
                       "and normalised: case, spaces, underscores and dashes do not matter, and aliases such as "
                       "H100, nvidia-h100-80gb or NVIDIA A100 name the same part.",
        "anyOf": [
            {"enum": catalog.names(), "description": "The catalog's names"},
            {"type": "string", "pattern": _spelling_pattern(spellings),
             "description": "Another spelling of a catalog name (its aliases and node labels, in any case)"},
        ],
    }


def _spelling_pattern(spellings: list[str]) -> str:
    """A regex (ECMA 262 and Python alike) that accepts what catalog.normalize accepts: each spelling in any case,
    with any run of spaces, underscores and dashes between its parts, and around it."""
    def one(spelling: str) -> str:
        parts = []
        for part in spelling.split("-"):
            parts.append("".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in part))
        return r"[\s_-]+".join(parts)

    return r"^[\s_-]*(?:" + "|".join(one(s) for s in spellings) + r")[\s_-]*$"


def _add_accelerators(root: dict[str, Any], defs: dict[str, Any]) -> None:
    found = False

    def visit(node: Any) -> Any:
        nonlocal found
        if isinstance(node, dict):
            if node.get(_MARK):
                found = True
                kept = {k: v for k, v in node.items() if k not in (_MARK, "type", "title")}
                return {**_ref(_ACCELERATOR), **kept}
            return {k: visit(v) for k, v in node.items()}
        if isinstance(node, list):
            return [visit(v) for v in node]
        return node

    root.update(visit(root))
    for name in list(defs):
        defs[name] = visit(defs[name])
    if found:
        defs[_ACCELERATOR] = _accelerator_schema()


# -- targets --------------------------------------------------------------------------------------------------------

def _target_def(name: str) -> str:
    return f"{_TARGET}.{name}"


def _add_targets(root: dict[str, Any], defs: dict[str, Any], types: dict[str, type[Target]],
                 names: dict[Any, str], timeouts: str) -> None:
    """`targets.<name>` follows the settings model of its `type:` (default: the name), plus `type` and `timeouts`."""
    timeouts_node = {**_ref(timeouts), "description": "How long each create/update/delete may wait on this "
                     "target's cloud operations: per operation (create: 45m), or per resource kind "
                     "(aws.endpoint: {create: 90m}); seconds or 90s, 45m, 2h"}
    for type_name, target in types.items():
        node = copy.deepcopy(defs[names[target.settings_model]])
        node["title"] = f"{type_name} target"
        if target.description:
            node["description"] = f"The `{type_name}` target type: {target.description}"
        node["properties"] = {
            "type": {"const": type_name, "description": f"The target type (plugin): {type_name}; the default when "
                                                        f"the target is named {type_name}"},
            **node.get("properties", {}),
            "timeouts": timeouts_node,
        }
        defs[_target_def(type_name)] = node
    defs[_TARGET] = {
        "title": "Target settings",
        "type": "object",
        "description": "A target's settings; `type:` (which plugin) defaults to the target's name, and picks the "
                       "keys allowed here",
        "properties": {"type": {
            "description": "The target type (plugin); default: the target's name. `mlplat plugins` lists them",
            "anyOf": [{"enum": list(types)}, {"type": "string"}],
        }},
        "allOf": [{"if": {"properties": {"type": {"const": type_name}}, "required": ["type"]},
                   "then": _ref(_target_def(type_name))} for type_name in types],
    }
    field = root["properties"]["targets"]
    root["properties"]["targets"] = {
        "type": "object",
        "description": field.get("description", ""),
        **({"default": field["default"]} if "default" in field else {}),
        "properties": {type_name: {
            "description": f"The {type_name} target{': ' + target.description if target.description else ''} "
                           f"(`type: {type_name}` unless given)",
            "allOf": [_ref(_TARGET), {"if": {"not": {"required": ["type"]}}, "then": _ref(_target_def(type_name))}],
        } for type_name, target in types.items()},
        "additionalProperties": _ref(_TARGET),
    }
    # the settings models' own definitions are now copied under target.<type>: _drop_unreferenced removes them
    # unless a model refers to one


# -- raw resources --------------------------------------------------------------------------------------------------

def _add_raw_kinds(root: dict[str, Any], defs: dict[str, Any], kinds: dict[str, str]) -> None:
    """`resources[*].inputs` follows the inputs model of the resource's `kind` (when `resources:` exists)."""
    resource = _first_ref(root.get("properties", {}).get("resources"))
    if resource is None or resource not in defs:
        return
    node = defs[resource]
    properties = node.get("properties", {})
    if "kind" in properties and kinds:  # offer the known kinds; another plugin's still validates by the pattern
        kind = properties["kind"]
        kept = {k: v for k, v in kind.items() if k in _ANNOTATIONS}
        core = {k: v for k, v in kind.items() if k not in _ANNOTATIONS}
        properties["kind"] = {**kept, "anyOf": [{"enum": sorted(kinds)}, core]}
    rules = []
    for kind_name, model_def in sorted(kinds.items()):
        inputs = _inputs_def(defs, kind_name, model_def)
        then: dict[str, Any] = {"properties": {"inputs": {**_ref(inputs),
                                                          "description": f"The inputs of kind {kind_name}"}}}
        if defs[inputs].get("required"):
            then["required"] = ["inputs"]
        rules.append({"if": {"properties": {"kind": {"const": kind_name}}, "required": ["kind"]}, "then": then})
    if rules:
        node["allOf"] = [*node.get("allOf", []), *rules]


def _inputs_def(defs: dict[str, Any], kind: str, model_def: str) -> str:
    """A copy of a kind's inputs model in which every input may also be `${resource:NAME.OUTPUT}`."""
    if _RESOURCE_REFERENCE not in defs:
        defs[_RESOURCE_REFERENCE] = {
            "title": "Resource reference",
            "description": "Another raw resource's output (or a component's exported value), the whole value",
            "type": "string",
            "pattern": r"^\$\{resource:[^.}]+\.[^}]+\}$",
        }
    node = copy.deepcopy(defs[model_def])
    node["title"] = f"{kind} inputs"
    properties = node.get("properties", {})
    for key, value in properties.items():
        kept = {k: v for k, v in value.items() if k in ("description", "default", "title")}
        rest = {k: v for k, v in value.items() if k not in kept}
        properties[key] = {**kept, "anyOf": [rest, _ref(_RESOURCE_REFERENCE)]}
    name = f"inputs.{kind}"
    defs[name] = node
    return name


def _first_ref(node: Any) -> str | None:
    """The definition a property refers to, through items / anyOf (a list of X, X or null)."""
    if not isinstance(node, dict):
        return None
    if "$ref" in node:
        return _def_name(node)
    for key in ("items", "additionalProperties"):
        found = _first_ref(node.get(key))
        if found:
            return found
    for option in node.get("anyOf", []):
        found = _first_ref(option)
        if found:
            return found
    return None


# -- references -----------------------------------------------------------------------------------------------------

def _allow_references(root: dict[str, Any], defs: dict[str, Any], schemes: list[str]) -> None:
    """A value holding `${env:NAME}` (or secret, var) is resolved before it is checked, so wherever the schema
    constrains a scalar (a type other than text, a pattern, an enum) such a reference is accepted too."""
    defs[_REFERENCE] = {
        "title": "Reference",
        "description": "Replaced when the stack is loaded: " + ", ".join(f"${{{s}:NAME}}" for s in schemes)
                       + (" (a whole-value ${var:NAME} keeps the variable's type)" if "var" in schemes else ""),
        "type": "string",
        "pattern": r"\$\{(" + "|".join(schemes) + r"):[^}]*\}",
    }
    plain = {_ACCELERATOR, _REFERENCE, _RESOURCE_REFERENCE}
    scalars = {_ACCELERATOR} | {name for name, d in defs.items() if name not in plain and _constrained_scalar(d, set())}
    for node in [root, *(d for name, d in defs.items() if name not in plain)]:
        for key, prop in node.get("properties", {}).items():
            if key == "type" and "const" in prop:  # target.<type>: chooses the settings; not a value
                continue
            node["properties"][key] = _lenient(prop, scalars)


_ANNOTATIONS = ("description", "default", "title", "examples")
_CONSTRAINTS = ("pattern", "enum", "const", "format", "minLength", "maxLength")


def _constrained_scalar(node: dict[str, Any], scalars: set[str]) -> bool:
    """A value the schema narrows (not any text): a number, a boolean, a pattern, an enum; `scalars` are the
    definitions that are such values (the accelerators, an Enum class)."""
    if "$ref" in node:
        return _def_name(node) in scalars
    kind = node.get("type")
    if kind in ("object", "array", "null"):
        return False
    return kind in ("integer", "number", "boolean") or any(k in node for k in _CONSTRAINTS)


def _lenient(node: dict[str, Any], scalars: set[str], *, scalar: bool = True) -> dict[str, Any]:
    """`node`, accepting a reference where it constrains a scalar (in lists and maps too); `scalar=False` for an
    option of an anyOf, which gets the reference once beside it instead."""
    if not isinstance(node, dict):
        return node
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        return {**node, "items": _lenient(node["items"], scalars)}
    if node.get("type") == "object" and isinstance(node.get("additionalProperties"), dict):
        return {**node, "additionalProperties": _lenient(node["additionalProperties"], scalars)}
    if not scalar:
        return node
    kept = {k: v for k, v in node.items() if k in _ANNOTATIONS}
    core = {k: v for k, v in node.items() if k not in _ANNOTATIONS}
    if "anyOf" in core and len(core) == 1:
        options = [_lenient(option, scalars, scalar=False) for option in core["anyOf"]]
        if any(_constrained_scalar(option, scalars) for option in options) and _ref(_REFERENCE) not in options:
            options.append(_ref(_REFERENCE))
        return {**kept, "anyOf": options}
    if _constrained_scalar(core, scalars):
        return {**kept, "anyOf": [core, _ref(_REFERENCE)]}
    return node


# -- tidying --------------------------------------------------------------------------------------------------------

def _drop_unreferenced(schema: dict[str, Any]) -> None:
    defs = schema["$defs"]
    reached: set[str] = set()
    pending = [{k: v for k, v in schema.items() if k != "$defs"}]
    while pending:
        node = pending.pop()
        for name in re.findall(r'"#/\$defs/([^"]+)"', json.dumps(node)):
            if name not in reached and name in defs:
                reached.add(name)
                pending.append(defs[name])
    for name in list(defs):
        if name not in reached:
            del defs[name]


def main(argv: list[str]) -> int:
    if argv == ["--write"]:
        for path in write():
            print(f"wrote {path}", file=sys.stderr)
        return 0
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
