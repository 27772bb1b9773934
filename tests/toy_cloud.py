"""A tiny fake "cloud API" for the toy target plugin (tests/toy_plugin): the toy's SDK.

Objects are JSON files in a directory, one folder per collection (`space`, `share`, `model`, `deployment`,
`endpoint`), keyed by name. Writes are long-running: `create`, `update` and `delete` answer an operation
(`{"name": "operations/7", "done": false}`) that finishes after `polls` polls (of the operation, or of the object it
changes), as a cloud's long-running operations do. Errors are `ToyError(status, code, message, retry_after)`.

Knobs for tests (they act on the directory, so every `ToyCloud` on it sees them): `configure(polls=N)`,
`throttle(times, calls)` (the first `times` reads or writes per action answer 429 RESOURCE_EXHAUSTED with a
Retry-After), a call log (`calls()`), `reset()`, and out-of-band `edit`/`remove` (the cloud console: never throttled,
never logged).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

COLLECTIONS = ("space", "share", "model", "deployment", "endpoint")
READS = ("get", "list", "get_operation", "whoami")
WRITES = ("create", "update", "delete")


class ToyError(Exception):
    """A failed toy API call: the HTTP status, the toy's error code, a message, the Retry-After header."""

    def __init__(self, status: int, code: str, message: str, retry_after: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


class ToyCloud:
    """A client of the toy cloud living in `root` (made on first use)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        for collection in (*COLLECTIONS, "operations", "blobs"):
            (self.root / collection).mkdir(exist_ok=True)
        with self._locked():
            if not (self.root / "_meta.json").exists():
                self._write(self.root / "_meta.json", {"account": f"toy-{uuid.uuid4().hex[:8]}", "next_op": 1,
                                                      "polls": 2, "throttle": {}, "log": []})

    # -- storage --------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @staticmethod
    def _read(path: Path) -> Any:
        return json.loads(path.read_text())

    @staticmethod
    def _write(path: Path, value: Any) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(value, indent=1, sort_keys=True))
        os.replace(tmp, path)

    def _meta(self) -> dict[str, Any]:
        return self._read(self.root / "_meta.json")

    def _path(self, collection: str, name: str) -> Path:
        if collection not in COLLECTIONS:
            raise ToyError(400, "INVALID_ARGUMENT", f"no collection {collection!r}")
        if not name or "/" in name or name.startswith("."):
            raise ToyError(400, "INVALID_ARGUMENT", f"bad name {name!r}")
        return self.root / collection / f"{name}.json"

    def _enter(self, action: str) -> None:
        """Log the call and throttle it if a knob says so (called under the lock)."""
        meta = self._meta()
        meta["log"].append(action)
        kind = "reads" if action in READS else "writes"
        left = meta["throttle"].get(kind, {})
        if left.get(action, 0) > 0:
            left[action] -= 1
            self._write(self.root / "_meta.json", meta)
            raise ToyError(429, "RESOURCE_EXHAUSTED", f"{action}: rate exceeded", retry_after="0.01")
        self._write(self.root / "_meta.json", meta)

    def _new_operation(self, collection: str, name: str, verb: str) -> dict[str, Any]:
        meta = self._meta()
        op = {"name": f"operations/{meta['next_op']}", "done": False, "verb": verb,
              "target": [collection, name], "polls_left": meta["polls"]}
        meta["next_op"] += 1
        self._write(self.root / "_meta.json", meta)
        if op["polls_left"] <= 0:
            self._finish(op)
        self._write(self.root / "operations" / f"{op['name'].split('/')[1]}.json", op)
        return self._public(op)

    @staticmethod
    def _public(op: dict[str, Any]) -> dict[str, Any]:
        return {k: op[k] for k in ("name", "done", "error") if k in op}

    def _finish(self, op: dict[str, Any]) -> None:
        op["done"], op["polls_left"] = True, 0
        collection, name = op["target"]
        path = self._path(collection, name)
        if not path.exists():
            return
        obj = self._read(path)
        if obj.get("operation") != op["name"]:
            return
        if op["verb"] == "delete":
            path.unlink()
            (self.root / "blobs" / name).unlink(missing_ok=True)
            return
        obj["state"] = "READY"
        obj.pop("operation", None)
        self._write(path, obj)

    def _poll(self, op_name: str) -> dict[str, Any] | None:
        path = self.root / "operations" / f"{op_name.split('/')[-1]}.json"
        if not path.exists():
            return None
        op = self._read(path)
        if not op["done"]:
            op["polls_left"] -= 1
            if op["polls_left"] <= 0:
                self._finish(op)
            self._write(path, op)
        return op

    # -- the API --------------------------------------------------------------------------------------------

    def whoami(self) -> dict[str, Any]:
        with self._locked():
            self._enter("whoami")
            return {"account": self._meta()["account"]}

    def create(self, collection: str, name: str, spec: dict[str, Any], labels: dict[str, str],
               upload: str | None = None) -> dict[str, Any]:
        """Start creating `name`: 409 ALREADY_EXISTS when the name is taken. Answers the operation. `upload`: a
        file whose bytes the object holds (a model's artifact); the object's `uri` then names the blob."""
        with self._locked():
            self._enter("create")
            path = self._path(collection, name)
            if path.exists():
                raise ToyError(409, "ALREADY_EXISTS", f"{collection}/{name} already exists")
            obj = {"name": name, "collection": collection, "spec": spec, "labels": dict(labels),
                   "state": "CREATING", "uid": uuid.uuid4().hex[:12]}
            if upload is not None:
                shutil.copyfile(upload, self.root / "blobs" / name)
                obj["uri"] = f"toy://{self.root.name}/blobs/{name}"
            self._write(path, obj)
            op = self._new_operation(collection, name, "create")
            obj = self._read(path) if path.exists() else obj
            if not op["done"]:
                obj["operation"] = op["name"]
                self._write(path, obj)
            return op

    def get(self, collection: str, name: str) -> dict[str, Any]:
        """The object (404 NOT_FOUND when absent). Reading an object with an operation under way polls it."""
        with self._locked():
            self._enter("get")
            path = self._path(collection, name)
            if not path.exists():
                raise ToyError(404, "NOT_FOUND", f"{collection}/{name} not found")
            obj = self._read(path)
            if obj.get("operation"):
                self._poll(obj["operation"])
                if not path.exists():
                    raise ToyError(404, "NOT_FOUND", f"{collection}/{name} not found")
                obj = self._read(path)
            return obj

    def list(self, collection: str) -> list[dict[str, Any]]:
        with self._locked():
            self._enter("list")
            self._path(collection, "x")
            return [self._read(p) for p in sorted((self.root / collection).glob("*.json"))]

    def update(self, collection: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Replace the object's spec (a PUT); 409 FAILED_PRECONDITION while another operation is under way."""
        with self._locked():
            self._enter("update")
            path = self._path(collection, name)
            if not path.exists():
                raise ToyError(404, "NOT_FOUND", f"{collection}/{name} not found")
            obj = self._read(path)
            if obj.get("operation"):
                raise ToyError(400, "FAILED_PRECONDITION", f"{collection}/{name} is {obj['state']}")
            obj["spec"], obj["state"] = spec, "UPDATING"
            self._write(path, obj)
            op = self._new_operation(collection, name, "update")
            if not op["done"]:
                obj["operation"] = op["name"]
                self._write(path, obj)
            return op

    def delete(self, collection: str, name: str) -> dict[str, Any]:
        """Start deleting `name` (404 NOT_FOUND when absent). The object reads DELETING until the operation ends."""
        with self._locked():
            self._enter("delete")
            path = self._path(collection, name)
            if not path.exists():
                raise ToyError(404, "NOT_FOUND", f"{collection}/{name} not found")
            obj = self._read(path)
            obj["state"] = "DELETING"
            self._write(path, obj)
            op = self._new_operation(collection, name, "delete")
            if not op["done"]:
                obj["operation"] = op["name"]
                self._write(path, obj)
            else:
                (self.root / "blobs" / name).unlink(missing_ok=True)
            return op

    def get_operation(self, op_name: str) -> dict[str, Any]:
        with self._locked():
            self._enter("get_operation")
            op = self._poll(op_name)
            if op is None:
                raise ToyError(404, "NOT_FOUND", f"{op_name} not found")
            return self._public(op)

    # -- knobs and the console (for tests; never throttled, never logged) -----------------------------------

    def configure(self, *, polls: int) -> None:
        """Long-running operations finish after `polls` polls (0: at once)."""
        with self._locked():
            meta = self._meta()
            meta["polls"] = polls
            self._write(self.root / "_meta.json", meta)

    def throttle(self, times: int, calls: str, actions: tuple[str, ...] | None = None) -> None:
        """The first `times` calls of each action of `calls` ("reads" or "writes") answer 429; 0 stops it."""
        with self._locked():
            meta = self._meta()
            meta["throttle"][calls] = {a: times for a in (actions or (READS if calls == "reads" else WRITES))}
            self._write(self.root / "_meta.json", meta)

    def calls(self) -> list[str]:
        with self._locked():
            return list(self._meta()["log"])

    def reset(self) -> None:
        """Every object, operation and knob gone (the account id stays)."""
        with self._locked():
            for collection in (*COLLECTIONS, "operations", "blobs"):
                shutil.rmtree(self.root / collection, ignore_errors=True)
                (self.root / collection).mkdir()
            meta = self._meta()
            meta.update(next_op=1, polls=2, throttle={}, log=[])
            self._write(self.root / "_meta.json", meta)

    def objects(self, collection: str) -> list[dict[str, Any]]:
        """Every object of a collection, as the console lists it (no operation is polled)."""
        with self._locked():
            return [self._read(p) for p in sorted((self.root / collection).glob("*.json"))]

    def edit(self, collection: str, name: str, **spec: Any) -> None:
        """Change fields of an object's spec behind the API's back."""
        with self._locked():
            path = self._path(collection, name)
            obj = self._read(path)
            obj["spec"].update(spec)
            self._write(path, obj)

    def remove(self, collection: str, name: str) -> None:
        """Delete an object at once (nothing when it is gone)."""
        with self._locked():
            self._path(collection, name).unlink(missing_ok=True)
            (self.root / "blobs" / name).unlink(missing_ok=True)
