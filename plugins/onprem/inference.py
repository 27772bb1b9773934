"""KServe InferenceService (`serving.kserve.io/v1beta1`) with a canary: the provider rolls production out first.

KServe semantics (serverless mode, Knative revisions): every change of `spec.predictor` makes a new revision. With
`canaryTrafficPercent: N` the newest revision (the canary) gets N% and the last *rolled-out* revision
(`status.components.predictor.latestRolledoutRevision`) the rest; without it the newest revision gets 100% and
becomes the rolled-out one. A change of `canaryTrafficPercent` alone makes no revision: it only moves traffic.

So a split is only what was declared if the rolled-out revision is the production predictor. Inputs: `manifest` (the
final ISVC: `spec.predictor` is the experimental predictor with `canaryTrafficPercent`, or production alone when there
is no experimental path) and `production` (the production predictor). Create and update:
1. when the production predictor is not the rolled-out one (the `mlplat.dev/production` annotation holds a hash of
   the predictor last rolled out; a live spec without a canary is re-applied too), apply the ISVC with
   `spec.predictor` = production and no canary, and wait until it serves 100% of the traffic;
2. with an experimental path, apply the final manifest and wait for the declared split. A weight change alone is
   this one apply.
Ready: condition Ready True at the current generation, and `status.components.predictor.traffic` as declared (the
newest revision N%, the others 100 - N). A failed revision (Ready False with a revision/model failure reason) fails
at once with KServe's message. Outputs: `url` (status.url), `traffic` ({revision: percent}).

Drift: `read` projects the live spec onto the declared manifest (a changed canary percent or predictor shows), and
observes `production` from the annotation (or, with no canary live, from the live predictor itself).
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import TYPE_CHECKING, Any

from mlplat_plugins.onprem.base import (
    ADDRESS_ANNOTATION,
    SLOW,
    TOKEN_ANNOTATION,
    KubeObject,
    _id_of,
    _split,
    _token,
    _without_ours,
    project,
)
from provisioner.cloud import find_own, operation_id, operation_of
from provisioner.errors import MlplatError
from provisioner.provider import Created, Observed

if TYPE_CHECKING:
    from provisioner.operations import StepContext

PRODUCTION_ANNOTATION = "mlplat.dev/production"
CANARY = "canaryTrafficPercent"
#: condition reasons of a revision or model that will not become ready without a new spec
FAILED_REASONS = frozenset({"RevisionFailed", "ContainerMissing", "ProgressDeadlineExceeded",
                            "InvalidPredictorSpec", "ModelLoadFailed", "ExitCode1", "ImagePullBackOff",
                            "ErrImagePull"})


def predictor_hash(predictor: dict[str, Any]) -> str:
    """A stable hash of a predictor spec (the value of the `mlplat.dev/production` annotation)."""
    return hashlib.sha256(json.dumps(predictor, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def traffic_of(obj: dict[str, Any]) -> dict[str, int]:
    """{revision: percent} as the ISVC's predictor serves it (revisions listed twice are summed)."""
    out: dict[str, int] = {}
    for entry in _predictor_status(obj).get("traffic") or ():
        name = entry.get("revisionName") or entry.get("tag") or "latest"
        out[name] = out.get(name, 0) + int(entry.get("percent") or 0)
    return out


def _predictor_status(obj: dict[str, Any]) -> dict[str, Any]:
    return (((obj.get("status") or {}).get("components") or {}).get("predictor")) or {}


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or ()}


class InferenceService(KubeObject):
    timeouts = SLOW
    update_outputs = frozenset({"traffic"})

    # the two manifests ------------------------------------------------------------------------------------

    def _body(self, address: str, inputs: dict[str, Any], token: str, production_only: bool) -> dict[str, Any]:
        body = self.manifest(address, inputs, token)
        body["metadata"]["annotations"][PRODUCTION_ANNOTATION] = predictor_hash(inputs["production"])
        if production_only:
            body["spec"]["predictor"] = copy.deepcopy(inputs["production"])
        return body

    @staticmethod
    def _canary(inputs: dict[str, Any]) -> int | None:
        """The declared canary percent, or None when production alone is declared."""
        predictor = inputs["manifest"]["spec"]["predictor"]
        return int(predictor[CANARY]) if CANARY in predictor else None

    def _rolled_out(self, live: dict[str, Any] | None, inputs: dict[str, Any]) -> bool:
        """Whether the declared production predictor is the rolled-out revision behind a live canary (then only
        the final manifest is applied)."""
        if live is None:
            return False
        annotations = (live.get("metadata") or {}).get("annotations") or {}
        predictor = (live.get("spec") or {}).get("predictor") or {}
        return annotations.get(PRODUCTION_ANNOTATION) == predictor_hash(inputs["production"]) and CANARY in predictor

    # readiness --------------------------------------------------------------------------------------------

    def check(self, obj: dict[str, Any], canary: int | None) -> tuple[bool, str]:
        """Ready with the newest revision at `canary` percent (100 when None) and the rest elsewhere."""
        meta, status = obj.get("metadata", {}), obj.get("status") or {}
        name = f"{meta.get('namespace')}/{meta.get('name')}"
        conditions = _conditions(obj)
        for kind in ("Ready", "PredictorReady", "LatestDeploymentReady"):
            found = conditions.get(kind)
            if found and found.get("status") == "False" and found.get("reason") in FAILED_REASONS:
                raise MlplatError(f"InferenceService {name} failed: {found.get('reason')}: "
                                  f"{found.get('message') or 'no message'}",
                                  hint="kubectl describe the InferenceService and its predictor's pods")
        failure = (status.get("modelStatus") or {}).get("lastFailureInfo") or {}
        if (status.get("modelStatus") or {}).get("transitionStatus") in ("BlockedByFailedLoad", "InvalidSpec"):
            raise MlplatError(f"InferenceService {name} failed: {failure.get('reason', 'model load failed')}: "
                              f"{failure.get('message', '')}")
        if status.get("observedGeneration", 0) < meta.get("generation", 1):
            return False, "waiting for the KServe controller"
        ready = conditions.get("Ready")
        if not ready or ready.get("status") != "True":
            return False, f"not ready ({(ready or {}).get('reason') or 'no Ready condition'})"
        predictor = _predictor_status(obj)
        created, latest = predictor.get("latestCreatedRevision"), predictor.get("latestReadyRevision")
        if created and latest and created != latest:
            return False, f"revision {created} not ready yet"
        entries = predictor.get("traffic") or []
        want = 100 if canary is None else canary
        latest = latest or next((e.get("revisionName") for e in entries if e.get("latestRevision")), None)
        rolled = predictor.get("latestRolledoutRevision")
        actual = {k: v for k, v in traffic_of(obj).items() if v}
        if latest and (rolled or want == 100):
            # the newest revision N%, the rolled-out one the rest (one revision, when the canary's predictor is
            # production's own: KServe then sends it everything)
            expected = {latest: want}
            if want < 100:
                expected[rolled] = expected.get(rolled, 0) + 100 - want
            matches = actual == {k: v for k, v in expected.items() if v}
        else:  # a status without revision names: the newest revision's share, and 100% in all
            on_latest = sum(int(e.get("percent") or 0) for e in entries if e.get("latestRevision"))
            matches = on_latest == want and sum(actual.values()) == 100
        if not matches:
            return False, f"traffic {traffic_of(obj)}: waiting for the newest revision at {want}%"
        return True, "ready"

    def status(self, obj: dict[str, Any]) -> tuple[bool, str]:  # the final split, from the object's own spec
        predictor = (obj.get("spec") or {}).get("predictor") or {}
        return self.check(obj, int(predictor[CANARY]) if CANARY in predictor else None)

    def outputs(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.get("metadata", {})
        return {"name": meta.get("name"), "namespace": meta.get("namespace"),
                "url": (obj.get("status") or {}).get("url"), "traffic": traffic_of(obj)}

    def _wait_for(self, ctx: StepContext, inputs: dict[str, Any], phase: str, canary: int | None,
                  ) -> dict[str, Any]:
        def poll() -> tuple[bool, Any]:
            seen = self._get(inputs)
            if seen is None:
                raise MlplatError(f"{self._what(inputs)} disappeared while {phase.lower()}")
            ready, doing = self.check(seen, canary)
            return (True, seen) if ready else (False, doing)

        step = "production 100%" if canary is None else f"canary {canary}%"
        return ctx.wait(poll, what=f"{self._what(inputs)} {phase} ({step})", **self.intervals)

    # the rollout (create, update, and find finishing a create) -------------------------------------------------

    def _roll(self, address: str, inputs: dict[str, Any], token: str, ctx: StepContext, phase: str,
              ) -> dict[str, Any]:
        id = _id_of(inputs)
        canary = self._canary(inputs)
        force = self.settings.force_conflicts
        if operation_of(ctx, "Apply") is None:
            resumed = operation_of(ctx, "RollOut") is not None
            rolled = resumed or not self._rolled_out(self._get(inputs), inputs)
            if rolled and not resumed:
                self.kube.apply(self._body(address, inputs, token, production_only=True), force=force)
                ctx.checkpoint(operation_id("RollOut", id))
            if rolled:
                self._wait_for(ctx, inputs, phase, None)
            if canary is not None or not rolled:
                self.kube.apply(self._body(address, inputs, token, production_only=False), force=force)
                ctx.checkpoint(operation_id("Apply", id))
        return self._wait_for(ctx, inputs, phase, canary)

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        id = _id_of(inputs)
        if operation_of(ctx, "Apply") is None and operation_of(ctx, "RollOut") is None:
            existing = self._get(inputs)
            if existing is not None and _token(existing) != ctx.token:
                raise MlplatError(f"{self._what(inputs)} already exists and was not made by this apply",
                                  hint=f"delete it, or adopt it: mlplat import {address} {id}")
        return Created(id, self.outputs(self._roll(address, inputs, ctx.token, ctx, "Creating")))

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        live = self._get(desired)  # keep the token of the create that made it (`find` after a crash)
        token = (_token(live) if live else None) or ctx.token
        return self.outputs(self._roll(ctx.address, desired, token, ctx, "Updating"))

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        """The ISVC the interrupted create made; its rollout is finished (a crash may have come between steps)."""
        id = _id_of(inputs)
        if find_own(id, ctx, lambda: self._get(inputs), _token) is None:
            return None
        return Created(id, self.outputs(self._roll(address, inputs, ctx.token, ctx, "Creating")))

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        seen = self._get(inputs) if _id_of(inputs) == id else self._get(dict(inputs, **_split(id)))
        if seen is None or seen.get("metadata", {}).get("deletionTimestamp"):
            return None
        live = _without_ours(seen)
        live.get("metadata", {}).get("annotations", {}).pop(PRODUCTION_ANNOTATION, None)  # bookkeeping
        return Observed(dict(inputs, manifest=project(live, inputs["manifest"]),
                             production=self._observed_production(seen, inputs["production"])), self.outputs(seen))

    @staticmethod
    def _observed_production(seen: dict[str, Any], declared: dict[str, Any]) -> Any:
        """The declared production predictor when it is the one rolled out; else what is live: the live predictor
        (no canary: it is the rolled-out one), or the annotation's hash of an unknown predictor."""
        live = (seen.get("spec") or {}).get("predictor") or {}
        if CANARY not in live:
            return project({k: v for k, v in live.items() if k != CANARY}, declared)
        mark = ((seen.get("metadata") or {}).get("annotations") or {}).get(PRODUCTION_ANNOTATION)
        return declared if mark == predictor_hash(declared) else {PRODUCTION_ANNOTATION: mark}


__all__ = ["ADDRESS_ANNOTATION", "PRODUCTION_ANNOTATION", "TOKEN_ANNOTATION", "InferenceService", "predictor_hash",
           "traffic_of"]
