from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec

OrgName = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"\S")]


class OrgCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: OrgName
    settings: dict[str, Any] = {}


class OrgCreated(msgspec.Struct):
    id: uuid.UUID
    name: str
    api_key: str = msgspec.field()
    """Shown once: only its hash is stored."""
    api_key_id: uuid.UUID | None = None


class ApiKeyCreated(msgspec.Struct):
    id: uuid.UUID
    api_key: str
    created_at: datetime
