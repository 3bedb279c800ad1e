"""An organisation's webhook endpoints and their delivery log. Everything here is scoped to the caller's organisation:
another organisation's endpoint or delivery is not found. Functions flush; the caller commits."""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import datetime

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import WebhookDelivery, WebhookEndpoint, WebhookEvent, WebhookSlot
from backend.errors import Conflict, Invalid, NotFound
from backend.pagination import decode_cursor, page_of
from backend.settings import WebhookSettings
from backend.webhooks import addresses, delivery
from backend.webhooks.events import ALL, TYPES
from backend.webhooks.schemas import (
    Deliveries,
    DeliveryOut,
    Redelivery,
    WebhookCreated,
    WebhookIn,
    WebhookOut,
    WebhookPatch,
    Webhooks,
)

NO_SUCH_WEBHOOK = "no such webhook in this organisation"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


async def _checked_url(url: str, settings: WebhookSettings) -> str:
    """422 for a URL a webhook may not be sent to; in production its host is resolved and every address must be
    public (it is checked again at each delivery, on the address then connected to)."""
    try:
        if settings.allow_private:
            addresses.check_url(url, allow_private=True)
        else:
            await addresses.resolve(url, allow_private=False)
    except addresses.Refused as exc:
        raise Invalid("url", str(exc)) from None
    return url


def _checked_events(events: list[str]) -> list[str]:
    if ALL in events:
        if len(events) > 1:
            raise Invalid("events", '"*" stands alone: it takes every type')
        return [ALL]
    unknown = [e for e in events if e not in TYPES]
    if unknown:
        raise Invalid("events", f"unknown event types {', '.join(unknown)}; known: {', '.join(TYPES)}")
    return list(dict.fromkeys(events))


def _out(row: WebhookEndpoint) -> dict:
    return {
        "id": row.id,
        "url": row.url,
        "events": list(row.events),
        "description": row.description,
        "created_at": row.created_at,
        "enabled": row.disabled_at is None,
        "disabled_at": row.disabled_at,
        "disabled_reason": row.disabled_reason,
        "failing_since": row.failing_since,
    }


async def create(
    org_id: uuid.UUID, data: WebhookIn, *, settings: WebhookSettings, session: AsyncSession, now: datetime
) -> WebhookCreated:
    """A new endpoint, or, for a URL the organisation registered before, that endpoint updated, turned back on and
    given a new secret (its delivery log is kept)."""
    url = await _checked_url(data.url, settings)
    events = _checked_events(data.events)
    values = {
        "events": events,
        "description": data.description,
        "secret": new_secret(),
        "disabled_at": None,
        "disabled_reason": None,
        "failing_since": None,
    }
    row = await session.scalar(
        pg_insert(WebhookEndpoint)
        .values(id=uuid.uuid4(), org_id=org_id, url=url, created_at=now, **values)
        .on_conflict_do_update(index_elements=["org_id", "url"], set_=values)
        .returning(WebhookEndpoint)
        .execution_options(populate_existing=True)
    )
    await session.execute(
        pg_insert(WebhookSlot)
        .values([{"endpoint_id": row.id, "slot": slot} for slot in range(delivery.SLOTS_PER_ENDPOINT)])
        .on_conflict_do_nothing()
    )
    return WebhookCreated(**_out(row), secret=row.secret)


async def _endpoint(org_id: uuid.UUID, webhook_id: uuid.UUID, session: AsyncSession) -> WebhookEndpoint:
    row = await session.scalar(
        select(WebhookEndpoint).where(WebhookEndpoint.id == webhook_id, WebhookEndpoint.org_id == org_id)
    )
    if row is None:
        raise NotFound(NO_SUCH_WEBHOOK)
    return row


async def list_webhooks(org_id: uuid.UUID, *, limit: int, cursor: str | None, session: AsyncSession) -> Webhooks:
    """Oldest first."""
    query = select(WebhookEndpoint).where(WebhookEndpoint.org_id == org_id)
    if cursor:
        query = query.where(tuple_(WebhookEndpoint.created_at, WebhookEndpoint.id) > decode_cursor(cursor))
    rows, next_cursor = page_of(
        list(await session.scalars(query.order_by(WebhookEndpoint.created_at, WebhookEndpoint.id).limit(limit + 1))),
        limit,
        lambda r: (r.created_at, r.id),
    )
    return Webhooks(items=[WebhookOut(**_out(r)) for r in rows], next_cursor=next_cursor)


async def get(org_id: uuid.UUID, webhook_id: uuid.UUID, *, session: AsyncSession) -> WebhookOut:
    return WebhookOut(**_out(await _endpoint(org_id, webhook_id, session)))


async def update_webhook(
    org_id: uuid.UUID,
    webhook_id: uuid.UUID,
    data: WebhookPatch,
    *,
    settings: WebhookSettings,
    session: AsyncSession,
    now: datetime,
) -> WebhookOut:
    """`enabled: true` turns a disabled endpoint back on (and forgets its failures); `false` stops its deliveries
    (those pending fail at their next attempt)."""
    row = await _endpoint(org_id, webhook_id, session)
    values: dict = {}
    if data.url is not None and data.url != row.url:
        values["url"] = await _checked_url(data.url, settings)
    if data.events is not None:
        values["events"] = _checked_events(data.events)
    if data.description is not None:
        values["description"] = data.description
    if data.enabled is True and row.disabled_at is not None:
        values |= {"disabled_at": None, "disabled_reason": None, "failing_since": None}
    elif data.enabled is False and row.disabled_at is None:
        values |= {"disabled_at": now, "disabled_reason": "disabled by the organisation"}
    if values:
        try:
            async with session.begin_nested():
                await session.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == webhook_id).values(values))
        except IntegrityError:
            raise Conflict("another webhook of this organisation has this url") from None
        await session.refresh(row)
    return WebhookOut(**_out(row))


async def remove(org_id: uuid.UUID, webhook_id: uuid.UUID, *, session: AsyncSession) -> None:
    """The endpoint, its log and its pending deliveries are gone (a queued attempt finds nothing and stops)."""
    result = await session.execute(
        delete(WebhookEndpoint).where(WebhookEndpoint.id == webhook_id, WebhookEndpoint.org_id == org_id)
    )
    if not result.rowcount:
        raise NotFound(NO_SUCH_WEBHOOK)


async def deliveries(
    org_id: uuid.UUID, webhook_id: uuid.UUID, *, limit: int, cursor: str | None, session: AsyncSession
) -> Deliveries:
    """Newest first."""
    await _endpoint(org_id, webhook_id, session)
    query = (
        select(WebhookDelivery, WebhookEvent.type)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.endpoint_id == webhook_id)
    )
    if cursor:
        query = query.where(tuple_(WebhookDelivery.created_at, WebhookDelivery.id) < decode_cursor(cursor))
    rows, next_cursor = page_of(
        (
            await session.execute(
                query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()).limit(limit + 1)
            )
        ).all(),
        limit,
        lambda r: (r.WebhookDelivery.created_at, r.WebhookDelivery.id),
    )
    return Deliveries(
        items=[
            DeliveryOut(
                id=d.id,
                event_id=d.event_id,
                event_type=event_type,
                status=d.status,
                attempts=d.attempts,
                last_status_code=d.last_status_code,
                last_error=d.last_error,
                next_attempt_at=d.next_attempt_at,
                created_at=d.created_at,
            )
            for d, event_type in rows
        ],
        next_cursor=next_cursor,
    )


async def redeliver(
    org_id: uuid.UUID, webhook_id: uuid.UUID, delivery_id: uuid.UUID, *, session: AsyncSession, now: datetime
) -> Redelivery:
    """The same event (same body, same `webhook-id`) sent again, now. 409 while the delivery is still pending (it is
    being tried already) or while the endpoint is disabled."""
    endpoint = await _endpoint(org_id, webhook_id, session)
    row = await session.scalar(
        select(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == webhook_id)
        .with_for_update()
    )
    if row is None:
        raise NotFound("no such delivery of this webhook")
    if row.status == "pending":
        raise Conflict("this delivery is pending: it is being tried already", status=row.status)
    if endpoint.disabled_at is not None:
        raise Conflict('this webhook is disabled; PATCH {"enabled": true} first')
    row.status = "pending"
    row.next_attempt_at = now
    await session.flush()
    await delivery.queue(session, [row.id])
    return Redelivery(id=row.id, status="pending")
