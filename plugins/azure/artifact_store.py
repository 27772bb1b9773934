"""The azure target's artifact store: model artifacts copied from a registry on another target into the
workspace's default blob datastore, where Azure ML reads them
(`https://<account>.blob.core.windows.net/<container>/<prefix>/artifacts/<model>/<version>/<file>`, the sha256 in
the blob's metadata). Also the blob helpers the registry's providers share: the default datastore's account and
container (MLClient `datastores.get_default()`), checked uploads, properties and deletes through azure-storage-blob
(its errors translated by sdk.translate; the clients make no retries of their own, the engine retries)."""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

from provisioner.artifacts import ArtifactStore
from provisioner.cloud import unless_missing
from provisioner.errors import MlplatError

if TYPE_CHECKING:
    from mlplat_plugins.azure.sdk import Client, Clients

T = TypeVar("T")
CHUNK = 1 << 20
#: blob metadata names must be C# identifiers (no '-'): the sha256 of the bytes, and who wrote them
SHA256_METADATA = "sha256"
STACK_METADATA = "mlplat_stack"
ADDRESS_METADATA = "mlplat_address"
TOKEN_METADATA = "mlplat_token"


@dataclass(frozen=True)
class BlobStore:
    """A blob datastore: its Azure ML name, storage account, container and endpoint suffix."""

    datastore: str
    account: str
    container: str
    suffix: str = "core.windows.net"

    def url(self, name: str) -> str:
        return f"https://{self.account}.blob.{self.suffix}/{self.container}/{quote(name)}"

    def short_path(self, name: str) -> str:
        """The azureml:// URI Azure ML assets record for a blob of this datastore."""
        return f"azureml://datastores/{self.datastore}/paths/{name}"


def azure_call(operation: str, call: Callable[[], T]) -> T:
    """`call()` with Azure's errors translated (sdk.translate), for what runs outside a translated client's method:
    paging through an ItemPaged, reading a download's chunks."""
    from mlplat_plugins.azure.sdk import translate

    try:
        return call()
    except MlplatError:
        raise
    except Exception as err:
        translated = translate(err, operation)
        if translated is err:
            raise
        raise translated from None


def default_datastore(clients: Clients) -> BlobStore:
    """The workspace's default datastore (an Azure Blob one: `workspaceblobstore` unless changed)."""
    from mlplat_plugins.azure.sdk import Client

    found = Client(clients.ml.datastores, "datastores").get_default()
    return _blob_store(found)


def datastore(clients: Clients, name: str) -> BlobStore:
    from mlplat_plugins.azure.sdk import Client

    return _blob_store(Client(clients.ml.datastores, "datastores").get(name))


def _blob_store(found: Any) -> BlobStore:
    container = getattr(found, "container_name", None)
    if not container:
        raise MlplatError(f"the datastore {found.name} is not a blob datastore (type {type(found).__name__})",
                          hint="make an Azure Blob datastore the workspace's default (az ml datastore ...)")
    return BlobStore(found.name, found.account_name, container, found.endpoint or "core.windows.net")


def split_url(uri: str) -> tuple[str, str, str]:
    """https://<account>.blob.<suffix>/<container>/<blob> → (account, container, blob name)."""
    parts = urlsplit(uri)
    account, _, rest = parts.netloc.partition(".")
    container, _, name = parts.path.lstrip("/").partition("/")
    if parts.scheme.lower() != "https" or not rest.startswith("blob.") or not container or not name:
        raise MlplatError(f"{uri!r} is not an https://<account>.blob.core.windows.net/<container>/<blob> URL",
                          hint="the azure artifact store reads Azure Blob Storage only")
    return account, container, unquote(name)


def blob_client(clients: Clients, account: str, container: str, name: str) -> Client:
    """A BlobClient of `container/name` in `account` whose calls raise mlplat's errors."""
    from mlplat_plugins.azure.sdk import Client

    raw = clients.blob(account).get_blob_client(container, name)
    return Client(raw, f"blob:{account}")


def file_digests(path: Path | str) -> tuple[str, bytes]:
    """(sha256 hex, md5 bytes) of a local file, read once."""
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.digest()


def properties(clients: Clients, account: str, container: str, name: str) -> Any | None:
    """The blob's properties (metadata, size, content MD5), None when it or its container does not exist."""
    return unless_missing(lambda: blob_client(clients, account, container, name).get_blob_properties())


def recorded_sha256(props: Any | None) -> str | None:
    return None if props is None else (props.metadata or {}).get(SHA256_METADATA)


def upload(clients: Clients, account: str, container: str, name: str, source: Path | str, sha256: str,
           metadata: dict[str, str]) -> Any:
    """Upload `source` as a block blob with `metadata` (plus its sha256), checked end to end: the file must still
    hash to `sha256`; the client sends each request's Content-MD5 (the service refuses a body that does not match)
    and the whole file's MD5 as the blob's Content-MD5 property; the stored blob's size, MD5 and recorded sha256
    must then be the file's. Returns the blob's properties."""
    from azure.storage.blob import ContentSettings

    digest, md5 = file_digests(source)
    if digest != sha256:
        raise MlplatError(f"{source} changed since it was hashed (sha256 {digest}, expected {sha256})",
                          hint="run the plan again: it hashes the artifact anew")
    blob = blob_client(clients, account, container, name)
    settings = ContentSettings(content_type="application/octet-stream", content_md5=bytearray(md5))
    with open(source, "rb") as fh:
        try:
            blob.upload_blob(fh, overwrite=True, metadata={**metadata, SHA256_METADATA: sha256},
                             content_settings=settings, validate_content=True)
        except MlplatError as err:
            if getattr(err, "code", None) == "ContainerNotFound":
                raise MlplatError(f"the blob container {container} of storage account {account} does not exist",
                                  hint="check the workspace's default datastore in Azure ML studio") from None
            raise
    props = properties(clients, account, container, name)
    size = os.path.getsize(source)
    stored_md5 = bytes(props.content_settings.content_md5 or b"") if props is not None else b""
    if props is None or props.size != size or recorded_sha256(props) != sha256 or (stored_md5 and stored_md5 != md5):
        seen = "nothing" if props is None else f"{props.size} bytes, sha256 {recorded_sha256(props)}"
        raise MlplatError(f"{account}/{container}/{name} holds {seen} after the upload, not the file's {size} bytes "
                          f"with sha256 {sha256}", hint="another writer may be changing the blob; apply again")
    return props


def delete_blob(clients: Clients, account: str, container: str, name: str) -> None:
    unless_missing(lambda: blob_client(clients, account, container, name).delete_blob())


def download(clients: Clients, account: str, container: str, name: str, dest: Path) -> bool:
    """Download the blob to `dest` through a temporary file beside it (a failed download leaves no partial file),
    checking the bytes against the blob's Content-MD5 property and recorded sha256 where it has them. False when
    the blob does not exist."""
    blob = blob_client(clients, account, container, name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            stream = unless_missing(lambda: blob.download_blob())
            if stream is None:
                return False
            sha, md5 = hashlib.sha256(), hashlib.md5()

            def read_all() -> None:
                for chunk in stream.chunks():
                    fh.write(chunk)
                    sha.update(chunk)
                    md5.update(chunk)

            azure_call(f"blob:{account}.download_blob", read_all)
        props = stream.properties
        expected_md5 = bytes(props.content_settings.content_md5 or b"")
        expected_sha = recorded_sha256(props)
        if (expected_md5 and expected_md5 != md5.digest()) or (expected_sha and expected_sha != sha.hexdigest()):
            raise MlplatError(f"https://{account}.blob.core.windows.net/{container}/{name}: the downloaded bytes do "
                              f"not match the blob's recorded MD5 {base64.b64encode(expected_md5).decode()} / sha256 "
                              f"{expected_sha}", hint="the blob may be changing; fetch again")
        os.replace(partial, dest)
        return True
    finally:
        Path(partial).unlink(missing_ok=True)


class BlobArtifactStore(ArtifactStore):
    """Artifacts under `<prefix>/artifacts/` of the workspace's default blob datastore, through the target's
    shared clients."""

    schemes = frozenset({"https"})

    def __init__(self, clients: Clients, prefix: str) -> None:
        self.clients, self.prefix = clients, prefix.strip("/")
        self._lock = threading.Lock()
        self._store: BlobStore | None = None

    @property
    def store(self) -> BlobStore:
        with self._lock:
            if self._store is None:
                self._store = default_datastore(self.clients)
            return self._store

    def name(self, key: str) -> str:
        prefix = f"{self.prefix}/" if self.prefix else ""
        return f"{prefix}artifacts/{key.lstrip('/')}"

    def put(self, source: Path, key: str, sha256: str) -> str:
        store, name = self.store, self.name(key)
        uri = store.url(name)
        if recorded_sha256(properties(self.clients, store.account, store.container, name)) != sha256:
            upload(self.clients, store.account, store.container, name, source, sha256, {})
        return uri

    def fetch(self, uri: str, dest: Path) -> None:
        account, container, name = split_url(uri)
        if not download(self.clients, account, container, name, dest):
            raise MlplatError(f"artifact {uri} does not exist", hint="publish it again (mlplat apply)")

    def sha256(self, uri: str) -> str | None:
        """The recorded sha256; for a blob written without it (`az storage blob upload`), computed from its
        bytes."""
        account, container, name = split_url(uri)
        props = properties(self.clients, account, container, name)
        if props is None:
            return None
        recorded = recorded_sha256(props)
        if recorded:
            return str(recorded)
        with tempfile.TemporaryDirectory() as scratch:
            copy = Path(scratch) / "blob"
            if not download(self.clients, account, container, name, copy):
                return None
            return file_digests(copy)[0]

    def delete(self, uri: str) -> None:
        account, container, name = split_url(uri)
        delete_blob(self.clients, account, container, name)
