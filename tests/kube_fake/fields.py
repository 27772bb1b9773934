"""Field paths, merges and patches: the pieces of server-side apply and of the patch types the fake needs.

A field path is a tuple of map keys from the object's root. Maps are walked into; lists and scalars are leaves
(a list is owned as a whole: see the simplifications in the package docstring); an empty map is a leaf too."""

from __future__ import annotations

import copy
from typing import Any

Path = tuple[str, ...]

#: never owned by a manager (the server sets them, or they name the object)
UNTRACKED: set[Path] = {("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace"),
                        ("metadata", "uid"), ("metadata", "resourceVersion"), ("metadata", "generation"),
                        ("metadata", "creationTimestamp"), ("metadata", "managedFields"),
                        ("metadata", "deletionTimestamp"), ("metadata", "deletionGracePeriodSeconds"),
                        ("metadata", "selfLink")}

_MISSING = object()


def leaves(obj: Any, prefix: Path = ()) -> dict[Path, Any]:
    """Every leaf path of `obj` and its value (UNTRACKED paths left out)."""
    out: dict[Path, Any] = {}
    if isinstance(obj, dict) and obj:
        for key, value in obj.items():
            path = (*prefix, str(key))
            if path in UNTRACKED:
                continue
            out.update(leaves(value, path))
    elif prefix:
        out[prefix] = obj
    return out


def get_path(obj: Any, path: Path) -> Any:
    """The value at `path`, or the module's _MISSING sentinel (`missing(value)` tells)."""
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return _MISSING
        obj = obj[key]
    return obj


def missing(value: Any) -> bool:
    return value is _MISSING


def delete_path(obj: dict[str, Any], path: Path) -> None:
    """Remove the field at `path`, and the maps that removing it left empty (not the top-level ones)."""
    parents = [obj]
    for key in path[:-1]:
        nxt = parents[-1].get(key)
        if not isinstance(nxt, dict):
            return
        parents.append(nxt)
    parents[-1].pop(path[-1], None)
    for depth in range(len(path) - 1, 1, -1):
        if parents[depth] == {}:
            parents[depth - 1].pop(path[depth - 1], None)


def overlaps(a: Path, b: Path) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def merge_applied(live: dict[str, Any], applied: dict[str, Any]) -> None:
    """Merge an applied configuration into `live` in place: maps recursively, everything else replaced."""
    for key, value in applied.items():
        if isinstance(value, dict) and isinstance(live.get(key), dict) and value:
            merge_applied(live[key], value)
        else:
            live[key] = copy.deepcopy(value)


def strip_nulls(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: strip_nulls(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [strip_nulls(v) for v in obj]
    return obj


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (null deletes)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class PatchError(ValueError):
    pass


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _container(doc: Any, parts: list[str], path: str) -> Any:
    for part in parts[:-1]:
        if isinstance(doc, list):
            try:
                doc = doc[int(part)]
            except (ValueError, IndexError):
                raise PatchError(f"doc is missing path: {path!r}") from None
        elif isinstance(doc, dict) and part in doc:
            doc = doc[part]
        else:
            raise PatchError(f"doc is missing path: {path!r}")
    return doc


def json_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902: add, remove, replace, move, copy, test."""
    doc = copy.deepcopy(doc)
    for op in ops:
        kind, path = op.get("op"), op.get("path", "")
        parts = _pointer(path)
        if kind in ("move", "copy"):
            src = _pointer(op.get("from", ""))
            holder = _container(doc, src, op.get("from", ""))
            key = src[-1]
            value = copy.deepcopy(holder[int(key)] if isinstance(holder, list) else holder[key])
            if kind == "move":
                json_patch_remove(holder, key, op.get("from", ""))
            doc = _add(doc, parts, value, path)
        elif kind == "add":
            doc = _add(doc, parts, copy.deepcopy(op.get("value")), path)
        elif kind in ("remove", "replace", "test"):
            if not parts:
                if kind == "replace":
                    doc = copy.deepcopy(op.get("value"))
                continue
            holder = _container(doc, parts, path)
            key = parts[-1]
            if isinstance(holder, list):
                try:
                    idx = int(key)
                    current = holder[idx]
                except (ValueError, IndexError):
                    raise PatchError(f"doc is missing path: {path!r}") from None
            elif isinstance(holder, dict) and key in holder:
                current = holder[key]
            else:
                raise PatchError(f"doc is missing path: {path!r}: missing value")
            if kind == "test":
                if current != op.get("value"):
                    raise PatchError(f"testing value {path} failed")
            elif kind == "remove":
                json_patch_remove(holder, key, path)
            else:
                holder[int(key) if isinstance(holder, list) else key] = copy.deepcopy(op.get("value"))
        else:
            raise PatchError(f"Unexpected kind: {kind}")
    return doc


def json_patch_remove(holder: Any, key: str, path: str) -> None:
    if isinstance(holder, list):
        del holder[int(key)]
    else:
        holder.pop(key)


def _add(doc: Any, parts: list[str], value: Any, path: str) -> Any:
    if not parts:
        return value
    holder = _container(doc, parts, path)
    key = parts[-1]
    if isinstance(holder, list):
        if key == "-":
            holder.append(value)
        else:
            try:
                holder.insert(int(key), value)
            except ValueError:
                raise PatchError(f"invalid index {key!r}") from None
    elif isinstance(holder, dict):
        holder[key] = value
    else:
        raise PatchError(f"doc is missing path: {path!r}")
    return doc


def fields_v1(paths: set[Path]) -> dict[str, Any]:
    """A manager's owned paths in the FieldsV1 `f:` notation."""
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for key in path:
            node = node.setdefault(f"f:{key}", {})
    return tree
