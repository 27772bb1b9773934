"""The aws target's artifact store: model artifacts copied from a registry on another target into S3, where
SageMaker reads them (s3://<bucket>/<prefix>/artifacts/<model>/<version>/<file>, sha256 in user metadata)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlplat_plugins.aws.sdk import AwsApiError
from provisioner.artifacts import ArtifactStore
from provisioner.cloud import unless_missing
from provisioner.errors import MlplatError

if TYPE_CHECKING:
    from mlplat_plugins.aws.sdk import Clients

CHUNK = 1 << 20


class S3ArtifactStore(ArtifactStore):
    """Artifacts under one bucket and prefix, through the target's shared (thread-safe) boto3 clients."""

    schemes = frozenset({"s3"})

    def __init__(self, clients: Clients, bucket: str, prefix: str) -> None:
        self.clients, self.bucket, self.prefix = clients, bucket, prefix.strip("/")

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}/artifacts/{key.lstrip('/')}"

    def put(self, source: Path, key: str, sha256: str) -> str:
        uri = self.uri(key)
        bucket, object_key = split_uri(uri)
        if self._recorded(bucket, object_key) != sha256:
            try:
                with open(source, "rb") as body:
                    self.clients.s3.put_object(Bucket=bucket, Key=object_key, Body=body,
                                               Metadata={"sha256": sha256}, ServerSideEncryption="AES256")
            except AwsApiError as err:
                if err.code == "NoSuchBucket":
                    raise MlplatError(f"S3 bucket {bucket} does not exist",
                                      hint="create it or set targets.<aws>.bucket to one you own") from None
                raise
            seen = self._recorded(bucket, object_key)
            if seen != sha256:
                raise MlplatError(f"{uri} records sha256 {seen} after the upload, not {sha256}",
                                  hint="another writer may be changing the object; copy again")
        return uri

    def fetch(self, uri: str, dest: Path) -> None:
        """Downloads to a temporary file beside `dest`, then renames: a failed fetch leaves no partial file."""
        bucket, key = split_uri(uri)
        response = unless_missing(lambda: self.clients.s3.get_object(Bucket=bucket, Key=key))
        if response is None:
            raise MlplatError(f"artifact {uri} does not exist", hint="publish it again (mlplat apply)")
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
        try:
            with os.fdopen(fd, "wb") as out, response["Body"] as body:
                shutil.copyfileobj(body, out, CHUNK)
            os.replace(partial, dest)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise

    def sha256(self, uri: str) -> str | None:
        """The recorded sha256; for an object written without it (`aws s3 cp`), computed from its bytes."""
        bucket, key = split_uri(uri)
        head = self._head(bucket, key)
        if head is None:
            return None
        recorded = head.get("Metadata", {}).get("sha256")
        if recorded:
            return str(recorded)
        response = unless_missing(lambda: self.clients.s3.get_object(Bucket=bucket, Key=key))
        if response is None:
            return None
        digest = hashlib.sha256()
        with response["Body"] as body:
            for block in iter(lambda: body.read(CHUNK), b""):
                digest.update(block)
        return digest.hexdigest()

    def delete(self, uri: str) -> None:
        bucket, key = split_uri(uri)
        unless_missing(lambda: self.clients.s3.delete_object(Bucket=bucket, Key=key))

    def _head(self, bucket: str, key: str) -> dict[str, Any] | None:
        return unless_missing(lambda: self.clients.s3.head_object(Bucket=bucket, Key=key))

    def _recorded(self, bucket: str, key: str) -> str | None:
        return (self._head(bucket, key) or {}).get("Metadata", {}).get("sha256")


def split_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/key → (bucket, key)."""
    scheme, _, rest = uri.partition("://")
    bucket, _, key = rest.partition("/")
    if scheme.lower() != "s3" or not bucket or not key:
        raise MlplatError(f"{uri!r} is not an s3://bucket/key URI", hint="the aws artifact store reads S3 only")
    return bucket, key
