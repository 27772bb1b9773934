"""Wall time of real CLI invocations (subprocesses): `mlplat --help`, and validate / preview / apply / no-op
preview / destroy of the quickstart on the local target, in a scratch copy. Median of --runs runs.

    python bench/cli_timings.py [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MLPLAT = str(Path(sys.executable).with_name("mlplat"))  # the console script users run


def timed(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run([MLPLAT, *args], cwd=cwd, check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            shutil.copy(REPO / "stacks" / "quickstart.yaml", work / "quickstart.yaml")
            shutil.copytree(REPO / "stacks" / "models", work / "models")
            f = ["-f", "quickstart.yaml"]
            steps = [("mlplat --help", ["--help"]), ("validate", ["validate", *f]),
                     ("preview (empty state)", ["preview", *f]), ("apply (9 resources)", ["apply", *f, "--yes"]),
                     ("preview (no-op, refresh)", ["preview", *f]), ("destroy", ["destroy", *f, "--yes"])]
            for name, argv in steps:
                results.setdefault(name, []).append(timed(argv, work))
    print(f"CLI wall time, quickstart on the local target, median of {args.runs} runs")
    for name, values in results.items():
        print(f"  {name:<26} {statistics.median(values) * 1000:7.0f} ms")


if __name__ == "__main__":
    main()
