"""The gcp target's artifact store: model artifacts copied from a registry on another target into GCS, where Vertex
AI reads them (gs://<bucket>/<prefix>/artifacts/<model>/<version>/<file>, the sha256 in the object's custom
metadata). Also the GCS helpers the registry's providers share: google-cloud-storage's Bucket/Blob calls are not
GAPIC calls, so `gcs_call` turns their errors into mlplat's (through sdk.translate) and every call passes
`retry=None` (the engine retries)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from provisioner.artifacts import ArtifactStore
from provisioner.cloud import CloudApiError, unless_missing
from provisioner.errors import MlplatError

if TYPE_CHECKING:
    from mlplat_plugins.gcp.sdk import Clients

T = TypeVar("T")
CHUNK = 1 << 20
SHA256_METADATA = "sha256"


def gcs_call(operation: str, call: Callable[[], T]) -> T:
    """`call()` with google-cloud-storage's exceptions translated (GcpApiError, RetryableError)."""
    from mlplat_plugins.gcp.sdk import translate

    try:
        return call()
    except (MlplatError, CloudApiError):
        raise
    except Exception as err:
        translated = translate(err, operation)
        if translated is err:
            raise
        raise translated from err


def split_uri(uri: str) -> tuple[str, str]:
    """gs://bucket/name → (bucket, name)."""
    scheme, _, rest = uri.partition("://")
    bucket, _, name = rest.partition("/")
    if scheme.lower() != "gs" or not bucket or not name:
        raise MlplatError(f"{uri!r} is not a gs://bucket/object URI", hint="the gcp artifact store reads GCS only")
    return bucket, name


def file_digests(path: Path | str) -> tuple[str, str]:
    """(sha256 hex, md5 base64) of a local file, read once."""
    import base64

    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), base64.b64encode(md5.digest()).decode()


def upload(clients: Clients, bucket: str, name: str, source: Path | str, sha256: str,
           metadata: dict[str, str]) -> Any:
    """Upload `source` to gs://bucket/name with `metadata` (plus its sha256), checked end to end: the file must
    still hash to `sha256`, the client sends its CRC32C (GCS refuses a body that does not match it, and the client
    checks the CRC32C GCS computed), and the stored object's MD5 and size must be the file's. Returns the Blob."""
    digest, md5 = file_digests(source)
    if digest != sha256:
        raise MlplatError(f"{source} changed since it was hashed (sha256 {digest}, expected {sha256})",
                          hint="run the plan again: it hashes the artifact anew")
    blob = clients.storage.raw.bucket(bucket).blob(name)
    blob.metadata = {**metadata, SHA256_METADATA: sha256}
    try:
        gcs_call("InsertObject", lambda: blob.upload_from_filename(
            str(source), content_type="application/octet-stream", checksum="crc32c", retry=None))
    except CloudApiError as err:
        if err.not_found:
            raise MlplatError(f"GCS bucket {bucket} does not exist (or is not visible to these credentials)",
                              hint="create it (gcloud storage buckets create gs://...) or set targets.<gcp>.bucket "
                                   "to one you own") from None
        raise
    if blob.md5_hash != md5 or blob.size != os.path.getsize(source):
        raise MlplatError(f"gs://{bucket}/{name} holds {blob.size} bytes with MD5 {blob.md5_hash} after the "
                          f"upload, not the file's {os.path.getsize(source)} bytes with MD5 {md5}",
                          hint="another writer may be changing the object; apply again")
    return blob


def get_blob(clients: Clients, bucket: str, name: str) -> Any | None:
    """The object's Blob (metadata loaded), None when it (or its bucket) does not exist."""
    return unless_missing(lambda: gcs_call("GetObject", lambda: clients.storage.raw.bucket(bucket).get_blob(
        name, retry=None)))


def delete_blob(clients: Clients, bucket: str, name: str) -> None:
    unless_missing(lambda: gcs_call("DeleteObject", lambda: clients.storage.raw.bucket(bucket).delete_blob(
        name, retry=None)))


class GcsArtifactStore(ArtifactStore):
    """Artifacts under one bucket and prefix, through the target's shared google-cloud-storage client."""

    schemes = frozenset({"gs"})

    def __init__(self, clients: Clients, bucket: str, prefix: str) -> None:
        self.clients, self.bucket, self.prefix = clients, bucket, prefix.strip("/")

    def uri(self, key: str) -> str:
        prefix = f"{self.prefix}/" if self.prefix else ""
        return f"gs://{self.bucket}/{prefix}artifacts/{key.lstrip('/')}"

    def put(self, source: Path, key: str, sha256: str) -> str:
        uri = self.uri(key)
        bucket, name = split_uri(uri)
        if self._recorded(bucket, name) != sha256:
            upload(self.clients, bucket, name, source, sha256, {})
            seen = self._recorded(bucket, name)
            if seen != sha256:
                raise MlplatError(f"{uri} records sha256 {seen} after the upload, not {sha256}",
                                  hint="another writer may be changing the object; copy again")
        return uri

    def fetch(self, uri: str, dest: Path) -> None:
        """Downloads to a temporary file beside `dest`, then renames: a failed fetch leaves no partial file. The
        client checks the bytes against the CRC32C/MD5 GCS sends (x-goog-hash)."""
        bucket, name = split_uri(uri)
        blob = get_blob(self.clients, bucket, name)
        if blob is None:
            raise MlplatError(f"artifact {uri} does not exist", hint="publish it again (mlplat apply)")
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
        os.close(fd)
        try:
            missing = unless_missing(lambda: gcs_call("GetObjectMedia", lambda: blob.download_to_filename(
                partial, checksum="auto", retry=None)) or True)
            if missing is None:
                raise MlplatError(f"artifact {uri} does not exist", hint="publish it again (mlplat apply)")
            os.replace(partial, dest)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise

    def sha256(self, uri: str) -> str | None:
        """The recorded sha256; for an object written without it (`gcloud storage cp`), computed from its bytes."""
        bucket, name = split_uri(uri)
        blob = get_blob(self.clients, bucket, name)
        if blob is None:
            return None
        recorded = (blob.metadata or {}).get(SHA256_METADATA)
        if recorded:
            return str(recorded)
        digest = hashlib.sha256()
        with tempfile.TemporaryFile() as spool:
            done = unless_missing(lambda: gcs_call("GetObjectMedia", lambda: blob.download_to_file(
                spool, checksum="auto", retry=None)) or True)
            if done is None:
                return None
            spool.seek(0)
            for block in iter(lambda: spool.read(CHUNK), b""):
                digest.update(block)
        return digest.hexdigest()

    def delete(self, uri: str) -> None:
        bucket, name = split_uri(uri)
        delete_blob(self.clients, bucket, name)

    def _recorded(self, bucket: str, name: str) -> str | None:
        blob = get_blob(self.clients, bucket, name)
        return None if blob is None else (blob.metadata or {}).get(SHA256_METADATA)
