"""A small threaded HTTP server on 127.0.0.1 with a free port, for the stand-ins.

A handler can also break the connection the ways networks and proxies do (see `Drop`), so that
tests reach the client library's own errors for them rather than imitations.
"""

from __future__ import annotations

import enum
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
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


class Drop(enum.Enum):
    """How a response is broken off; every way ends with the server closing the connection."""

    BEFORE_RESPONSE = "before-response"  # the request is read, then the connection closes without a byte
    SHORT_LENGTH = "short-length"  # Content-Length counts the whole body, only its first half is sent
    SHORT_CHUNKED = "short-chunked"  # a chunked body that stops after its first half, with no last chunk
    SHORT_UNDELIMITED = "short-undelimited"  # no length: the body ends at the close, after its first half


@dataclass(frozen=True)
class Dropped:
    """A body that a handler returns in place of bytes, to have it broken off as `how` says."""

    body: bytes
    how: Drop


Handler = Callable[[Request], tuple[int, dict[str, str], bytes | Dropped]]


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
                if isinstance(body, Dropped):
                    self._send_dropped(status, headers, body)
                    return
                self._send_head(status, {**headers, "Content-Length": str(len(body))})
                self.wfile.write(body)

            def _send_head(self, status: int, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.end_headers()

            def _send_dropped(self, status: int, headers: dict[str, str], dropped: Dropped) -> None:
                self.close_connection = True  # the server closes the socket once this returns
                if dropped.how is Drop.BEFORE_RESPONSE:
                    return
                half = dropped.body[: len(dropped.body) // 2]
                framing = {
                    Drop.SHORT_LENGTH: {"Content-Length": str(len(dropped.body))},
                    Drop.SHORT_CHUNKED: {"Transfer-Encoding": "chunked"},
                    Drop.SHORT_UNDELIMITED: {"Connection": "close"},
                }[dropped.how]
                self._send_head(status, {**headers, **framing})
                if dropped.how is Drop.SHORT_CHUNKED:
                    half = f"{len(half):x}\r\n".encode() + half + b"\r\n"
                self.wfile.write(half)

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
