"""Apply: walk the plan's DAG, journal each step before and after its provider call (so a crash anywhere is
recoverable), and emit events. Provider calls go through their target's gate (`operations.TargetCalls`):
concurrency and rate limits, retries of transient failures. Ctrl-C stops starting steps, stops waiting, and
leaves the steps in flight journalled for the next apply to resume."""

from __future__ import annotations

import itertools
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from provisioner import progress
from provisioner.errors import LockHeld, MlplatError, PlanError, ProviderError
from provisioner.events import Event
from provisioner.graph import UNKNOWN, Ref, resolve, topological_order
from provisioner.operations import CallGates, Interrupted, RetryPolicy, StepContext, TimeoutFor, operation_timeout
from provisioner.plan import Change, Plan
from provisioner.provider import ResourceProvider, mark_secret_outputs
from provisioner.state.base import ResourceRecord, StateBackend

__all__ = ["Applier", "ApplyFailed", "ApplyOptions", "ApplyResult", "RetryPolicy", "build_steps"]

ProviderFor = Callable[[str, str], ResourceProvider]
Emit = Callable[[Event], None]
#: seconds Ctrl-C waits for steps in flight to finish or stop before the apply exits
INTERRUPT_GRACE = 1.5


@dataclass
class ApplyOptions:
    parallelism: int = 10
    per_target: dict[str, int] = field(default_factory=dict)  # target name -> max provider calls in flight
    per_second: dict[str, float] = field(default_factory=dict)  # target name -> max provider calls started per s
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_for: TimeoutFor | None = None


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
        elif c.action == "replace" and c.recreate_in_place:  # one create call replaces the object by name
            forward[c.address] = _add(steps, f"create:{c.address}", "create", c)
        elif c.action == "replace":  # destroy-first: the delete step takes the deposed objects too
            removal[c.address] = _add(steps, f"delete:{c.address}", "delete", c)
            forward[c.address] = _add(steps, f"create:{c.address}", "create", c)
            steps[forward[c.address]].waits_for.add(removal[c.address])
        if c.deposed and (c.action in ("noop", "update", "create") or c.recreate_in_place):
            # left over by an interrupted blue/green replace: deleted once the current object is in place
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
                 options: ApplyOptions | None = None, *, stop: threading.Event | None = None) -> None:
        self.state, self.provider_for, self.emit = state, provider_for, emit
        self.options = options or ApplyOptions()
        self.apply_id = uuid.uuid4().hex[:12]
        self._tokens = itertools.count(1)  # a step's token: apply id + step number, unique without a uuid each
        self.stop = stop or threading.Event()
        self.gates = CallGates(parallelism=self.options.parallelism, per_target=self.options.per_target,
                               per_second=self.options.per_second, retry=self.options.retry, stop=self.stop,
                               on_retry=lambda address, op, message: emit(Event("step-retry", address, op, message)))
        self._records_lock = threading.Lock()
        #: state-only steps' writes, while the scheduling thread runs a batch of them (`_run_inline`)
        self._batch: list[tuple[Step, str, ResourceRecord, str, ResourceRecord | None, str | None, float]] | None
        self._batch = None
        #: (step, its start) of the step the scheduling thread runs inline
        self._current: tuple[Step, float] | None = None

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
        work: queue.SimpleQueue[str | None] = queue.SimpleQueue()

        def worker() -> None:
            while (key := work.get()) is not None:
                try:
                    self._run_step(steps[key])
                except BaseException as err:
                    finished.put((key, err))
                else:
                    finished.put((key, None))

        # Daemon workers, fed by a queue: Ctrl-C must not wait for a cloud call that does not return, and
        # completions arrive on a queue (waiting on a set of futures would cost O(running) per completion).
        workers = [threading.Thread(target=worker, name=f"mlplat-{i}", daemon=True)
                   for i in range(max(1, min(self.options.parallelism, len(steps))))]
        for thread in workers:
            thread.start()
        running = 0
        try:
            while ready or running:
                if self.stop.is_set():
                    ready = []
                inline = []
                for key in ready:
                    if self._state_only(steps[key]):
                        inline.append(key)
                    else:
                        work.put(key)
                        running += 1
                ready = []
                if inline:  # on this thread, as if workers had finished them
                    self._run_inline(inline, steps, finished)
                    running += len(inline)
                if not running:
                    break
                key, err = finished.get()
                running -= 1
                if isinstance(err, Interrupted):
                    continue
                if err is not None:
                    errors.append(str(err) if isinstance(err, MlplatError) else f"{key}: {err!r}")
                    self._skip_dependents(key, dependents, skipped, steps)
                    continue
                done += 1
                for nxt in dependents[key]:
                    remaining[nxt] -= 1
                    if remaining[nxt] == 0 and nxt not in skipped:
                        ready.append(nxt)
        except KeyboardInterrupt:
            self.stop.set()
            done += self._drain(finished, running)
            raise Interrupted(f"interrupted: {done} of {len(steps)} step(s) done and recorded; steps in flight "
                              "stay journalled", hint="run apply again: it resumes what was in flight "
                                                      "(cloud operations already started are waited on, not "
                                                      "started again)") from None
        finally:
            for _ in workers:
                work.put(None)
        if self.stop.is_set() and done != len(steps):
            raise Interrupted(f"interrupted: {done} of {len(steps)} step(s) done", hint="run apply again")
        if errors:
            raise ApplyFailed(errors, done, [steps[k].change.address for k in skipped])
        if done != len(steps):
            raise PlanError(f"apply stopped after {done} of {len(steps)} steps")
        return ApplyResult(done, self.records, time.perf_counter() - started)

    def _run_inline(self, keys: list[str], steps: dict[str, Step],
                    finished: queue.SimpleQueue[tuple[str, BaseException | None]]) -> None:
        """State-only steps that became ready together, on the scheduling thread; their state writes are made
        in one transaction at the end (they are independent of each other), then each is reported done."""
        self._batch = []
        try:
            for key in keys:
                try:
                    self._run_step(steps[key])
                except Exception as err:
                    finished.put((key, err))
                else:
                    if not (self._batch and self._batch[-1][0] is steps[key]):
                        finished.put((key, None))  # written at once (not a batched kind of step)
        finally:
            batch, self._batch = self._batch, None
        if not batch:
            return
        try:
            self.state.journal_instant_many([(self.apply_id, *entry[1:6]) for entry in batch])
        except Exception as err:
            for step, *_ in batch:
                self.emit(Event("step-failed", step.change.address, step.op, str(err)))
                finished.put((step.key, err))
            return
        for step, _, record, _, _, remove, started in batch:
            self._record_effect(record, remove)
            self.emit(Event("step-done", step.change.address, step.op, elapsed=time.perf_counter() - started))
            finished.put((step.key, None))

    def _instant(self, op: str, record: ResourceRecord, token: str, *, remove: str | None = None) -> None:
        """Journal a state-only step's effect: into the batch when the scheduling thread runs a batch (its
        step-done is then reported after the batch is written), else at once."""
        if self._batch is not None and self._current is not None:
            self._batch.append((self._current[0], op, record, token, None if remove else record, remove,
                                self._current[1]))
            return
        self.state.journal_instant(self.apply_id, op, record, token=token, put=None if remove else record,
                                   remove=remove)
        self._record_effect(record, remove)

    def _record_effect(self, record: ResourceRecord, remove: str | None) -> None:
        """The in-memory records after a journalled write: `record` kept, or the address `remove` dropped."""
        if remove is None:
            self._remember(record)
        else:
            with self._records_lock:
                self.records.pop(remove, None)

    def _state_only(self, step: Step) -> bool:
        return self.provider_for(step.change.target, step.change.kind).state_only

    @staticmethod
    def _drain(finished: queue.SimpleQueue[tuple[str, BaseException | None]], running: int) -> int:
        """After Ctrl-C: give the steps in flight a moment to finish or stop waiting; count those done."""
        deadline = time.monotonic() + INTERRUPT_GRACE
        done = 0
        while running:
            try:
                _, err = finished.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            running -= 1
            done += err is None
        return done

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
        if self.stop.is_set():
            raise Interrupted("interrupted")
        started = time.perf_counter()
        inline = self._batch is not None
        if inline:
            self._current = (step, started)
        self.emit(Event("step-start", change.address, step.op))
        progress.bind(lambda message, data: self.emit(
            Event("progress", change.address, step.op, message, time.perf_counter() - started, data)))
        try:
            getattr(self, "_" + step.op.replace("-", "_"))(change)
        except Interrupted as err:
            self.emit(Event("step-interrupted", change.address, step.op, str(err),
                            elapsed=time.perf_counter() - started))
            raise
        except Exception as err:
            self.emit(Event("step-failed", change.address, step.op, str(err),
                            elapsed=time.perf_counter() - started))
            raise
        finally:
            progress.bind(None)
            self._current = None
        if inline and self._batch and self._batch[-1][0] is step:
            return  # reported done once its batch is written
        self.emit(Event("step-done", change.address, step.op, elapsed=time.perf_counter() - started))

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

    def _context(self, record: ResourceRecord, op: str, token: str, seq: int, **values: Any) -> StepContext:
        provider = self.provider_for(record.target, record.kind)
        timeout = operation_timeout(provider, self.options.timeout_for, record.target, record.kind, op)
        return StepContext(record.address, op, token, timeout=timeout, calls=self.gates(record.target),
                           on_checkpoint=lambda operation: self.state.journal_checkpoint(seq, operation), **values)

    def _create(self, change: Change) -> None:
        inputs = self._resolved_inputs(change)
        provider = self.provider_for(change.target, change.kind)
        with self._records_lock:
            old = self.records.get(change.address)
        in_place = change.recreate_in_place and old is not None
        if old is None:
            deposed: list[str] = []
        elif change.action == "replace" and not in_place:
            deposed = [*old.deposed, old.id]  # create-before-destroy: the old object waits for delete-deposed
        else:  # re-create of an object deleted out of band, or an in-place recreate: same deposed as before
            deposed = list(old.deposed)
        depends_on = list(change.depends_on)
        if deposed and old is not None:  # a deposed object still uses what the old one did: delete it first
            depends_on += [d for d in old.depends_on if d not in depends_on]
        record = ResourceRecord(change.address, change.kind, change.target, "", inputs,
                                depends_on=depends_on, deposed=deposed)
        token = self._token()
        if provider.state_only and not deposed and not in_place:  # nothing outside the state: one write
            created = provider.create(change.address, inputs, self._context(record, "create", token, 0))
            record.id, record.outputs = created.id, mark_secret_outputs(provider, created.outputs)
            self._instant("create", record, token)
            return
        seq = self.state.journal_pending(self.apply_id, "create", record, token=token)
        ctx = self._context(record, "create", token, seq, exclude=frozenset(deposed),
                            replacing=old.id if in_place and old is not None else None)
        created = self._call(ctx, seq, lambda: provider.create(change.address, inputs, ctx))
        record.id, record.outputs = created.id, mark_secret_outputs(provider, created.outputs)
        record.deposed = [d for d in deposed if d != created.id]  # a name-keyed cloud answered with the same object
        self._close(seq, provider, record, ctx)
        self._remember(record)

    def _close(self, seq: int, provider: ResourceProvider, record: ResourceRecord, ctx: StepContext) -> None:
        """Journal a create as done. If another process took the lock over meanwhile (this one was paused past
        its lease), the write is refused: delete the object just made unless the state now names it, so the
        takeover's plan (which never saw it) does not leave it orphaned."""
        try:
            self.state.journal_done(seq, put=record)
        except LockHeld:
            recorded = {i for r in self.state.resources().values() for i in (r.id, *r.deposed)}
            if record.id not in recorded and record.id not in ctx.exclude and ctx.replacing is None:
                try:
                    provider.delete(record.id, record.inputs, ctx)
                    self.emit(Event("warning", record.address, "create",
                                    f"lost the lock: deleted {record.id}, which no state records"))
                except Exception as err:
                    self.emit(Event("warning", record.address, "create",
                                    f"lost the lock: could not delete {record.id}, which no state records: {err}"))
            raise

    def _update(self, change: Change) -> None:
        inputs = self._resolved_inputs(change)
        provider = self.provider_for(change.target, change.kind)
        with self._records_lock:
            old = self.records[change.address]
        record = ResourceRecord(change.address, change.kind, change.target, old.id, inputs, dict(old.outputs),
                                list(change.depends_on), list(old.deposed))
        prior = change.before or old.inputs
        if provider.diff(prior, inputs).empty:  # the plan's "known after apply" values came out unchanged
            if record.depends_on != old.depends_on or record.inputs != old.inputs:
                self.state.put(record)
            self._remember(record)
            return
        token = self._token()
        seq = self.state.journal_pending(self.apply_id, "update", record, token=token)
        ctx = self._context(record, "update", token, seq)
        outputs = self._call(ctx, seq, lambda: provider.update(old.id, prior, inputs, ctx))
        record.outputs.update(mark_secret_outputs(provider, outputs or {}))
        self.state.journal_done(seq, put=record)
        self._remember(record)

    def _delete(self, change: Change) -> None:
        """Delete the recorded object, its deposed predecessors first (none is ever forgotten)."""
        with self._records_lock:
            old = self.records.get(change.address)
        if old is None:
            return
        provider = self.provider_for(old.target, old.kind)
        if old.deposed:
            self._delete_deposed_of(old, provider)
        token = self._token()
        if provider.state_only:  # nothing outside the state: one write
            provider.delete(old.id, old.inputs, self._context(old, "delete", token, 0))
            self._instant("delete", old, token, remove=change.address)
            return
        seq = self.state.journal_pending(self.apply_id, "delete", old, token=token)
        if change.drift != {"$gone": True}:
            ctx = self._context(old, "delete", token, seq)
            self._call(ctx, seq, lambda: provider.delete(old.id, old.inputs, ctx))
        self.state.journal_done(seq, remove=change.address)
        with self._records_lock:
            self.records.pop(change.address, None)

    def _delete_deposed(self, change: Change) -> None:
        with self._records_lock:
            current = self.records[change.address]
        self._delete_deposed_of(current, self.provider_for(current.target, current.kind), change.before)
        if change.action != "delete" and current.depends_on != list(change.depends_on):
            current.depends_on = list(change.depends_on)  # the deposed objects' edges go with them
            self.state.put(current)

    def _delete_deposed_of(self, current: ResourceRecord, provider: ResourceProvider,
                           inputs: dict[str, Any] | None = None) -> None:
        for old_id in list(current.deposed):
            if old_id == current.id:  # never delete, as "old", the object the record names
                current.deposed.remove(old_id)
                self.state.put(current)
                continue
            entry = ResourceRecord(current.address, current.kind, current.target, old_id, inputs or current.inputs)
            token = self._token()
            seq = self.state.journal_pending(self.apply_id, "delete-deposed", entry, token=token)
            ctx = self._context(entry, "delete", token, seq)
            self._call(ctx, seq, lambda i=old_id, e=entry, c=ctx: provider.delete(i, e.inputs, c))
            current.deposed.remove(old_id)
            self.state.journal_done(seq, put=current)

    def _token(self) -> str:
        return f"{self.apply_id}-{next(self._tokens)}"

    def _remember(self, record: ResourceRecord) -> None:
        with self._records_lock:
            self.records[record.address] = record

    def _call(self, ctx: StepContext, seq: int, fn: Callable[[], Any]) -> Any:
        """The provider call through its target's gate; a failure is journalled (an interruption is not: the
        entry stays pending, and the next apply's recovery resumes it)."""
        assert ctx.calls is not None
        try:
            return ctx.calls.call(ctx.address, ctx.op, fn)
        except (Interrupted, LockHeld):
            raise
        except ProviderError as err:
            self.state.journal_failed(seq, str(err))
            raise
