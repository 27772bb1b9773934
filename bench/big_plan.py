"""Plans of 10,000 resources: time and peak memory (RSS of the process) for a plan from empty, an apply, and a
no-op plan with refresh, each its own process through bench/graph_ops.py (flat graph of `sim.data`).

    python bench/big_plan.py [--n 10000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def measure(n: int) -> dict[str, dict[str, float]]:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for op in ("plan", "apply", "noop-plan"):
            started = time.perf_counter()
            proc = subprocess.run([sys.executable, str(HERE / "graph_ops.py"), op, "--n", str(n), "--dir", tmp],
                                  capture_output=True, text=True, check=True)
            result = json.loads(proc.stdout)
            out[op] = {"wall_s": time.perf_counter() - started, "engine_s": result["engine_s"],
                       "peak_rss_mib": result["peak_rss_mib"], "changes": result["changes"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    n = parser.parse_args().n
    print(f"{n} resources (flat), each operation its own process")
    for op, r in measure(n).items():
        print(f"  {op:<10} wall {r['wall_s']:.2f} s (engine {r['engine_s']:.2f} s), peak RSS "
              f"{r['peak_rss_mib']:.0f} MiB, {r['changes']} changes")


if __name__ == "__main__":
    main()
