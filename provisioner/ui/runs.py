"""Operations the UI starts (an apply of a previewed plan), run in a thread; their events are kept for the
server-sent event stream (`GET /api/runs/<id>/events`), which replays them from the start, then follows."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from provisioner.events import Event
from provisioner.ui.safe import public


@dataclass
class Run:
    id: str
    stack: str  # the stack's key
    verb: str
    started: float = field(default_factory=time.time)
    finished: float | None = None
    ok: bool | None = None
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def add(self, event: Event) -> None:
        line = {"type": event.kind, "address": event.address, "action": event.action, "message": event.message,
                "elapsed": round(event.elapsed, 3), "at": event.at, **({"data": event.data} if event.data else {})}
        with self._changed:
            self.events.append(public(line))
            self._changed.notify_all()

    def end(self, ok: bool, error: str | None = None, summary: dict[str, Any] | None = None) -> None:
        with self._changed:
            self.finished, self.ok, self.error = time.time(), ok, public(error)
            self.summary = public(summary or {})
            self._changed.notify_all()

    @property
    def done(self) -> bool:
        return self.finished is not None

    def follow(self, poll_s: float = 15.0) -> Iterator[tuple[int, dict[str, Any] | None]]:
        """(index, event) from the first on, waiting for new ones; (n, None) every `poll_s` without any (a
        keep-alive); ends after the run ended and every event was given."""
        seen = 0
        while True:
            with self._changed:
                if seen >= len(self.events) and not self.done:
                    self._changed.wait(poll_s)
                fresh = self.events[seen:]
                finished = self.done
            if not fresh and not finished:
                yield seen, None
            for event in fresh:
                yield seen, event
                seen += 1
            if finished and seen >= len(self.events):
                return

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "stack": self.stack, "verb": self.verb, "started": self.started,
                "finished": self.finished, "ok": self.ok, "error": self.error, "summary": self.summary,
                "events": len(self.events)}


class Runs:
    """The UI's runs, newest last; one at a time per stack (the stack's lock refuses a second anyway)."""

    def __init__(self) -> None:
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()

    def get(self, run_id: str) -> Run | None:
        with self._lock:
            return self._runs.get(run_id)

    def active(self, stack: str) -> Run | None:
        with self._lock:
            return next((r for r in self._runs.values() if r.stack == stack and not r.done), None)

    def all(self) -> list[Run]:
        with self._lock:
            return list(self._runs.values())

    def start(self, stack: str, verb: str, work: Callable[[Run], dict[str, Any]]) -> Run:
        """Run `work(run)` in a thread; its return value is the run's summary, an exception its error."""
        with self._lock:
            busy = next((r for r in self._runs.values() if r.stack == stack and not r.done), None)
            if busy is not None:
                from provisioner.errors import MlplatError

                raise MlplatError(f"a {busy.verb} of this stack is already running (run {busy.id})",
                                  hint="wait for it to finish")
            run = Run(uuid.uuid4().hex[:12], stack, verb)
            self._runs[run.id] = run

        def main() -> None:
            try:
                run.end(True, summary=work(run))
            except Exception as err:  # shown on the page, never a traceback
                from provisioner.errors import MlplatError

                run.end(False, str(err) if isinstance(err, MlplatError) else f"{type(err).__name__}: {err}")

        threading.Thread(target=main, name=f"mlplat-ui-{verb}-{run.id}", daemon=True).start()
        return run
