"""What the UI serves: its stacks, tokens, previews and runs."""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provisioner.errors import MlplatError

if TYPE_CHECKING:
    from provisioner.api import Listener, Stack
    from provisioner.plan import Plan
    from provisioner.ui.runs import Runs
    from provisioner.ui.sampler import Samplers


@dataclass
class Preview:
    """A plan the Plan page showed; apply takes exactly it (as `mlplat apply plan.json` takes a saved plan)."""

    id: str
    plan: Plan
    data: dict[str, Any]  # the page's JSON of it (masked)
    made_at: float = field(default_factory=time.time)


class UiApp:
    """The stacks one `mlplat ui` shows. A stack is known by its key (its file's stem, made unique)."""

    def __init__(self, paths: list[Path], *, state_url: str | None = None, environment: str | None = None,
                 variables: dict[str, str] | None = None, token: str | None = None) -> None:
        if not paths:
            raise MlplatError("no stack file to show", hint="mlplat ui -f stacks/quickstart.yaml")
        self.token = token or secrets.token_urlsafe(24)
        self.csrf = secrets.token_urlsafe(24)
        self.state_url, self.environment, self.variables = state_url, environment, dict(variables or {})
        self.paths: dict[str, Path] = {}
        for path in paths:
            key, n = path.stem, 2
            while key in self.paths:
                key, n = f"{path.stem}-{n}", n + 1
            self.paths[key] = path.resolve()
        self.previews: dict[str, Preview] = {}  # stack key -> its latest preview
        self._lock = threading.Lock()
        self._runs: Runs | None = None
        self._samplers: Samplers | None = None
        self.started = time.time()

    @property
    def keys(self) -> list[str]:
        return list(self.paths)

    def path(self, key: str) -> Path:
        try:
            return self.paths[key]
        except KeyError:
            raise MlplatError(f"no stack {key!r} here (stacks: {', '.join(self.paths)})") from None

    def open(self, key: str, listeners: list[Listener] | None = None) -> Stack:
        """The stack file read afresh (an edit shows at the next request), with its targets and state."""
        from provisioner.api import Stack

        return Stack(self.path(key), state_url=self.state_url, environment=self.environment,
                     variables=self.variables, listeners=listeners)

    @contextmanager
    def stack(self, key: str, listeners: list[Listener] | None = None) -> Iterator[Stack]:
        stack = self.open(key, listeners)
        try:
            yield stack
        finally:
            stack.close()

    def keep_preview(self, key: str, plan: Plan, data: dict[str, Any]) -> Preview:
        preview = Preview(uuid.uuid4().hex[:12], plan, data)
        with self._lock:
            self.previews[key] = preview
        return preview

    def take_preview(self, key: str, preview_id: str) -> Preview:
        with self._lock:
            preview = self.previews.get(key)
        if preview is None or preview.id != preview_id:
            raise MlplatError("that preview is not the latest of this stack", hint="run the preview again, review "
                                                                                 "it, then apply")
        return preview

    @property
    def runs(self) -> Runs:
        with self._lock:
            if self._runs is None:
                from provisioner.ui.runs import Runs

                self._runs = Runs()
            return self._runs

    @property
    def samplers(self) -> Samplers:
        with self._lock:
            if self._samplers is None:
                from provisioner.ui.sampler import Samplers

                self._samplers = Samplers(self)
            return self._samplers

    def close(self) -> None:
        if self._samplers is not None:
            self._samplers.stop()
