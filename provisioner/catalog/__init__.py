"""The accelerator catalog: which instance type gives N GPUs of a kind on each cloud, and what it costs.

The facts are data (see README.md). The accelerator kinds (`accelerators.csv`) live next to this module. The instance
types of each cloud come from plugins: every plugin may return `CatalogFile`s from the `mlplat_catalog` hook, one CSV
per target type, so the list of clouds is whatever the installed plugins offer. This module reads and checks every row
(known accelerator, GPU count consistent, sourced prices) and owns the lookups.
Files and plugins are read lazily on first use, so importing the package costs nothing.

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
    "Accelerator",
    "CatalogDataError",
    "CatalogFile",
    "Offering",
    "accelerator",
    "accelerators_offered",
    "instance_for",
    "names",
    "normalize",
    "offerings",
    "onprem_label",
    "sagemaker_instance_type",
    "targets",
]

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
    "serving",
    "regions",
    "cloud_accelerator",
]
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TARGET = re.compile(r"^[a-z][a-z0-9_-]*$")
_REGION = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_CLOUD_ACCELERATOR = re.compile(r"^[A-Z0-9_]*$")


@dataclass(frozen=True)
class CatalogFile:
    """What a plugin's `mlplat_catalog` hook returns: the catalog CSV of one target type (columns: README.md)."""

    target: str  # the target type the rows are for, e.g. "aws"
    path: Path


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
    serving: bool  # the cloud's managed serving (SageMaker endpoints, Vertex AI, Azure ML online endpoints) sells it
    regions: tuple[str, ...]  # regions it is known to be offered in; includes `region` when that is set
    cloud_accelerator: str  # the cloud's own name for the GPU (Vertex AI acceleratorType, e.g. NVIDIA_H100_80GB) or ""


class CatalogDataError(ValueError):
    """A catalog CSV file is malformed. A bug in the shipped data, not a user error."""


def _key(text: str) -> str:
    """Spelling-insensitive form: lower case, runs of spaces/underscores/dashes folded to one dash."""
    return re.sub(r"[\s_\-]+", "-", text.strip().lower()).strip("-")


def _read(path: Path, columns: list[str]) -> list[tuple[int, dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != columns:
            raise CatalogDataError(f"{path}: header must be {','.join(columns)}, got {reader.fieldnames}")
        return [(reader.line_num, {k: (v or "").strip() for k, v in row.items()}) for row in reader]


@lru_cache(maxsize=1)
def _accelerators() -> dict[str, Accelerator]:
    table: dict[str, Accelerator] = {}
    for line, row in _read(_DIR / "accelerators.csv", _ACCELERATOR_COLUMNS):
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


@lru_cache(maxsize=1)
def _files() -> dict[str, tuple[CatalogFile, str]]:
    """Target -> (its catalog file, the plugin that gave it), asked of the plugins once, on first use."""
    from provisioner.plugins import PluginError, contributions  # not at import: importing the catalog loads no plugin

    found: dict[str, tuple[CatalogFile, str]] = {}
    for plugin, file in contributions("mlplat_catalog"):
        if not isinstance(file, CatalogFile) or not isinstance(file.target, str) or not _TARGET.match(file.target):
            raise PluginError(f"plugin {plugin}: mlplat_catalog must return CatalogFile(target, path) with a "
                              f"lower-case target name, got {file!r}")
        if not Path(file.path).is_file():
            raise PluginError(f"plugin {plugin}: catalog file for target {file.target!r} not found: {file.path}")
        if file.target in found:
            other, owner = found[file.target]
            raise PluginError(
                f"two plugins give an accelerator catalog for target {file.target!r}: {owner} ({other.path}) "
                f"and {plugin} ({file.path})",
                hint="uninstall one of them, or drop one from $MLPLAT_PLUGINS",
            )
        found[file.target] = (CatalogFile(file.target, Path(file.path)), plugin)
    return found


def forget_plugin_rows() -> None:
    """Drop the rows read from plugins (`provisioner.plugins.reset` calls this)."""
    _files.cache_clear()
    _offerings.cache_clear()


def accelerators_offered(target: str, *, serving: bool = False) -> frozenset[str]:
    """The accelerators `target`'s catalog rows offer (only rows its managed serving sells, with `serving`): what a
    target declares as `Capabilities.training_accelerators` / `serving_accelerators`."""
    return frozenset(o.accelerator for o in _offerings(_check_target(target)) if o.serving or not serving)


@cache
def _offerings(target: str) -> tuple[Offering, ...]:
    known = _accelerators()
    file, _plugin = _files()[target]
    rows: list[Offering] = []
    seen: set[str] = set()
    cloud_names: dict[str, str] = {}
    for line, row in _read(file.path, _OFFERING_COLUMNS):
        where = f"{file.path}:{line}"
        acc, instance_type = row["accelerator"], row["instance_type"]
        try:
            gpus = int(row["gpus"])
        except ValueError:
            raise CatalogDataError(f"{where}: gpus must be a whole number, got {row['gpus']!r}") from None
        if acc not in known:
            raise CatalogDataError(f"{where}: unknown accelerator {acc!r} (known: {', '.join(known)})")
        if gpus < 0 or (gpus == 0) != (acc == "cpu"):
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
        if row["serving"] not in ("yes", "no"):
            raise CatalogDataError(f"{where}: serving must be yes or no, got {row['serving']!r}")
        regions = tuple(r.strip() for r in row["regions"].split("|"))
        if len(set(regions)) != len(regions) or not all(_REGION.match(r) for r in regions):
            raise CatalogDataError(
                f"{where}: regions must be one or more distinct |-separated region names, got {row['regions']!r}"
            )
        if row["region"] and row["region"] not in regions:
            raise CatalogDataError(f"{where}: regions must include the pricing region {row['region']!r}")
        cloud = row["cloud_accelerator"]
        if not _CLOUD_ACCELERATOR.match(cloud):
            raise CatalogDataError(f"{where}: cloud_accelerator must match ^[A-Z0-9_]*$, got {cloud!r}")
        if acc == "cpu" and cloud:
            raise CatalogDataError(f"{where}: cpu rows have no cloud_accelerator, got {cloud!r}")
        if cloud_names.setdefault(acc, cloud) != cloud:
            raise CatalogDataError(f"{where}: {acc} is {cloud_names[acc]!r} in an earlier row, not {cloud!r}")
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
                serving=row["serving"] == "yes",
                regions=regions,
                cloud_accelerator=cloud,
            )
        )
    rows.sort(key=lambda o: (o.accelerator, o.gpus, o.vcpus or 0, o.instance_type))
    return tuple(rows)


def targets() -> list[str]:
    """Target types that have catalog rows, sorted: those whose plugins answered the `mlplat_catalog` hook."""
    return sorted(t for t in _files() if _offerings(t))


def _check_target(target: str) -> str:
    offered = targets()
    if target not in offered:
        raise MlplatError(
            f"no accelerator catalog for target {target!r}",
            hint=f"catalog targets (from the installed plugins): {', '.join(offered) or 'none'}",
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


def _targets_offering(acc: str, *, serving: bool = False) -> list[str]:
    return [t for t in targets() if any(o.accelerator == acc and (o.serving or not serving) for o in _offerings(t))]


def _price_order(o: Offering) -> tuple[bool, float, int, str]:
    return (o.price_usd_hour is None, o.price_usd_hour or 0.0, o.vcpus or 0, o.instance_type)


def instance_for(
    target: str, accelerator: str, gpus: int, *, min_vcpus: int | None = None, serving: bool = False
) -> Offering:
    """The instance type of `target` with exactly `gpus` accelerators of this kind.

    Several candidates -> the cheapest (unknown prices last). For 'cpu', `gpus` must be 0 and the smallest
    general-purpose type is returned, or the smallest with at least `min_vcpus` vCPUs. With `serving=True` only the
    types the cloud's managed serving sells are considered (the `serving` column).
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
        elsewhere = [t for t in _targets_offering(acc, serving=serving) if t != target]
        here = sorted({o.accelerator for o in _offerings(target)}, key=names().index)
        raise NotOffered(
            f"{acc} is not offered on {target}",
            hint=f"offered there: {', '.join(here)}; or use another target: {', '.join(elsewhere) or 'none'}",
        )
    if serving:
        sellable = [o for o in rows if o.serving]
        if not sellable:
            elsewhere = [t for t in _targets_offering(acc, serving=True) if t != target]
            here = sorted({o.accelerator for o in _offerings(target) if o.serving}, key=names().index)
            raise NotOffered(
                f"{acc} is not offered on {target} for serving (none of its {acc} instance types is sold for serving)",
                hint=f"served there: {', '.join(here) or 'nothing'}; "
                f"or serve on another target: {', '.join(elsewhere) or 'none'}",
            )
        if any(o.gpus == gpus for o in rows) and not any(o.gpus == gpus for o in sellable):
            counts = ", ".join(str(c) for c in sorted({o.gpus for o in sellable}))
            raise NotOffered(
                f"{acc} is not offered on {target} for serving with {gpus} GPU(s) per instance "
                f"(that instance type is not sold for serving); available counts for serving: {counts}",
                hint=f"ask for one of {counts} GPUs per replica, or serve on another target",
            )
        rows = sellable
    purpose = " for serving" if serving else ""
    matching = [o for o in rows if o.gpus == gpus]
    if not matching:
        counts = ", ".join(str(c) for c in sorted({o.gpus for o in rows}))
        raise NotOffered(
            f"{acc} is not offered on {target} with {gpus} GPU(s) per instance; available counts{purpose}: {counts}",
            hint=f"ask for one of {counts} GPUs per instance, or spread the work over several instances",
        )
    if min_vcpus is not None:
        big_enough = [o for o in matching if (o.vcpus or 0) >= min_vcpus]
        if not big_enough:
            most = max(o.vcpus or 0 for o in matching)
            raise NotOffered(
                f"no {acc} x{gpus} instance on {target}{purpose} has {min_vcpus} vCPUs (largest: {most})",
                hint=f"ask for at most {most} vCPUs",
            )
        return min(big_enough, key=lambda o: (o.vcpus or 0, *_price_order(o)))
    if acc == "cpu":
        return min(matching, key=lambda o: (o.vcpus or 0, *_price_order(o)))
    return min(matching, key=_price_order)


def sagemaker_instance_type(offering: Offering) -> str:
    """SageMaker spelling of an AWS instance type: 'g5.xlarge' -> 'ml.g5.xlarge'.

    The catalog stores EC2 names. Whether SageMaker hosting sells the type is the offering's `serving` flag (look it
    up with `instance_for(..., serving=True)`); this function does not check it.
    """
    if offering.target != "aws":
        raise MlplatError(
            f"{offering.instance_type} is a {offering.target} instance type; SageMaker uses aws ones",
            hint="look the accelerator up with target 'aws'",
        )
    name = offering.instance_type
    return name if name.startswith("ml.") else f"ml.{name}"
