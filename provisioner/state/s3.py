"""Shared state in an S3 bucket: one object per thing, made safe by S3's conditional writes (no DynamoDB table).

`s3://bucket/prefix?region=eu-west-1&endpoint_url=http://localhost:9000`; credentials come from the standard
AWS chain only (env, profile, instance role). Under `<prefix>/<stack>/`:

    meta.json                   lineage, serial, stack, outputs, journal_next; rewritten with If-Match: <etag>,
                                re-read and retried on 412, so concurrent updates never lose one
    resources/<address>.json    one record each (address URL-quoted)
    journal/<seq:012d>.json     one entry each, allocated with If-None-Match: * (the next number on 412/409)
    pending/<seq:012d>          empty marker while the entry is pending: recovery lists these, not the journal
    lock.json                   created with If-None-Match: *, swapped and deleted with If-Match: <etag>

Applying a resource costs five requests (pending: entry + marker; done: record + entry + marker delete), whatever
the size of the state, and two more (a read of lock.json before each) while the writer is fenced on its lock.
Needs conditional writes (AWS S3 since 2024; MinIO, LocalStack and moto have them).

Fencing (`StateBackend.fence`, set while this process holds the lock): S3 has no transaction spanning lock.json
and another object, so the guarantee is built from ordering and If-Match instead:

- a pending entry is written (entry, then marker) and *then* lock.json is read back. A process taking the lock
  over writes lock.json before its recovery lists pending/, so if the read-back still shows our lock, the taker's
  recovery will see (and resolve) our entry; if it shows another lock, the entry is deleted (If-Match: unless the
  taker's recovery already rewrote it) and the step refused before its cloud call.
- entries are closed (done, failed, resolved) and checkpointed with If-Match on the etag this process last
  wrote or read: once a taker's recovery has rewritten the entry, a late close fails and is refused.
- records and meta (serial, outputs) are written only after reading lock.json and finding our lock id.

The limit: a lock check and the write after it are two requests. A process stalled between them (SIGSTOP, a
long pause right after the check) can still land that one record or meta write after a takeover: at worst one
record holds what this process last knew of its object, which the next plan's refresh reads back from the cloud.
Its entry's close then fails on If-Match (once the taker's recovery rewrote it) and every later write is refused.
The SQL backends have no such window: their check and write share a transaction.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn, TypeVar
from urllib.parse import parse_qs, quote, urlsplit

from provisioner import faults
from provisioner.errors import StateError
from provisioner.state.base import JournalEntry, LockInfo, ResourceRecord, StateBackend, StateMeta

T = TypeVar("T")
R = TypeVar("R")

JOURNAL_KEEP = 10_000
#: a conditional write lost to another writer (409: a concurrent write to the same key was still in flight)
CONFLICT = {"PreconditionFailed", "ConditionalRequestConflict"}
MISSING = {"NoSuchKey", "404", "NotFound"}
HINTS = {
    "NoSuchBucket": "create the bucket first (state buckets are never created implicitly), or fix the URL",
    "AccessDenied": "the credentials from the AWS chain (env, profile, instance role) need s3:GetObject, "
                    "s3:PutObject, s3:DeleteObject and s3:ListBucket on the bucket and prefix",
    "InvalidAccessKeyId": "check the AWS credentials (env, profile, instance role)",
    "SignatureDoesNotMatch": "check the AWS credentials (env, profile, instance role)",
    "PermanentRedirect": "the bucket is in another region: add ?region=<its region> to the state URL",
    "AuthorizationHeaderMalformed": "the bucket is in another region: add ?region=<its region> to the state URL",
    "NotImplemented": "this S3-compatible store lacks conditional writes (If-Match / If-None-Match), which the "
                      "s3 state backend needs for its lock and journal",
}
_RECORD_FIELDS = tuple(ResourceRecord.__dataclass_fields__)


class S3State(StateBackend):
    JOURNAL_KEEP = JOURNAL_KEEP

    def __init__(self, url: str, stack: str) -> None:
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if unknown := sorted(set(query) - {"region", "endpoint_url"}):
            raise StateError(f"unknown option(s) {', '.join(unknown)} in state URL {url!r}",
                             hint="s3:// state URLs take ?region=...&endpoint_url=... only")
        if not parts.netloc:
            raise StateError(f"state URL {url!r} names no bucket", hint="write s3://bucket/prefix")
        self.url, self.bucket, self.stack = url, parts.netloc, stack
        prefix = parts.path.strip("/")
        self._root = f"{prefix}/{quote(stack, safe='')}/" if prefix else f"{quote(stack, safe='')}/"
        self._s3 = _client(query.get("region"), query.get("endpoint_url"))
        self._lock = threading.Lock()  # guards the two caches below
        self._next: int | None = None  # next journal seq to try; found by listing on first use
        #: entries this process wrote (body, etag), until closed
        self._open_entries: dict[int, tuple[dict[str, Any], str]] = {}
        meta = {"format": 1, "lineage": str(uuid.uuid4()), "serial": 0, "stack": stack, "outputs": "{}",
                "journal_next": 1}
        self._put("meta.json", json.dumps(meta), IfNoneMatch="*")  # a 412 means it exists: keep it

    # -- meta, records, outputs ------------------------------------------------------------------------

    def _meta_object(self) -> tuple[str, str]:
        got = self._get("meta.json")
        if got is None:
            raise StateError(f"s3://{self.bucket}/{self._root}meta.json is gone",
                             hint="the state was deleted while in use; restore it from the bucket's versions")
        return got

    def _meta(self) -> dict[str, Any]:
        return dict(json.loads(self._meta_object()[0]))

    def meta(self) -> StateMeta:
        m = self._meta()
        return StateMeta(m["lineage"], int(m["serial"]), m["stack"])

    def _update_meta(self, change: Callable[[dict[str, Any]], None], *, fenced: bool = False) -> dict[str, Any]:
        """Read-modify-write with If-Match; on 412 someone else wrote in between: read again and redo.
        `fenced`: the lock is checked before each write (see the module doc)."""
        for attempt in range(100):
            body, etag = self._meta_object()
            meta = json.loads(body)
            change(meta)
            if fenced:
                self._check_fence()
            if self._put("meta.json", json.dumps(meta), IfMatch=etag) is not None:
                return dict(meta)
            time.sleep(random.uniform(0, 0.01 * min(attempt + 1, 20)))
        raise StateError(f"s3://{self.bucket}/{self._root}meta.json: gave up after 100 conflicting updates")

    def resources(self) -> dict[str, ResourceRecord]:
        bodies = _parallel(self._get, list(self._list("resources/")))
        records = [self._record(self.codec.loads(got[0])) for got in bodies if got is not None]
        return {r.address: r for r in sorted(records, key=lambda r: r.address)}

    def bump_serial(self) -> int:
        next_seq = self._scan_journal()
        with self._lock:  # the apply that follows allocates without listing again
            self._next = max(self._next or 1, next_seq)
        serial = int(self._update_meta(lambda m: m.update(serial=int(m["serial"]) + 1,
                                                          journal_next=max(m.get("journal_next", 1), next_seq)),
                                       fenced=True)["serial"])
        self._prune_journal(next_seq - 1 - self.JOURNAL_KEEP)
        return serial

    def put(self, record: ResourceRecord) -> None:
        self._check_fence()
        self._put(self._resource_key(record.address), self._record_body(record))

    def remove(self, address: str) -> None:
        self._check_fence()
        self._delete(self._resource_key(address))

    def get_outputs(self) -> dict[str, Any]:
        return dict(self.codec.loads(self._meta().get("outputs") or "{}"))

    def set_outputs(self, outputs: dict[str, Any]) -> None:
        text = self.codec.dumps(outputs)  # sealed outside the retry loop (deriving the key may take a while)
        self._update_meta(lambda m: m.update(outputs=text), fenced=True)

    # -- the journal -----------------------------------------------------------------------------------

    def journal_pending(self, apply_id: str, op: str, record: ResourceRecord, *, token: str = "") -> int:
        self.check_lease()
        entry = {"apply_id": apply_id, "op": op, "address": record.address, "kind": record.kind,
                 "target": record.target, "id": record.id or None, "inputs": record.inputs,
                 "depends_on": record.depends_on, "deposed": record.deposed, "phase": "pending", "at": time.time(),
                 "message": None, "token": token, "operation": None}
        body = self.codec.dumps(entry)
        seq = self._take_seq(None)
        while (etag := self._put(self._journal_key(seq), body, IfNoneMatch="*")) is None:
            got = self._get(self._journal_key(seq))  # our own write, answered 412 on a retried request?
            if got is not None and got[0] == body:
                etag = got[1]
                break
            seq = self._take_seq(seq)
        self._put(self._pending_key(seq), "")
        if self.fence is not None:  # after the marker: a taker's recovery lists markers after writing its lock
            current = self.read_lock()
            if current is None or current.id != self.fence:
                # take the entry back unless the taker's recovery already rewrote it (then it is the taker's)
                if self._delete(self._journal_key(seq), IfMatch=etag):
                    self._delete(self._pending_key(seq))
                self.refuse_write(current)
        with self._lock:
            self._open_entries[seq] = (entry, etag)
        faults.reached("pending")
        return seq

    def journal_checkpoint(self, seq: int, operation: str) -> None:
        entry, etag = self._held_entry(seq)
        if entry is None:
            return
        self._check_fence()
        entry = {**entry, "operation": operation}
        etag = self._rewrite_entry(seq, entry, etag)
        if etag is None:
            self.refuse_write(self.read_lock())
        with self._lock:
            self._open_entries[seq] = (entry, etag)

    def journal_done(self, seq: int, *, put: ResourceRecord | None = None, remove: str | None = None) -> None:
        """Write the record first, then close the entry: S3 has no multi-object transaction.

        A crash in between leaves the entry pending with its record already written; recovery re-reads the cloud
        and writes the same record again, so nothing is lost or doubled. The other order could leave a closed
        entry whose record was never written: a cloud object the state has forgotten.
        """
        faults.reached("before-done")
        held = self._held_entry(seq)
        self._check_fence()
        self._apply_effect(put, remove)
        self._close(seq, held, "done", cloud_id=put.id if put is not None else None)
        faults.reached("done")

    def journal_failed(self, seq: int, message: str) -> None:
        held = self._held_entry(seq)
        self._check_fence()
        self._close(seq, held, "failed", message=message[:2000])

    def resolve_pending(self, seq: int, *, put: ResourceRecord | None = None, remove: str | None = None) -> None:
        """Record first, entry second, for the reason given in `journal_done`."""
        held = self._held_entry(seq)  # its etag before our writes: a takeover's rewrite makes the close fail
        self._check_fence()
        self._apply_effect(put, remove)
        self._close(seq, held, "resolved")

    def pending(self) -> list[JournalEntry]:
        seqs = [int(key.rpartition("/")[2]) for key in self._list("pending/")]
        entries = []
        for seq, got in zip(seqs, _parallel(lambda s: self._get(self._journal_key(s)), seqs), strict=True):
            if got is None:
                continue  # its entry was pruned or never written
            entry = self._entry(seq, self.codec.loads(got[0]))
            if entry.phase == "pending":
                entries.append(entry)
            else:  # closed, and the process crashed before deleting the marker
                self._delete(self._pending_key(seq))
        return entries

    def journal(self) -> list[JournalEntry]:
        keys = list(self._list("journal/"))
        bodies = _parallel(self._get, keys)
        return [self._entry(_seq_of(key), self.codec.loads(got[0]))
                for key, got in zip(keys, bodies, strict=True) if got is not None]

    def _held_entry(self, seq: int) -> tuple[dict[str, Any] | None, str]:
        """Entry `seq` and its etag: as this process last wrote it (kept until it is closed), else (written by
        another process: recovery after a crash) as read now, still sealed (rewritten as it is). (None, "") if
        it is gone."""
        with self._lock:
            held = self._open_entries.get(seq)
        if held is not None:
            return held
        got = self._get(self._journal_key(seq))
        return (json.loads(got[0]), got[1]) if got is not None else (None, "")

    def _rewrite_entry(self, seq: int, entry: dict[str, Any], etag: str) -> str | None:
        """Write entry `seq`; while fenced only over the version with `etag` (None if another process rewrote
        it since). Returns the new etag."""
        body = self.codec.dumps(entry)
        if self.fence is None or not etag:
            return self._put(self._journal_key(seq), body)
        written = self._put(self._journal_key(seq), body, IfMatch=etag)
        if written is None:  # a retried request whose first attempt landed also answers 412
            got = self._get(self._journal_key(seq))
            written = got[1] if got is not None and got[0] == body else None
        return written

    def _close(self, seq: int, held: tuple[dict[str, Any] | None, str], phase: str, *, message: str | None = None,
               cloud_id: str | None = None) -> None:
        entry, etag = held
        if entry is not None:
            entry = {**entry, "phase": phase, "message": message if message is not None else entry.get("message"),
                     "id": cloud_id or entry.get("id")}
            if self._rewrite_entry(seq, entry, etag) is None:
                self.refuse_write(self.read_lock())
        with self._lock:
            self._open_entries.pop(seq, None)
        self._delete(self._pending_key(seq))

    def _check_fence(self) -> None:
        """Before a record or meta write while fenced: the lock must still be ours (one read of lock.json)."""
        if self.fence is not None:
            self.fence_holds(self.read_lock())

    def _apply_effect(self, put: ResourceRecord | None, remove: str | None) -> None:
        if put is not None:
            self._put(self._resource_key(put.address), self._record_body(put))
        if remove is not None:
            self._delete(self._resource_key(remove))

    def _take_seq(self, lost: int | None) -> int:
        """The next journal number to try; after losing `lost` to another writer, list again past it."""
        with self._lock:
            if self._next is None or lost is not None:
                start = max(self._next or 1, (lost or 0) + 1)
                self._next = self._scan_journal(start)
            seq, self._next = self._next, self._next + 1
            return seq

    def _scan_journal(self, start: int | None = None) -> int:
        """One past the highest journal number, listing only from meta's journal_next (kept by bump_serial)."""
        if start is None:
            start = int(self._meta().get("journal_next", 1))
        after = self._journal_key(start - 1) if start > 1 else None
        return max([start, *(_seq_of(key) + 1 for key in self._list("journal/", start_after=after))])

    def _prune_journal(self, cutoff: int) -> None:
        """Like sqlite: keep the last JOURNAL_KEEP entries, and every pending one."""
        if cutoff <= 0:
            return
        pending = {int(key.rpartition("/")[2]) for key in self._list("pending/")}
        doomed = []
        for key in self._list("journal/"):
            seq = _seq_of(key)
            if seq > cutoff:
                break
            if seq not in pending:
                doomed.append(key)
        self._delete_many(doomed)

    # -- the lock --------------------------------------------------------------------------------------

    def read_lock(self) -> LockInfo | None:
        got = self._get("lock.json")
        return LockInfo.from_dict(json.loads(got[0])) if got is not None else None

    def write_lock(self, info: LockInfo, *, replacing: str | None) -> bool:
        body = json.dumps(info.to_dict())
        if replacing is None:
            condition = {"IfNoneMatch": "*"}
        else:
            got = self._get("lock.json")
            if got is None or json.loads(got[0]).get("id") != replacing:
                return False
            condition = {"IfMatch": got[1]}
        if self._put("lock.json", body, **condition) is not None:
            return True
        now = self._get("lock.json")  # a retried request whose first attempt landed also answers 412
        return now is not None and now[0] == body

    def delete_lock(self, lock_id: str) -> bool:
        got = self._get("lock.json")
        if got is None or json.loads(got[0]).get("id") != lock_id:
            return False
        return self._delete("lock.json", IfMatch=got[1])

    # -- transfers -------------------------------------------------------------------------------------

    def import_state(self, meta: StateMeta, resources: list[ResourceRecord], journal: list[JournalEntry],
                     outputs: dict[str, Any]) -> None:
        """Not one transaction: journal, then meta, then records, so an interrupted import can be run again
        until its first record lands (after that, empty the prefix first)."""
        if next(iter(self._list("resources/")), None) is not None:
            raise StateError(f"{self.url} (stack {self.stack}) already holds resources; "
                             "migrate only into an empty state")
        outputs_text = self.codec.dumps(outputs)
        self._delete_many([*self._list("journal/"), *self._list("pending/")])

        def copy_entry(e: JournalEntry) -> None:
            r = e.record
            self._put(self._journal_key(e.seq), self.codec.dumps(
                {"apply_id": e.apply_id, "op": e.op, "address": r.address, "kind": r.kind, "target": r.target,
                 "id": r.id or None, "inputs": r.inputs, "depends_on": r.depends_on, "deposed": r.deposed,
                 "phase": e.phase, "at": e.at, "message": e.message, "token": e.token,
                 "operation": e.operation}))
            if e.phase == "pending":
                self._put(self._pending_key(e.seq), "")

        _parallel(copy_entry, journal)
        next_seq = max([1, *(e.seq + 1 for e in journal)])
        self._update_meta(lambda m: m.update(lineage=meta.lineage, serial=meta.serial, stack=meta.stack,
                                             outputs=outputs_text, journal_next=next_seq))
        with self._lock:
            self._next, self._open_entries = None, {}
        _parallel(self.put, resources)

    def close(self) -> None:
        self._s3.close()

    # -- objects ---------------------------------------------------------------------------------------

    def _resource_key(self, address: str) -> str:
        return f"resources/{quote(address, safe='')}.json"

    def _journal_key(self, seq: int) -> str:
        return f"journal/{seq:012d}.json"

    def _pending_key(self, seq: int) -> str:
        return f"pending/{seq:012d}"

    def _record_body(self, r: ResourceRecord) -> str:
        return self.codec.dumps({"address": r.address, "kind": r.kind, "target": r.target, "id": r.id,
                                 "inputs": r.inputs, "outputs": r.outputs, "depends_on": r.depends_on,
                                 "deposed": r.deposed})

    @staticmethod
    def _record(data: dict[str, Any]) -> ResourceRecord:
        return ResourceRecord(**{k: data[k] for k in _RECORD_FIELDS if k in data})

    @staticmethod
    def _entry(seq: int, d: dict[str, Any]) -> JournalEntry:
        record = ResourceRecord(d["address"], d["kind"], d["target"], d.get("id") or "", d["inputs"], {},
                                d["depends_on"], d["deposed"])
        return JournalEntry(seq, d["apply_id"], d["op"], record, d["phase"], d["at"], d.get("message"),
                            d.get("token") or "", d.get("operation"))

    def _get(self, key: str) -> tuple[str, str] | None:
        """(body, etag), or None when there is no such object."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            got = self._s3.get_object(Bucket=self.bucket, Key=self._root + key)
            return got["Body"].read().decode(), str(got["ETag"])
        except ClientError as err:
            if _code(err) in MISSING:
                return None
            self._fail(err, key)
        except BotoCoreError as err:
            self._fail(err, key)

    def _put(self, key: str, body: str, **condition: str) -> str | None:
        """The new object's etag; None when a condition (If-Match / If-None-Match) did not hold."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return str(self._s3.put_object(Bucket=self.bucket, Key=self._root + key, Body=body.encode(),
                                           ContentType="application/json", **condition)["ETag"])
        except ClientError as err:
            if condition and (_code(err) in CONFLICT or ("IfMatch" in condition and _code(err) in MISSING)):
                return None
            self._fail(err, key)
        except BotoCoreError as err:
            self._fail(err, key)

    def _delete(self, key: str, **condition: str) -> bool:
        """False when a condition did not hold (or, with If-Match, the object is gone)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._s3.delete_object(Bucket=self.bucket, Key=self._root + key, **condition)
            return True
        except ClientError as err:
            if condition and _code(err) in CONFLICT | MISSING:
                return False
            self._fail(err, key)
        except BotoCoreError as err:
            self._fail(err, key)

    def _delete_many(self, keys: list[str]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        for i in range(0, len(keys), 1000):
            batch = keys[i:i + 1000]
            try:
                out = self._s3.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": self._root + k} for k in batch], "Quiet": True})
            except (BotoCoreError, ClientError) as err:
                self._fail(err, batch[0])
            if errors := out.get("Errors"):
                raise StateError(f"s3://{self.bucket}/{errors[0].get('Key')}: {errors[0].get('Code')}: "
                                 f"{errors[0].get('Message')}", hint=HINTS.get(errors[0].get("Code", "")))

    def _list(self, folder: str, start_after: str | None = None) -> Iterator[str]:
        """Keys (relative to the stack's root) under `folder`, in order, one page (1000 keys) at a time."""
        from botocore.exceptions import BotoCoreError, ClientError

        args = {"Bucket": self.bucket, "Prefix": self._root + folder}
        if start_after is not None:
            args["StartAfter"] = self._root + start_after
        try:
            for page in self._s3.get_paginator("list_objects_v2").paginate(**args):
                for obj in page.get("Contents", ()):
                    yield obj["Key"][len(self._root):]
        except (BotoCoreError, ClientError) as err:
            self._fail(err, folder)

    def _fail(self, err: Exception, key: str) -> NoReturn:
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ParamValidationError

        where = f"s3://{self.bucket}/{self._root}{key}"
        if isinstance(err, ClientError):
            code = _code(err)
            message = err.response.get("Error", {}).get("Message") or code
            raise StateError(f"{where}: {code}: {message}", hint=HINTS.get(code)) from None
        if isinstance(err, NoCredentialsError):
            raise StateError(f"{where}: no AWS credentials found",
                             hint="set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or use an instance "
                                  "role") from None
        if isinstance(err, ParamValidationError):
            hint = "this boto3 predates S3 conditional writes (IfMatch / IfNoneMatch): upgrade boto3"
        elif isinstance(err, EndpointConnectionError):
            hint = "check ?endpoint_url= and ?region= in the state URL"
        else:
            hint = None
        raise StateError(f"{where}: {err}", hint=hint) from None


_session: Any = None
_session_lock = threading.Lock()


def _client(region: str | None, endpoint_url: str | None) -> Any:
    """A client from one boto3 session per process: a fresh session re-reads botocore's models (~0.1 s), and the
    lock holder opens states while it renews its lease. Sessions are not thread-safe, hence the lock."""
    global _session
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise StateError("the s3 state backend needs boto3", hint="pip install 'mlplat[aws]' (or boto3)") from None
    config = Config(retries={"mode": "standard", "total_max_attempts": 5}, max_pool_connections=32,
                    connect_timeout=10, read_timeout=60, user_agent_extra="mlplat-state")
    with _session_lock:
        if _session is None:
            _session = boto3.session.Session()
        return _session.client("s3", region_name=region, endpoint_url=endpoint_url, config=config)


def _code(err: Any) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _seq_of(key: str) -> int:
    return int(key.rpartition("/")[2].partition(".")[0])


def _parallel(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """fn over items on up to 16 threads (boto3 clients are thread-safe), results in order."""
    items = list(items)
    if len(items) < 2:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        return list(pool.map(fn, items))
