"""The Python API: what the CLI calls. `Stack(path)` ties a stack file to its targets, plugins and state."""

from __future__ import annotations

import difflib
import json
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from provisioner import plugins, spec
from provisioner.apply import Applier, ApplyOptions, ApplyResult
from provisioner.errors import MlplatError, PlanError, SpecError, StateError
from provisioner.events import Event
from provisioner.graph import Ref, Resource, from_json, resolve, to_json
from provisioner.operations import CallGates
from provisioner.plan import Change, Plan, input_drift, make_destroy_plan, make_plan
from provisioner.provider import Observed, ResourceProvider, mark_secret_outputs, observed_inputs
from provisioner.recovery import recover
from provisioner.secrets import contains_secret
from provisioner.spec.loader import Loc, format_loc
from provisioner.spec.model import Component, component_kind
from provisioner.state import LockInfo, ResourceRecord, StateBackend, open_state
from provisioner.state.lease import LeaseKeeper
from provisioner.target import STACK_SCOPE, Capabilities, LowerContext, Reason, Target, TargetContext
from provisioner.timeouts import Timeouts

Listener = Callable[[Event], None]


class Stack:
    """One stack file, its targets (instantiated on first use), its lowered resources and its state."""

    def __init__(self, path: str | Path, *, state_url: str | None = None, listeners: list[Listener] | None = None,
                 options: ApplyOptions | None = None, lock_timeout: float = 0.0,
                 force_new_state: bool = False) -> None:
        self.loaded = spec.load(path)
        self.platform = self.loaded.platform
        self.name = self.platform.metadata.name
        self.directory = self.loaded.directory.resolve()
        self.options = options or ApplyOptions()
        self._state_url = state_url
        self._listeners = list(listeners or [])
        self._targets: dict[str, Target] | None = None
        self._timeouts: dict[str, Timeouts] = {}
        self._providers: dict[tuple[str, str], ResourceProvider] = {}
        self._state: StateBackend | None = None
        self._lowered: tuple[dict[str, Resource], dict[str, Any]] | None = None
        self._discovery: dict[str, dict[str, Any]] | None = None
        self._lock_depth = 0
        self._lock_id = ""
        self.lock_timeout = lock_timeout
        self.force_new_state = force_new_state
        self._lease: LeaseKeeper | None = None

    # -- events -----------------------------------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        for listener in self._listeners:
            listener(event)
        plugins.manager().hook.mlplat_on_event(event=event)

    # -- targets ----------------------------------------------------------------------------------------------
    @property
    def targets(self) -> dict[str, Target]:
        if self._targets is None:
            self._targets = self._make_targets()
        return self._targets

    def _make_targets(self) -> dict[str, Target]:
        types = plugins.target_types()
        used: dict[str, Loc] = {name: ("targets", name) for name in self.platform.targets}
        used.setdefault(self.platform.target, ("target",))
        for loc, component in self.components():
            if component.target:
                used.setdefault(component.target, (*loc, "target"))
        targets: dict[str, Target] = {}
        problems: list[str] = []
        for name, loc in used.items():
            settings = dict(self.platform.targets.get(name) or {})
            type_name = settings.pop("type", name)
            try:  # `timeouts:` is the engine's, on every target
                self._timeouts[name] = Timeouts.model_validate(settings.pop("timeouts", None) or {})
            except Exception as err:
                if type(err).__name__ != "ValidationError":
                    raise
                problems.extend(self.loaded.describe(err, ("targets", name, "timeouts"), Timeouts))
            target_type = types.get(type_name)
            if target_type is None:
                known = ", ".join(sorted(types)) or "none"
                declared = ", ".join(sorted(self.platform.targets)) or "none"
                where = ("targets", name, "type") if name in self.platform.targets else loc
                problems.append(f"{self.loaded.where(where)}: unknown target {type_name!r} (installed target "
                                f"types: {known}; targets declared in this stack: {declared})")
                continue
            try:
                model = target_type.settings_model.model_validate(settings)
            except Exception as err:
                if type(err).__name__ != "ValidationError":
                    raise
                problems.extend(self.loaded.describe(err, ("targets", name), target_type.settings_model))
                continue
            missing = target_type.missing_sdk()
            if missing:
                problems.append(f"{self.loaded.where(loc)}: target {name!r} ({type_name}) needs "
                                f"{', '.join(missing)}, which is not installed: {target_type.install_line(missing)}")
                continue
            work_dir = self.directory / ".mlplat" / self.name / name
            targets[name] = target_type(model, TargetContext(self.name, name, self.directory, work_dir))
        if problems:
            raise SpecError(problems, hint="`mlplat plugins` lists the installed targets; a target's cloud SDK is "
                                           "an extra, e.g. pip install 'mlplat[aws]'")
        return targets

    def components(self) -> list[tuple[Loc, Component]]:
        return self.platform.located_components()

    def provider_for(self, target: str, kind: str) -> ResourceProvider:
        key = (target, kind)
        provider = self._providers.get(key)
        if provider is None:
            if target not in self.targets:
                raise PlanError(f"the state holds a {kind} on target {target!r}, which this stack no longer "
                                "declares", hint=f"declare targets.{target} again so mlplat can manage it")
            provider = self._providers[key] = self.targets[target].provider(kind)
        return provider

    # -- validate / lower -------------------------------------------------------------------------------------
    def validate(self) -> list[plugins.Finding]:
        """Target settings, capability checks, policy hooks and lowering (no discovery: validate calls no cloud).
        Raises SpecError on errors; returns warnings."""
        warnings = self.check()
        self.lower()
        return warnings

    def check(self) -> list[plugins.Finding]:
        """`validate` without lowering."""
        _ = self.targets  # every target named is known and configured, components or not
        problems: list[str] = []
        reasons: list[dict[str, str]] = []
        warnings: list[plugins.Finding] = []
        for loc, component, reason in self.check_capabilities():
            if reason.severity == "error":
                problems.append(self.loaded.problem(loc, reason.message))
                reasons.append({"at": self.loaded.where(loc), "path": format_loc(loc), "code": reason.code,
                                "message": reason.message})
            else:
                warnings.append(plugins.Finding(reason.message, severity="warning", component=component.name))
        findings = [f for batch in plugins.manager().hook.mlplat_validate(platform=self.platform) for f in batch or ()]
        locs = {component.name: loc for loc, component in self.components()}
        for f in findings:
            if f.severity == "error":
                problems.append(self.loaded.problem(locs.get(f.component or "", ()), f.message))
        if problems:
            raise SpecError(problems, reasons=reasons)
        return [*warnings, *(f for f in findings if f.severity != "error")]

    def check_capabilities(self) -> list[tuple[Loc, Component, Reason]]:
        """Every component checked against its target's capabilities: (stack-file location, component, reason)."""
        from provisioner.capabilities import check_component

        found = []
        caps: dict[str, Capabilities] = {}  # once per target: a cloud's derives from its catalog rows
        for loc, component in self.components():
            name = self.platform.target_of(component)
            target = self.targets[name]
            if name not in caps:
                caps[name] = target.capabilities()
            where = f"target {name!r} ({target.name})"
            for reason in (*check_component(component, caps[name], where, self.platform), *target.check(component)):
                found.append(((*loc, *reason.loc), component, reason))
        return found

    def discovery(self, *, fresh: bool = False) -> dict[str, dict[str, Any]]:
        """What each target in use discovered (`Target.discover`), once per plan; targets discovering nothing
        are left out. Each target also keeps its own as `discovered`, for lowering."""
        if self._discovery is None or fresh:
            found: dict[str, dict[str, Any]] = {}
            gates = self.gates()
            for name in self._targets_in_use():
                target = self.targets[name]
                try:  # through the target's gate: a throttled discovery call is retried like any other
                    facts = gates(name).call(f"{STACK_SCOPE}.{name}", "discover", target.discover)
                    facts = json.loads(json.dumps(facts, sort_keys=True))
                except MlplatError as err:
                    raise PlanError(f"target {name!r}: discovery failed: {err.message}", hint=err.hint) from None
                target.discovered = facts
                if facts:
                    found[name] = facts
            if found != (self._discovery or {}):
                self._lowered = None  # lowering may depend on what was discovered
            self._discovery = found
        return self._discovery

    def _targets_in_use(self) -> list[str]:
        return list(dict.fromkeys(self.platform.target_of(c) for _, c in self.components()))

    def lower(self) -> tuple[dict[str, Resource], dict[str, Any]]:
        """Each target's stack-scoped resources, then every component's; component resources on a target depend
        on its stack-scoped ones (made first, deleted last)."""
        if self._lowered is not None:
            return self._lowered
        component_outputs: dict[str, dict[str, Any]] = {}
        ctx = LowerContext(self.platform, component_outputs)
        resources: dict[str, Resource] = {}
        outputs: dict[str, Any] = {}
        scoped: dict[str, list[str]] = {}
        for target_name in self._targets_in_use():
            target = self.targets[target_name]
            lowered = target.lower_stack(ctx)
            prefix = f"{STACK_SCOPE}.{target_name}"
            self._add(resources, lowered.resources, target_name, f"{prefix}.",
                      f"target {target_name!r} lowered a stack-scoped resource outside {prefix}.")
            scoped[target_name] = [r.address for r in lowered.resources]
            component_outputs[prefix] = lowered.outputs
        for loc, component in self.components():
            target_name = self.platform.target_of(component)
            try:
                lowered = self.targets[target_name].lower(component, ctx)
            except MlplatError as err:
                raise SpecError([f"{self.loaded.where(loc)}: {component_kind(component)} {component.name!r} on "
                                 f"target {target_name!r}: {err.message}"], hint=err.hint) from None
            self._add(resources, lowered.resources, target_name, f"{component.name}.",
                      f"target {target_name!r} lowered component {component.name!r} to a resource outside "
                      f"{component.name}.")
            first = scoped[target_name]
            for res in lowered.resources if first else ():
                # an edge to another component resource on this target already orders it after the first ones
                if not any(e in resources and e not in first and resources[e].target == target_name
                           for e in res.edges):
                    res.depends_on = (*res.depends_on, *(a for a in first if a not in res.edges))
                    res.edges = res.edges | frozenset(first)
            component_outputs[component.name] = lowered.outputs
            outputs.update({f"{component.name}.{k}": v for k, v in lowered.outputs.items()})
        self._lowered = (resources, outputs)
        return self._lowered

    @staticmethod
    def _add(resources: dict[str, Resource], new: list[Resource], target: str, prefix: str, outside: str) -> None:
        for res in new:
            if not res.address.startswith(prefix):
                raise PlanError(f"{outside}: {res.address} (a plugin bug)")
            if res.address in resources:
                raise PlanError(f"two resources share the address {res.address}")
            res.target = target
            resources[res.address] = res

    def estimate_cost(self) -> float | None:
        hook = plugins.manager().hook.mlplat_estimate_cost
        costs = [c for res in self.lower()[0].values() for c in hook(resource=res)[:1] if c is not None]
        return sum(costs) if costs else None

    # -- state ------------------------------------------------------------------------------------------------
    @property
    def state(self) -> StateBackend:
        if self._state is None:
            cfg = self.platform.state
            state = open_state(self.name, self.directory, url=self._state_url or cfg.url,
                               backend=cfg.backend, path=cfg.path)
            if not self.force_new_state and state.meta().serial == 0 and not state.resources():
                try:
                    self._refuse_new_state_beside_leftovers(state)
                except BaseException:
                    state.close()
                    raise
            self._state = state
        return self._state

    def _refuse_new_state_beside_leftovers(self, state: StateBackend) -> None:
        """A state never written to (new, or a 0-byte file) while the targets' working areas hold objects
        means the state that named them was lost: planning from nothing would start everything again."""
        found = [line for target in self.targets.values() for line in target.leftovers()]
        if found:
            shown = "\n  ".join(found[:5]) + (f"\n  … and {len(found) - 5} more" if len(found) > 5 else "")
            raise StateError(f"the state {state.url} is empty, but this stack's working area holds what an "
                             f"earlier state recorded:\n  {shown}",
                             hint="restore the state file from its backup (<state>.backup) or a copy; to start "
                                  "over beside these objects anyway, pass --force-new-state")

    @contextmanager
    def locked(self, operation: str) -> Iterator[None]:
        """Hold the stack's lock (re-entrant within this object)."""
        if self._lock_depth == 0:
            self._lock_id = uuid.uuid4().hex[:8]
            info = LockInfo(self._lock_id, operation)

            def waiting(holder: LockInfo) -> None:
                if self.lock_timeout >= holder.lease or not holder.lease_expired(self.state.clock()):
                    message = f"waiting up to {self.lock_timeout:.0f}s for the lock held by {holder.describe()}"
                else:  # acquire_lock watches one lease for a heartbeat before taking a lock over
                    message = (f"the lock held by {holder.describe()} looks expired: watching for a heartbeat "
                               f"for up to {holder.lease:.0f}s before taking it over")
                self.emit(Event("warning", message=message))

            previous = self.state.acquire_lock(info, timeout=self.lock_timeout, waiting=waiting)
            if previous is not None:
                reason = self.state.took_over_because or previous.gone_because() or "that process is gone"
                self.emit(Event("warning", message=f"took over the lock of {previous.describe()}: {reason}"))
            self.state.fence, self.state.lost_lock = self._lock_id, None  # every state write checks the lock
            self._lease = LeaseKeeper(self.state, info, self.emit)
        self._lock_depth += 1
        try:
            yield
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0:
                if self._lease is not None:
                    self._lease.stop()
                    self._lease = None
                # the fence stays on the released lock: a straggling worker of an interrupted apply (Ctrl-C
                # exits without joining it) can no longer write; the next locked() fences on its own lock
                self.state.release_lock(self._lock_id)

    def timeout_for(self, target: str, kind: str, op: str) -> float | None:
        """Seconds a `kind` operation may wait on `target`, from the target's `timeouts:` (None: not set)."""
        if self._targets is None:
            _ = self.targets  # parses each target's settings, timeouts included
        timeouts = self._timeouts.get(target)
        return timeouts.seconds(kind, op) if timeouts is not None else None

    def gates(self) -> CallGates:
        """The call limits of a command that is not an apply (refresh, recovery): the targets' declared ones."""
        options = self._options_for(None)
        return CallGates(parallelism=options.parallelism, per_target=options.per_target,
                         per_second=options.per_second, retry=options.retry,
                         on_retry=lambda address, op, message: self.emit(Event("step-retry", address, op, message)))

    def recover(self) -> int:
        """Resolve journal entries a crashed apply left pending (needs the lock)."""
        if not self.state.pending():
            return 0
        with self.locked("recover"):
            return recover(self.state, self.provider_for, self.emit, self.gates(), self.timeout_for)

    def observe(self, records: dict[str, ResourceRecord]) -> dict[str, Observed | None]:
        """`read` every recorded resource, in parallel (cloud reads are slow), through each target's limits and
        retries (a throttled read is retried, not fatal); write-only inputs are taken from the records."""
        gates = self.gates()

        def read(record: ResourceRecord) -> tuple[str, Observed | None]:
            provider = self.provider_for(record.target, record.kind)
            seen = gates(record.target).call(record.address, "read", lambda: provider.read(record.id, record.inputs))
            if seen is not None:
                seen = Observed(observed_inputs(provider, record.inputs, seen.inputs),
                                mark_secret_outputs(provider, seen.outputs))
            return record.address, seen

        if not records:
            return {}
        with ThreadPoolExecutor(max_workers=max(1, min(self.options.parallelism, len(records)))) as pool:
            return dict(pool.map(read, records.values()))

    # -- plan / apply -----------------------------------------------------------------------------------------
    def plan(self, *, refresh: bool = True, destroy: bool = False) -> Plan:
        self.recover()
        meta = self.state.meta()
        records = self.state.resources()
        if destroy:
            plan = make_destroy_plan(records, stack=self.name, lineage=meta.lineage, serial=meta.serial)
        else:
            self.check()
            discovery = self.discovery()  # before lowering, which may use it
            desired, outputs = self.lower()
            if any(contains_secret(r.inputs) or self.provider_for(r.target, r.kind).secret_outputs
                   for r in desired.values()):
                self.state.codec.require_key()  # refuse now, not after the cloud call returned a secret
            refreshed = self.observe(records) if refresh else None
            plan = make_plan(desired, records, self.provider_for, stack=self.name, lineage=meta.lineage,
                             serial=meta.serial, refreshed=refreshed, outputs=outputs)
            plan.discovery = discovery
        plan.stack_file = str(self.loaded.path.resolve())  # a saved plan is applied from any directory
        return plan

    def apply(self, plan: Plan) -> ApplyResult:
        with self.locked("destroy" if plan.destroy else "apply"):
            meta = self.state.meta()
            if plan.stack != self.name:
                raise PlanError(f"this plan is for stack {plan.stack!r}, not {self.name!r}")
            if (plan.lineage, plan.serial) != (meta.lineage, meta.serial):
                raise PlanError(f"the saved plan is stale: it was made at state serial {plan.serial}, and the "
                                f"state is now at serial {meta.serial}" if plan.lineage == meta.lineage else
                                "the saved plan was made for a different state (lineage differs)",
                                hint="make a new plan: mlplat preview -o plan.json")
            if self.state.pending():
                raise PlanError("the state has unresolved steps from an interrupted apply",
                                hint="run mlplat preview (it recovers them) and apply the new plan")
            if plan.discovery:
                self._check_discovery(plan)
            self.state.bump_serial()
            self._record_drift(plan)
            if not plan.destroy:  # before any step: outputs are references resolved against records, so a
                self.state.set_outputs(to_json(plan.outputs))  # kill at any point leaves them right
            result = Applier(self.state, self.provider_for, self.emit, self._options_for(plan)).run(plan)
            if plan.destroy:
                self.state.set_outputs({})
            self.sweep()
            return result

    def _check_discovery(self, plan: Plan) -> None:
        """A plan is applied against what its targets discovered when it was made, or not at all."""
        now = self.discovery(fresh=True)
        changed = [f"target {name!r}: {key} was {json.dumps(facts.get(key))}, now {json.dumps(seen.get(key))}"
                   for name in sorted(set(plan.discovery) | set(now))
                   for facts, seen in [(plan.discovery.get(name, {}), now.get(name, {}))]
                   for key in sorted(set(facts) | set(seen)) if facts.get(key) != seen.get(key)]
        if changed:
            raise PlanError("the plan was made against a target that has changed since:\n  " + "\n  ".join(changed),
                            hint="make a new plan: mlplat preview -o plan.json")

    def sync_outputs(self, plan: Plan) -> None:
        """Record the plan's outputs if the state's differ (a state an older version left without them)."""
        if not plan.destroy and self.state.get_outputs() != to_json(plan.outputs):
            with self.locked("apply"):
                self.state.set_outputs(to_json(plan.outputs))

    def sweep(self) -> list[str]:
        """Let each target remove what it left that no record names (needs the lock; nothing pending)."""
        if self.state.pending():
            return []
        records = self.state.resources()
        by_target: dict[str, set[str]] = {name: set() for name in self.targets}
        for record in records.values():
            by_target.setdefault(record.target, set()).update([record.id, *record.deposed])
        swept = []
        for name, target in self.targets.items():
            for line in target.sweep(frozenset(by_target[name])):
                swept.append(line)
                self.emit(Event("warning", message=f"removed a leftover no record names: {line}"))
        return swept

    def remove_state_if_empty(self) -> str | None:
        """After a destroy: delete the state when it records nothing (and nothing is pending), with the
        stack's working directories if they are empty. Returns where a kept state is, None if removed."""
        with self.locked("destroy"):
            url = self.state.url
            if self.state.resources() or self.state.pending():
                return url
        removed = self.state.remove_if_empty()
        self.close()
        if not removed:
            return url
        work = self.directory / ".mlplat" / self.name
        for directory in (work, work.parent):
            try:
                directory.rmdir()  # only when empty
            except FileNotFoundError:
                continue
            except OSError:
                break
        return None

    def _options_for(self, plan: Plan | None) -> ApplyOptions:
        """Each target's declared limits (calls in flight, calls per second) cap the command's on that target."""
        limits = dict(self.options.per_target)
        rates = dict(self.options.per_second)
        names = {c.target for c in plan.changes} if plan is not None else set(self.targets)
        for name in names:
            if name not in self.targets:
                continue
            caps = self.targets[name].capabilities()
            if caps.max_concurrency is not None:
                limits[name] = min(caps.max_concurrency, limits.get(name, caps.max_concurrency))
            if caps.max_calls_per_s is not None:
                rates[name] = min(caps.max_calls_per_s, rates.get(name, caps.max_calls_per_s))
        return replace(self.options, per_target=limits, per_second=rates, timeout_for=self.timeout_for)

    def _record_drift(self, plan: Plan) -> None:
        """Unchanged resources whose refresh found drift (or a resource gone) get the observed truth recorded."""
        records = self.state.resources()
        for change in plan.changes:
            record = records.get(change.address)
            if change.action != "noop" or not change.drift or record is None:
                continue
            record.inputs = change.before or record.inputs
            self.state.put(record)

    def refresh(self) -> dict[str, Any]:
        """Read every resource and record what is really there. Returns the drift found per address."""
        with self.locked("refresh"):
            self.recover()
            records = self.state.resources()
            observed = self.observe(records)
            drift: dict[str, Any] = {}
            self.state.bump_serial()
            for address, seen in observed.items():
                record = records[address]
                if seen is None:
                    drift[address] = "gone"
                    self.state.remove(address)
                    continue
                changed = input_drift(record.inputs, seen.inputs)
                if changed:
                    drift[address] = changed
                if changed or seen.outputs != record.outputs:
                    record.inputs, record.outputs = seen.inputs, {**record.outputs, **seen.outputs}
                    self.state.put(record)
            return drift

    def forget(self, address: str) -> ResourceRecord:
        """Stop managing `address` without touching the object (`mlplat state rm`); returns what was recorded."""
        with self.locked("state rm"):
            self.recover()
            record = self.state.resources().get(address)
            if record is None:
                raise StateError(f"no resource {address!r} in the state", hint="see `mlplat state list`")
            self.state.bump_serial()
            self.state.remove(address)
            return record

    def import_resource(self, address: str, id: str) -> Change:
        """Adopt the existing object `id` as the stack file's resource `address` (brownfield): the provider checks
        it is an object of that kind and reports it; it is recorded as found. Returns the next plan's change for
        the address (its differences from the stack file, applied by the next apply)."""
        self.check()
        self.discovery()  # lowered as the next plan lowers it, so what is recorded compares with it
        with self.locked("import"):
            self.recover()
            desired, _ = self.lower()
            res = desired.get(address)
            if res is None:
                close = difflib.get_close_matches(address, list(desired), n=3)
                raise PlanError(f"the stack file has no resource {address}" + (
                    f" (did you mean {' or '.join(close)}?)" if close else ""),
                    hint="mlplat graph lists every resource address of the stack")
            records = self.state.resources()
            if address in records:
                raise PlanError(f"{address} is already managed (id {records[address].id})",
                                hint="only a resource the state does not hold can be imported")
            owner = next((r.address for r in records.values() if id in (r.id, *r.deposed)), None)
            if owner is not None:
                raise PlanError(f"{id} is already managed as {owner}", hint="one object, one address")
            provider = self.provider_for(res.target, res.kind)
            if not provider.importable:
                raise PlanError(f"{address}: a {res.kind} cannot be imported",
                                hint="let mlplat create it (mlplat apply)")

            def known(ref: Ref) -> Any:
                record = records.get(ref.address)
                return record.outputs.get(ref.output, ref) if record is not None else ref

            inputs = resolve(res.inputs, known)
            seen = self.gates()(res.target).call(address, "import", lambda: provider.import_(address, id, inputs))
            if seen is None:
                raise PlanError(f"{address}: target {res.target!r} has no {res.kind} with id {id!r}",
                                hint="check the id (the cloud's name or ARN, as `mlplat state show` would print "
                                     "it) and that the stack's target points at the right account and region")
            self.state.bump_serial()
            self.state.put(ResourceRecord(address, res.kind, res.target, id,
                                          observed_inputs(provider, inputs, seen.inputs),
                                          mark_secret_outputs(provider, seen.outputs),
                                          depends_on=sorted(res.edges)))
            self.emit(Event("imported", address, "import", f"{res.kind} {id}"))
        plan = self.plan(refresh=False)
        return next(c for c in plan.changes if c.address == address)

    def outputs(self) -> dict[str, Any]:
        records = self.state.resources()

        def lookup(ref: Ref) -> Any:
            record = records.get(ref.address)
            return record.outputs.get(ref.output) if record else None

        return {k: resolve(v, lookup) for k, v in sorted(from_json(self.state.get_outputs()).items())}

    def close(self) -> None:
        if self._state is not None:
            self._state.close()
            self._state = None

