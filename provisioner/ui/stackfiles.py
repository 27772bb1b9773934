"""Which stack files `mlplat ui -f` names: files as given; a directory's `*.yaml`/`*.yml` that declare
`apiVersion: mlplat/...` at the top level (environment values files and included modules do not)."""

from __future__ import annotations

import re
from pathlib import Path

from provisioner.errors import SpecError

_API_VERSION = re.compile(r"^apiVersion:\s*['\"]?mlplat/", re.MULTILINE)


def stack_files(given: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in given:
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()
                            and _API_VERSION.search(p.read_text(errors="replace")))
            if not inside:
                raise SpecError([f"{path}: no stack file in this directory (none of its *.yaml declares "
                                 "`apiVersion: mlplat/v1`)"], hint="name stack files with -f FILE")
            found += inside
        elif path.is_file():
            found.append(path)
        else:
            raise SpecError([f"{path}: no such stack file or directory"],
                            hint="mlplat ui -f stacks/quickstart.yaml (or a directory of stack files)")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique
