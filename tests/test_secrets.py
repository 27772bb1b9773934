"""Secrets end to end: an endpoint's API key given as ${secret:NAME} is sealed in the state and in saved plans,
masked in every output, and only its hash reaches the router's files; the router enforces it."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import ClassVar

import pytest

from provisioner.errors import StateError
from provisioner.plugins import hookimpl
from provisioner.secrets import Secret
from provisioner.state.codec import SEALED, StateCodec

from conftest import run_mlplat

KEY = "k3y-Zq8w9ErT5yUi0pL2"
PASSPHRASE = {"MLPLAT_STATE_PASSPHRASE": "a passphrase for the tests", "IRIS_API_KEY": KEY}


@pytest.fixture
def keyed_stack(quickstart_dir: Path) -> Path:
    stack = quickstart_dir / "quickstart.yaml"
    text = stack.read_text().replace("  - name: iris\n    paths:",
                                     "  - name: iris\n    auth: key\n    api_key: ${secret:IRIS_API_KEY}\n    paths:")
    stack.write_text(text)
    return stack


def every_byte(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in directory.rglob("*") if p.is_file() and p.suffix != ".log")


def post(url: str, key: str | None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(url + "/invocations", data=b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}',
                                     headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def test_api_key_is_sealed_masked_and_enforced(keyed_stack: Path) -> None:
    directory = keyed_stack.parent
    try:
        preview = run_mlplat("preview", "-f", str(keyed_stack), "-o", "plan.json", cwd=directory, env=PASSPHRASE)
        assert KEY not in preview.stdout + preview.stderr and "(sensitive)" in preview.stdout
        assert KEY.encode() not in (directory / "plan.json").read_bytes()
        apply = run_mlplat("apply", "plan.json", cwd=directory, env=PASSPHRASE)
        assert KEY not in apply.stdout + apply.stderr

        url = run_mlplat("output", "iris.url", "-f", str(keyed_stack), cwd=directory, env=PASSPHRASE).stdout.strip()
        assert post(url, None) == 401 and post(url, "wrong-key-wrong-key") == 401
        assert post(url, KEY) == 200

        shown = [run_mlplat(*args, "-f", str(keyed_stack), cwd=directory, env=PASSPHRASE).stdout for args in (
            ("state", "show", "iris.router.main"), ("preview", "--json"), ("output", "--json"), ("refresh",))]
        assert all(KEY not in text for text in shown)
        assert '"api_key": "(sensitive)"' in shown[0]
        assert KEY.encode() not in every_byte(directory)  # state (db + WAL), router config, runtime files

        wrong = run_mlplat("preview", "-f", str(keyed_stack), cwd=directory, check=False,
                           env={**PASSPHRASE, "MLPLAT_STATE_PASSPHRASE": "not it"})
        assert wrong.returncode == 1 and "cannot be opened with this key" in wrong.stderr
        assert KEY not in wrong.stdout + wrong.stderr
    finally:
        run_mlplat("destroy", "--yes", "-f", str(keyed_stack), cwd=directory, env=PASSPHRASE, check=False)


def test_a_secret_without_a_state_key_is_refused_before_anything_is_created(keyed_stack: Path) -> None:
    directory = keyed_stack.parent
    proc = run_mlplat("apply", "--yes", "-f", str(keyed_stack), cwd=directory, check=False,
                      env={"IRIS_API_KEY": KEY, "MLPLAT_STATE_PASSPHRASE": ""})
    assert proc.returncode == 1 and "MLPLAT_STATE_PASSPHRASE" in proc.stderr
    assert KEY not in proc.stdout + proc.stderr
    state = json.loads(run_mlplat("state", "list", "--json", "-f", str(keyed_stack), cwd=directory,
                                  env={"IRIS_API_KEY": KEY}).stdout)
    assert state["resources"] == []


def test_an_inline_key_in_the_stack_file_is_refused_without_echoing_it(keyed_stack: Path) -> None:
    keyed_stack.write_text(keyed_stack.read_text().replace("${secret:IRIS_API_KEY}", KEY))
    proc = run_mlplat("validate", "-f", str(keyed_stack), cwd=keyed_stack.parent, check=False)
    assert proc.returncode == 1 and "serving[0].api_key: secrets may not be written" in proc.stderr
    assert KEY not in proc.stdout + proc.stderr


class KmsLikePlugin:
    """What a KMS integration would do: hand out a data key per stack (here: a fixed one)."""

    calls: ClassVar[list[tuple[str, str]]] = []

    @staticmethod
    @hookimpl
    def mlplat_state_key(stack: str, lineage: str) -> bytes:
        KmsLikePlugin.calls.append((stack, lineage))
        return bytes(range(32))


def test_a_key_hook_seals_secrets_without_a_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from provisioner import plugins
    from provisioner.secrets import Secret
    from provisioner.state import open_state
    from provisioner.state.base import ResourceRecord

    monkeypatch.delenv("MLPLAT_STATE_PASSPHRASE", raising=False)
    manager = plugins.manager.__wrapped__()  # a fresh manager: the cached one must not keep this plugin
    manager.register(KmsLikePlugin, name="kms-like")
    monkeypatch.setattr(plugins, "manager", lambda: manager)
    state = open_state("kms", tmp_path)
    state.put(ResourceRecord("a.b.c", "k", "t", "id", {"token": Secret("hook-sealed-value-1")}))
    state.close()
    assert b"hook-sealed-value-1" not in b"".join(p.read_bytes() for p in tmp_path.rglob("*.db*"))
    assert open_state("kms", tmp_path).resources()["a.b.c"].inputs["token"] == "hook-sealed-value-1"
    assert KmsLikePlugin.calls and KmsLikePlugin.calls[0][0] == "kms"


# -- the sealing itself: AES-GCM with a fresh nonce per value, and tampering refused -----------------------------
SEALED_VALUE = "s3aled-Value-9f8e7d"


def sealed_codec() -> StateCodec:
    return StateCodec(lambda: bytes(range(32)))


def sealed_raw(codec: StateCodec, value: str) -> bytes:
    """nonce (12 bytes) + ciphertext + tag (16 bytes), as the state stores it (base64 in {"$sealed": "v1:..."})."""
    version, _, token = json.loads(codec.dumps(Secret(value)))[SEALED].partition(":")
    assert version == "v1"
    return base64.b64decode(token)


def as_sealed(raw: bytes) -> str:
    return json.dumps({SEALED: "v1:" + base64.b64encode(raw).decode()})


def test_sealing_the_same_secret_twice_uses_a_fresh_nonce_each_time() -> None:
    codec = sealed_codec()
    first, second = sealed_raw(codec, SEALED_VALUE), sealed_raw(codec, SEALED_VALUE)
    assert len(first) == len(second) == 12 + len(SEALED_VALUE) + 16
    assert first[:12] != second[:12], "a nonce was reused: AES-GCM with a repeated nonce leaks plaintext and key"
    assert first[12:] != second[12:]
    assert codec.loads(as_sealed(first)) == codec.loads(as_sealed(second)) == SEALED_VALUE


@pytest.mark.parametrize("where", ["nonce", "body", "tag"])
def test_a_sealed_secret_with_one_byte_flipped_is_refused(where: str) -> None:
    codec = sealed_codec()
    original = sealed_raw(codec, SEALED_VALUE)
    assert codec.loads(as_sealed(original)) == SEALED_VALUE
    raw = bytearray(original)
    index = {"nonce": 5, "body": 12 + 3, "tag": len(raw) - 1}[where]
    raw[index] ^= 0x01
    with pytest.raises(StateError, match="a secret in the state cannot be opened") as caught:
        codec.loads(as_sealed(bytes(raw)))
    assert SEALED_VALUE not in f"{caught.value} {caught.value.hint}"


def test_a_sealed_secret_whose_text_is_not_base64_is_a_clear_error() -> None:
    with pytest.raises(StateError, match="a secret in the state is damaged"):
        sealed_codec().loads(json.dumps({SEALED: "v1:not*base64!"}))
