"""Modules: a stack file's `include:` pulls component definitions from other YAML files.

A module is a mapping holding only component lists (`clusters`, `storage`, `serving`, `resources`), at most one
`registry` for the whole stack, and its own `include:` (paths relative to the module). Its items are appended after
the including file's own items, in include order, depth first; its locations join the stack's `key_locs` /
`value_locs` under the merged locations (`("serving", 2, ...)`), and `origins` records which file each merged
top-level item came from, so that every error about it names the module's file and line and the include site.

Relative paths inside module items (model `artifact`, `artifact_roots`, drift `baseline`, capture `destination`)
are relative to the module; they are rewritten here to be relative to the stack file, which is what the rest of
the pipeline reads (so artifact confinement to the stack's directory keeps applying to them).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner.artifacts import is_uri
from provisioner.errors import SpecError

Loc = tuple[str | int, ...]
Positions = dict[Loc, tuple[int, int]]

#: the lists of components a module may add to (each appended after the stack's own items)
MODULE_LISTS = ("clusters", "storage", "serving", "resources")
#: every key a module may hold
MODULE_KEYS = ("include", *MODULE_LISTS, "registry")
#: include files nested deeper than this are refused (a cycle is caught before; this bounds long chains)
MAX_NESTING = 16
HINT = "include paths are relative to the file that includes them; a module holds only include, clusters, " \
       "storage, registry, serving and resources"


@dataclass(frozen=True)
class Origin:
    """The file a merged component was written in, and where it was included (`file:line:col`, then the sites
    that included the including module, if any)."""

    path: Path
    via: str

    @property
    def note(self) -> str:
        return f" (included from {self.via})"


Origins = dict[Loc, Origin]


def origin_of(loc: Loc, origins: Origins | None) -> Origin | None:
    """The module that the top-level item holding `loc` came from, or None for the stack file's own."""
    if not origins or not loc:
        return None
    return origins.get(tuple(loc[:2])) or origins.get(tuple(loc[:1]))


def located(path: Path, loc: Loc, pos: tuple[int, int], text: str, origins: Origins | None) -> str:
    """One problem line `file:line:col: text`: for an item merged from a module, the module's file, and
    `(included from file:line:col)` at the end."""
    origin = origin_of(loc, origins)
    if origin is None:
        return f"{path}:{pos[0]}:{pos[1]}: {text}"
    return f"{origin.path}:{pos[0]}:{pos[1]}: {text}{origin.note}"


def first_given(path: Path, loc: Loc, first: Loc, pos: tuple[int, int], origins: Origins | None) -> str:
    """How a duplicate's first occurrence (at `first`, position `pos`) is named from the problem at `loc`: `on
    line N` in the same file, else `at file:line:col` (`path` is the stack file)."""
    here, there = origin_of(loc, origins), origin_of(first, origins)
    if here == there:
        return f"on line {pos[0]}"
    return f"at {there.path if there else path}:{pos[0]}:{pos[1]}"


def merge_includes(data: dict[str, Any], key_locs: Positions, value_locs: Positions, path: Path) -> Origins:
    """Append the components of the modules that `data["include"]` names (and that they include) to `data`, and
    their locations to `key_locs` / `value_locs`; returns where each merged top-level item came from.

    Raises SpecError with every problem found (located in the file that has it, with the include site)."""
    merger = _Merger(data, key_locs, value_locs, path)
    merger.include(data.get("include"), path, key_locs, value_locs, origin=None, chain=(path,))
    if merger.problems:
        raise SpecError(merger.problems, hint=HINT)
    return merger.origins


@dataclass
class _Merger:
    data: dict[str, Any]
    key_locs: Positions
    value_locs: Positions
    stack: Path
    origins: Origins = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: resolved module path -> the site it was first included from
    seen: dict[Path, str] = field(default_factory=dict)

    def problem(self, file: Path, pos: tuple[int, int], loc: Loc, message: str, origin: Origin | None) -> None:
        from provisioner.spec.loader import format_loc

        note = origin.note if origin else ""
        self.problems.append(f"{file}:{pos[0]}:{pos[1]}: {format_loc(loc)}: {message}{note}")

    def include(self, entries: Any, file: Path, key_locs: Positions, value_locs: Positions, *,
                origin: Origin | None, chain: tuple[Path, ...]) -> None:
        """Merge each module that `entries` (the `include:` value of `file`, which came from `origin`) names."""
        if entries is None:
            return
        if not isinstance(entries, list):
            self.problem(file, value_locs.get(("include",), (1, 1)), ("include",),
                         "expected a list of file paths (lines starting with `- `)", origin)
            return
        for i, entry in enumerate(entries):
            pos = value_locs.get(("include", i), (1, 1))
            if not isinstance(entry, str) or not entry.strip():
                self.problem(file, pos, ("include", i), "expected a file path, e.g. modules/serving.yaml", origin)
                continue
            module = file.parent / entry
            site = f"{file}:{pos[0]}:{pos[1]}" + (f", from {origin.via}" if origin else "")
            if not self._readable(module, file, pos, ("include", i), entry, origin):
                continue
            resolved = module.resolve()
            names = [*(str(p) for p in chain), str(module)]
            if resolved in {p.resolve() for p in chain}:
                self.problem(file, pos, ("include", i), f"include cycle: {' -> '.join(names)}; a module cannot "
                             "include itself or a file that includes it", origin)
                continue
            if len(chain) > MAX_NESTING:
                self.problem(file, pos, ("include", i), f"includes are nested more than {MAX_NESTING} deep: "
                             f"{' -> '.join(names)}", origin)
                continue
            if resolved in self.seen:
                self.problem(file, pos, ("include", i), f"{module} is already included (from {self.seen[resolved]})"
                             "; include a module once", origin)
                continue
            self.seen[resolved] = site
            self._merge_module(module, Origin(module, site), (*chain, module))

    def _readable(self, module: Path, file: Path, pos: tuple[int, int], loc: Loc, entry: str,
                  origin: Origin | None) -> bool:
        if module.is_file():
            return True
        if module.exists():
            self.problem(file, pos, loc, f"{module} is not a file", origin)
            return False
        close = difflib.get_close_matches(entry, _yaml_files(file.parent, exclude=file), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"paths are relative to {file.parent}/"
        self.problem(file, pos, loc, f"no such module file {module}; {hint}", origin)
        return False

    def _merge_module(self, module: Path, origin: Origin, chain: tuple[Path, ...]) -> None:
        data, key_locs, value_locs = _parse_module(module, origin)
        if not isinstance(data, dict):
            self.problem(module, (1, 1), (), "a module is a YAML mapping (clusters:, storage:, registry:, "
                         "serving:, resources:, include:)", origin)
            return
        remap: dict[Loc, Loc] = {}  # the module's item location -> its merged location
        for key, value in data.items():
            key_pos = key_locs.get((key,), (1, 1))
            if key in MODULE_LISTS:
                self._append(key, value, module, value_locs, origin, remap)
            elif key == "registry":
                self._add_registry(value, module, key_pos, origin, remap)
            elif key != "include":
                self.problem(module, key_pos, (key,), _not_a_module_key(key), origin)
        self._merge_locations(key_locs, self.key_locs, remap)
        self._merge_locations(value_locs, self.value_locs, remap)
        self.include(data.get("include"), module, key_locs, value_locs, origin=origin, chain=chain)

    def _append(self, key: str, items: Any, module: Path, value_locs: Positions, origin: Origin,
                remap: dict[Loc, Loc]) -> None:
        if items is None:
            return
        if not isinstance(items, list):
            self.problem(module, value_locs.get((key,), (1, 1)), (key,),
                         "expected a list (lines starting with `- `)", origin)
            return
        own = self.data.get(key)
        if own is None:
            own = self.data[key] = []
        elif not isinstance(own, list):
            return  # the stack file's own value is wrong: reported when the stack is validated
        for j, item in enumerate(items):
            merged = (key, len(own))
            own.append(item)
            remap[(key, j)] = merged
            self.origins[merged] = origin
            _rebase_paths(key, item, module.parent, self.stack.parent)

    def _add_registry(self, registry: Any, module: Path, key_pos: tuple[int, int], origin: Origin,
                      remap: dict[Loc, Loc]) -> None:
        if registry is None:
            return
        if self.data.get("registry") is not None:
            first = self.origins.get(("registry",))
            pos = self.key_locs.get(("registry",), (1, 1))
            where = f"{first.path if first else self.stack}:{pos[0]}:{pos[1]}"
            self.problem(module, key_pos, ("registry",), f"a stack has one registry, and one is already defined "
                         f"at {where}; move these models and images there", origin)
            return
        self.data["registry"] = registry
        remap[("registry",)] = ("registry",)
        self.origins[("registry",)] = origin
        _rebase_paths("registry", registry, module.parent, self.stack.parent)

    @staticmethod
    def _merge_locations(module_locs: Positions, stack_locs: Positions, remap: dict[Loc, Loc]) -> None:
        """Module locations under a merged item, re-keyed to the item's merged location."""
        for loc, pos in module_locs.items():
            head = loc[:2] if len(loc) >= 2 and isinstance(loc[1], int) else loc[:1]
            merged = remap.get(head)
            if merged is not None:
                stack_locs[(*merged, *loc[len(head):])] = pos


def _parse_module(module: Path, origin: Origin) -> tuple[Any, Positions, Positions]:
    """The module's data and locations; its read, encoding and YAML errors name the module and the include site."""
    from provisioner.spec.loader import _decode, _parse

    try:
        try:
            raw = module.read_bytes()
        except OSError as err:
            raise SpecError([f"{module}: cannot read: {err.strerror}"]) from None
        text = _decode(raw, module)
        if _blank(text):
            raise SpecError([f"{module}:1:1: the module is empty; give it clusters:, storage:, registry:, "
                             "serving: or resources:"])
        return _parse(text, module)
    except SpecError as err:
        raise SpecError([problem + origin.note for problem in err.problems], hint=err.hint) from None


def _blank(text: str) -> bool:
    """Nothing but blank lines, comments and document markers."""
    return all(not line.strip() or line.lstrip().startswith("#") or line.strip() in ("---", "...")
               for line in text.splitlines())


def _not_a_module_key(key: str) -> str:
    from provisioner.spec.model import Platform

    stack_keys = {f.alias or name for name, f in Platform.model_fields.items()} - set(MODULE_KEYS)
    if key in stack_keys:
        return (f"{key!r} belongs in the stack file, not in a module: a module holds only component definitions "
                f"({', '.join(MODULE_KEYS[1:])}) and include")
    close = difflib.get_close_matches(key, MODULE_KEYS, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"allowed keys in a module: {', '.join(MODULE_KEYS)}"
    return f"unknown key {key!r}; {hint}"


#: (top-level key, path inside one item) of the values that are file paths relative to the file they are written in
_PATH_FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "serving": (("monitoring", "drift", "baseline"), ("monitoring", "capture", "destination")),
    "registry": (("models", "*", "artifact"), ("artifact_roots", "*")),
}


def _rebase_paths(key: str, item: Any, module_dir: Path, stack_dir: Path) -> None:
    """Rewrite the relative paths in `item` (relative to `module_dir`) to be relative to `stack_dir`. URIs,
    absolute paths and values holding a `${...}` reference are left as written."""
    if module_dir.absolute() == stack_dir.absolute():
        return
    for fields in _PATH_FIELDS.get(key, ()):
        for holder, name in _places(item, fields):
            value = holder[name]
            if not isinstance(value, str) or not value or "${" in value or is_uri(value) or os.path.isabs(value):
                continue
            rebased = os.path.relpath(os.path.abspath(module_dir / value), os.path.abspath(stack_dir))
            holder[name] = Path(rebased).as_posix()


def _places(value: Any, fields: tuple[str, ...]) -> list[tuple[Any, Any]]:
    """(container, key) pairs that `fields` reaches in `value` (`*`: every item of a list)."""
    containers = [value]
    for part in fields[:-1]:
        nxt = []
        for c in containers:
            if part == "*" and isinstance(c, list):
                nxt.extend(c)
            elif isinstance(c, dict) and part in c:
                nxt.append(c[part])
        containers = nxt
    last = fields[-1]
    out: list[tuple[Any, Any]] = []
    for c in containers:
        if last == "*" and isinstance(c, list):
            out.extend((c, i) for i in range(len(c)))
        elif isinstance(c, dict) and last in c:
            out.append((c, last))
    return out


def _yaml_files(directory: Path, *, exclude: Path, depth: int = 3, limit: int = 2000) -> list[str]:
    """YAML files under `directory` (relative, `/`-separated; hidden directories skipped), for did-you-mean."""
    found: list[str] = []
    skip = exclude.resolve()
    for root, dirs, files in os.walk(directory):
        rel = Path(root).relative_to(directory)
        dirs[:] = [d for d in sorted(dirs) if not d.startswith(".") and len(rel.parts) < depth]
        for name in sorted(files):
            if name.endswith((".yaml", ".yml")) and (Path(root) / name).resolve() != skip:
                found.append((rel / name).as_posix())
                if len(found) >= limit:
                    return found
    return found


def relocate_lines(problems: list[str], path: Path, origins: Origins | None) -> list[str]:
    """`problems` written `{path}:line:col: dotted.path: message` by code that knows only the stack file (e.g. the
    variables' checks), re-pointed at the module where `dotted.path` lies in a merged component."""
    if not origins:
        return problems
    from provisioner.spec.loader import format_loc

    heads = [(format_loc(loc), origin) for loc, origin in origins.items()]
    out = []
    for problem in problems:
        start = f"{path}:"
        rest = problem[len(start):] if problem.startswith(start) else ""
        dotted = rest.split(": ", 2)[1] if rest.count(": ") >= 2 else ""
        origin = next((o for head, o in heads if dotted == head or dotted.startswith((f"{head}.", f"{head}["))), None)
        out.append(f"{origin.path}:{rest}{origin.note}" if origin else problem)
    return out


def included_files(stack: Path) -> list[Path]:
    """The module files `stack` includes, nested ones too, best effort (unreadable files and bad entries are left
    out: loading the stack reports them). For tools that read a stack's files without loading it (`mlplat fmt`)."""
    import yaml

    found: list[Path] = []
    todo, seen = [stack], {stack.resolve()}
    while todo:
        file = todo.pop(0)
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8-sig"))
        except (OSError, ValueError, yaml.YAMLError):
            continue
        entries = data.get("include") if isinstance(data, dict) else None
        for entry in entries if isinstance(entries, list) else ():
            module = file.parent / entry if isinstance(entry, str) and entry.strip() else None
            if module is not None and module.is_file() and module.resolve() not in seen:
                seen.add(module.resolve())
                found.append(module)
                todo.append(module)
    return found
