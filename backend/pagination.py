"""Keyset pagination: `?limit=` 1..200 (default 50) and an opaque `?cursor=`."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, TypeVar

import msgspec
from litestar.params import Parameter

from backend.errors import BadRequest

T = TypeVar("T")

Limit = Annotated[int, Parameter(ge=1, le=200, description="Page size, 1..200 (400 outside that range).")]
Cursor = Annotated[str | None, Parameter(description="Opaque cursor from the previous page's `next_cursor`.")]


def page_of(
    rows: Sequence[T], limit: int, key: Callable[[T], tuple[datetime, uuid.UUID]]
) -> tuple[list[T], str | None]:
    """A page from `limit + 1` rows fetched in keyset order: the first `limit`, and the cursor after the last
    of them when there is more (`key` gives a row's (time, id) position)."""
    page = list(rows[:limit])
    return page, encode_cursor(*key(page[-1])) if len(rows) > limit else None


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = msgspec.json.encode([created_at.isoformat(), str(row_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, row_id = msgspec.json.decode(raw, type=tuple[datetime, uuid.UUID])
    except (ValueError, msgspec.DecodeError, msgspec.ValidationError):
        raise BadRequest("cursor", "not a cursor this API issued", source="query") from None
    return created_at, row_id
