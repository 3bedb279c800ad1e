"""Engine and session factory. Nothing connects until the first query."""

from __future__ import annotations

from pathlib import Path

from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from backend.settings import DatabaseSettings


def database_url(settings: DatabaseSettings) -> str:
    """The configured URL, or the embedded cluster's (which `truckroll serve` / `make run` start)."""
    if settings.url:
        return settings.url
    from infra.postgis import LocalCluster

    return LocalCluster(Path(settings.embedded_root)).url()


# Every statement here is short and parameterised. JIT compilation only ever costs them time. And psycopg
# prepares a statement run five times on a connection; a generic plan then spares re-planning it at each
# run, which for the matching walk (CTEs, laterals, sub-plans) took longer than running it (~1 ms of ~4).
# Its plan is checked with auto_explain in tests/integration/test_matching_postgis.py.
CONNECTION_OPTIONS = "-c jit=off -c plan_cache_mode=force_generic_plan"


def make_engine(settings: DatabaseSettings) -> AsyncEngine:
    return create_async_engine(
        database_url(settings),
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        pool_pre_ping=False,
        connect_args={"options": CONNECTION_OPTIONS},
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


DbSession = NamedDependency[AsyncSession]
"""A request's session (provided by the app as `db_session`); services commit explicitly."""
