"""The one error model: the domain errors services raise, and how the app answers them.

Services raise `NotFound`, `Conflict` or `Invalid`; only the app's exception handlers turn them into
404 / 409 / 422 with API.md's body `{"status_code", "detail", "extra"?}`. Nothing else builds that body.
"""

from __future__ import annotations

from litestar import MediaType, Request, Response
from litestar.exceptions import ValidationException


class DomainError(Exception):
    """An answer for the caller, not a failure of ours: `detail` in words, `extra` as structured data."""

    status_code = 400

    def __init__(self, detail: str, **extra) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(DomainError):
    """No such object for this caller (it may exist in another organisation: that is never revealed); 404."""

    status_code = 404


class Conflict(DomainError):
    """The object is not in a state that allows this; answered with 409 (`extra` goes with it)."""

    status_code = 409


class Invalid(DomainError):
    """A value the caller sent is not acceptable; answered with 422 naming the field (`field: message`)."""

    status_code = 422

    def __init__(self, field: str, message: str, **extra) -> None:
        super().__init__(f"{field}: {message}", **extra)
        self.field = field
        self.message = message


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
