"""jobs, offers, timeline, idempotency, job queue

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 01:23:46.911675
"""

from collections.abc import Sequence
from importlib.resources import files

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geography
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _procrastinate_schema() -> str:
    # The job queue's schema, from the pinned procrastinate package (pyproject pins the minor version;
    # moving to a newer one means a migration that applies procrastinate's own migration scripts).
    return (files("procrastinate") / "sql" / "schema.sql").read_text()


def _run_script(sql: str) -> None:
    # Straight to psycopg without parameters, so that the script's own % signs are left alone.
    op.get_bind().connection.dbapi_connection.execute(sql)


def upgrade() -> None:
    _run_script(_procrastinate_schema())
    op.create_table(
        "idempotent_requests",
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.LargeBinary(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_idempotent_requests")),
    )
    op.create_index("ix_idempotent_requests_created_at", "idempotent_requests", ["created_at"], unique=False)
    op.create_geospatial_table(
        "jobs",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("external_ref", sa.Text(), nullable=True),
        sa.Column("skills", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column(
            "location",
            Geography(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeogFromText",
                name="geography",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("estimated_hours", sa.Float(), nullable=False),
        sa.Column("pay", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("customer", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("dispatch", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("current_wave", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("technician_id", sa.UUID(), nullable=True),
        sa.Column("tracking_token", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        # Every matching.lifecycle.JobStatus of this revision (a migration is frozen in time: the values are
        # written out, not imported; a new status comes with a migration of its own).
        sa.CheckConstraint(
            "status IN ('open', 'offering', 'assigned', 'en_route', 'on_site', 'completed', 'cancelled', 'unfilled')",
            name=op.f("ck_jobs_status"),
        ),
        sa.CheckConstraint("window_end > window_start", name=op.f("ck_jobs_window")),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_jobs_org_id_organizations"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["technician_id"], ["technicians.id"], name=op.f("fk_jobs_technician_id_technicians")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("tracking_token", name=op.f("uq_jobs_tracking_token")),
    )
    op.create_index("ix_jobs_org_id_created_at", "jobs", ["org_id", "created_at", "id"], unique=False)
    # "Busy" in matching: matching.lifecycle.ACTIVE as of this revision. The queries that rely on this partial
    # index write the same set literally (lifecycle.sql_list), so that the planner can prove they match it.
    op.create_index(
        "ix_jobs_technician_id_active",
        "jobs",
        ["technician_id", "window_start"],
        unique=False,
        postgresql_where=sa.text("status IN ('assigned', 'en_route', 'on_site')"),
    )
    op.create_table(
        "job_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column(
            "data", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_events_job_id_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_events")),
    )
    op.create_index("ix_job_events_job_id_id", "job_events", ["job_id", "id"], unique=False)
    op.create_table(
        "offers",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("technician_id", sa.UUID(), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("distance_m", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("responded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'accepted', 'declined', 'expired', 'withdrawn')", name=op.f("ck_offers_status")
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_offers_job_id_jobs"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["technician_id"], ["technicians.id"], name=op.f("fk_offers_technician_id_technicians"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offers")),
        sa.UniqueConstraint("job_id", "technician_id", name="uq_offers_job_id_technician_id"),
    )
    op.create_index(
        "ix_offers_technician_id_pending",
        "offers",
        ["technician_id"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_offers_technician_id_pending", table_name="offers", postgresql_where=sa.text("status = 'pending'")
    )
    op.drop_table("offers")
    op.drop_index("ix_job_events_job_id_id", table_name="job_events")
    op.drop_table("job_events")
    op.drop_index(
        "ix_jobs_technician_id_active",
        table_name="jobs",
        postgresql_where=sa.text("status IN ('assigned', 'en_route', 'on_site')"),
    )
    op.drop_index("ix_jobs_org_id_created_at", table_name="jobs")
    op.drop_geospatial_table("jobs")
    op.drop_index("ix_idempotent_requests_created_at", table_name="idempotent_requests")
    op.drop_table("idempotent_requests")
    _run_script(
        """
        DO $$
        DECLARE r record;
        BEGIN
            FOR r IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'procrastinate%' LOOP
                EXECUTE format('DROP TABLE %I CASCADE', r.tablename);
            END LOOP;
            FOR r IN SELECT p.oid::regprocedure AS f FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                     WHERE n.nspname = 'public' AND p.proname LIKE 'procrastinate%' LOOP
                EXECUTE format('DROP FUNCTION %s CASCADE', r.f);
            END LOOP;
            FOR r IN SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                     WHERE n.nspname = 'public' AND t.typname LIKE 'procrastinate%' AND t.typtype IN ('c', 'e') LOOP
                EXECUTE format('DROP TYPE IF EXISTS %I CASCADE', r.typname);
            END LOOP;
        END $$;
        """
    )
