"""A local webhook receiver: records every request and answers as a test tells it to.

with Receiver() as receiver:
    receiver.answer("/hooks", 503, {"Retry-After": "1"}, times=1)   # then the default, 204
    ...
    receiver.wait_for(2)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    """Header names lower-cased."""
    body: bytes
    at: float
    """time.monotonic() when it arrived."""


@dataclass
class Reply:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    body: bytes = b""


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._replies: dict[str, deque[Reply]] = {}
        self._defaults: dict[str, Reply] = {}
        self._lock = threading.Condition()
        self.in_flight: dict[str, int] = {}
        self.most_in_flight: dict[str, int] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                path = self.path
                with receiver._lock:
                    queued = receiver._replies.get(path)
                    reply = queued.popleft() if queued else receiver._defaults.get(path, Reply())
                    receiver.in_flight[path] = receiver.in_flight.get(path, 0) + 1
                    receiver.most_in_flight[path] = max(receiver.most_in_flight.get(path, 0), receiver.in_flight[path])
                try:
                    if reply.delay_s:
                        time.sleep(reply.delay_s)
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                finally:
                    with receiver._lock:
                        receiver.in_flight[path] -= 1
                        receiver.requests.append(
                            Received(path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                        )
                        receiver._lock.notify_all()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str = "/hooks") -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def answer(self, path: str, status: int, headers: dict[str, str] | None = None, *, times: int = 1, **kw) -> None:
        """The next `times` requests to `path` get this answer."""
        with self._lock:
            self._replies.setdefault(path, deque()).extend(Reply(status, headers or {}, **kw) for _ in range(times))

    def always(self, path: str, status: int, headers: dict[str, str] | None = None, **kw) -> None:
        with self._lock:
            self._defaults[path] = Reply(status, headers or {}, **kw)

    def to(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    async def wait_for(self, count: int, path: str = "/hooks", within: float = 20.0) -> list[Received]:
        """The requests to `path` once there are `count` of them (polled: the app's worker runs on this loop)."""
        deadline = time.monotonic() + within
        while len(got := self.to(path)) < count:
            if time.monotonic() > deadline:
                ids = [r.headers.get("webhook-id") for r in got]
                raise AssertionError(f"{path}: expected {count} requests within {within} s, got {ids}")
            await asyncio.sleep(0.05)
        return got

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
