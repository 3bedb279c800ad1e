"""Liveness and readiness (API.md, "Operating it"): /healthz never touches the database; /readyz answers 200
only when the database answers and its schema is at the newest Alembic revision, else 503 naming what is wrong."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.engine import make_url

from backend.app import create_app
from backend.db.migrate import upgrade
from backend.health import head_revisions
from backend.settings import Settings, libpq_url, load_settings
from tests.helpers import ADMIN_TOKEN, PROJECT_ID


def settings_for(url: str) -> Settings:
    return load_settings(
        {
            "TRUCKROLL_ENV": "test",
            "DATABASE_URL": url,
            "TRUCKROLL_WORKER": "external",  # no queue worker polling a database that is not there
            "TRUCKROLL_ADMIN_TOKEN": ADMIN_TOKEN,
            "TRUCKROLL_FIREBASE_PROJECT_ID": PROJECT_ID,
            "FIREBASE_AUTH_EMULATOR_HOST": os.environ["FIREBASE_AUTH_EMULATOR_HOST"],
        }
    )


def on_server(url: str, sql: str) -> None:
    """Run `sql` on the server of `url`, connected to its `postgres` database."""
    admin = libpq_url(make_url(url).set(database="postgres").render_as_string(hide_password=False))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture
def scratch_database(migrated: str) -> Iterator[str]:
    """An empty database (no migration run) on the test server; dropped afterwards."""
    name = f"truckroll_scratch_{uuid.uuid4().hex[:8]}"
    on_server(migrated, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(migrated).set(database=name).render_as_string(hide_password=False)
    finally:
        on_server(migrated, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_a_migrated_database_is_ready(client: AsyncTestClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "migrations": "head"}


async def test_without_its_database_the_process_is_alive_but_not_ready(scratch_database: str) -> None:
    async with AsyncTestClient(create_app(settings_for(scratch_database))) as client:
        on_server(scratch_database, f'DROP DATABASE "{make_url(scratch_database).database}" WITH (FORCE)')
        started = time.monotonic()
        health = await client.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        assert time.monotonic() - started < 0.5
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.json() == {"database": "unavailable", "migrations": "unknown"}
        assert int(response.headers["retry-after"]) > 0


async def test_a_schema_behind_the_newest_migration_is_not_ready(scratch_database: str) -> None:
    (head,) = head_revisions()
    async with AsyncTestClient(create_app(settings_for(scratch_database))) as client:
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["database"] == "ok"
        assert response.json()["migrations"].startswith("not migrated")
        assert head in response.json()["migrations"]

        upgrade(scratch_database, "0001")
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["migrations"] == f"not at head: the database is at 0001; head is {head}"

        upgrade(scratch_database)
        response = await client.get("/readyz")
        assert response.status_code == 200, response.text
