"""The UI's HTTP server: routing, the guards, pages, the JSON API and the progress stream.

Guards, in order, on every request: the `Host` header must name this server (127.0.0.1:PORT or localhost:PORT:
a page of another site cannot reach it through DNS rebinding); the access token must come with it (`?token=` in
the URL, then the `mlplat_ui` cookie a page load with it sets, or `Authorization: Bearer`) else 401; a POST must
carry the CSRF token (`X-CSRF-Token`, which the pages hold in a meta tag) and, when the browser sends one, an
`Origin` of this server, else 403. Tokens are compared in constant time.

Routes (every page has its JSON twin under /api):

    GET  /                                   -> the first stack's Platform page
    GET  /<page>?stack=KEY                   pages: platform, plan, serving, resources, history
    GET  /resource?stack=KEY&address=A       one resource: inputs, outputs (secrets masked), its journal
    GET  /api/stacks                         the stacks shown, with their keys
    GET  /api/<page>?stack=KEY  /api/resource?stack=KEY&address=A
    POST /api/preview?stack=KEY              a fresh preview (refreshing), kept for apply; the Plan page's JSON
    POST /api/apply?stack=KEY                body {"preview": ID, "confirm": "yes"}: applies that preview under the
                                             stack's lock; 202 {"run": ...}
    GET  /api/runs/RUN                       a run's status
    GET  /api/runs/RUN/events                its events as server-sent events (replayed from the first), then
                                             `event: end` with the run's status
    GET  /static/ui.css  /static/ui.js
"""

from __future__ import annotations

import hmac
import importlib
import json
import sys
import time
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

from provisioner.errors import LockHeld, MlplatError, SpecError
from provisioner.ui.safe import dumps

if TYPE_CHECKING:
    from provisioner.ui.app import UiApp

PAGES = ("platform", "plan", "serving", "resources", "history")
COOKIE = "mlplat_ui"
STATIC = Path(__file__).parent / "static"
_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".png": "image/png", ".svg": "image/svg+xml"}


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class UiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, app: UiApp, port: int = 0) -> None:
        self.app = app
        super().__init__(("127.0.0.1", port), Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.app.token}"


def page_module(name: str) -> Any:
    return importlib.import_module(f"provisioner.ui.{name}")


class Handler(BaseHTTPRequestHandler):
    server: UiServer
    server_version = "mlplat-ui"
    sys_version = ""

    # -- plumbing ---------------------------------------------------------------------------------------------
    @property
    def app(self) -> UiApp:
        return self.server.app

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the terminal shows the URL only
        return

    def _split(self) -> tuple[str, dict[str, str]]:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        return parts.path, query

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        if content_type.startswith("text/html"):
            self.send_header("Content-Security-Policy", "default-src 'self'; style-src 'self'; img-src 'self' data:; "
                                                        "script-src 'self'; frame-ancestors 'none'")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, dumps(data), "application/json")

    def _html(self, status: int, text: str) -> None:
        self._send(status, text.encode(), "text/html; charset=utf-8")

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > 1 << 20:
            raise Refused(413, "request body too large")
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            raise Refused(400, "the request body is not JSON") from None
        if not isinstance(data, dict):
            raise Refused(400, "the request body must be a JSON object")
        return data

    # -- guards -----------------------------------------------------------------------------------------------
    def _check_host(self) -> None:
        host = (self.headers.get("Host") or "").lower()
        if host not in (f"127.0.0.1:{self.server.port}", f"localhost:{self.server.port}"):
            raise Refused(403, f"this server answers only http://127.0.0.1:{self.server.port} (Host {host!r})")

    def _given_token(self, query: dict[str, str]) -> str:
        if "token" in query:
            return query["token"]
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Bearer "):
            return auth[7:].strip()
        cookie = SimpleCookie()
        try:
            cookie.load(self.headers.get("Cookie") or "")
        except Exception:
            return ""
        morsel = cookie.get(COOKIE)
        return morsel.value if morsel else ""

    def _check_token(self, query: dict[str, str]) -> None:
        given = self._given_token(query)
        if not given:
            raise Refused(401, "no access token: open the URL `mlplat ui` printed (it ends with ?token=…)")
        if not hmac.compare_digest(given.encode(), self.app.token.encode()):
            raise Refused(401, "wrong access token: open the URL this `mlplat ui` printed (each start makes a new "
                               "token)")

    def _check_csrf(self) -> None:
        origin = self.headers.get("Origin")
        if origin is not None and origin.lower() not in (f"http://127.0.0.1:{self.server.port}",
                                                         f"http://localhost:{self.server.port}"):
            raise Refused(403, f"cross-site request refused (Origin {origin!r})")
        given = self.headers.get("X-CSRF-Token") or ""
        if not given or not hmac.compare_digest(given.encode(), self.app.csrf.encode()):
            raise Refused(403, "missing or wrong CSRF token (X-CSRF-Token): reload the page and try again")

    def _refuse(self, refused: Refused, api: bool) -> None:
        if api:
            self._json(refused.status, {"error": str(refused)})
        else:
            from provisioner.ui.html import refusal_page

            self._html(refused.status, refusal_page(refused.status, str(refused)))

    # -- requests ---------------------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        self._handle(post=False)

    def do_POST(self) -> None:
        self._handle(post=True)

    def _handle(self, *, post: bool) -> None:
        path, query = self._split()
        api = path.startswith("/api/")
        try:
            self._check_host()
            self._check_token(query)
            if post:
                self._check_csrf()
            if "token" in query and not api and not post:  # keep it in a cookie, out of the address bar
                rest = {k: v for k, v in query.items() if k != "token"}
                self._send(303, b"", "text/plain", {
                    "Location": path + (f"?{urlencode(rest)}" if rest else ""),
                    "Set-Cookie": f"{COOKIE}={self.app.token}; Path=/; HttpOnly; SameSite=Strict"})
                return
            if post:
                self._post(path, query)
            elif api:
                self._get_api(path, query)
            else:
                self._get_page(path, query)
        except Refused as refused:
            self._refuse(refused, api)
        except LockHeld as err:
            self._error(409, err, api, query)
        except SpecError as err:
            self._error(400, err, api, query)
        except MlplatError as err:
            self._error(409 if post else 400, err, api, query)
        except (BrokenPipeError, ConnectionResetError):
            return
        except Exception as err:  # a bug: the message, never a traceback, goes to the browser
            print(f"mlplat ui: {self.command} {path}: {type(err).__name__}: {err}", file=sys.stderr)
            self._error(500, err, api, query)

    def _error(self, status: int, err: BaseException, api: bool, query: dict[str, str]) -> None:
        from provisioner.secrets import redact

        text = redact(str(err) if isinstance(err, MlplatError) else f"{type(err).__name__}: {err}")
        if api:
            self._json(status, {"error": text})
            return
        from provisioner.ui.html import error_page

        self._html(status, error_page(self.app, query.get("stack"), text))

    def _stack_key(self, query: dict[str, str]) -> str:
        key = query.get("stack") or self.app.keys[0]
        self.app.path(key)  # an unknown key is a clear error
        return key

    def _get_page(self, path: str, query: dict[str, str]) -> None:
        if path == "/":
            self._send(303, b"", "text/plain", {"Location": f"/platform?{urlencode({'stack': self.app.keys[0]})}"})
            return
        if path.startswith("/static/"):
            self._static(path[len("/static/"):])
            return
        name = path.strip("/")
        from provisioner.ui import html

        key = self._stack_key(query)
        if name == "resource":
            module = page_module("platform")
            data = module.resource_data(self.app, key, query)
            self._html(200, html.layout(self.app, key, "platform", data["address"],
                                        module.render_resource(self.app, key, data)))
            return
        if name not in PAGES:
            raise Refused(404, f"no page {path!r} (pages: {', '.join(PAGES)})")
        module = page_module(name)
        began = time.perf_counter()
        data = module.data(self.app, key, query)
        body = module.render(self.app, key, data)
        self._html(200, html.layout(self.app, key, name, name.capitalize(), body,
                                    served_ms=(time.perf_counter() - began) * 1000))

    def _static(self, name: str) -> None:
        file = (STATIC / name).resolve()
        if file.parent != STATIC.resolve() or not file.is_file():
            raise Refused(404, f"no static file {name!r}")
        self._send(200, file.read_bytes(), _TYPES.get(file.suffix, "application/octet-stream"),
                   {"Cache-Control": "private, max-age=300"})

    def _get_api(self, path: str, query: dict[str, str]) -> None:
        name = path[len("/api/"):].strip("/")
        if name == "stacks":
            self._json(200, {"stacks": [{"key": k, "file": str(p)} for k, p in self.app.paths.items()]})
            return
        if name.startswith("runs/"):
            run_id, _, rest = name[len("runs/"):].partition("/")
            run = self.app.runs.get(run_id)
            if run is None:
                raise Refused(404, f"no run {run_id!r}")
            if rest == "events":
                self._stream(run)
            elif not rest:
                self._json(200, run.to_json())
            else:
                raise Refused(404, f"no such endpoint: {path}")
            return
        key = self._stack_key(query)
        if name == "resource":
            self._json(200, page_module("platform").resource_data(self.app, key, query))
            return
        if name not in PAGES:
            raise Refused(404, f"no such endpoint: {path} (GET /api/ stacks, {', '.join(PAGES)}, resource, runs/ID)")
        self._json(200, page_module(name).data(self.app, key, query))

    def _post(self, path: str, query: dict[str, str]) -> None:
        body = self._body()
        key = self._stack_key({**query, **({"stack": body["stack"]} if isinstance(body.get("stack"), str) else {})})
        plan = page_module("plan")
        if path == "/api/preview":
            self._json(200, plan.run_preview(self.app, key))
        elif path == "/api/apply":
            if body.get("confirm") != "yes":
                raise Refused(400, 'apply needs {"confirm": "yes"}: the page asks before it applies')
            preview_id = body.get("preview")
            if not isinstance(preview_id, str):
                raise Refused(400, 'apply needs {"preview": ID}: the id of the preview it applies')
            run = plan.start_apply(self.app, key, preview_id)
            self._json(202, {"run": run.to_json()})
        else:
            raise Refused(404, f"no such endpoint: POST {path} (POST /api/preview, /api/apply)")

    def _stream(self, run: Any) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()
        if self.command == "HEAD":
            return
        try:
            for index, event in run.follow():
                if event is None:
                    self.wfile.write(b": keep-alive\n\n")
                else:
                    self.wfile.write(f"id: {index}\nevent: step\ndata: ".encode() + dumps(event) + b"\n\n")
                self.wfile.flush()
            self.wfile.write(b"event: end\ndata: " + dumps(run.to_json()) + b"\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return


def make_server(app: UiApp, port: int = 0) -> UiServer:
    return UiServer(app, port)


def warm_up(app: UiApp) -> None:
    """While the browser opens: import the engine and the pages, and read the first stack file with its targets,
    so the first page costs what later ones do (the URL is printed before any of it)."""
    try:
        for name in PAGES:
            page_module(name)
        with app.stack(app.keys[0]) as stack:
            stack.targets  # noqa: B018 (instantiates the targets: their plugin modules load)
    except Exception:  # the page shows any problem, located
        return


def serve(app: UiApp, port: int = 0, *, open_browser: bool = False, announce: Any = print) -> None:
    """Serve until Ctrl-C; `announce(url)` is told the URL (with the token) once the socket listens."""
    server = make_server(app, port)
    announce(server.url)
    import threading

    threading.Thread(target=warm_up, args=(app,), name="mlplat-ui-warm-up", daemon=True).start()
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.close()
