"""A threading HTTP server on 127.0.0.1 that hands every request to one function: the transport of the fake
clouds in tests/ (gcp_fake, azure_fake, kube_fake and its data plane)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")


class LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a test's load stopped, a process killed) is not a server error: say nothing."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def serve(dispatch: Callable[[BaseHTTPRequestHandler], None], name: str,
          methods: tuple[str, ...] = METHODS) -> LoopbackServer:
    """A started server on a free port of 127.0.0.1 (HTTP/1.1, no request log) calling `dispatch(handler)` for
    every request of `methods`; its thread is called `name`."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

    for method in methods:
        setattr(Handler, f"do_{method}", lambda handler: dispatch(handler))
    server = LoopbackServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name=name).start()
    return server
