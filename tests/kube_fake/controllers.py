"""What a cluster's controllers do, run inside the fake (on every request, and every 50 ms): defaults the API
server's registries set, Deployment rollouts (ready after `rollout_polls` GETs; held, failed, unschedulable on
GPUs), PersistentVolumeClaim binding, finalization of deleted objects (a namespace's content), the Gateway's and
HTTPRoutes' status, and KServe's InferenceService revisions and canary traffic."""

from __future__ import annotations

import base64
import copy
import hashlib
import ipaddress
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kube_fake.registry import ResourceType

if TYPE_CHECKING:
    from kube_fake import KubeFake

MANAGER = "kube-controller-manager"
GATEWAY_CONTROLLER = "mlplat.dev/fake-gateway"
KSERVE_MANAGER = "kserve-controller-manager"
SYSTEM_FINALIZERS = {"kubernetes", "kubernetes.io/pvc-protection", "kubernetes.io/pv-protection"}


def template_hash(template: Any) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def pod_gpus(template: dict[str, Any]) -> int:
    total = 0
    for c in ((template.get("spec") or {}).get("containers") or []):
        res = c.get("resources") or {}
        want = (res.get("limits") or {}).get("nvidia.com/gpu", (res.get("requests") or {}).get("nvidia.com/gpu", 0))
        total += int(want or 0)
    return total


def conditions(previous: list[dict[str, Any]] | None, now: str, *wanted: dict[str, Any]) -> list[dict[str, Any]]:
    """Conditions that keep their lastTransitionTime (and lastUpdateTime) while their status stays."""
    before = {c.get("type"): c for c in previous or []}
    out = []
    for c in wanted:
        old = before.get(c["type"])
        keep = old is not None and old.get("status") == c["status"]
        stamped = {**c, "lastTransitionTime": old.get("lastTransitionTime", now) if keep and old else now}
        if "lastUpdateTime" in c:
            same = keep and old is not None and old.get("reason") == c.get("reason")
            stamped["lastUpdateTime"] = old.get("lastUpdateTime", now) if same and old else now
        out.append(stamped)
    return out


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@dataclass
class Rollout:
    """A Deployment's (or InferenceService revision's) rollout: GETs left before it is ready."""

    generation: int = 0
    polls_left: int = 0
    live_template: dict[str, Any] | None = None  # the pod template the running (ready) pods have
    live_replicas: int = 0


@dataclass
class Isvc:
    revisions: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    generation: int = 0
    polls_left: int = 0
    latest_ready: str = ""
    rolled_out: str = ""
    previous: str = ""


class Controllers:
    def __init__(self, fake: KubeFake) -> None:
        self.fake = fake
        self.reset()

    def reset(self) -> None:
        self.rollouts: dict[tuple[str, str], Rollout] = {}
        self.isvcs: dict[tuple[str, str], Isvc] = {}
        self.held: set[str] = set()
        self.failed: dict[str, str] = {}
        self._failed_at: dict[str, int] = {}
        self.killed: set[tuple[str, str]] = set()
        self.unschedulable: dict[tuple[str, str], str] = {}
        self.deleting_ticks: dict[tuple[str, str, str, str], int] = {}
        self._events_sent: set[tuple[str, str, int]] = set()

    def _rt(self, group: str, plural: str) -> ResourceType:
        rt = next((t for t in self.fake.catalog.types.values() if (t.group, t.plural) == (group, plural)), None)
        assert rt is not None, plural
        return rt

    # --- hooks the core calls -----------------------------------------------------------------------------------

    def written(self, rt: ResourceType, new: dict[str, Any], old: dict[str, Any] | None) -> None:
        meta = new["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        gen = int(meta.get("generation", 0))
        if rt.plural == "deployments":
            ro = self.rollouts.setdefault(key, Rollout())
            if gen != ro.generation:
                ro.generation, ro.polls_left = gen, self.fake.rollout_polls
        elif rt.plural == "inferenceservices" and rt.group == "serving.kserve.io":
            state = self.isvcs.setdefault(key, Isvc())
            if gen != state.generation:
                state.generation = gen
                predictor = copy.deepcopy((new.get("spec") or {}).get("predictor") or {})
                predictor.pop("canaryTrafficPercent", None)
                if not state.revisions or not _same(state.revisions[-1][1], predictor):
                    state.revisions.append((f"{meta['name']}-predictor-{len(state.revisions) + 1:05d}", predictor))
                    state.polls_left = self.fake.rollout_polls

    def removed(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        if rt.plural == "deployments":
            self.rollouts.pop(key, None)
            self.killed.discard(key)
        elif rt.plural == "inferenceservices":
            self.isvcs.pop(key, None)
        self.deleting_ticks.pop((rt.group, rt.plural, *key), None)

    def polled(self, rt: ResourceType, keys: list[tuple[str, str]]) -> None:
        """A client read these objects (a GET, a list, a watch's start): rollouts advance by one poll."""
        table: dict[tuple[str, str], Any] | None = {"deployments": self.rollouts,
                                                     "inferenceservices": self.isvcs}.get(rt.plural)
        if table is None:
            return
        for key in keys:
            state = table.get(key)
            if state is not None and state.polls_left > 0 and key[1] not in self.held:
                state.polls_left -= 1
        self.tick()

    # --- the loop ---------------------------------------------------------------------------------------------

    def tick(self) -> None:
        fake = self.fake
        with fake.lock:
            self._finalize()
            for dep in fake.objects("apps", "deployments"):
                self._deployment(dep)
            self._volumes()
            if ("gateway.networking.k8s.io", "v1", "gateways") in fake.catalog.types:
                self._gateways()
            if ("serving.kserve.io", "v1beta1", "inferenceservices") in fake.catalog.types:
                for isvc in fake.objects("serving.kserve.io", "inferenceservices"):
                    self._isvc(isvc)
            for quota in fake.objects("", "resourcequotas"):
                self._quota(quota)

    def _status(self, group: str, plural: str, obj: dict[str, Any], status: dict[str, Any],
                manager: str = MANAGER) -> None:
        if _same(obj.get("status"), status):
            return
        meta = obj["metadata"]
        new = copy.deepcopy(obj)
        new["status"] = status
        rt = self._rt(group, plural)
        self.fake._write(rt, meta.get("namespace", ""), meta["name"], new, obj, manager, "Update",
                         "status" if rt.has_status else "")

    # --- finalization --------------------------------------------------------------------------------------------

    def _finalize(self) -> None:
        fake = self.fake
        for (group, plural), items in list(fake.store.items()):
            for (ns, name), obj in list(items.items()):
                if not obj["metadata"].get("deletionTimestamp"):
                    continue
                key = (group, plural, ns, name)
                self.deleting_ticks[key] = self.deleting_ticks.get(key, 0) + 1
                if self.deleting_ticks[key] < fake.controller_ticks:
                    continue
                rt = self._rt(group, plural)
                if plural == "namespaces":
                    self._empty_namespace(name)
                    if any(ns2 == name for (g, p), its in fake.store.items() for (ns2, _) in its):
                        continue
                    new = copy.deepcopy(obj)
                    new.setdefault("spec", {})["finalizers"] = []
                    fake._write(rt, "", name, new, obj, MANAGER, "Update", "finalize")
                    continue
                if plural == "persistentvolumeclaims" and self._claim_in_use(ns, name):
                    continue
                kept = [f for f in obj["metadata"].get("finalizers") or [] if f not in SYSTEM_FINALIZERS]
                if kept != (obj["metadata"].get("finalizers") or []):
                    new = copy.deepcopy(obj)
                    new["metadata"]["finalizers"] = kept
                    if not kept:
                        new["metadata"].pop("finalizers")
                    fake._write(rt, ns, name, new, obj, MANAGER, "Update")

    def _claim_in_use(self, ns: str, claim: str) -> bool:
        for dep in self.fake.objects("apps", "deployments", ns):
            ro = self.rollouts.get((ns, dep["metadata"]["name"]))
            if ro is None or ro.live_replicas == 0:
                continue
            for vol in ((ro.live_template or {}).get("spec") or {}).get("volumes") or []:
                if (vol.get("persistentVolumeClaim") or {}).get("claimName") == claim:
                    return True
        return False

    def _empty_namespace(self, ns: str) -> None:
        from kube_fake.api import _delete_one

        fake = self.fake
        for (group, plural), items in list(fake.store.items()):
            for (ons, name), obj in list(items.items()):
                if ons != ns or obj["metadata"].get("deletionTimestamp"):
                    continue
                _delete_one(fake, self._rt(group, plural), ns, name, obj)

    # --- deployments -------------------------------------------------------------------------------------------

    def _deployment(self, dep: dict[str, Any]) -> None:
        fake = self.fake
        meta, spec = dep["metadata"], dep.get("spec") or {}
        key = (meta["namespace"], meta["name"])
        ro = self.rollouts.setdefault(key, Rollout(int(meta.get("generation", 1))))
        gen = int(meta.get("generation", 1))
        replicas = int(spec.get("replicas", 1))
        template = spec.get("template") or {}
        rs = f'{meta["name"]}-{template_hash(template)}'
        name = meta["name"]
        if name in self.failed and self._failed_at.setdefault(name, gen) < gen:
            self.failed.pop(name)
            self._failed_at.pop(name)
        gpus = pod_gpus(template) * replicas
        used = sum(pod_gpus(r.live_template or {}) * r.live_replicas for k, r in self.rollouts.items() if k != key)
        if gpus and gpus > fake.gpus_available - used and not (_same(ro.live_template, template)
                                                                and ro.live_replicas == replicas):
            self.unschedulable[key] = ("0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 "
                                       "nodes are available: 1 No preemption victims found for incoming pod.")
            self._scheduling_event(key, gen, rs)
        else:
            self.unschedulable.pop(key, None)
        ready = (ro.polls_left <= 0 and name not in self.held and name not in self.failed
                 and key not in self.unschedulable and not meta.get("deletionTimestamp"))
        if ready and (not _same(ro.live_template, template) or ro.live_replicas != replicas
                      or ro.generation != gen):
            if not _same(ro.live_template, template):
                self.killed.discard(key)
            ro.live_template, ro.live_replicas, ro.generation = copy.deepcopy(template), replicas, gen
        now = fake.now()
        prev = (dep.get("status") or {}).get("conditions")
        done = ready and _same(ro.live_template, template) and ro.live_replicas == replicas
        available = ro.live_replicas if ro.live_template is not None else 0
        status: dict[str, Any] = {"observedGeneration": gen}
        if done:
            status.update(replicas=replicas, updatedReplicas=replicas, readyReplicas=replicas,
                          availableReplicas=replicas)
            progressing = {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                           "message": f'ReplicaSet "{rs}" has successfully progressed.', "lastUpdateTime": now}
        else:
            status.update(replicas=replicas + available, updatedReplicas=replicas, readyReplicas=available,
                          availableReplicas=available, unavailableReplicas=replicas)
            if name in self.failed:
                progressing = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                               "message": self.failed[name] or f'ReplicaSet "{rs}" has timed out progressing.',
                               "lastUpdateTime": now}
            else:
                progressing = {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                               "message": f'ReplicaSet "{rs}" is progressing.', "lastUpdateTime": now}
        if status.get("availableReplicas", 0) >= max(replicas - replicas // 4, 0) and (done or available):
            avail = {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                     "message": "Deployment has minimum availability.", "lastUpdateTime": now}
        else:
            avail = {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                     "message": "Deployment does not have minimum availability.", "lastUpdateTime": now}
        status = {k: v for k, v in status.items() if v != 0 or k == "observedGeneration"}
        status["conditions"] = conditions(prev, now, avail, progressing)
        if _same({**(dep.get("status") or {}), "conditions": None}, {**status, "conditions": None}) and all(
                (p.get("status"), p.get("reason"), p.get("message")) == (c["status"], c["reason"], c["message"])
                for p, c in zip(prev or [], status["conditions"], strict=False)) and len(prev or []) == 2:
            return
        self._status("apps", "deployments", dep, status)

    def _scheduling_event(self, key: tuple[str, str], gen: int, rs: str) -> None:
        if (*key, gen) in self._events_sent or self.fake.find_object("", "namespaces", "", key[0]) is None:
            return
        self._events_sent.add((*key, gen))
        pod = f"{rs}-{template_hash([key, gen])[:5]}"
        self.fake.put_object({"apiVersion": "v1", "kind": "Event",
                              "metadata": {"name": f"{pod}.{template_hash(pod)[:16]}", "namespace": key[0]},
                              "involvedObject": {"kind": "Pod", "namespace": key[0], "name": pod, "apiVersion": "v1"},
                              "reason": "FailedScheduling", "message": self.unschedulable[key], "type": "Warning",
                              "count": 1, "source": {"component": "default-scheduler"},
                              "firstTimestamp": self.fake.now(), "lastTimestamp": self.fake.now()},
                             manager="kube-scheduler")

    def available(self, ns: str, name: str) -> dict[str, Any] | None:
        """The pod template a Deployment's ready pods run, or None (no ready pod, or killed)."""
        ro = self.rollouts.get((ns, name))
        if ro is None or ro.live_template is None or ro.live_replicas == 0 or (ns, name) in self.killed:
            return None
        return ro.live_template

    def pods(self, namespace: str | None) -> list[dict[str, Any]]:
        """The (virtual) pods of the Deployments: the ready ones Running, the pending ones Pending."""
        out = []
        for dep in self.fake.objects("apps", "deployments", namespace):
            meta = dep["metadata"]
            key = (meta["namespace"], meta["name"])
            ro = self.rollouts.get(key, Rollout())
            template = (dep.get("spec") or {}).get("template") or {}
            wanted = int((dep.get("spec") or {}).get("replicas", 1))
            sets = []
            if ro.live_template is not None:
                sets.append((ro.live_template, ro.live_replicas, True))
            if not _same(ro.live_template, template) or ro.live_replicas != wanted:
                sets.append((template, wanted if not _same(ro.live_template, template)
                             else max(wanted - ro.live_replicas, 0), False))
            for tmpl, count, ready in sets:
                h = template_hash(tmpl)
                for i in range(count):
                    name = f"{meta['name']}-{h}-{template_hash([h, i])[:5]}"
                    labels = {**((tmpl.get("metadata") or {}).get("labels") or {}), "pod-template-hash": h}
                    cond = [{"type": "PodScheduled", "status": "True"}, {"type": "Ready",
                                                                        "status": "True" if ready else "False"}]
                    if not ready and key in self.unschedulable:
                        cond = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                 "message": self.unschedulable[key]}]
                    out.append({"apiVersion": "v1", "kind": "Pod",
                                "metadata": {"name": name, "namespace": meta["namespace"], "labels": labels,
                                             "uid": template_hash([name, meta["uid"]]),
                                             "resourceVersion": meta["resourceVersion"],
                                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                                  "name": f"{meta['name']}-{h}", "controller": True,
                                                                  "uid": template_hash([h, meta["uid"]])}]},
                                "spec": copy.deepcopy(tmpl.get("spec") or {}),
                                "status": {"phase": "Running" if ready and key not in self.killed else "Pending",
                                           "conditions": cond}})
        return out

    # --- volumes -----------------------------------------------------------------------------------------------------

    def _volumes(self) -> None:
        fake = self.fake
        claims = {(c["metadata"]["namespace"], c["metadata"]["name"]): c
                  for c in fake.objects("", "persistentvolumeclaims")}
        for pv in fake.objects("", "persistentvolumes"):
            ref = (pv.get("spec") or {}).get("claimRef")
            phase = "Available"
            if ref:
                claim = claims.get((ref.get("namespace", ""), ref.get("name", "")))
                phase = "Bound" if claim is not None and (not ref.get("uid") or ref["uid"] == claim["metadata"][
                    "uid"]) else "Released"
            if (pv.get("status") or {}).get("phase") != phase:
                self._status("", "persistentvolumes", pv, {"phase": phase})
        for (ns, name), claim in claims.items():
            spec = claim.get("spec") or {}
            volume = spec.get("volumeName")
            pv = fake.find_object("", "persistentvolumes", "", volume) if volume else None
            if pv is None:
                if (claim.get("status") or {}).get("phase") != "Pending":
                    self._status("", "persistentvolumeclaims", claim, {"phase": "Pending"})
                continue
            ref = (pv.get("spec") or {}).get("claimRef") or {}
            if ref and (ref.get("namespace"), ref.get("name")) != (ns, name):
                continue  # bound to another claim: this one stays Pending
            if not ref or ref.get("uid") != claim["metadata"]["uid"]:
                bound = copy.deepcopy(pv)
                bound.setdefault("spec", {})["claimRef"] = {
                    "kind": "PersistentVolumeClaim", "namespace": ns, "name": name, "apiVersion": "v1",
                    "uid": claim["metadata"]["uid"], "resourceVersion": claim["metadata"]["resourceVersion"]}
                fake._write(self._rt("", "persistentvolumes"), "", volume, bound, pv, MANAGER, "Update")
                pv = fake.find_object("", "persistentvolumes", "", volume) or bound
                self._status("", "persistentvolumes", pv, {"phase": "Bound"})
            status = {"phase": "Bound", "accessModes": (pv.get("spec") or {}).get("accessModes") or [],
                      "capacity": (pv.get("spec") or {}).get("capacity") or {}}
            annotations = claim["metadata"].get("annotations") or {}
            if annotations.get("pv.kubernetes.io/bind-completed") != "yes":
                annotated = copy.deepcopy(claim)
                annotated["metadata"].setdefault("annotations", {}).update({
                    "pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes"})
                claim = fake._write(self._rt("", "persistentvolumeclaims"), ns, name, annotated, claim, MANAGER,
                                    "Update")
                claim = fake.find_object("", "persistentvolumeclaims", ns, name) or claim
            self._status("", "persistentvolumeclaims", claim, status)

    def _quota(self, quota: dict[str, Any]) -> None:
        hard = (quota.get("spec") or {}).get("hard") or {}
        self._status("", "resourcequotas", quota, {"hard": dict(hard), "used": dict.fromkeys(hard, "0")})

    # --- the Gateway -------------------------------------------------------------------------------------------------

    def ensure_gateway(self) -> None:
        from kube_fake import GATEWAY_CLASS, GATEWAY_NAME, GATEWAY_NAMESPACE

        fake = self.fake
        if fake.find_object("", "namespaces", "", GATEWAY_NAMESPACE) is None:
            fake.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": GATEWAY_NAMESPACE}})
        if fake.find_object("gateway.networking.k8s.io", "gatewayclasses", "", GATEWAY_CLASS) is None:
            fake.put_object({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                             "metadata": {"name": GATEWAY_CLASS}, "spec": {"controllerName": GATEWAY_CONTROLLER}})
        if fake.find_object("gateway.networking.k8s.io", "gateways", GATEWAY_NAMESPACE, GATEWAY_NAME) is None:
            fake.put_object({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                             "metadata": {"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE},
                             "spec": {"gatewayClassName": GATEWAY_CLASS,
                                      "listeners": [{"name": "http", "port": fake.dataplane.port,
                                                     "protocol": "HTTP",
                                                     "allowedRoutes": {"namespaces": {"from": "All"}}}]}})
        self._gateways()

    def _ours(self, gateway: dict[str, Any]) -> bool:
        cls = self.fake.find_object("gateway.networking.k8s.io", "gatewayclasses", "",
                                    (gateway.get("spec") or {}).get("gatewayClassName", ""))
        return cls is not None and (cls.get("spec") or {}).get("controllerName") == GATEWAY_CONTROLLER

    def _gateways(self) -> None:
        fake = self.fake
        now = fake.now()
        group = "gateway.networking.k8s.io"
        for cls in fake.objects(group, "gatewayclasses"):
            if (cls.get("spec") or {}).get("controllerName") != GATEWAY_CONTROLLER:
                continue
            gen = cls["metadata"].get("generation", 1)
            self._status(group, "gatewayclasses", cls, {"conditions": conditions(
                (cls.get("status") or {}).get("conditions"), now,
                {"type": "Accepted", "status": "True", "reason": "Accepted", "message": "Valid GatewayClass",
                 "observedGeneration": gen})}, "mlplat-fake-gateway")
        routes = fake.objects(group, "httproutes")
        for gw in fake.objects(group, "gateways"):
            if not self._ours(gw):
                continue
            gmeta = gw["metadata"]
            gen = gmeta.get("generation", 1)
            prev = gw.get("status") or {}
            attached = sum(1 for r in routes if self._attached(r, gw))
            listeners = []
            for lis in (gw.get("spec") or {}).get("listeners") or []:
                old = next((x for x in prev.get("listeners") or [] if x.get("name") == lis.get("name")), {})
                listeners.append({"name": lis.get("name"), "attachedRoutes": attached,
                                  "supportedKinds": [{"group": group, "kind": "HTTPRoute"}],
                                  "conditions": conditions(old.get("conditions"), now, *[
                                      {"type": t, "status": "True", "reason": t, "message": "",
                                       "observedGeneration": gen} for t in ("Accepted", "Programmed", "ResolvedRefs")
                                  ])})
            status = {"addresses": [{"type": "IPAddress", "value": "127.0.0.1"}],
                      "conditions": conditions(prev.get("conditions"), now, *[
                          {"type": t, "status": "True", "reason": t, "message": "", "observedGeneration": gen}
                          for t in ("Accepted", "Programmed")]),
                      "listeners": listeners}
            self._status(group, "gateways", gw, status, "mlplat-fake-gateway")
        for route in routes:
            self._route_status(route)

    def _attached(self, route: dict[str, Any], gw: dict[str, Any]) -> bool:
        for ref in (route.get("spec") or {}).get("parentRefs") or []:
            if ref.get("name") == gw["metadata"]["name"] and ref.get("namespace", route["metadata"]["namespace"]) \
                    == gw["metadata"]["namespace"] and ref.get("kind", "Gateway") == "Gateway":
                return True
        return False

    def _route_status(self, route: dict[str, Any]) -> None:
        fake = self.fake
        meta = route["metadata"]
        gen = meta.get("generation", 1)
        now = fake.now()
        prev = {json.dumps(p.get("parentRef"), sort_keys=True): p for p in (route.get("status") or {}).get(
            "parents") or []}
        missing = []
        for rule in (route.get("spec") or {}).get("rules") or []:
            refs = list(rule.get("backendRefs") or [])
            for f in rule.get("filters") or []:
                if f.get("type") == "RequestMirror":
                    refs.append((f.get("requestMirror") or {}).get("backendRef") or {})
            for ref in refs:
                if ref.get("kind", "Service") != "Service":
                    continue
                ns = ref.get("namespace", meta["namespace"])
                if fake.find_object("", "services", ns, ref.get("name", "")) is None:
                    missing.append(f"{ns}/{ref.get('name')}")
        parents = []
        for ref in (route.get("spec") or {}).get("parentRefs") or []:
            gw = fake.find_object("gateway.networking.k8s.io", "gateways", ref.get("namespace", meta["namespace"]),
                                  ref.get("name", ""))
            if gw is None or not self._ours(gw):
                continue
            parent_ref = {"group": "gateway.networking.k8s.io", "kind": "Gateway", **ref}
            old = prev.get(json.dumps(parent_ref, sort_keys=True), {})
            resolved = ({"type": "ResolvedRefs", "status": "False", "reason": "BackendNotFound",
                         "message": f"Service {missing[0]} not found", "observedGeneration": gen} if missing else
                        {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs",
                         "message": "Resolved all the Object references for the Route", "observedGeneration": gen})
            parents.append({"parentRef": parent_ref, "controllerName": GATEWAY_CONTROLLER,
                            "conditions": conditions(old.get("conditions"), now,
                                                     {"type": "Accepted", "status": "True", "reason": "Accepted",
                                                      "message": "Route is accepted", "observedGeneration": gen},
                                                     resolved)})
        self._status("gateway.networking.k8s.io", "httproutes", route, {"parents": parents}, "mlplat-fake-gateway")

    # --- KServe ---------------------------------------------------------------------------------------------------

    def revision(self, ns: str, name: str, revision: str) -> dict[str, Any] | None:
        state = self.isvcs.get((ns, name))
        if state is None:
            return None
        return next((spec for rev, spec in state.revisions if rev == revision), None)

    def _isvc(self, isvc: dict[str, Any]) -> None:
        fake = self.fake
        meta = isvc["metadata"]
        key = (meta["namespace"], meta["name"])
        state = self.isvcs.get(key)
        if state is None or not state.revisions:
            return
        latest = state.revisions[-1][0]
        if state.polls_left <= 0 and meta["name"] not in self.held and state.latest_ready != latest:
            state.latest_ready = latest
        canary = ((isvc.get("spec") or {}).get("predictor") or {}).get("canaryTrafficPercent")
        traffic: list[dict[str, Any]] = []
        if state.latest_ready:
            if canary is None or int(canary) >= 100 or not state.rolled_out or state.rolled_out == state.latest_ready:
                if state.rolled_out != state.latest_ready:
                    state.previous, state.rolled_out = state.rolled_out, state.latest_ready
                traffic = [{"revisionName": state.latest_ready, "percent": 100, "latestRevision": True}]
                if canary is not None and state.previous:
                    traffic = [{**traffic[0], "tag": "latest"},
                               {"revisionName": state.previous, "percent": 0, "latestRevision": False,
                                "tag": "prev"}]
            else:
                traffic = [{"tag": "latest", "revisionName": state.latest_ready, "percent": int(canary),
                            "latestRevision": True},
                           {"tag": "prev", "revisionName": state.rolled_out, "percent": 100 - int(canary),
                            "latestRevision": False}]
        ready = state.latest_ready == latest
        now = fake.now()
        prev = isvc.get("status") or {}
        url = f"{fake.dataplane.url}/serving/{key[0]}/{key[1]}"
        cond = [{"type": t, "status": "True" if ready else "False",
                 **({} if ready else {"reason": "RevisionMissing" if t != "IngressReady" else "Progressing",
                                      "message": f'Configuration "{meta["name"]}-predictor" is waiting for a '
                                                 f"Revision to become ready."})}
                for t in ("IngressReady", "LatestDeploymentReady", "PredictorReady", "Ready")]
        for c in cond:
            if c["type"] == "IngressReady" and state.latest_ready:
                c.clear()
                c.update(type="IngressReady", status="True")
        predictor = {"latestCreatedRevision": latest, "url": url}
        if state.latest_ready:
            predictor["latestReadyRevision"] = state.latest_ready
        if state.rolled_out:
            predictor["latestRolledoutRevision"] = state.rolled_out
        if state.previous or (canary is not None and state.rolled_out and state.rolled_out != state.latest_ready):
            predictor["previousRolledoutRevision"] = state.previous if state.rolled_out == state.latest_ready \
                else state.rolled_out
        if traffic:
            predictor["traffic"] = traffic
        status: dict[str, Any] = {"observedGeneration": meta.get("generation", 1),
                                  "conditions": conditions(prev.get("conditions"), now, *cond),
                                  "components": {"predictor": predictor},
                                  "modelStatus": {"states": {"activeModelState": "Loaded" if ready else "Pending",
                                                             "targetModelState": "Loaded"},
                                                  "transitionStatus": "UpToDate" if ready else "InProgress"}}
        if state.latest_ready:
            status["url"] = url
            status["address"] = {"url": f"http://{key[1]}.{key[0]}.svc.cluster.local"}
        self._status("serving.kserve.io", "inferenceservices", isvc, status, KSERVE_MANAGER)


# --- defaults (the API server's registry strategies) ------------------------------------------------------------

_next_ip = [10]


def apply_defaults(fake: KubeFake, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    meta = obj["metadata"]
    spec = obj.get("spec")
    if rt.plural == "namespaces":
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        if not meta.get("deletionTimestamp"):
            obj["status"] = {"phase": "Active"}
    elif rt.plural == "services":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        if old is not None and (old.get("spec") or {}).get("clusterIP"):
            spec["clusterIP"] = old["spec"]["clusterIP"]
        elif "clusterIP" not in spec:
            _next_ip[0] += 1
            spec["clusterIP"] = str(ipaddress.ip_address("10.96.0.0") + _next_ip[0])
        spec["clusterIPs"] = [spec["clusterIP"]]
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
        spec.setdefault("sessionAffinity", "None")
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        obj.setdefault("status", {"loadBalancer": {}})
    elif rt.plural == "deployments":
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        spec.setdefault("strategy", {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        pod = spec.setdefault("template", {}).setdefault("spec", {})
        pod.setdefault("restartPolicy", "Always")
        pod.setdefault("dnsPolicy", "ClusterFirst")
        pod.setdefault("schedulerName", "default-scheduler")
        pod.setdefault("terminationGracePeriodSeconds", 30)
    elif rt.plural == "persistentvolumeclaims":
        if old is None and "kubernetes.io/pvc-protection" not in (meta.get("finalizers") or []):
            meta.setdefault("finalizers", []).append("kubernetes.io/pvc-protection")
        obj.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
        obj.setdefault("status", {"phase": "Pending"})
    elif rt.plural == "persistentvolumes":
        if old is None and "kubernetes.io/pv-protection" not in (meta.get("finalizers") or []):
            meta.setdefault("finalizers", []).append("kubernetes.io/pv-protection")
        obj.setdefault("spec", {}).setdefault("persistentVolumeReclaimPolicy", "Retain")
        obj["spec"].setdefault("volumeMode", "Filesystem")
        obj.setdefault("status", {"phase": "Pending"})
    elif rt.plural == "secrets":
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None) or {}
        for k, v in string_data.items():
            obj.setdefault("data", {})[k] = base64.b64encode(str(v).encode()).decode()
    elif rt.plural == "priorityclasses":
        obj.setdefault("preemptionPolicy", "PreemptLowerPriority")
    elif rt.plural == "customresourcedefinitions":
        names = (spec or {}).get("names") or {}
        obj["status"] = {"acceptedNames": names, "storedVersions": [
            v.get("name") for v in (spec or {}).get("versions") or [] if v.get("storage")],
                         "conditions": [{"type": t, "status": "True", "reason": r, "message": m,
                                         "lastTransitionTime": meta.get("creationTimestamp", fake.now())}
                                        for t, r, m in (("NamesAccepted", "NoConflicts", "no conflicts found"),
                                                        ("Established", "InitialNamesAccepted",
                                                         "the initial names have been accepted"))]}
