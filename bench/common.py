"""What the benchmarks share: where their databases live."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg

from backend.settings import REPO_ROOT, sqlalchemy_url


def admin_url() -> str:
    """DATABASE_URL's server, else the embedded cluster (started if it is not running)."""
    if os.environ.get("DATABASE_URL"):
        return sqlalchemy_url(os.environ["DATABASE_URL"])
    from infra.postgis import LocalCluster

    return LocalCluster(Path(REPO_ROOT / ".truckroll" / "postgres")).ensure().url()


def bench_database(name: str) -> str:
    """A migrated database of the benchmark's own next to the development one; returns its URL."""
    from backend.db.migrate import upgrade
    from backend.settings import libpq_url

    server = admin_url()
    base, _, query = server.partition("?")
    url = base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")
    with psycopg.connect(libpq_url(server), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    upgrade(url)
    return url
