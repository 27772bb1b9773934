"""`mlplat fmt`: rewrite a stack file in the canonical layout, keeping every comment.

The layout: 2-space indentation with sequences indented under their key (`  - `, as stacks/*.yaml are written),
top-level keys in the order of `TOP_LEVEL_ORDER` (then any others as written), keys inside components
(clusters[], storage[], registry, serving[]) in the schema's field order (name and target first, then unknown
keys as written), no trailing whitespace, one final newline. Flow mappings, quoting (a version "1" stays a string)
and comments stay as ruamel.yaml's round-trip mode preserves them. The result must load (PyYAML, the usual loader)
to the same platform as the original, or nothing is written.

ruamel.yaml vs PyYAML, measured with `python -X importtime -c "import ruamel.yaml"` (Python 3.11, ruamel.yaml
0.19.1, PyYAML 6.0.x with its C loader, 5 runs each): ruamel.yaml 14.5-16.0 ms cumulative, PyYAML 13.1-14.2 ms;
ruamel.yaml after PyYAML (the shared stdlib modules already loaded) about 12 ms. So ruamel.yaml is a core
dependency: it is pure Python with no dependencies of its own (about 1.4 MB installed), and it is imported only
inside `mlplat fmt`, so no other command (nor `mlplat --help`) pays for it. PyYAML stays the loader: its C loader
parses faster, and every located error (file:line:col) comes from it.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.errors import MlplatError

TOP_LEVEL_ORDER = ("apiVersion", "metadata", "target", "targets", "state", "variables", "include", "clusters",
                   "storage", "registry", "serving")
#: top-level key -> (schema model name in provisioner.spec.model, whether the key holds a list of components)
COMPONENTS = {"clusters": ("Cluster", True), "storage": ("Storage", True), "registry": ("Registry", False),
              "serving": ("Serving", True)}
_REF = re.compile(r"\$\{(?:env|secret):([^}]*)\}")
#: what an unset ${env:NAME} / ${secret:NAME} reads as while fmt compares the two loads (fmt needs no credentials)
PLACEHOLDER = "mlplat-fmt-placeholder"


@dataclass
class Formatted:
    path: Path
    original: str
    formatted: str

    @property
    def changed(self) -> bool:
        return self.original != self.formatted

    def diff(self) -> str:
        return "".join(difflib.unified_diff(self.original.splitlines(keepends=True),
                                            self.formatted.splitlines(keepends=True),
                                            fromfile=f"{self.path} (original)", tofile=f"{self.path} (formatted)"))


def _yaml() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # never re-wrap long scalars
    return yaml


def _field_order(model_name: str) -> list[str]:
    from provisioner.spec import model

    fields = list(getattr(model, model_name).model_fields)
    first = [f for f in ("name", "target") if f in fields]
    return first + [f for f in fields if f not in first]


def _reorder(mapping: Any, order: list[str] | tuple[str, ...]) -> None:
    """Move the keys of a CommentedMap into `order` (unknown keys after them, as written); comments travel with
    their keys."""
    from ruamel.yaml.comments import CommentedMap

    if not isinstance(mapping, CommentedMap):
        return
    wanted = [k for k in order if k in mapping] + [k for k in mapping if k not in order]
    if list(mapping) == wanted:
        return
    for key in wanted:
        mapping.move_to_end(key)


def canonical_text(text: str) -> str:
    """The canonical layout of a stack file's text (raises ruamel.yaml's errors on text it cannot parse)."""
    yaml = _yaml()
    data = yaml.load(text)
    if data is None:
        return ""
    _reorder(data, TOP_LEVEL_ORDER)
    for key, (model_name, many) in COMPONENTS.items():
        value = data.get(key) if hasattr(data, "get") else None
        order = _field_order(model_name)
        for component in (value if many and isinstance(value, list) else [value]):
            _reorder(component, order)
    out = io.StringIO()
    yaml.dump(data, out)
    lines = [line.rstrip() for line in out.getvalue().splitlines()]
    return "\n".join(lines).rstrip("\n") + "\n"


@contextlib.contextmanager
def _placeholder_env(text: str) -> Iterator[None]:
    """Unset variables that the file references read as a placeholder, so comparing the loads needs no secrets."""
    missing = {name for name in _REF.findall(text) if name and name not in os.environ}
    for name in missing:
        os.environ[name] = PLACEHOLDER
    try:
        yield
    finally:
        for name in missing:
            os.environ.pop(name, None)


def _dump(text: str, path: Path) -> dict[str, Any]:
    from provisioner.spec import loads
    from provisioner.spec.variables import placeholders

    # variables without a default get a placeholder: fmt needs no environment
    return loads(text, path, variables=placeholders(text)).platform.model_dump(mode="json")


def format_file(path: Path) -> Formatted:
    """Read and format `path` (nothing is written). Raises the loader's SpecError (file:line:col) for a file that
    does not load, and MlplatError when the canonical text would load to a different platform."""
    from provisioner.spec.loader import _decode
    from provisioner.spec.modules import included_files

    data = path.read_bytes()
    original = _decode(data, path)
    modules = "".join(module.read_text(encoding="utf-8", errors="replace") for module in included_files(path))
    with _placeholder_env(original + modules):  # modules are loaded too, and may reference the environment
        before = _dump(data, path)  # the loader's located errors come first: invalid YAML, unknown keys, ...
        try:
            formatted = canonical_text(original)
        except Exception as err:  # ruamel.yaml refuses something PyYAML read: leave the file as it is
            raise MlplatError(f"{path}: cannot format: {type(err).__name__}: {err}",
                              hint="the file is left as it is") from None
        try:
            after = _dump(formatted, path) if formatted != original else before
        except MlplatError as err:
            raise MlplatError(f"{path}: the formatted file would not load ({err.message}); not written",
                              hint="report this as an mlplat fmt bug, with the stack file") from None
    if after != before:
        raise MlplatError(f"{path}: the formatted file would load to a different platform; not written",
                          hint="report this as an mlplat fmt bug, with the stack file")
    return Formatted(path, original, formatted)


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` (a temporary file beside it, then rename); the file's mode is kept."""
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".fmt", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
