"""Wall time of real CLI invocations (subprocesses): `mlplat --help`, and validate / preview / apply / no-op
preview / destroy of the quickstart on the local target, in a scratch copy; then validate and preview of
stacks/aws.yaml (empty state: no AWS call), with a check that boto3 was never imported. Median of --runs runs.

    python bench/cli_timings.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
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


CLOUD_SDKS = ("boto3", "botocore", "google.cloud", "azure", "kubernetes", "pulumi")
IMPORT_PROBE = """
import sys
from provisioner.cli import main
sys.argv = ["mlplat", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
loaded = sorted({m.split(".")[0] for m in sys.modules if m.startswith(__PREFIXES__)})
print("CLOUD_SDKS_IMPORTED=" + ",".join(loaded), file=sys.stderr)
""".replace("__PREFIXES__", repr(CLOUD_SDKS))


def cloud_sdks_imported(args: list[str], cwd: Path) -> str:
    proc = subprocess.run([sys.executable, "-c", IMPORT_PROBE, *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "MLPLAT_AWS_BUCKET": "sagemaker-bench"}, stdin=subprocess.DEVNULL)
    line = next((x for x in proc.stderr.splitlines() if x.startswith("CLOUD_SDKS_IMPORTED=")), "=?")
    return line.partition("=")[2] or "none"


def measure(runs: int) -> tuple[dict[str, float], str]:
    """Medians in seconds per step, and which cloud SDKs an aws preview imported."""
    results: dict[str, list[float]] = {}
    os.environ.setdefault("MLPLAT_AWS_BUCKET", "sagemaker-bench")
    sdks = "?"
    for _ in range(runs):
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
            shutil.copy(REPO / "stacks" / "aws.yaml", work / "aws.yaml")
            aws = ["-f", "aws.yaml"]
            for name, argv in (("validate aws.yaml", ["validate", *aws]), ("preview aws.yaml", ["preview", *aws])):
                results.setdefault(name, []).append(timed(argv, work))
            sdks = cloud_sdks_imported(["preview", *aws], work)
    return {name: statistics.median(values) for name, values in results.items()}, sdks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    medians, sdks = measure(args.runs)
    print(f"CLI wall time, median of {args.runs} runs")
    for name, value in medians.items():
        print(f"  {name:<26} {value * 1000:7.0f} ms")
    print(f"  cloud SDKs imported by `mlplat preview -f aws.yaml`: {sdks}")


if __name__ == "__main__":
    main()
