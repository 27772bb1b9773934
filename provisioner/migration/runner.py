"""Carrying out a plan's migrations around the ordinary apply segments (see `Stack.apply`):

    hold      the source's records move to held addresses; the migration record is written
    [apply]   the destination is provisioned (and artifacts copied) by the plan's ordinary changes
    cutover   artifacts verified, images copied, destination read back healthy, traffic shifted in gated steps
    [apply]   the teardown deletes the source (or, in a rollback, the destination)
    finish    the migration record goes (or stays, marking a kept source); a rollback restores the source's records

Every write is a state write (the migration record, each front-door update journaled like a step), so a kill at
any point resumes: the next plan reads where the migration record says the move stands.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provisioner import faults
from provisioner.errors import MlplatError
from provisioner.events import Event
from provisioner.graph import UNKNOWN, Ref, resolve
from provisioner.migration.gates import Verdict, window_verdict
from provisioner.migration.model import (
    COPY_KIND,
    MIGRATION_KIND,
    Migration,
    component_of,
    held_address,
    is_held,
    migration_address,
    original_address,
)
from provisioner.operations import StepContext, operation_timeout
from provisioner.provider import mark_secret_outputs
from provisioner.state.base import ResourceRecord

if TYPE_CHECKING:
    from provisioner.api import Stack
    from provisioner.plan import Change, Plan


class MigrationFailed(MlplatError):
    """A phase of a migration failed; the source still serves."""


class MigrationRunner:
    def __init__(self, stack: Stack, plan: Plan, apply_id: str) -> None:
        self.stack, self.plan, self.apply_id = stack, plan, apply_id
        self.state = stack.state
        self.gates = stack.gates()
        self.timings: dict[str, dict[str, float]] = {}
        self._seq = 0

    @property
    def active(self) -> list[Migration]:
        return [m for m in self.plan.migrations if m.mode != "kept"]

    # -- events -----------------------------------------------------------------------------------------------
    def _say(self, m: Migration, phase: str, message: str, elapsed: float = 0.0, **data: Any) -> None:
        self.stack.emit(Event("migration", migration_address(m.component), phase, message, elapsed, data))

    def _timed(self, m: Migration, phase: str, fn: Callable[[], None]) -> None:
        started = time.perf_counter()
        self._say(m, phase, "started")
        fn()
        elapsed = time.perf_counter() - started
        self.timings.setdefault(m.component, {})[phase] = round(elapsed, 3)
        self._say(m, phase, "done", elapsed)

    def segment_took(self, phase: str, seconds: float) -> None:
        """The time of an apply segment (provision, teardown), which every moving component shares."""
        for m in self.active:
            if m.mode in ("move", "rollback", "finish"):
                self.timings.setdefault(m.component, {})[phase] = round(seconds, 3)

    def _mark(self, m: Migration, **changes: Any) -> None:
        """Write the migration record (where the move stands)."""
        address = migration_address(m.component)
        current = self.state.resources().get(address)
        inputs = dict(current.inputs) if current is not None else {
            "source": m.source, "destination": m.destination, "kind": m.kind, "keep_source": m.keep_source,
            "traffic": m.traffic, "phase": "hold", "started_at": time.time()}
        inputs.update(changes)
        self.state.put(ResourceRecord(address, MIGRATION_KIND, m.destination, m.component, inputs))

    # -- hold -------------------------------------------------------------------------------------------------
    def hold(self) -> None:
        """Write each migration record and hold the source's records (idempotent: a kill mid-hold is finished by
        the next apply, which sees the source's records at both addresses or at one)."""
        for m in self.active:
            if m.mode == "rollback":
                self._mark(m, phase="rollback")
                continue
            if m.mode == "finish":
                continue
            self._mark(m, keep_source=m.keep_source, phase=m.phase if m.started else "provision")
            records = self.state.resources()
            own = {a for a in m.source_resources if a in records and records[a].target == m.source}
            for address in sorted(own):
                record = records[address]
                deps = [held_address(d, m.source) if d in own else d for d in record.depends_on]
                self.state.put(replace(record, address=held_address(address, m.source), depends_on=deps))
                self.state.remove(address)
            faults.reached("migrate-hold")

    # -- cutover ----------------------------------------------------------------------------------------------
    def cutover(self) -> None:
        faults.reached("migrate-provisioned")
        for m in self.active:
            doors = [c for c in self.plan.changes if c.phase == "shift" and component_of(c.address) == m.component]
            if m.mode == "rollback":
                self._timed(m, "shift", lambda m=m, d=doors: self._shift_back(m, d))
                continue
            if m.mode != "move":
                continue
            self._timed(m, "transfer", lambda m=m: self._transfer(m))
            self._mark(m, phase="health-check")
            self._timed(m, "health-check", lambda m=m: self._health(m))
            self._timed(m, "shift", lambda m=m, d=doors: self._shift(m, d))
            self._mark(m, phase="teardown", traffic=100)

    def _transfer(self, m: Migration) -> None:
        """Model artifacts on the destination carry the source's sha256; images are copied or the command
        printed. (Artifacts a serving target reads from another target's registry are copied by the plan's
        `core.artifact_copy` resources, which check the sha256 as they copy.)"""
        records = self.state.resources()
        if m.kind != "registry":
            copies = [r for a, r in records.items() if component_of(a) == m.component and r.kind == COPY_KIND
                      and not is_held(a)]
            for record in copies:
                self._say(m, "transfer", f"{record.address}: {record.outputs.get('uri')} sha256 "
                                         f"{str(record.inputs.get('sha256'))[:12]}… verified")
            return
        source = self._by_ref(records, m, held=True)
        dest = self._by_ref(records, m, held=False)
        for ref, (_s_record, s_sha) in sorted(source.items()):
            found = dest.get(ref)
            if found is None:
                continue
            d_record, _ = found
            provider = self.stack.provider_for(d_record.target, d_record.kind)
            seen = self.gates(d_record.target).call(d_record.address, "read",
                                                    lambda r=d_record, p=provider: p.read(r.id, r.inputs))
            d_sha = seen.inputs.get("sha256") if seen is not None else None
            if d_sha != s_sha:
                raise MigrationFailed(f"{d_record.address}: the artifact of {ref} on {m.destination} has sha256 "
                                      f"{d_sha}, the source's has {s_sha}",
                                      hint="the source is untouched; fix the artifact and apply again, or roll "
                                           f"back: mlplat migrate --rollback {m.component}")
            self._say(m, "transfer", f"{ref}: sha256 {s_sha[:12]}… identical on {m.source} and {m.destination}",
                      model=ref, sha256=s_sha)
        self._images(m, records)

    @staticmethod
    def _by_ref(records: dict[str, ResourceRecord], m: Migration,
                held: bool) -> dict[str, tuple[ResourceRecord, str]]:
        """Model ref -> (record, sha256) of the component's artifact records, on the source or the destination."""
        out = {}
        for address, record in records.items():
            if is_held(address) != held or component_of(address) != m.component:
                continue
            sha = record.inputs.get("sha256")
            if isinstance(sha, str) and record.kind != COPY_KIND:
                ref = (original_address(address)[0] if held else address).split(".", 2)[2]
                out[ref] = (record, sha)
        return out

    def _images(self, m: Migration, records: dict[str, ResourceRecord]) -> None:
        """Each image repository: copied when both sides are directories (OCI layouts), else the exact command."""
        def repos(held: bool) -> dict[str, dict[str, Any]]:
            return {(original_address(a)[0] if held else a).split(".", 2)[2]: r.outputs
                    for a, r in records.items() if is_held(a) == held and component_of(a) == m.component
                    and ("image_repository" in r.kind or "ecr_repository" in r.kind)}

        source, dest = repos(True), repos(False)
        for image, s_out in sorted(source.items()):
            d_out = dest.get(image)
            if d_out is None:
                continue
            s_path, d_path = s_out.get("path"), d_out.get("path")
            if s_path and d_path:
                copied = _copy_layout(Path(s_path), Path(d_path))
                self._say(m, "transfer", f"image {image}: " + ("copied (OCI layout)" if copied else
                                                               "nothing pushed on the source, nothing to copy"))
                continue
            src = f"oci:{s_path}:latest" if s_path else f"docker://{s_out.get('uri')}:latest"
            dst = f"oci:{d_path}:latest" if d_path else f"docker://{d_out.get('uri')}:latest"
            command = f"skopeo copy {src} {dst}"
            self._say(m, "transfer", f"image {image}: copy it yourself (mlplat does not move image layers "
                                     f"between registries): {command}", command=command)

    def _health(self, m: Migration) -> None:
        """Read back every destination resource: each must exist (a model server answering, an endpoint
        InService) before any traffic moves."""
        records = self.state.resources()
        for address in m.destination_resources:
            record = records.get(address)
            if record is None:
                raise MigrationFailed(f"{address}: not provisioned on {m.destination}")
            provider = self.stack.provider_for(record.target, record.kind)
            seen = self.gates(record.target).call(address, "read", lambda r=record, p=provider: p.read(r.id, r.inputs))
            if seen is None:
                raise MigrationFailed(f"{address}: the health check found nothing on {m.destination} (id {record.id})",
                                      hint="no traffic was moved; apply again to re-create it, or roll back: "
                                           f"mlplat migrate --rollback {m.component}")
        self._say(m, "health-check", f"{len(m.destination_resources)} resource(s) on {m.destination} read back "
                                     "healthy")

    # -- traffic ----------------------------------------------------------------------------------------------
    def _doors(self, m: Migration, changes: list[Change]) -> list[tuple[ResourceRecord, dict[str, Any]]]:
        records = self.state.resources()

        def lookup(ref: Ref) -> Any:
            record = records.get(ref.address)
            value = record.outputs.get(ref.output, UNKNOWN) if record else UNKNOWN
            if value is UNKNOWN:
                raise MigrationFailed(f"{m.component}: the front door needs {ref.address}.{ref.output}, which has "
                                      "no value (was it provisioned?)")
            return value

        return [(records[c.address], resolve(c.after or {}, lookup)) for c in changes]

    def _shift(self, m: Migration, changes: list[Change]) -> None:
        doors = self._doors(m, changes)
        if not doors:
            said = ("nothing to shift (no traffic)" if m.kind != "serving" else
                    f"all traffic already on {m.destination}" if m.traffic >= 100 else
                    "cut over at once (no front door: the endpoint's URL changed)")
            self._mark(m, traffic=100)
            self._say(m, "shift", said)
            return
        origin = {record.address: _upstream(record.inputs, m.source) for record, _ in doors}
        for percent in [p for p in m.steps if p > m.traffic]:
            for record, final in doors:
                source_up = origin[record.address]
                ups = [u for u in final["upstreams"] if u.get("name") == m.destination]
                if percent == 100 or source_up is None or not ups:
                    inputs = final
                else:
                    inputs = {**final, "upstreams": [{**source_up, "weight": 100 - percent},
                                                     {**ups[0], "weight": percent}]}
                self._update(record.address, inputs)
            self._mark(m, phase="shift", traffic=percent)
            self._say(m, "shift", f"{percent} % of traffic on {m.destination}", traffic=percent)
            faults.reached("migrate-shift")
            verdict = self._watch(m, [record for record, _ in doors])
            self._say(m, "shift", f"gate at {percent} %: {verdict.describe()}", traffic=percent,
                      **verdict.to_json())
            if not verdict.passed:
                for record, final in doors:
                    source_up = origin[record.address]
                    if source_up is not None:
                        self._update(record.address, {**final, "upstreams": [{**source_up, "weight": 100}]})
                self._mark(m, phase="shift-failed", traffic=0)
                self._say(m, "shift", f"all traffic back on {m.source}", traffic=0)
                raise MigrationFailed(
                    f"{m.kind} {m.component!r}: the health gate failed at {percent} % on {m.destination}: "
                    f"{verdict.describe()}; all traffic is back on {m.source}",
                    hint=f"the source still serves; fix {m.destination} and apply again (the shift restarts), or "
                         f"roll back: mlplat migrate --rollback {m.component}")

    def _shift_back(self, m: Migration, changes: list[Change]) -> None:
        for record, final in self._doors(m, changes):
            self._update(record.address, final)
        self._mark(m, traffic=0)
        self._say(m, "shift", f"all traffic on {m.source}", traffic=0)

    def _watch(self, m: Migration, doors: list[ResourceRecord]) -> Verdict:
        """The destination's requests through every front door that counts them, over the window."""
        counted = []
        for record in doors:
            provider = self.stack.provider_for(record.target, record.kind)
            if callable(getattr(provider, "stats", None)):
                counted.append((record, provider))
        before = [p.stats(r.id, r.inputs) or {} for r, p in counted]
        time.sleep(m.window_s)  # Ctrl-C interrupts it; the next apply resumes the shift at this step
        after = [p.stats(r.id, r.inputs) or {} for r, p in counted]
        return window_verdict(m.destination, before, after, counted=bool(counted),
                              max_error_rate=m.max_error_rate, max_latency_ms=m.max_latency_ms)

    def _update(self, address: str, inputs: dict[str, Any]) -> None:
        """One front-door update, journaled like an apply step (a kill mid-call is resolved by recovery)."""
        record = self.state.resources()[address]
        provider = self.stack.provider_for(record.target, record.kind)
        if provider.diff(record.inputs, inputs).empty:
            return
        new = replace(record, inputs=inputs)
        self._seq += 1
        token = f"{self.apply_id}-m{self._seq}"
        seq = self.state.journal_pending(self.apply_id, "update", new, token=token)
        gate = self.gates(record.target)
        timeout = operation_timeout(provider, self.stack.timeout_for, record.target, record.kind, "update")
        ctx = StepContext(address, "update", token, timeout=timeout, calls=gate,
                          on_checkpoint=lambda operation: self.state.journal_checkpoint(seq, operation))
        outputs = gate.call(address, "update", lambda: provider.update(record.id, record.inputs, inputs, ctx))
        new.outputs = {**record.outputs, **mark_secret_outputs(provider, outputs or {})}
        self.state.journal_done(seq, put=new)

    # -- finish -----------------------------------------------------------------------------------------------
    def finish(self) -> None:
        faults.reached("migrate-teardown")
        for m in self.active:
            address = migration_address(m.component)
            if m.mode == "rollback":
                self._restore(m)
                self.state.remove(address)
                self._say(m, "restore", f"{m.component} is on {m.source} again")
            elif m.mode == "move" and m.keep_source:
                self._mark(m, phase="kept", traffic=100)
                self._say(m, "teardown", f"source kept on {m.source} (mlplat migrate --finish {m.component} "
                                         f"deletes it, --rollback {m.component} returns to it)")
            else:
                self.state.remove(address)
                self._say(m, "done", f"{m.component} is on {m.destination}")

    def _restore(self, m: Migration) -> None:
        records = self.state.resources()
        for address, record in sorted(records.items()):
            if not is_held(address) or component_of(address) != m.component:
                continue
            original, _ = original_address(address)
            deps = [original_address(d)[0] if is_held(d) else d for d in record.depends_on]
            self.state.put(replace(record, address=original, depends_on=deps))
            self.state.remove(address)


def _upstream(inputs: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((dict(u) for u in inputs.get("upstreams") or [] if u.get("name") == name), None)


def _copy_layout(source: Path, dest: Path) -> bool:
    """Copy an OCI image layout folder's content (not mlplat's own marker files); False when there is none."""
    held = sorted(p for p in source.iterdir() if not p.name.startswith(".mlplat")) if source.is_dir() else []
    if not held:
        return False
    for entry in held:
        target = dest / entry.name
        if entry.is_dir():
            shutil.copytree(entry, target, dirs_exist_ok=True)
        else:
            shutil.copy2(entry, target)
    return True
