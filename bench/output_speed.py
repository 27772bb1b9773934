"""How much of a CLI apply is output: rendering the plan, the progress lines and the summary, piped.

1. In-process: the plan of N creates rendered by `render_plan` into a pipe (a StringIO), with rich's Console (what
   the CLI used before) and with `provisioner.console.FastConsole` (what it uses now); 2 N progress events (a start
   and a done per step) through the old per-line rich printer and through `provisioner.live.PlainLines`.
2. Through the CLI: `mlplat apply --yes` of a stack file of N raw `sim.data` resources (`--shape flat` or
   `chain`) or N storage components (`storage`: one `sim.filesystem` each) on the `sim` target, store ':memory:',
   stdout and stderr to files: the wall time of the process, and the CPU time spent in output (render_plan, the
   event listener, every other print; summed over threads, outermost calls only) measured inside the same run.

    python bench/output_speed.py [--sizes 1000,10000] [--runs 3] [--cli-sizes 1000] [--shape flat] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: run inside the CLI's process: times the output paths (outermost calls only) around `provisioner.cli.main`
DRIVER = """
import sys, threading, time
started = time.perf_counter()
spent = [0.0]
local = threading.local()
lock = threading.Lock()

def timed(fn):
    def wrapper(*args, **kwargs):
        if getattr(local, "inside", False):
            return fn(*args, **kwargs)
        local.inside = True
        t = time.thread_time()  # CPU time of this thread: waits for the lock or the GIL are not output work
        try:
            return fn(*args, **kwargs)
        finally:
            took = time.thread_time() - t
            local.inside = False
            with lock:
                spent[0] += took
    return wrapper

import importlib
import provisioner.cli
for module, owner, name in [("provisioner.render", None, "render_plan"), ("rich.console", "Console", "print"),
                            ("provisioner.console", "FastConsole", "print"), ("provisioner.live", "Progress",
                            "__call__"), ("provisioner.live", "Progress", "plan"),
                            ("provisioner.live", "JsonStream", "write")]:
    try:  # the baseline (the commit before) has no provisioner.console / provisioner.live
        target = importlib.import_module(module)
    except ImportError:
        continue
    target = getattr(target, owner) if owner else target
    setattr(target, name, timed(getattr(target, name)))
if not hasattr(provisioner.cli, "_progress"):  # the baseline's event printer: a closure per process
    make = provisioner.cli._progress_printer
    provisioner.cli._progress_printer = lambda: timed(make())
sys.argv = ["mlplat", *sys.argv[1:]]
code = 0
try:
    provisioner.cli.main()
except SystemExit as exit_:
    code = exit_.code
finally:
    sys.__stderr__.write(f"OUTPUT_S={spent[0]:.6f} MAIN_S={time.perf_counter() - started:.6f}\\n")
sys.exit(code)
"""


def synthetic_plan(n: int):
    from provisioner.plan import Change, Plan

    changes = [Change(f"s{i}.filesystem.main", "create", "sim.filesystem", "sim",
                      after={"kind": "nas", "size_gb": 10, "name": f"s{i}"}) for i in range(n)]
    return Plan("big", "lineage", 0, changes)


def render_ms(n: int, runs: int) -> tuple[float, float]:
    """render_plan of N creates into a pipe: (rich Console ms, FastConsole ms), medians."""
    from rich.console import Console

    from provisioner.console import FastConsole
    from provisioner.render import render_plan

    plan = synthetic_plan(n)
    old, new = [], []
    for _ in range(runs):
        t = time.perf_counter()
        render_plan(Console(file=io.StringIO(), highlight=False, soft_wrap=True), plan)
        old.append(time.perf_counter() - t)
        t = time.perf_counter()
        render_plan(FastConsole(io.StringIO(), color=False), plan)
        new.append(time.perf_counter() - t)
    return statistics.median(old) * 1000, statistics.median(new) * 1000


def events_ms(n: int, runs: int) -> tuple[float, float]:
    """2 N events (start, done) printed into a pipe: (a rich print per line, as before; PlainLines) in ms."""
    from rich.console import Console

    from provisioner.events import Event
    from provisioner.live import PlainLines

    events = [e for i in range(n) for e in (Event("step-start", f"s{i}.filesystem.main", "create"),
                                            Event("step-done", f"s{i}.filesystem.main", "create", elapsed=0.01))]
    old, new = [], []
    for _ in range(runs):
        console = Console(file=io.StringIO(), highlight=False, soft_wrap=True)
        t = time.perf_counter()
        for e in events:  # the CLI's printer before: one rich print per event
            if e.kind == "step-start":
                console.print(f"  {e.address}: creating…")
            else:
                console.print(f"  {e.address}: [green]{e.action} done[/] ({e.elapsed:.1f}s)")
        old.append(time.perf_counter() - t)
        lines = PlainLines(io.StringIO())
        lines.total, lines.begun = n, True
        t = time.perf_counter()
        for e in events:
            lines(e)
        new.append(time.perf_counter() - t)
    return statistics.median(old) * 1000, statistics.median(new) * 1000


def stack_file(directory: Path, n: int, shape: str = "flat") -> Path:
    """N raw `sim.data` resources (`flat`, or a `chain` by depends_on), or N `storage` components."""
    head = "apiVersion: mlplat/v1\nmetadata:\n  name: big\ntarget: sim\ntargets:\n  sim:\n    store: ':memory:'\n"
    if shape == "storage":
        body = "storage:\n" + "".join(f"  - {{name: s{i}, size_gb: 10}}\n" for i in range(n))
    else:
        body = "resources:\n" + "".join(
            f"  - {{name: r{i}, kind: sim.data, inputs: {{input: v{i}}}"
            + (f", depends_on: [r{i - 1}]" if shape == "chain" and i else "") + "}\n" for i in range(n))
    path = directory / "big.yaml"
    path.write_text(head + body)
    return path


def cli_apply(n: int, runs: int, shape: str, pythonpath: str | None = None, *extra: str) -> tuple[float, float, float]:
    """`mlplat apply --yes [extra]` of N components, piped: (process wall s, main() s, output s), medians."""
    walls, mains, outputs = [], [], []
    env = {**os.environ, "NO_COLOR": "1"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            stack_file(work, n, shape)
            with open(work / "out", "w") as out, open(work / "err", "w") as err:
                t = time.perf_counter()
                subprocess.run([sys.executable, "-c", DRIVER, "apply", "-f", "big.yaml", "--yes", *extra], cwd=work,
                               stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, check=True)
                walls.append(time.perf_counter() - t)
            last = (work / "err").read_text().strip().splitlines()[-1]
            fields = dict(item.split("=") for item in last.split())
            outputs.append(float(fields["OUTPUT_S"]))
            mains.append(float(fields["MAIN_S"]))
    return statistics.median(walls), statistics.median(mains), statistics.median(outputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--cli-sizes", default="1000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--shape", default="flat", choices=["flat", "chain", "storage"],
                        help="the CLI's stack: raw sim.data resources (flat or chained), or storage components")
    parser.add_argument("--baseline", help="also run the CLI from this checkout (PYTHONPATH), e.g. an export of "
                                           "the commit before")
    args = parser.parse_args()
    for n in map(int, args.sizes.split(",")):
        old, new = render_ms(n, args.runs)
        print(f"render_plan, {n} creates, piped: rich {old:.0f} ms, FastConsole {new:.0f} ms ({old / new:.1f}x)")
        old, new = events_ms(n, args.runs)
        print(f"progress lines, {2 * n} events, piped: rich {old:.0f} ms, PlainLines {new:.0f} ms "
              f"({old / new:.1f}x)")
    for n in map(int, args.cli_sizes.split(",")):
        for label, path, extra in (("baseline", args.baseline, ()), ("this tree", None, ()),
                                   ("baseline, --json", args.baseline, ("--json",)),
                                   ("this tree, --json", None, ("--json",))):
            if label.startswith("baseline") and not path:
                continue
            try:
                wall, in_main, output = cli_apply(n, args.runs, args.shape, path, *extra)
            except subprocess.CalledProcessError:
                print(f"mlplat apply, {n} {args.shape} ({label}): failed (that checkout cannot apply this stack)")
                continue
            print(f"mlplat apply, {n} {args.shape}, piped ({label}): wall {wall:.2f} s, main() {in_main:.2f} s, "
                  f"output {output * 1000:.0f} ms = {100 * output / wall:.1f} % of the wall time")


if __name__ == "__main__":
    main()
