"""Credentials, requirement sets and compliance alerts, each one organisation's own."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import select, text, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend.compliance import engagement
from backend.compliance.schemas import (
    KINDS_DOC,
    AlertOut,
    CredentialOut,
    CredentialPut,
    Requirements,
    alert_out,
    is_credential_kind,
)
from backend.db.models import ComplianceAlert, Credential, OrgRequirements
from backend.errors import BadRequest, Invalid, NotFound
from backend.pagination import decode_cursor, page_of
from backend.schemas import Page
from backend.technicians.services import NOT_IN_POOL, in_pool

EXPIRING_WITHIN = timedelta(days=30)


def _check_kind(kind: str, key: str, source: str) -> None:
    if not is_credential_kind(kind):
        raise Invalid(key, f"unknown credential kind {kind!r}; known kinds: {KINDS_DOC}", source=source)


async def _require_member(org_id: uuid.UUID, technician_id: uuid.UUID, session: AsyncSession) -> None:
    if not await in_pool(org_id, technician_id, session=session):
        raise NotFound(NOT_IN_POOL)


def _credential_out(row: Credential) -> CredentialOut:
    return CredentialOut(
        kind=row.kind,
        status=row.status,  # type: ignore[arg-type]
        issued_at=row.issued_at,
        expires_at=row.expires_at,
        reference=row.reference,
    )


async def put_credential(
    org_id: uuid.UUID, technician_id: uuid.UUID, kind: str, data: CredentialPut, *, now: datetime, session: AsyncSession
) -> CredentialOut:
    """Record (or replace) what this organisation verified (`kind` as the path gives it)."""
    _check_kind(kind, "kind", "path")
    if data.issued_at is not None and data.expires_at is not None and data.expires_at < data.issued_at:
        raise Invalid("expires_at", "must not be before issued_at")
    await _require_member(org_id, technician_id, session)
    values = {
        "status": data.status,
        "issued_at": data.issued_at,
        "expires_at": data.expires_at,
        "reference": data.reference,
        "updated_at": now,
    }
    row = (
        await session.scalars(
            insert(Credential)
            .values(org_id=org_id, technician_id=technician_id, kind=kind, **values)
            .on_conflict_do_update(index_elements=["org_id", "technician_id", "kind"], set_=values)
            .returning(Credential)
            .execution_options(populate_existing=True)
        )
    ).one()
    out = _credential_out(row)
    await session.commit()
    return out


async def list_credentials(
    org_id: uuid.UUID, technician_id: uuid.UUID, *, session: AsyncSession
) -> list[CredentialOut]:
    await _require_member(org_id, technician_id, session)
    rows = await session.scalars(
        select(Credential)
        .where(Credential.org_id == org_id, Credential.technician_id == technician_id)
        .order_by(Credential.kind)
    )
    return [_credential_out(r) for r in rows]


def _kinds(kinds: Iterable[str], key: str) -> list[str]:
    kinds = list(kinds)
    for i, kind in enumerate(kinds):
        _check_kind(kind, f"{key}[{i}]", "body")
    return sorted(set(kinds))


def normalise_requirements(data: Requirements) -> Requirements:
    """Kinds checked, de-duplicated and sorted; skills trimmed and lower-cased like everywhere else (two
    spellings of one skill are merged). Invalid for an unknown kind."""
    by_skill: dict[str, set[str]] = {}
    for skill, kinds in data.by_skill.items():
        by_skill.setdefault(skill.strip().lower(), set()).update(_kinds(kinds, f"by_skill.{skill}"))
    return Requirements(
        credentials=_kinds(data.credentials, "credentials"),
        by_skill={skill: sorted(kinds) for skill, kinds in sorted(by_skill.items())},
    )


async def get_requirements(org_id: uuid.UUID, *, session: AsyncSession) -> Requirements:
    row = await session.get(OrgRequirements, org_id)
    if row is None:
        return Requirements()
    return Requirements(credentials=list(row.credentials), by_skill=dict(row.by_skill))


async def put_requirements(org_id: uuid.UUID, data: Requirements, *, session: AsyncSession) -> Requirements:
    """Replace the organisation's requirement set (Invalid for an unknown kind, before storing anything)."""
    data = normalise_requirements(data)
    values = {"credentials": data.credentials, "by_skill": data.by_skill}
    await session.execute(
        insert(OrgRequirements)
        .values(org_id=org_id, **values)
        .on_conflict_do_update(index_elements=["org_id"], set_=values)
    )
    await session.commit()
    return data


# One row per valid credential of an active member that expires within the horizon, raised at most once per
# (alert kind, technician, credential kind, expiry): a renewed credential (a new expiry) is alerted again.
_RAISE_CREDENTIAL_ALERTS = text(
    """
INSERT INTO compliance_alerts (id, org_id, technician_id, kind, value, "limit", at, dedupe_key)
SELECT gen_random_uuid(), c.org_id, c.technician_id, a.kind, to_jsonb(c.kind),
       to_jsonb(to_char(c.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')), :now,
       a.kind || ':' || c.technician_id || ':' || c.kind || ':'
           || to_char(c.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')
FROM credentials c
JOIN pool_memberships m ON m.org_id = c.org_id AND m.technician_id = c.technician_id
CROSS JOIN LATERAL (
    SELECT CASE WHEN c.expires_at < :now THEN 'credential_expired' ELSE 'credential_expiring' END AS kind
) a
WHERE c.status = 'valid' AND c.expires_at IS NOT NULL AND c.expires_at <= :horizon AND m.active
ON CONFLICT (org_id, dedupe_key) DO NOTHING
RETURNING id, org_id, technician_id, kind, value, "limit", job_id, at
"""
)


async def raise_credential_alerts(now: datetime, *, session: AsyncSession) -> int:
    """`credential_expiring` for a valid credential that expires within 30 days of `now` (inclusive),
    `credential_expired` once its expiry has passed; each once. Returns how many alerts were raised."""
    raised = (await session.execute(_RAISE_CREDENTIAL_ALERTS, {"now": now, "horizon": now + EXPIRING_WITHIN})).all()
    await engagement.announce(session, raised)
    await session.commit()
    return len(raised)


async def list_alerts(
    org_id: uuid.UUID, *, since: datetime | None, limit: int, cursor: str | None, session: AsyncSession
) -> Page[AlertOut]:
    """Oldest first, from `since` (inclusive)."""
    if since is not None and since.tzinfo is None:
        raise BadRequest("since", "needs a time zone offset", source="query")
    query = select(ComplianceAlert).where(ComplianceAlert.org_id == org_id)
    if since is not None:
        query = query.where(ComplianceAlert.at >= since)
    if cursor:
        query = query.where(tuple_(ComplianceAlert.at, ComplianceAlert.id) > decode_cursor(cursor))
    rows, next_cursor = page_of(
        list(await session.scalars(query.order_by(ComplianceAlert.at, ComplianceAlert.id).limit(limit + 1))),
        limit,
        lambda r: (r.at, r.id),
    )
    return Page(items=[alert_out(r) for r in rows], next_cursor=next_cursor)


async def engagement_of(
    org_id: uuid.UUID, technician_id: uuid.UUID, *, now: datetime, session: AsyncSession
) -> engagement.Engagement:
    """How much a member of this organisation's pool works for it (`matching.engagement` defines the figures)."""
    await _require_member(org_id, technician_id, session)
    return await engagement.engagement(org_id, technician_id, now=now, session=session)
