"""One engine operation on a generated graph, as its own process (so mlplat pays start-up like `terraform` does).

    python bench/graph_ops.py plan|apply|noop-plan|destroy --n N --shape flat|fan|chain --dir DIR

The graph: N `sim.data` resources (state-only, like Terraform's `terraform_data`); `fan`: each depends on the one
10 back; `chain`: each on the previous. State: SQLite in DIR, every step journaled. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import uuid
from pathlib import Path

from provisioner.apply import Applier, ApplyOptions
from provisioner.graph import Ref, Resource
from provisioner.plan import make_destroy_plan, make_plan
from provisioner.state import LockInfo, open_state


def graph(n: int, shape: str, kind: str = "sim.data") -> dict[str, Resource]:
    resources = {}
    for i in range(n):
        inputs: dict[str, object] = {"input": f"r{i}"}
        dep = {"fan": i - 10, "chain": i - 1}.get(shape, -1)
        if dep >= 0:
            inputs["input"] = Ref(f"g.data.r{dep}", "id")
        resources[f"g.data.r{i}"] = Resource(f"g.data.r{i}", kind, "sim", inputs)
    return resources


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("op", choices=["plan", "apply", "noop-plan", "destroy"])
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--shape", default="flat")
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    from mlplat_plugins.sim.providers import DataProvider

    provider = DataProvider()
    state = open_state("graph", args.dir, url=f"sqlite:///{args.dir}/state.db")
    meta, records = state.meta(), state.resources()
    providers = lambda target, kind: provider  # noqa: E731
    started = time.perf_counter()
    if args.op == "destroy":
        plan = make_destroy_plan(records, stack="graph", lineage=meta.lineage, serial=meta.serial)
    else:
        refreshed = {a: provider.read(r.id, r.inputs) for a, r in records.items()} if args.op == "noop-plan" else None
        plan = make_plan(graph(args.n, args.shape), records, providers, stack="graph", lineage=meta.lineage,
                         serial=meta.serial, refreshed=refreshed)
    if args.op in ("apply", "destroy"):  # as `mlplat apply` runs it: under the lock, every write fenced on it
        lock = LockInfo(uuid.uuid4().hex[:8], args.op)
        state.acquire_lock(lock)
        state.fence = lock.id
        state.bump_serial()
        Applier(state, providers, lambda event: None, ApplyOptions(parallelism=10)).run(plan)
        state.release_lock(lock.id)
    changes = sum(1 for c in plan.changes if c.action != "noop")
    state.close()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"op": args.op, "changes": changes, "engine_s": time.perf_counter() - started,
                      "peak_rss_mib": peak_mib}))


if __name__ == "__main__":
    main()
