"""Wall time of real CLI invocations (subprocesses): `mlplat --help`, and validate / preview / apply / no-op
preview / destroy of the quickstart on the local target, in a scratch copy; then validate of stacks/aws.yaml, with
a check that it imported no cloud SDK, and its preview (empty state) against a moto server on 127.0.0.1, where the
one AWS call is discovery's STS GetCallerIdentity (skipped, and said so, when moto is not installed). Median of
--runs runs.

    python bench/cli_timings.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MLPLAT = str(Path(sys.executable).with_name("mlplat"))  # the console script users run


def timed(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run([MLPLAT, *args], cwd=cwd, check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start


#: real SDK modules (not `google` / `google.cloud`: google-cloud-aiplatform's *-nspkg.pth makes those two empty
#: namespace modules at every interpreter start-up)
CLOUD_SDKS = ("boto3", "botocore", "google.cloud.aiplatform", "google.api_core", "google.auth", "azure.core",
              "azure.ai", "azure.identity", "kubernetes", "pulumi")
IMPORT_PROBE = """
import sys
from provisioner.cli import main
sys.argv = ["mlplat", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
loaded = sorted({p for m in sys.modules for p in __PREFIXES__ if m == p or m.startswith(p + ".") or
                 (p.endswith("aiplatform") and m.startswith(p))})
print("CLOUD_SDKS_IMPORTED=" + ",".join(loaded), file=sys.stderr)
""".replace("__PREFIXES__", repr(CLOUD_SDKS))


def cloud_sdks_imported(args: list[str], cwd: Path) -> str:
    proc = subprocess.run([sys.executable, "-c", IMPORT_PROBE, *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "MLPLAT_AWS_BUCKET": "sagemaker-bench"}, stdin=subprocess.DEVNULL)
    line = next((x for x in proc.stderr.splitlines() if x.startswith("CLOUD_SDKS_IMPORTED=")), "=?")
    return line.partition("=")[2] or "none"


@contextmanager
def moto_server() -> Iterator[str | None]:
    """A moto server on a free loopback port (its URL), or None when moto's server is not installed."""
    binary = Path(sys.executable).with_name("moto_server")
    if not binary.exists():
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def measure(runs: int) -> tuple[dict[str, float], str]:
    """Medians in seconds per step, and which cloud SDKs an aws validate imported."""
    with moto_server() as endpoint:
        return _measure(runs, endpoint)


def _measure(runs: int, endpoint: str | None) -> tuple[dict[str, float], str]:
    results: dict[str, list[float]] = {}
    os.environ.setdefault("MLPLAT_AWS_BUCKET", "sagemaker-bench")
    if endpoint is not None:  # discovery asks STS which account it plans for: the moto server answers
        os.environ.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"})
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
            aws_steps = [("validate aws.yaml", ["validate", *aws])]
            if endpoint is not None:
                aws_steps.append(("preview aws.yaml (STS on moto)", ["preview", *aws]))
            for name, argv in aws_steps:
                results.setdefault(name, []).append(timed(argv, work))
            sdks = cloud_sdks_imported(["validate", *aws], work)
    return {name: statistics.median(values) for name, values in results.items()}, sdks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    medians, sdks = measure(args.runs)
    print(f"CLI wall time, median of {args.runs} runs")
    for name, value in medians.items():
        print(f"  {name:<26} {value * 1000:7.0f} ms")
    print(f"  cloud SDKs imported by `mlplat validate -f aws.yaml`: {sdks}")
    if "preview aws.yaml (STS on moto)" not in medians:
        print("  preview aws.yaml: not measured (moto's server is not installed: pip install 'mlplat[test]')")


if __name__ == "__main__":
    main()
