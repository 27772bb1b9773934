"""The REST surface: discovery, the resource paths and their verbs, server-side apply, watch, the service proxy."""

from __future__ import annotations

import copy
import hashlib
import json
import random
import re
import string
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kube_fake import (
    GIT_VERSION,
    KubeError,
    Owner,
    Request,
    Response,
    _route_not_found,
    already_exists,
    bad_request,
    conflict,
    fields,
    invalid,
    not_found,
)
from kube_fake.registry import ResourceType, discovery_version

if TYPE_CHECKING:
    from kube_fake import KubeFake

_PROXY = re.compile(r"/api/v1/namespaces/(?P<ns>[^/]+)/services/(?P<svc>[^/]+)/proxy(?P<rest>/.*)?\Z")
MERGE_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
APPLY_TYPE = "application/apply-patch+yaml"
JSON_PATCH_TYPE = "application/json-patch+json"


def handle(fake: KubeFake, req: Request) -> Response:
    path = req.path.rstrip("/") or "/"
    proxy = _PROXY.match(req.path)
    if proxy:
        return _proxy(fake, req, proxy.group("ns"), proxy.group("svc"), proxy.group("rest") or "/")
    if req.method not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        raise KubeError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource",
                        {})
    if path in ("/version", "/api", "/apis") or re.fullmatch(r"/api/v1|/apis/[^/]+(/[^/]+)?", path):
        _log(fake, "discovery", "", "", path)
        if req.method != "GET":
            raise KubeError(405, "MethodNotAllowed",
                            "the server does not allow this method on the requested resource", {})
        return Response(200, _discovery(fake, path))
    found = re.fullmatch(r"/api/v1/(?P<rest>.+)|/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/(?P<rest2>.+)", path)
    if not found:
        raise _route_not_found()
    group, version = found.group("group") or "", found.group("version") or "v1"
    segs = (found.group("rest") or found.group("rest2")).split("/")
    ns = ""
    if segs[0] == "namespaces" and len(segs) >= 3 and segs[2] not in ("status", "finalize"):
        ns, segs = segs[1], segs[2:]
    plural, name = segs[0], segs[1] if len(segs) > 1 else ""
    sub = segs[2] if len(segs) > 2 else ""
    if len(segs) > 3:
        raise _route_not_found()
    with fake.changed:
        rt = fake.catalog.find(group, version, plural)
        if rt is None or (sub and sub not in rt.subresources) or (ns and not rt.namespaced):
            raise _route_not_found()
        verb = _verb(req, name, sub)
        _log(fake, verb, plural, ns, name)
        # a distinct request: its object and its body (an update is not the create's retry)
        body = hashlib.sha256(req.body or b"").hexdigest()[:12]
        if fake._should_throttle(verb, plural, (ns, name, sub, body)):
            raise KubeError(429, "TooManyRequests", "Too many requests, please try again later.",
                            {"retryAfterSeconds": 1}, {"Retry-After": "1"})
        if verb not in rt.verbs and verb not in ("apply",) and not sub:
            raise KubeError(405, "MethodNotAllowed", "the server does not allow this method on the requested "
                                                     "resource", {})
        if rt.namespaced and not ns and verb not in ("list", "watch"):
            raise _route_not_found()
        handler = _HANDLERS[verb]
        return handler(fake, req, rt, ns, name, sub)


def _log(fake: KubeFake, verb: str, plural: str, ns: str, name: str) -> None:
    with fake.lock:
        fake.calls.append((verb, plural, ns, name))


def _verb(req: Request, name: str, sub: str) -> str:
    method = req.method
    if method == "GET":
        if name:
            return "get"
        return "watch" if req.flag("watch") else "list"
    if method == "POST":
        if name:
            raise KubeError(405, "MethodNotAllowed", "the server does not allow this method on the requested "
                                                     "resource", {})
        return "create"
    if not name:
        if method == "DELETE":
            return "deletecollection"
        raise KubeError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource",
                        {})
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "apply" if req.headers.get("content-type", "").split(";")[0] == APPLY_TYPE else "patch"
    return "delete"


# --- discovery -------------------------------------------------------------------------------------------------


def _discovery(fake: KubeFake, path: str) -> dict[str, Any]:
    host = fake.url.split("//", 1)[1]
    if path == "/version":
        return discovery_version(GIT_VERSION)
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]}
    if path == "/api/v1":
        return _resource_list(fake, "", "v1")
    groups = fake.catalog.groups()
    if path == "/apis":
        return {"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [_group(name, versions) for name, versions in sorted(groups.items())]}
    parts = path.split("/")[2:]
    if parts[0] not in groups or (len(parts) == 2 and parts[1] not in groups[parts[0]]):
        raise _route_not_found()
    if len(parts) == 1:
        return {"kind": "APIGroup", "apiVersion": "v1", **_group(parts[0], groups[parts[0]])}
    return _resource_list(fake, parts[0], parts[1])


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": listed, "preferredVersion": dict(listed[0])}


def _resource_list(fake: KubeFake, group: str, version: str) -> dict[str, Any]:
    resources = [entry for rt in sorted(fake.catalog.in_group_version(group, version), key=lambda t: t.plural)
                 for entry in rt.discovery()]
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources}


# --- reads ---------------------------------------------------------------------------------------------------------


def _existing(fake: KubeFake, rt: ResourceType, ns: str, name: str) -> dict[str, Any]:
    obj = fake.find_object(rt.group, rt.plural, ns, name)
    if obj is None:
        raise not_found(rt, name)
    return obj


def _get(fake: KubeFake, req: Request, rt: ResourceType, ns: str, name: str, sub: str) -> Response:
    if rt.plural == "pods":
        pod = next((p for p in fake.controllers.pods(ns) if p["metadata"]["name"] == name), None)
        if pod is None:
            raise not_found(rt, name)
        return Response(200, pod)
    _existing(fake, rt, ns, name)
    fake.controllers.polled(rt, [(ns, name)])
    obj = copy.deepcopy(_existing(fake, rt, ns, name))
    if sub == "scale":
        return Response(200, _scale(obj))
    return Response(200, obj)


def _scale(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    selector = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                         if k in meta},
            "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                       "selector": ",".join(f"{k}={v}" for k, v in selector.items())}}


def parse_selector(text: str) -> list[tuple[str, str, set[str]]]:
    """A label selector as (key, op, values); ops: =, !=, in, notin, exists, !exists."""
    out: list[tuple[str, str, set[str]]] = []
    for part in re.split(r",(?![^(]*\))", text.strip()):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)", part)
        if m:
            out.append((m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",") if v.strip()}))
            continue
        m = re.fullmatch(r"([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)", part)
        if m:
            out.append((m.group(1), "!=" if m.group(2) == "!=" else "=", {m.group(3)}))
            continue
        m = re.fullmatch(r"(!?)\s*([\w./-]+)", part)
        if m:
            out.append((m.group(2), "!exists" if m.group(1) else "exists", set()))
            continue
        raise bad_request(f"unable to parse requirement: <nil>: Invalid value: \"{part}\": found '{part[:1]}', "
                          "expected: identifier")
    return out


def selector_matches(selector: list[tuple[str, str, set[str]]], labels: dict[str, str]) -> bool:
    for key, op, values in selector:
        have = labels.get(key)
        ok = {"=": have in values, "in": have in values, "!=": have not in values, "notin": have not in values,
              "exists": key in labels, "!exists": key not in labels}[op]
        if not ok:
            return False
    return True


def _field_filter(text: str) -> Callable[[dict[str, Any]], bool]:
    tests: list[tuple[str, bool, str]] = []
    for part in [p for p in text.split(",") if p]:
        m = re.fullmatch(r"([\w.]+)\s*(==|=|!=)\s*(.*)", part)
        if not m or m.group(1) not in ("metadata.name", "metadata.namespace", "status.phase", "spec.nodeName"):
            raise bad_request(f'"{part.split("=")[0]}" is not a known field selector: only "metadata.name", '
                              '"metadata.namespace"')
        tests.append((m.group(1), m.group(2) != "!=", m.group(3)))

    def check(obj: dict[str, Any]) -> bool:
        for path, equal, value in tests:
            have = fields.get_path(obj, tuple(path.split(".")))
            have = "" if fields.missing(have) else str(have)
            if (have == value) != equal:
                return False
        return True

    return check


def _matcher(req: Request) -> Callable[[dict[str, Any]], bool]:
    labels = parse_selector(req.query.get("labelSelector", ""))
    by_field = _field_filter(req.query.get("fieldSelector", ""))
    return lambda obj: selector_matches(labels, obj["metadata"].get("labels") or {}) and by_field(obj)


def _items(fake: KubeFake, rt: ResourceType, ns: str) -> list[dict[str, Any]]:
    if rt.plural == "pods":
        return fake.controllers.pods(ns or None)
    return fake.objects(rt.group, rt.plural, ns if ns else None)


def _list(fake: KubeFake, req: Request, rt: ResourceType, ns: str, name: str, sub: str) -> Response:
    match = _matcher(req)
    scope = [(o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in _items(fake, rt, ns)]
    fake.controllers.polled(rt, scope)
    items = []
    for obj in _items(fake, rt, ns):
        if match(obj):
            item = copy.deepcopy(obj)
            if rt.builtin:  # the real server leaves apiVersion and kind out of a built-in list's items
                item.pop("apiVersion", None)
                item.pop("kind", None)
            items.append(item)
    return Response(200, {"kind": f"{rt.kind}List", "apiVersion": rt.api_version,
                          "metadata": {"resourceVersion": str(fake.rv)}, "items": items})


def _watch(fake: KubeFake, req: Request, rt: ResourceType, ns: str, name: str, sub: str) -> Response:
    match = _matcher(req)
    timeout = float(req.query.get("timeoutSeconds") or 1800)
    since = req.query.get("resourceVersion", "")
    start: list[bytes] = []
    if since in ("", "0"):
        scope = [(o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in _items(fake, rt, ns)]
        fake.controllers.polled(rt, scope)
        start = [_event_line("ADDED", o) for o in _items(fake, rt, ns) if match(o)]
        cursor = fake.rv
    else:
        try:
            cursor = int(since)
        except ValueError:
            raise bad_request(f"invalid resource version: {since}") from None
        if cursor < fake.history_start:
            expired = KubeError(410, "Expired", f"too old resource version: {cursor} ({fake.history_start})").body()

            def expire(send: Callable[[bytes], bool]) -> None:
                send(_event_line("ERROR", expired))

            return Response(200, stream=expire)

    def stream(send: Callable[[bytes], bool]) -> None:
        nonlocal cursor
        for line in start:
            if not send(line):
                return
        deadline = time.monotonic() + timeout
        while not fake._stopping.is_set():
            with fake.changed:
                events = [e for e in fake.history if e.rv > cursor and e.key == (rt.group, rt.plural)]
                if events:
                    cursor = events[-1].rv
                elif fake.history and fake.history[-1].rv > cursor:
                    cursor = fake.history[-1].rv
                if not events:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    fake.changed.wait(min(left, 0.5))
                    continue
            for e in events:
                meta = e.obj["metadata"]
                if ns and meta.get("namespace") != ns:
                    continue
                if match(e.obj) and not send(_event_line(e.type, e.obj)):
                    return
            if time.monotonic() >= deadline:
                return

    return Response(200, stream=stream)


def _event_line(kind: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


# --- writes ----------------------------------------------------------------------------------------------------------


def _check_namespace(fake: KubeFake, rt: ResourceType, ns: str) -> None:
    if not rt.namespaced:
        return
    space = fake.find_object("", "namespaces", "", ns)
    nrt = fake.catalog.find("", "v1", "namespaces")
    assert nrt is not None
    if space is None:
        raise not_found(nrt, ns)
    if space["metadata"].get("deletionTimestamp"):
        raise KubeError(403, "Forbidden", f"{rt.qualified} \"\" is forbidden: unable to create new content in "
                                          f"namespace {ns} because it is being terminated",
                        {"kind": rt.plural, "group": rt.group, "causes": [{"reason": "NamespaceTerminating",
                                                                           "message": f"namespace {ns} is being "
                                                                                      "terminated",
                                                                           "field": "metadata.namespace"}]})


def _check_body(rt: ResourceType, body: Any, ns: str, name: str | None) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("the body of the request was in an unknown format - accepted media types include: "
                          "application/json, application/yaml, application/vnd.kubernetes.protobuf")
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if api_version and api_version != rt.api_version:
        raise bad_request(f"the API version in the data ({api_version}) does not match the expected API version "
                          f"({rt.api_version})")
    if kind and kind != rt.kind:
        raise bad_request(f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})")
    meta = body.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    if rt.namespaced and meta.get("namespace") and meta["namespace"] != ns:
        raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
    if name is not None and meta.get("name") and meta["name"] != name:
        raise bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
    return body


def _manager(req: Request) -> str:
    if req.query.get("fieldManager"):
        return req.query["fieldManager"]
    agent = req.headers.get("user-agent", "unknown")
    return agent.split("/", 1)[0][:128] or "unknown"


def _dry_run(req: Request) -> bool:
    return bool(req.query.get("dryRun"))


def _create(fake: KubeFake, req: Request, rt: ResourceType, ns: str, name: str, sub: str) -> Response:
    body = _check_body(rt, req.document(), ns, None)
    meta = body["metadata"]
    if not meta.get("name"):
        if meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
        else:
            raise invalid(rt, "", [("metadata.name", "Required value", "name or generateName is required")])
    _check_namespace(fake, rt, ns)
    if fake.find_object(rt.group, rt.plural, ns, meta["name"]) is not None:
        raise already_exists(rt, meta["name"])
    if _dry_run(req):
        return Response(201, body)
    if rt.has_status:
        body.pop("status", None)
    return Response(201, fake._write(rt, ns, meta["name"], body, None, _manager(req), "Update"))


def _update(fake: KubeFake, req: Request, rt: ResourceType, ns: str, name: str, sub: str) -> Response:
    body = _check_body(rt, req.document(), ns, name)
    old = _existing(fake, rt, ns, name)
    rv = body["metadata"].get("resourceVersion")
    if rv and rv != old["metadata"]["resourceVersion"]:
        raise conflict(rt, name)
    if sub == "scale":
        new = copy.deepcopy(old)
        new.setdefault("spec", {})["replicas"] = (body.get("spec") or {}).get("replicas", 0)
        return Response(200, _scale(fake._write(rt, ns, name, new, old, _manager(req), "Update")))
    if _dry_run(req):
        return Response(200, body)
    return Response(200, fake._write(rt, ns, name, body, old, _manager(req), "Update", sub if sub == "status"
                                     else ""))


def _patch(fake: KubeFake, req: Request, rt: ResourceType, ns: str, name: str, sub: str) -> Response:
    ctype = req.headers.get("content-type", "").split(";")[0].strip()
    old = _existing(fake, rt, ns, name)
    base = _scale(old) if sub == "scale" else old
    patch = req.document()
    if ctype in MERGE_TYPES:
        if not isinstance(patch, dict):
            raise bad_request("json: cannot unmarshal array into Go value of type map[string]interface {}")
        new = fields.merge_patch(copy.deepcopy(base), patch)
    elif ctype == JSON_PATCH_TYPE:
        if not isinstance(patch, list):
            raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
        try:
            new = fields.json_patch(base, patch)
        except fields.PatchError as err:
            raise KubeError(422, "Invalid", str(err)) from None
    else:
        raise KubeError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - accepted "
                        f"media types include: {JSON_PATCH_TYPE}, {MERGE_TYPES[0]}, {APPLY_TYPE}, {MERGE_TYPES[1]}",
                        {})
    rv = (new.get("metadata") or {}).get("resourceVersion")
    if rv and rv != old["metadata"]["resourceVersion"]:
        raise conflict(rt, name)
    if sub == "scale":
        scaled = copy.deepcopy(old)
        scaled.setdefault("spec", {})["replicas"] = (new.get("spec") or {}).get("replicas", 0)
        return Response(200, _scale(fake._write(rt, ns, name, scaled, old, _manager(req), "Update")))
    _check_body(rt, new, ns, name)
    if _dry_run(req):
        return Response(200, new)
    return Response(200, fake._write(rt, ns, name, new, old, _manager(req), "Update",
                                     sub if sub == "status" else ""))


def _apply(fake: KubeFake, req: Request, rt: ResourceType, ns: str, name: str, sub: str) -> Response:
    manager = req.query.get("fieldManager", "")
    if not manager:
        raise KubeError(422, "Invalid", 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is '
                                        "required for apply patch",
                        {"group": "meta.k8s.io", "kind": "PatchOptions",
                         "causes": [{"reason": "FieldValueRequired", "message": "Required value: is required for "
                                     "apply patch", "field": "fieldManager"}]})
    force = req.flag("force")
    applied = _check_body(rt, fields.strip_nulls(req.document()), ns, name)
    if not applied.get("apiVersion") or not applied.get("kind"):
        raise bad_request("error decoding YAML: Object 'Kind' is missing in '" + json.dumps(applied) + "'")
    applied["metadata"].pop("managedFields", None)
    applied["metadata"].pop("resourceVersion", None)
    if rt.has_status and sub != "status":
        applied.pop("status", None)
    subresource = "status" if sub == "status" else ""
    if sub == "status":
        applied = {"apiVersion": applied["apiVersion"], "kind": applied["kind"],
                   "metadata": {"name": name}, "status": applied.get("status", {})}
    old = fake.find_object(rt.group, rt.plural, ns, name)
    if old is None:
        if sub:
            raise not_found(rt, name)
        _check_namespace(fake, rt, ns)
    key = (rt.group, rt.plural, ns, name)
    mine_key = (manager, "Apply", subresource)
    owners = {k: Owner(o.api_version, o.time, set(o.paths)) for k, o in fake.owners.get(key, {}).items()}
    live = copy.deepcopy(old) if old is not None else {}
    new_paths = fields.leaves(applied)
    conflicts: dict[tuple[str, str, str], list[fields.Path]] = {}
    for other_key, owner in owners.items():
        if other_key == mine_key:
            continue
        for owned in owner.paths:
            for sent in new_paths:
                if not fields.overlaps(owned, sent):
                    continue
                at = owned if len(owned) >= len(sent) else sent
                if fields.get_path(applied, at) != fields.get_path(live, at):
                    conflicts.setdefault(other_key, []).append(at)
                    break
    if conflicts and not force:
        raise _apply_conflict(rt, name, conflicts, owners)
    for other_key, paths in conflicts.items():
        owners[other_key].paths -= set(paths)
        owners[other_key].paths = {p for p in owners[other_key].paths
                                   if not any(fields.overlaps(p, q) for q in paths)}
    previous = owners.get(mine_key, Owner(rt.api_version, fake.now())).paths
    result = live if old is not None else {}
    for path in previous:
        if any(fields.overlaps(path, sent) for sent in new_paths):
            continue
        if any(path in o.paths for k, o in owners.items() if k != mine_key):
            continue
        fields.delete_path(result, path)
    fields.merge_applied(result, applied)
    owners[mine_key] = Owner(rt.api_version, fake.now(), set(new_paths))
    owners = {k: o for k, o in owners.items() if o.paths}
    if _dry_run(req):
        return Response(200, result)
    written = fake._write(rt, ns, name, result, old, manager, "Apply", subresource, owners_after=owners)
    return Response(201 if old is None else 200, written)


def _apply_conflict(rt: ResourceType, name: str, conflicts: dict[tuple[str, str, str], list[fields.Path]],
                    owners: dict[tuple[str, str, str], Owner]) -> KubeError:
    total = sum(len(p) for p in conflicts.values())
    causes, lines = [], []
    for (manager, _op, _sub), paths in conflicts.items():
        using = owners[(manager, _op, _sub)].api_version
        who = f'"{manager}" using {using}'
        for p in sorted(paths):
            dotted = "." + ".".join(p)
            causes.append({"reason": "FieldManagerConflict", "message": f"conflict with {who}", "field": dotted})
        if len(paths) == 1:
            lines.append(f"conflict with {who}: .{'.'.join(paths[0])}")
        else:
            lines.append(f"conflicts with {who}:\n" + "\n".join("- ." + ".".join(p) for p in sorted(paths)))
    noun = "conflict" if total == 1 else "conflicts"
    message = f"Apply failed with {total} {noun}: " + "\n".join(lines)
    return KubeError(409, "Conflict", message, {**_details_for(rt, name), "causes": causes})


def _details_for(rt: ResourceType, name: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name}
    if rt.group:
        out["group"] = rt.group
    out["kind"] = rt.plural
    return out


def _delete(fake: KubeFake, req: Request, rt: ResourceType, ns: str, name: str, sub: str) -> Response:
    obj = _existing(fake, rt, ns, name)
    options = req.document() if req.body else {}
    pre = (options or {}).get("preconditions") or {}
    if pre.get("resourceVersion") and pre["resourceVersion"] != obj["metadata"]["resourceVersion"]:
        raise conflict(rt, name)
    if _dry_run(req):
        return Response(200, obj)
    return _delete_one(fake, rt, ns, name, obj)


def _delete_one(fake: KubeFake, rt: ResourceType, ns: str, name: str, obj: dict[str, Any]) -> Response:
    finalizers = list(obj["metadata"].get("finalizers") or [])
    if rt.plural == "namespaces":
        finalizers += (obj.get("spec") or {}).get("finalizers") or []
    if finalizers:
        if obj["metadata"].get("deletionTimestamp"):
            return Response(200, copy.deepcopy(obj))
        new = copy.deepcopy(obj)
        new["metadata"]["deletionTimestamp"] = fake.now()
        new["metadata"]["deletionGracePeriodSeconds"] = 0
        if rt.plural == "namespaces":
            new.setdefault("status", {})["phase"] = "Terminating"
        fake._mark_deleting(rt, ns, name, new)
        return Response(200, copy.deepcopy(
            fake.find_object(rt.group, rt.plural, ns, name) or new))
    fake.remove_object(rt, ns, name)
    if rt.plural in ("services", "namespaces"):  # their registries return the deleted object
        return Response(200, obj)
    return Response(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                          "details": {**_details_for(rt, name), "uid": obj["metadata"]["uid"]}})


def _deletecollection(fake: KubeFake, req: Request, rt: ResourceType, ns: str, name: str, sub: str) -> Response:
    match = _matcher(req)
    deleted = []
    for obj in [o for o in fake.objects(rt.group, rt.plural, ns if ns else None) if match(o)]:
        meta = obj["metadata"]
        _delete_one(fake, rt, meta.get("namespace", ""), meta["name"], obj)
        deleted.append(obj)
    return Response(200, {"kind": f"{rt.kind}List", "apiVersion": rt.api_version,
                          "metadata": {"resourceVersion": str(fake.rv)}, "items": deleted})


def _proxy(fake: KubeFake, req: Request, ns: str, svc: str, rest: str) -> Response:
    parts = svc.split(":")
    name = parts[1] if len(parts) == 3 or (len(parts) == 2 and parts[0] in ("http", "https")) else parts[0]
    verb = "proxy"
    _log(fake, verb, "services", ns, name)
    with fake.lock:
        # one request per path, whatever upload session id a retry gets (a new one each time)
        path = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "*", rest.split("?", 1)[0])
        reads = "proxy-read" if req.method in ("GET", "HEAD") else "proxy-write"
        if fake._should_throttle(reads, "services", (ns, name, req.method, path)):
            raise KubeError(429, "TooManyRequests", "Too many requests, please try again later.",
                            {"retryAfterSeconds": 1}, {"Retry-After": "1"})
        rt = fake.catalog.find("", "v1", "services")
        assert rt is not None
        _existing(fake, rt, ns, name)
    prefix = f"/api/v1/namespaces/{ns}/services/{svc}/proxy"
    return fake.dataplane.proxy(ns, name, req, rest, prefix)


_HANDLERS: dict[str, Callable[..., Response]] = {
    "get": _get, "list": _list, "watch": _watch, "create": _create, "update": _update, "patch": _patch,
    "apply": _apply, "delete": _delete, "deletecollection": _deletecollection,
}
