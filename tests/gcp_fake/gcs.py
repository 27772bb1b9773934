"""Cloud Storage's JSON API as google-cloud-storage calls it (`storage.googleapis.com/storage/v1`, uploads at
`/upload/storage/v1`, media at `/download/storage/v1`): buckets (get), objects (multipart, resumable and media
uploads, get, `alt=media` downloads, patch, delete, list with prefix/delimiter).

Objects are kept as the resource JSON GCS returns (`objects["gcs_objects"]["<bucket>/<name>"]`: generation,
metageneration, size, md5Hash, crc32c as base64 of the big-endian value, custom `metadata`), their bytes in
`objects["gcs_media"]`. An upload whose JSON part carries `crc32c`/`md5Hash` (google-cloud-storage sends the one it
computed) is refused with 400 when the bytes do not match, as GCS does. Errors have GCS's JSON API shape
(`{"error": {"code", "message", "errors": [{"domain", "reason", "message"}]}}`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from gcp_fake import ApiError, Response

if TYPE_CHECKING:
    from gcp_fake import GcpFake, Request

OBJECTS, MEDIA, BUCKETS, SESSIONS = "gcs_objects", "gcs_media", "buckets", "gcs_uploads"
_B = r"/storage/v1/b/(?P<bucket>[^/]+)"
_UPLOAD = r"/upload/storage/v1/b/(?P<bucket>[^/]+)/o"
_OBJECT = _B + r"/o/(?P<object>.+)"


class GcsError(ApiError):
    """GCS's JSON API error body (a `reason` per error, no google.rpc `status`)."""

    REASONS = {400: "invalid", 404: "notFound", 409: "conflict", 412: "conditionNotMet", 429: "rateLimitExceeded"}

    def body(self) -> dict[str, Any]:
        reason = self.REASONS.get(self.code, "backendError")
        return {"error": {"code": self.code, "message": self.message,
                          "errors": [{"message": self.message, "domain": "global", "reason": reason}]}}


def register(fake: GcpFake) -> None:
    fake.route("GET", _B, "GetBucket", _get_bucket)
    fake.route("GET", _B + r"/o", "ListObjects", _list_objects)
    fake.route("GET", _OBJECT, "GetObject", _get_object)
    fake.route("GET", r"/download/storage/v1/b/(?P<bucket>[^/]+)/o/(?P<object>.+)", "GetObjectMedia", _media)
    fake.route("PATCH", _OBJECT, "PatchObject", _patch_object)
    fake.route("DELETE", _OBJECT, "DeleteObject", _delete_object)
    fake.route("POST", _UPLOAD, "InsertObject", _insert)
    fake.route("PUT", _UPLOAD, "InsertObject", _resumable_put)
    # the conftest fixture and the harness (the cloud console): direct access, no HTTP
    fake.create_bucket = lambda name: create_bucket(fake, name)  # type: ignore[attr-defined]
    fake.gcs_objects = lambda bucket=None, prefix="": list_objects(fake, bucket, prefix)  # type: ignore[attr-defined]
    fake.gcs_read = lambda bucket, name: read_object(fake, bucket, name)  # type: ignore[attr-defined]
    fake.gcs_write = (lambda bucket, name, data, metadata=None:  # type: ignore[attr-defined]
                      write_object(fake, bucket, name, data, metadata))
    fake.gcs_delete = lambda bucket, name: delete_object(fake, bucket, name)  # type: ignore[attr-defined]


# --- direct access (the harness) ----------------------------------------------------------------------------


def create_bucket(fake: GcpFake, name: str) -> dict[str, Any]:
    with fake.lock:
        now = fake.now()
        bucket = {"kind": "storage#bucket", "selfLink": f"{fake.url}/storage/v1/b/{name}", "id": name,
                  "name": name, "projectNumber": "123456789012", "metageneration": "1", "location": "US-CENTRAL1",
                  "storageClass": "STANDARD", "etag": "CAE=", "timeCreated": now, "updated": now,
                  "locationType": "region", "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": True}}}
        fake.objects[BUCKETS][name] = bucket
        return bucket


def list_objects(fake: GcpFake, bucket: str | None = None, prefix: str = "") -> list[dict[str, Any]]:
    """The object resources (every bucket's, or one's), their names starting with `prefix`."""
    with fake.lock:
        return [dict(o) for o in fake.objects[OBJECTS].values()
                if (bucket is None or o["bucket"] == bucket) and o["name"].startswith(prefix)]


def read_object(fake: GcpFake, bucket: str, name: str) -> bytes | None:
    with fake.lock:
        media = fake.objects[MEDIA].get(f"{bucket}/{name}")
        return None if media is None else media["data"]


def write_object(fake: GcpFake, bucket: str, name: str, data: bytes,
                 metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """Write an object out of band (`gsutil cp`): a new generation, the given custom metadata only."""
    with fake.lock:
        if bucket not in fake.objects[BUCKETS]:
            raise GcsError(404, "The specified bucket does not exist.")
        return _store(fake, bucket, {"name": name, **({"metadata": metadata} if metadata else {})}, data)


def delete_object(fake: GcpFake, bucket: str, name: str) -> bool:
    with fake.lock:
        fake.objects[MEDIA].pop(f"{bucket}/{name}", None)
        return fake.objects[OBJECTS].pop(f"{bucket}/{name}", None) is not None


# --- hashes ------------------------------------------------------------------------------------------------


def crc32c(data: bytes) -> str:
    import google_crc32c

    return base64.b64encode(google_crc32c.value(data).to_bytes(4, "big")).decode()


def md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


# --- handlers ----------------------------------------------------------------------------------------------


def _bucket(fake: GcpFake, name: str) -> dict[str, Any]:
    bucket = fake.objects[BUCKETS].get(name)
    if bucket is None:
        raise GcsError(404, "The specified bucket does not exist.")
    return bucket


def _object(fake: GcpFake, request: Request) -> dict[str, Any]:
    bucket, name = request.groups["bucket"], request.groups["object"]
    _bucket(fake, bucket)
    found = fake.objects[OBJECTS].get(f"{bucket}/{name}")
    if found is None:
        raise GcsError(404, f"No such object: {bucket}/{name}")
    _preconditions(found, request.query)
    return found


def _preconditions(found: dict[str, Any] | None, query: dict[str, str]) -> None:
    generation = found["generation"] if found else "0"
    want = query.get("ifGenerationMatch")
    if want is not None and want != generation:
        raise GcsError(412, "At least one of the pre-conditions you specified did not hold.")
    unwanted = query.get("ifGenerationNotMatch")
    if unwanted is not None and unwanted == generation:
        raise GcsError(304 if found else 412, "Not Modified")
    if "generation" in query and found is not None and query["generation"] != found["generation"]:
        raise GcsError(404, f"No such object: {found['bucket']}/{found['name']}")


def _get_bucket(fake: GcpFake, request: Request) -> dict[str, Any]:
    return _bucket(fake, request.groups["bucket"])


def _list_objects(fake: GcpFake, request: Request) -> dict[str, Any]:
    bucket = request.groups["bucket"]
    _bucket(fake, bucket)
    prefix, delimiter = request.query.get("prefix", ""), request.query.get("delimiter")
    items, prefixes = [], set()
    for found in sorted(list_objects(fake, bucket, prefix), key=lambda o: o["name"]):
        rest = found["name"][len(prefix):]
        if delimiter and delimiter in rest:
            prefixes.add(prefix + rest.split(delimiter, 1)[0] + delimiter)
        else:
            items.append(found)
    out: dict[str, Any] = {"kind": "storage#objects"}
    if items:
        out["items"] = items
    if prefixes:
        out["prefixes"] = sorted(prefixes)
    return out


def _get_object(fake: GcpFake, request: Request) -> Response | dict[str, Any]:
    found = _object(fake, request)
    if request.query.get("alt") == "media":
        return _media_response(fake, found)
    return found


def _media(fake: GcpFake, request: Request) -> Response:
    return _media_response(fake, _object(fake, request))


def _media_response(fake: GcpFake, found: dict[str, Any]) -> Response:
    data = fake.objects[MEDIA][f"{found['bucket']}/{found['name']}"]["data"]
    return Response(200, data, {"Content-Type": found.get("contentType", "application/octet-stream"),
                                "x-goog-hash": f"crc32c={found['crc32c']},md5={found['md5Hash']}",
                                "x-goog-generation": found["generation"],
                                "x-goog-metageneration": found["metageneration"],
                                "x-goog-stored-content-length": found["size"], "ETag": found["etag"]})


def _patch_object(fake: GcpFake, request: Request) -> dict[str, Any]:
    found = _object(fake, request)
    body = request.json()
    if "metadata" in body:
        merged = {**found.get("metadata", {}), **(body["metadata"] or {})}
        found["metadata"] = {k: v for k, v in merged.items() if v is not None}
    for key in ("contentType", "cacheControl", "contentDisposition", "contentEncoding", "contentLanguage"):
        if key in body:
            found[key] = body[key]
    found["metageneration"] = str(int(found["metageneration"]) + 1)
    found["updated"] = fake.now()
    return found


def _delete_object(fake: GcpFake, request: Request) -> Response:
    found = _object(fake, request)
    delete_object(fake, found["bucket"], found["name"])
    return Response(204, b"")


def _insert(fake: GcpFake, request: Request) -> Response | dict[str, Any]:
    bucket = request.groups["bucket"]
    _bucket(fake, bucket)
    kind = request.query.get("uploadType")
    if kind == "multipart":
        metadata, data = _multipart(request)
    elif kind == "media":
        metadata, data = {"name": request.query.get("name", "")}, request.body
    elif kind == "resumable":
        if "upload_id" in request.query:  # google-resumable-media finishes with PUT; a POST here is a bad call
            raise GcsError(400, "Resumable uploads continue with PUT.")
        metadata = request.json()
        if request.query.get("name"):
            metadata.setdefault("name", request.query["name"])
        if not metadata.get("name"):
            raise GcsError(400, "Required parameter: object name")
        upload_id = fake.new_id() + "-" + hashlib.sha1(str(time.time()).encode()).hexdigest()[:16]
        fake.objects[SESSIONS][upload_id] = {"bucket": bucket, "metadata": metadata, "data": b"",
                                             "query": dict(request.query)}
        location = f"{fake.url}/upload/storage/v1/b/{bucket}/o?uploadType=resumable&upload_id={upload_id}"
        return Response(200, b"", {"Location": location, "X-GUploader-UploadID": upload_id})
    else:
        raise GcsError(400, f"Invalid uploadType: {kind!r}")
    if not metadata.get("name"):
        raise GcsError(400, "Required parameter: object name")
    _preconditions(fake.objects[OBJECTS].get(f"{bucket}/{metadata['name']}"), request.query)
    return _store(fake, bucket, metadata, data)


def _resumable_put(fake: GcpFake, request: Request) -> Response | dict[str, Any]:
    upload_id = request.query.get("upload_id", "")
    session = fake.objects[SESSIONS].get(upload_id)
    if session is None:
        raise GcsError(404, "No such upload session.")
    # Content-Range: bytes <first>-<last>/<total or *>, or bytes */<total> (a status query)
    spec = request.headers.get("content-range", "").removeprefix("bytes ")
    span, _, total = spec.partition("/")
    if span != "*":
        first = int(span.split("-")[0])
        if first != len(session["data"]):
            raise GcsError(400, f"Invalid request: the chunk starts at {first}, {len(session['data'])} received")
        session["data"] += request.body
    if total in ("", "*") or len(session["data"]) < int(total):
        headers = {"Range": f"bytes=0-{len(session['data']) - 1}"} if session["data"] else {}
        return Response(308, b"", headers)
    del fake.objects[SESSIONS][upload_id]
    _preconditions(fake.objects[OBJECTS].get(f"{session['bucket']}/{session['metadata']['name']}"),
                   session["query"])
    return _store(fake, session["bucket"], session["metadata"], session["data"])


def _multipart(request: Request) -> tuple[dict[str, Any], bytes]:
    """The JSON metadata part and the media part of a multipart/related upload."""
    ctype = request.headers.get("content-type", "")
    boundary = next((p.split("=", 1)[1].strip().strip('"') for p in ctype.split(";")
                     if p.strip().startswith("boundary=")), None)
    if not ctype.startswith("multipart/related") or not boundary:
        raise GcsError(400, "Multipart uploads must be multipart/related with a boundary.")
    sep = b"--" + boundary.encode()
    parts = [p for p in request.body.split(sep)[1:] if not p.startswith(b"--")]
    if len(parts) != 2:
        raise GcsError(400, "A multipart upload has exactly two parts: metadata and media.")
    bodies = []
    for part in parts:
        _headers, _, body = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        bodies.append(body.removesuffix(b"\r\n"))
    try:
        metadata = json.loads(bodies[0])
    except ValueError:
        raise GcsError(400, "The metadata part is not JSON.") from None
    return metadata, bodies[1]


def _store(fake: GcpFake, bucket: str, metadata: dict[str, Any], data: bytes) -> dict[str, Any]:
    name = metadata["name"]
    if len(name.encode()) > 1024 or "\r" in name or "\n" in name:
        raise GcsError(400, "The object name is not valid.")
    crc, digest = crc32c(data), md5(data)
    if metadata.get("crc32c") not in (None, crc):
        raise GcsError(400, f"Provided CRC32C \"{metadata['crc32c']}\" doesn't match calculated CRC32C \"{crc}\".")
    if metadata.get("md5Hash") not in (None, digest):
        raise GcsError(400, f"Provided MD5 hash \"{metadata['md5Hash']}\" doesn't match calculated MD5 hash "
                            f"\"{digest}\".")
    generation = str(time.time_ns() // 1000)
    previous = fake.objects[OBJECTS].get(f"{bucket}/{name}")
    if previous is not None and int(previous["generation"]) >= int(generation):
        generation = str(int(previous["generation"]) + 1)
    now = fake.now()
    quoted = quote(name, safe="")
    found: dict[str, Any] = {
        "kind": "storage#object", "id": f"{bucket}/{name}/{generation}",
        "selfLink": f"{fake.url}/storage/v1/b/{bucket}/o/{quoted}",
        "mediaLink": f"{fake.url}/download/storage/v1/b/{bucket}/o/{quoted}?generation={generation}&alt=media",
        "name": name, "bucket": bucket, "generation": generation, "metageneration": "1",
        "contentType": metadata.get("contentType") or "application/octet-stream", "storageClass": "STANDARD",
        "size": str(len(data)), "md5Hash": digest, "crc32c": crc,
        "etag": base64.b64encode(generation.encode()).decode().rstrip("="),
        "timeCreated": now, "updated": now, "timeStorageClassUpdated": now, "timeFinalized": now,
    }
    if metadata.get("metadata"):
        found["metadata"] = {k: str(v) for k, v in metadata["metadata"].items() if v is not None}
    fake.objects[OBJECTS][f"{bucket}/{name}"] = found
    fake.objects[MEDIA][f"{bucket}/{name}"] = {"data": data}
    return found
