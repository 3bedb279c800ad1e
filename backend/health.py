"""Liveness and readiness (API.md, "Operating it"), for load balancers and orchestrators.

`/healthz` says the process runs and touches nothing else: a database outage must not get healthy servers
restarted. `/readyz` says whether this process can serve: the database answers (within the database timeout,
like every request) and its schema is at the newest Alembic revision of this code.
"""

from __future__ import annotations

import functools
import logging

import msgspec
from alembic.script import ScriptDirectory
from litestar import MediaType, Response, get
from litestar.openapi import ResponseSpec
from sqlalchemy import text

from backend.db.engine import RETRY_AFTER_S, UNAVAILABLE, DbSession
from backend.db.migrate import alembic_config

log = logging.getLogger("truckroll")


class Readiness(msgspec.Struct, frozen=True):
    database: str
    """`ok`, or `unavailable` (down, frozen or unreachable)."""
    migrations: str
    """`head`, or how the schema differs from the newest migration (`unknown` while the database is unavailable)."""


@functools.cache
def head_revisions() -> frozenset[str]:
    """The newest Alembic revision(s) of this code (Alembic is the schema's only source)."""
    return frozenset(ScriptDirectory.from_config(alembic_config("")).get_heads())


def _schema_state(current: frozenset[str], head: frozenset[str]) -> str:
    if current == head:
        return "head"
    if not current:
        return f"not migrated: the database has no Alembic revision; head is {', '.join(sorted(head))}"
    return f"not at head: the database is at {', '.join(sorted(current))}; head is {', '.join(sorted(head))}"


@get(
    "/healthz",
    operation_id="health",
    summary="Liveness: the process runs (no database call)",
    tags=["ops"],
    security=[{}],
    exclude_from_auth=True,
)
async def health() -> dict[str, str]:
    return {"status": "ok"}


@get(
    "/readyz",
    operation_id="readiness",
    summary="Readiness: the database answers and its schema is at the newest migration",
    tags=["ops"],
    security=[{}],
    exclude_from_auth=True,
    responses={
        503: ResponseSpec(
            Readiness, description="Not ready: the body names what is wrong; `Retry-After` says when to ask again"
        )
    },
)
async def readiness(db_session: DbSession) -> Response[Readiness]:
    try:
        # Read directly rather than through Alembic's MigrationContext, which logs a line at every probe.
        versioned = await db_session.scalar(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
        rows = await db_session.scalars(text("SELECT version_num FROM alembic_version")) if versioned else []
        current = frozenset(rows)
    except UNAVAILABLE as exc:
        log.warning("not ready: the database is unavailable: %s", exc)
        return _answer(Readiness(database="unavailable", migrations="unknown"))
    return _answer(Readiness(database="ok", migrations=_schema_state(current, head_revisions())))


def _answer(readiness: Readiness) -> Response[Readiness]:
    if readiness.database == "ok" and readiness.migrations == "head":
        return Response(readiness, media_type=MediaType.JSON)
    return Response(readiness, status_code=503, headers={"Retry-After": RETRY_AFTER_S}, media_type=MediaType.JSON)
