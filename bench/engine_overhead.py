"""Engine overhead on N independent resources with a zero-latency provider (the sim target, in memory).

Measures, in one run: plan from empty, apply (N creates, each journaled pending + done in SQLite), no-op plan
(with refresh), no-op apply, destroy, and the state file size. Prints medians of --runs runs.

    python bench/engine_overhead.py [--n 1000] [--runs 3] [--shape flat|fan|chain]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from graph_ops import graph

from mlplat_plugins.sim.target import SimSettings, SimTarget
from provisioner.apply import Applier, ApplyOptions
from provisioner.plan import make_destroy_plan, make_plan
from provisioner.state.sqlite import SqliteState
from provisioner.target import TargetContext


def one_run(n: int, shape: str, workdir: Path) -> dict[str, float]:
    target = SimTarget(SimSettings(store=":memory:"), TargetContext("bench", "sim", workdir, workdir))
    provider = target.provider("sim.thing")
    provider.store.objects.clear()
    state = SqliteState(workdir / "state.db", "bench")
    desired = graph(n, shape, kind="sim.thing")
    timings: dict[str, float] = {}

    def plan(refresh: bool) -> object:
        meta = state.meta()
        records = state.resources()
        refreshed = {a: provider.read(r.id, r.inputs) for a, r in records.items()} if refresh else None
        return make_plan(desired, records, lambda t, k: provider, stack="bench", lineage=meta.lineage,
                         serial=meta.serial, refreshed=refreshed)

    def timed(name: str, fn: object) -> object:
        start = time.perf_counter()
        result = fn()  # type: ignore[operator]
        timings[name] = time.perf_counter() - start
        return result

    first = timed("plan_empty", lambda: plan(False))
    applier = Applier(state, lambda t, k: provider, lambda e: None, ApplyOptions(parallelism=10))
    timed("apply_create", lambda: (state.bump_serial(), applier.run(first)))
    noop = timed("plan_noop_refresh", lambda: plan(True))
    assert not noop.has_changes  # type: ignore[attr-defined]
    timed("apply_noop", lambda: (state.bump_serial(), applier.run(noop)))
    timings["state_bytes"] = sum(p.stat().st_size for p in workdir.glob("state.db*"))
    meta = state.meta()
    destroy = make_destroy_plan(state.resources(), stack="bench", lineage=meta.lineage, serial=meta.serial)
    timed("destroy", lambda: (state.bump_serial(), applier.run(destroy)))
    assert not provider.store.objects
    state.close()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--shape", choices=["flat", "fan", "chain"], default="flat")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(one_run(args.n, args.shape, Path(tmp)))
    medians = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    if args.json:
        print(json.dumps({"n": args.n, "shape": args.shape, "runs": args.runs, **medians}))
        return
    print(f"engine overhead, {args.n} {args.shape} resources, zero-latency provider, median of {args.runs} runs")
    for key, value in medians.items():
        if key == "state_bytes":
            print(f"  {key:<20} {value / 1024:8.0f} KiB ({value / args.n:.0f} B/resource)")
        else:
            print(f"  {key:<20} {value * 1000:8.1f} ms ({value / args.n * 1e6:.0f} µs/resource)")


if __name__ == "__main__":
    main()
