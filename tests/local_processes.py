"""The local target's server processes as the operating system sees them, to hold them against the state."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from provisioner.pids import pid_alive

from conftest import run_mlplat

RUNTIME_MODULE = "mlplat_plugins.local.runtime."


def servers_under(directory: Path) -> dict[int, str]:
    """pid -> runtime file of every live router / model server whose command line names a path under
    `directory` (so other tests' servers are never counted)."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if not any(a.startswith(RUNTIME_MODULE) for a in argv) or "--runtime-file" not in argv:
            continue
        runtime_file = argv[argv.index("--runtime-file") + 1]
        if runtime_file.startswith(str(directory)) and pid_alive(int(proc.name)):
            found[int(proc.name)] = runtime_file
    return found


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
