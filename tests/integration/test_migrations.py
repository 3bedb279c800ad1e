"""The migrations are the schema's source of truth; the models must say the same thing."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from backend.db.migrate import alembic_config, pending_model_changes, upgrade


def test_models_and_migrations_agree(migrated: str) -> None:
    assert pending_model_changes(migrated) == []


@pytest.fixture
def scratch_url(migrated: str):
    admin = migrated.replace("postgresql+psycopg://", "postgresql://", 1)
    name = f"scratch_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, query = migrated.partition("?")
    yield base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_downgrade_to_nothing_and_back(scratch_url: str) -> None:
    from alembic import command

    upgrade(scratch_url)
    command.downgrade(alembic_config(scratch_url), "base")
    libpq = scratch_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(libpq) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename NOT IN ('alembic_version', 'spatial_ref_sys')"
        ).fetchone()[0]
    assert left == 0
    upgrade(scratch_url)
    assert pending_model_changes(scratch_url) == []


def test_the_latest_position_has_a_gist_index(migrated: str) -> None:
    libpq = migrated.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(libpq) as conn:
        definition = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'technicians' AND indexname = 'ix_technicians_location'"
        ).fetchone()[0]
        column_type = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'technicians'::regclass AND attname = 'location'"
        ).fetchone()[0]
    assert "USING gist (location)" in definition
    assert column_type == "geography(Point,4326)"
