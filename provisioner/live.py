"""What apply, destroy and migrate show while they run: engine events (`provisioner.events.Event`) as

- `--json`: one JSON object per line on stdout (NDJSON, like `terraform apply -json`): the plan, each event as it
  happens, heartbeats for long steps, then the summary (an error ends the stream with an error line, see
  `provisioner.cli.main`);
- a terminal (stderr is a TTY): a live view with the count of steps done (`12/40`), each running step with its
  elapsed time, and a heartbeat for long ones; finished steps are printed above it;
- a pipe or a CI log: plain lines, `[12/40]` on each done line, and "still creating… [30s elapsed]" every
  heartbeat interval for a step that takes long.

The heartbeat interval is 10 s, or `$MLPLAT_HEARTBEAT_S` seconds. The format is documented in docs/output.md.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

from provisioner.console import FastConsole, escape
from provisioner.events import Event
from provisioner.secrets import any_known, mask, redact

if TYPE_CHECKING:
    from provisioner.plan import Plan

HEARTBEAT_ENV = "MLPLAT_HEARTBEAT_S"
DEFAULT_HEARTBEAT_S = 10.0
VERBS = {"create": "creating", "update": "updating", "delete": "deleting", "delete-deposed": "deleting old"}
#: running steps the live view lists (the longest-running first); the rest are counted
LIVE_ROWS = 8
#: while an apply runs, lines that come faster than this (seconds) are written together, at most this late: one
#: write per line from ten worker threads cost more than the rest of the output (a system call each, and the GIL)
FLUSH_S = 0.05


def heartbeat_interval() -> float:
    """Seconds between heartbeats of a long step: $MLPLAT_HEARTBEAT_S (a positive number), else 10."""
    try:
        value = float(os.environ.get(HEARTBEAT_ENV, DEFAULT_HEARTBEAT_S))
    except ValueError:
        return DEFAULT_HEARTBEAT_S
    return value if value > 0 else DEFAULT_HEARTBEAT_S


def step_count(plan: Plan) -> int:
    """The steps apply runs for `plan` (a replace can be two), over every apply segment."""
    from provisioner.apply import build_steps
    from provisioner.plan import SEGMENTS

    if not plan.migrations:
        return len(build_steps(plan))
    return sum(len(build_steps(plan.segment(segment))) for segment in SEGMENTS)


def plan_json(plan: Plan, cost: tuple[Any, Any] | None) -> dict[str, Any]:
    """A plan as `preview --json` prints it (with its cost, when priced)."""
    data = plan.to_json()
    if cost is not None:
        from provisioner.cost import delta

        data["estimated_cost_usd_hour"] = round(cost[0].hourly, 4)
        data["cost"] = {"after": cost[0].to_json(), "now": cost[1].to_json(), "delta": delta(*cost)}
    return data


def timestamp(at: float) -> str:
    """ISO 8601 in UTC, to the microsecond: 2026-11-26T20:18:38.123456Z."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def seconds(value: float, interval: float) -> str:
    """An elapsed time as heartbeats say it: whole seconds, tenths under a 1 s interval."""
    return f"{value:.0f}s" if interval >= 1 else f"{value:.1f}s"


class BatchedWriter:
    """A text stream that writes (and flushes) what it is given at once, or — while `batching` — at most every
    FLUSH_S seconds, the rest at the next `write` or `flush`. Called under its Progress's lock."""

    def __init__(self, stream: IO[str] | None = None, *, stderr: bool = False) -> None:
        self._stream, self._stderr = stream, stderr
        self._parts: list[str] = []
        self._flushed = 0.0
        self.batching = False

    @property
    def stream(self) -> IO[str]:
        return self._stream or (sys.stderr if self._stderr else sys.stdout)

    def write(self, text: str) -> None:
        self._parts.append(text)
        if not self.batching or time.monotonic() - self._flushed >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        if self._parts:
            stream = self.stream
            stream.write("".join(self._parts))
            self._parts.clear()
            stream.flush()
        self._flushed = time.monotonic()

    def isatty(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False


@dataclass(slots=True)
class Running:
    """A step (or a migration phase) in flight."""

    address: str
    action: str
    started: float  # time.monotonic()
    beats: int = 0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


class Progress:
    """A `Stack` listener that also shows the plan and the summary. Use it as a context manager around the
    locked plan-and-apply; `begin(plan)` right before the apply starts the count and the heartbeats. After the
    context ends nothing more is written (events from steps still winding down after Ctrl-C are dropped)."""

    def __init__(self, writer: BatchedWriter, *, heartbeat_s: float | None = None,
                 tick_s: float | None = None) -> None:
        self.writer = writer
        self.interval = heartbeat_s or heartbeat_interval()
        self.tick = tick_s or min(self.interval / 2, 2 * FLUSH_S)
        self.lock = threading.RLock()
        self.total = 0
        self.done = self.failed = self.skipped = 0
        self.running: dict[tuple[str, str], Running] = {}
        self.started = 0.0
        self.begun = self.closed = False
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # -- the listener -----------------------------------------------------------------------------------------
    def __call__(self, event: Event) -> None:
        with self.lock:
            if self.closed:
                return
            self._track(event)
            self.show(event)

    def _track(self, event: Event) -> None:
        key = (event.address, event.action)
        kind = event.kind
        if kind == "step-start" or (kind == "migration" and event.message == "started"):
            self.running[key] = Running(event.address, event.action, time.monotonic())
        elif kind in ("step-done", "step-failed", "step-interrupted") or (kind == "migration" and
                                                                          event.message == "done"):
            self.running.pop(key, None)
            if kind == "step-done":
                self.done += 1
            elif kind == "step-failed":
                self.failed += 1
        elif kind == "step-skipped":
            self.skipped += 1

    # -- the run ----------------------------------------------------------------------------------------------
    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.end()

    def begin(self, plan: Plan) -> None:
        """The apply of `plan` starts: count its steps, start the heartbeat."""
        with self.lock:
            self.total = step_count(plan)
            self.started = time.monotonic()
            self.begun = self.writer.batching = True
        self._ticker = threading.Thread(target=self._tick_loop, name="mlplat-heartbeat", daemon=True)
        self._ticker.start()

    def end(self) -> None:
        """Stop the heartbeat and write nothing more (idempotent)."""
        self._stop.set()
        if self._ticker is not None and self._ticker is not threading.current_thread():
            self._ticker.join(timeout=5)
        with self.lock:
            if not self.closed:
                self.closed = True
                self.finish()
                self.writer.batching = False
                self.writer.flush()

    def _tick_loop(self) -> None:
        while not self._stop.wait(self.tick):
            with self.lock:
                if self.closed:
                    return
                for item in list(self.running.values()):
                    if item.elapsed >= (item.beats + 1) * self.interval:
                        item.beats += 1
                        self.heartbeat(item, item.beats * self.interval)
                self.refresh()
                self.writer.flush()

    # -- what each form shows ---------------------------------------------------------------------------------
    def plan(self, plan: Plan, cost: tuple[Any, Any] | None, *, show: bool = True) -> None:
        """The plan, before confirmation (`show`: False for a saved plan, which people saw already)."""

    def show(self, event: Event) -> None:
        """One event, as it happens (under the lock)."""

    def heartbeat(self, item: Running, elapsed: float) -> None:
        """`item` has been running for another heartbeat interval (under the lock)."""

    def refresh(self) -> None:
        """Each tick (under the lock)."""

    def finish(self) -> None:
        """At the end (under the lock)."""

    def summary(self, data: dict[str, Any]) -> None:
        """The result: what apply --json reports (people get theirs from the CLI)."""


class JsonStream(Progress):
    """NDJSON on stdout: the plan, the events, heartbeats, the summary; each line written and flushed whole."""

    def __init__(self, out: IO[str] | None = None, **options: Any) -> None:
        super().__init__(BatchedWriter(out), **options)
        self._held: list[dict[str, Any]] | None = []  # events before the plan line, written right after it

    def write(self, data: dict[str, Any]) -> None:
        self.writer.write(json.dumps(mask(data) if any_known() else data, default=str) + "\n")

    def plan(self, plan: Plan, cost: tuple[Any, Any] | None, *, show: bool = True) -> None:
        with self.lock:
            self.write({"type": "plan", **plan_json(plan, cost)})
            held, self._held = self._held or [], None
            for line in held:
                self.write(line)

    def show(self, event: Event) -> None:
        line: dict[str, Any] = {"type": event.kind, "address": event.address, "action": event.action,
                                "message": redact(event.message), "elapsed": round(event.elapsed, 3),
                                "timestamp": timestamp(event.at)}
        if event.data:
            line["data"] = event.data
        if event.kind == "step-done" and self.begun:
            line["done"], line["total"] = self.done, self.total
        if self._held is not None:
            self._held.append(line)
        else:
            self.write(line)

    def heartbeat(self, item: Running, elapsed: float) -> None:
        verb = VERBS.get(item.action, item.action)
        self.write({"type": "heartbeat", "address": item.address, "action": item.action,
                    "message": f"still {verb}", "elapsed": round(elapsed, 3), "timestamp": timestamp(time.time())})

    def finish(self) -> None:
        for line in self._held or ():  # the run ended before its plan was shown (an error): keep what was said
            self.write(line)
        self._held = None

    def summary(self, data: dict[str, Any]) -> None:
        with self.lock:
            self.write({"type": "summary", **data})


class PlainLines(Progress):
    """Lines on stderr for people and logs (markup becomes colour on a terminal, nothing in a pipe)."""

    def __init__(self, err: IO[str] | None = None, **options: Any) -> None:
        super().__init__(BatchedWriter(err, stderr=True), **options)
        self.console = FastConsole(self.writer)  # type: ignore[arg-type]  # a text stream enough for it

    def plan(self, plan: Plan, cost: tuple[Any, Any] | None, *, show: bool = True) -> None:
        if show:
            from provisioner.render import render_plan

            render_plan(FastConsole(), plan, cost)

    def show(self, event: Event) -> None:
        line = event_line(event, f"[{self.done}/{self.total}] " if self.begun else "")
        if line is not None:
            self.say(line)

    def say(self, line: str) -> None:
        self.console.print(line)

    def heartbeat(self, item: Running, elapsed: float) -> None:
        self.say(f"  {item.address}: [dim]still {VERBS.get(item.action, item.action)}… "
                 f"[{seconds(elapsed, self.interval)} elapsed][/]")  # `[0` is no markup tag


def event_line(event: Event, count: str = "") -> str | None:
    """An event as one markup line (None: not shown); `count` (`[12/40] `) prefixes done lines."""
    kind, address = event.kind, event.address
    if kind == "step-start":
        return f"  {address}: {VERBS.get(event.action, event.action)}…"
    if kind == "step-done":
        return f"  {count}{address}: [green]{event.action} done[/] ({event.elapsed:.1f}s)"
    if kind == "progress":
        return f"  {address}: [dim]{escape(redact(event.message))}[/]"
    if kind == "step-failed":
        return f"  {address}: [red]{event.action} failed[/] ({event.elapsed:.1f}s)"
    if kind == "step-retry":
        return f"  {address}: [yellow]retrying[/] {escape(redact(event.message))}"
    if kind == "step-skipped":
        return f"  {address}: [yellow]skipped[/] (a dependency failed)"
    if kind == "step-interrupted":
        return f"  {address}: [yellow]{event.action} interrupted[/] (journalled; the next apply resumes it)"
    if kind == "recovered":
        return f"  [cyan]recovered[/] {address} ({event.action}): {escape(redact(event.message))}"
    if kind == "warning":
        return f"[yellow]warning:[/] {escape(redact(event.message))}"
    if kind == "migration" and event.message != "started":
        took = f" ({event.elapsed:.1f}s)" if event.message == "done" and event.elapsed else ""
        return (f"  [cyan]migration[/] {escape(address.split('.', 1)[1])} {escape(event.action)}: "
                f"{escape(redact(event.message))}{took}")
    return None


class LiveView(PlainLines):
    """A terminal: finished steps printed above a live area listing the running ones and the count."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("tick_s", 0.25)
        super().__init__(**options)
        self._live: Any = None
        self._pending: list[str] = []

    def begin(self, plan: Plan) -> None:
        from rich.console import Console
        from rich.live import Live

        with self.lock:
            # no soft wrap here: the live area must know its height to redraw in place (long lines wrap)
            self._live = Live(console=Console(stderr=True, highlight=False), auto_refresh=False, transient=True,
                              redirect_stdout=False, redirect_stderr=False)
            self._live.start()
        super().begin(plan)

    def show(self, event: Event) -> None:
        if self._live is None:
            super().show(event)
        elif event.kind not in ("step-start", "progress"):  # the live area shows what runs and how long
            line = event_line(event, f"[{self.done}/{self.total}] ")
            if line is not None:
                self._pending.append(line)

    def heartbeat(self, item: Running, elapsed: float) -> None:
        if self._live is None:
            super().heartbeat(item, elapsed)

    def refresh(self) -> None:
        if self._live is None:
            return
        if self._pending:  # one print per tick, not one per step: printing above a live area redraws it
            self._live.console.print("\n".join(self._pending), highlight=False)
            self._pending = []
        self._live.update(self.view(), refresh=True)

    def view(self) -> Any:
        from rich.text import Text

        rows = sorted(self.running.values(), key=lambda r: r.started)
        lines = []
        for item in rows[:LIVE_ROWS]:
            elapsed = item.elapsed
            still = "  [dim](still " + VERBS.get(item.action, item.action) + ")[/]" if item.beats else ""
            lines.append(f"  [bold]{escape(item.address)}[/]: {escape(VERBS.get(item.action, item.action))}… "
                         f"[cyan]{elapsed:.0f}s[/]{still}")
        if len(rows) > LIVE_ROWS:
            lines.append(f"  [dim]… and {len(rows) - LIVE_ROWS} more running[/]")
        extra = "".join(f", [{color}]{n} {what}[/]" for n, what, color in
                        ((self.failed, "failed", "red"), (self.skipped, "skipped", "yellow")) if n)
        lines.append(f"[bold]{self.done}/{self.total}[/] done{extra}, {len(rows)} running "
                     f"[dim]({time.monotonic() - self.started:.0f}s)[/]")
        view = Text.from_markup("\n".join(lines), overflow="ellipsis")
        view.no_wrap = True  # one row a step, whatever the terminal's width: the area's height stays known
        return view

    def finish(self) -> None:
        if self._live is None:
            return
        from rich.text import Text

        self.refresh()
        self._live.update(Text(""), refresh=True)
        self._live.stop()
        self._live = None


def progress(*, json_out: bool = False, out: IO[str] | None = None) -> Progress:
    """The display for an apply, destroy or migrate: NDJSON with --json, a live view when stderr is a terminal,
    plain lines otherwise."""
    if json_out:
        return JsonStream(out)
    if FastConsole(stderr=True).is_terminal and os.environ.get("TERM", "") not in ("dumb", "unknown"):
        return LiveView()
    return PlainLines()
