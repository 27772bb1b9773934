"""A real Prometheus server for tests: scrapes given targets on 127.0.0.1, answers its HTTP query API.

    with PrometheusServer(workdir, ["127.0.0.1:4123"], bearer_token="...") as prom:
        prom.query("sum(mlplat_requests_total)")  # -> the API's data.result list

The binary is the Debian package's `/usr/bin/prometheus` (or `prometheus` on PATH, or $MLPLAT_PROMETHEUS); CI
installs it (.ci/run). Missing, :class:`PrometheusMissing` says how to install it: tests fail on it, never skip.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

DEFAULT_BINARY = "/usr/bin/prometheus"


class PrometheusMissing(RuntimeError):
    """No prometheus binary on this machine."""


def find_binary() -> str:
    for candidate in (os.environ.get("MLPLAT_PROMETHEUS"), DEFAULT_BINARY, shutil.which("prometheus")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise PrometheusMissing(
        f"no Prometheus server binary: not at {DEFAULT_BINARY}, none on PATH, MLPLAT_PROMETHEUS unset. Install it "
        "(Debian/Ubuntu: apt-get install prometheus; CI does this in .ci/run) or point MLPLAT_PROMETHEUS at one")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrometheusServer:
    """One Prometheus process with its own config, TSDB directory and port, stopped by :meth:`stop`."""

    def __init__(self, workdir: Path, targets: list[str], *, scrape_interval: str = "1s",
                 metrics_path: str = "/metrics", bearer_token: str | None = None, job: str = "mlplat") -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.binary = find_binary()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        scrape: dict[str, Any] = {"job_name": job, "scrape_interval": scrape_interval,
                                  "scrape_timeout": scrape_interval, "metrics_path": metrics_path,
                                  "static_configs": [{"targets": targets}]}
        if bearer_token is not None:
            token_file = self.workdir / "bearer.token"
            token_file.write_text(bearer_token)
            token_file.chmod(0o600)
            scrape["authorization"] = {"type": "Bearer", "credentials_file": str(token_file)}
        self.config_file = self.workdir / "prometheus.yml"
        # JSON is YAML
        self.config_file.write_text(json.dumps({"global": {"scrape_interval": scrape_interval,
                                                           "evaluation_interval": scrape_interval},
                                                "scrape_configs": [scrape]}, indent=2))
        self.log_file = self.workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        """Start it and wait until /-/ready answers 200."""
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, f"--config.file={self.config_file}", f"--storage.tsdb.path={self.workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
                 "--storage.tsdb.retention.time=1h"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"prometheus not ready within {timeout:g} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the `data` of a success answer (RuntimeError otherwise)."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=5) as resp:
            doc = json.loads(resp.read())
        if doc.get("status") != "success":
            raise RuntimeError(f"prometheus {path}: {doc}")
        return doc["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result: [{"metric": {labels}, "value": [ts, "text"]}, ...]."""
        return self.api("query", query=expr)["result"]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
