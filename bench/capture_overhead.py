"""Cost of request capture in the local router: per-request latency with capture off, at 100 % and at 20 %, and
the latency of a GET /metrics scrape.

One model server (iris-v2) behind one router, real processes on loopback; client threads on keep-alive
connections. The router's config is swapped by SIGHUP between rounds (off, 100 %, 20 %, in a rotating order), so
every mode runs on the same processes and the rounds interleave to spread machine noise over all modes. Latency
is the client's round trip through router and model server. Then --scrapes GET /metrics (with a drift-scores.json
to read) on one connection.

    python bench/capture_overhead.py [--n 3000] [--rounds 6] [--threads 4] [--scrapes 200] [--json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from mlplat_plugins.local.runtime import processes
from provisioner.monitoring import CAPTURE_PREFIX, SCORES_FILE

REPO = Path(__file__).resolve().parents[1]
MODEL_SERVER = "mlplat_plugins.local.runtime.model_server"
ROUTER = "mlplat_plugins.local.runtime.router"
BODY = json.dumps({"instances": [[6.7, 3.1, 5.6, 2.4], [5.0, 3.4, 1.5, 0.2]]})
MODES = {"off": None, "capture 100%": 100, "capture 20%": 20}


def spawn(workdir: Path, module: str, name: str, args: list[str]) -> processes.ProcessInfo:
    runtime_file = workdir / f"{name}.runtime.json"
    return processes.spawn(module, [*args, "--runtime-file", str(runtime_file), "--quiet"],
                           runtime_file=runtime_file, log_file=workdir / f"{name}.log")


def get(info: processes.ProcessInfo, path: str) -> bytes:
    conn = http.client.HTTPConnection(info.host, info.port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.read()
    finally:
        conn.close()


def load(router: processes.ProcessInfo, n: int, threads: int) -> list[float]:
    """`n` predictions from `threads` clients; each one's round trip (s)."""
    latencies: list[float] = []
    lock = threading.Lock()
    share = [n // threads + (i < n % threads) for i in range(threads)]

    def client(count: int) -> None:
        conn = http.client.HTTPConnection(router.host, router.port, timeout=10)
        mine = []
        for _ in range(count):
            started = time.perf_counter()
            conn.request("POST", "/invocations", body=BODY, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            mine.append(time.perf_counter() - started)
            if resp.status != 200:
                raise RuntimeError(f"router answered {resp.status}")
        conn.close()
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=client, args=(count,)) for count in share]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if len(latencies) != n:
        raise RuntimeError(f"{n - len(latencies)} requests failed")
    return latencies


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (Linux /proc)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"n": len(ordered), "mean_ms": statistics.fmean(ordered) * 1000,
            "p50_ms": ordered[len(ordered) // 2] * 1000, "p95_ms": ordered[int(len(ordered) * 0.95)] * 1000}


def run(n: int, rounds: int, threads: int, scrapes: int, workdir: Path) -> dict[str, Any]:
    model = spawn(workdir, MODEL_SERVER, "model", ["--artifact", str(REPO / "stacks/models/iris-v2.json")])
    capture_dir = workdir / "capture"
    base = {"endpoint": "iris", "mode": "split",
            "routes": [{"path": "production", "url": model.url, "weight": 100, "internal": True}]}
    config_file = workdir / "router.json"
    processes.write_json_atomic(config_file, base)
    router = spawn(workdir, ROUTER, "router", ["--config", str(config_file)])
    version = 1
    try:
        load(router, 300, threads)  # warm-up: connections, code paths
        latencies: dict[str, list[float]] = {mode: [] for mode in MODES}
        cpu = dict.fromkeys(MODES, 0.0)  # the router's CPU seconds under each mode's load
        names = list(MODES)
        for r in range(rounds):
            for mode in names[r % len(names):] + names[:r % len(names)]:
                percent = MODES[mode]
                config = base if percent is None else {
                    **base, "capture": {"dir": str(capture_dir), "sample_percent": percent, "request": True,
                                        "response": True}}
                processes.write_json_atomic(config_file, config)
                processes.reload(router.pid)
                version += 1
                deadline = time.monotonic() + 10
                while json.loads(get(router, "/-/healthz"))["config_version"] != version:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the router did not reload")
                    time.sleep(0.01)
                before = cpu_seconds(router.pid)
                latencies[mode] += load(router, n // rounds, threads)
                time.sleep(0.3)  # the writer's share of this round
                cpu[mode] += cpu_seconds(router.pid) - before
        time.sleep(0.5)  # the writer's last rows
        rows = sum(len(f.read_text().splitlines()) for f in capture_dir.glob(f"{CAPTURE_PREFIX}*.jsonl"))
        expected = sum(len(latencies[m]) * MODES[m] // 100 for m in MODES if MODES[m])  # type: ignore[operator]
        processes.write_json_atomic(capture_dir / SCORES_FILE, {"ts": time.time(), "scores": [
            {"feature": f, "metric": "psi", "value": 0.1} for f in ("sepal_length", "sepal_width", "petal_length",
                                                                     "petal_width")]})
        conn = http.client.HTTPConnection(router.host, router.port, timeout=10)
        scrape_s, size = [], 0
        for _ in range(scrapes):
            started = time.perf_counter()
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            body = resp.read()
            scrape_s.append(time.perf_counter() - started)
            size = len(body)
        conn.close()
        if b"mlplat_drift_score" not in body:
            raise RuntimeError("the scrape shows no drift scores")
    finally:
        processes.stop(router.pid)
        processes.stop(model.pid)
    result: dict[str, Any] = {mode: {**summary(values), "router_cpu_us": cpu[mode] / len(values) * 1e6}
                              for mode, values in latencies.items()}
    result["rows_written"], result["rows_expected"] = rows, expected
    result["scrape"] = {**summary(scrape_s), "bytes": size}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="requests per mode, over all rounds")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.n, args.rounds, args.threads, args.scrapes, Path(tmp))
    if args.json:
        print(json.dumps(result))
        return
    off = result["off"]
    print(f"capture overhead: {args.n} requests per mode ({args.rounds} interleaved rounds, {args.threads} client "
          "threads, keep-alive, loopback), router + one model server")
    print(f"  {'mode':<14} {'mean':>8} {'p50':>8} {'p95':>8} {'router CPU':>12}   on/off (mean, p50, p95, CPU)")
    for mode in MODES:
        s = result[mode]
        ratios = "" if mode == "off" else "   " + ", ".join(
            f"{s[k] / off[k]:.2f}" for k in ("mean_ms", "p50_ms", "p95_ms", "router_cpu_us"))
        print(f"  {mode:<14} {s['mean_ms']:6.2f}ms {s['p50_ms']:6.2f}ms {s['p95_ms']:6.2f}ms "
              f"{s['router_cpu_us']:7.0f}µs/req{ratios}")
    print(f"  rows written {result['rows_written']} (expected {result['rows_expected']})")
    scrape = result["scrape"]
    print(f"  GET /metrics x{scrape['n']}: mean {scrape['mean_ms']:.2f} ms, p50 {scrape['p50_ms']:.2f} ms, "
          f"p95 {scrape['p95_ms']:.2f} ms ({scrape['bytes']} bytes)")


if __name__ == "__main__":
    main()
