"""Latency-bound apply: 500 resources whose creates take 50-200 ms (sim target: 50 ms + up to 150 ms jitter) in a
layered DAG (20 layers of 25; each resource depends on 2 of the layer before). Reports wall time against the
critical path (the longest dependency chain, weighted by each create call's *measured* duration) and against the
throughput bound (total work / workers), at the default parallelism, unbounded, and under a per-target limit.

    python bench/latency_bound.py
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import Any

from mlplat_plugins.sim.target import SimSettings, SimTarget
from provisioner.apply import Applier, ApplyOptions
from provisioner.graph import Ref, Resource
from provisioner.operations import StepContext
from provisioner.plan import make_plan
from provisioner.provider import Created
from provisioner.state.sqlite import SqliteState
from provisioner.target import TargetContext

LAYERS, WIDTH = 20, 25


def dag(seed: int = 7) -> dict[str, Resource]:
    rng = random.Random(seed)
    resources: dict[str, Resource] = {}
    for layer in range(LAYERS):
        for j in range(WIDTH):
            inputs: dict[str, object] = {"name": f"l{layer}r{j}"}
            if layer:
                for k, dep in enumerate(rng.sample(range(WIDTH), 2)):
                    inputs[f"after{k}"] = Ref(f"d.thing.l{layer - 1}r{dep}", "id")
            address = f"d.thing.l{layer}r{j}"
            resources[address] = Resource(address, "sim.thing", "sim", inputs)
    return resources


def critical_path(resources: dict[str, Resource], took: dict[str, float]) -> float:
    finish: dict[str, float] = {}
    for address in resources:  # layers are in dependency order
        deps = resources[address].edges
        finish[address] = took[address] + max((finish[d] for d in deps), default=0.0)
    return max(finish.values())


def run(parallelism: int, per_target: int | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        settings = SimSettings(store=":memory:", latency_ms=50, jitter_ms=150)
        provider = SimTarget(settings, TargetContext("bench", "sim", work, work)).provider("sim.thing")
        provider.store.objects.clear()
        state = SqliteState(work / "state.db", "bench")
        resources = dag()
        meta = state.meta()
        plan = make_plan(resources, {}, lambda t, k: provider, stack="bench", lineage=meta.lineage, serial=meta.serial)
        took: dict[str, float] = {}
        create = provider.create

        def timed_create(address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
            """The cloud call's own duration (a step may also wait for a slot of the per-target limit)."""
            began = time.perf_counter()
            try:
                return create(address, inputs, ctx)
            finally:
                took[address] = time.perf_counter() - began

        provider.create = timed_create  # type: ignore[method-assign]
        options = ApplyOptions(parallelism=parallelism, per_target={"sim": per_target} if per_target else {})
        started = time.perf_counter()
        Applier(state, lambda t, k: provider, lambda event: None, options).run(plan)
        wall = time.perf_counter() - started
        state.close()
    work_s = sum(took.values())
    bound = max(critical_path(resources, took), work_s / min(parallelism, per_target or parallelism))
    return {"wall": wall, "critical": critical_path(resources, took), "work": work_s, "bound": bound}


def rows() -> list[tuple[str, dict[str, float]]]:
    return [("parallelism 10 (default)", run(10, None)), ("parallelism 100", run(100, None)),
            ("parallelism 10, per-target limit 4", run(10, 4))]


def main() -> None:
    print(f"Latency-bound apply: {LAYERS * WIDTH} creates of 50-200 ms, {LAYERS} layers")
    for name, r in rows():
        print(f"  {name:<36} wall {r['wall']:.2f} s; critical path {r['critical']:.2f} s "
              f"(wall/critical {r['wall'] / r['critical']:.2f}); work {r['work']:.1f} s; lower bound "
              f"{r['bound']:.2f} s (wall/bound {r['wall'] / r['bound']:.2f})")


if __name__ == "__main__":
    main()
