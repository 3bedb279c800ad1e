"""`Idempotency-Key` on POSTs that create or change state (API.md).

The first request with a key stores a fingerprint of the request before running it and its response after;
a replay with the same key and body gets those bytes back with the same status, the same key with another
body is refused (422), and a replay while the first is still running is told to wait (409). Keys are
scoped to the credential's owner and kept at least 24 h.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import msgspec
from litestar import MediaType, Request, Response
from sqlalchemy import delete, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import OrgCaller, TechnicianCaller
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
        return status, msgspec.json.encode(await action(datetime.now(UTC)))

    return await idempotent(request, session, run)


async def idempotent(
    request: Request, session: AsyncSession, run: Callable[[], Awaitable[tuple[int, bytes]]]
) -> Response:
    """Run `run` (which returns status and JSON body) at most once per Idempotency-Key.

    Everything happens on the request's own session, so a keyed request never holds two connections.
    """
    key = request.headers.get(HEADER)
    if key is None:
        status, body = await _answer(session, run)
        return Response(body, status_code=status, media_type=MediaType.JSON)
    if not 1 <= len(key) <= 255:
        raise BadRequest("Idempotency-Key", "must be 1 to 255 characters", source="header")
    fingerprint = hashlib.sha256(
        request.method.encode() + b" " + request.url.path.encode() + b"\n" + await request.body()
    ).digest()
    scope = _scope(request)
    claimed = await session.scalar(
        insert(IdempotentRequest)
        .values(scope=scope, key=key, fingerprint=fingerprint, created_at=datetime.now(UTC))
        .on_conflict_do_nothing()
        .returning(IdempotentRequest.key)
    )
    await session.commit()
    if claimed is None:
        stored = await session.get(IdempotentRequest, (scope, key), populate_existing=True)
        if stored is None or stored.fingerprint != fingerprint:
            raise Invalid("Idempotency-Key", "already used with a different request", source="header")
        if stored.status_code is None:
            raise Conflict("Idempotency-Key: the first request with this key is still running")
        return Response(stored.response_body, status_code=stored.status_code, media_type=MediaType.JSON)
    this = (IdempotentRequest.scope == scope, IdempotentRequest.key == key)
    try:
        status, body = await _answer(session, run)
    except BaseException:
        # A failure that is not an answer (a crash, a 5xx) leaves the key free for a retry.
        await session.rollback()
        await session.execute(delete(IdempotentRequest).where(*this))
        await session.commit()
        raise
    await session.execute(update(IdempotentRequest).where(*this).values(status_code=status, response_body=body))
    await session.commit()
    return Response(body, status_code=status, media_type=MediaType.JSON)


async def _answer(session: AsyncSession, run: Callable[[], Awaitable[tuple[int, bytes]]]) -> tuple[int, bytes]:
    """A domain error is an answer: nothing of the action is kept, and its body is stored and replayed like a
    success (the same bytes the app's handler would send)."""
    try:
        return await run()
    except DomainError as exc:
        await session.rollback()
        return exc.status_code, msgspec.json.encode(error_body(exc))


async def purge_expired(now: datetime, *, session: AsyncSession) -> int:
    """Forget the keys older than RETENTION; returns how many."""
    result = await session.execute(delete(IdempotentRequest).where(IdempotentRequest.created_at < now - RETENTION))
    await session.commit()
    return result.rowcount
