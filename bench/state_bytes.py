"""State bytes written per applied resource, per backend: N creates through the real engine (sim provider in
memory, zero latency), each journaled pending + done.

- sqlite: bytes the process passed to write(2) during the apply (/proc/self/io wchar: database + WAL).
- postgres: WAL the server wrote during the apply (pg_current_wal_lsn difference), on a server started here
  with the tests' fixture (initdb / pg_ctl must be on the machine).
- s3: request bodies sent to S3 (moto server started here), and the number of requests.

    python bench/state_bytes.py [--n 500]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' PostgreSQL and moto servers

from graph_ops import graph

from mlplat_plugins.sim.target import SimSettings, SimTarget
from provisioner.apply import Applier, ApplyOptions
from provisioner.plan import make_plan
from provisioner.state import open_state
from provisioner.target import TargetContext


def apply_n(url: str, n: int, workdir: Path) -> float:
    target = SimTarget(SimSettings(store=":memory:"), TargetContext("bench", "sim", workdir, workdir))
    provider = target.provider("sim.thing")
    provider.store.objects.clear()
    state = open_state("bench", workdir, url=url)
    meta = state.meta()
    plan = make_plan(graph(n, "flat", kind="sim.thing"), state.resources(), lambda t, k: provider, stack="bench",
                     lineage=meta.lineage, serial=meta.serial)
    started = time.perf_counter()
    Applier(state, lambda t, k: provider, lambda e: None, ApplyOptions()).run(plan)
    elapsed = time.perf_counter() - started
    assert len(state.resources()) == n
    state.close()
    return elapsed


def wchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/self/io")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    n = parser.parse_args().n
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        before = wchar()
        elapsed = apply_n(f"sqlite:///{work}/state.db", n, work)
        rows.append(("sqlite", (wchar() - before) / n, None, elapsed))

        try:
            import psycopg
            from pg_server import started_server as pg_started

            pg = pg_started()
            os.environ.update(pg.env())
            url = pg.url("bench")
            with psycopg.connect(url, autocommit=True) as conn:
                start_lsn = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
                elapsed = apply_n(url, n, work)
                wal = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (start_lsn,)).fetchone()[0]
            rows.append(("postgres", float(wal) / n, None, elapsed))
            pg.stop()
        except Exception as err:
            rows.append(("postgres", None, f"not measured: {err}", None))

        try:
            from aws_moto import started_server as moto_started

            moto = moto_started()
            os.environ.update(moto.env())
            moto.client("s3").create_bucket(Bucket="bench")
            body_bytes = [0]
            import boto3

            def count(request, **_):  # type: ignore[no-untyped-def]
                body_bytes[0] += int(request.headers.get("Content-Length") or 0)

            boto3.DEFAULT_SESSION = None
            from provisioner.state import s3 as s3_state

            original = s3_state.S3State.__init__

            def hooked(self, *args, **kwargs):  # type: ignore[no-untyped-def]
                original(self, *args, **kwargs)
                self._s3.meta.events.register("before-send.s3.*", count)

            s3_state.S3State.__init__ = hooked  # type: ignore[method-assign]
            moto.clear_calls()
            elapsed = apply_n(f"s3://bench/state?region=us-east-1&endpoint_url={moto.url}", n, work)
            rows.append(("s3", body_bytes[0] / n, f"{len(moto.calls) / n:.1f} requests per resource", elapsed))
            moto.stop()
        except Exception as err:
            rows.append(("s3", None, f"not measured: {err}", None))

    print(f"State bytes written per applied resource ({n} creates, each journaled pending + done)")
    print(f"{'backend':<10} {'bytes/resource':>15} {'apply s':>9}  note")
    for name, per, note, elapsed in rows:
        shown = f"{per:,.0f}" if per is not None else "-"
        took = f"{elapsed:.2f}" if elapsed is not None else "-"
        print(f"{name:<10} {shown:>15} {took:>9}  {note or ''}")


if __name__ == "__main__":
    main()
