"""A test dependency missing from the environment skips its tests on a developer machine, but fails the run under
CI (tests/conftest.py's require_module): an incomplete test extra must not pass CI by skipping a whole suite."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
MISSING = "mlplat_no_such_module_for_tests"

AT_MODULE_LEVEL = f"""\
from conftest import require_module

require_module({MISSING!r}, "it is part of the test extra")


def test_never_runs_without_it():
    pass
"""

IN_A_FIXTURE = f"""\
import pytest

from conftest import require_module


@pytest.fixture(scope="session")
def server():
    require_module({MISSING!r}, "it is part of the test extra")


def test_needs_the_server(server):
    pass
"""


def run_pytest(directory: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (directory / "test_module_level.py").write_text(AT_MODULE_LEVEL)
    (directory / "test_in_fixture.py").write_text(IN_A_FIXTURE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
                           "--continue-on-collection-errors", str(directory)],
                          cwd=directory, env=env, text=True, capture_output=True, timeout=120)


@pytest.mark.parametrize("ci", ["true", "1"])
def test_under_ci_a_missing_module_fails_the_run(tmp_path: Path, ci: str) -> None:
    proc = run_pytest(tmp_path, ci)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert re.search(r"\b2 errors\b", out) and "skipped" not in out, out  # collection + fixture setup
    assert out.count(f"CI must run the tests that need {MISSING}") >= 2, out


@pytest.mark.parametrize("ci", [None, "false"])
def test_off_ci_a_missing_module_skips(tmp_path: Path, ci: str | None) -> None:
    proc = run_pytest(tmp_path, ci)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert re.search(r"\b2 skipped\b", out) and "error" not in out.lower(), out
