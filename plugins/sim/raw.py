"""Raw kinds of the sim target (`resources:` in a stack file): their input models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt


class _Inputs(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)  # built on first use: most commands use one target


class DataInputs(_Inputs):
    """`sim.data`: a value kept in the state only, like Terraform's `terraform_data` (outputs: id, output)."""

    input: Any = Field(None, description="Any JSON value; the `output` output repeats it (an update changes it in "
                                         "place)")
    triggers_replace: Any = Field(None, description="Any JSON value; a change replaces the resource (a new id)")


class ClusterInputs(_Inputs):
    """`sim.cluster`: a simulated cluster (outputs: id, url)."""

    name: str = Field(min_length=1, max_length=63, description="The cluster's name in the simulated cloud")


class FilesystemInputs(_Inputs):
    """`sim.filesystem`: a simulated shared filesystem (outputs: id, url)."""

    size_gb: StrictInt = Field(100, ge=1, le=1_000_000, description="Size in GB (changed in place)")
    kind: Literal["nas", "lustre"] = Field("nas", description="nas or lustre; a change replaces it")


class RegistryInputs(_Inputs):
    """`sim.registry`: a simulated model registry (outputs: id, url)."""

    name: str = Field(min_length=1, max_length=63, description="The registry's name in the simulated cloud")


RAW_KINDS: dict[str, type[BaseModel]] = {
    "sim.data": DataInputs,
    "sim.cluster": ClusterInputs,
    "sim.filesystem": FilesystemInputs,
    "sim.registry": RegistryInputs,
}
