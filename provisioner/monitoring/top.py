"""`mlplat top`: each target's `usage` over one window, side by side, as a table or JSON.

The state's records are grouped by the target that made them (`record.target`); every target with records is
asked for its usage at once (each watches the same window, so a refresh takes about one window).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from provisioner.monitoring import Usage

if TYPE_CHECKING:
    from rich.console import RenderableType

    from provisioner.api import Stack


def collect(stack: Stack, window_s: float) -> Usage:
    """Every target's usage over the next `window_s` seconds, merged (notes name their target)."""
    by_target: dict[str, list[Any]] = {}
    for record in stack.state.resources().values():
        by_target.setdefault(record.target, []).append(record)
    stack.close()  # nothing more to read from the state: hold it open through no window (a destroy elsewhere
    # removes an emptied SQLite state only when no other process has it open); it reopens on the next use
    merged = Usage()
    if not by_target:
        merged.notes.append(f"stack {stack.name!r} has nothing in its state: run `mlplat apply` first")
        return merged
    known = stack.targets
    asked = []
    for name in sorted(by_target):
        if name in known:
            asked.append(name)
        else:
            merged.notes.append(f"target {name!r} holds {len(by_target[name])} recorded resources but is no longer "
                                "in the stack file: not read")

    def one(name: str) -> Usage:
        try:
            return known[name].usage(by_target[name], window_s)
        except Exception as err:  # one target's failure is a note, never the whole view
            from provisioner.secrets import redact

            return Usage(notes=[redact(f"target {name!r}: could not read its usage: {type(err).__name__}: {err}")])

    if asked:
        with ThreadPoolExecutor(max_workers=len(asked)) as pool:
            for usage in pool.map(one, asked):
                merged.endpoints += usage.endpoints
                merged.pools += usage.pools
                merged.notes += usage.notes
    return merged


def _num(value: float | None, fmt: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{fmt}}{unit}"


def render(usage: Usage, title: str = "") -> RenderableType:
    """Pools, then endpoint paths, then notes."""
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = []
    pools = Table(title="Pools" + (f" — {title}" if title else ""), title_justify="left")
    for column in ("target", "component", "pool", "nodes", "gpus", "gpu util", "gpu memory", "source"):
        pools.add_column(column, justify="right" if column in ("nodes", "gpus", "gpu util") else "left")
    for p in usage.pools:
        memory = "-" if p.gpu_memory_used_mb is None else (
            f"{p.gpu_memory_used_mb:.0f}/{_num(p.gpu_memory_total_mb, '.0f')} MiB")
        pools.add_row(escape(p.target), escape(p.component), escape(p.pool), _num(p.nodes, "d"), _num(p.gpus, "d"),
                      _num(p.gpu_util_percent, ".0f", " %"), memory, escape(p.source))
    parts.append(pools if usage.pools else Text("No pools recorded."))
    paths = Table(title="Endpoints", title_justify="left")
    for column in ("target", "endpoint", "path", "req/s", "errors", "p95", "gpu util", "source"):
        paths.add_column(column, justify="right" if column in ("req/s", "errors", "p95", "gpu util") else "left")
    for e in usage.endpoints:
        paths.add_row(escape(e.target), escape(e.endpoint), escape(e.path), _num(e.requests_per_s, ".2f"),
                      "-" if e.error_rate is None else f"{e.error_rate:.1%}", _num(e.p95_ms, ".1f", " ms"),
                      _num(e.gpu_util_percent, ".0f", " %"), escape(e.source))
    parts.append(paths if usage.endpoints else Text("No endpoints recorded."))
    for note in usage.notes:
        parts.append(Text.from_markup(f"[yellow]note:[/] {escape(note)}"))
    return Group(*parts)
