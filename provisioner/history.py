"""The run record: what each apply did, kept in the state's journal (the UI's History page, `runs`).

Every `Stack.apply` (apply, destroy, migrate; success or failure) ends by journalling one closed entry with op
`run` at address `mlplat.run` whose body (through the state codec, like every entry) is the run's summary: who ran
it, when, how long, the counts, each change and its outcome, and each migration's phases and traffic steps. The
entry touches no resource: recovery skips it, and `state migrate` carries it like any other entry.

The step entries an apply journals (one apply id per apply segment, and the migration runner's own) are not
listed in the record: `runs` gives each run the entries journalled between its start and its record. Journals
written before run records existed (or by an apply killed before its record) show as runs grouped by apply id,
their author unknown.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from provisioner.events import Event
from provisioner.state.base import JournalEntry, ResourceRecord, host_name, login_name

if TYPE_CHECKING:
    from provisioner.api import Stack
    from provisioner.plan import Plan
    from provisioner.state.base import StateBackend

#: the journal op and address of a run record
RUN_OP = "run"
RUN_ADDRESS = "mlplat.run"
RUN_FORMAT = 1
#: what each row of a record's `changes` holds (`runs` gives them as objects)
CHANGE_FIELDS = ("address", "action", "kind", "target", "outcome", "seconds")
#: changes listed in one record (a bigger apply keeps the first ones and says how many there were)
MAX_CHANGES = 5_000
MAX_ERROR = 1_000
_STEP_KINDS = frozenset({"step-done", "step-failed", "step-skipped", "step-interrupted"})


def verb_of(plan: Plan) -> str:
    if plan.destroy:
        return "destroy"
    return "migrate" if any(m.mode != "kept" for m in plan.migrations) else "apply"


class Recorder:
    """Collects the events of one apply and writes its run record."""

    def __init__(self, stack: Stack, plan: Plan) -> None:
        self.stack, self.plan = stack, plan
        self.id = uuid.uuid4().hex[:12]
        self.started = time.time()
        self._began = time.perf_counter()
        self.steps: list[Event] = []
        self.migration: list[Event] = []
        self._timings = stack.migration_timings  # replaced by a successful migrating apply

    def seen(self, event: Event) -> None:
        if event.kind in _STEP_KINDS:
            self.steps.append(event)
        elif event.kind == "migration":
            self.migration.append(event)

    def summary(self, error: BaseException | None) -> dict[str, Any]:
        plan = self.plan
        seconds = time.perf_counter() - self._began
        counts = {a: 0 for a in ("create", "update", "replace", "delete")}
        listed = [c for c in plan.changes if c.action != "noop" or c.deposed or c.drift]
        for c in listed:
            if c.action in counts:
                counts[c.action] += 1
        by_address: dict[str, list[Event]] = {}
        for event in self.steps:
            by_address.setdefault(event.address, []).append(event)
        changes, outcomes = [], {"done": 0, "failed": 0, "skipped": 0}
        for c in listed:
            outcome, took = _outcome(by_address.get(c.address, []), ok=error is None,
                                     shifted=c.phase == "shift", noop=c.action == "noop")
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if len(changes) < MAX_CHANGES:  # rows, not objects: half the encoding time of a big apply's record
                changes.append([c.address, "drift" if c.action == "noop" else c.action, c.kind, c.target, outcome,
                                took])
        record: dict[str, Any] = {
            "format": RUN_FORMAT, "verb": verb_of(plan), "who": f"{login_name()}@{host_name()}",
            "stack": plan.stack, "started": self.started, "finished": time.time(), "seconds": round(seconds, 3),
            "ok": error is None, "error": _error_text(error) if error is not None else None,
            "counts": counts, "outcomes": outcomes, "changes": changes, "changes_total": len(listed),
            "migrations": self._migrations(fresh=error is None),
        }
        if plan.targets:
            record["targets"] = list(plan.targets)
        if plan.environment:
            record["environment"] = plan.environment
        return record

    def _migrations(self, *, fresh: bool) -> list[dict[str, Any]]:
        if not self.plan.migrations:
            return []
        from provisioner.migration.model import migration_address

        timings = self.stack.migration_timings if fresh and self.stack.migration_timings is not self._timings \
            else {}
        out = []
        for m in self.plan.migrations:
            if m.mode == "kept":
                continue
            address = migration_address(m.component)
            events = [e for e in self.migration if e.address == address]
            phases = dict(timings.get(m.component, {}))
            for e in events:  # timed phases that ended (what a failed migration still tells)
                if e.message == "done" and e.action not in phases:
                    phases[e.action] = round(e.elapsed, 3)
            steps = []
            for e in events:
                if e.message in ("started", "done"):
                    continue
                step: dict[str, Any] = {"phase": e.action, "message": _redacted(e.message),
                                        "after": round(e.at - self.started, 3)}
                if "traffic" in e.data:
                    step["traffic"] = e.data["traffic"]
                extra = {k: v for k, v in e.data.items() if k != "traffic"}
                if extra:
                    step["data"] = extra
                steps.append(step)
            out.append({"component": m.component, "kind": m.kind, "source": m.source,
                        "destination": m.destination, "mode": m.mode, "keep_source": m.keep_source,
                        "phases": [{"phase": p, "seconds": s} for p, s in phases.items()], "steps": steps})
        return out

    def write(self, error: BaseException | None) -> None:
        """Journal the record; never raises (a lost lock, a closed state: the apply's own outcome stands)."""
        try:
            summary = self.summary(error)
            self.stack.state.journal_instant(self.id, RUN_OP, ResourceRecord(
                address=RUN_ADDRESS, kind=RUN_ADDRESS, target="", id=self.id, inputs=summary))
        except Exception:
            pass


@contextmanager
def recording(stack: Stack, plan: Plan) -> Iterator[Recorder]:
    """Around an apply (under the stack's lock): its events are collected, its run record written at the end."""
    recorder = Recorder(stack, plan)
    stack._listeners.append(recorder.seen)
    error: BaseException | None = None
    try:
        yield recorder
    except BaseException as err:
        error = err
        raise
    finally:
        with suppress(ValueError):
            stack._listeners.remove(recorder.seen)
        recorder.write(error)


def _outcome(events: list[Event], *, ok: bool, shifted: bool, noop: bool) -> tuple[str, float | None]:
    """A change's outcome from its steps' events (a replace has two), and the seconds they took."""
    if not events:
        if (shifted or noop) and ok:  # a front door's traffic shift, a drift recorded: no step event
            return "done", None
        return "skipped", None
    kinds = {e.kind for e in events}
    took = round(sum(e.elapsed for e in events if e.kind in ("step-done", "step-failed")), 3)
    if "step-failed" in kinds or "step-interrupted" in kinds:
        return "failed", took
    if "step-done" in kinds:
        return "done", took
    return "skipped", None


def _redacted(text: str) -> str:
    from provisioner.secrets import redact

    return redact(text)


def _error_text(error: BaseException) -> str:
    from provisioner.errors import MlplatError

    if isinstance(error, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    text = str(error) if isinstance(error, MlplatError) else f"{type(error).__name__}: {error}"
    text = _redacted(text)
    return text if len(text) <= MAX_ERROR else text[:MAX_ERROR - 1] + "…"


# -- reading -------------------------------------------------------------------------------------------------

def runs(state: StateBackend) -> list[dict[str, Any]]:
    """Every run the journal still holds, newest first: the run records, with the apply ids and number of the
    step entries journalled during each; step entries no record covers, grouped by apply id (`recorded`: False)."""
    found: list[dict[str, Any]] = []
    loose: list[JournalEntry] = []  # step entries since the last run record
    for entry in state.journal():
        if entry.op != RUN_OP:
            loose.append(entry)
            continue
        summary = entry.record.inputs if isinstance(entry.record.inputs, dict) else {}
        started = summary.get("started")
        started = float(started) if isinstance(started, int | float) else entry.at
        own = [e for e in loose if e.at >= started]
        found.extend(_grouped([e for e in loose if e.at < started]))
        loose = []
        changes = [dict(zip(CHANGE_FIELDS, row, strict=False)) if isinstance(row, list) else row
                   for row in summary.get("changes") or []]
        found.append({**summary, "changes": changes, "id": entry.record.id or entry.apply_id, "recorded": True,
                      "apply_ids": list(dict.fromkeys(e.apply_id for e in own)), "entries": len(own)})
    found.extend(_grouped(loose))
    found.sort(key=lambda run: run.get("finished") or run.get("started") or 0, reverse=True)
    return found


def _grouped(entries: list[JournalEntry]) -> list[dict[str, Any]]:
    """Step entries without a run record, as one run per apply id."""
    groups: dict[str, list[JournalEntry]] = {}
    for entry in entries:
        groups.setdefault(entry.apply_id, []).append(entry)
    out = []
    for apply_id, group in groups.items():
        ops = {e.op for e in group}
        counts: dict[str, int] = {}
        for e in group:
            counts[e.op] = counts.get(e.op, 0) + 1
        failed = [e for e in group if e.phase == "failed"]
        pending = any(e.phase in ("pending", "resolved") for e in group)
        first, last = min(e.at for e in group), max(e.at for e in group)
        changes = [{"address": e.record.address, "action": e.op, "kind": e.record.kind, "target": e.record.target,
                    "outcome": e.phase, "seconds": None} for e in group[:MAX_CHANGES]]
        out.append({"format": RUN_FORMAT, "id": apply_id, "recorded": False,
                    "verb": "state mv" if ops == {"move"} else "apply", "who": None, "stack": None,
                    "started": first, "finished": last, "seconds": round(last - first, 3),
                    "ok": False if failed else (None if pending else True),
                    "error": _redacted(failed[0].message or "")[:MAX_ERROR] if failed else None,
                    "counts": counts, "outcomes": {}, "changes": changes, "changes_total": len(group),
                    "migrations": [], "apply_ids": [apply_id], "entries": len(group)})
    return out
