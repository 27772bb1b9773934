"""Shared fixtures: run the real `mlplat` CLI in a subprocess, copy example stacks into a temp dir."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STACKS = REPO / "stacks"

Cli = Callable[..., subprocess.CompletedProcess[str]]


def run_mlplat(*args: str, cwd: Path, env: dict[str, str] | None = None, check: bool = True,
               timeout: float = 120, stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    """The console script exactly as a user runs it (no TTY on stdin)."""
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "provisioner.cli", *args], cwd=cwd, env=full_env, text=True,
                          capture_output=True, timeout=timeout, stdin=stdin)
    if check and proc.returncode != 0:
        raise AssertionError(f"mlplat {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\n"
                             f"stderr:\n{proc.stderr}")
    return proc


@pytest.fixture
def cli() -> Cli:
    return run_mlplat


@pytest.fixture
def quickstart_dir(tmp_path: Path) -> Path:
    """stacks/quickstart.yaml and its models, copied so that state and processes live under tmp_path."""
    shutil.copy(STACKS / "quickstart.yaml", tmp_path / "quickstart.yaml")
    shutil.copytree(STACKS / "models", tmp_path / "models")
    return tmp_path
