"""Serving on the local target: per path a model-server process (`local.model_server`), per endpoint a router
process (`local.router`), each in its own run directory and found again through the runtime file it writes. (An
endpoint's front door, `local.front_door`, is a router too: front_door.py.)

Import id: the server's run directory (absolute), as `mlplat state show` prints it. Only a server mlplat started
can be adopted — back, after `mlplat state rm` or with a state restored from an older copy: its run directory
holds the runtime file it wrote (its kind, model, pid, port) and it still answers its healthz. A process started
any other way has no such directory (nor the stack's internal token), and is refused: apply starts one instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlplat_plugins.local.base import MARKER, LocalProvider, claim, owner_of
from provisioner.errors import MlplatError, ProviderError, RetryableError
from provisioner.provider import Created, Observed

if TYPE_CHECKING:
    from mlplat_plugins.local.runtime.processes import ProcessInfo
    from provisioner.operations import StepContext

MODEL_SERVER = "mlplat_plugins.local.runtime.model_server"
ROUTER = "mlplat_plugins.local.runtime.router"
#: router inputs (and config keys) of an endpoint's `monitoring:` (target.py `_lower_serving`): `capture` = {dir,
#: sample_percent, request, response} or None, `compare_shadow` = whether mirrored answers are compared
MONITORING_KEYS = ("capture", "compare_shadow")
#: a router's port, kept in its run directory so that a router started again gets it back
PORT_FILE = "port"


class ProcessProvider(LocalProvider):
    """A server process in its own run directory, found again through the runtime file it writes."""

    #: the `kind` the server writes in its runtime file, and what messages call it
    runtime_kind: str
    noun: str
    #: environment variables (none of them secret) the process gets beyond `processes.ENV_ALLOWED`, when set
    child_env: tuple[str, ...] = ()

    def _run_dir(self, inputs: dict[str, Any]) -> Path:
        raise NotImplementedError

    def _observe(self, address: str, run_dir: Path, info: ProcessInfo, inputs: dict[str, Any]) -> Observed:
        """The inputs and outputs of the running server `info` (import): what its runtime file and run directory
        say, the stack file's `inputs` for what they cannot."""
        raise NotImplementedError

    def import_(self, address: str, id: str, inputs: dict[str, Any]) -> Observed | None:
        """A running server of this kind that mlplat started in the run directory `id`; marked as `address`'s."""
        from mlplat_plugins.local.runtime.processes import find_running, read_runtime

        run_dir = self.import_path(address, id)
        if not run_dir.is_dir():
            if run_dir.exists():
                raise ProviderError(address, f"{id} is not a directory, so not a local {self.noun}'s run directory")
            return None
        runtime_file = run_dir / "runtime.json"
        info = read_runtime(runtime_file)
        if info is None:
            raise ProviderError(address, f"{id} is not a local {self.noun}'s run directory: it has no runtime.json",
                                hint="only a server mlplat started can be imported, by the run directory it was "
                                     "started in; a process started by hand cannot: let mlplat apply start one")
        kind = info.meta.get("kind")
        if kind != self.runtime_kind:
            raise ProviderError(address, f"{id} is the run directory of a {kind or 'server of unknown kind'}, not of "
                                         f"a local {self.noun}")
        owner = owner_of(run_dir)
        if owner is not None and owner != address:
            raise ProviderError(address, f"{id} belongs to {owner} (its {MARKER} says so)",
                                hint="one server, one address: import it as that address")
        if find_running(runtime_file) is None:
            raise ProviderError(address, f"the {self.noun} of {id} (pid {info.pid}) is not running",
                                hint="a stopped server is not imported: let mlplat apply start one")
        if Path("/proc").is_dir() and not _command_names(info.pid, str(runtime_file)):
            raise ProviderError(address, f"the {self.noun} pid {info.pid} was started with another run directory "
                                         f"than {id} (its runtime.json is a copy)",
                                hint="import a server by the run directory it was started in")
        seen = self._observe(address, run_dir, info, inputs)
        claim(run_dir, address)
        return seen

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

        claim(run_dir, address)
        token_file = self.target.internal_token_file()
        try:
            info = spawn(
                module,
                [*args, "--runtime-file", str(run_dir / "runtime.json"), "--internal-token-file", str(token_file),
                 "--quiet"],
                runtime_file=run_dir / "runtime.json",
                log_file=run_dir / "server.log",
                env={k: os.environ[k] for k in self.child_env if k in os.environ},
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
    """One model server per path, run under a supervisor (runtime/supervisor.py) that holds its port and restarts
    it when it dies (backoff 0.1 s doubling to 5 s). The supervisor is the process the state records: its pid is
    in the runtime file and in the server's healthz, so a restart heals without the provisioner and the next
    preview is a no-op; a killed supervisor takes its server down, shows as gone, and apply starts both again.
    Any change replaces it blue/green: new process first, then the router moves, then the old process stops — no
    request is dropped."""

    force_new = frozenset({"endpoint", "path", "model", "framework", "artifact", "host", "work_dir"})
    replace_mode = "create_before_destroy"
    runtime_kind = noun = "model_server"
    #: what `create` starts: the supervisor, which runs `MODEL_SERVER` (same options)
    module = "mlplat_plugins.local.runtime.supervisor"

    def _run_dir(self, inputs: dict[str, Any]) -> Path:
        token = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:10]
        return Path(inputs["work_dir"]) / f"{inputs['path']}-{token}"

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        run_dir = self._run_dir(inputs)
        found = self._found(run_dir)
        if found is not None:
            return found
        # alive but not answering (a supervisor whose server cannot start any more, a hung one): stop it, so a
        # second one is not started beside it in the same run directory
        stop_server(run_dir)
        return self._spawn(
            self.module,
            ["--artifact", inputs["artifact"], "--model-id", inputs["model"], "--host", inputs["host"],
             "--framework", inputs.get("framework", "mlplat-linear")],
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

    def _observe(self, address: str, run_dir: Path, info: ProcessInfo, inputs: dict[str, Any]) -> Observed:
        """The model and artifact it serves and where it listens (its runtime file); endpoint, path and work_dir
        from its run directory, <work_dir>/<path>-<hash of its inputs> in <root>/serving/<endpoint>."""
        artifact = str(info.meta.get("artifact"))  # resolved by the server
        wanted = inputs.get("artifact")
        if isinstance(wanted, str) and str(Path(wanted).resolve()) == artifact:
            artifact = wanted
        current = {**inputs, "endpoint": run_dir.parent.name, "path": run_dir.name.rpartition("-")[0],
                   "model": info.meta.get("model_id"), "artifact": artifact,
                   "host": _seen_host(inputs.get("host"), info.host), "work_dir": str(run_dir.parent)}
        return Observed(current, {"url": info.url, "pid": info.pid, "port": info.port})


class RouterProvider(ProcessProvider):
    """The endpoint: a router process. Weight and route changes are applied live (config file + SIGHUP)."""

    force_new = frozenset({"endpoint", "host", "work_dir"})
    runtime_kind = noun = "router"

    def _run_dir(self, inputs: dict[str, Any]) -> Path:
        return Path(inputs["work_dir"]) / "router"

    def _work_dir(self, run_dir: Path) -> Path:
        """The `work_dir` input of the process in `run_dir` (import)."""
        return run_dir.parent

    def _config(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The router's config file; of an API key only its SHA-256 is written (the key is a secret). Every route
        is one of the endpoint's own model servers: internal (they get the stack's internal token)."""
        config = {"endpoint": inputs["endpoint"], "mode": inputs["mode"], "mirror_percent": inputs["mirror_percent"],
                  "routes": [{**route, "internal": True} for route in inputs["routes"]],
                  "key_sha256": key_sha256(inputs.get("api_key"))}
        for key in MONITORING_KEYS:  # written only when set, so endpoints without monitoring keep their config
            if inputs.get(key):
                config[key] = inputs[key]
        return config

    def _seen(self, live: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
        """`inputs` as the live configuration `live` (from /-/config) shows them."""
        routes = [{k: v for k, v in route.items() if k != "internal"} for route in live.get("routes") or []]
        seen = {**inputs, "mode": live.get("mode"), "mirror_percent": live.get("mirror_percent"), "routes": routes}
        for key in MONITORING_KEYS:
            if key in inputs or live.get(key):
                seen[key] = live.get(key) or (None if key == "capture" else False)
        return seen

    def _write_config(self, run_dir: Path, inputs: dict[str, Any]) -> dict[str, Any]:
        """Write the config file (checked first: a config the router would refuse is an error here); returns it
        as the router shows it once loaded."""
        from mlplat_plugins.local.runtime.processes import write_json_atomic
        from mlplat_plugins.local.runtime.router import ConfigError, parse_config

        config = self._config(inputs)
        try:
            wanted = parse_config(config)
        except ConfigError as err:
            raise MlplatError(f"the {self.noun} of {inputs['endpoint']!r} cannot be configured: {err}") from None
        self._write_files(run_dir, inputs)
        write_json_atomic(run_dir / "config.json", config)
        return wanted

    def _write_files(self, run_dir: Path, inputs: dict[str, Any]) -> None:
        """Files the config names, written before it. Default: none."""

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        from mlplat_plugins.local.runtime.processes import write_text_atomic

        run_dir = self._run_dir(inputs)
        found = self._found(run_dir)
        if found is not None:  # created before a crash: bring it to the desired config
            self.update(str(run_dir), {}, inputs, ctx)
            return found
        claim(run_dir, address)
        self._write_config(run_dir, inputs)
        args = ["--config", str(run_dir / "config.json"), "--host", inputs["host"], "--kind", self.runtime_kind]
        port = _previous_port(run_dir, inputs["host"])
        if port:  # a router recreated after a reboot or a kill keeps its URL when it can
            args += ["--port", str(port)]
        created = self._spawn(ROUTER, args, run_dir, address)
        write_text_atomic(run_dir / PORT_FILE, f"{created.outputs['port']}\n")
        return created

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        found = self._found(Path(id))
        if found is None:
            return None
        live = get_json(found.outputs["url"] + "/-/config", inputs.get("api_key"))
        if not isinstance(live, dict):
            return None
        return Observed(self._seen(live, inputs), found.outputs)

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        from mlplat_plugins.local.runtime.processes import reload

        run_dir = Path(id)
        found = self._found(run_dir)
        if found is None:
            raise MlplatError(
                f"the {self.noun} in {id} is not running", hint="run mlplat apply again to recreate it"
            )
        wanted = self._write_config(run_dir, desired)
        reload(found.outputs["pid"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # confirm the live config before declaring success
            live = get_json(found.outputs["url"] + "/-/config", desired.get("api_key")) or {}
            if {k: live.get(k) for k in wanted} == wanted:
                return found.outputs
            time.sleep(0.02)
        raise MlplatError(f"the {self.noun} in {id} did not take the new configuration (see {run_dir}/server.log)")

    def _observe(self, address: str, run_dir: Path, info: ProcessInfo, inputs: dict[str, Any]) -> Observed:
        """Its live configuration (as `read` sees it), its endpoint (runtime file) and where it listens."""
        seen = self.read(str(run_dir), inputs)
        if seen is None:
            raise ProviderError(address, f"the {self.noun} of {run_dir} does not show its configuration",
                                hint="with auth: key, the stack file's api_key must be the one the router has")
        current = {**seen.inputs, "endpoint": info.meta.get("endpoint"),
                   "host": _seen_host(inputs.get("host"), info.host), "work_dir": str(self._work_dir(run_dir))}
        return Observed(current, seen.outputs)


def key_sha256(key: str | None) -> str | None:
    return hashlib.sha256(str(key).encode()).hexdigest() if key else None


def _previous_port(run_dir: Path, host: str) -> int | None:
    """The port the server of `run_dir` listened on, if it is free now: from its runtime file (after a kill), else
    from the port file `create` wrote (a clean stop, a reboot's, removes the runtime file)."""
    from mlplat_plugins.local.runtime.processes import read_runtime

    info = read_runtime(run_dir / "runtime.json")
    try:
        port = info.port if info is not None else int((run_dir / PORT_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    if not 0 < port < 65536:
        return None
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no obstacle
        try:
            probe.bind((host, port))
        except OSError:
            return None
    return port


def _seen_host(wanted: Any, bound: str) -> Any:
    """The host a server listens on as the stack file would write it: `wanted` where it names the address the
    server bound (a host name cannot be compared, so it is taken as given), else the bound address."""
    import ipaddress

    if not isinstance(wanted, str) or wanted == bound:
        return bound
    try:
        return bound if ipaddress.ip_address(wanted) != ipaddress.ip_address(bound) else wanted
    except ValueError:
        return wanted


def get_json(url: str, api_key: str | None = None) -> Any:
    import urllib.request

    request = urllib.request.Request(url, headers={"X-Api-Key": api_key} if api_key else {})
    try:
        with urllib.request.urlopen(request, timeout=3) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None
