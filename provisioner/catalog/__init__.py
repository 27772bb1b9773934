"""The accelerator catalog: which instance type gives N GPUs of a kind on each cloud, and what it costs.

The facts live in CSV files next to this module (see README.md); this module only reads and checks them.
Files are read lazily on first use, so importing the package costs nothing.

    >>> normalize("NVIDIA H100 80GB")
    'h100'
    >>> instance_for("aws", "a10g", 4).instance_type
    'g5.12xlarge'
"""

from __future__ import annotations

import csv
import difflib
import re
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

from provisioner.errors import MlplatError, NotOffered, UnknownAccelerator

__all__ = [
    "CLOUD_TARGETS",
    "Accelerator",
    "Offering",
    "accelerator",
    "instance_for",
    "names",
    "normalize",
    "offerings",
    "onprem_label",
    "sagemaker_instance_type",
]

CLOUD_TARGETS = ("aws", "gcp", "azure")

_DIR = Path(__file__).parent
_ACCELERATOR_COLUMNS = ["name", "aliases", "gpu_memory_gb", "onprem_label", "notes"]
_OFFERING_COLUMNS = [
    "accelerator",
    "gpus",
    "instance_type",
    "vcpus",
    "memory_gb",
    "price_usd_hour",
    "region",
    "price_source",
    "price_date",
]
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Accelerator:
    """One kind of accelerator, under its canonical name."""

    name: str
    aliases: tuple[str, ...]
    gpu_memory_gb: int
    onprem_label: str  # value of the node label nvidia.com/gpu.product set by GPU feature discovery


@dataclass(frozen=True)
class Offering:
    """One instance type of one cloud that carries `gpus` accelerators of one kind."""

    target: str
    accelerator: str
    gpus: int
    instance_type: str
    vcpus: int | None
    memory_gb: float | None
    price_usd_hour: float | None  # on-demand, in `region`; None when no price is known
    region: str
    price_source: str  # where the price came from, or "unknown"
    price_date: str  # YYYY-MM-DD, empty when the price is unknown


class CatalogDataError(ValueError):
    """A catalog CSV file is malformed. A bug in the shipped data, not a user error."""


def _key(text: str) -> str:
    """Spelling-insensitive form: lower case, runs of spaces/underscores/dashes folded to one dash."""
    return re.sub(r"[\s_\-]+", "-", text.strip().lower()).strip("-")


def _read(filename: str, columns: list[str]) -> list[tuple[int, dict[str, str]]]:
    path = _DIR / filename
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != columns:
            raise CatalogDataError(f"{path}: header must be {','.join(columns)}, got {reader.fieldnames}")
        return [(reader.line_num, {k: (v or "").strip() for k, v in row.items()}) for row in reader]


@lru_cache(maxsize=1)
def _accelerators() -> dict[str, Accelerator]:
    table: dict[str, Accelerator] = {}
    for line, row in _read("accelerators.csv", _ACCELERATOR_COLUMNS):
        name = row["name"]
        if name != _key(name) or name in table:
            raise CatalogDataError(f"accelerators.csv:{line}: bad or repeated name {name!r}")
        aliases = tuple(a.strip() for a in row["aliases"].split("|") if a.strip())
        table[name] = Accelerator(name, aliases, int(row["gpu_memory_gb"]), row["onprem_label"])
    return table


@lru_cache(maxsize=1)
def _spellings() -> dict[str, str]:
    """Every accepted spelling (folded with _key) -> canonical name. Node labels count as spellings."""
    index: dict[str, str] = {}
    for acc in _accelerators().values():
        for spelling in (acc.name, *acc.aliases, acc.onprem_label):
            if not spelling:
                continue
            folded = _key(spelling)
            if index.setdefault(folded, acc.name) != acc.name:
                raise CatalogDataError(
                    f"accelerators.csv: spelling {spelling!r} names both {index[folded]} and {acc.name}"
                )
    return index


def _optional(value: str, kind: type) -> int | float | None:
    return kind(value) if value else None


@cache
def _offerings(target: str) -> tuple[Offering, ...]:
    known = _accelerators()
    rows: list[Offering] = []
    seen: set[str] = set()
    for line, row in _read(f"{target}.csv", _OFFERING_COLUMNS):
        where = f"{target}.csv:{line}"
        acc, gpus, instance_type = row["accelerator"], int(row["gpus"]), row["instance_type"]
        if acc not in known:
            raise CatalogDataError(f"{where}: unknown accelerator {acc!r}")
        if (gpus == 0) != (acc == "cpu"):
            raise CatalogDataError(f"{where}: {acc} rows need {'0' if acc == 'cpu' else 'at least 1'} GPUs")
        if not instance_type or instance_type in seen:
            raise CatalogDataError(f"{where}: missing or repeated instance type {instance_type!r}")
        seen.add(instance_type)
        price = _optional(row["price_usd_hour"], float)
        sourced = row["price_source"] not in ("", "unknown") and _DATE.match(row["price_date"])
        if price is not None and not sourced:
            raise CatalogDataError(f"{where}: a price needs a price_source and a YYYY-MM-DD price_date")
        if price is None and row["price_source"] != "unknown":
            raise CatalogDataError(f"{where}: a row without a price must say price_source=unknown")
        rows.append(
            Offering(
                target=target,
                accelerator=acc,
                gpus=gpus,
                instance_type=instance_type,
                vcpus=_optional(row["vcpus"], int),
                memory_gb=_optional(row["memory_gb"], float),
                price_usd_hour=price,
                region=row["region"],
                price_source=row["price_source"],
                price_date=row["price_date"],
            )
        )
    rows.sort(key=lambda o: (o.accelerator, o.gpus, o.vcpus or 0, o.instance_type))
    return tuple(rows)


def _check_target(target: str) -> str:
    if target not in CLOUD_TARGETS:
        raise MlplatError(
            f"unknown cloud target {target!r} for the accelerator catalog",
            hint=f"catalog targets: {', '.join(CLOUD_TARGETS)}",
        )
    return target


def names() -> list[str]:
    """Canonical accelerator names, in catalog order (cpu first, then roughly by size)."""
    return list(_accelerators())


def normalize(name: str) -> str:
    """Canonical name for a common spelling: 'H100', ' nvidia-h100-80gb ', 'NVIDIA_H100' -> 'h100'.

    Case, spaces, underscores and dashes do not matter. Unknown names raise UnknownAccelerator.
    """
    spellings = _spellings()
    folded = _key(name) if isinstance(name, str) else ""
    if folded in spellings:
        return spellings[folded]
    message = f"unknown accelerator {name!r}"
    close = difflib.get_close_matches(folded, list(spellings), n=1, cutoff=0.6) if folded else []
    if close:
        message += f" (did you mean {spellings[close[0]]!r}?)"
    raise UnknownAccelerator(message, hint=f"known accelerators: {', '.join(names())}")


def accelerator(name: str) -> Accelerator:
    """The catalog entry for `name` (any accepted spelling)."""
    return _accelerators()[normalize(name)]


def onprem_label(accelerator: str) -> str:
    """Value of the node label nvidia.com/gpu.product for this accelerator ('' for cpu)."""
    return _accelerators()[normalize(accelerator)].onprem_label


def offerings(target: str, accelerator: str) -> list[Offering]:
    """Instance types of `target` carrying `accelerator`, sorted by GPU count; [] if none."""
    acc = normalize(accelerator)
    return [o for o in _offerings(_check_target(target)) if o.accelerator == acc]


def _targets_offering(acc: str) -> list[str]:
    return [t for t in CLOUD_TARGETS if any(o.accelerator == acc for o in _offerings(t))]


def _price_order(o: Offering) -> tuple[bool, float, int, str]:
    return (o.price_usd_hour is None, o.price_usd_hour or 0.0, o.vcpus or 0, o.instance_type)


def instance_for(target: str, accelerator: str, gpus: int, *, min_vcpus: int | None = None) -> Offering:
    """The instance type of `target` with exactly `gpus` accelerators of this kind.

    Several candidates -> the cheapest (unknown prices last). For 'cpu', `gpus` must be 0 and the smallest
    general-purpose type is returned, or the smallest with at least `min_vcpus` vCPUs.
    Raises NotOffered naming what is offered instead.
    """
    _check_target(target)
    acc = normalize(accelerator)
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
        raise MlplatError(f"GPU count must be a whole number >= 0, got {gpus!r}")
    if acc == "cpu" and gpus != 0:
        raise NotOffered(
            f"cpu instances have no GPUs, but {gpus} were asked for on {target}",
            hint="ask for gpus: 0 with cpu, or name a GPU accelerator",
        )
    if acc != "cpu" and gpus == 0:
        raise NotOffered(
            f"{acc} with 0 GPUs is not an instance type on {target}",
            hint="ask for at least 1 GPU, or use accelerator cpu",
        )
    rows = offerings(target, acc)
    if not rows:
        elsewhere = [t for t in _targets_offering(acc) if t != target]
        here = sorted({o.accelerator for o in _offerings(target)}, key=names().index)
        raise NotOffered(
            f"{acc} is not offered on {target}",
            hint=f"offered there: {', '.join(here)}; or use another target: {', '.join(elsewhere) or 'none'}",
        )
    matching = [o for o in rows if o.gpus == gpus]
    if not matching:
        counts = ", ".join(str(c) for c in sorted({o.gpus for o in rows}))
        raise NotOffered(
            f"{acc} is not offered on {target} with {gpus} GPU(s) per instance; available counts: {counts}",
            hint=f"ask for one of {counts} GPUs per instance, or spread the work over several instances",
        )
    if min_vcpus is not None:
        big_enough = [o for o in matching if (o.vcpus or 0) >= min_vcpus]
        if not big_enough:
            most = max(o.vcpus or 0 for o in matching)
            raise NotOffered(
                f"no {acc} x{gpus} instance on {target} has {min_vcpus} vCPUs (largest: {most})",
                hint=f"ask for at most {most} vCPUs",
            )
        return min(big_enough, key=lambda o: (o.vcpus or 0, *_price_order(o)))
    if acc == "cpu":
        return min(matching, key=lambda o: (o.vcpus or 0, *_price_order(o)))
    return min(matching, key=_price_order)


def sagemaker_instance_type(offering: Offering) -> str:
    """SageMaker spelling of an AWS instance type: 'g5.xlarge' -> 'ml.g5.xlarge'.

    The catalog stores EC2 names; it does not check that SageMaker offers every one of them.
    """
    if offering.target != "aws":
        raise MlplatError(
            f"{offering.instance_type} is a {offering.target} instance type; SageMaker uses aws ones",
            hint="look the accelerator up with target 'aws'",
        )
    name = offering.instance_type
    return name if name.startswith("ml.") else f"ml.{name}"
