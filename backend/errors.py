"""Errors shared across domains: the state conflict services raise, and the validation-error response."""

from __future__ import annotations

from litestar import MediaType, Request, Response
from litestar.exceptions import ValidationException


class Conflict(Exception):
    """The object is not in a state that allows this; answered with 409 (`extra` goes with it)."""

    def __init__(self, detail: str, **extra) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


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
