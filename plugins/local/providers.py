"""Resource providers of the local target: directories, a directory registry, host GPU pools, model-server
and router processes. Process-backed resources are found again through their runtime files."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provisioner.errors import MlplatError, RetryableError
from provisioner.operations import StepContext
from provisioner.provider import Created, Observed, ResourceProvider

if TYPE_CHECKING:
    from mlplat_plugins.local.target import LocalTarget

MARKER = ".mlplat-owner"
MODEL_SERVER = "mlplat_plugins.local.runtime.model_server"
ROUTER = "mlplat_plugins.local.runtime.router"


class LocalProvider(ResourceProvider):
    def __init__(self, target: LocalTarget) -> None:
        self.target = target


def _claim(path: Path, address: str) -> None:
    """Create `path` and mark it as `address`'s, refusing a directory that belongs to something else.

    The marker is written atomically (a kill leaves the old content or the new, never a torn file); an empty
    or unreadable marker is what a crash on an older version left half-written, so it is adopted."""
    from mlplat_plugins.local.runtime.processes import write_text_atomic

    path.mkdir(parents=True, exist_ok=True)
    owner = owner_of(path)
    if owner is not None and owner != address:
        raise MlplatError(f"{path} already belongs to {owner}",
                          hint="another resource (or another stack sharing targets.local.root) uses this "
                               "directory; give this stack its own root, or remove the directory if it is unused")
    if owner is None:
        write_text_atomic(path / MARKER, address + "\n")


def owner_of(path: Path) -> str | None:
    """The address a directory's marker names; None without a marker or with an empty or unreadable one."""
    try:
        owner = (path / MARKER).read_text(encoding="utf-8").strip()
    except (OSError, ValueError):
        return None
    return owner or None


def _owned_by(path: Path, address: str) -> bool:
    return owner_of(path) == address


class DirectoryProvider(LocalProvider):
    """NAS on the local machine: a directory (mount_path is advisory: containers would mount `path` there)."""

    force_new = frozenset({"path"})

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        path = Path(inputs["path"])
        _claim(path, address)
        return Created(str(path), {"path": str(path)})

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        path = Path(inputs["path"])
        return Created(str(path), {"path": str(path)}) if _owned_by(path, address) else None

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        return Observed(dict(inputs), {"path": id}) if Path(id).is_dir() else None

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        return {"path": id}

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        path = Path(id)
        if path.is_dir() and (path / MARKER).exists():
            shutil.rmtree(path)


class RegistryProvider(DirectoryProvider):
    """A directory registry: <path>/<model>/<version>/ holding the artifact and its metadata."""


class ImageRepositoryProvider(DirectoryProvider):
    """An image repository in the directory registry: a folder for OCI image layouts (`skopeo copy ... oci:`)."""


class ModelVersionProvider(LocalProvider):
    """A model version copied into the registry; the digest is re-computed on read, so edits show as drift."""

    force_new = frozenset({"registry", "name", "version"})

    def _dir(self, inputs: dict[str, Any]) -> Path:
        return Path(inputs["registry"]) / inputs["name"] / inputs["version"]

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        return self._write(inputs)

    def _write(self, inputs: dict[str, Any]) -> Created:
        source = Path(inputs["source"])
        if not source.is_file():
            raise MlplatError(f"artifact {source} is missing")
        directory = self._dir(inputs)
        directory.mkdir(parents=True, exist_ok=True)
        artifact = directory / ("model" + (source.suffix or ".bin"))
        tmp = artifact.with_suffix(".tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, artifact)
        meta = {k: inputs[k] for k in ("name", "version", "sha256", "framework")} | {
            "source": str(source),
            "artifact": artifact.name,
        }
        from mlplat_plugins.local.runtime.processes import write_json_atomic

        write_json_atomic(directory / "meta.json", meta)
        return Created(str(directory), {"uri": str(artifact), "digest": f"sha256:{inputs['sha256']}"})

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        directory = self._dir(inputs)
        observed = self.read(str(directory), inputs)
        return Created(str(directory), observed.outputs) if observed else None

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        try:
            meta = json.loads((Path(id) / "meta.json").read_text())
            artifact = Path(id) / meta["artifact"]
            digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
        except (OSError, ValueError, KeyError):
            return None
        current = {
            **inputs,
            "name": meta["name"],
            "version": meta["version"],
            "sha256": digest,
            "framework": meta["framework"],
            "source": meta["source"],
        }
        return Observed(current, {"uri": str(artifact), "digest": f"sha256:{digest}"})

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        return self._write(desired).outputs

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        path = Path(id)
        shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError):  # the model's folder goes with its last version (racing siblings ok)
            path.parent.rmdir()


class GpuPoolProvider(LocalProvider):
    """A pool on this host: reserves nothing, but checks the host still has the GPUs and names the devices."""

    def _devices(self, inputs: dict[str, Any]) -> dict[str, Any]:
        from mlplat_plugins.local.host import detect

        host = detect()
        accelerator = inputs["accelerator"]
        if accelerator == "cpu":
            return {"devices": "", "cpus": host.cpus, "accelerator": "cpu"}
        gpus = host.gpus_of(accelerator)[: inputs["gpus_per_node"]]
        if len(gpus) < inputs["gpus_per_node"]:
            raise MlplatError(
                f"this machine has {len(gpus)} {accelerator} GPU(s), the pool needs {inputs['gpus_per_node']}"
            )
        return {
            "devices": ",".join(str(g.index) for g in gpus),
            "cpus": host.cpus,
            "accelerator": accelerator,
        }

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        return Created(f"{socket.gethostname()}/{address}", self._devices(inputs))

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        return None  # nothing is made outside the state, so an interrupted create is simply re-run

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        try:
            return Observed(dict(inputs), self._devices(inputs))
        except MlplatError:
            return None

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        return self._devices(desired)

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        return None


class ProcessProvider(LocalProvider):
    """A server process in its own run directory, found again through the runtime file it writes."""

    def _run_dir(self, inputs: dict[str, Any]) -> Path:
        raise NotImplementedError

    def _found(self, run_dir: Path) -> Created | None:
        from mlplat_plugins.local.runtime.processes import find_running

        info = find_running(run_dir / "runtime.json")
        if info is None:
            return None
        return Created(str(run_dir), {"url": info.url, "pid": info.pid, "port": info.port})

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        return self._found(self._run_dir(inputs))

    def _spawn(self, module: str, args: list[str], run_dir: Path, address: str) -> Created:
        from mlplat_plugins.local.runtime.processes import spawn

        _claim(run_dir, address)
        token_file = self.target.internal_token_file()
        try:
            info = spawn(
                module,
                [*args, "--runtime-file", str(run_dir / "runtime.json"), "--internal-token-file", str(token_file),
                 "--quiet"],
                runtime_file=run_dir / "runtime.json",
                log_file=run_dir / "server.log",
            )
        except RuntimeError as err:
            raise MlplatError(f"the server process did not start: {err}") from None
        return Created(str(run_dir), {"url": info.url, "pid": info.pid, "port": info.port})

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        run_dir = Path(id)
        stop_server(run_dir)
        if run_dir.is_dir() and (run_dir / MARKER).exists():
            shutil.rmtree(run_dir, ignore_errors=True)


def stop_server(run_dir: Path) -> int | None:
    """Stop the server a run directory's runtime file names, if it is alive and provably ours; its pid or None.

    Ours: its healthz confirms the pid, or (a hung server) its command line names this runtime file. A process
    that will not stop is an error: nothing may be reported deleted while it still runs."""
    from mlplat_plugins.local.runtime.processes import find_running, is_alive, read_runtime, stop

    runtime_file = run_dir / "runtime.json"
    info = find_running(runtime_file)
    if info is None:
        info = read_runtime(runtime_file)
        if info is None or not is_alive(info.pid) or not _command_names(info.pid, str(runtime_file)):
            return None  # nothing running, or a recycled pid: someone else's process
    stop(info.pid)
    if is_alive(info.pid):
        raise RetryableError(f"the server in {run_dir} (pid {info.pid}) did not stop")
    return info.pid


def _command_names(pid: int, text: str) -> bool:
    try:
        return text in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False


class ModelServerProvider(ProcessProvider):
    """One model server per path. Any change replaces it blue/green: new process first, then the router moves,
    then the old process stops — no request is dropped."""

    force_new = frozenset({"endpoint", "path", "model", "artifact", "host", "work_dir"})
    replace_mode = "create_before_destroy"

    def _run_dir(self, inputs: dict[str, Any]) -> Path:
        token = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:10]
        return Path(inputs["work_dir"]) / f"{inputs['path']}-{token}"

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        run_dir = self._run_dir(inputs)
        return self._found(run_dir) or self._spawn(
            MODEL_SERVER,
            ["--artifact", inputs["artifact"], "--model-id", inputs["model"], "--host", inputs["host"]],
            run_dir,
            address,
        )

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        found = self._found(Path(id))
        return Observed(dict(inputs), found.outputs) if found else None

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        found = self._found(Path(id))
        if found is None:
            raise RetryableError(f"model server in {id} is not running")
        return found.outputs


class RouterProvider(ProcessProvider):
    """The endpoint: a router process. Weight and route changes are applied live (config file + SIGHUP)."""

    force_new = frozenset({"endpoint", "host", "work_dir"})
    LIVE_FIELDS = ("mode", "mirror_percent", "routes")

    def _run_dir(self, inputs: dict[str, Any]) -> Path:
        return Path(inputs["work_dir"]) / "router"

    def _config(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The router's config file; of an API key only its SHA-256 is written (the key is a secret)."""
        key = inputs.get("api_key")
        return {"endpoint": inputs["endpoint"], **{k: inputs[k] for k in self.LIVE_FIELDS},
                "key_sha256": hashlib.sha256(key.encode()).hexdigest() if key else None}

    def _write_config(self, run_dir: Path, inputs: dict[str, Any]) -> Path:
        from mlplat_plugins.local.runtime.processes import write_json_atomic

        path = run_dir / "config.json"
        write_json_atomic(path, self._config(inputs))
        return path

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        run_dir = self._run_dir(inputs)
        found = self._found(run_dir)
        if found is not None:  # created before a crash: bring it to the desired config
            self.update(str(run_dir), {}, inputs, ctx)
            return found
        _claim(run_dir, address)
        config = self._write_config(run_dir, inputs)
        args = ["--config", str(config), "--host", inputs["host"]]
        port = _previous_port(run_dir, inputs["host"])
        if port:  # a router recreated after a reboot or a kill keeps its URL when it can
            args += ["--port", str(port)]
        return self._spawn(ROUTER, args, run_dir, address)

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        found = self._found(Path(id))
        if found is None:
            return None
        live = _get_json(found.outputs["url"] + "/-/config", inputs.get("api_key"))
        if live is None:
            return None
        current = {**inputs, **{k: live.get(k) for k in self.LIVE_FIELDS}}
        return Observed(current, found.outputs)

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        from mlplat_plugins.local.runtime.processes import reload

        run_dir = Path(id)
        found = self._found(run_dir)
        if found is None:
            raise MlplatError(
                f"the router in {id} is not running", hint="run mlplat apply again to recreate it"
            )
        self._write_config(run_dir, desired)
        reload(found.outputs["pid"])
        wanted = self._config(desired)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # confirm the live config before declaring success
            live = _get_json(found.outputs["url"] + "/-/config", desired.get("api_key")) or {}
            if {k: live.get(k) for k in wanted} == wanted:
                return found.outputs
            time.sleep(0.02)
        raise MlplatError(f"the router in {id} did not take the new configuration (see {run_dir}/server.log)")


def _previous_port(run_dir: Path, host: str) -> int | None:
    from mlplat_plugins.local.runtime.processes import read_runtime

    info = read_runtime(run_dir / "runtime.json")
    if info is None:
        return None
    with socket.socket() as probe:
        try:
            probe.bind((host, info.port))
        except OSError:
            return None
    return info.port


def _get_json(url: str, api_key: str | None = None) -> Any:
    import urllib.request

    request = urllib.request.Request(url, headers={"X-Api-Key": api_key} if api_key else {})
    try:
        with urllib.request.urlopen(request, timeout=3) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


PROVIDERS: dict[str, type[LocalProvider]] = {
    "local.directory": DirectoryProvider,
    "local.registry": RegistryProvider,
    "local.image_repository": ImageRepositoryProvider,
    "local.model_version": ModelVersionProvider,
    "local.gpu_pool": GpuPoolProvider,
    "local.model_server": ModelServerProvider,
    "local.router": RouterProvider,
}
