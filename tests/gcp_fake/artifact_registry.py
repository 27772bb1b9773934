"""Artifact Registry (`artifactregistry.googleapis.com/v1`): repositories — create (long-running), get, list,
patch (update mask), delete (long-running). Repositories are kept as the Repository JSON the API returns
(`objects["repositories"][name]`)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from gcp_fake import ApiError, not_found

if TYPE_CHECKING:
    from gcp_fake import GcpFake, Request

COLLECTION = "repositories"
_TYPES = "type.googleapis.com/google.devtools.artifactregistry.v1"
_PARENT = r"/v1/(?P<parent>projects/[^/]+/locations/[^/]+)"
_NAME = r"/v1/(?P<name>projects/[^/]+/locations/[^/]+/repositories/[^/:]+)"
REPOSITORY_ID = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")
FORMATS = {"DOCKER", "MAVEN", "NPM", "APT", "YUM", "PYTHON", "KFP", "GO", "GENERIC"}
#: fields `updateMask` may name
MUTABLE = {"description", "labels", "cleanupPolicies", "cleanupPolicyDryRun", "dockerConfig",
           "vulnerabilityScanningConfig"}
_LABEL = re.compile(r"[a-z0-9_-]{0,63}")


def register(fake: GcpFake) -> None:
    fake.route("POST", _PARENT + r"/repositories", "CreateRepository", _create)
    fake.route("GET", _PARENT + r"/repositories", "ListRepositories", _list)
    fake.route("GET", _NAME, "GetRepository", _get)
    fake.route("PATCH", _NAME, "UpdateRepository", _update)
    fake.route("DELETE", _NAME, "DeleteRepository", _delete)


def _check_labels(labels: dict[str, Any]) -> None:
    for key, value in labels.items():
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", key) or not _LABEL.fullmatch(str(value)):
            raise ApiError(400, f"Invalid label {key}={value}: keys and values must match [a-z0-9_-], up to 63 "
                                "characters (keys starting with a letter).")


def _enum(enum: str, value: Any) -> str | None:
    """A Repository enum field by name, as the REST clients send it by number (`$alt=json;enum-encoding=int`)."""
    if isinstance(value, int):
        from google.cloud.artifactregistry_v1 import Repository

        value = getattr(Repository, enum)(value).name
    return value or None


def _create(fake: GcpFake, request: Request) -> dict[str, Any]:
    parent = request.groups["parent"]
    repo_id = request.query.get("repositoryId") or request.query.get("repository_id") or ""
    if not REPOSITORY_ID.fullmatch(repo_id):
        raise ApiError(400, f"Invalid repository id {repo_id!r}: it must match [a-z]([a-z0-9-]*[a-z0-9])?, up to 63 "
                            "characters.")
    body = request.json()
    fmt = _enum("Format", body.get("format"))
    if fmt not in FORMATS:
        raise ApiError(400, "Repository format must be specified.")
    _check_labels(body.get("labels") or {})
    name = f"{parent}/repositories/{repo_id}"
    if name in fake.objects[COLLECTION]:
        raise ApiError(409, f"the repository already exists: {name}")
    now = fake.now()
    repo = {"name": name, "format": fmt, "description": body.get("description", ""),
            "labels": dict(body.get("labels") or {}), "createTime": now, "updateTime": now,
            "mode": _enum("Mode", body.get("mode")) or "STANDARD_REPOSITORY", "sizeBytes": "0", "satisfiesPzi": True,
            "registryUri": f"{parent.split('/')[3]}-docker.pkg.dev/{parent.split('/')[1]}/{repo_id}"}
    if not repo["description"]:
        del repo["description"]
    fake.objects[COLLECTION][name] = repo  # visible at once, as the real API makes it (the operation reports)

    def finish() -> dict[str, Any]:
        return {"@type": f"{_TYPES}.Repository", **repo}

    return fake.operation(parent, f"{_TYPES}.OperationMetadata", finish)


def _repo(fake: GcpFake, name: str) -> dict[str, Any]:
    repo = fake.objects[COLLECTION].get(name)
    if repo is None:
        raise not_found(f"Requested entity was not found. Repository {name}")
    return repo


def _get(fake: GcpFake, request: Request) -> dict[str, Any]:
    return _repo(fake, request.groups["name"])


def _list(fake: GcpFake, request: Request) -> dict[str, Any]:
    prefix = request.groups["parent"] + "/repositories/"
    repos = [r for n, r in sorted(fake.objects[COLLECTION].items()) if n.startswith(prefix)]
    return {"repositories": repos} if repos else {}


def _update(fake: GcpFake, request: Request) -> dict[str, Any]:
    repo = _repo(fake, request.groups["name"])
    body = request.json()
    mask = request.update_mask() or [k for k in body if k in MUTABLE]
    for field in mask:
        if field not in MUTABLE:
            raise ApiError(400, f"Invalid update_mask path: {field} cannot be updated.")
    if "labels" in mask:
        _check_labels(body.get("labels") or {})
    for field in mask:
        if body.get(field) in (None, "", {}):
            repo.pop(field, None)
        else:
            repo[field] = body[field]
    repo["updateTime"] = fake.now()
    return repo


def _delete(fake: GcpFake, request: Request) -> dict[str, Any]:
    name = request.groups["name"]
    _repo(fake, name)
    parent = name.rsplit("/repositories/", 1)[0]

    def finish() -> dict[str, Any]:
        fake.objects[COLLECTION].pop(name, None)
        return {"@type": "type.googleapis.com/google.protobuf.Empty"}

    return fake.operation(parent, f"{_TYPES}.OperationMetadata", finish)
