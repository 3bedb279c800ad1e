"""Organisations and their API keys."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import API_KEY_PREFIX, hash_api_key
from backend.db.models import ApiKey, Organization
from backend.errors import NotFound
from backend.orgs.schemas import ApiKeyCreated


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


async def issue_api_key(org_id: uuid.UUID, *, session: AsyncSession) -> tuple[ApiKey, str]:
    """A new key for the organisation, in the caller's transaction (only its hash is stored)."""
    key = new_api_key()
    row = ApiKey(org_id=org_id, prefix=key[:12], key_hash=hash_api_key(key))
    session.add(row)
    await session.flush()
    return row, key


async def add_api_key(org_id: uuid.UUID, *, session: AsyncSession) -> ApiKeyCreated:
    """Another key for an existing organisation (key rotation); the key is in this answer only."""
    if await session.scalar(select(Organization.id).where(Organization.id == org_id)) is None:
        raise NotFound("no such organisation")
    row, key = await issue_api_key(org_id, session=session)
    await session.commit()
    return ApiKeyCreated(id=row.id, api_key=key, created_at=row.created_at)


async def create_org(
    name: str, settings: dict[str, Any] | None = None, *, session: AsyncSession
) -> tuple[Organization, ApiKey, str]:
    org = Organization(name=name.strip(), settings=settings or {})
    session.add(org)
    await session.flush()
    key_row, key = await issue_api_key(org.id, session=session)
    await session.commit()
    return org, key_row, key


async def revoke_api_key(org_id: uuid.UUID, key_id: uuid.UUID, *, session: AsyncSession) -> None:
    result = await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.org_id == org_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    await session.commit()
    if result.rowcount != 1:
        raise NotFound("no such active key for this organisation")
