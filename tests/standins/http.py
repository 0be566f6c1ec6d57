"""A small threaded HTTP server on 127.0.0.1 with a free port, for the stand-ins."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class Request:
    """One request as the stand-in saw it."""

    def __init__(self, method: str, path: str, headers: Message, body: bytes) -> None:
        parts = urlsplit(path)
        self.method = method
        self.path = parts.path
        self.query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.headers = headers  # case-insensitive, as HTTP header names are
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body or b"null")


Handler = Callable[[Request], tuple[int, dict[str, str], bytes]]


class StandinServer:
    """Serves `handler` on a free local port until `close()`; the handler returns (status, headers, body)."""

    def __init__(self, handler: Handler) -> None:
        self.requests: list[Request] = []
        outer = self

        class _RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(self.command, self.path, self.headers, self.rfile.read(length))
                outer.requests.append(request)
                status, headers, body = handler(request)
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _RequestHandler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def json_response(status: int, payload: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {}, json.dumps(payload).encode()
