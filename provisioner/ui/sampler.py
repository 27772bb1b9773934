"""Live traffic for the Serving and Resources pages: per stack, a thread measuring `mlplat top`'s source
(`monitoring.top.collect`) window after window, so a page gets the latest sample at once instead of waiting a
window.

The thread starts with the first reader and stops after `IDLE_S` without one (a later reader starts it again) or
on `Samplers.stop()`. Each window opens the stack afresh (an edited stack file or a new apply shows at the next
window) and closes it. A failure is the sample's note: the thread never dies of one.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from provisioner.monitoring import Usage

if TYPE_CHECKING:
    from provisioner.ui.app import UiApp

WINDOW_ENV = "MLPLAT_UI_WINDOW_S"
DEFAULT_WINDOW_S = 2.0
IDLE_S = 120.0


@dataclass
class Sample:
    """One window's usage: measured over `window_s` seconds ending at `measured_at` (epoch seconds)."""

    usage: Usage
    measured_at: float
    window_s: float
    took_s: float  # the whole measurement (opening the stack included)
    notes: list[str] = field(default_factory=list)  # the sampler's own problems (the usage's notes are in it)

    def to_json(self) -> dict[str, Any]:
        return {"measured_at": self.measured_at, "window_s": self.window_s, "took_s": round(self.took_s, 3),
                **self.usage.to_json(), "notes": [*self.notes, *self.usage.notes]}


def window_from_env() -> tuple[float, str | None]:
    """The window (seconds) and a note when MLPLAT_UI_WINDOW_S is set but unusable."""
    raw = os.environ.get(WINDOW_ENV, "").strip()
    if not raw:
        return DEFAULT_WINDOW_S, None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.1 <= value <= 300:
        return DEFAULT_WINDOW_S, f"{WINDOW_ENV}={raw!r} is not a number of seconds in 0.1..300: using " \
                                 f"{DEFAULT_WINDOW_S:g} s"
    return value, None


class Sampler:
    """The measuring thread of one stack."""

    def __init__(self, app: UiApp, key: str, window_s: float, note: str | None = None, idle_s: float = IDLE_S) -> None:
        self.app, self.key, self.window_s, self.idle_s = app, key, window_s, idle_s
        self._note = note
        self._latest: Sample | None = None
        self._last_read = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def read(self) -> Sample | None:
        """The latest sample (None before the first window ends); never waits. Keeps the thread going."""
        with self._lock:
            self._last_read = time.monotonic()
            if not self._stop.is_set() and not self.running:
                self._thread = threading.Thread(target=self._loop, name=f"mlplat-ui-sampler-{self.key}", daemon=True)
                self._thread.start()
            return self._latest

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.window_s + 2 if timeout is None else timeout)

    def _idle(self) -> bool:
        with self._lock:
            if time.monotonic() - self._last_read <= self.idle_s:
                return False
            self._thread = None  # the next reader starts a new thread
            return True

    def _loop(self) -> None:
        while not self._stop.is_set() and not self._idle():
            began = time.monotonic()
            sample = self.measure()
            if self._stop.is_set():
                return
            self._latest = sample
            # a stack with nothing to watch answers at once: never spin faster than one window
            self._stop.wait(max(0.0, self.window_s - (time.monotonic() - began)))

    def measure(self) -> Sample:
        from provisioner.monitoring.top import collect

        notes = [self._note] if self._note else []
        began = time.monotonic()
        try:
            stack = self.app.open(self.key)
            try:
                usage = collect(stack, self.window_s)
            finally:
                stack.close()
        except Exception as err:  # a broken stack file, a state that cannot be read: the sample says so
            from provisioner.errors import MlplatError
            from provisioner.secrets import redact

            text = str(err) if isinstance(err, MlplatError) else f"{type(err).__name__}: {err}"
            usage = Usage(notes=[redact(f"could not measure the traffic: {text}")])
        return Sample(usage, time.time(), self.window_s, time.monotonic() - began, notes)


class Samplers:
    """One `Sampler` per stack key, made on first use (`UiApp.samplers`)."""

    def __init__(self, app: UiApp, window_s: float | None = None, idle_s: float = IDLE_S) -> None:
        self.app, self.idle_s = app, idle_s
        if window_s is None:
            self.window_s, self._note = window_from_env()
        else:
            self.window_s, self._note = window_s, None
        self._samplers: dict[str, Sampler] = {}
        self._lock = threading.Lock()
        self._stopped = False

    def sampler(self, key: str) -> Sampler:
        self.app.path(key)  # an unknown key is an error, not a thread
        with self._lock:
            found = self._samplers.get(key)
            if found is None:
                found = self._samplers[key] = Sampler(self.app, key, self.window_s, self._note, self.idle_s)
                if self._stopped:
                    found._stop.set()
            return found

    def read(self, key: str) -> Sample | None:
        """The latest sample of stack `key` (None before its first window ends), at once."""
        return self.sampler(key).read()

    def stop(self) -> None:
        """Stop every thread (each finishes its window: at most about one window's wait)."""
        with self._lock:
            self._stopped = True
            samplers = list(self._samplers.values())
        for sampler in samplers:
            sampler._stop.set()
        deadline = time.monotonic() + self.window_s + 2
        for sampler in samplers:
            sampler.stop(max(0.0, deadline - time.monotonic()))
