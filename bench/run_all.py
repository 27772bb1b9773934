"""Every benchmark in one command; prints one report (and writes it as JSON to bench/results/latest.json).

    python bench/run_all.py [--runs 3] [--sizes 1000,2000,4000] [--chain 1000] [--quick]

1. mlplat vs Terraform on the same graphs (flat, fan, chain): plan from empty, apply, no-op plan, destroy, state
2. latency-bound apply: wall time against the critical path, default parallelism, unbounded, per-target limit
3. start-up: --help, validate / preview of the quickstart, preview of stacks/aws.yaml (SDKs imported lazily?)
4. 10,000-resource plan: time and peak memory, from empty and no-op
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import big_plan  # noqa: E402
import cli_timings  # noqa: E402
import latency_bound  # noqa: E402
import vs_terraform  # noqa: E402


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    import os

    return f"{os.cpu_count()} x {cpu}, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="1000,2000,4000")
    parser.add_argument("--chain", default="1000")
    parser.add_argument("--terraform-runs", type=int, help="Terraform runs per case (default: --runs); Terraform "
                                                             "needs minutes per run at 4000")
    parser.add_argument("--quick", action="store_true", help="sizes 200,400 and 1 run: a smoke test of the bench")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.chain, args.runs = "200,400", "200", 1
    report: dict[str, object] = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "runs": args.runs}
    print(f"# mlplat benchmarks — {report['machine']}, {report['date']}\n")

    print("## 1. mlplat vs Terraform, same graphs (each operation a process; ratio = Terraform / mlplat)\n")
    terraform = shutil.which("terraform")
    if terraform is None:
        print("Terraform is not on PATH: this comparison could not run.\n")
        report["vs_terraform"] = None
    else:
        version = subprocess.run([terraform, "version"], capture_output=True, text=True).stdout.splitlines()[0]
        cases = [(shape, int(n)) for shape in ("flat", "fan") for n in args.sizes.split(",")]
        cases += [("chain", int(n)) for n in args.chain.split(",") if n]
        cases.sort(key=lambda case: case[1])  # small graphs first: a run cut short still reports them
        results = []
        partial = HERE / "results" / "vs_terraform.partial.json"
        partial.parent.mkdir(exist_ok=True)
        for shape, n in cases:
            ml_runs, tf_runs = [], []
            tf_wanted = args.terraform_runs or args.runs
            for i in range(max(args.runs, tf_wanted)):  # A/B pairs, alternating
                if i < args.runs:
                    ml_runs.append(vs_terraform.mlplat_run(n, shape))
                if i < tf_wanted:
                    tf_runs.append(vs_terraform.terraform_run(n, shape, terraform))
            results.append({"shape": shape, "n": n, "runs": args.runs, "terraform_runs": tf_wanted,
                            "terraform": vs_terraform.median_of(tf_runs),
                            "mlplat": vs_terraform.median_of(ml_runs), "all_terraform": tf_runs,
                            "all_mlplat": ml_runs})
            vs_terraform.print_case(results[-1], flush=True)
            partial.write_text(json.dumps(results, indent=1))
        tf_runs_text = f"Terraform {args.terraform_runs or args.runs} run(s)"
        print(f"{version}; mlplat: medians of {args.runs} runs, {tf_runs_text}; parallelism 10 for both\n")
        vs_terraform.print_table(results)
        report["vs_terraform"] = {"terraform": version, "results": results}

    print("\n## 2. Latency-bound apply (500 creates of 50-200 ms, 20 layers)\n")
    print("| run | wall | critical path | wall / critical path | work / workers bound | wall / bound |")
    print("|---|---|---|---|---|---|")
    latency = latency_bound.rows()
    for name, r in latency:
        print(f"| {name} | {r['wall']:.2f} s | {r['critical']:.2f} s | {r['wall'] / r['critical']:.2f} | "
              f"{r['bound']:.2f} s | {r['wall'] / r['bound']:.2f} |")
    report["latency_bound"] = dict(latency)

    print("\n## 3. Start-up (the `mlplat` console script, median of 5)\n")
    medians, sdks = cli_timings.measure(5)
    print("| command | wall |\n|---|---|")
    for name, value in medians.items():
        print(f"| {name} | {value * 1000:.0f} ms |")
    print(f"\nCloud SDKs imported by `mlplat validate -f stacks/aws.yaml`: {sdks}. (A preview imports boto3: "
          "discovery asks STS which account it plans for.)")
    if "preview aws.yaml (STS on moto)" not in medians:
        print("preview aws.yaml: not measured (moto's server is not installed: pip install 'mlplat[test]')")
    report["startup_ms"] = {k: v * 1000 for k, v in medians.items()}
    report["sdks_imported_by_aws_validate"] = sdks

    print("\n## 4. 10,000 resources (flat), each operation a process\n")
    big = big_plan.measure(10_000)
    print("| operation | wall | engine | peak RSS |\n|---|---|---|---|")
    for op, r in big.items():
        print(f"| {op} | {r['wall_s']:.2f} s | {r['engine_s']:.2f} s | {r['peak_rss_mib']:.0f} MiB |")
    report["plan_10k"] = big

    out = HERE / "results" / "latest.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"\n(JSON: {out.relative_to(HERE.parent)})")


if __name__ == "__main__":
    main()
