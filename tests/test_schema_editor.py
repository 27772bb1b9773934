"""The schema as an editor uses it: yaml-language-server (what VS Code's YAML extension runs) over LSP on stdio.

Needs Node.js and the server, which the Python test extra cannot install: `.ci/run` installs it with npm (a missing
server fails the test in CI); elsewhere it runs where it is found:

    npm install --prefix /tmp/yls yaml-language-server@1
    MLPLAT_YAML_LANGUAGE_SERVER=/tmp/yls/node_modules/.bin/yaml-language-server pytest tests/test_schema_editor.py
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, in_ci

SERVER = os.environ.get("MLPLAT_YAML_LANGUAGE_SERVER") or shutil.which("yaml-language-server")
#: .ci/run installs the server with npm: in CI a missing one fails the test instead of skipping it
pytestmark = pytest.mark.skipif((not SERVER or not shutil.which("node")) and not in_ci(),
                                reason="yaml-language-server not found (set MLPLAT_YAML_LANGUAGE_SERVER)")
SCHEMA = REPO / "provisioner" / "spec" / "mlplat.schema.json"
SETTINGS = {"validate": True, "hover": True, "completion": True, "schemaStore": {"enable": False}}


class LanguageServer:
    """A minimal LSP client: requests, notifications, and answers to the server's own requests."""

    def __init__(self, command: list[str]) -> None:
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self.inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            length = 0
            while (line := self.proc.stdout.readline().decode()) not in ("\r\n", "\n", ""):
                name, _, value = line.partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            if not length:
                return
            self.inbox.put(json.loads(self.proc.stdout.read(length)))

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        data = json.dumps({"jsonrpc": "2.0", **message}).encode()
        self.proc.stdin.write(f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        self.proc.stdin.flush()

    def request(self, method: str, params: dict[str, Any]) -> Any:
        self.next_id += 1
        number = self.next_id
        self.send({"id": number, "method": method, "params": params})
        return self.wait(lambda m: m.get("id") == number and "method" not in m).get("result")

    def wait(self, wanted: Callable[[dict[str, Any]], bool], timeout: float = 30) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                message = self.inbox.get(timeout=0.5)
            except queue.Empty:
                continue
            if "method" in message and "id" in message:  # the server asks: its settings, or a no-op
                items = message["params"].get("items", []) if message["method"] == "workspace/configuration" else []
                self.send({"id": message["id"], "result": [SETTINGS for _ in items] or None})
            elif wanted(message):
                return message
        raise TimeoutError("yaml-language-server did not answer")

    def open(self, path: Path, text: str) -> list[dict[str, Any]]:
        """Open a document; its diagnostics."""
        uri = path.as_uri()
        self.send({"method": "textDocument/didOpen",
                   "params": {"textDocument": {"uri": uri, "languageId": "yaml", "version": 1, "text": text}}})
        found = self.wait(lambda m: m.get("method") == "textDocument/publishDiagnostics"
                          and m["params"]["uri"] == uri)
        return found["params"]["diagnostics"]

    def completions(self, path: Path, line: int, character: int) -> list[str]:
        result = self.request("textDocument/completion", {"textDocument": {"uri": path.as_uri()},
                                                          "position": {"line": line, "character": character}})
        items = result.get("items", []) if isinstance(result, dict) else result or []
        return [item["label"] for item in items]


@pytest.fixture(scope="module")
def server() -> Iterator[LanguageServer]:
    assert SERVER is not None
    ls = LanguageServer([SERVER, "--stdio"])  # a node script (#!/usr/bin/env node)
    ls.request("initialize", {"processId": os.getpid(), "rootUri": None,
                              "capabilities": {"workspace": {"configuration": True}}})
    ls.send({"method": "initialized", "params": {}})
    ls.send({"method": "workspace/didChangeConfiguration", "params": {"settings": {"yaml": SETTINGS}}})
    yield ls
    ls.proc.kill()
    ls.proc.wait()


MODELINE = f"# yaml-language-server: $schema={SCHEMA}\n"


def test_an_example_stack_has_no_problems_and_its_relative_modeline_works(server: LanguageServer,
                                                                          tmp_path: Path) -> None:
    (tmp_path / "schema").mkdir()
    shutil.copy(REPO / "schema" / "mlplat.schema.json", tmp_path / "schema")
    (tmp_path / "stacks").mkdir()
    text = (REPO / "stacks" / "aws.yaml").read_text()
    assert server.open(tmp_path / "stacks" / "aws.yaml", text) == []
    broken = text.replace("apiVersion: mlplat/v1\n", "apiVersion: mlplat/v1\nclusterz: []\n", 1)
    found = server.open(tmp_path / "stacks" / "broken.yaml", broken)
    assert [d["message"] for d in found] == ["Property clusterz is not allowed."]


def test_mistakes_are_flagged_where_they_are(server: LanguageServer, tmp_path: Path) -> None:
    text = MODELINE + (
        "apiVersion: mlplat/v1\n"              # 1
        "metadata: {name: demo}\n"             # 2
        "targets:\n"                           # 3
        "  aws:\n"                             # 4
        "    region: us-east-1\n"              # 5
        "    regoin: x\n"                      # 6  an aws target: unknown key
        "  aws2:\n"                            # 7
        "    type: sim\n"                      # 8
        "    region: us-east-1\n"              # 9  a sim target takes no region
        "clusters:\n"                          # 10
        "  - name: c\n"                        # 11
        "    gpu_pools:\n"                     # 12
        "      - name: p\n"                    # 13
        "        accelerator: h999\n"          # 14 not in the catalog
        "      - name: q\n"                    # 15
        "        accelerator: NVIDIA H100 80GB\n"  # 16 another spelling: fine
        "        gpus_per_node: ${var:gpus}\n"     # 17 a reference: fine
    )
    found = {d["range"]["start"]["line"]: d["message"] for d in server.open(tmp_path / "bad.yaml", text)}
    assert set(found) == {6, 9, 14}, found
    assert "regoin" in found[6] and "region" in found[9] and '"h100"' in found[14]


def test_completion_offers_a_target_s_settings_and_the_accelerators(server: LanguageServer, tmp_path: Path) -> None:
    text = MODELINE + ("apiVersion: mlplat/v1\nmetadata: {name: demo}\ntargets:\n  aws:\n    \n"
                       "clusters:\n  - name: c\n    gpu_pools:\n      - name: p\n        accelerator: \n")
    path = tmp_path / "complete.yaml"
    server.open(path, text)
    assert {"region", "profile", "bucket", "timeouts"} <= set(server.completions(path, 5, 4))
    from provisioner import catalog

    assert set(catalog.names()) <= set(server.completions(path, 10, 21))
