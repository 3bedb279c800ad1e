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


def make_engine(settings: DatabaseSettings) -> AsyncEngine:
    return create_async_engine(
        database_url(settings),
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        pool_pre_ping=False,
        # Matching and presence queries are short: JIT compilation only ever costs them time.
        connect_args={"options": "-c jit=off"},
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


DbSession = NamedDependency[AsyncSession]
"""A request's session (provided by the app as `db_session`); services commit explicitly."""
