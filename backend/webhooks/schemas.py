from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from backend.webhooks.events import TYPES

TYPES_DOC = ", ".join(f"`{t}`" for t in TYPES)

Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
EventTypes = Annotated[
    list[str],
    msgspec.Meta(
        min_length=1, max_length=len(TYPES), description=f'Event types ({TYPES_DOC}), or `["*"]` for every type.'
    ),
]
Description = Annotated[str, msgspec.Meta(max_length=1000)]


class WebhookIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    url: Url
    events: EventTypes
    description: Description | None = None


class WebhookPatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Omitted fields are unchanged."""

    url: Url | None = None
    events: EventTypes | None = None
    description: Description | None = None
    enabled: bool | None = None


class WebhookOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    url: str
    events: list[str]
    description: str | None
    created_at: datetime
    enabled: bool
    disabled_at: datetime | None
    """When deliveries stopped: failing for 3 days without a success, or `PATCH {"enabled": false}`."""
    disabled_reason: str | None
    failing_since: datetime | None
    """The first failed attempt since the last success."""


class WebhookCreated(WebhookOut, kw_only=True):
    secret: str
    """`whsec_` + base64 of 32 random bytes: the Standard Webhooks signing key, shown only here."""


class Webhooks(msgspec.Struct):
    items: list[WebhookOut]
    next_cursor: str | None


class DeliveryOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime


class Deliveries(msgspec.Struct):
    items: list[DeliveryOut]
    next_cursor: str | None


class Redelivery(msgspec.Struct):
    id: uuid.UUID
    status: Literal["pending"]
