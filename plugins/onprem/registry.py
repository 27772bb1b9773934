"""Models as OCI artifacts in the cluster's registry (CNCF distribution), pushed through the API server's service
proxy with the kubeconfig's credentials: the registry needs no ingress of its own.

An artifact is an OCI image manifest at `<repository>:<tag>`: the empty config (`{}`), one layer (the model file,
media type `application/vnd.mlplat.model.<framework>`, titled with its file name) and annotations naming the stack,
the mlplat address and the create's token (`find` after a crash knows its own). Blobs are pushed monolithically
(POST an upload, PUT it with its digest), skipped when the registry already has them (HEAD).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from provisioner.cloud import CloudApiError, find_own, retryable
from provisioner.errors import MlplatError
from provisioner.provider import Created, Observed, ResourceProvider

if TYPE_CHECKING:
    from mlplat_plugins.onprem.sdk import Kube
    from mlplat_plugins.onprem.target import OnpremTarget
    from provisioner.operations import StepContext

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
ARTIFACT_TYPE = "application/vnd.mlplat.model.v1"
LAYER_TYPE_PREFIX = "application/vnd.mlplat.model."
EMPTY_CONFIG = {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2,
                "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest()}
TITLE = "org.opencontainers.image.title"
TOKEN_ANNOTATION = "dev.mlplat.token"
ADDRESS_ANNOTATION = "dev.mlplat.address"
STACK_ANNOTATION = "dev.mlplat.stack"
#: an upload's Location, absolute or relative, possibly already under the API server's proxy path
_UPLOAD_PATH = re.compile(r"^(?:.*?/services/[^/]+/proxy)?(/v2/.*)$")


class RegistryError(CloudApiError):
    """The registry's answer `{"errors": [{"code", "message"}]}` (or the API server's Status) to a failed call."""

    not_found_codes = CloudApiError.not_found_codes | {"MANIFEST_UNKNOWN", "BLOB_UNKNOWN", "NAME_UNKNOWN"}


class ModelArtifact(ResourceProvider):
    """A model file as an OCI artifact (`oci://<host>/<repository>:<tag>@<digest>`).

    A new file (sha256) is pushed again and the tag moved (in place: new `uri`, `digest`, `blob_url`); the
    manifest it superseded is deleted when mlplat made it. Delete removes the manifest by digest (the registry's
    garbage collection frees the blobs). Drift: `read` reports the tagged manifest's layer digest as `sha256`, so
    an artifact pushed over the tag out of band is drift, corrected by pushing the stack's file again.

    Import ID: `<repository>:<tag>`."""

    force_new = frozenset({"namespace", "service", "port", "repository", "tag"})
    update_outputs = frozenset({"uri", "blob_url", "digest", "sha256"})
    write_only = frozenset({"source"})  # a local path: the registry only knows its content

    def __init__(self, target: OnpremTarget) -> None:
        self.target = target

    @property
    def kube(self) -> Kube:
        return self.target.kube()

    # registry calls ----------------------------------------------------------------------------------------

    def _call(self, inputs: dict[str, Any], method: str, path: str, operation: str, ok: tuple[int, ...], *,
              body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """One registry request; statuses in `ok` (and 404, for callers to judge) are returned, 429/5xx are
        retryable, any other raises a RegistryError with the registry's code and message."""
        status, answer_headers, data = self.kube.proxy(method, inputs["namespace"], inputs["service"],
                                                       int(inputs["port"]), path, body=body, headers=headers)
        if status in ok or status == 404:
            return status, answer_headers, data
        code, message = _error_of(status, data)
        raised = retryable(status, _header(answer_headers, "Retry-After"), f"{operation}: {code}: {message}")
        raise raised or RegistryError(operation, code, message, status)

    def _ensure_blob(self, inputs: dict[str, Any], digest: str, data: bytes) -> None:
        """Push a blob unless the registry has it: POST an upload (202 + Location), PUT it whole with its digest."""
        repo = inputs["repository"]
        what = f"blob {digest} of {repo}"
        status, _, _ = self._call(inputs, "HEAD", f"/v2/{repo}/blobs/{digest}", f"check {what}", (200,))
        if status == 200:
            return
        status, headers, answer = self._call(inputs, "POST", f"/v2/{repo}/blobs/uploads/",
                                             f"start upload of {what}", (202,),
                                             headers={"Content-Type": "application/octet-stream"}, body=b"")
        location = _header(headers, "Location")
        if status != 202 or not location:  # 404: no such Service / repository
            code, message = _error_of(status, answer) if status != 202 else ("NO_LOCATION", "no Location header")
            raise RegistryError(f"start upload of {what}", code, message, status)
        parts = urlsplit(location)
        matched = _UPLOAD_PATH.match(parts.path)
        if matched is None:
            raise RegistryError(f"start upload of {what}", "BAD_LOCATION", f"unexpected upload location {location}",
                                status)
        path = f"{matched.group(1)}?{parts.query + '&' if parts.query else ''}digest={quote(digest)}"
        status, _, answer = self._call(inputs, "PUT", path, f"upload {what}", (201, 204),
                                       headers={"Content-Type": "application/octet-stream"}, body=data)
        if status == 404:
            raise RegistryError(f"upload {what}", *_error_of(status, answer), status)

    def _manifest(self, inputs: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
        """The manifest tagged `tag` and its digest, or None."""
        repo, tag = inputs["repository"], inputs["tag"]
        status, headers, data = self._call(inputs, "GET", f"/v2/{repo}/manifests/{tag}",
                                           f"get manifest {repo}:{tag}", (200,), headers={"Accept": MANIFEST_TYPE})
        if status == 404:
            return None
        try:
            manifest = json.loads(data)
        except ValueError:
            raise RegistryError(f"get manifest {repo}:{tag}", "MANIFEST_INVALID", "not JSON", status) from None
        digest = _header(headers, "Docker-Content-Digest") or "sha256:" + hashlib.sha256(data).hexdigest()
        return manifest, digest

    def _push(self, address: str, inputs: dict[str, Any], token: str) -> dict[str, Any]:
        """Push the file, the empty config and the manifest at the tag; the outputs."""
        source = Path(inputs["source"])
        try:
            data = source.read_bytes()
        except OSError as err:
            raise MlplatError(f"cannot read model artifact {source}: {err}") from None
        sha256 = hashlib.sha256(data).hexdigest()
        if sha256 != inputs["sha256"]:
            raise MlplatError(f"model artifact {source} changed since the plan (sha256 {sha256}, planned "
                              f"{inputs['sha256']})", hint="preview and apply again")
        layer_digest = f"sha256:{sha256}"
        self._ensure_blob(inputs, EMPTY_CONFIG["digest"], b"{}")
        self._ensure_blob(inputs, layer_digest, data)
        manifest = {
            "schemaVersion": 2, "mediaType": MANIFEST_TYPE, "artifactType": ARTIFACT_TYPE, "config": EMPTY_CONFIG,
            "layers": [{"mediaType": LAYER_TYPE_PREFIX + inputs["framework"], "digest": layer_digest,
                        "size": len(data), "annotations": {TITLE: inputs["file"]}}],
            "annotations": {STACK_ANNOTATION: self.target.context.stack_name, ADDRESS_ANNOTATION: address,
                            TOKEN_ANNOTATION: token}}
        # the client JSON-encodes a body sent with a JSON content type: send the dict, digest what it sends
        # (json.dumps with its default separators)
        digest = "sha256:" + hashlib.sha256(json.dumps(manifest).encode()).hexdigest()
        repo, tag = inputs["repository"], inputs["tag"]
        status, headers, answer = self._call(inputs, "PUT", f"/v2/{repo}/manifests/{tag}",
                                             f"put manifest {repo}:{tag}", (201,),
                                             headers={"Content-Type": MANIFEST_TYPE}, body=manifest)
        if status == 404:
            raise RegistryError(f"put manifest {repo}:{tag}", *_error_of(status, answer), status)
        return self._outputs(inputs, _header(headers, "Docker-Content-Digest") or digest, sha256)

    @staticmethod
    def _outputs(inputs: dict[str, Any], digest: str, sha256: str) -> dict[str, Any]:
        host, repo = inputs["host"], inputs["repository"]
        return {"uri": f"oci://{host}/{repo}:{inputs['tag']}@{digest}",
                "blob_url": f"http://{host}/v2/{repo}/blobs/sha256:{sha256}", "digest": digest, "sha256": sha256}

    @staticmethod
    def _id(inputs: dict[str, Any]) -> str:
        return f"{inputs['repository']}:{inputs['tag']}"

    def _delete_manifest(self, inputs: dict[str, Any], digest: str) -> None:
        repo = inputs["repository"]
        self._call(inputs, "DELETE", f"/v2/{repo}/manifests/{digest}", f"delete manifest {repo}@{digest}", (202,))

    # the protocol -------------------------------------------------------------------------------------------

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        seen = self._manifest(inputs)
        if seen is not None and _token(seen[0]) != ctx.token:
            made = seen[0].get("annotations") or {}
            by = f"mlplat made it for {made[ADDRESS_ANNOTATION]} in another apply" \
                if ADDRESS_ANNOTATION in made else "not by mlplat"
            raise MlplatError(f"{self._id(inputs)} already exists in registry {inputs['host']} and was not pushed "
                              f"by this apply ({by})", hint=f"delete it, or adopt it: mlplat import {address} "
                                                            f"{self._id(inputs)}")
        return Created(self._id(inputs), self._push(address, inputs, ctx.token))

    def _named(self, id: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """`inputs` naming the artifact `id` (`<repository>:<tag>`), which they may not (a delete gets only an id
        of its own: plugins/README.md, "delete by id")."""
        repository, _, tag = id.rpartition(":")
        return inputs if id == self._id(inputs) else dict(inputs, repository=repository, tag=tag)

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        inputs = self._named(id, inputs)
        seen = self._manifest(inputs)
        if seen is None:
            return None
        manifest, digest = seen
        layers = manifest.get("layers") or [{}]
        layer = layers[0] if len(layers) == 1 else {}
        sha256 = str(layer.get("digest", "unknown")).removeprefix("sha256:")
        media = str(layer.get("mediaType", ""))
        observed = {k: v for k, v in inputs.items() if k not in self.write_only}
        observed.update(sha256=sha256, file=(layer.get("annotations") or {}).get(TITLE),
                        framework=media.removeprefix(LAYER_TYPE_PREFIX) if media.startswith(LAYER_TYPE_PREFIX)
                        else media)
        return Observed(observed, self._outputs(inputs, digest, sha256))

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Push the new file and move the tag; delete the manifest it superseded when mlplat made it."""
        seen = self._manifest(desired)
        token = (_token(seen[0]) if seen else None) or ctx.token  # keep the create's token
        outputs = self._push(ctx.address, desired, token)
        if seen is not None and seen[1] != outputs["digest"] and _token(seen[0]):
            self._delete_manifest(desired, seen[1])
        return outputs

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        inputs = self._named(id, inputs)
        seen = self._manifest(inputs)
        if seen is not None:
            self._delete_manifest(inputs, seen[1])  # 404: deleted meanwhile, success

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        seen = find_own(self._id(inputs), ctx, lambda: self._manifest(inputs), lambda s: _token(s[0]))
        if seen is None:
            return None
        layers = seen[0].get("layers") or [{}]
        sha256 = str(layers[0].get("digest", "")).removeprefix("sha256:")
        if sha256 != inputs["sha256"]:
            return None  # pushed with another file: push again (the same tag, idempotent)
        return Created(self._id(inputs), self._outputs(inputs, seen[1], sha256))

    def import_(self, address: str, id: str, inputs: dict[str, Any]) -> Observed | None:
        """`mlplat import ADDRESS <repository>:<tag>`."""
        if id != self._id(inputs):
            return None
        return self.read(id, inputs)


def _token(manifest: dict[str, Any]) -> str | None:
    return (manifest.get("annotations") or {}).get(TOKEN_ANNOTATION)


def _header(headers: dict[str, str], name: str) -> str | None:
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def _error_of(status: int, data: bytes) -> tuple[str, str]:
    """(code, message) of a registry error body, or of the API server's Status, or the status itself."""
    try:
        answer = json.loads(data or b"{}")
    except ValueError:
        return str(status), (data or b"").decode(errors="replace")[:300] or f"HTTP {status}"
    if isinstance(answer, dict) and answer.get("errors"):
        first = answer["errors"][0] or {}
        return str(first.get("code") or status), "; ".join(
            str(e.get("message") or e.get("code")) for e in answer["errors"] if isinstance(e, dict))
    if isinstance(answer, dict) and answer.get("kind") == "Status":
        return str(answer.get("reason") or status), str(answer.get("message") or "")
    return str(status), f"HTTP {status}"
