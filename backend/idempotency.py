"""`Idempotency-Key` on POSTs that create or change state (API.md), and the unit of work of every such POST.

A keyed (or unkeyed) action runs in one transaction with everything it causes, and this runner commits it: the
services it calls flush, never commit. With a key, the answer is stored in that same transaction, so the
action and its stored answer exist together or not at all: a request that dies before its commit (a crash, a
kill -9, the database gone) leaves nothing behind, and a retry with the same key runs afresh. While a request
runs, its key is held by a transaction-scoped advisory lock: a replay meanwhile is told 409 at once, and the
lock dies with the transaction, so a dead request never holds it. A replay with the same key and body gets the
stored bytes back with the same status; the same key with another body (another path included) is refused
(422). Keys are scoped to the credential's owner and kept at least 24 h.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import msgspec
from litestar import MediaType, Request, Response
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import OrgCaller, TechnicianCaller
from backend.closing import money
from backend.db.models import IdempotentRequest
from backend.errors import BadRequest, Conflict, DomainError, Invalid, error_body

HEADER = "idempotency-key"
RETENTION = timedelta(hours=48)


def _scope(request: Request) -> str:
    user = request.user
    if isinstance(user, OrgCaller):
        return f"org:{user.org_id}"
    if isinstance(user, TechnicianCaller):
        return f"technician:{user.technician_id}"
    return "operator"


async def step(
    request: Request,
    session: AsyncSession,
    action: Callable[[datetime], Awaitable[object]],
    *,
    status: int = 200,
) -> Response:
    """Run a caller's action on an object, at most once per Idempotency-Key: `action(now)` returns the
    response body, answered with `status`; a domain error it raises is the answer instead."""

    async def run() -> tuple[int, bytes]:
        return status, money.encode(await action(datetime.now(UTC)))

    return await idempotent(request, session, run)


async def idempotent(
    request: Request, session: AsyncSession, run: Callable[[], Awaitable[tuple[int, bytes]]]
) -> Response:
    """Run `run` (which returns status and JSON body) and commit it, at most once per Idempotency-Key.

    Everything happens on the request's own session, so a keyed request never holds two connections.
    """
    key = request.headers.get(HEADER)
    if key is None:
        status, body = await _answer(session, run)
        await session.commit()
        return Response(body, status_code=status, media_type=MediaType.JSON)
    if not 1 <= len(key) <= 255:
        raise BadRequest("Idempotency-Key", "must be 1 to 255 characters", source="header")
    fingerprint = hashlib.sha256(
        request.method.encode() + b" " + request.url.path.encode() + b"\n" + await request.body()
    ).digest()
    scope = _scope(request)
    held = await session.scalar(select(func.pg_try_advisory_xact_lock(func.hashtextextended(f"{scope} {key}", 0))))
    if not held:
        raise Conflict("Idempotency-Key: the first request with this key is still running")
    stored = (
        await session.execute(
            select(IdempotentRequest.fingerprint, IdempotentRequest.status_code, IdempotentRequest.response_body).where(
                IdempotentRequest.scope == scope, IdempotentRequest.key == key
            )
        )
    ).first()
    if stored is not None:
        await session.rollback()
        if stored.fingerprint != fingerprint:
            raise Invalid("Idempotency-Key", "already used with a different request", source="header")
        return Response(stored.response_body, status_code=stored.status_code, media_type=MediaType.JSON)
    status, body = await _answer(session, run)
    session.add(
        IdempotentRequest(
            scope=scope,
            key=key,
            fingerprint=fingerprint,
            created_at=datetime.now(UTC),
            status_code=status,
            response_body=body,
        )
    )
    await session.commit()
    return Response(body, status_code=status, media_type=MediaType.JSON)


async def _answer(session: AsyncSession, run: Callable[[], Awaitable[tuple[int, bytes]]]) -> tuple[int, bytes]:
    """A domain error is an answer: what the action wrote is undone (unless the error keeps it: an alert the
    attempt raised), and its body is stored and replayed like a success (the bytes the app's handler sends)."""
    savepoint = await session.begin_nested()
    try:
        answer = await run()
    except DomainError as exc:
        await (savepoint.commit() if exc.keep else savepoint.rollback())
        return exc.status_code, msgspec.json.encode(error_body(exc))
    await savepoint.commit()
    return answer


async def purge_expired(now: datetime, *, session: AsyncSession) -> int:
    """Forget the keys older than RETENTION; returns how many."""
    result = await session.execute(delete(IdempotentRequest).where(IdempotentRequest.created_at < now - RETENTION))
    await session.commit()
    return result.rowcount
