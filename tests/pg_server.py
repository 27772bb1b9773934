"""A real PostgreSQL server for the tests: initdb + pg_ctl in a temp dir, listening on 127.0.0.1 on a free port.

initdb refuses to run as root, so as root the server runs as an unprivileged user (`postgres` if the system has
one, else `nobody`) that owns the temp dir. Connections use a password (SCRAM) given through PGPASSWORD, never
the URL, so the tests exercise the same path as users. fsync is off: the data is thrown away.
"""

from __future__ import annotations

import itertools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from state_backends import BackendFactory

if TYPE_CHECKING:
    import psycopg

USER = "mlplat"
MLPLAT_TABLES = ("mlplat_meta", "mlplat_resources", "mlplat_journal", "mlplat_locks")


def find_bin_dir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres (PATH first, then Debian's /usr/lib/postgresql/N/bin)."""
    found = shutil.which("initdb")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += sorted((Path(p) for p in glob("/usr/lib/postgresql/*/bin")),
                         key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True)
    return next((d for d in candidates if all((d / b).exists() for b in ("initdb", "pg_ctl", "postgres"))), None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    bin_dir: Path
    root: Path
    port: int
    password: str
    run_as: str | None  # the unprivileged user when we are root
    started_in: float = 0.0  # seconds initdb + start took
    _databases: set[str] = field(default_factory=set)

    def url(self, database: str = "mlplat") -> str:
        """postgresql://mlplat@127.0.0.1:PORT/DATABASE (no password: it comes from env()), created on first use."""
        if database not in self._databases:
            import psycopg
            from psycopg import sql

            with psycopg.connect(self._admin("postgres"), autocommit=True) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname=%s", (database,)).fetchone()
                if not exists:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            self._databases.add(database)
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def env(self) -> dict[str, str]:
        return {"PGPASSWORD": self.password}

    def connect(self, database: str = "mlplat") -> psycopg.Connection[Any]:
        """A psycopg connection (autocommit) as the superuser, for inspecting what a test stored."""
        import psycopg

        self.url(database)
        return psycopg.connect(self._admin(database), autocommit=True)

    def _admin(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={USER} password={self.password} dbname={database}"

    def command(self, *args: str) -> list[str]:
        return ["runuser", "-u", self.run_as, "--", *args] if self.run_as else list(args)

    def start(self) -> None:
        started = time.monotonic()
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.run_as:
            entry = pwd.getpwnam(self.run_as)
            for path in (self.root, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        data = self.root / "data"
        _run(self.command(str(self.bin_dir / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={pwfile}",
                          "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync",
                          "--no-instructions"), "initdb")
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
        _run(self.command(str(self.bin_dir / "pg_ctl"), "-D", str(data), "-l", str(self.root / "server.log"),
                          "-o", options, "-w", "-t", "60", "start"), "pg_ctl start", log=self.root / "server.log")
        self.started_in = time.monotonic() - started

    def stop(self) -> None:
        subprocess.run(self.command(str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate",
                                    "-w", "stop"), capture_output=True, check=False, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


def _run(cmd: list[str], what: str, log: Path | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        tail = log.read_text()[-2000:] if log and log.exists() else ""
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{tail}")


def _unprivileged_user() -> str | None:
    """None unless we are root; then a user initdb accepts (postgres if installed, else nobody)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    _unavailable("running as root and no unprivileged user (postgres, nobody) to run PostgreSQL as")
    return None


def _unavailable(why: str) -> None:
    """Skip on a developer machine; in CI the postgres tests (the kill matrix among them) must run."""
    from conftest import in_ci

    if in_ci():
        pytest.fail(f"CI must run the PostgreSQL tests: {why}")
    pytest.skip(why)


def started_server() -> PostgresServer:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        _unavailable("no PostgreSQL server binaries (initdb, pg_ctl): install postgresql (.ci/run does)")
    from conftest import require_module

    require_module("psycopg", "psycopg is part of the test extra (mlplat[postgres])")
    run_as = _unprivileged_user()
    # as root, a dir the unprivileged user can reach (TMPDIR may be under a private home)
    root = Path(tempfile.mkdtemp(prefix="mlplat-pg-", dir="/tmp" if run_as else None))
    last: Exception | None = None
    for _ in range(3):  # the free port may be taken between probing and listening
        server = PostgresServer(bin_dir, root, _free_port(), secrets.token_urlsafe(16), run_as)
        try:
            server.start()
            return server
        except RuntimeError as err:
            last = err
            subprocess.run(server.command(str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate",
                                          "stop"), capture_output=True, check=False)
            for child in root.iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    shutil.rmtree(root, ignore_errors=True)
    raise RuntimeError(f"PostgreSQL did not start: {last}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One server for the session; PGPASSWORD is set for in-process connections (subprocesses: use env())."""
    server = started_server()
    saved = os.environ.get("PGPASSWORD")
    os.environ.update(server.env())
    yield server
    server.stop()
    if saved is None:
        os.environ.pop("PGPASSWORD", None)
    else:
        os.environ["PGPASSWORD"] = saved


_databases = itertools.count(1)


def postgres_factory(request: pytest.FixtureRequest, tmp_path: Path) -> BackendFactory:
    """Every stack of one test in one fresh database (the contract opens stacks "stack", "one", "two")."""
    server: PostgresServer = request.getfixturevalue("postgres_server")
    database = f"test_{next(_databases)}"
    url = server.url(database)

    def raw() -> bytes:
        """Every row of every mlplat table, as text (what a database dump would show)."""
        with server.connect(database) as conn:
            return b"".join(str(row).encode() for table in MLPLAT_TABLES
                            for row in conn.execute(f"SELECT t::text FROM {table} t"))

    return BackendFactory("postgres", lambda stack: url, raw, shared_location=True)
