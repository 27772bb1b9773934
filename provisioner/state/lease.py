"""The lock holder's heartbeat: a daemon thread renewing the lease every third of it.

If a renewal finds the lock gone or someone else's (our heartbeats stalled past the lease, and another process
took over), the backend is flagged so its next journal write refuses to continue. That flag is only the early
warning: a fenced backend (`StateBackend.fence`) checks the lock in every write itself, so a write racing the
keeper's next beat is refused too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from provisioner.events import Event
from provisioner.state.base import LockInfo, StateBackend


class LeaseKeeper:
    def __init__(self, state: StateBackend, info: LockInfo, emit: Callable[[Event], None]) -> None:
        self.state, self.info, self.emit = state, info, emit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mlplat-lease", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.info.lease / 3):
            try:
                if self.state.renew_lock(self.info):
                    continue
                holder = self.state.read_lock()
                self.state.lost_lock = holder.describe() if holder else "the lock was removed (state unlock?)"
            except Exception as err:  # a transient backend error: try again next beat, the lease has slack
                self.emit(Event("warning", message=f"could not renew the stack lock: {err}"))
                continue
            self.emit(Event("warning", message=f"lost the stack lock: {self.state.lost_lock}"))
            return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
