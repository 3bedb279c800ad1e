"""Seeing what the API does (API.md, "Operating it"): a request id on every response, one log line per request,
a traceback with every 5xx, and the log format (`TRUCKROLL_LOG_FORMAT`: json, one object a line, or text).

`RequestLog` is the outermost layer of the app, around Litestar's own exception handling, CORS and routing, so it
sees every response: unknown routes and CORS preflights included. Litestar turns an exception into a response
before it gets there; `remember_failure` (an `after_exception` hook) keeps the exception for its log line.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from backend.auth import Operator, OrgCaller, TechnicianCaller
from backend.settings import LogFormat

log = logging.getLogger("truckroll.http")

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_FAILURE = "truckroll.failure"

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
"""The current request's id, for every log line written while it is served."""


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            return candidate if _VALID_ID.fullmatch(candidate) else None
    return None


def _caller(user: Any) -> tuple[str, str | None]:
    """The caller's kind and organisation, for the log (never the credential)."""
    if isinstance(user, OrgCaller):
        return "org", str(user.org_id)
    if isinstance(user, TechnicianCaller):
        return "technician", None
    if isinstance(user, Operator):
        return "operator", None
    return "anonymous", None


async def remember_failure(exc: Exception, scope: Scope) -> None:
    """Litestar's `after_exception` hook: the exception behind the response, for a 5xx's traceback."""
    scope[_FAILURE] = exc  # type: ignore[literal-required]


class RequestLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _incoming_id(scope) or uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        status: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Litestar answers every exception itself; one that still gets here came after the response had
            # started (nothing can be answered any more), or from Litestar's own error handling.
            _log_request(scope, status or 500, started, exc)
            if status is not None:
                raise
            await _internal_error(send_with_id)
        else:
            failure = scope.get(_FAILURE) if status is not None and status >= 500 else None
            _log_request(scope, status, started, failure)
        finally:
            request_id.reset(token)


def _log_request(scope: Scope, status: int | None, started: float, failure: BaseException | None) -> None:
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    route = scope.get("path_template") or "(no route)"
    caller, org_id = _caller(scope.get("user"))
    fields = {
        "request_id": request_id.get(),
        "method": scope["method"],
        "route": route,
        "status": status,
        "duration_ms": duration_ms,
        "caller": caller,
        "org_id": org_id,
    }
    log.log(
        logging.ERROR if status is None or status >= 500 else logging.INFO,
        "%s %s %s %.1f ms caller=%s org_id=%s",
        scope["method"],
        route,
        status,
        duration_ms,
        caller,
        org_id or "-",
        extra=fields,
        exc_info=failure,
    )


async def _internal_error(send: Send) -> None:
    body = msgspec.json.encode({"status_code": 500, "detail": "Internal Server Error"})
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _WithRequestId(logging.Filter):
    """Stamps every record with the id of the request being served (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        return True


# The attributes every LogRecord has; the others are a call's `extra` fields, written out as they are.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the record's extra fields and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update((k, v) for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES)
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["traceback"] = record.exc_text
        return msgspec.json.encode(entry, enc_hook=str).decode()


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message request_id=…`, then any traceback."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        return super().formatMessage(record) + (f" request_id={rid}" if rid else "")


def logging_handler(log_format: LogFormat) -> logging.Handler:
    """To standard error, in `log_format`, each record stamped with its request's id."""
    handler = logging.StreamHandler()
    handler.addFilter(_WithRequestId())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    return handler


def configure_logging(log_format: LogFormat, *, level: int = logging.INFO) -> None:
    """The process's logging: set once, where the process starts (not by `create_app`)."""
    logging.basicConfig(level=level, handlers=[logging_handler(log_format)], force=True)
