"""Resources and their dependency edges. Only direct edges are stored, never the transitive closure."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from provisioner.errors import PlanError


@dataclass(frozen=True, slots=True)
class Ref:
    """A reference to another resource's output, unknown until that resource is applied."""

    address: str
    output: str

    def to_json(self) -> dict[str, list[str]]:
        return {"$ref": [self.address, self.output]}


class _Unknown:
    """Placeholder for a value known only after apply."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "(known after apply)"


UNKNOWN = _Unknown()


@dataclass(slots=True)
class Resource:
    """One concrete thing a provider manages. `address` is `component.kind.name`; `kind` names the provider."""

    address: str
    kind: str
    target: str
    inputs: dict[str, Any]
    depends_on: tuple[str, ...] = ()
    edges: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.edges = frozenset(self.depends_on) | frozenset(r.address for r in iter_refs(self.inputs))


def iter_refs(value: Any) -> Iterator[Ref]:
    if isinstance(value, Ref):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from iter_refs(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from iter_refs(v)


def resolve(value: Any, lookup: Any) -> Any:
    """Replace every Ref by `lookup(ref)` (which may return UNKNOWN)."""
    if isinstance(value, Ref):
        return lookup(value)
    if isinstance(value, dict):
        return {k: resolve(v, lookup) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [resolve(v, lookup) for v in value]
    return value


def to_json(value: Any) -> Any:
    """Inputs -> JSON-able (Refs become {"$ref": [address, output]}, UNKNOWN becomes {"$unknown": true})."""
    if isinstance(value, Ref):
        return value.to_json()
    if value is UNKNOWN:
        return {"$unknown": True}
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


def from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and "$ref" in value:
            address, output = value["$ref"]
            return Ref(address, output)
        if len(value) == 1 and "$unknown" in value:
            return UNKNOWN
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def topological_order(nodes: Iterable[str], edges: dict[str, Iterable[str]]) -> list[str]:
    """Kahn's algorithm; `edges[n]` are the nodes n depends on. Raises PlanError naming a cycle."""
    nodes = list(nodes)
    present = set(nodes)
    waiting = {n: {d for d in edges.get(n, ()) if d in present} for n in nodes}
    dependents: dict[str, list[str]] = {n: [] for n in nodes}
    for n, deps in waiting.items():
        for d in deps:
            dependents[d].append(n)
    ready = [n for n in nodes if not waiting[n]]
    order: list[str] = []
    while ready:
        n = ready.pop()
        order.append(n)
        for m in dependents[n]:
            waiting[m].discard(n)
            if not waiting[m]:
                ready.append(m)
    if len(order) != len(nodes):
        stuck = sorted(_on_cycles({n: waiting[n] for n in nodes if waiting[n]}))
        raise PlanError(f"dependency cycle among: {', '.join(stuck[:10])}")
    return order


def _on_cycles(waiting: dict[str, set[str]]) -> set[str]:
    """Of the nodes Kahn's algorithm could not order, drop those that merely depend on a cycle (repeatedly
    remove nodes nothing else in the set depends on), so the error names the cycle, not its dependents."""
    users: dict[str, set[str]] = {n: set() for n in waiting}
    for n, deps in waiting.items():
        for d in deps:
            users[d].add(n)
    left = set(waiting)
    leaves = [n for n in left if not users[n]]
    while leaves:
        n = leaves.pop()
        left.discard(n)
        for d in waiting[n]:
            users[d].discard(n)
            if not users[d] and d in left:
                leaves.append(d)
    return left


def check_edges(resources: dict[str, Resource]) -> None:
    for res in resources.values():
        for dep in res.edges:
            if dep not in resources:
                raise PlanError(f"{res.address} depends on {dep}, which is not declared")
    topological_order(resources, {a: r.edges for a, r in resources.items()})


def mermaid(resources: Iterable[Resource]) -> str:
    lines = ["graph TD"]
    ids: dict[str, str] = {}
    resources = list(resources)
    for i, res in enumerate(resources):
        ids[res.address] = f"r{i}"
        lines.append(f'  r{i}["{res.address}<br/><i>{res.kind}</i>"]')
    for res in resources:
        for dep in sorted(res.edges):
            if dep in ids:
                lines.append(f"  {ids[dep]} --> {ids[res.address]}")
    return "\n".join(lines)
