"""The local front door (`local.front_door`): an endpoint's stable URL on this machine, a router process in
<root>/front_doors/<endpoint> forwarding to whole endpoints, on any target, by weight.

Inputs: `endpoint`, `upstreams` (each `{"name": <target>, "weight": 0-100, "url", "sign": dict | None,
"api_key": str | None}`, see `provisioner.target.UPSTREAM_KEYS`), `api_key` (the endpoint's own key with
`auth: key`: clients must send it, as to the endpoint), `host`, `work_dir` (the run directory). Outputs: url, pid,
port. `upstreams` and `api_key` are live: a weight change, an upstream added or removed is a config rewrite and a
SIGHUP, confirmed on /-/config before `update` returns, dropping no request (a migration's traffic shift steps
through it). An upstream's key goes to a 0600 file in the run directory (`upstream-<name>.key`), never into
config.json; no upstream gets the stack's internal token. Import id: the run directory, as for a router.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlplat_plugins.local.serving import RouterProvider, get_json, key_sha256
from provisioner.secrets import Secret

if TYPE_CHECKING:
    from provisioner.operations import StepContext

KEY_FILES = "upstream-*.key"


class FrontDoorProvider(RouterProvider):
    """A router whose routes are the `upstreams` (route path = upstream name), none of them internal."""

    runtime_kind = "front_door"
    noun = "front door"
    #: where the standard AWS credential chain, Google's Application Default Credentials and TLS look (paths and
    #: names, no secret): a signed upstream needs them, and the allow-list of `processes.child_environment` leaves
    #: them out
    child_env = ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "GOOGLE_APPLICATION_CREDENTIALS",
                 "CLOUDSDK_CONFIG", "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE",
                 "AZURE_AUTHORITY_HOST", "AZURE_CONFIG_DIR", "SSL_CERT_FILE", "SSL_CERT_DIR")

    def _run_dir(self, inputs: dict[str, Any]) -> Path:
        return Path(inputs["work_dir"])

    def _work_dir(self, run_dir: Path) -> Path:
        return run_dir

    @staticmethod
    def _key_file(run_dir: Path, name: str) -> Path:
        plain = re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", name)
        safe = name if plain else hashlib.sha256(name.encode()).hexdigest()[:16]
        return run_dir / f"upstream-{safe}.key"

    def _route(self, run_dir: Path, upstream: dict[str, Any]) -> dict[str, Any]:
        route = {"path": upstream["name"], "url": upstream["url"], "weight": upstream["weight"]}
        if upstream.get("sign"):
            route["sign"] = upstream["sign"]
        if upstream.get("api_key"):
            route["api_key_file"] = str(self._key_file(run_dir, upstream["name"]))
        return route

    def _config(self, inputs: dict[str, Any]) -> dict[str, Any]:
        run_dir = self._run_dir(inputs)
        return {"endpoint": inputs["endpoint"], "mode": "split",
                "routes": [self._route(run_dir, upstream) for upstream in inputs["upstreams"]],
                "key_sha256": key_sha256(inputs.get("api_key"))}

    def _write_files(self, run_dir: Path, inputs: dict[str, Any]) -> None:
        from mlplat_plugins.local.runtime.processes import write_text_atomic

        for upstream in inputs["upstreams"]:
            if upstream.get("api_key"):  # str(): a Secret's plain value
                write_text_atomic(self._key_file(run_dir, upstream["name"]), str(upstream["api_key"]) + "\n",
                                  mode=0o600)

    def _seen(self, live: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
        """The upstreams the live routes are: each as the inputs give it where the route is what it makes (so a
        URL's trailing slash or a sign's left-out profile is no drift), else as the route says."""
        from mlplat_plugins.local.runtime.router import ConfigError, parse_route

        run_dir = self._run_dir(inputs)
        given = {u.get("name"): u for u in inputs.get("upstreams") or [] if isinstance(u, dict)}
        upstreams = []
        for route in live.get("routes") or []:
            known = given.get(route.get("path"))
            key = _seen_key(route.get("api_key_file"), known.get("api_key") if known else None)
            if known is not None and key is known.get("api_key"):
                try:
                    if parse_route(self._route(run_dir, known), 0) == route:
                        upstreams.append(known)
                        continue
                except (ConfigError, KeyError):
                    pass
            upstreams.append({"name": route.get("path"), "weight": route.get("weight"), "url": route.get("url"),
                              "sign": route.get("sign"), "api_key": key})
        return {**inputs, "upstreams": upstreams}

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        outputs = super().update(id, prior, desired, ctx)
        run_dir = Path(id)
        keep = {self._key_file(run_dir, u["name"]) for u in desired["upstreams"] if u.get("api_key")}
        for stale in set(run_dir.glob(KEY_FILES)) - keep:  # the router no longer reads them
            stale.unlink(missing_ok=True)
        return outputs

    def stats(self, id: str, inputs: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
        """Per upstream name: {"requests", "errors", "latency_ms_buckets"} since the front door started (see
        runtime/router.py); None when it is not running."""
        found = self._found(Path(id))
        if found is None:
            return None
        payload = get_json(found.outputs["url"] + "/-/stats", inputs.get("api_key"))
        routes = payload.get("routes") if isinstance(payload, dict) else None
        return routes if isinstance(routes, dict) else None


def _seen_key(path: str | None, wanted: Any) -> Any:
    """The key a route's key file holds: `wanted` itself when it is that key, else a Secret of it (None: no file,
    or one the router would refuse)."""
    from mlplat_plugins.local.runtime.router import read_api_key

    if not path:
        return None
    try:
        key = read_api_key(path)
    except ValueError:
        return None
    return wanted if wanted is not None and str(wanted) == key else Secret(key)
