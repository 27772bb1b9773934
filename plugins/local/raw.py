"""Raw kinds of the local target (`resources:` in a stack file): their input models."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationInfo, field_validator


class DirectoryInputs(BaseModel):
    """`local.directory`: a directory on this machine, made (and on destroy deleted, content and all) by mlplat
    (outputs: path). A directory that already holds files is refused unless `adopt_existing` is set."""

    model_config = ConfigDict(extra="forbid", defer_build=True)  # built on first use: most commands use one target

    path: str = Field(min_length=1, description="The directory: relative to the stack file's directory, or "
                                                "absolute; a change replaces it")
    adopt_existing: StrictBool = Field(False, description="Take over a directory that already holds files "
                                       "(destroy then deletes it, content and all); default: refuse it")

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str, info: ValidationInfo) -> str:
        """Relative to the stack file's directory (the engine validates with `stack_dir` in the context);
        never the stack's directory or a folder holding it (destroy would delete the stack)."""
        stack_dir = (info.context or {}).get("stack_dir")
        path = Path(value).expanduser()
        if not path.is_absolute() and stack_dir is not None:
            path = Path(stack_dir) / path
        resolved = os.path.normpath(path)
        if stack_dir is not None and Path(os.path.realpath(stack_dir)).is_relative_to(os.path.realpath(resolved)):
            raise ValueError(f"{value!r} holds the stack file's directory: destroy would delete it; give a folder "
                             "of its own")
        return resolved


RAW_KINDS: dict[str, type[BaseModel]] = {"local.directory": DirectoryInputs}
