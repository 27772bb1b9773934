"""What a platform costs, from its stack file and the accelerator catalog, never from a guess.

Instances (GPU pools, serving paths) are priced with the catalog rows `catalog.instance_for` picks, at the row's
on-demand price in the catalog's pricing region. Anything without a catalog price (storage, registries, a row
without a price, an accelerator the target does not offer, a target type with no catalog) is listed as unpriced,
with the reason, and adds nothing to the totals: a total is a sum of known prices, not an estimate of the rest.

    platform = load_platform(Path("stacks/aws.yaml"))
    report = estimate_platform(platform, stack_target_types(platform))  # report.hourly, report.unpriced, ...
    gcp = estimate_platform(platform, {}, override="gcp")  # the same platform priced on gcp
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provisioner import catalog
from provisioner.errors import MlplatError
from provisioner.spec.model import Cluster, Component, Platform, Registry, Serving, Storage, component_kind

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "FREE_TARGET_TYPES",
    "HOURS_PER_MONTH",
    "ComponentCost",
    "CostItem",
    "CostReport",
    "check_types",
    "delta",
    "estimate_component",
    "estimate_platform",
    "load_platform",
    "render_compare",
    "render_costs",
    "stack_target_types",
]

HOURS_PER_MONTH = 730  # 365 * 24 / 12, the convention of the clouds' own calculators

#: Target types that run on machines the user already has, so every component on them costs nothing extra:
#: `local` runs the platform on this machine, `sim` keeps JSON files in a directory. They have no catalog rows, and
#: the `Target` classes carry no "free" flag (provisioner/target.py is not ours to change), so the rule lives here.
FREE_TARGET_TYPES = frozenset({"local", "sim"})
FREE_SOURCE = "this machine"

#: What the catalog's prices are, said wherever totals are shown.
PRICE_NOTE = ("on-demand list prices of the catalog's instance types in its pricing regions; managed services "
              "(SageMaker, Vertex AI) may bill their instances above these")

_REF = re.compile(r"\$\{(?:env|secret):([^}]*)\}")
_UNSET = "unset-for-cost-estimate"


@dataclass(frozen=True)
class CostItem:
    """One priced (or unpriceable) line: `count` instances of one type."""

    what: str  # e.g. "pool big: 2 x p5.48xlarge"
    instance_type: str  # "" when there is no instance type (storage, a free target)
    count: int
    unit_price: float | None  # USD/hour per instance; None: no price
    price_source: str = ""
    price_date: str = ""
    region: str = ""  # where the price holds
    note: str = ""  # e.g. what autoscaling can add

    @property
    def hourly(self) -> float | None:
        return None if self.unit_price is None else self.unit_price * self.count

    def to_json(self) -> dict[str, Any]:
        return {"what": self.what, "instance_type": self.instance_type, "count": self.count,
                "unit_price_usd_hour": self.unit_price, "hourly_usd": _round(self.hourly),
                "price_source": self.price_source, "price_date": self.price_date, "region": self.region,
                "note": self.note}


@dataclass
class ComponentCost:
    """The cost of one component on one target type: priced items, and what could not be priced (and why)."""

    component: str
    kind: str
    target: str
    target_type: str
    items: list[CostItem] = field(default_factory=list)
    unpriced: list[str] = field(default_factory=list)

    @property
    def hourly(self) -> float:
        """USD/hour of the priced items only."""
        return sum(i.hourly for i in self.items if i.hourly is not None)

    @property
    def monthly(self) -> float:
        return self.hourly * HOURS_PER_MONTH

    @property
    def priced_count(self) -> int:
        return sum(1 for i in self.items if i.unit_price is not None)

    @property
    def unpriced_count(self) -> int:
        return len(self.unpriced)

    def to_json(self) -> dict[str, Any]:
        return {"component": self.component, "kind": self.kind, "target": self.target,
                "target_type": self.target_type, "hourly_usd": _round(self.hourly),
                "monthly_usd": _round(self.monthly), "priced": self.priced_count, "unpriced": self.unpriced_count,
                "unpriced_reasons": self.unpriced,
                "items": [i.to_json() for i in self.items]}


@dataclass
class CostReport:
    """Every component of a platform priced; `override` is the one target type all were priced on, if any."""

    components: list[ComponentCost]
    override: str | None = None

    @property
    def hourly(self) -> float:
        return sum(c.hourly for c in self.components)

    @property
    def monthly(self) -> float:
        return self.hourly * HOURS_PER_MONTH

    @property
    def priced_count(self) -> int:
        return sum(c.priced_count for c in self.components)

    @property
    def unpriced_count(self) -> int:
        return sum(c.unpriced_count for c in self.components)

    @property
    def price_dates(self) -> list[str]:
        """The dates of the catalog prices used, sorted."""
        return sorted({i.price_date for c in self.components for i in c.items
                       if i.unit_price is not None and i.price_date})

    def component(self, name: str) -> ComponentCost | None:
        return next((c for c in self.components if c.component == name), None)

    def to_json(self) -> dict[str, Any]:
        return {"target_type": self.override, "hourly_usd": _round(self.hourly), "monthly_usd": _round(self.monthly),
                "hours_per_month": HOURS_PER_MONTH, "priced": self.priced_count, "unpriced": self.unpriced_count,
                "price_dates": self.price_dates, "note": PRICE_NOTE,
                "components": [c.to_json() for c in self.components]}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


# -- pricing ----------------------------------------------------------------------------------------------------
def estimate_component(component: Component, platform: Platform, target_name: str, target_type: str) -> ComponentCost:
    """Price `component` as if realised on a target of type `target_type` (named `target_name`)."""
    cost = ComponentCost(component.name, component_kind(component), target_name, target_type)
    free = target_type in FREE_TARGET_TYPES
    priced = target_type in catalog.targets()
    no_catalog = (f"no prices for target type {target_type!r} "
                  f"(catalog target types: {', '.join(catalog.targets()) or 'none'})")

    def instance(what: str, accelerator: str, gpus: int, count: int, *, serving: bool, up_to: int = 0,
                 spot: bool = False) -> None:
        notes = [f"scales up to {up_to} nodes"] if up_to > count else []
        if spot and not free:
            notes.append("spot: priced on demand, spot costs less")
        note = "; ".join(notes)
        if free:
            shown = f"{accelerator}x{gpus}" if gpus else accelerator
            cost.items.append(CostItem(f"{what}: {count} x {shown}", "", count, 0.0, FREE_SOURCE, note=note))
            return
        if not priced:
            cost.unpriced.append(f"{what}: {no_catalog}")
            return
        try:
            row = catalog.instance_for(target_type, accelerator, gpus, serving=serving)
        except MlplatError as err:  # NotOffered: the accelerator, GPU count or serving is not sold there
            cost.unpriced.append(f"{what}: {err.message}")
            return
        unit = row.price_usd_hour
        if unit is not None and up_to > count:  # what the pool costs when scaled out
            notes[0] += f" (${unit * up_to:,.2f}/h)"
            note = "; ".join(notes)
        cost.items.append(CostItem(f"{what}: {count} x {row.instance_type}", row.instance_type, count, unit,
                                   row.price_source if unit is not None else "", row.price_date, row.region, note))
        if unit is None:
            cost.unpriced.append(f"{what}: {row.instance_type} has no price in the catalog")

    def unpriceable(what: str, reason: str) -> None:
        if free:
            cost.items.append(CostItem(what, "", 1, 0.0, FREE_SOURCE))
        else:
            cost.unpriced.append(f"{what}: {reason if priced else no_catalog}")

    if isinstance(component, Cluster):
        for pool in component.gpu_pools:
            instance(f"pool {pool.name}", pool.accelerator, pool.gpus_per_node, pool.nodes.min, serving=False,
                     up_to=pool.nodes.max, spot=pool.spot)
    elif isinstance(component, Serving):
        for name, path in component.paths.items():
            label = f"path {name}" + (" (shadow)" if path.mode == "shadow" else "")
            instance(label, path.accelerator, path.gpu_count, path.replicas, serving=True)
    elif isinstance(component, Storage):
        unpriceable(f"storage {component.name} ({component.kind} {component.size_gb} GB)",
                    "no storage prices in the catalog")
    elif isinstance(component, Registry):
        images, models = len(component.images), len(component.models)
        unpriceable(f"registry {component.name} ({images} image{'s' * (images != 1)}, "
                    f"{models} model{'s' * (models != 1)})", "no registry prices in the catalog")
    return cost


def stack_target_types(platform: Platform) -> dict[str, str]:
    """Target name -> target type, as the stack file says (`targets.<name>.type`, defaulting to the name)."""
    names = {platform.target, *platform.targets, *(platform.target_of(c) for c in platform.components())}
    return {name: str((platform.targets.get(name) or {}).get("type", name)) for name in sorted(names)}


def estimate_platform(platform: Platform, target_types: dict[str, str], *, override: str | None = None) -> CostReport:
    """Every component priced on its target's type (`target_types`: name -> type), or all on `override`."""
    components = []
    for component in platform.components():
        name = platform.target_of(component)
        components.append(estimate_component(component, platform, name, override or target_types.get(name, name)))
    return CostReport(components, override)


def check_types(types: list[str]) -> list[str]:
    """`types` if every one can be priced (a catalog target type or a free one), else an error listing them."""
    known = catalog.targets()
    for name in types:
        if name not in known and name not in FREE_TARGET_TYPES:
            raise MlplatError(f"unknown target type {name!r} to compare",
                              hint=f"catalog target types: {', '.join(known) or 'none'}; "
                                   f"free: {', '.join(sorted(FREE_TARGET_TYPES))}")
    if not types:
        raise MlplatError("--compare needs at least one target type", hint=f"e.g. --compare {','.join(known)}")
    return types


def delta(desired: CostReport, current: CostReport) -> dict[str, Any]:
    """Desired minus current, per component and in total (USD per hour and per month); a component missing on
    one side counts as 0 there. `complete` is False where either side has unpriced items."""
    new_by: dict[str, ComponentCost] = {}
    old_by: dict[str, ComponentCost] = {}
    for report, by in ((desired, new_by), (current, old_by)):  # by name, once: a lookup per name was O(n²)
        for c in report.components:
            by.setdefault(c.component, c)
    out: dict[str, Any] = {}
    for name in [*new_by, *(n for n in old_by if n not in new_by)]:
        new, old = new_by.get(name), old_by.get(name)
        hourly = (new.hourly if new else 0.0) - (old.hourly if old else 0.0)
        out[name] = {"hourly": hourly, "monthly": hourly * HOURS_PER_MONTH,
                     "complete": not ((new and new.unpriced) or (old and old.unpriced))}
    hourly = desired.hourly - current.hourly
    return {"components": out, "total": {"hourly": hourly, "monthly": hourly * HOURS_PER_MONTH,
                                         "complete": not (desired.unpriced_count or current.unpriced_count)}}


def load_platform(path: Path, environment: str | None = None, variables: dict[str, str] | None = None) -> Platform:
    """The stack file's platform, for pricing only: `${env:...}` / `${secret:...}` references whose variable is
    not set (a bucket name, an API key) get a placeholder instead of failing, since no price depends on them.
    `environment` / `variables`: as `-e` / `--var` give them (stack variables do change prices: replicas…)."""
    from provisioner import spec

    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""  # spec.load reports the missing or unreadable file
    unset = {name: _UNSET for name in _REF.findall(text) if name not in os.environ}
    os.environ.update(unset)
    try:
        return spec.load(path, environment=environment, variables=variables).platform
    finally:
        for name in unset:
            del os.environ[name]


# -- rendering --------------------------------------------------------------------------------------------------
def _money(value: float) -> str:
    return f"${value:,.2f}"


def _change(value: float) -> str:
    return f"{'-' if value < 0 else '+'}{_money(abs(value))}/h"


def _counts(report: CostReport) -> str:
    dates = ", ".join(report.price_dates)
    priced = f"{report.priced_count} priced / {report.unpriced_count} unpriced"
    return f"{priced}; prices as of {dates}" if dates else f"{priced}; no catalog prices used"


def render_costs(console: Console, report: CostReport, current: CostReport | None = None, *,
                 items: bool = False) -> None:
    """One line per component (with the change from `current`, if given; with its items if `items`), the total,
    then what is unpriced and why."""
    from rich.markup import escape

    change = delta(report, current) if current is not None else None
    for c in report.components:
        line = f"{escape(c.component)} ({escape(c.target)}): {_money(c.hourly)}/h, {_money(c.monthly)}/month"
        if c.unpriced:
            line += f" + {c.unpriced_count} unpriced"
        if change is not None:
            line += f" (Δ {_change(change['components'][c.component]['hourly'])})"
        console.print(line)
        for i in c.items if items else ():
            price = "no price" if i.unit_price is None else f"${i.unit_price:g}/h" + " each" * (i.count > 1)
            extra = f" ({i.price_source})" if i.price_source == FREE_SOURCE else ""
            extra += f"; {i.note}" if i.note else ""
            console.print(f"[dim]    {escape(i.what)}, {escape(price)}{escape(extra)}[/]")
    if change is not None:
        shown = {c.component for c in report.components}
        for name, moved in change["components"].items():
            if name not in shown:
                console.print(f"{escape(name)} (removed): (Δ {_change(moved['hourly'])})")
    total = f"[bold]Total: {_money(report.hourly)}/h, {_money(report.monthly)}/month[/]"
    if change is not None:
        total += f" (Δ {_change(change['total']['hourly'])})"
    console.print(f"{total}; {escape(_counts(report))}")
    for c in report.components:
        for reason in c.unpriced:
            console.print(f"[dim]  unpriced: {escape(reason)}[/]")
    if report.price_dates:
        console.print(f"[dim]  {escape(PRICE_NOTE)}[/]")


def _cell(hourly: float, priced: int, unpriced: int) -> str:
    if unpriced and not priced:
        return "unpriced"
    at_least = "≥ " if unpriced else ""
    return f"{at_least}{_money(hourly)}/h\n{at_least}{_money(hourly * HOURS_PER_MONTH)}/mo"


def render_compare(console: Console, reports: dict[str, CostReport]) -> None:
    """The same platform priced on several target types, side by side: a row per component, then the totals, how
    many items each type could price and the dates of its prices."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"Cost by target type (/mo: {HOURS_PER_MONTH} h; ≥: a lower bound, some items unpriced)",
                  title_justify="left")
    table.add_column("component", no_wrap=True)
    for name in reports:
        table.add_column(escape(name), justify="right", no_wrap=True)
    first = next(iter(reports.values()), None)
    for i, c in enumerate(first.components if first else []):
        cells = [_cell(r.components[i].hourly, r.components[i].priced_count, r.components[i].unpriced_count)
                 for r in reports.values()]
        table.add_row(f"{escape(c.component)} ({c.kind})", *cells)
    table.add_section()
    table.add_row("[bold]Total[/]", *(f"[bold]{_cell(r.hourly, r.priced_count, r.unpriced_count)}[/]"
                                      for r in reports.values()))
    table.add_row("priced / unpriced", *(f"{r.priced_count} / {r.unpriced_count}" for r in reports.values()))
    table.add_row("prices as of", *("\n".join(r.price_dates) or "-" for r in reports.values()))
    console.print(table)
    for name, report in reports.items():
        for c in report.components:
            for reason in c.unpriced:
                console.print(f"[dim]  {escape(name)}: unpriced: {escape(reason)}[/]")
    if any(r.price_dates for r in reports.values()):
        console.print(f"[dim]  {escape(PRICE_NOTE)}[/]")
