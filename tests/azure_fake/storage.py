"""Storage in the fake: the workspace's datastores (ARM), and the Blob and Azure Files data planes of its storage
accounts (`<account>.blob|file.core.windows.net`), as azure-ai-ml, azure-storage-blob and azure-storage-file-share
call them.

- ARM `.../workspaces/{ws}/datastores[/{name}]`: PUT (an upsert, synchronous: a datastore has no provisioning
  state), GET, DELETE (200, or 204 when absent), list (`isDefault=true` is `get_default`). `seed` makes the two
  datastores every workspace has: `workspaceblobstore` (AzureBlob, the default) and `workspacefilestore`.
- Blob: containers (`?restype=container` PUT/GET/HEAD/DELETE, `comp=list` listing blobs with prefix, delimiter,
  marker and metadata), block blobs (Put Blob with `x-ms-blob-type: BlockBlob`, Content-MD5 and
  x-ms-blob-content-md5 checked, `If-None-Match: *`; Put Block / Put Block List; Get Blob with `x-ms-range`/`Range`
  (206, 416 InvalidRange past the end); HEAD properties; DELETE 202), XML errors with `x-ms-error-code`.
- Files: shares (`?restype=share` PUT with x-ms-share-quota and x-ms-meta-*, 409 ShareAlreadyExists; GET/HEAD
  properties; `comp=properties` (quota) and `comp=metadata`; DELETE 202; `GET /?comp=list`).

Metadata names must be C# identifiers (400 InvalidMetadata otherwise), as the storage services require.
Blobs live in `fake.objects["blobs"]["<account>/<container>/<blob>"]`, containers in `["containers"]`, shares in
`["shares"]["<account>/<share>"]`; `blobs(fake, ...)` and `shares(fake, ...)` are the console's view.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import time
from email.utils import formatdate
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from azure_fake import STORAGE_ACCOUNT, WORKSPACE_PATH, ApiError, Request, Response, not_found

if TYPE_CHECKING:
    from azure_fake import AzureFake

WORKSPACE_ID = "33333333-3333-3333-3333-333333333333"
#: the workspace's default blob container, as Azure ML names it
BLOB_CONTAINER = f"azureml-blobstore-{WORKSPACE_ID}"
FILE_SHARE = f"code-{WORKSPACE_ID}"
DATASTORE_TYPE = "Microsoft.MachineLearningServices/workspaces/datastores"
DATASTORE_NAME = re.compile(r"[a-zA-Z0-9_]{1,255}")
SHARE_NAME = re.compile(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]")
CONTAINER_NAME = SHARE_NAME
METADATA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SHARE_QUOTA_MAX_GB = 102400
DATASTORE_TYPES = {"AzureBlob": ("accountName", "containerName"), "AzureFile": ("accountName", "fileShareName"),
                   "AzureDataLakeGen2": ("accountName", "filesystem")}


def register(fake: AzureFake) -> None:
    # the console's view, as methods of the server: fake.blobs(account, container=None), fake.shares(account)
    setattr(fake, "blobs", functools.partial(blobs, fake))  # noqa: B010
    setattr(fake, "shares", functools.partial(shares, fake))  # noqa: B010
    datastores = WORKSPACE_PATH + r"/datastores"
    fake.route("arm", "GET", datastores, "Datastores.List", _list_datastores)
    fake.route("arm", "PUT", datastores + r"/(?P<name>[^/]+)", "Datastores.CreateOrUpdate", _put_datastore)
    fake.route("arm", "GET", datastores + r"/(?P<name>[^/]+)", "Datastores.Get", _get_datastore)
    fake.route("arm", "DELETE", datastores + r"/(?P<name>[^/]+)", "Datastores.Delete", _delete_datastore)

    fake.route("blob", "GET", r"/", "Blob.ListContainers", _list_containers)
    container, blob = r"/(?P<container>[^/]+)", r"/(?P<container>[^/]+)/(?P<blob>.+)"
    fake.route("blob", "PUT", container, "Blob.CreateContainer", _put_container)
    fake.route("blob", "GET", container, "Blob.ContainerGet", _get_container)
    fake.route("blob", "HEAD", container, "Blob.GetContainerProperties", _get_container)
    fake.route("blob", "DELETE", container, "Blob.DeleteContainer", _delete_container)
    fake.route("blob", "PUT", blob, "Blob.Put", _put_blob)
    fake.route("blob", "GET", blob, "Blob.Get", _get_blob)
    fake.route("blob", "HEAD", blob, "Blob.GetProperties", _blob_properties)
    fake.route("blob", "DELETE", blob, "Blob.Delete", _delete_blob)

    fake.route("file", "GET", r"/", "File.ListShares", _list_shares)
    share = r"/(?P<share>[^/]+)"
    fake.route("file", "PUT", share, "File.PutShare", _put_share)
    fake.route("file", "GET", share, "File.GetShareProperties", _get_share)
    fake.route("file", "HEAD", share, "File.GetShareProperties", _get_share)
    fake.route("file", "DELETE", share, "File.DeleteShare", _delete_share)


def seed(fake: AzureFake) -> None:
    """The default datastores of a workspace, their container and share in the workspace's storage account."""
    for name, kind, where, default in (("workspaceblobstore", "AzureBlob", {"containerName": BLOB_CONTAINER}, True),
                                       ("workspacefilestore", "AzureFile", {"fileShareName": FILE_SHARE}, False)):
        fake.objects["datastores"][name] = _datastore(name, {
            "datastoreType": kind, "accountName": STORAGE_ACCOUNT, **where, "endpoint": "core.windows.net",
            "protocol": "https", "credentials": {"credentialsType": "AccountKey"}, "isDefault": default,
            "description": None, "tags": {}, "properties": {},
            "serviceDataAccessAuthIdentity": "WorkspaceSystemAssignedIdentity"})
    fake.objects["containers"][f"{STORAGE_ACCOUNT}/{BLOB_CONTAINER}"] = _container(fake, BLOB_CONTAINER, {})
    fake.objects["shares"][f"{STORAGE_ACCOUNT}/{FILE_SHARE}"] = _share(FILE_SHARE, 5120, {})


# --- console helpers -----------------------------------------------------------------------------------------


def blobs(fake: AzureFake, account: str = STORAGE_ACCOUNT, container: str | None = None) -> dict[str, bytes]:
    """The blobs of `account` (`<container>/<blob>` → content), or of one container (`<blob>` → content)."""
    out = {}
    for key, blob in fake.objects["blobs"].items():
        acct, cont, name = key.split("/", 2)
        if acct == account and (container is None or cont == container):
            out[name if container else f"{cont}/{name}"] = blob["content"]
    return out


def shares(fake: AzureFake, account: str = STORAGE_ACCOUNT) -> dict[str, dict[str, Any]]:
    """The shares of `account` other than the workspace's own: name → {"quota", "metadata"}."""
    return {s["name"]: {"quota": s["quota"], "metadata": dict(s["metadata"])}
            for key, s in fake.objects["shares"].items() if key.startswith(f"{account}/") and s["name"] != FILE_SHARE}


# --- ARM datastores --------------------------------------------------------------------------------------------


def _datastore(name: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"{WORKSPACE_PATH}/datastores/{name}", "name": name, "type": DATASTORE_TYPE,
            "properties": properties,
            "systemData": {"createdAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                           "createdBy": "mlplat", "createdByType": "Application"}}


def _put_datastore(fake: AzureFake, request: Request) -> Response:
    name = request.groups["name"]
    if not DATASTORE_NAME.fullmatch(name):
        raise ApiError(400, "UserError", f"Datastore name {name!r} is invalid: it may contain only letters, digits "
                                         "and underscores.")
    body = request.json()
    props = dict(body.get("properties") or {})
    kind = props.get("datastoreType")
    if kind not in DATASTORE_TYPES:
        raise ApiError(400, "UserError", f"Unsupported datastoreType {kind!r}.")
    for field in DATASTORE_TYPES[kind]:
        if not props.get(field):
            raise ApiError(400, "UserError", f"properties.{field} is required for a {kind} datastore.")
    existing = fake.objects["datastores"].get(name.lower())
    if existing is not None and existing["properties"].get("isDefault") and kind != existing["properties"][
            "datastoreType"]:
        raise ApiError(400, "UserError", f"The default datastore {name} cannot change its type.")
    props.setdefault("endpoint", "core.windows.net")
    props.setdefault("protocol", "https")
    props.setdefault("credentials", {"credentialsType": "None"})
    props.setdefault("tags", {})
    props["isDefault"] = bool(existing and existing["properties"].get("isDefault"))
    obj = _datastore(name, props)
    if existing is not None:
        obj["systemData"] = existing["systemData"]
    fake.objects["datastores"][name.lower()] = obj
    return Response(201 if existing is None else 200, obj)


def _get_datastore(fake: AzureFake, request: Request) -> dict[str, Any]:
    found = fake.objects["datastores"].get(request.groups["name"].lower())
    if found is None:
        raise not_found("Microsoft.MachineLearningServices/workspaces/datastores",
                        f"{fake.workspace}/{request.groups['name']}")
    return found


def _list_datastores(fake: AzureFake, request: Request) -> dict[str, Any]:
    found = list(fake.objects["datastores"].values())
    if request.query.get("isDefault", "").lower() == "true":
        found = [d for d in found if d["properties"].get("isDefault")]
    return {"value": found}


def _delete_datastore(fake: AzureFake, request: Request) -> Response:
    found = fake.objects["datastores"].get(request.groups["name"].lower())
    if found is None:
        return Response(204)
    if found["properties"].get("isDefault"):
        raise ApiError(400, "UserError", "The workspace's default datastore cannot be deleted.")
    del fake.objects["datastores"][request.groups["name"].lower()]
    return Response(200)


# --- storage services: shared pieces -----------------------------------------------------------------------------


def _http_date(seconds: float | None = None) -> str:
    return formatdate(seconds if seconds is not None else time.time(), usegmt=True)


def _etag(fake: AzureFake) -> str:
    return f'"0x8DC{int(fake.new_id()):013X}"'


def _metadata(request: Request) -> dict[str, str]:
    """The x-ms-meta-* headers; names must be C# identifiers."""
    meta = {}
    for key, value in request.headers.items():
        if key.startswith("x-ms-meta-"):
            name = key[len("x-ms-meta-"):]
            if not METADATA_NAME.fullmatch(name):
                raise ApiError(400, "InvalidMetadata", "The metadata specified is invalid. It has characters that "
                                                       "are not permitted.", xml=True)
            meta[name] = value
    return meta


def _meta_headers(meta: dict[str, str]) -> dict[str, str]:
    return {f"x-ms-meta-{k}": v for k, v in meta.items()}


def _common(request: Request) -> dict[str, str]:
    return {"x-ms-request-id": request.headers.get("x-ms-client-request-id", ""),
            "x-ms-version": request.headers.get("x-ms-version", "2025-01-05"), "Date": _http_date()}


def _xml(body: str, request: Request, status: int = 200) -> Response:
    return Response(status, ('<?xml version="1.0" encoding="utf-8"?>' + body).encode(),
                    {"Content-Type": "application/xml", **_common(request)})


# --- blob ------------------------------------------------------------------------------------------------------


def _container(fake: AzureFake, name: str, meta: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "metadata": meta, "etag": _etag(fake), "modified": time.time()}


def _need_container(fake: AzureFake, request: Request) -> dict[str, Any]:
    found = fake.objects["containers"].get(f"{request.groups['account']}/{request.groups['container']}")
    if found is None:
        raise ApiError(404, "ContainerNotFound", "The specified container does not exist.", xml=True)
    return found


def _restype(request: Request, expected: str) -> None:
    if request.query.get("restype") != expected:
        raise ApiError(400, "InvalidQueryParameterValue", f"Value for one of the query parameters specified in the "
                                                          f"request URI is invalid. restype must be {expected}.",
                       xml=True)


def _list_containers(fake: AzureFake, request: Request) -> Response:
    if request.query.get("comp") != "list":
        raise ApiError(400, "InvalidQueryParameterValue", "comp must be list.", xml=True)
    account = request.groups["account"]
    items = "".join(f"<Container><Name>{escape(c['name'])}</Name><Properties><Last-Modified>"
                    f"{_http_date(c['modified'])}</Last-Modified><Etag>{c['etag']}</Etag></Properties></Container>"
                    for key, c in sorted(fake.objects["containers"].items()) if key.startswith(f"{account}/"))
    return _xml(f'<EnumerationResults ServiceEndpoint="https://{account}.blob.core.windows.net/">'
                f"<Containers>{items}</Containers><NextMarker /></EnumerationResults>", request)


def _put_container(fake: AzureFake, request: Request) -> Response:
    _restype(request, "container")
    key = f"{request.groups['account']}/{request.groups['container']}"
    if not CONTAINER_NAME.fullmatch(request.groups["container"]):
        raise ApiError(400, "InvalidResourceName", "The specifed resource name contains invalid characters.",
                       xml=True)
    if key in fake.objects["containers"]:
        raise ApiError(409, "ContainerAlreadyExists", "The specified container already exists.", xml=True)
    container = fake.objects["containers"][key] = _container(fake, request.groups["container"], _metadata(request))
    return Response(201, None, {"ETag": container["etag"], "Last-Modified": _http_date(container["modified"]),
                                **_common(request)})


def _get_container(fake: AzureFake, request: Request) -> Response:
    if request.query.get("comp") == "list":
        return _list_blobs(fake, request)
    _restype(request, "container")
    container = _need_container(fake, request)
    return Response(200, None, {"ETag": container["etag"], "Last-Modified": _http_date(container["modified"]),
                                "x-ms-lease-status": "unlocked", "x-ms-lease-state": "available",
                                "x-ms-has-immutability-policy": "false", "x-ms-has-legal-hold": "false",
                                **_meta_headers(container["metadata"]), **_common(request)})


def _delete_container(fake: AzureFake, request: Request) -> Response:
    _restype(request, "container")
    _need_container(fake, request)
    prefix = f"{request.groups['account']}/{request.groups['container']}/"
    del fake.objects["containers"][prefix[:-1]]
    for key in [k for k in fake.objects["blobs"] if k.startswith(prefix)]:
        del fake.objects["blobs"][key]
    return Response(202, None, _common(request))


def _blob_key(request: Request) -> str:
    return f"{request.groups['account']}/{request.groups['container']}/{request.groups['blob']}"


def _check_conditions(blob: dict[str, Any] | None, request: Request) -> None:
    if_none, if_match = request.headers.get("if-none-match"), request.headers.get("if-match")
    if if_none == "*" and blob is not None:
        raise ApiError(409, "BlobAlreadyExists", "The specified blob already exists.", xml=True)
    if if_none and if_none != "*" and blob is not None and if_none == blob["etag"]:
        raise ApiError(412 if request.method == "PUT" else 304, "ConditionNotMet", "The condition specified using "
                       "HTTP conditional header(s) is not met.", xml=True)
    if if_match and (blob is None or (if_match != "*" and if_match != blob["etag"])):
        if blob is None:
            raise ApiError(404, "BlobNotFound", "The specified blob does not exist.", xml=True)
        raise ApiError(412, "ConditionNotMet", "The condition specified using HTTP conditional header(s) is not "
                                               "met.", xml=True)


def _put_blob(fake: AzureFake, request: Request) -> Response:
    _need_container(fake, request)
    comp = request.query.get("comp")
    key = _blob_key(request)
    existing = fake.objects["blobs"].get(key)
    if comp == "block":
        return _put_block(fake, request, key)
    if comp == "blocklist":
        _check_conditions(existing, request)
        return _put_block_list(fake, request, key, existing)
    if comp is not None:
        raise ApiError(400, "InvalidQueryParameterValue", f"comp={comp} is not supported by this fake.", xml=True)
    if request.headers.get("x-ms-blob-type") != "BlockBlob":
        raise ApiError(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not "
                                                     "specified: x-ms-blob-type.", xml=True)
    _check_conditions(existing, request)
    content = request.body
    digest = base64.b64encode(hashlib.md5(content).digest()).decode()
    for header in ("content-md5", "x-ms-blob-content-md5"):
        sent = request.headers.get(header)
        if sent is not None and sent != digest:
            raise ApiError(400, "Md5Mismatch", "The MD5 value specified in the request did not match with the MD5 "
                                               "value calculated by the server.", xml=True)
    return _store_blob(fake, request, key, content, existing, digest)


def _store_blob(fake: AzureFake, request: Request, key: str, content: bytes, existing: dict[str, Any] | None,
                digest: str | None) -> Response:
    now = time.time()
    blob = {"content": content, "metadata": _metadata(request), "etag": _etag(fake), "modified": now,
            "created": existing["created"] if existing else now,
            "content_type": request.headers.get("x-ms-blob-content-type") or "application/octet-stream",
            "content_md5": request.headers.get("x-ms-blob-content-md5") or digest,
            "content_encoding": request.headers.get("x-ms-blob-content-encoding"),
            "blocks": {}}
    fake.objects["blobs"][key] = blob
    headers = {"ETag": blob["etag"], "Last-Modified": _http_date(now), "x-ms-request-server-encrypted": "true",
               **_common(request)}
    if digest:
        headers["Content-MD5"] = digest
    return Response(201, None, headers)


def _staged(fake: AzureFake) -> dict[str, dict[str, bytes]]:
    return fake.objects["uncommitted_blocks"]  # type: ignore[return-value]


def _put_block(fake: AzureFake, request: Request, key: str) -> Response:
    block_id = request.query.get("blockid")
    if not block_id:
        raise ApiError(400, "InvalidQueryParameterValue", "blockid is required.", xml=True)
    sent = request.headers.get("content-md5")
    digest = base64.b64encode(hashlib.md5(request.body).digest()).decode()
    if sent is not None and sent != digest:
        raise ApiError(400, "Md5Mismatch", "The MD5 value specified in the request did not match with the MD5 value "
                                           "calculated by the server.", xml=True)
    _staged(fake).setdefault(key, {})[block_id] = request.body
    return Response(201, None, {"Content-MD5": digest, "x-ms-request-server-encrypted": "true", **_common(request)})


def _put_block_list(fake: AzureFake, request: Request, key: str, existing: dict[str, Any] | None) -> Response:
    try:
        root = ElementTree.fromstring(request.body)
    except ElementTree.ParseError:
        raise ApiError(400, "InvalidXmlDocument", "XML specified is not syntactically valid.", xml=True) from None
    staged = _staged(fake).get(key, {})
    committed = (existing or {}).get("blocks", {})
    parts = []
    blocks: dict[str, bytes] = {}
    for item in root:
        block_id = item.text or ""
        source = (staged if item.tag in ("Latest", "Uncommitted") and block_id in staged else
                  committed if item.tag in ("Latest", "Committed") else {})
        if block_id not in source:
            raise ApiError(400, "InvalidBlockList", "The specified block list is invalid.", xml=True)
        parts.append(source[block_id])
        blocks[block_id] = source[block_id]
    _staged(fake).pop(key, None)
    response = _store_blob(fake, request, key, b"".join(parts), existing, None)
    fake.objects["blobs"][key]["blocks"] = blocks
    return response


def _need_blob(fake: AzureFake, request: Request) -> dict[str, Any]:
    _need_container(fake, request)
    blob = fake.objects["blobs"].get(_blob_key(request))
    if blob is None:
        raise ApiError(404, "BlobNotFound", "The specified blob does not exist.", xml=True)
    _check_conditions(blob, request)
    return blob


def _properties_headers(blob: dict[str, Any], request: Request) -> dict[str, str]:
    headers = {"ETag": blob["etag"], "Last-Modified": _http_date(blob["modified"]),
               "x-ms-creation-time": _http_date(blob["created"]), "x-ms-blob-type": "BlockBlob",
               "Content-Type": blob["content_type"], "Accept-Ranges": "bytes", "x-ms-server-encrypted": "true",
               "x-ms-lease-status": "unlocked", "x-ms-lease-state": "available", "x-ms-access-tier": "Hot",
               "x-ms-access-tier-inferred": "true", **_meta_headers(blob["metadata"]), **_common(request)}
    if blob["content_md5"]:
        headers["Content-MD5"] = blob["content_md5"]
    if blob["content_encoding"]:
        headers["Content-Encoding"] = blob["content_encoding"]
    return headers


def _blob_properties(fake: AzureFake, request: Request) -> Response:
    blob = _need_blob(fake, request)
    # the content as the body: Content-Length is the blob's size, and a HEAD answer carries no body
    return Response(200, blob["content"], _properties_headers(blob, request))


def _get_blob(fake: AzureFake, request: Request) -> Response:
    blob = _need_blob(fake, request)
    content: bytes = blob["content"]
    headers = _properties_headers(blob, request)
    wanted = request.headers.get("x-ms-range") or request.headers.get("range")
    if not wanted:
        return Response(200, content, headers)
    found = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted.strip())
    if found is None:
        raise ApiError(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct "
                                                  "format: x-ms-range.", xml=True)
    start = int(found[1])
    end = min(int(found[2]) if found[2] else len(content) - 1, len(content) - 1)
    if start >= len(content):
        error = ApiError(416, "InvalidRange", "The range specified is invalid for the current size of the "
                                              "resource.", xml=True).response()
        error.headers["Content-Range"] = f"bytes */{len(content)}"
        return error
    part = content[start:end + 1]
    headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
    md5 = headers.pop("Content-MD5", None)
    if md5:  # a range answers the whole blob's hash in x-ms-blob-content-md5
        headers["x-ms-blob-content-md5"] = md5
    if request.headers.get("x-ms-range-get-content-md5") == "true":
        headers["Content-MD5"] = base64.b64encode(hashlib.md5(part).digest()).decode()
    return Response(206, part, headers)


def _delete_blob(fake: AzureFake, request: Request) -> Response:
    _need_blob(fake, request)
    del fake.objects["blobs"][_blob_key(request)]
    return Response(202, None, {"x-ms-delete-type-permanent": "true", **_common(request)})


def _list_blobs(fake: AzureFake, request: Request) -> Response:
    _restype(request, "container")
    _need_container(fake, request)
    account, container = request.groups["account"], request.groups["container"]
    prefix, delimiter = request.query.get("prefix", ""), request.query.get("delimiter", "")
    marker = request.query.get("marker", "")
    limit = int(request.query.get("maxresults") or 5000)
    include = set(filter(None, request.query.get("include", "").split(",")))
    base = f"{account}/{container}/"
    names = sorted(k[len(base):] for k in fake.objects["blobs"] if k.startswith(base + prefix))
    entries: list[str] = []
    seen_prefixes: set[str] = set()
    next_marker = ""
    for name in names:
        if marker and name < marker:
            continue
        if delimiter and delimiter in name[len(prefix):]:
            sub = name[:len(prefix) + name[len(prefix):].index(delimiter) + len(delimiter)]
            if sub in seen_prefixes:
                continue
            if len(entries) >= limit:
                next_marker = name
                break
            seen_prefixes.add(sub)
            entries.append(f"<BlobPrefix><Name>{escape(sub)}</Name></BlobPrefix>")
            continue
        if len(entries) >= limit:
            next_marker = name
            break
        blob = fake.objects["blobs"][base + name]
        meta = ""
        if "metadata" in include:
            meta = "<Metadata>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in blob["metadata"].items()) + \
                "</Metadata>"
        entries.append(
            f"<Blob><Name>{escape(name)}</Name><Properties><Creation-Time>{_http_date(blob['created'])}"
            f"</Creation-Time><Last-Modified>{_http_date(blob['modified'])}</Last-Modified><Etag>{blob['etag']}"
            f"</Etag><Content-Length>{len(blob['content'])}</Content-Length><Content-Type>{blob['content_type']}"
            f"</Content-Type><Content-MD5>{blob['content_md5'] or ''}</Content-MD5><BlobType>BlockBlob</BlobType>"
            f"<AccessTier>Hot</AccessTier><AccessTierInferred>true</AccessTierInferred><LeaseStatus>unlocked"
            f"</LeaseStatus><LeaseState>available</LeaseState><ServerEncrypted>true</ServerEncrypted>"
            f"</Properties>{meta}</Blob>")
    head = f"<Prefix>{escape(prefix)}</Prefix>" if prefix else "<Prefix />"
    if marker:
        head += f"<Marker>{escape(marker)}</Marker>"
    if "maxresults" in request.query:
        head += f"<MaxResults>{limit}</MaxResults>"
    if delimiter:
        head += f"<Delimiter>{escape(delimiter)}</Delimiter>"
    tail = f"<NextMarker>{escape(next_marker)}</NextMarker>" if next_marker else "<NextMarker />"
    return _xml(f'<EnumerationResults ServiceEndpoint="https://{account}.blob.core.windows.net/" '
                f'ContainerName="{escape(container)}">{head}<Blobs>{"".join(entries)}</Blobs>{tail}'
                "</EnumerationResults>", request)


# --- file shares -----------------------------------------------------------------------------------------------


def _share(name: str, quota: int, meta: dict[str, str], etag: str = '"0x8DC0000000000001"') -> dict[str, Any]:
    return {"name": name, "quota": quota, "metadata": meta, "etag": etag, "modified": time.time()}


def _share_key(request: Request) -> str:
    return f"{request.groups['account']}/{request.groups['share']}"


def _need_share(fake: AzureFake, request: Request) -> dict[str, Any]:
    _restype(request, "share")
    found = fake.objects["shares"].get(_share_key(request))
    if found is None:
        raise ApiError(404, "ShareNotFound", "The specified share does not exist.", xml=True)
    return found


def _quota(request: Request) -> int | None:
    value = request.headers.get("x-ms-share-quota")
    if value is None:
        return None
    if not value.isdigit() or not 1 <= int(value) <= SHARE_QUOTA_MAX_GB:
        raise ApiError(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct "
                                                  "format: x-ms-share-quota.", xml=True)
    return int(value)


def _put_share(fake: AzureFake, request: Request) -> Response:
    comp = request.query.get("comp")
    if comp is None:
        _restype(request, "share")
        name = request.groups["share"]
        if not SHARE_NAME.fullmatch(name):
            raise ApiError(400, "InvalidResourceName", "The specifed resource name contains invalid characters.",
                           xml=True)
        if _share_key(request) in fake.objects["shares"]:
            raise ApiError(409, "ShareAlreadyExists", "The specified share already exists.", xml=True)
        share = _share(name, _quota(request) or SHARE_QUOTA_MAX_GB, _metadata(request), _etag(fake))
        fake.objects["shares"][_share_key(request)] = share
        return Response(201, None, {"ETag": share["etag"], "Last-Modified": _http_date(share["modified"]),
                                    **_common(request)})
    share = _need_share(fake, request)
    if comp == "properties":
        quota = _quota(request)
        if quota is not None:
            share["quota"] = quota
    elif comp == "metadata":
        share["metadata"] = _metadata(request)
    else:
        raise ApiError(400, "InvalidQueryParameterValue", f"comp={comp} is not supported by this fake.", xml=True)
    share["etag"], share["modified"] = _etag(fake), time.time()
    return Response(200, None, {"ETag": share["etag"], "Last-Modified": _http_date(share["modified"]),
                                **_common(request)})


def _get_share(fake: AzureFake, request: Request) -> Response:
    share = _need_share(fake, request)
    return Response(200, None, {"ETag": share["etag"], "Last-Modified": _http_date(share["modified"]),
                                "x-ms-share-quota": str(share["quota"]), "x-ms-access-tier": "TransactionOptimized",
                                "x-ms-enabled-protocols": "SMB", "x-ms-lease-status": "unlocked",
                                "x-ms-lease-state": "available", **_meta_headers(share["metadata"]),
                                **_common(request)})


def _delete_share(fake: AzureFake, request: Request) -> Response:
    _need_share(fake, request)
    del fake.objects["shares"][_share_key(request)]
    return Response(202, None, _common(request))


def _list_shares(fake: AzureFake, request: Request) -> Response:
    if request.query.get("comp") != "list":
        raise ApiError(400, "InvalidQueryParameterValue", "comp must be list.", xml=True)
    account, prefix = request.groups["account"], request.query.get("prefix", "")
    include = set(filter(None, request.query.get("include", "").split(",")))
    items = []
    for key, share in sorted(fake.objects["shares"].items()):
        if not key.startswith(f"{account}/") or not share["name"].startswith(prefix):
            continue
        meta = ("<Metadata>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in share["metadata"].items()) +
                "</Metadata>") if "metadata" in include else ""
        items.append(f"<Share><Name>{escape(share['name'])}</Name><Properties><Last-Modified>"
                     f"{_http_date(share['modified'])}</Last-Modified><Etag>{share['etag']}</Etag><Quota>"
                     f"{share['quota']}</Quota></Properties>{meta}</Share>")
    return _xml(f'<EnumerationResults ServiceEndpoint="https://{account}.file.core.windows.net/">'
                f"<Prefix>{escape(prefix)}</Prefix><Shares>{''.join(items)}</Shares><NextMarker />"
                "</EnumerationResults>", request)
