"""What a migration is, as a value in a plan and as a record in the state.

A component moves when its `target:` changes. While it moves, its resources on the source are *held*: their
records are renamed to `<address>~<source>` (the objects are untouched), so the destination's resources take the
component's real addresses — which may be the same ones (local → another local) — and the source stays managed
until the teardown deletes it (or a rollback renames it back). A record `_migration.<component>` (kind
`core.migration`) says where the move stands: which phase, and how much traffic the destination has.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: separates a held record's address from its source target: `iris.router.main~local`
HELD = "~"
#: the component part of a migration record's address: `_migration.<component>`
MIGRATION_SCOPE = "_migration"
MIGRATION_KIND = "core.migration"
COPY_KIND = "core.artifact_copy"

#: the phases of a move, in order (a rollback runs: shift back, tear down the destination, restore the source)
PHASES = ("provision", "transfer", "health-check", "shift", "teardown")
#: what each phase does, for preview
PHASE_TEXT = {
    "provision": "create the component's resources on {destination}",
    "transfer": "copy model artifacts and images, sha256 checked",
    "health-check": "read back every resource on {destination}",
    "shift": "shift traffic through the front door: {steps}, each step gated on error rate and latency",
    "teardown": "delete the component's resources on {source}",
}


def held_address(address: str, source: str) -> str:
    return f"{address}{HELD}{source}"


def is_held(address: str) -> bool:
    return HELD in address


def original_address(address: str) -> tuple[str, str]:
    """(address, source target) of a held record's address."""
    original, _, source = address.rpartition(HELD)
    return original, source


def migration_address(component: str) -> str:
    return f"{MIGRATION_SCOPE}.{component}"


def component_of(address: str) -> str:
    return original_address(address)[0].split(".", 1)[0] if is_held(address) else address.split(".", 1)[0]


@dataclass
class Migration:
    """One component's move (or its rollback) as planned: shown by preview, carried out by apply."""

    component: str
    kind: str  # cluster | storage | registry | serving
    source: str
    destination: str
    #: move — toward `destination`; rollback — back to `source` (the destination's resources are deleted);
    #: finish — delete a source kept by --keep-source; kept — nothing to do (the source is kept)
    mode: str = "move"
    #: percent of traffic on the destination when the plan was made (a resumed move starts there)
    traffic: int = 0
    steps: list[int] = field(default_factory=lambda: [10, 50, 100])
    window_s: float = 30.0
    max_error_rate: float = 0.01
    max_latency_ms: float = 2000.0
    keep_source: bool = False
    #: a migration record exists: this plan resumes a move that began earlier
    started: bool = False
    phase: str = ""
    source_resources: list[str] = field(default_factory=list)  # addresses as the source had them
    destination_resources: list[str] = field(default_factory=list)
    front_doors: list[str] = field(default_factory=list)  # front door addresses whose traffic shifts
    #: compatibility of the component with both targets: errors, warnings, capability differences
    compatibility: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: the component priced on each target: {"source": {"hourly", "monthly", "unpriced"}, "destination": …}
    cost: dict[str, Any] = field(default_factory=dict)

    def phases(self) -> list[tuple[str, str]]:
        """(phase, what it does) in order, for preview."""
        if self.mode == "rollback":
            return [("shift", f"return all traffic to {self.source}" if self.front_doors else
                     f"the endpoint's URL is {self.source}'s again"),
                    ("teardown", f"delete what was made on {self.destination}"),
                    ("restore", f"manage the resources on {self.source} under their addresses again")]
        if self.mode == "finish":
            return [("teardown", f"delete the component's resources kept on {self.source}")]
        if self.mode == "kept":
            return []
        steps = " → ".join(f"{p} %" for p in self.steps if p > self.traffic)
        out = []
        for phase in PHASES:
            text = PHASE_TEXT[phase].format(destination=self.destination, source=self.source, steps=steps)
            if phase == "shift" and not self.front_doors:
                text = ("cut over at once (no front door: the endpoint's URL changes; declare front_door to keep "
                        "it and shift in steps)" if self.kind == "serving" else "nothing to shift (no traffic)")
            if phase == "teardown" and self.keep_source:
                text = f"keep the source on {self.source} (--keep-source)"
            out.append((phase, text))
        return out

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Migration:
        return cls(**data)
