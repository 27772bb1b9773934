"""mlplat vs Terraform on the same graphs: plan from empty, apply, no-op plan, destroy, state size.

Both tools run as processes, as users run them: Terraform 1.x with N `terraform_data` resources (offline:
CHECKPOINT_DISABLE, TF_IN_AUTOMATION, an empty CLI config, -input=false; parallelism 10), mlplat's engine with N
`sim.data` resources (state-only, zero latency; parallelism 10; SQLite state, every step journaled) through
`bench/graph_ops.py`. Shapes: flat (no edges), fan (each depends on the one 10 back), chain (each on the previous).
Medians of --runs runs; ratio = Terraform / mlplat.

    python bench/vs_terraform.py [--sizes 1000,2000,4000] [--shapes flat,fan] [--chain 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OPS = ("plan", "apply", "noop-plan", "destroy")


def terraform_config(n: int, shape: str) -> str:
    blocks = []
    for i in range(n):
        dep = {"fan": i - 10, "chain": i - 1}.get(shape, -1)
        value = f"terraform_data.r{dep}.id" if dep >= 0 else f'"r{i}"'
        blocks.append(f'resource "terraform_data" "r{i}" {{\n  input = {value}\n}}\n')
    return "".join(blocks)


def timed(cmd: list[str], cwd: Path, env: dict[str, str], ok: tuple[int, ...] = (0,)) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    if proc.returncode not in ok:
        raise RuntimeError(f"{' '.join(cmd[:3])} exited {proc.returncode}: {proc.stderr[-800:]}")
    return elapsed


def terraform_run(n: int, shape: str, terraform: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="tf-bench-") as tmp:
        work = Path(tmp)
        (work / "main.tf").write_text(terraform_config(n, shape))
        (work / "empty.tfrc").write_text("")
        env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1",
               "TF_CLI_CONFIG_FILE": str(work / "empty.tfrc"), "TF_INPUT": "0"}
        timed([terraform, "init", "-input=false", "-backend=false"], work, env)
        out = {"plan": timed([terraform, "plan", "-input=false", "-parallelism=10"], work, env),
               "apply": timed([terraform, "apply", "-auto-approve", "-input=false", "-parallelism=10"], work, env),
               "state_bytes": float((work / "terraform.tfstate").stat().st_size),
               "noop-plan": timed([terraform, "plan", "-input=false", "-parallelism=10", "-detailed-exitcode"],
                                  work, env),
               "destroy": timed([terraform, "destroy", "-auto-approve", "-input=false", "-parallelism=10"], work,
                                env)}
        return out


def mlplat_run(n: int, shape: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="mlplat-bench-") as tmp:
        work = Path(tmp)
        out: dict[str, float] = {}
        for op in OPS:
            cmd = [sys.executable, str(HERE / "graph_ops.py"), op, "--n", str(n), "--shape", shape, "--dir", tmp]
            out[op] = timed(cmd, work, dict(os.environ))
            if op == "apply":
                out["state_bytes"] = float(sum(p.stat().st_size for p in work.glob("state.db*")))
        return out


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,2000,4000")
    parser.add_argument("--shapes", default="flat,fan")
    parser.add_argument("--chain", default="1000", help="sizes for the chain shape")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    terraform = shutil.which("terraform")
    if terraform is None:
        print("Terraform is not on PATH: the comparison could not run.")
        return
    version = subprocess.run([terraform, "version"], capture_output=True, text=True).stdout.splitlines()[0]
    cases = [(shape, int(n)) for shape in args.shapes.split(",") for n in args.sizes.split(",")]
    cases += [("chain", int(n)) for n in args.chain.split(",") if n]
    results = []
    for shape, n in cases:
        tf_runs, ml_runs = [], []
        for _ in range(args.runs):  # A/B pairs in one run, alternating
            ml_runs.append(mlplat_run(n, shape))
            tf_runs.append(terraform_run(n, shape, terraform))
        tf, ml = median_of(tf_runs), median_of(ml_runs)
        results.append({"shape": shape, "n": n, "runs": args.runs, "terraform": tf, "mlplat": ml})
        print_case(results[-1], flush=True)
    print(f"\n{version}; medians of {args.runs} runs; ratio = Terraform / mlplat")
    print_table(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"terraform": version, "results": results}, indent=1))


def print_case(r: dict, flush: bool = False) -> None:
    tf, ml = r["terraform"], r["mlplat"]
    parts = [f"{op} {tf[op]:.2f}/{ml[op]:.2f}s" for op in OPS]
    print(f"{r['shape']:>5} {r['n']:>5} (Terraform/mlplat): " + ", ".join(parts), file=sys.stderr, flush=flush)


def print_table(results: list[dict]) -> None:
    head = "| shape | N | " + " | ".join(f"{op}: Terraform / mlplat (ratio)" for op in OPS)
    head += " | state: Terraform / mlplat |"
    print(head)
    print("|" + "---|" * (len(OPS) + 3))
    for r in results:
        tf, ml = r["terraform"], r["mlplat"]
        cells = [f"{tf[op]:.2f} s / {ml[op]:.2f} s ({tf[op] / ml[op]:.1f}x)" for op in OPS]
        state = f"{tf['state_bytes'] / 1024:.0f} / {ml['state_bytes'] / 1024:.0f} KiB"
        print(f"| {r['shape']} | {r['n']} | " + " | ".join(cells) + f" | {state} |")


if __name__ == "__main__":
    main()
