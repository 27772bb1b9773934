"""The plugin contract, part three: what a migration needs of a target (`plugins/README.md`, "Migration").

A target that serves exports an `upstream` a front door can forward to; a registry exports each model's URI and
sha256 (what the core's copy step and a move's transfer check compare); a target with an artifact store stores,
reads back and deletes an artifact by its sha256; a target that can be a front door lowers one at its address,
with a stable `url`, made after the endpoint and removed with it. A target that offers none of this says so and the
test says why it has nothing to check (skip); the gcp, azure and onprem plugins join through their harnesses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.graph import Ref
from provisioner.target import UPSTREAM_KEYS

from contract_targets import HARNESSES, Harness, apply, assert_converged, contract_harness, opened

#: "<test>[<target>...]" -> the plugin bug that makes it fail (a strict xfail)
KNOWN_BUGS: dict[str, str] = {}


@pytest.fixture(params=HARNESSES, ids=lambda h: h.target)
def harness(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    yield from contract_harness(request, tmp_path, monkeypatch, KNOWN_BUGS)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_serving_exports_an_upstream_for_front_doors(harness: Harness) -> None:
    with opened(harness) as stack:
        stack.discovery()
        lowered = stack.targets[harness.target].lower(stack.platform.serving[0], _context(stack))
    upstream = lowered.outputs.get("upstream")
    if upstream is None:
        pytest.skip(f"{harness.target}: its endpoints export no upstream, so they cannot sit behind a front door "
                    "or move with traffic shifted")
    assert set(upstream) == set(UPSTREAM_KEYS), upstream
    assert isinstance(upstream["url"], str | Ref) and upstream["url"]
    assert upstream["sign"] is None or upstream["sign"]["kind"] in ("sigv4", "google", "azure")


def test_registry_exports_each_model_uri_and_sha256(harness: Harness) -> None:
    with opened(harness) as stack:
        stack.discovery()
        _, outputs = stack.lower()
    if "models.sha256.iris:1" not in outputs:
        pytest.skip(f"{harness.target}: its registry exports no sha256, so no artifact copy or move checks it")
    for version in ("1", "2"):
        artifact = harness.directory / "models" / f"iris-v{version}.json"
        assert outputs[f"models.sha256.iris:{version}"] == sha256(artifact)
        assert f"models.model.iris:{version}" in outputs


def test_artifact_store_stores_reads_back_and_deletes_by_sha256(harness: Harness, tmp_path: Path) -> None:
    with opened(harness) as stack:
        store = stack.targets[harness.target].artifact_store()
        if store is None:
            pytest.skip(f"{harness.target}: no artifact store (its endpoints read models from its own registry only)")
        source = harness.directory / "models" / "iris-v1.json"
        digest = sha256(source)
        uri = store.put(source, "iris/1/iris-v1.json", digest)
        assert store.reads(uri) and store.sha256(uri) == digest
        assert store.put(source, "iris/1/iris-v1.json", digest) == uri, "putting it again is a no-op"
        fetched = tmp_path / "fetched.json"
        store.fetch(uri, fetched)
        assert fetched.read_bytes() == source.read_bytes()
        store.delete(uri)
        assert store.sha256(uri) is None
        store.delete(uri)  # gone already: no error


def test_a_front_door_is_made_after_its_endpoint_and_goes_with_it(harness: Harness) -> None:
    with opened(harness) as stack:
        if stack.targets[harness.target].capabilities().front_door is None:
            pytest.skip(f"{harness.target}: cannot be a front door")
    harness.write_stack(front_door=True)
    with opened(harness) as stack:
        stack.discovery()
        desired, outputs = stack.lower()
        door = f"iris.front_door.{harness.target}"
        assert door in desired and outputs["iris.url"] == Ref(door, "url")
        endpoint = [a for a, r in desired.items() if a.startswith("iris.") and a != door]
        assert set(endpoint) <= desired[door].edges, "the front door waits for what it forwards to"
    apply(harness, check=True)
    with opened(harness) as stack:
        url = stack.outputs()["iris.url"]
        assert isinstance(url, str) and url.startswith(("http://", "https://")), url
    apply(harness, destroy=True)
    assert_converged(harness, destroyed=True)


def _context(stack):  # type: ignore[no-untyped-def]
    from provisioner.target import LowerContext

    registry = stack.platform.registry
    _, outputs = stack.lower()
    component_outputs = {registry.name: {k.split(".", 1)[1]: v for k, v in outputs.items()
                                         if k.startswith(f"{registry.name}.")}}
    return LowerContext(stack.platform, component_outputs)
