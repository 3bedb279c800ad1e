"""The one error model: the domain errors services raise, and how the app answers them.

Services raise `NotFound`, `Conflict` or `Invalid`; only the app's exception handlers turn them into
404 / 409 / 422 with API.md's body `{"status_code", "detail", "extra"?}` (`error_body`, which the
idempotent runner also stores for replays). Litestar's own ValidationException (a body, query or header
that does not fit the route's types) is answered in the same shape by `validation_error`.
"""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import ValidationException


class DomainError(Exception):
    """An answer for the caller, not a failure of ours: `detail` in words, `extra` as structured data."""

    status_code = 400

    def __init__(self, detail: str, *, keep: bool = False, **extra: Any) -> None:
        """`keep`: what the refused action wrote is committed with the refusal (an alert its attempt raised);
        normally nothing of it is kept."""
        super().__init__(detail)
        self.detail = detail
        self.keep = keep
        self.extra: dict[str, Any] | list[dict[str, Any]] = extra


class NotFound(DomainError):
    """No such object for this caller (it may exist in another organisation: that is never revealed); 404."""

    status_code = 404


class Conflict(DomainError):
    """The object is not in a state that allows this; answered with 409 (`extra` goes with it)."""

    status_code = 409


class UnsupportedMediaType(DomainError):
    """A body whose type is not one the route takes, or not the type it claims to be; answered with 415."""

    status_code = 415


class Invalid(DomainError):
    """A value the caller sent is not acceptable; answered with 422 naming the field (`field: message`).

    `extra` lists the bad values as Litestar lists those of a bad shape, `[{"key", "source", "message"}]`
    (`source`: body, query, path or header); `errors` gives the whole list when there is more than one.
    """

    status_code = 422

    def __init__(self, field: str, message: str, *, source: str = "body", errors: list[dict] | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.extra = errors if errors is not None else [{"key": field, "source": source, "message": message}]


class BadRequest(Invalid):
    """`Invalid`, answered with 400: for the checks whose answer has always been 400 (API.md allows 400 or 422
    for invalid input) — a cursor this API did not issue, a time without an offset, a job window that ends
    before it starts or is over, repeated tiers, a wave the job does not have, a malformed Idempotency-Key."""

    status_code = 400


def error_body(exc: DomainError) -> dict[str, Any]:
    body: dict[str, Any] = {"status_code": exc.status_code, "detail": exc.detail}
    if exc.extra:
        body["extra"] = exc.extra
    return body


def domain_error(_: Request, exc: DomainError) -> Response:
    """The app's one handler for every domain error."""
    return Response(error_body(exc), status_code=exc.status_code, media_type=MediaType.JSON)


def validation_error(_: Request, exc: ValidationException, *, status_code: int | None = None) -> Response:
    """Litestar's shape, with `detail` naming the first bad field rather than only the route."""
    status = status_code or exc.status_code
    detail = exc.detail
    extra = exc.extra
    if isinstance(extra, list) and extra and isinstance(extra[0], dict) and extra[0].get("message"):
        detail = f"{extra[0].get('key') or 'body'}: {extra[0]['message']}"
    body = {"status_code": status, "detail": detail}
    if extra:
        body["extra"] = extra
    return Response(body, status_code=status, media_type=MediaType.JSON)
