"""docs/api.md's example runs as it is and prints what the page says (the automation API: from_text, preview,
stream(up), outputs, destroy, the context manager)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from provisioner.api import Stack
from provisioner.errors import SpecError

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(), re.S)


def test_the_documented_example_runs_and_prints_what_the_page_shows(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", blocks("python")[0]], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    shown = blocks("text")[0].splitlines()
    printed = proc.stdout.splitlines()
    assert sorted(printed) == sorted(shown), (printed, shown)  # made lines may come in another order
    assert printed.index("made train.cluster.main") < printed.index("made train.pool.cpu")
    with Stack(tmp_path / "demo" / "stack.yaml") as stack:  # destroyed: the state records nothing
        assert stack.preview().summary()["create"] == 3


def test_from_text_errors_name_the_written_file_with_line_and_column(tmp_path: Path) -> None:
    try:
        with Stack.from_text("apiVersion: mlplat/v1\nmetadata: {name: x}\nstorage:\n  - {name: s, size_gb: -1}\n",
                             directory=tmp_path):
            raise AssertionError("a negative size must be refused")
    except SpecError as err:
        assert f"{tmp_path / 'stack.yaml'}:4:" in str(err)


def test_stream_raises_the_operations_error_after_its_events(tmp_path: Path) -> None:
    stack = Stack.from_text("apiVersion: mlplat/v1\nmetadata: {name: y}\ntarget: sim\n", directory=tmp_path)
    with stack:
        def fail() -> None:
            stack.emit(__import__("provisioner.events", fromlist=["Event"]).Event("warning", message="about to fail"))
            raise RuntimeError("boom")

        seen = []
        try:
            for event in stack.stream(fail):
                seen.append(event.message)
        except RuntimeError as err:
            assert str(err) == "boom"
        else:
            raise AssertionError("the operation's error must be raised")
        assert seen == ["about to fail"]
