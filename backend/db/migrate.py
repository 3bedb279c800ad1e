"""Run Alembic programmatically (the CLI, the test suite and `make run` all go through here)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from geoalchemy2 import alembic_helpers

from backend.settings import REPO_ROOT

# Tables that live in the database but are not ours to model: PostGIS's own, and the job queue's
# (procrastinate's schema is applied by our migrations from the pinned package's SQL).
FOREIGN_TABLE_PREFIXES = ("spatial_ref_sys", "procrastinate_")


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    table = obj if type_ == "table" else getattr(obj, "table", None)
    table_name = name if type_ == "table" else getattr(table, "name", "")
    if table_name and table_name.startswith(FOREIGN_TABLE_PREFIXES):
        return False
    return alembic_helpers.include_object(obj, name, type_, reflected, compare_to)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(REPO_ROOT / "alembic"))
    # ConfigParser interpolation: a literal % in a URL (percent-encoded password) must be doubled.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def pending_model_changes(url: str) -> list:
    """What autogenerate would put in a new migration: empty when models and migrations agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine, pool

    from backend.db.models import Base

    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={"include_object": include_object, "compare_type": True, "compare_server_default": True},
            )
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def revision(url: str, message: str) -> None:
    command.revision(alembic_config(url), message=message, autogenerate=True)
