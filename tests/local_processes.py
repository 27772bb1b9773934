"""The local target's server processes as the operating system sees them, to hold them against the state."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from provisioner.pids import pid_alive

from conftest import run_mlplat

RUNTIME_MODULE = "mlplat_plugins.local.runtime."


def processes_naming(directory: Path, flag: str) -> dict[int, str]:
    """pid -> the value of `flag` of every live process of ours (a runtime module) whose command line gives `flag`
    a path under `directory` (so other tests' servers are never counted)."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if not any(a.startswith(RUNTIME_MODULE) for a in argv) or flag not in argv[:-1]:
            continue
        value = argv[argv.index(flag) + 1]
        if value.startswith(str(directory)) and pid_alive(int(proc.name)):
            found[int(proc.name)] = value
    return found


def servers_under(directory: Path) -> dict[int, str]:
    """pid -> runtime file of every live router / model server (a supervisor, for supervised model servers) whose
    runtime file lies under `directory`."""
    return processes_naming(directory, "--runtime-file")


def recorded_servers(stack: Path) -> dict[int, str]:
    """pid -> address of every process the state records (model servers and routers)."""
    listing = run_mlplat("state", "list", "--json", "-f", str(stack), cwd=stack.parent).stdout
    pids = {}
    for resource in json.loads(listing)["resources"]:
        if resource["kind"] in ("local.model_server", "local.router"):
            shown = run_mlplat("state", "show", resource["address"], "-f", str(stack), cwd=stack.parent).stdout
            pids[json.loads(shown)["outputs"]["pid"]] = resource["address"]
    return pids


def kill_all(directory: Path) -> None:
    """Test cleanup: whatever a failed test left running under `directory`."""
    for pid in servers_under(directory):
        subprocess.run(["kill", "-9", str(pid)], check=False)
