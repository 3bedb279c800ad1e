"""Shared fixtures: a throwaway PostGIS cluster for the whole session, migrated with Alembic, and a
clean database for every test (all application tables are truncated after each one).

With DATABASE_URL set, a scratch database is created on that server instead of a private cluster.
"""

from __future__ import annotations

import inspect
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from litestar.testing import AsyncTestClient

# Technicians authenticate with Firebase ID tokens; the suite uses firebase-admin's emulator
# convention (unsigned tokens), exactly as development does.
os.environ.setdefault("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")

from backend.app import create_app
from backend.db.migrate import upgrade
from backend.settings import Settings, libpq_url, load_settings, sqlalchemy_url
from infra.postgis import LocalCluster, reap_orphans
from tests.fakes.fcm import FakeFcmServer
from tests.helpers import ADMIN_TOKEN, PROJECT_ID


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    """Run every `async def` test on anyio's asyncio backend (marked before anyio's own hook looks)."""
    if collector.funcnamefilter(name) and inspect.iscoroutinefunction(obj):
        pytest.mark.anyio(obj)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("DATABASE_URL")
    if external:
        name = f"truckroll_test_{uuid.uuid4().hex[:8]}"
        admin = libpq_url(sqlalchemy_url(external))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        base, _, query = admin.partition("?")
        url = base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")
        try:
            yield "postgresql+psycopg://" + url.split("://", 1)[1]
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    # A run killed part-way (SIGKILL, a CI timeout) could not destroy its cluster: this run does.
    reap_orphans()
    cluster = LocalCluster(tmp_path_factory.mktemp("postgres"), fast=True, throwaway=True)
    cluster.ensure()
    try:
        yield cluster.url()
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def migrated(database_url: str) -> str:
    upgrade(database_url)
    return database_url


@pytest.fixture(scope="session")
def app_tables(migrated: str) -> list[str]:
    with psycopg.connect(libpq_url(migrated)) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename NOT IN ('alembic_version', 'spatial_ref_sys')"
        ).fetchall()
    return [r[0] for r in rows]


@pytest.fixture
def db(migrated: str, app_tables: list[str]) -> Iterator[psycopg.Connection]:
    """A direct connection for assertions; after the test every application table is emptied."""
    with psycopg.connect(libpq_url(migrated), autocommit=True) as conn:
        yield conn
        if app_tables:
            conn.execute(f"TRUNCATE {', '.join(app_tables)} RESTART IDENTITY CASCADE")


@pytest.fixture
def fcm() -> Iterator[FakeFcmServer]:
    """A local fake of FCM's HTTP v1 API; the app's real firebase-admin sender talks to it."""
    with FakeFcmServer(PROJECT_ID) as server:
        yield server


@pytest.fixture
def settings(migrated: str, db: psycopg.Connection, fcm: FakeFcmServer) -> Settings:
    env = {
        "TRUCKROLL_PUSH": "fcm",
        "TRUCKROLL_FCM_ENDPOINT": fcm.url,
        "TRUCKROLL_ENV": "test",
        "DATABASE_URL": migrated,
        "TRUCKROLL_ADMIN_TOKEN": ADMIN_TOKEN,
        "TRUCKROLL_FIREBASE_PROJECT_ID": PROJECT_ID,
        "FIREBASE_AUTH_EMULATOR_HOST": os.environ["FIREBASE_AUTH_EMULATOR_HOST"],
    }
    return load_settings(env)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient]:
    async with AsyncTestClient(create_app(settings)) as client:
        yield client
