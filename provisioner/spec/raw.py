"""`resources:` — raw resources of any kind a target provides (the escape hatch), as typed stack-file data.

Only the shape is checked here: a raw resource's `inputs` are checked against its kind's input model (declared by
the target in `Target.raw_kinds`) when the stack is lowered (`provisioner.raw`), where the targets are known.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: the same as `provisioner.spec.model.NAME_PATTERN` (that module imports this one)
RAW_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,39}$"
#: `<target type>.<kind>`, e.g. sim.data, aws.ecr_repository
RAW_KIND_PATTERN = r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$"


class RawResource(BaseModel):
    """One raw resource: a resource of kind `kind` on a target, made from `inputs` as they are written."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=RAW_NAME_PATTERN, description="Resource name, unique among component and resource "
                      "names; its address is <name>.<kind after the first dot>.main, e.g. r1.data.main")
    kind: str = Field(pattern=RAW_KIND_PATTERN, description="A raw kind the target's type declares, e.g. sim.data, "
                      "local.directory, aws.ecr_repository (docs/raw-resources.md lists them)")
    target: str | None = Field(None, description="Target that makes it; default: the stack's `target`. Changing "
                               "it replaces the resource (no migration)")
    inputs: dict[str, Any] = Field(default_factory=dict, description="The kind's inputs (checked against its input "
                                   "schema); a whole value ${resource:NAME.OUTPUT} is another resource's output")
    depends_on: list[str] = Field(default_factory=list, description="Raw resources or components (by name) made "
                                  "before this one and deleted after it; a component stands for all its resources")

    @property
    def address(self) -> str:
        return raw_address(self.name, self.kind)


def raw_address(name: str, kind: str) -> str:
    """`<name>.<kind after the first dot>.main`."""
    return f"{name}.{kind.split('.', 1)[1]}.main"
