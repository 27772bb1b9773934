"""The data plane: the Gateway's listener (a second HTTP server on 127.0.0.1, `fake.gateway_url`), the API
server's service proxy, and what the "pods" behind a Service answer.

Routing follows the Gateway API: HTTPRoutes attached to `mlplat-gateway`, PathPrefix/Exact matches (the longest
wins), `URLRewrite` with `ReplacePrefixMatch`, weighted `backendRefs` (weight 0 never), `RequestMirror` with
`percent` (or `fraction`) sending a copy to its Service. `/serving/{ns}/{name}/...` reaches an InferenceService's
revisions by its status traffic. A Service reaches the Deployment whose pod template labels match its selector;
no ready pod (none, scaled to 0, held, killed) is Envoy's 503 `no healthy upstream`.

The pods: a model server (POST `{"instances": [[...]]}` -> `{"predictions": [sums], "model": MODEL_URI}`,
`GET .../metrics` Prometheus text), or, for an image like `registry:2` / `.../distribution`, an OCI Distribution
registry whose data lives with its PersistentVolumeClaim (so it survives a restart) or else its Deployment.
Simplification: a mirror is sent before the primary answer is written (so the counts are settled when the client
has its answer), not concurrently as Envoy does.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from loopback_server import METHODS, LoopbackServer, serve

from kube_fake import GATEWAY_NAME, GATEWAY_NAMESPACE, Request, Response, write

if TYPE_CHECKING:
    from kube_fake import KubeFake

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _text(status: int, text: str, **headers: str) -> Response:
    return Response(status, text.encode(), {"Content-Type": "text/plain", **headers})


def _oci_error(status: int, code: str, message: str, detail: Any = None) -> Response:
    err: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        err["detail"] = detail
    return Response(status, json.dumps({"errors": [err]}).encode(), {"Content-Type": "application/json"})


def _prefix_matches(prefix: str, path: str) -> bool:
    prefix = prefix.rstrip("/")
    return prefix == "" or path == prefix or path.startswith(prefix + "/")


class DataPlane:
    def __init__(self, fake: KubeFake) -> None:
        self.fake = fake
        self.server: LoopbackServer | None = None
        self.reset()

    def reset(self) -> None:
        self.served: Counter[tuple[str, str]] = Counter()
        self.mirrored: Counter[tuple[str, str]] = Counter()
        self.registries: dict[tuple[str, str], dict[str, Any]] = {}

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server = serve(self._dispatch, "kube-fake-dataplane", (*METHODS, "HEAD"))

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    # --- the Gateway's listener ---------------------------------------------------------------------------------

    def _dispatch(self, http: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(http.path)
        length = int(http.headers.get("Content-Length") or 0)
        body = http.rfile.read(length) if length else b""
        req = Request(http.command, unquote(parts.path), parts.query,
                      {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
                      {k.lower(): v for k, v in http.headers.items()}, body)
        try:
            response = self.route(req)
        except Exception as err:  # a bug in the fake: an Envoy-like 500
            response = _text(500, f"fake data plane error: {type(err).__name__}: {err}")
        write(http, response)

    def route(self, req: Request) -> Response:
        serving = re.fullmatch(r"/serving/(?P<ns>[^/]+)/(?P<name>[^/]+)(?P<rest>/.*)?", req.path)
        if serving:
            return self._isvc(serving.group("ns"), serving.group("name"), req, serving.group("rest") or "/")
        fake = self.fake
        with fake.lock:
            best: tuple[int, dict[str, Any], dict[str, Any], str] | None = None
            for route in fake.objects("gateway.networking.k8s.io", "httproutes"):
                if not self._attached(route):
                    continue
                for rule in (route.get("spec") or {}).get("rules") or []:
                    for match in rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]:
                        path = match.get("path") or {"type": "PathPrefix", "value": "/"}
                        value = path.get("value", "/")
                        ok = (req.path == value) if path.get("type") == "Exact" else _prefix_matches(value, req.path)
                        if match.get("method") and match["method"] != req.method:
                            ok = False
                        score = len(value) + (10_000 if path.get("type") == "Exact" else 0)
                        if ok and (best is None or score > best[0]):
                            best = (score, route, rule, value)
            if best is None:
                return _text(404, "")
            _, route, rule, matched = best
            ns = route["metadata"]["namespace"]
            target = req.path
            mirrors = []
            for f in rule.get("filters") or []:
                if f.get("type") == "URLRewrite":
                    rewrite = (f.get("urlRewrite") or {}).get("path") or {}
                    if rewrite.get("type") == "ReplacePrefixMatch":
                        rest = req.path[len(matched.rstrip("/")):]
                        repl = rewrite.get("replacePrefixMatch", "/")
                        target = (repl.rstrip("/") + rest) if rest else repl
                        target = target or "/"
                        if not target.startswith("/"):
                            target = "/" + target
                    elif rewrite.get("type") == "ReplaceFullPath":
                        target = rewrite.get("replaceFullPath", "/")
                elif f.get("type") == "RequestMirror":
                    mirrors.append(f.get("requestMirror") or {})
            refs = [r for r in rule.get("backendRefs") or [] if int(r.get("weight", 1)) > 0]
            if not refs:
                return _text(500, "")
            ref = random.choices(refs, weights=[int(r.get("weight", 1)) for r in refs])[0]
        for mirror in mirrors:
            pct = mirror.get("percent")
            if pct is None and mirror.get("fraction"):
                frac = mirror["fraction"]
                pct = 100.0 * int(frac.get("numerator", 0)) / int(frac.get("denominator", 100) or 100)
            if random.random() * 100 < float(100 if pct is None else pct):
                back = mirror.get("backendRef") or {}
                mns = back.get("namespace", ns)
                try:
                    self.backend(mns, back.get("name", ""), req, target)
                    with fake.lock:
                        self.mirrored[(mns, back.get("name", ""))] += 1
                except Exception:  # a mirror's failure is ignored
                    pass
        return self.backend(ref.get("namespace", ns), ref.get("name", ""), req, target, count=True)

    def _attached(self, route: dict[str, Any]) -> bool:
        for ref in (route.get("spec") or {}).get("parentRefs") or []:
            if ref.get("name") == GATEWAY_NAME and ref.get("namespace", route["metadata"]["namespace"]) == \
                    GATEWAY_NAMESPACE:
                return True
        return False

    def _isvc(self, ns: str, name: str, req: Request, rest: str) -> Response:
        fake = self.fake
        with fake.lock:
            isvc = fake.find_object("serving.kserve.io", "inferenceservices", ns, name)
            if isvc is None:
                return _text(404, "")
            traffic = [t for t in (((isvc.get("status") or {}).get("components") or {}).get("predictor") or {}).get(
                "traffic") or [] if int(t.get("percent", 0)) > 0]
            if not traffic:
                return _text(503, "no healthy upstream")
            pick = random.choices(traffic, weights=[int(t["percent"]) for t in traffic])[0]
            revision = pick["revisionName"]
            spec = fake.controllers.revision(ns, name, revision) or {}
            self.served[(ns, revision)] += 1
        return self._model_server(req, rest, _storage_uri(spec), revision)

    # --- Services and their pods -----------------------------------------------------------------------------

    def _deployment_for(self, ns: str, service: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(the Service's Deployment, the template its ready pods run or None). A Service reaches the ready pods of
        every Deployment its selector matches (as its EndpointSlices do): the first matching one with ready pods,
        else the first matching one (a new Deployment beside an old one leaves the old pods serving)."""
        fake = self.fake
        svc = fake.find_object("", "services", ns, service)
        selector = ((svc or {}).get("spec") or {}).get("selector") or {}
        if not selector:
            return None, None
        matching = [d for d in fake.objects("apps", "deployments", ns)
                    if all(((((d.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {})
                           .get(k) == v for k, v in selector.items())]
        for dep in matching:
            template = fake.controllers.available(ns, dep["metadata"]["name"])
            if template is not None:
                return dep, template
        return (matching[0], None) if matching else (None, None)

    def backend(self, ns: str, service: str, req: Request, path: str, count: bool = False) -> Response:
        with self.fake.lock:
            dep, template = self._deployment_for(ns, service)
            if dep is None or template is None:
                return _text(503, "no healthy upstream")
            if count:
                self.served[(ns, service)] += 1
            containers = (template.get("spec") or {}).get("containers") or [{}]
            image = containers[0].get("image", "")
            if image.startswith("registry:") or "/registry:" in image or "distribution" in image:
                return self._registry(self._registry_key(ns, dep["metadata"]["name"], template), req, path)
            env = {e.get("name"): e.get("value") for e in containers[0].get("env") or []}
        return self._model_server(req, path, env.get("MODEL_URI", ""), service)

    def proxy(self, ns: str, service: str, req: Request, path: str, prefix: str) -> Response:
        """The API server's service proxy: the pod's answer, Location rewritten under the proxy path as the
        real proxy transport does."""
        response = self.backend(ns, service, req, path)
        location = response.headers.get("Location")
        if location and location.startswith("/") and not location.startswith(prefix):
            response.headers["Location"] = self.fake.url + prefix + location
        return response

    def _model_server(self, req: Request, path: str, model: str, backend: str) -> Response:
        headers = {"X-Mlplat-Backend": backend}
        if req.method == "GET" and path.rstrip("/").endswith("/metrics"):
            return Response(200, f'mlplat_requests_total{{backend="{backend}"}} 1\n'.encode(),
                            {"Content-Type": "text/plain; version=0.0.4", **headers})
        if req.method in ("GET", "HEAD"):
            return Response(200, {"status": "alive", "model": model, "ready": True}, headers)
        if req.method != "POST":
            return Response(405, {"error": f"method {req.method} not allowed"}, headers)
        try:
            doc = json.loads(req.body or b"{}")
            predictions = [sum(float(x) for x in inst) for inst in doc["instances"]]
        except (ValueError, KeyError, TypeError):
            return Response(400, {"error": 'expected {"instances": [[numbers], ...]}'}, headers)
        return Response(200, {"predictions": predictions, "model": model}, headers)

    # --- the OCI registry pod --------------------------------------------------------------------------------

    def _registry_key(self, ns: str, deployment: str, template: dict[str, Any]) -> tuple[str, str]:
        for vol in (template.get("spec") or {}).get("volumes") or []:
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            if claim:
                return (ns, claim)
        return (ns, deployment)

    def registry_blobs(self, ns: str, key: str) -> dict[str, bytes]:
        return dict(self.registries.get((ns, key), {}).get("blobs", {}))

    def _registry(self, key: tuple[str, str], req: Request, path: str) -> Response:
        reg = self.registries.setdefault(key, {"blobs": {}, "uploads": {}, "manifests": {}})
        api = {"Docker-Distribution-API-Version": "registry/2.0"}
        m = req.method
        if re.fullmatch(r"/v2/?", path):
            return Response(200, b"{}", {"Content-Type": "application/json", **api})
        if path == "/v2/_catalog":
            return Response(200, {"repositories": sorted(reg["manifests"])}, api)
        found = re.fullmatch(r"/v2/(?P<repo>.+)/blobs/uploads/?", path)
        if found and m == "POST":
            repo = found.group("repo")
            digest = req.query.get("digest")
            if digest:
                return self._finish_upload(reg, repo, req.body, digest, api)
            upload = str(uuid.uuid4())
            reg["uploads"][upload] = bytearray()
            return Response(202, b"", {"Location": f"/v2/{repo}/blobs/uploads/{upload}", "Docker-Upload-UUID": upload,
                                       "Range": "0-0", **api})
        found = re.fullmatch(r"/v2/(?P<repo>.+)/blobs/uploads/(?P<id>[^/]+)", path)
        if found:
            repo, upload = found.group("repo"), found.group("id")
            if upload not in reg["uploads"]:
                return _oci_error(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
            data = reg["uploads"][upload]
            if m == "PATCH":
                data.extend(req.body)
                return Response(202, b"", {"Location": f"/v2/{repo}/blobs/uploads/{upload}",
                                           "Docker-Upload-UUID": upload, "Range": f"0-{max(len(data) - 1, 0)}", **api})
            if m == "PUT":
                digest = req.query.get("digest", "")
                response = self._finish_upload(reg, repo, bytes(data) + req.body, digest, api)
                if response.status == 201:
                    reg["uploads"].pop(upload)
                return response
            if m == "DELETE":
                reg["uploads"].pop(upload)
                return Response(204, b"", api)
            return Response(204, b"", {"Docker-Upload-UUID": upload, "Range": f"0-{max(len(data) - 1, 0)}", **api})
        found = re.fullmatch(r"/v2/(?P<repo>.+)/blobs/(?P<digest>[^/]+)", path)
        if found:
            digest = found.group("digest")
            blob = reg["blobs"].get(digest)
            if blob is None:
                return _oci_error(404, "BLOB_UNKNOWN", "blob unknown to registry", digest)
            if m == "DELETE":
                reg["blobs"].pop(digest)
                return Response(202, b"", api)
            headers = {"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest,
                       "Content-Length": str(len(blob)), **api}
            return Response(200, b"" if m == "HEAD" else blob, headers)
        found = re.fullmatch(r"/v2/(?P<repo>.+)/manifests/(?P<ref>[^/]+)", path)
        if found:
            return self._manifest(reg, found.group("repo"), found.group("ref"), req, api)
        found = re.fullmatch(r"/v2/(?P<repo>.+)/tags/list", path)
        if found:
            repo = found.group("repo")
            if repo not in reg["manifests"]:
                return _oci_error(404, "NAME_UNKNOWN", "repository name not known to registry", {"name": repo})
            tags = sorted(r for r in reg["manifests"][repo] if not r.startswith("sha256:"))
            return Response(200, {"name": repo, "tags": tags}, api)
        return _oci_error(404, "UNSUPPORTED", "the operation is unsupported")

    def _finish_upload(self, reg: dict[str, Any], repo: str, data: bytes, digest: str,
                       api: dict[str, str]) -> Response:
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if digest != actual:
            return _oci_error(400, "DIGEST_INVALID", "provided digest did not match uploaded content",
                              {"digest": digest, "actual": actual})
        reg["blobs"][digest] = bytes(data)
        return Response(201, b"", {"Location": f"/v2/{repo}/blobs/{digest}", "Docker-Content-Digest": digest, **api})

    def _manifest(self, reg: dict[str, Any], repo: str, ref: str, req: Request, api: dict[str, str]) -> Response:
        manifests = reg["manifests"]
        if req.method == "PUT":
            ctype = req.headers.get("content-type", OCI_MANIFEST).split(";")[0]
            try:
                doc = json.loads(req.body)
            except ValueError:
                return _oci_error(400, "MANIFEST_INVALID", "manifest invalid")
            refs = [doc.get("config") or {}, *(doc.get("layers") or [])] if "manifests" not in doc else []
            for blob in refs:
                if blob.get("digest") and blob["digest"] not in reg["blobs"]:
                    return _oci_error(400, "MANIFEST_BLOB_UNKNOWN", "blob unknown to registry", blob["digest"])
            digest = "sha256:" + hashlib.sha256(req.body).hexdigest()
            if ref.startswith("sha256:") and ref != digest:
                return _oci_error(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
            entry = (ctype, bytes(req.body))
            repo_manifests = manifests.setdefault(repo, {})
            repo_manifests[digest] = entry
            repo_manifests[ref] = entry
            return Response(201, b"", {"Location": f"/v2/{repo}/manifests/{digest}", "Docker-Content-Digest": digest,
                                       **api})
        entry = manifests.get(repo, {}).get(ref)
        if entry is None:
            if repo not in manifests and req.method != "DELETE":
                return _oci_error(404, "NAME_UNKNOWN", "repository name not known to registry", {"name": repo})
            return _oci_error(404, "MANIFEST_UNKNOWN", "manifest unknown", {"Tag": ref})
        ctype, body = entry
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if req.method == "DELETE":
            if not ref.startswith("sha256:"):
                return _oci_error(400, "UNSUPPORTED", "the operation is unsupported")
            for key in [k for k, v in manifests[repo].items() if v == entry]:
                manifests[repo].pop(key)
            return Response(202, b"", api)
        headers = {"Content-Type": ctype, "Docker-Content-Digest": digest, "Content-Length": str(len(body)), **api}
        return Response(200, b"" if req.method == "HEAD" else body, headers)


def _storage_uri(predictor: dict[str, Any]) -> str:
    for value in predictor.values():
        if isinstance(value, dict) and value.get("storageUri"):
            return str(value["storageUri"])
    for c in predictor.get("containers") or []:
        for e in c.get("env") or []:
            if e.get("name") in ("STORAGE_URI", "MODEL_URI"):
                return str(e.get("value", ""))
    return str(predictor.get("storageUri", ""))
