"""What a target plugin provides: settings, capabilities (as data), lowering and resource providers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from provisioner.graph import Resource

if TYPE_CHECKING:
    from pydantic import BaseModel

    from provisioner.provider import ResourceProvider
    from provisioner.spec.model import Component, Platform


@dataclass(frozen=True)
class ShadowCapability:
    """How a target mirrors traffic to an experimental path (None on Capabilities = it cannot)."""

    max_mirror_percent: int = 100


@dataclass(frozen=True)
class Capabilities:
    """What a target can do, checked against every component at validate/preview (and by `migrate`)."""

    traffic_split: bool = True
    shadow: ShadowCapability | None = ShadowCapability()
    #: catalog accelerator names offered; None = any catalog accelerator
    accelerators: frozenset[str] | None = None
    max_nodes_per_pool: int | None = None
    #: serving replicas per path; None = no limit
    max_replicas: int | None = None
    storage_kinds: frozenset[str] = frozenset({"nas"})
    auth_modes: frozenset[str] = frozenset({"none", "key"})
    #: provider calls in flight at once on this target (API rate limits); None = the apply's --parallelism
    max_concurrency: int | None = None
    #: provider calls started per second on this target (an API's request rate); None = no limit
    max_calls_per_s: float | None = None
    notes: tuple[str, ...] = ()


@dataclass
class TargetContext:
    """Where a target instance works: the stack's directory and its private working directory."""

    stack_name: str
    target_name: str
    stack_dir: Path
    work_dir: Path


@dataclass
class Lowered:
    """The result of lowering one component: resources and the component's named outputs."""

    resources: list[Resource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)


class LowerContext:
    """Given to `Target.lower`: addresses, the platform, and other components' outputs (cross-component refs)."""

    def __init__(self, platform: Platform, component_outputs: dict[str, dict[str, Any]]) -> None:
        self.platform = platform
        self._outputs = component_outputs

    @staticmethod
    def address(component: str, kind: str, name: str) -> str:
        return f"{component}.{kind}.{name}"

    def output(self, component: str, key: str) -> Any:
        """A value or Ref another component (possibly on another target) exported; KeyError if absent."""
        return self._outputs[component][key]

    def outputs_of(self, component: str) -> dict[str, Any]:
        """All outputs another component exported (empty if it exported none)."""
        return dict(self._outputs.get(component, {}))


class Target:
    """Base class for targets. A plugin's `mlplat_targets` hook returns subclasses of this.

    Subclasses set `name` (the target type, e.g. "aws"), `settings_model` (pydantic, validates
    `targets.<name>` in the stack file; must reject unknown keys) and implement `lower` and `provider`.
    Cloud SDKs are imported inside `provider` (or the provider classes), never at module import.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    settings_model: ClassVar[type[BaseModel]]

    def __init__(self, settings: BaseModel, context: TargetContext) -> None:
        self.settings = settings
        self.context = context

    def capabilities(self) -> Capabilities:
        return Capabilities()

    def lower(self, component: Component, ctx: LowerContext) -> Lowered:
        raise NotImplementedError

    def provider(self, kind: str) -> ResourceProvider:
        raise NotImplementedError

    def leftovers(self) -> list[str]:
        """What this target finds in its own working area (one line each). A new, empty state beside
        leftovers is refused: the state that named them was lost. Default: nothing (a cloud is not scanned)."""
        return []

    def sweep(self, recorded: frozenset[str]) -> list[str]:
        """Remove what this target left in its own working area that no record names (`recorded`: every id
        and deposed id in the state) — what a kill left between a step's start and its journal entry.
        Called under the stack lock after each complete apply and destroy; returns one line per thing
        removed. Default: nothing to sweep."""
        return []
