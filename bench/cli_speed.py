"""Speed through the CLI, as users run it (issue 17's goals), each operation its own process:

1. a stack file of N raw `sim.data` resources (`resources:`; flat, and chained by `depends_on` with each input a
   `${resource:…}` reference to the previous one) applied with `mlplat apply --yes`, piped, against Terraform
   applying N `terraform_data` of the same shape (goal: ≥ 30x at N = 1,000);
2. `mlplat preview` of a 10,000-resource stack file, empty state (goal: ≤ 2 s);
3. the share of the CLI's wall time spent rendering output when piped (the plan, the per-step lines, the summary)
   in the flat apply, as `bench/output_speed.py` measures it (goal: ≤ 10 %).

Medians of --runs runs; ratio = Terraform / mlplat.

    python bench/cli_speed.py [--n 1000] [--preview-n 10000] [--runs 3] [--shapes flat,chain]
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
sys.path.insert(0, str(HERE))

import output_speed  # noqa: E402
import vs_terraform  # noqa: E402

MLPLAT = str(Path(sys.executable).with_name("mlplat"))


def stack_text(n: int, shape: str) -> str:
    lines = ["apiVersion: mlplat/v1", "metadata:", f"  name: bench-{shape}", "target: sim", "targets:", "  sim:",
             "    store: ':memory:'", "resources:"]
    for i in range(n):
        lines += [f"  - name: r{i}", "    kind: sim.data"]
        if shape == "chain" and i:
            lines += [f"    inputs: {{input: '${{resource:r{i - 1}.id}}'}}", f"    depends_on: [r{i - 1}]"]
        else:
            lines.append(f"    inputs: {{input: r{i}}}")
    return "\n".join(lines) + "\n"


def run(args: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    # bytecode written (a pip install compiles it; a shell with PYTHONDONTWRITEBYTECODE would compile every run)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    proc = subprocess.run([MLPLAT, *args], cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env={**env, "COLUMNS": "120"})
    elapsed = time.perf_counter() - started
    if proc.returncode not in (0, 2):
        raise RuntimeError(f"mlplat {' '.join(args)} exited {proc.returncode}: {proc.stderr[-1500:]}")
    return elapsed


def terraform_apply(n: int, shape: str, terraform: str) -> float:
    """Terraform's `apply -auto-approve` of N `terraform_data` (init first, untimed; no destroy: nothing exists
    outside the state)."""
    with tempfile.TemporaryDirectory(prefix="tf-cli-bench-") as tmp:
        work = Path(tmp)
        (work / "main.tf").write_text(vs_terraform.terraform_config(n, shape))
        (work / "empty.tfrc").write_text("")
        env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1",
               "TF_CLI_CONFIG_FILE": str(work / "empty.tfrc"), "TF_INPUT": "0"}
        vs_terraform.timed([terraform, "init", "-input=false", "-backend=false"], work, env)
        return vs_terraform.timed([terraform, "apply", "-auto-approve", "-input=false", "-parallelism=10"], work,
                                  env)


def mlplat_apply(n: int, shape: str) -> float:
    with tempfile.TemporaryDirectory(prefix="mlplat-cli-bench-") as tmp:
        (Path(tmp) / "stack.yaml").write_text(stack_text(n, shape))
        return run(["apply", "-f", "stack.yaml", "--yes"], Path(tmp))


def mlplat_preview(n: int) -> float:
    with tempfile.TemporaryDirectory(prefix="mlplat-cli-bench-") as tmp:
        (Path(tmp) / "stack.yaml").write_text(stack_text(n, "flat"))
        return run(["preview", "-f", "stack.yaml"], Path(tmp))


def rendering_share(n: int, runs: int) -> dict[str, float]:
    """The output's share of a flat `mlplat apply` of N raw resources, piped (`output_speed.cli_apply`: CPU time
    in the output paths, summed over threads, over the process's wall time)."""
    wall, _, output = output_speed.cli_apply(n, runs, "flat")
    return {"total_s": wall, "rendering_s": output, "share": output / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--preview-n", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--shapes", default="flat,chain")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    terraform = shutil.which("terraform")
    results: dict[str, object] = {"n": args.n, "runs": args.runs}
    print(f"## CLI speed (mlplat {args.n} raw sim.data through `mlplat apply --yes`, piped)\n")
    if terraform is None:
        print("Terraform is not on PATH: the apply comparison could not run.")
    mlplat_apply(10, "chain")  # warm-up: writes the bytecode of every module an apply imports
    for shape in args.shapes.split(","):
        ml, tf = [], []
        for _ in range(args.runs):  # A/B pairs, alternating
            ml.append(mlplat_apply(args.n, shape))
            if terraform is not None:
                tf.append(terraform_apply(args.n, shape, terraform))
        ml_s = statistics.median(ml)
        row: dict[str, float | None] = {"mlplat_apply_s": ml_s, "terraform_apply_s": None, "ratio": None}
        if tf:
            row["terraform_apply_s"] = statistics.median(tf)
            row["ratio"] = row["terraform_apply_s"] / ml_s
            print(f"- {shape} {args.n}: Terraform {row['terraform_apply_s']:.2f} s / mlplat {ml_s:.2f} s = "
                  f"**{row['ratio']:.0f}x** (goal ≥ 30x)")
        else:
            print(f"- {shape} {args.n}: mlplat {ml_s:.2f} s")
        results[shape] = row
    previews = [mlplat_preview(args.preview_n) for _ in range(args.runs)]
    results["preview_s"] = statistics.median(previews)
    print(f"- preview of {args.preview_n} resources (empty state): {results['preview_s']:.2f} s (goal ≤ 2 s)")
    share = rendering_share(args.n, args.runs)
    results["rendering"] = share
    print(f"- output, flat {args.n} apply piped: {share['rendering_s']:.3f} s of "
          f"{share['total_s']:.3f} s = {share['share']:.1%} (goal ≤ 10 %)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
