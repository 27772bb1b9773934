"""The Python API: what the CLI calls. `Stack(path)` ties a stack file to its targets, plugins and state."""

from __future__ import annotations

import difflib
import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
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
from provisioner.plan import SEGMENTS, Change, Plan, input_drift, make_destroy_plan, make_plan
from provisioner.provider import Observed, ResourceProvider, mark_secret_outputs, observed_inputs
from provisioner.recovery import recover
from provisioner.secrets import contains_secret
from provisioner.spec.loader import Loc, format_loc
from provisioner.spec.model import Component, Serving, component_kind
from provisioner.spec.variables import per_environment_state_url
from provisioner.state import LockInfo, ResourceRecord, StateBackend, open_state
from provisioner.state.lease import LeaseKeeper
from provisioner.target import (
    FRONT_DOOR,
    STACK_SCOPE,
    UPSTREAM_KEYS,
    Capabilities,
    LowerContext,
    Lowered,
    Reason,
    Target,
    TargetContext,
)
from provisioner.timeouts import Timeouts

Listener = Callable[[Event], None]


class Stack:
    """One stack file, its targets (instantiated on first use), its lowered resources and its state."""

    def __init__(self, path: str | Path, *, state_url: str | None = None, listeners: list[Listener] | None = None,
                 options: ApplyOptions | None = None, lock_timeout: float = 0.0,
                 force_new_state: bool = False, environment: str | None = None,
                 variables: dict[str, str] | None = None) -> None:
        self.loaded = spec.load(path, environment=environment, variables=variables)
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
        #: seconds each phase of each migration took in the last apply (component -> phase -> seconds)
        self.migration_timings: dict[str, dict[str, float]] = {}
        #: what the last `stream`ed operation returned
        self.result: Any = None

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
            for i, door in enumerate(getattr(component, "front_door", ())):
                used.setdefault(door, (*loc, "front_door", i))
        for i, raw in enumerate(self.platform.resources):
            if raw.target:
                used.setdefault(raw.target, ("resources", i, "target"))
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
                                f"types: {known}; targets declared in this stack: {declared})"
                                f"{self.loaded.included(where)}")
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
        if provider is None and kind.startswith("core."):
            provider = self._providers[key] = self._core_provider(target, kind)
        if provider is None:
            if target not in self.targets:
                raise PlanError(f"the state holds a {kind} on target {target!r}, which this stack no longer "
                                "declares", hint=f"declare targets.{target} again so mlplat can manage it")
            provider = self._providers[key] = self.targets[target].provider(kind)
        return provider

    def _core_provider(self, target: str, kind: str) -> ResourceProvider:
        from provisioner.migration.model import COPY_KIND, MIGRATION_KIND
        from provisioner.migration.providers import ArtifactCopyProvider, MigrationRecordProvider

        if kind == MIGRATION_KIND:
            return MigrationRecordProvider()
        if kind == COPY_KIND:
            return ArtifactCopyProvider(self, target)
        raise PlanError(f"the state holds a resource of kind {kind!r}, which this version of mlplat does not know")

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
        found = []
        caps: dict[str, Capabilities] = {}  # once per target: a cloud's derives from its catalog rows
        for loc, component in self.components():
            reasons = self._reasons(component, self.platform.target_of(component), caps)
            found.extend(((*loc, *reason.loc), component, reason) for reason in reasons)
        return found

    def _reasons(self, component: Component, name: str, caps: dict[str, Capabilities]) -> list[Reason]:
        """Why `component` does not fit target `name` (its front doors' rules included); `caps` caches each
        target's capabilities."""
        from provisioner.capabilities import check_component

        target = self.targets[name]
        if name not in caps:
            caps[name] = target.capabilities()
        where = f"target {name!r} ({target.name})"
        reasons = [*check_component(component, caps[name], where, self.platform), *target.check(component)]
        if isinstance(component, Serving) and component.front_door:
            reasons = self._front_door_reasons(component, reasons, caps)
        return reasons

    def _front_door_reasons(self, serving: Serving, reasons: list[Reason],
                            caps: dict[str, Capabilities]) -> list[Reason]:
        """Each front door's target must offer one; behind a gateway, clients authenticate at the gateway, so
        `auth` is checked against the gateway's target instead of the serving one."""
        from provisioner.capabilities import check_component

        for i, door in enumerate(serving.front_door):
            if door not in caps:
                caps[door] = self.targets[door].capabilities()
            if caps[door].front_door is None:
                reasons.append(Reason("front-door-unsupported", f"target {door!r} ({self.targets[door].name}) "
                                      "cannot be a front door (local: a gateway; aws: Route 53 weighted records)",
                                      ("front_door", i)))
        first = serving.front_door[0]
        if caps[first].front_door == "gateway":
            where = f"front door {first!r} ({self.targets[first].name})"
            reasons = [r for r in reasons if r.code != "auth-unsupported"]
            reasons += [r for r in check_component(serving, caps[first], where, self.platform)
                        if r.code == "auth-unsupported"]
        return reasons

    def discovery(self, *, fresh: bool = False) -> dict[str, dict[str, Any]]:
        """What each target in use discovered (`Target.discover`), once per plan; targets discovering nothing
        are left out. Each target also keeps its own as `discovered`, for lowering."""
        if self._discovery is None or fresh:
            found: dict[str, dict[str, Any]] = {}
            gates = self.gates()
            for name in self.targets_in_use():
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

    def targets_in_use(self) -> list[str]:
        """Targets the stack's components run on or have front doors on, and its raw resources' targets."""
        names = []
        for _, component in self.components():
            names.append(self.platform.target_of(component))
            names.extend(getattr(component, "front_door", ()))
        names.extend(raw.target or self.platform.target for raw in self.platform.resources)
        return list(dict.fromkeys(names))

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
        for target_name in self.targets_in_use():
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
                copies = self._artifact_copies(component, target_name, ctx) if isinstance(component, Serving) \
                    else Lowered()
                view = ctx if not copies.resources else LowerContext(self.platform, {
                    **component_outputs, **copies.outputs})
                lowered = self.targets[target_name].lower(component, view)
                lowered.resources[:0] = copies.resources
                upstream = lowered.outputs.pop("upstream", None)  # for front doors, not an output of the stack
                doors = self._front_doors(component, target_name, lowered, upstream, ctx) if isinstance(
                    component, Serving) else []
            except MlplatError as err:
                raise SpecError([f"{self.loaded.where(loc)}: {component_kind(component)} {component.name!r} on "
                                 f"target {target_name!r}: {err.message}{self.loaded.included(loc)}"],
                                hint=err.hint) from None
            self._add(resources, lowered.resources, target_name, f"{component.name}.",
                      f"target {target_name!r} lowered component {component.name!r} to a resource outside "
                      f"{component.name}.")
            self._after_stack_scope(resources, lowered.resources, scoped[target_name], target_name)
            for door, front in doors:
                self._add(resources, front.resources, door, f"{component.name}.{FRONT_DOOR}.",
                          f"target {door!r} lowered the front door of {component.name!r} outside "
                          f"{component.name}.{FRONT_DOOR}.")
                self._after_stack_scope(resources, front.resources, scoped[door], door)
            component_outputs[component.name] = lowered.outputs
            outputs.update({f"{component.name}.{k}": v for k, v in lowered.outputs.items()})
        if self.platform.resources:  # raw resources (`resources:`), after the components they may name
            from provisioner.raw import lower_raw

            lower_raw(self, ctx, resources, scoped)
        self._lowered = (resources, outputs)
        return self._lowered

    @staticmethod
    def _after_stack_scope(resources: dict[str, Resource], new: list[Resource], first: list[str],
                           target: str) -> None:
        """Order `new` resources on `target` after its stack-scoped ones (made first, deleted last)."""
        for res in new if first else ():
            # an edge to another component resource on this target already orders it after the first ones
            if not any(e in resources and e not in first and resources[e].target == target for e in res.edges):
                _depend_on(res, first)

    def _artifact_copies(self, serving: Serving, target_name: str, ctx: LowerContext) -> Lowered:
        """A `core.artifact_copy` per model a serving component reads from a registry on another target, when its
        own target has an artifact store; `outputs` is the registry's outputs as the serving target sees them
        (each model's URI the copy's)."""
        registry = self.platform.registry
        if registry is None or self.platform.target_of(registry) == target_name:
            return Lowered()
        if self.targets[target_name].artifact_store() is None:
            return Lowered()
        seen = ctx.outputs_of(registry.name)
        from provisioner.migration.model import COPY_KIND

        resources, patched = [], dict(seen)
        for ref in dict.fromkeys(path.model for _, path in serving.paths.items()):
            model = self.platform.model(ref)
            if model is None or f"model.{ref}" not in seen or f"sha256.{ref}" not in seen:
                continue  # an unknown model is the target's error to report; no checksum, nothing to check
            address = LowerContext.address(serving.name, "artifact_copy", ref)
            resources.append(Resource(address, COPY_KIND, target_name, {
                "source": seen[f"model.{ref}"], "sha256": seen[f"sha256.{ref}"],
                "key": f"{model.name}/{model.version}/{Path(model.artifact).name}",
                "source_target": self.platform.target_of(registry)}))
            patched[f"model.{ref}"] = Ref(address, "uri")
        return Lowered(resources, {registry.name: patched})

    def _front_doors(self, serving: Serving, target_name: str, lowered: Lowered, upstream: Any,
                     ctx: LowerContext) -> list[tuple[str, Lowered]]:
        """Each of the endpoint's front doors, forwarding to it; the first one's URL becomes the endpoint's `url`
        (the target's own is kept as `direct_url`)."""
        if not serving.front_door:
            return []
        if not isinstance(upstream, dict):
            raise MlplatError(f"target {target_name!r} ({self.targets[target_name].name}) exports no upstream for "
                              "a front door to forward to", hint="remove front_door, or serve on a target that "
                                                                 "supports one")
        upstreams = [{"name": target_name, "weight": 100, **{k: upstream.get(k) for k in UPSTREAM_KEYS}}]
        doors = []
        serving_addresses = tuple(r.address for r in lowered.resources)
        for door in serving.front_door:
            front = self.targets[door].lower_front_door(serving, upstreams, ctx)
            for res in front.resources:  # made after the endpoint it forwards to, deleted before it
                _depend_on(res, serving_addresses)
            doors.append((door, front))
            lowered.outputs[f"front_door.{door}.url"] = front.outputs["url"]
        lowered.outputs["direct_url"] = lowered.outputs.get("url")
        lowered.outputs["url"] = doors[0][1].outputs["url"]
        return doors

    @staticmethod
    def _add(resources: dict[str, Resource], new: list[Resource], target: str, prefix: str, outside: str) -> None:
        for res in new:
            if not res.address.startswith(prefix):
                raise PlanError(f"{outside}: {res.address} (a plugin bug)")
            if res.address in resources:
                raise PlanError(f"two resources share the address {res.address}")
            res.target = target
            resources[res.address] = res

    def cost_reports(self) -> tuple[Any, Any]:
        """(after apply, now): the platform priced from the catalog on the targets its components are declared
        on, and on the targets the state records them on (a component not yet made costs nothing now)."""
        from provisioner import cost
        from provisioner.migration.model import component_of, is_held
        from provisioner.migration.planner import owned_by_component

        types = {name: target.name for name, target in self.targets.items()}
        after = cost.estimate_platform(self.platform, types)
        where: dict[str, str] = {}
        for address, record in self.state.resources().items():
            name = component_of(address)
            if owned_by_component(address) and (not is_held(address) or name not in where):
                where[name] = record.target  # a held record (a move's source) counts only where nothing else is
        now = cost.CostReport([cost.estimate_component(c, self.platform, where[c.name], types.get(where[c.name],
                                                                                               where[c.name]))
                               for c in self.platform.components() if c.name in where])
        return after, now

    def estimate_cost(self) -> float | None:
        hook = plugins.manager().hook.mlplat_estimate_cost
        costs = [c for res in self.lower()[0].values() for c in hook(resource=res)[:1] if c is not None]
        return sum(costs) if costs else None

    # -- state ------------------------------------------------------------------------------------------------
    @property
    def state(self) -> StateBackend:
        if self._state is None:
            cfg = self.platform.state
            state_url = per_environment_state_url(self._state_url, self.loaded.environment)  # --state: per env
            state = open_state(self.name, self.directory, url=state_url or cfg.url,
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
    def plan(self, *, refresh: bool = True, destroy: bool = False, keep_source: frozenset[str] = frozenset(),
             finish: frozenset[str] = frozenset(), targets: list[str] | None = None,
             replace: list[str] | None = None) -> Plan:
        """The changes apply would make. A component whose `target:` changed is planned as a migration
        (`provisioner.migration`): `keep_source` names components whose source stays after their move, `finish`
        components whose kept source goes now. `targets` (addresses or their prefixes, e.g. a component name)
        narrow the plan to their changes and what those need; `replace` forces recorded resources to be replaced
        (`provisioner.targeting`)."""
        from provisioner import targeting
        from provisioner.migration.planner import finish_plan, plan_migrations

        self.recover()
        meta = self.state.meta()
        records = self.state.resources()
        targets, replace = list(targets or ()), list(dict.fromkeys(replace or ()))
        if destroy:
            if replace:
                raise PlanError("--replace does not go with destroy", hint="destroy --target ADDRESS deletes one")
            matched = targeting.match_targets(targets, records) if targets else set()
            plan = make_destroy_plan(records, stack=self.name, lineage=meta.lineage, serial=meta.serial)
        else:
            self.check()
            discovery = self.discovery()  # before lowering, which may use it
            desired, outputs = self.lower()
            if any(contains_secret(r.inputs) or self.provider_for(r.target, r.kind).secret_outputs
                   for r in desired.values()):
                self.state.codec.require_key()  # refuse now, not after the cloud call returned a secret
            planned = plan_migrations(self, desired, records, keep_source=keep_source, finish=finish)
            forced = targeting.check_replace(replace, planned.view, desired)
            targets += [a for a in replace if targets and a not in targets]  # a replaced resource is targeted
            matched = targeting.match_targets(targets, [*desired, *records]) if targets else set()
            refreshed = self.observe(planned.view) if refresh else None
            plan = make_plan(desired, planned.view, self.provider_for, stack=self.name, lineage=meta.lineage,
                             serial=meta.serial, refreshed=refreshed, outputs=outputs, force_replace=forced)
            finish_plan(plan, planned)
            plan.discovery = discovery
            plan.replace = replace
        if targets:
            targeting.narrow(plan, matched, targets=targets, recorded_outputs=self.state.get_outputs(),
                             records=records)
        plan.stack_file = str(self.loaded.path.resolve())  # a saved plan is applied from any directory
        plan.environment, plan.variables = self.loaded.environment, dict(self.loaded.variables.overrides)
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
            from provisioner.history import recording

            with recording(self, plan):  # the run record (`provisioner.history`), journalled at the end
                self.state.bump_serial()
                self._record_drift(plan)
                if not plan.destroy or plan.targets:  # before any step: outputs are references resolved against
                    self.state.set_outputs(to_json(plan.outputs))  # records: a kill at any point leaves them right
                result = self._apply_segments(plan)
                if plan.destroy and not plan.targets:
                    self.state.set_outputs({})
                self.sweep()
            return result

    def _apply_segments(self, plan: Plan) -> ApplyResult:
        """The plan's changes; with migrations, around them: hold the sources, provision, cut over (transfer,
        health-check, traffic shift), tear down, finish (see `provisioner.migration.runner`)."""
        options = self._options_for(plan)
        if not plan.migrations:
            return Applier(self.state, self.provider_for, self.emit, options).run(plan)
        from provisioner.migration.runner import MigrationRunner

        started = time.perf_counter()
        runner = MigrationRunner(self, plan, uuid.uuid4().hex[:12])
        runner.hold()
        done = 0
        for segment in SEGMENTS:
            if segment == "shift":
                runner.cutover()
                continue
            part = Applier(self.state, self.provider_for, self.emit, options).run(plan.segment(segment))
            done += part.done
            if segment in ("", "teardown"):  # one apply segment for every moving component: each gets its time
                runner.segment_took("provision" if segment == "" else "teardown", part.elapsed)
            if segment == "teardown":
                runner.finish()
        self.migration_timings = runner.timings
        return ApplyResult(done, self.state.resources(), time.perf_counter() - started)

    def compatibility(self, component: Component, source: str, destination: str) -> dict[str, Any]:
        """How a component fits its source and its destination: the destination's refusals (errors, which
        `check` already raised at their place in the stack file), its warnings, and the capabilities that
        differ in what this kind of component uses."""
        from provisioner.capabilities import differences

        relevant = {"cluster": ("training_accelerators", "spot", "autoscaling", "max_nodes_per_pool"),
                    "storage": ("storage",),
                    "registry": ("model_formats",),
                    "serving": ("serving_accelerators", "traffic_split", "shadow", "max_replicas", "auth_modes",
                                "model_formats", "front_door", "monitoring")}[component_kind(component)]
        report: dict[str, Any] = {"errors": [], "warnings": [], "differences": {}}
        if source not in self.targets or destination not in self.targets:
            return report
        caps: dict[str, Capabilities] = {}
        for reason in self._reasons(component, destination, caps):
            report["errors" if reason.severity == "error" else "warnings"].append(
                {"code": reason.code, "message": reason.message})
        src = caps.get(source) or self.targets[source].capabilities()
        report["differences"] = {k: list(v) for k, v in differences(src, caps[destination]).items() if k in relevant}
        return report

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

    def refresh(self, *, preview: bool = False) -> dict[str, Any]:
        """Read every resource and record what is really there. Returns the drift found per address. With
        `preview`, record nothing (the state's serial stays): what a refresh would record."""
        with self.locked("refresh"):
            self.recover()
            records = self.state.resources()
            observed = self.observe(records)
            if preview:
                from provisioner.targeting import refresh_drift

                return refresh_drift(records, observed)
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

    def move(self, source: str, destination: str) -> ResourceRecord:
        """Record the object managed as `source` under the address `destination` (`mlplat state mv`), e.g. after
        renaming a component in the stack file, so the next plan keeps the object instead of replacing it. The
        stack file must lower `destination` with the recorded kind and target. The record moves in one journalled
        transaction; other records' depends_on and the recorded outputs that name `source` are rewritten. Returns
        the record as it is now recorded."""
        if source == destination:
            raise StateError(f"{source} and {destination} are the same address")
        with self.locked("state mv"):
            self.recover()
            records = self.state.resources()
            record = records.get(source)
            if record is None:
                raise StateError(f"no resource {source!r} in the state{_did_you_mean(source, records)}",
                                 hint="see `mlplat state list`")
            if destination in records:
                raise StateError(f"{destination} is already recorded (id {records[destination].id})",
                                 hint=f"`mlplat state rm {destination}` first if that record is wrong")
            desired, _ = self.lower()
            res = desired.get(destination)
            if res is None:
                raise StateError(f"the stack file has no resource {destination}{_did_you_mean(destination, desired)}",
                    hint="rename the component in the stack file first; mlplat graph lists its resource addresses")
            if (res.kind, res.target) != (record.kind, record.target):
                raise StateError(f"cannot move {source} ({record.kind} on target {record.target!r}) to "
                                 f"{destination}: the stack file makes a {res.kind} on target {res.target!r} there",
                                 hint="an object keeps its kind and target; move it to an address of the same kind")
            moved = ResourceRecord(destination, record.kind, record.target, record.id, record.inputs,
                                   record.outputs, list(record.depends_on), list(record.deposed))
            self.state.bump_serial()
            seq = self.state.journal_pending(uuid.uuid4().hex[:12], "move", moved)
            self.state.journal_done(seq, put=moved, remove=source)  # put + remove: one transaction
            for other in records.values():
                if source in other.depends_on:
                    other.depends_on = [destination if d == source else d for d in other.depends_on]
                    self.state.put(other)
            outputs = self.state.get_outputs()
            renamed = _rename_refs(outputs, source, destination)
            if renamed != outputs:
                self.state.set_outputs(renamed)
            self.emit(Event("moved", destination, "move", f"from {source}"))
            return moved

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
                raise PlanError(f"the stack file has no resource {address}{_did_you_mean(address, desired)}",
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

    # -- the automation API: what `preview`, `apply --yes` and `destroy --yes` do, for Python callers -------------

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def from_text(cls, text: str, directory: str | Path | None = None, *, name: str = "stack.yaml",
                  **options: Any) -> Stack:
        """A stack from YAML text, written to `directory/name` (default: a new temporary directory). Its state and
        working directories live beside that file, as for any stack file; errors name it with line and column."""
        import tempfile

        base = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="mlplat-"))
        base.mkdir(parents=True, exist_ok=True)
        path = base / name
        path.write_text(text)
        return cls(path, **options)

    def preview(self, *, refresh: bool = True, destroy: bool = False, targets: list[str] | None = None,
                replace: list[str] | None = None) -> Plan:
        """What `up()` (or `destroy()`) would change: `mlplat preview`, under the stack's lock (`targets`,
        `replace`: as `plan`'s, `mlplat preview --target/--replace`)."""
        with self.locked("preview"):
            return self.plan(refresh=refresh, destroy=destroy, targets=targets, replace=replace)

    def up(self, *, refresh: bool = True, targets: list[str] | None = None,
           replace: list[str] | None = None) -> ApplyResult:
        """Make the platform match the stack file (`mlplat apply --yes`); `.done` counts the steps made.
        `targets`/`replace`: `mlplat apply --target/--replace` (a targeted apply is partial)."""
        with self.locked("apply"):
            plan = self.plan(refresh=refresh, targets=targets, replace=replace)
            if plan.has_changes or plan.has_drift:
                return self.apply(plan)
            self.sync_outputs(plan)
            self.sweep()
            return ApplyResult(0, self.state.resources(), 0.0)

    def destroy(self) -> ApplyResult:
        """Delete everything the state records (`mlplat destroy --yes`), then the state when nothing is left."""
        with self.locked("destroy"):
            plan = self.plan(refresh=False, destroy=True)
            result = self.apply(plan) if plan.has_changes else ApplyResult(0, {}, 0.0)
        self.remove_state_if_empty()
        return result

    def stream(self, operation: Callable[[], Any]) -> Iterator[Event]:
        """Run `operation` (e.g. `stack.up`) in a thread, yielding the events it emits as they happen; its error is
        raised after the last event, its value kept as `self.result`."""
        import queue
        import threading

        events: queue.Queue[Event | None] = queue.Queue()
        failure: list[BaseException] = []
        self._listeners.append(events.put)

        def run() -> None:
            try:
                self.result = operation()
            except BaseException as err:  # handed to the caller's thread
                failure.append(err)
            finally:
                events.put(None)

        worker = threading.Thread(target=run, name="mlplat-stream", daemon=True)
        worker.start()
        try:
            while (event := events.get()) is not None:
                yield event
        finally:
            worker.join()
            self._listeners.remove(events.put)
        if failure:
            raise failure[0]


def _did_you_mean(name: str, names: Iterable[str]) -> str:
    """The suffix ` (did you mean a or b?)` naming up to three of `names` closest to `name`; "" when none is."""
    close = difflib.get_close_matches(name, list(names), n=3)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _depend_on(res: Resource, addresses: Iterable[str]) -> None:
    """Add ordering edges from `res` to `addresses` (it is made after them and deleted before them)."""
    addresses = list(addresses)
    res.depends_on = (*res.depends_on, *(a for a in addresses if a not in res.edges))
    res.edges = res.edges | frozenset(addresses)


def _rename_refs(value: Any, source: str, destination: str) -> Any:
    """JSON `value` (recorded outputs) with references to `source`'s outputs pointing at `destination`."""
    if isinstance(value, dict):
        if len(value) == 1 and "$ref" in value and value["$ref"][0] == source:
            return {"$ref": [destination, *value["$ref"][1:]]}
        return {k: _rename_refs(v, source, destination) for k, v in value.items()}
    if isinstance(value, list):
        return [_rename_refs(v, source, destination) for v in value]
    return value
