"""The Resources page: GPU pools (the stack file's clusters joined with the sampler's `PoolUsage` rows: nodes,
GPUs, utilisation), storage (the state's records of each storage component) and registry models with their
versions and checksums (the stack file's `registry.models` joined with the state's records and outputs).

A model's checksum is the registry's `sha256.<name:version>` output (local, aws, azure, gcp, onprem record it),
else a `sha256` or `digest` its records hold; a target that records none (sim) shows `-`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from provisioner.ui import html
from provisioner.ui.html import esc
from provisioner.ui.safe import public
from provisioner.ui.serving import measured_line

if TYPE_CHECKING:
    from provisioner.api import Stack
    from provisioner.monitoring import PoolUsage
    from provisioner.state.base import ResourceRecord
    from provisioner.ui.app import UiApp

REFRESH_S = 5
_SHA256 = re.compile(r"^(sha256:)?([0-9a-f]{64})$")


def data(app: UiApp, key: str, query: dict[str, str]) -> dict[str, Any]:
    from provisioner.spec.model import Cluster, Registry, Storage

    sample = app.samplers.read(key)
    notes: list[str] = []
    with app.stack(key) as stack:
        components = stack.platform.components()
        targets = {c.name: stack.platform.target_of(c) for c in components}
        records, outputs = _state(stack, notes)
    pools_seen = list(sample.usage.pools) if sample is not None else []
    pools = []
    for cluster in (c for c in components if isinstance(c, Cluster)):
        for pool in cluster.gpu_pools:
            seen = [p for p in pools_seen if p.component == cluster.name and p.pool == pool.name]
            mine = [r for r in records.values() if r.address.startswith(f"{cluster.name}.")
                    and r.address.rsplit(".", 1)[-1] == pool.name]
            pools.append({"key": f"{cluster.name}/{pool.name}", "cluster": cluster.name, "pool": pool.name,
                          "target": targets[cluster.name], "accelerator": pool.accelerator,
                          "gpus_per_node": pool.gpus_per_node, "nodes_min": pool.nodes.min,
                          "nodes_max": pool.nodes.max, "spot": pool.spot, "declared": True,
                          **_pool_usage(seen), "records": [_brief(r) for r in mine]})
    declared = {p["key"] for p in pools}
    for row in pools_seen:  # measured, not declared (local: the host's GPUs when no pool is)
        if f"{row.component}/{row.pool}" not in declared:
            pools.append({"key": f"{row.component}/{row.pool}", "cluster": row.component, "pool": row.pool,
                          "target": row.target, "accelerator": None, "gpus_per_node": None, "nodes_min": None,
                          "nodes_max": None, "spot": None, "declared": False, **_pool_usage([row]), "records": []})
    storage = []
    for volume in (c for c in components if isinstance(c, Storage)):
        mine = [r for r in records.values() if r.address.startswith(f"{volume.name}.")]
        for record in mine:
            storage.append({"address": record.address, "component": volume.name, "kind": volume.kind,
                            "resource_kind": record.kind, "target": record.target,
                            "size_gb": record.inputs.get("size_gb", volume.size_gb),
                            "mount_path": record.inputs.get("mount_path", volume.mount_path), "id": record.id,
                            "path": record.outputs.get("path")})
        if not mine:
            storage.append({"address": None, "component": volume.name, "kind": volume.kind, "resource_kind": None,
                            "target": targets[volume.name], "size_gb": volume.size_gb,
                            "mount_path": volume.mount_path, "id": None, "path": None})
    models, images = [], []
    for registry in (c for c in components if isinstance(c, Registry)):
        for model in registry.models:
            mine = [r for r in records.values() if r.address.startswith(f"{registry.name}.")
                    and r.address.endswith(f".{model.ref}")]
            checksum = checksum_of(outputs.get(f"{registry.name}.sha256.{model.ref}"), mine)
            models.append({"ref": model.ref, "name": model.name, "version": model.version,
                           "framework": model.framework, "registry": registry.name, "target": targets[registry.name],
                           "artifact": model.artifact, "checksum": checksum,
                           "uri": outputs.get(f"{registry.name}.model.{model.ref}"),
                           "records": [_brief(r) for r in mine]})
        images += [{"name": image.name, "registry": registry.name,
                    "uri": outputs.get(f"{registry.name}.image.{image.name}")} for image in registry.images]
    if sample is not None:
        notes += sample.notes + sample.usage.notes
    return public({
        "stack": key, "refresh_s": REFRESH_S,
        "window_s": sample.window_s if sample is not None else app.samplers.window_s,
        "measured_at": sample.measured_at if sample is not None else None,
        "pools": pools, "storage": storage, "models": models, "images": images, "notes": notes,
    })


def _state(stack: Stack, notes: list[str]) -> tuple[dict[str, ResourceRecord], dict[str, Any]]:
    try:
        return stack.state.resources(), stack.outputs()
    except Exception as err:  # an unreadable state: the stack file's side still shows
        notes.append(f"could not read the state: {type(err).__name__}: {err}")
        return {}, {}


def _brief(record: ResourceRecord) -> dict[str, Any]:
    return {"address": record.address, "kind": record.kind, "id": record.id}


def _pool_usage(rows: list[PoolUsage]) -> dict[str, Any]:
    """One pool's measured numbers (several rows: summed; utilisation averaged over the rows that have one)."""
    def total(name: str) -> Any:
        values = [getattr(r, name) for r in rows if getattr(r, name) is not None]
        return sum(values) if values else None

    utils = [r.gpu_util_percent for r in rows if r.gpu_util_percent is not None]
    return {"measured": bool(rows), "nodes": total("nodes"), "gpus": total("gpus"),
            "gpu_util_percent": sum(utils) / len(utils) if utils else None,
            "gpu_memory_used_mb": total("gpu_memory_used_mb"), "gpu_memory_total_mb": total("gpu_memory_total_mb"),
            "source": ", ".join(sorted({r.source for r in rows if r.source}))}


def checksum_of(output: Any, records: list[ResourceRecord]) -> str | None:
    """`sha256:<hex>` from the registry's output, else from a record's sha256 / digest; None when none is kept."""
    candidates = [output]
    for record in records:
        candidates += [record.outputs.get("sha256"), record.outputs.get("digest"), record.inputs.get("sha256")]
    for value in candidates:
        if isinstance(value, str) and (found := _SHA256.match(value.strip().lower())):
            return f"sha256:{found.group(2)}"
    return None


# -- render -----------------------------------------------------------------------------------------------------
def render(app: UiApp, key: str, data: dict[str, Any]) -> str:
    parts = ["<h1>Resources</h1>", measured_line(data), html.notes(data["notes"]),
             "<h2>GPU pools</h2>", _pools(data["pools"]), "<h2>Storage</h2>", _storage(key, data["storage"]),
             "<h2>Registry models</h2>", _models(key, data["models"])]
    if data["images"]:
        parts += ["<h2>Images</h2>", html.table(("registry", "image", "uri"), (
            (esc(i["registry"]), esc(i["name"]), f'<code>{esc(i["uri"] or "-")}</code>') for i in data["images"]))]
    return "".join(parts)


def _link(key: str, address: str | None) -> str:
    if not address:
        return '<span class="dim">not created</span>'
    return f'<a href="{esc(html.href("resource", key, address=address))}"><code>{esc(address)}</code></a>'


def _pools(pools: list[dict[str, Any]]) -> str:
    if not pools:
        return '<p class="dim" id="no-pools">No GPU pools declared.</p>'
    head = ("<thead><tr><th>cluster/pool</th><th>target</th><th>accelerator</th><th class=\"num\">nodes</th>"
            "<th class=\"num\">declared nodes</th><th class=\"num\">GPUs</th><th class=\"num\">GPU util</th>"
            "<th class=\"num\">GPU memory</th><th>source</th></tr></thead>")
    rows = []
    for p in pools:
        declared = "-" if p["nodes_min"] is None else (
            f'{p["nodes_min"]}' if p["nodes_min"] == p["nodes_max"] else f'{p["nodes_min"]}..{p["nodes_max"]}')
        memory = "-" if p["gpu_memory_used_mb"] is None else (
            f'{p["gpu_memory_used_mb"]:.0f}/{html.number(p["gpu_memory_total_mb"], ".0f")} MiB')
        accelerator = "-" if p["accelerator"] is None else (
            f'{p["accelerator"]}' + (f', {p["gpus_per_node"]} GPU/node' if p["gpus_per_node"] else "")
            + (" (spot)" if p["spot"] else ""))
        source = p["source"] or ("not measured yet" if p["declared"] else "")
        rows.append(f'<tr data-pool="{esc(p["key"])}" data-nodes="{esc(p["nodes"] if p["nodes"] is not None else "")}"'
                    f' data-util="{esc(p["gpu_util_percent"] if p["gpu_util_percent"] is not None else "")}">'
                    f'<td>{esc(p["key"])}{"" if p["declared"] else " <span class=dim>(not declared)</span>"}</td>'
                    f'<td>{esc(p["target"])}</td><td>{esc(accelerator)}</td>'
                    f'<td class="num">{esc(html.number(p["nodes"], "d"))}</td><td class="num">{esc(declared)}</td>'
                    f'<td class="num">{esc(html.number(p["gpus"], "d"))}</td>'
                    f'<td class="num">{esc(html.number(p["gpu_util_percent"], ".0f", " %"))}</td>'
                    f'<td class="num">{esc(memory)}</td><td class="dim">{esc(source)}</td></tr>')
    return f'<table class="pools">{head}<tbody>{"".join(rows)}</tbody></table>'


def _storage(key: str, storage: list[dict[str, Any]]) -> str:
    if not storage:
        return '<p class="dim" id="no-storage">No storage declared.</p>'
    head = ("<thead><tr><th>address</th><th>component</th><th>kind</th><th>target</th><th class=\"num\">size</th>"
            "<th>mount path</th><th>id</th></tr></thead>")
    rows = []
    for s in storage:
        kind = esc(s["kind"]) + (f' <span class="dim">({esc(s["resource_kind"])})</span>' if s["resource_kind"] else "")
        rows.append(f'<tr data-storage="{esc(s["address"] or s["component"])}" data-component="{esc(s["component"])}">'
                    f'<td>{_link(key, s["address"])}</td><td>{esc(s["component"])}</td><td>{kind}</td>'
                    f'<td>{esc(s["target"])}</td><td class="num">{esc(html.number(s["size_gb"], "d", " GB"))}</td>'
                    f'<td><code>{esc(s["mount_path"])}</code></td><td><code>{esc(s["id"] or "-")}</code></td></tr>')
    return f'<table class="storage">{head}<tbody>{"".join(rows)}</tbody></table>'


def _models(key: str, models: list[dict[str, Any]]) -> str:
    if not models:
        return '<p class="dim" id="no-models">No registry models declared.</p>'
    head = ("<thead><tr><th>model</th><th>version</th><th>framework</th><th>registry</th><th>checksum</th>"
            "<th>artifact</th><th>resources</th></tr></thead>")
    rows = []
    for m in models:
        checksum = (f'<code class="checksum">{esc(m["checksum"])}</code>' if m["checksum"]
                    else '<code class="checksum dim">-</code>')
        links = " ".join(_link(key, r["address"]) for r in m["records"]) or '<span class="dim">not created</span>'
        artifact = f'<code>{esc(m["uri"] or m["artifact"])}</code>'
        rows.append(f'<tr data-model="{esc(m["ref"])}" data-checksum="{esc(m["checksum"] or "")}">'
                    f'<td>{esc(m["name"])}</td><td>{esc(m["version"])}</td><td>{esc(m["framework"])}</td>'
                    f'<td>{esc(m["registry"])} <span class="dim">on {esc(m["target"])}</span></td>'
                    f'<td>{checksum}</td><td>{artifact}</td><td>{links}</td></tr>')
    return f'<table class="models">{head}<tbody>{"".join(rows)}</tbody></table>'
