"""HTTP details Litestar 2 leaves to the app: a caller's malformed bytes are a 4xx naming what is wrong, never a
500, and an OPTIONS request is answered with every method of the path.

Litestar answers msgspec's `DecodeError` with a 400, but msgspec reports two other malformations with other
exceptions, which Litestar then answered with a 500: a string that is not UTF-8 (`UnicodeDecodeError`) and
nesting deeper than the interpreter's recursion limit (`RecursionError`, at about 1,000 levels). Litestar also
reads any body as JSON whatever its `Content-Type`. And a string holding U+0000 (`"\\u0000"`, valid JSON) cannot
be stored by PostgreSQL, in text or jsonb: the database refused it with a 500. `JsonRequest`, the app's request
class, answers each of these: its `json()` is what Litestar calls to read a route's `data`.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request
from litestar.datastructures import MutableScopeHeaders
from litestar.exceptions import ClientException
from litestar.routes import HTTPRoute
from litestar.status_codes import HTTP_415_UNSUPPORTED_MEDIA_TYPE
from litestar.types import BeforeMessageSendHookHandler, Message, Scope


def is_json(media_type: str) -> bool:
    """`application/json` or a `+json` type (RFC 6839). A body sent without any `Content-Type` is read as JSON."""
    media_type = media_type.strip().lower()
    return media_type in ("", "application/json") or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


class JsonRequest(Request):
    async def json(self) -> Any:
        body = await self.body()
        if body:
            media_type, _ = self.content_type
            if not is_json(media_type):
                raise ClientException(
                    f"Content-Type: expected application/json, got {media_type!r}",
                    status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                )
        try:
            value = await super().json()
        except UnicodeDecodeError as exc:
            raise ClientException(f"body: a string is not UTF-8 (byte {exc.object[exc.start]:#04x})") from None
        except RecursionError:
            raise ClientException("body: JSON nested too deeply") from None
        if b"\\u0000" in body and (where := _nul_at(value)) is not None:
            raise ClientException(f"{where}: must not contain the character U+0000 (NUL)")
        return value


def _nul_at(value: Any) -> str | None:
    """Where in a decoded body a string (or an object's key) holds U+0000, as `pings[0].note`; None if nowhere.
    Iterative: the body may be nested nearly as deep as the recursion limit."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return where or "body"
        elif isinstance(item, dict):
            for key, child in item.items():
                path = f"{where}.{key}" if where else key
                if "\x00" in key:
                    return path.replace("\x00", "\\u0000")
                stack.append((path, child))
        elif isinstance(item, list):
            stack.extend((f"{where}[{i}]", child) for i, child in enumerate(item))
    return None


def allow_every_method(app: Litestar) -> BeforeMessageSendHookHandler:
    """A `before_send` hook: Litestar answers OPTIONS itself, but for a path served by several handlers its `Allow`
    header lists only the methods of the first one registered (litestar#4169, fixed in Litestar 3). This sends
    them all, from the app's routes."""
    allowed = {r.path_format: ", ".join(sorted(r.methods)) for r in app.routes if isinstance(r, HTTPRoute)}

    async def hook(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start" or scope.get("method") != "OPTIONS":
            return
        methods = allowed.get(scope.get("path_template", ""))
        headers = MutableScopeHeaders.from_message(message)
        if methods and "allow" in headers:
            headers["Allow"] = methods

    return hook
