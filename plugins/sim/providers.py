"""The simulated cloud: an object store (directory or memory) that counts every create, so tests can prove
that no resource was duplicated or orphaned. Creates are idempotent via a token derived from the address,
like EFS CreationToken or SageMaker client tokens."""

from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from provisioner.errors import RetryableError
from provisioner.operations import StepContext
from provisioner.provider import Created, Observed, ResourceProvider

FORCE_NEW = {"sim.pool": {"accelerator", "cluster"}, "sim.model": {"ref", "source", "registry"},
             "sim.endpoint_config": {"variants"}, "sim.filesystem": {"kind"}}


class MemoryStore:
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.creates = 0
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()

    def start_operation(self, obj: dict[str, Any], polls: int) -> str:
        """A long-running create: the object appears once the operation has been polled `polls` times."""
        op_id = f"op-{uuid.uuid4().hex[:12]}"
        self.put_operation({"id": op_id, "remaining": polls, "object": obj})
        self.log_operation(op_id, obj["address"])
        return op_id

    def poll_operation(self, op_id: str) -> dict[str, Any] | None:
        """One poll: the operation moves a step on; when done its object exists (exactly once)."""
        with self.lock:
            op = self.get_operation(op_id)
            if op is None or op["remaining"] <= 0:
                return op
            op["remaining"] -= 1
            self.put_operation(op)
        if op["remaining"] == 0:
            self.put(op["object"], created=True)
        return op

    def put_operation(self, op: dict[str, Any]) -> None:
        self.operations[op["id"]] = dict(op)

    def get_operation(self, op_id: str) -> dict[str, Any] | None:
        op = self.operations.get(op_id)
        return dict(op) if op is not None else None

    def log_operation(self, op_id: str, address: str) -> None:
        pass

    def put(self, obj: dict[str, Any], *, created: bool) -> None:
        with self.lock:
            self.objects[obj["id"]] = obj
            self.creates += created

    def get(self, id: str) -> dict[str, Any] | None:
        return self.objects.get(id)

    def delete(self, id: str) -> None:
        with self.lock:
            self.objects.pop(id, None)

    def all(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.objects.values())

    def count_call(self, key: str) -> int:
        with self.lock:
            self.calls[key] = self.calls.get(key, 0) + 1
            return self.calls[key]


class DirectoryStore(MemoryStore):
    """One JSON file per object plus an append-only log of creates (shared between processes)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        (path / "objects").mkdir(parents=True, exist_ok=True)

    def put(self, obj: dict[str, Any], *, created: bool) -> None:
        target = self.path / "objects" / f"{obj['id']}.json"
        tmp = target.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(obj, sort_keys=True))
        os.replace(tmp, target)
        if created:
            with open(self.path / "creates.log", "a") as log:
                log.write(f"{obj['id']} {obj['address']}\n")

    def get(self, id: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.path / "objects" / f"{id}.json").read_text())
        except (OSError, ValueError):
            return None

    def delete(self, id: str) -> None:
        (self.path / "objects" / f"{id}.json").unlink(missing_ok=True)

    def all(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted((self.path / "objects").glob("*.json"))]

    def create_log(self) -> list[str]:
        try:
            return (self.path / "creates.log").read_text().splitlines()
        except OSError:
            return []

    def put_operation(self, op: dict[str, Any]) -> None:
        folder = self.path / "operations"
        folder.mkdir(exist_ok=True)
        tmp = folder / f"{op['id']}.{os.getpid()}.{threading.get_ident()}.tmp"
        tmp.write_text(json.dumps(op, sort_keys=True))
        os.replace(tmp, folder / f"{op['id']}.json")

    def get_operation(self, op_id: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.path / "operations" / f"{op_id}.json").read_text())
        except (OSError, ValueError):
            return None

    def log_operation(self, op_id: str, address: str) -> None:
        with open(self.path / "operations.log", "a") as log:
            log.write(f"{op_id} {address}\n")


_memory = MemoryStore()
_stores: dict[Path, DirectoryStore] = {}


def store_for(path: Path | None) -> MemoryStore:
    if path is None:
        return _memory
    if path not in _stores:
        _stores[path] = DirectoryStore(path)
    return _stores[path]


class SimProvider(ResourceProvider):
    def __init__(self, kind: str, store: MemoryStore, settings: Any) -> None:
        self.kind, self.store, self.settings = kind, store, settings
        if kind == "sim.endpoint_key":  # the cloud makes the key and returns it: sealed in the state
            self.secret_outputs = frozenset({"key"})
        self.force_new = frozenset(FORCE_NEW.get(kind, ()))
        # like SageMaker endpoint configs: a new config is made (with a new name) before the old one goes
        self.replace_mode = "create_before_destroy" if kind == "sim.endpoint_config" else "destroy_before_create"

    def _work(self, key: str) -> None:
        if self.settings.throttle_first and self.store.count_call(key) <= self.settings.throttle_first:
            raise RetryableError(f"ThrottlingException: rate exceeded for {key}", retry_after=0.01)
        delay = self.settings.latency_ms + random.uniform(0, self.settings.jitter_ms)
        if delay:
            time.sleep(delay / 1000)

    @staticmethod
    def _outputs(obj: dict[str, Any]) -> dict[str, Any]:
        outputs = {"id": obj["id"], "url": obj["url"]}
        if "key" in obj:
            outputs["key"] = obj["key"]
        return outputs

    @staticmethod
    def token(address: str, inputs: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps([address, inputs], sort_keys=True).encode()).hexdigest()[:16]

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        if ctx.operation:  # recovery: the create was issued before a crash; wait for it, do not issue it again
            return self._finish(ctx.operation, ctx)
        self._work(f"create:{address}")
        id = uuid.uuid4().hex[:16] if self.settings.tagged_ids else self.token(address, inputs)
        existing = self.store.get(id)
        if existing is None:
            existing = {"id": id, "address": address, "kind": self.kind, "inputs": inputs,
                        "url": f"sim://{address}", "token": ctx.token}
            if self.secret_outputs:
                existing["key"] = secrets.token_urlsafe(24)
            if self.settings.operation_polls:  # a long-running create: checkpoint the operation, then wait
                operation = self.store.start_operation(existing, self.settings.operation_polls)
                ctx.checkpoint(operation)
                return self._finish(operation, ctx)
            self.store.put(existing, created=True)
        return Created(id, self._outputs(existing))

    def _finish(self, operation: str, ctx: StepContext) -> Created:
        def check() -> tuple[bool, Any]:
            op = self.store.poll_operation(operation)
            if op is None:
                raise RuntimeError(f"OperationNotFound: {operation}")
            return (True, op["object"]) if op["remaining"] <= 0 else (False, f"{op['remaining']} poll(s) to go")

        interval = self.settings.poll_interval_ms / 1000
        obj = ctx.wait(check, what=f"operation {operation}", interval=interval, max_interval=interval)
        return Created(obj["id"], self._outputs(obj))

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        if self.settings.tagged_ids:  # like a tag lookup: the object the create carrying this token made
            tagged = [o for o in self.store.all() if o["address"] == address and o["id"] not in ctx.exclude
                      and (not ctx.token or o.get("token") == ctx.token)]
            obj = tagged[-1] if tagged else None
        else:
            obj = self.store.get(self.token(address, inputs))
        return Created(obj["id"], self._outputs(obj)) if obj else None

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        if self.settings.throttle_reads and self.store.count_call(f"read:{id}") <= self.settings.throttle_reads:
            raise RetryableError(f"ThrottlingException: rate exceeded reading {id}", retry_after=0.01)
        obj = self.store.get(id)
        return Observed(obj["inputs"], self._outputs(obj)) if obj else None

    def import_(self, address: str, id: str, inputs: dict[str, Any]) -> Observed | None:
        """The object `id` (as `mlplat state show` prints it), if it is one of this kind."""
        obj = self.store.get(id)
        return Observed(obj["inputs"], self._outputs(obj)) if obj and obj["kind"] == self.kind else None

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        self._work(f"update:{id}")
        obj = self.store.get(id)
        if obj is None:
            raise RuntimeError(f"ResourceNotFound: {id}")
        obj["inputs"] = desired
        self.store.put(obj, created=False)
        return self._outputs(obj)

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        self._work(f"delete:{id}")
        self.store.delete(id)


class DataProvider(ResourceProvider):
    """`sim.data`: a resource that lives only in the state, like Terraform's `terraform_data` (benchmarks compare
    the two engines on the same graph). Zero latency, no store. Outputs `id` and `output` (the `input`, changed by
    an in-place update); a change of `triggers_replace` replaces it (a new id)."""

    importable = False  # nothing exists outside the state to adopt
    state_only = True
    force_new = frozenset({"triggers_replace"})
    update_outputs = frozenset({"output"})

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        id = uuid.uuid4().hex
        return Created(id, {"id": id, "output": inputs.get("input")})

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        return Observed(inputs, {"id": id, "output": inputs.get("input")})

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        return {"id": id, "output": desired.get("input")}

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        return None
