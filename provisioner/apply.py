"""Apply: walk the plan's DAG with bounded concurrency per target, retry transient failures, journal each step
before and after its provider call (so a crash anywhere is recoverable), and emit events."""

from __future__ import annotations

import queue
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from provisioner import progress
from provisioner.errors import MlplatError, PlanError, ProviderError, RetryableError
from provisioner.events import Event
from provisioner.graph import UNKNOWN, Ref, resolve, topological_order
from provisioner.plan import Change, Plan
from provisioner.provider import ResourceProvider
from provisioner.state.base import ResourceRecord, StateBackend

ProviderFor = Callable[[str, str], ResourceProvider]
Emit = Callable[[Event], None]


@dataclass
class RetryPolicy:
    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** attempt))  # full jitter


@dataclass
class ApplyOptions:
    parallelism: int = 10
    per_target: dict[str, int] = field(default_factory=dict)  # target name -> max concurrent steps
    retry: RetryPolicy = field(default_factory=RetryPolicy)


class ApplyFailed(MlplatError):
    def __init__(self, errors: list[str], done: int, skipped: list[str]) -> None:
        self.errors, self.done, self.skipped = errors, done, skipped
        message = "apply failed:\n  " + "\n  ".join(errors)
        if skipped:
            message += f"\n  skipped because a dependency failed: {', '.join(sorted(skipped))}"
        super().__init__(message, hint=f"{done} step(s) completed and are recorded in the state; fix the cause "
                                       "and run apply again — it continues from here")


@dataclass
class Step:
    key: str
    op: str  # create | update | delete | delete-deposed
    change: Change
    waits_for: set[str] = field(default_factory=set)


@dataclass
class ApplyResult:
    done: int
    records: dict[str, ResourceRecord]
    elapsed: float


def build_steps(plan: Plan) -> dict[str, Step]:
    """The plan's changes as steps with direct ordering edges."""
    steps: dict[str, Step] = {}
    forward: dict[str, str] = {}  # address -> key of its create/update step
    removal: dict[str, str] = {}  # address -> key of the step that deletes its old object
    changes = {c.address: c for c in plan.changes}
    for c in plan.changes:
        if c.action in ("create", "update"):
            forward[c.address] = _add(steps, f"{c.action}:{c.address}", c.action, c)
        elif c.action == "delete":
            removal[c.address] = _add(steps, f"delete:{c.address}", "delete", c)
        elif c.action == "replace" and c.create_before_destroy:
            forward[c.address] = _add(steps, f"create:{c.address}", "create", c)
            removal[c.address] = _add(steps, f"delete-deposed:{c.address}", "delete-deposed", c)
            steps[removal[c.address]].waits_for.add(forward[c.address])
        elif c.action == "replace":
            removal[c.address] = _add(steps, f"delete:{c.address}", "delete", c)
            forward[c.address] = _add(steps, f"create:{c.address}", "create", c)
            steps[forward[c.address]].waits_for.add(removal[c.address])
        if c.deposed and c.action in ("noop", "update"):  # left over by an interrupted blue/green replace
            removal[c.address] = _add(steps, f"delete-deposed:{c.address}", "delete-deposed", c)
            if c.address in forward:  # both steps rewrite this resource's record: one after the other
                steps[removal[c.address]].waits_for.add(forward[c.address])
    for address, key in forward.items():
        # A resource is created/updated after the resources it depends on.
        steps[key].waits_for.update(forward[d] for d in changes[address].depends_on if d in forward)
    users: dict[str, list[str]] = {}  # address -> addresses of the desired resources that depend on it
    for c in plan.changes:
        if c.action != "delete":
            for dep in c.depends_on:
                users.setdefault(dep, []).append(c.address)
    for c in plan.changes:
        # An old object is deleted only after whatever used it has let go of it: the user's old object was
        # deleted, or the user was updated/created to no longer point at it.
        for dep in c.prior_depends_on:
            if dep not in removal:
                continue
            if c.address in removal:
                steps[removal[dep]].waits_for.add(removal[c.address])
            if c.address in forward and dep not in c.depends_on:
                steps[removal[dep]].waits_for.add(forward[c.address])
        if removal.get(c.address, "").startswith("delete-deposed:"):
            # blue/green (now, or left over by an interrupted apply): the replaced object goes only once its
            # users point at the new one
            for user in users.get(c.address, ()):
                if user in forward:
                    steps[removal[c.address]].waits_for.add(forward[user])
    for step in steps.values():
        step.waits_for.discard(step.key)
    topological_order(steps, {k: s.waits_for for k, s in steps.items()})  # a cycle here is an engine bug
    return steps


def _add(steps: dict[str, Step], key: str, op: str, change: Change) -> str:
    steps[key] = Step(key, op, change)
    return key


class Applier:
    def __init__(self, state: StateBackend, provider_for: ProviderFor, emit: Emit,
                 options: ApplyOptions | None = None) -> None:
        self.state, self.provider_for, self.emit = state, provider_for, emit
        self.options = options or ApplyOptions()
        self.apply_id = uuid.uuid4().hex[:12]
        self._records_lock = threading.Lock()
        self._semaphores: dict[str, threading.Semaphore] = {}

    def run(self, plan: Plan) -> ApplyResult:
        started = time.perf_counter()
        self.records = self.state.resources()
        steps = build_steps(plan)
        dependents: dict[str, list[str]] = {k: [] for k in steps}
        remaining = {k: len(s.waits_for) for k, s in steps.items()}
        for key, step in steps.items():
            for dep in step.waits_for:
                dependents[dep].append(key)
        ready = [k for k, n in remaining.items() if n == 0]
        errors: list[str] = []
        skipped: set[str] = set()
        done = 0
        finished: queue.SimpleQueue[tuple[str, BaseException | None]] = queue.SimpleQueue()

        def run(key: str) -> None:
            try:
                self._run_step(steps[key])
            except BaseException as err:
                finished.put((key, err))
            else:
                finished.put((key, None))

        # Completions arrive on a queue: waiting on a set of futures would cost O(running) per completion.
        with ThreadPoolExecutor(max_workers=max(1, self.options.parallelism), thread_name_prefix="mlplat") as pool:
            running = 0
            while ready or running:
                for key in ready:
                    pool.submit(run, key)
                running += len(ready)
                ready = []
                key, err = finished.get()
                running -= 1
                if err is not None:
                    errors.append(str(err) if isinstance(err, MlplatError) else f"{key}: {err!r}")
                    self._skip_dependents(key, dependents, skipped, steps)
                    continue
                done += 1
                for nxt in dependents[key]:
                    remaining[nxt] -= 1
                    if remaining[nxt] == 0 and nxt not in skipped:
                        ready.append(nxt)
        if errors:
            raise ApplyFailed(errors, done, [steps[k].change.address for k in skipped])
        if done != len(steps):
            raise PlanError(f"apply stopped after {done} of {len(steps)} steps")
        return ApplyResult(done, self.records, time.perf_counter() - started)

    def _skip_dependents(self, key: str, dependents: dict[str, list[str]], skipped: set[str],
                         steps: dict[str, Step]) -> None:
        stack = list(dependents[key])
        while stack:
            nxt = stack.pop()
            if nxt not in skipped:
                skipped.add(nxt)
                self.emit(Event("step-skipped", steps[nxt].change.address, steps[nxt].op))
                stack.extend(dependents[nxt])

    # -- one step ---------------------------------------------------------------------------------------------
    def _run_step(self, step: Step) -> None:
        change = step.change
        sem = self._semaphore(change.target)
        with sem:
            started = time.perf_counter()
            self.emit(Event("step-start", change.address, step.op))
            progress.bind(lambda message, data: self.emit(
                Event("progress", change.address, step.op, message, time.perf_counter() - started, data)))
            try:
                getattr(self, "_" + step.op.replace("-", "_"))(change)
            except Exception as err:
                self.emit(Event("step-failed", change.address, step.op, str(err),
                                elapsed=time.perf_counter() - started))
                raise
            finally:
                progress.bind(None)
            self.emit(Event("step-done", change.address, step.op, elapsed=time.perf_counter() - started))

    def _semaphore(self, target: str) -> threading.Semaphore:
        sem = self._semaphores.get(target)
        if sem is None:
            limit = self.options.per_target.get(target, self.options.parallelism)
            sem = self._semaphores.setdefault(target, threading.Semaphore(max(1, limit)))
        return sem

    def _resolved_inputs(self, change: Change) -> dict[str, Any]:
        def lookup(ref: Ref) -> Any:
            with self._records_lock:
                record = self.records.get(ref.address)
            value = record.outputs.get(ref.output, UNKNOWN) if record else UNKNOWN
            if value is UNKNOWN:
                raise ProviderError(change.address, f"input refers to {ref.address}.{ref.output}, which has no "
                                                    "value (was that resource applied?)")
            return value

        return resolve(change.after or {}, lookup)

    def _create(self, change: Change) -> None:
        inputs = self._resolved_inputs(change)
        provider = self.provider_for(change.target, change.kind)
        with self._records_lock:
            old = self.records.get(change.address)
        deposed = [*old.deposed, old.id] if old is not None and change.action == "replace" else []
        record = ResourceRecord(change.address, change.kind, change.target, "", inputs,
                                depends_on=list(change.depends_on), deposed=deposed)
        seq = self.state.journal_pending(self.apply_id, "create", record)
        created = self._call(change.address, "create", seq, lambda: provider.create(change.address, inputs))
        record.id, record.outputs = created.id, created.outputs
        self.state.journal_done(seq, put=record)
        self._remember(record)

    def _update(self, change: Change) -> None:
        inputs = self._resolved_inputs(change)
        provider = self.provider_for(change.target, change.kind)
        with self._records_lock:
            old = self.records[change.address]
        record = ResourceRecord(change.address, change.kind, change.target, old.id, inputs, dict(old.outputs),
                                list(change.depends_on), list(old.deposed))
        seq = self.state.journal_pending(self.apply_id, "update", record)
        prior = change.before or old.inputs
        outputs = self._call(change.address, "update", seq, lambda: provider.update(old.id, prior, inputs))
        record.outputs.update(outputs or {})
        self.state.journal_done(seq, put=record)
        self._remember(record)

    def _delete(self, change: Change) -> None:
        with self._records_lock:
            old = self.records.get(change.address)
        if old is None:
            return
        provider = self.provider_for(old.target, old.kind)
        seq = self.state.journal_pending(self.apply_id, "delete", old)
        if change.drift != {"$gone": True}:
            self._call(change.address, "delete", seq, lambda: provider.delete(old.id, old.inputs))
        self.state.journal_done(seq, remove=change.address)
        with self._records_lock:
            self.records.pop(change.address, None)

    def _delete_deposed(self, change: Change) -> None:
        with self._records_lock:
            current = self.records[change.address]
        provider = self.provider_for(current.target, current.kind)
        for old_id in list(current.deposed):
            entry = ResourceRecord(change.address, current.kind, current.target, old_id, change.before or {})
            seq = self.state.journal_pending(self.apply_id, "delete-deposed", entry)
            self._call(change.address, "delete", seq, lambda i=old_id: provider.delete(i, change.before or {}))
            current.deposed.remove(old_id)
            self.state.journal_done(seq, put=current)

    def _remember(self, record: ResourceRecord) -> None:
        with self._records_lock:
            self.records[record.address] = record

    def _call(self, address: str, op: str, seq: int, fn: Callable[[], Any]) -> Any:
        policy = self.options.retry
        for attempt in range(policy.attempts):
            try:
                return fn()
            except RetryableError as err:
                if attempt == policy.attempts - 1:
                    self.state.journal_failed(seq, str(err))
                    raise ProviderError(address, f"{op} failed after {policy.attempts} attempts: {err}") from None
                delay = policy.delay(attempt, err.retry_after)
                self.emit(Event("step-retry", address, op, f"{err} (retrying in {delay:.1f}s)"))
                time.sleep(delay)
            except ProviderError as err:
                self.state.journal_failed(seq, str(err))
                raise
            except Exception as err:  # a provider/SDK failure: name the resource and the cloud's message
                self.state.journal_failed(seq, str(err))
                raise ProviderError(address, f"{op} failed: {err}") from err
        raise AssertionError("unreachable")
