"""A local stand-in for the FCM HTTP v1 API (`POST /v1/projects/<pid>/messages:send`).

Firebase has no emulator for messaging, so tests run the real firebase-admin SDK against this server:

    with FakeFcmServer("truckroll-test") as fcm:
        fcm.fail("dead-token", unregistered())
        sender = FcmSender("truckroll-test", endpoint=fcm.url)
        ...
        fcm.wait_for_requests(3)

Every request is recorded; success answers `{"name": "projects/<pid>/messages/<n>"}`. The error
replies reproduce the bodies FCM sends (google.rpc.Status with an FcmError detail), which is what the
SDK parses to pick its exception types.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
# A held message is answered after this at the latest, so that a test that forgets to let go ends.
_HOLD_AT_MOST_S = 120.0


@dataclass(frozen=True)
class FcmReply:
    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    """Header names lower-cased."""
    body: Any
    """Parsed JSON, or the raw text when it was not JSON."""

    @property
    def message(self) -> dict[str, Any]:
        """The `message` object of a messages:send body."""
        return self.body["message"]


def fcm_error(
    http_status: int,
    status: str,
    message: str,
    error_code: str | None = None,
    *,
    extra_details: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> FcmReply:
    details = [{"@type": _FCM_ERROR_TYPE, "errorCode": error_code}] if error_code else []
    details += extra_details or []
    error: dict[str, Any] = {"code": http_status, "message": message, "status": status}
    if details:
        error["details"] = details
    return FcmReply(http_status, {"error": error}, dict(headers or {}))


def unregistered() -> FcmReply:
    return fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")


def sender_id_mismatch() -> FcmReply:
    return fcm_error(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH")


def quota_exceeded(retry_after_s: int | None = 30) -> FcmReply:
    """The per-device (or per-topic) message rate was exceeded."""
    return fcm_error(
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for message rate to this device.",
        "QUOTA_EXCEEDED",
        headers={"Retry-After": str(retry_after_s)} if retry_after_s is not None else None,
    )


def project_rate_limited(retry_after_s: int | None = 60) -> FcmReply:
    """The project-wide send limit: a 429 without an FcmError detail."""
    return fcm_error(
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for quota metric 'Send requests' and limit 'Send requests per minute' of "
        "service 'fcm.googleapis.com' for consumer 'project_number:1234567890'.",
        extra_details=[
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "RATE_LIMIT_EXCEEDED",
                "domain": "googleapis.com",
                "metadata": {"service": "fcm.googleapis.com", "quota_limit": "SendsPerMinutePerProject"},
            }
        ],
        headers={"Retry-After": str(retry_after_s)} if retry_after_s is not None else None,
    )


def unavailable() -> FcmReply:
    return fcm_error(503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE")


def internal() -> FcmReply:
    return fcm_error(500, "INTERNAL", "Internal error encountered.", "INTERNAL")


def invalid_argument(
    description: str = "The registration token is not a valid FCM registration token",
) -> FcmReply:
    return fcm_error(
        400,
        "INVALID_ARGUMENT",
        "Request contains an invalid argument.",
        "INVALID_ARGUMENT",
        extra_details=[
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": "message.token", "description": description}],
            }
        ],
    )


class FakeFcmServer:
    def __init__(self, project_id: str = "truckroll-test") -> None:
        self.project_id = project_id
        self._requests: list[RecordedRequest] = []
        self._replies: dict[str, FcmReply] = {}
        self._delays: dict[str, float] = {}
        self._hang_ups: set[str] = set()
        self._held: dict[str, threading.Event] = {}
        self._delivered = 0
        self._changed = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base endpoint, to pass as `FcmSender(endpoint=...)`."""
        if self._server is None:
            raise RuntimeError("FakeFcmServer is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def send_path(self) -> str:
        return f"/v1/projects/{self.project_id}/messages:send"

    def fail(self, token: str, reply: FcmReply) -> None:
        """Answer every message for `token` with `reply` from now on."""
        with self._changed:
            self._replies[token] = reply

    def recover(self, token: str) -> None:
        """Answer messages for `token` with success again."""
        with self._changed:
            self._replies.pop(token, None)

    def stall(self, token: str, seconds: float) -> None:
        """Hold the answer to messages for `token` for `seconds`."""
        with self._changed:
            self._delays[token] = seconds

    def hang_up(self, token: str) -> None:
        """Close the connection without answering messages for `token`, as a failing proxy would."""
        with self._changed:
            self._hang_ups.add(token)

    def hold(self, token: str) -> None:
        """Keep messages for `token` waiting, unanswered, until `let_go(token)`: an FCM that hangs."""
        with self._changed:
            self._held.setdefault(token, threading.Event())

    def let_go(self, token: str) -> None:
        """Answer the messages for `token` held so far, and those to come at once."""
        with self._changed:
            held = self._held.pop(token, None)
        if held is not None:
            held.set()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._changed:
            return list(self._requests)

    def requests_for(self, token: str) -> list[RecordedRequest]:
        return [r for r in self.requests if _token_of(r.body) == token]

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least `count` requests arrived; TimeoutError after `timeout` seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._requests) >= count, timeout):
                raise TimeoutError(f"{len(self._requests)} of {count} FCM requests arrived in {timeout} s")
            return list(self._requests)

    def start(self) -> FakeFcmServer:
        server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fake-fcm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        for token in list(self._held):
            self.let_go(token)
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeFcmServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _answer(self, request: RecordedRequest) -> FcmReply | None:
        """The reply to send, or None to hang up."""
        token = _token_of(request.body)
        with self._changed:
            self._requests.append(request)
            self._changed.notify_all()
            if token in self._hang_ups:
                return None
            delay = self._delays.get(token, 0.0) if token else 0.0
            held = self._held.get(token) if token else None
            reply = self._replies.get(token) if token else None
            if request.path != self.send_path:
                reply = fcm_error(404, "NOT_FOUND", "Requested entity was not found.")
            elif reply is None:
                self._delivered += 1
                reply = FcmReply(200, {"name": f"projects/{self.project_id}/messages/{self._delivered}"})
        if held is not None:
            held.wait(_HOLD_AT_MOST_S)
        if delay:
            time.sleep(delay)
        return reply


def _token_of(body: Any) -> str | None:
    message = body.get("message") if isinstance(body, dict) else None
    return message.get("token") if isinstance(message, dict) else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The SDK opens up to 100 connections at once; the default backlog of 5 would drop SYNs and
    # stall the client for a second per retransmission.
    request_queue_size = 256


def _handler_for(fake: FakeFcmServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the SDK's client reuses its connections
        timeout = 30  # an idle kept-alive connection frees its thread after this

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
            request = RecordedRequest(
                method="POST",
                path=self.path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
            )
            reply = fake._answer(request)
            if reply is None:
                self.close_connection = True
                return
            payload = json.dumps(reply.body).encode()
            # The client may be gone meanwhile (killed while its message was held): nobody to answer.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
