"""The local target: the platform on this machine. Settings, capabilities, discovery and lowering.

Lowering (providers in compute.py, storage.py, registry.py, serving.py; providers.py maps kinds to them):
- cluster  → a `gpu_pool` per pool: a check that this host has the GPUs, naming their devices
- storage  → a `directory` under <root>/volumes
- registry → a directory `registry` under <root>/registry, an `image_repository` folder per image, a
  `model_version` per model (the artifact copied in, with its meta.json)
- serving  → a `model_server` process per path and a `router` process for the endpoint (runtime/)
- an endpoint's front door (`lower_front_door`) → a `front_door` process under <root>/front_doors, a router
  forwarding to whole endpoints on any target (front_door.py)
- artifacts a registry on another target holds → files under <root>/artifacts (`artifact_store`)
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from mlplat_plugins.local.raw import RAW_KINDS
from provisioner.artifacts import artifact_path, sha256_file
from provisioner.errors import MlplatError, NotOffered
from provisioner.graph import Ref, Resource
from provisioner.provider import ResourceProvider
from provisioner.spec.model import Cluster, Component, Registry, Serving, Storage
from provisioner.target import (
    Capabilities,
    LowerContext,
    Lowered,
    Reason,
    ShadowCapability,
    StorageLimits,
    Target,
)

if TYPE_CHECKING:
    from mlplat_plugins.local.artifact_store import LocalArtifactStore
    from provisioner.monitoring import MonitorSource, Usage
    from provisioner.state.base import ResourceRecord


class LocalSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)  # built on first use: most commands use one target

    root: str | None = Field(
        None,
        description="Where volumes, the registry and logs live (default: .mlplat/<stack>/local beside the stack file)",
    )
    host: str = Field("127.0.0.1", description="Address the routers and front doors listen on (model servers always "
                                               "listen on 127.0.0.1, behind their router)")
    smtp: str | None = Field(None, pattern=r"^[A-Za-z0-9.-]+:\d{1,5}$",
                             description="host:port of an SMTP server for monitoring alerts' emails (plain SMTP, "
                                         "no login: a local relay)")


class LocalTarget(Target):
    name = "local"
    description = "this machine: directories, a directory registry, model servers and a weighted router"
    settings_model = LocalSettings
    raw_kinds = RAW_KINDS

    @property
    def root(self) -> Path:
        root = Path(self.settings.root) if self.settings.root else self.context.work_dir
        return root if root.is_absolute() else (self.context.stack_dir / root)

    def capabilities(self) -> Capabilities:
        from mlplat_plugins.local.host import detect

        offered = detect().accelerators()
        return Capabilities(
            training_accelerators=offered,
            serving_accelerators=offered,
            max_nodes_per_pool=1,
            traffic_split=True,
            shadow=ShadowCapability(max_mirror_percent=100),
            max_replicas=1,
            storage={"nas": StorageLimits()},
            auth_modes=frozenset({"none", "key"}),
            model_formats=frozenset({"mlplat-linear", "onnx", "sklearn", "mlflow"}),  # runtime/formats.py
            front_door="gateway",
            monitoring=frozenset({"capture", "drift", "alerts", "shadow_comparison"}),
            notes=("one node: this machine", "endpoints without auth: key listen on 127.0.0.1 only",
                   "front door: a gateway process forwarding to any http(s) endpoint (SigV4 or a key as needed)"),
        )

    def check(self, component: Component) -> list[Reason]:
        """A registry's models: a format whose runtime is not installed (the pip line installing it), and an
        artifact that is a pickle, or an MLflow model that would unpickle or run code (runtime/formats.py) — at
        the model's `framework` and `artifact`. Runtimes are looked for, never imported. A missing artifact is the
        loader's to report; an unknown framework the capability check's, on the path serving it."""
        from mlplat_plugins.local.runtime import formats

        if not isinstance(component, Registry):
            return []
        found = []
        for i, model in enumerate(component.models):
            missing = formats.missing_runtime(model.framework)
            if missing:
                found.append(Reason("model-runtime-missing", f"model {model.ref}: the local target serves "
                                    f"{model.framework} models with {', '.join(missing)}, which "
                                    f"{'is' if len(missing) == 1 else 'are'} not installed: "
                                    f"{formats.install_line(model.framework)}", ("models", i, "framework")))
            try:
                source = artifact_path(model, self.context.stack_dir, component.artifact_roots)
            except MlplatError:
                continue
            problem = formats.artifact_problem(source, model.framework)
            if problem is not None:
                found.append(Reason(problem[0], f"model {model.ref}: {problem[1]}", ("models", i, "artifact")))
        return found

    def discover(self) -> dict[str, object]:
        """The host facts a plan depends on: this machine's GPUs, as `nvidia-smi` names them, in index order
        (capabilities and lowering check pools against them; a pool's devices are their indexes), so a saved plan
        made on a machine with GPUs is refused on one without, or with others. Cheap: `host.detect()` runs
        `nvidia-smi` once per process and capabilities, discovery and lowering share its answer; each CLI command
        is a process of its own, so `mlplat apply plan.json` compares with the host as it is then."""
        from mlplat_plugins.local.host import detect

        return {"gpus": [gpu.name for gpu in detect().gpus]}

    def lower(self, component: Component, ctx: LowerContext) -> Lowered:
        if isinstance(component, Cluster):
            return self._lower_cluster(component)
        if isinstance(component, Storage):
            address = ctx.address(component.name, "directory", "main")
            path = self.root / "volumes" / component.name
            inputs = {"path": str(path), "size_gb": component.size_gb, "mount_path": component.mount_path}
            res = Resource(address, "local.directory", self.context.target_name, inputs)
            return Lowered([res], {"path": Ref(address, "path"), "mount_path": component.mount_path})
        if isinstance(component, Registry):
            return self._lower_registry(component, ctx)
        if isinstance(component, Serving):
            return self._lower_serving(component, ctx)
        raise MlplatError(f"the local target cannot realize {type(component).__name__}")

    def _lower_cluster(self, cluster: Cluster) -> Lowered:
        from mlplat_plugins.local.host import detect

        host = detect()
        resources, outputs = [], {}
        for pool in cluster.gpu_pools:
            if pool.accelerator != "cpu" and len(host.gpus_of(pool.accelerator)) < pool.gpus_per_node:
                have = len(host.gpus_of(pool.accelerator))
                raise NotOffered(
                    f"pool {pool.name!r} needs {pool.gpus_per_node} x {pool.accelerator} and this machine has {have}",
                    hint="lower gpus_per_node or use a cloud target",
                )
            address = f"{cluster.name}.gpu_pool.{pool.name}"
            inputs = {
                "accelerator": pool.accelerator,
                "gpus_per_node": pool.gpus_per_node,
                "nodes_min": pool.nodes.min,
                "nodes_max": pool.nodes.max,
                "spot": pool.spot,
            }
            resources.append(Resource(address, "local.gpu_pool", self.context.target_name, inputs))
            outputs[f"{pool.name}.devices"] = Ref(address, "devices")
        return Lowered(resources, outputs)

    def _lower_registry(self, registry: Registry, ctx: LowerContext) -> Lowered:
        reg_address = ctx.address(registry.name, "registry", "main")
        path = self.root / "registry" / registry.name
        resources = [Resource(reg_address, "local.registry", self.context.target_name, {"path": str(path)})]
        outputs: dict[str, object] = {"path": Ref(reg_address, "path")}
        for image in registry.images:
            address = ctx.address(registry.name, "image_repository", image.name)
            inputs = {"path": str(path / "images" / image.name)}
            resources.append(Resource(address, "local.image_repository", self.context.target_name, inputs,
                                      depends_on=(reg_address,)))
            outputs[f"image.{image.name}"] = Ref(address, "path")
        for model in registry.models:
            source = artifact_path(model, self.context.stack_dir, registry.artifact_roots)
            address = ctx.address(registry.name, "model_version", model.ref)
            inputs = {
                "registry": Ref(reg_address, "path"),
                "name": model.name,
                "version": model.version,
                "source": str(source),
                "sha256": sha256_file(source),
                "framework": model.framework,
            }
            resources.append(Resource(address, "local.model_version", self.context.target_name, inputs))
            outputs[f"model.{model.ref}"] = Ref(address, "uri")
            outputs[f"sha256.{model.ref}"] = inputs["sha256"]
        return Lowered(resources, outputs)

    def _lower_serving(self, serving: Serving, ctx: LowerContext) -> Lowered:
        registry = ctx.platform.registry
        resources: list[Resource] = []
        routes = []
        for path_name, path in serving.paths.items():
            if registry is None or ctx.platform.model(path.model) is None:
                known = (
                    ", ".join(m.ref for m in registry.models) if registry else "none (no registry declared)"
                )
                raise MlplatError(
                    f"paths.{path_name}.model {path.model!r} is not in the registry (models: {known})",
                    hint="declare it under registry.models",
                )
            address = ctx.address(serving.name, "model_server", path_name)
            inputs = {
                "endpoint": serving.name,
                "path": path_name,
                "model": path.model,
                "framework": ctx.platform.model(path.model).framework,
                "artifact": ctx.output(registry.name, f"model.{path.model}"),
                "host": "127.0.0.1",  # only the router is reachable from elsewhere; it holds the internal token
                "work_dir": str(self.root / "serving" / serving.name),
            }
            resources.append(Resource(address, "local.model_server", self.context.target_name, inputs))
            routes.append({"path": path_name, "url": Ref(address, "url"), "weight": path.weight or 0})
        exp = serving.paths.experimental
        router_inputs = {
            "endpoint": serving.name,
            "mode": "shadow" if serving.shadow else "split",
            "mirror_percent": exp.mirror_percent if exp is not None and serving.shadow else 0,
            "routes": routes,
            "api_key": serving.api_key if serving.auth == "key" else None,
            "host": self.settings.host,
            "work_dir": str(self.root / "serving" / serving.name),
        }
        monitoring = serving.monitoring
        if monitoring is not None:
            monitor = self._lower_monitor(serving, ctx)
            resources.append(monitor)
            capture = monitoring.capture
            router_inputs["capture"] = None if capture is None else {
                "dir": Ref(monitor.address, "capture_dir"), "sample_percent": capture.sample_percent,
                "request": capture.request, "response": capture.response}
            router_inputs["compare_shadow"] = monitoring.shadow_comparison is not None
        router = ctx.address(serving.name, "router", "main")
        resources.append(Resource(router, "local.router", self.context.target_name, router_inputs))
        upstream = {"url": Ref(router, "url"), "sign": None, "api_key": router_inputs["api_key"]}
        return Lowered(resources, {"url": Ref(router, "url"), "upstream": upstream})

    def _lower_monitor(self, serving: Serving, ctx: LowerContext) -> Resource:
        """`local.monitor`: the endpoint's capture directory (the router writes JSONL there) and its monitoring
        settings, so a change to any of them shows in the plan; `mlplat monitor` checks drift from what it holds."""
        monitoring = serving.monitoring
        assert monitoring is not None
        capture = monitoring.capture
        if capture is not None and capture.destination:
            if "://" in capture.destination:
                raise MlplatError(f"monitoring.capture.destination {capture.destination!r} is not a directory: the "
                                  "local target captures to a directory on this machine",
                                  hint="give a directory (relative to the stack file), or leave it out")
            capture_dir = Path(os.path.abspath(self.context.stack_dir / capture.destination))
        else:
            capture_dir = Path(os.path.abspath(self.root / "capture" / serving.name))
        drift = None
        if monitoring.drift is not None:
            baseline = Path(os.path.abspath(self.context.stack_dir / monitoring.drift.baseline))
            if not baseline.is_file():
                raise MlplatError(f"monitoring.drift.baseline {monitoring.drift.baseline!r} is not a file "
                                  f"({baseline})", hint="give a CSV file with a header row (or JSON lines), relative "
                                                        "to the stack file")
            drift = {**monitoring.drift.model_dump(), "baseline": str(baseline),
                     "baseline_sha256": sha256_file(baseline)}
        inputs = {
            "endpoint": serving.name,
            "path": str(capture_dir),
            "capture": capture.model_dump() if capture is not None else None,
            "drift": drift,
            "alerts": monitoring.alerts.model_dump() if monitoring.alerts is not None else None,
            "shadow_comparison": (monitoring.shadow_comparison.model_dump()
                                  if monitoring.shadow_comparison is not None else None),
        }
        address = ctx.address(serving.name, "monitor", "main")
        return Resource(address, "local.monitor", self.context.target_name, inputs)

    def lower_front_door(self, serving: Serving, upstreams: list[dict[str, Any]], ctx: LowerContext) -> Lowered:
        """A `local.front_door` router forwarding to `upstreams`. It asks clients for the endpoint's key as the
        endpoint does (`auth: key`); without one it may listen on loopback only, like an endpoint."""
        from mlplat_plugins.local.runtime.processes import is_loopback

        host = self.settings.host
        if serving.auth != "key" and not is_loopback(host):
            raise MlplatError(f"the front door of {serving.name!r} would listen on {host} without authentication",
                              hint=f"set auth: key on the endpoint, or remove targets.{self.context.target_name}"
                                   ".host (without auth the local target serves loopback only)")
        address = self.front_door_address(serving.name)
        inputs = {
            "endpoint": serving.name,
            "upstreams": upstreams,
            "api_key": serving.api_key if serving.auth == "key" else None,
            "host": host,
            "work_dir": str(self.root / "front_doors" / serving.name),
        }
        door = Resource(address, "local.front_door", self.context.target_name, inputs)
        return Lowered([door], {"url": Ref(address, "url")})

    # -- monitoring (plugins/local/monitoring.py) ------------------------------------------------------------
    def monitor_source(self, serving: Serving, records: list[ResourceRecord]) -> MonitorSource | None:
        """The capture directory of the endpoint's `local.monitor` (JSONL the router writes)."""
        from mlplat_plugins.local.monitoring import monitor_source

        return monitor_source(serving, records)

    def usage(self, records: list[ResourceRecord], window_s: float) -> Usage:
        """From the /metrics of the routers and model servers in `records`, scraped at the start and end of the
        window, and of this host's GPUs (NVML)."""
        from mlplat_plugins.local.monitoring import usage

        return usage(self, records, window_s)

    # -- this target's own working area --------------------------------------------------------------------
    @property
    def artifacts_dir(self) -> Path:
        """Where `artifact_store` keeps its files (absolute, normalized: their paths are the copies' ids)."""
        return Path(os.path.abspath(self.root / "artifacts"))

    def artifact_store(self) -> LocalArtifactStore:
        from mlplat_plugins.local.artifact_store import LocalArtifactStore

        return LocalArtifactStore(self.artifacts_dir)

    def internal_token_file(self) -> Path:
        """The stack's internal token (mode 0600), made on first use: routers send it, model servers require
        it, so nothing but the endpoint's router can call a model server."""
        import os
        import secrets

        from mlplat_plugins.local.runtime.processes import partial_write_name, read_token, write_text_atomic

        path = self.root / "internal.token"
        try:
            read_token(path)
        except ValueError:
            tmp = partial_write_name(path)
            write_text_atomic(tmp, secrets.token_hex(32) + "\n", mode=0o600)
            try:
                os.link(tmp, path)  # create-if-absent: threads racing here agree on one token
            except FileExistsError:
                read_token(path)  # a racing thread's complete token (link is atomic), or a clear error
            finally:
                tmp.unlink(missing_ok=True)
        return path

    def _run_dirs(self) -> list[Path]:
        """Server run directories: model servers' and routers' (serving/<endpoint>/*), front doors'."""
        found = [*(self.root / "serving").glob("*/*"), *(self.root / "front_doors").glob("*")]
        return sorted(d for d in found if d.is_dir())

    def _artifact_files(self) -> list[Path]:
        from mlplat_plugins.local.runtime.processes import is_partial_write

        return sorted(p for p in self.artifacts_dir.rglob("*") if p.is_file() and not is_partial_write(p.name))

    def leftovers(self) -> list[str]:
        """Directories this target made that hold something (an owner marker and more) and server processes
        still running. A directory holding only its marker is an unfinished create, not a sign of lost state."""
        from mlplat_plugins.local.base import MARKER, owner_of
        from mlplat_plugins.local.runtime.processes import find_running

        if not self.root.is_dir():
            return []
        found = [f"{m.parent} ({owner_of(m.parent)})" for m in sorted(self.root.rglob(MARKER))
                 if owner_of(m.parent) and any(c.name != MARKER for c in m.parent.iterdir())]
        found += [f"a server (pid {info.pid}) in {d}" for d in self._run_dirs()
                  if (info := find_running(d / "runtime.json", timeout=0.5)) is not None]
        found += [f"{path} (an artifact copy)" for path in self._artifact_files()]
        return found

    def sweep(self, recorded: frozenset[str]) -> list[str]:
        """Stop servers and remove directories under this target's root that no record names (what a crash
        left between a step's start and its journal entry), half-written files, then empty directories; with
        nothing recorded, the internal token and the root too. Returns what was removed.

        A recorded directory that holds no other recorded one (a volume, an image repository, a model version,
        a server's run directory) is a resource's content, the user's data among it: the sweep never enters it.
        Artifact copies are files, recorded by their path: one under <root>/artifacts that no record names is
        removed."""
        from mlplat_plugins.local.base import MARKER, owner_of
        from mlplat_plugins.local.runtime.processes import is_partial_write
        from mlplat_plugins.local.serving import stop_server

        if not self.root.is_dir():
            return []
        swept = []
        for artifact in self._artifact_files():
            if os.path.abspath(artifact) not in recorded:
                artifact.unlink(missing_ok=True)
                swept.append(f"{artifact} (an artifact copy no record names)")
        for run_dir in self._run_dirs():
            if str(run_dir) in recorded:
                continue
            pid = stop_server(run_dir)
            owner = owner_of(run_dir) or "no resource"
            swept.append(f"{run_dir} ({owner}{f', stopped pid {pid}' if pid else ''})")
            shutil.rmtree(run_dir, ignore_errors=True)
        containers = {str(parent) for rid in recorded for parent in Path(rid).parents}
        contents = {rid for rid in recorded if rid not in containers}
        visited = []
        for top, dirs, files in os.walk(self.root):
            dirs[:] = [d for d in dirs if os.path.join(top, d) not in contents]  # never enter a resource
            visited.append((Path(top), files))
        for directory, files in reversed(visited):  # deepest first, so a parent emptied here goes too
            for name in files:
                if is_partial_write(name):  # under the stack's lock nothing is writing one: a kill left it
                    (directory / name).unlink(missing_ok=True)
            if str(directory) in recorded or directory == self.root:
                continue
            if {c.name for c in directory.iterdir()} == {MARKER}:  # a create that never got past its mark
                swept.append(f"{directory} ({owner_of(directory) or 'unfinished'})")
                (directory / MARKER).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                directory.rmdir()  # only if empty
        if not recorded:
            (self.root / "internal.token").unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.root.rmdir()
        return swept

    def provider(self, kind: str) -> ResourceProvider:
        from mlplat_plugins.local.providers import PROVIDERS

        try:
            return PROVIDERS[kind](self)
        except KeyError:
            raise MlplatError(f"the local target has no resource kind {kind!r}") from None

