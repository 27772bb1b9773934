"""The router's capture: sampled requests and shadow pairs, as JSON lines in hourly files, written by one thread so
that no request waits on the disk (shapes: `provisioner.monitoring`).

    writer = CaptureWriter(log, written_counter, dropped_counter)
    writer.submit(CaptureRow(directory, ts, id, endpoint, path, status, latency_ms, request_bytes, response_bytes))
    writer.close()  # at shutdown: what is queued is written
"""

from __future__ import annotations

import functools
import json
import os
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from provisioner.monitoring import CAPTURE_PREFIX, SHADOW_PREFIX

from . import metrics

#: rows waiting for the capture writer, at most (and at most this many bytes of bodies); more are dropped
CAPTURE_QUEUE = 10_000
CAPTURE_QUEUE_BYTES = 64 * 2**20
#: the writer wakes for the first row and takes the rows queued this many seconds later (and those coming while it
#: works) in one batch, writing each CAPTURE_BATCH_ROWS of them: rows are on disk about 0.1 s after their request
CAPTURE_BATCH_S = 0.05
CAPTURE_BATCH_ROWS = 1000
#: of a body that is not JSON, the first this many bytes are captured
CAPTURE_TEXT_BYTES = 64 * 1024


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def captured_body(raw: bytes) -> Any:
    """A body as a captured row keeps it: parsed JSON, else ``{"text": ...}`` of its first 64 KiB."""
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors; nested too deep
        return {"text": raw[:CAPTURE_TEXT_BYTES].decode("utf-8", "replace")}


def parsed(raw: bytes) -> Any:
    """A body parsed as JSON; None when it is not JSON."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


@functools.lru_cache(maxsize=4)
def _hour_name(hour: int) -> str:
    return time.strftime("%Y%m%d-%H", time.gmtime(hour * 3600))


def _hour(ts: float) -> str:
    """YYYYMMDD-HH of `ts`, in UTC."""
    return _hour_name(int(ts // 3600))


@dataclass(frozen=True)
class CaptureRow:
    """A sampled request as its handler hands it to the writer, which parses the bodies (off the request path)."""

    directory: str
    ts: float
    id: str
    endpoint: str
    path: str
    status: int
    latency_ms: float
    request: bytes | None  # None: not kept
    response: bytes | None
    captured = True

    @property
    def size(self) -> int:
        return len(self.request or b"") + len(self.response or b"")

    @property
    def file(self) -> str:
        return os.path.join(self.directory, f"{CAPTURE_PREFIX}{_hour(self.ts)}.jsonl")

    def line(self) -> str:
        row: dict[str, Any] = {"ts": round(self.ts, 3), "id": self.id, "endpoint": self.endpoint, "path": self.path,
                               "status": self.status, "latency_ms": round(self.latency_ms, 3)}
        if self.request is not None:
            row["request"] = captured_body(self.request)
        if self.response is not None:
            row["response"] = captured_body(self.response)
        return json.dumps(row, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True)
class ShadowRow:
    """A shadow pair (the row is complete; the mirror worker made it)."""

    directory: str
    endpoint: str
    row: dict[str, Any]
    captured = False
    size = 0

    @property
    def file(self) -> str:
        return os.path.join(self.directory, f"{SHADOW_PREFIX}{_hour(self.row['ts'])}.jsonl")

    def line(self) -> str:
        return json.dumps(self.row, separators=(",", ":"), allow_nan=False)


_STOP = object()


class CaptureWriter:
    """One thread appending capture and shadow rows, as JSON lines, to their hourly files. Handlers only queue."""

    def __init__(self, log: Any, written: metrics.Counter, dropped: metrics.Counter) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(CAPTURE_QUEUE)
        self._bytes = 0  # of bodies in the queue
        self._lock = threading.Lock()
        self._log, self._written, self._dropped = log, written, dropped
        self._logged_error = 0.0
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()

    def submit(self, item: CaptureRow | ShadowRow) -> bool:
        """Queue a row; False (counted as dropped) when the queue is full."""
        with self._lock:
            queued = self._bytes + item.size <= CAPTURE_QUEUE_BYTES
            if queued:
                try:
                    self._queue.put_nowait(item)
                    self._bytes += item.size
                except queue.Full:
                    queued = False
        if not queued:
            self._dropped.inc(endpoint=item.endpoint)
        return queued

    def close(self, timeout: float = 5.0) -> None:
        """Write out what is queued, then stop."""
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()  # idle: asleep until a row comes
            time.sleep(CAPTURE_BATCH_S)  # rows gather meanwhile: one wake-up and one write per file per batch
            pending: dict[str, tuple[list[str], Counter[str], Counter[str]]] = {}  # file: lines, captured, all
            taken = 0
            while item is not _STOP:
                self._take(item, pending)
                taken += 1
                if taken % CAPTURE_BATCH_ROWS == 0:  # a backlog: write as we go
                    self._flush(pending)
                    pending = {}
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            self._flush(pending)
            if item is _STOP:
                return

    def _take(self, item: CaptureRow | ShadowRow, pending: dict[str, tuple[list[str], Counter[str], Counter[str]]]
              ) -> None:
        with self._lock:
            self._bytes -= item.size
        try:
            line = item.line()
        except Exception as exc:  # a row that cannot be written is dropped, never kills the writer
            self._dropped.inc(endpoint=item.endpoint)
            self._error(f"capture row not written: {type(exc).__name__}: {exc}")
            return
        lines, captured, rows = pending.setdefault(item.file, ([], Counter(), Counter()))
        lines.append(line)
        rows[item.endpoint] += 1
        if item.captured:
            captured[item.endpoint] += 1

    def _flush(self, pending: dict[str, tuple[list[str], Counter[str], Counter[str]]]) -> None:
        for file, (lines, captured, rows) in pending.items():
            try:
                _append(file, ("\n".join(lines) + "\n").encode())
            except OSError as exc:
                for endpoint, n in rows.items():
                    self._dropped.inc(n, endpoint=endpoint)
                self._error(f"cannot write {len(lines)} capture row(s) to {file}: {exc}")
                continue
            for endpoint, n in captured.items():
                self._written.inc(n, endpoint=endpoint)

    def _error(self, message: str) -> None:
        now = time.monotonic()
        if now - self._logged_error >= 60 or not self._logged_error:
            self._logged_error = now
            self._log(message)


def _append(file: str, data: bytes) -> None:
    """Append `data` (whole lines) to `file` (made 0600, its directory 0700, when missing)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    try:
        fd = os.open(file, flags, 0o600)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(file), mode=0o700, exist_ok=True)
        fd = os.open(file, flags, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
