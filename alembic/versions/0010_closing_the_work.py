"""closing the work: statuses approved and incomplete, visits, tasks, attachments, expenses, payables, templates

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every matching.lifecycle.JobStatus of this revision, written out (a migration is frozen in time).
STATUSES = (
    "'approved', 'assigned', 'cancelled', 'completed', 'en_route', 'incomplete', 'offering', 'on_site', 'open', "
    "'unfilled'"
)
STATUSES_0002 = "'open', 'offering', 'assigned', 'en_route', 'on_site', 'completed', 'cancelled', 'unfilled'"
MONEY = sa.Numeric(14, 2)
HOURS = sa.Numeric(10, 2)


def _uuid_pk(table: str) -> list:
    return [sa.Column("id", sa.UUID(), nullable=False), sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}"))]


def _fk(table: str, column: str, target: str, ondelete: str | None = None) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"), ondelete=ondelete
    )


def _now(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False)


def upgrade() -> None:
    op.drop_constraint(op.f("ck_jobs_status"), "jobs", type_="check")
    op.create_check_constraint(op.f("ck_jobs_status"), "jobs", f"status IN ({STATUSES})")
    op.add_column(
        "organizations",
        sa.Column("auto_approve_days", sa.SmallInteger(), server_default=sa.text("7"), nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_organizations_auto_approve_days"), "organizations", "auto_approve_days BETWEEN 0 AND 60"
    )

    op.create_table(
        "job_templates",
        *_uuid_pk("job_templates"),
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("fields", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        _now("created_at"),
        _now("updated_at"),
        _fk("job_templates", "org_id", "organizations", "CASCADE"),
    )
    op.create_index("ix_job_templates_org_id_created_at", "job_templates", ["org_id", "created_at", "id"])

    op.add_column("jobs", sa.Column("tasks", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False))
    op.add_column("jobs", sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("template_id", sa.UUID(), nullable=True))
    op.create_foreign_key(
        op.f("fk_jobs_template_id_job_templates"), "jobs", "job_templates", ["template_id"], ["id"], ondelete="SET NULL"
    )
    # Auto-approval walks the jobs completed longest ago.
    op.create_index(
        "ix_jobs_completed_at_completed", "jobs", ["completed_at"], postgresql_where=sa.text("status = 'completed'")
    )

    # A visit: on site from a check-in to the completion that follows it. Worked hours are their sum.
    op.create_table(
        "job_visits",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("technician_id", sa.UUID(), nullable=False),
        sa.Column("checked_in_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("completed_at IS NULL OR completed_at >= checked_in_at", name=op.f("ck_job_visits_order")),
        _fk("job_visits", "job_id", "jobs", "CASCADE"),
        _fk("job_visits", "technician_id", "technicians", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_visits")),
    )
    op.create_index("ix_job_visits_job_id", "job_visits", ["job_id"])
    op.create_index("ix_job_visits_technician_id_checked_in_at", "job_visits", ["technician_id", "checked_in_at"])
    # The visits of the jobs checked in to before this revision: one each, from jobs.checked_in_at.
    op.execute(
        "INSERT INTO job_visits (job_id, technician_id, checked_in_at, completed_at) "
        "SELECT id, technician_id, checked_in_at, CASE WHEN status = 'completed' THEN completed_at END "
        "FROM jobs WHERE checked_in_at IS NOT NULL AND technician_id IS NOT NULL"
    )

    op.create_table(
        "attachments",
        *_uuid_pk("attachments"),
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("technician_id", sa.UUID(), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("storage_key", sa.Text(), nullable=False),
        _now("created_at"),
        sa.CheckConstraint(
            "content_type IN ('image/jpeg', 'image/png', 'application/pdf')", name=op.f("ck_attachments_content_type")
        ),
        _fk("attachments", "job_id", "jobs", "CASCADE"),
        _fk("attachments", "technician_id", "technicians", "CASCADE"),
        sa.UniqueConstraint("storage_key", name=op.f("uq_attachments_storage_key")),
    )
    op.create_index("ix_attachments_job_id", "attachments", ["job_id"])

    op.create_table(
        "job_expenses",
        *_uuid_pk("job_expenses"),
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("technician_id", sa.UUID(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("attachment_id", sa.UUID(), nullable=True),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        _now("created_at"),
        sa.CheckConstraint("amount >= 0", name=op.f("ck_job_expenses_amount")),
        sa.CheckConstraint("status IN ('pending', 'approved', 'rejected')", name=op.f("ck_job_expenses_status")),
        _fk("job_expenses", "job_id", "jobs", "CASCADE"),
        _fk("job_expenses", "technician_id", "technicians", "CASCADE"),
        _fk("job_expenses", "attachment_id", "attachments"),
    )
    op.create_index("ix_job_expenses_job_id", "job_expenses", ["job_id"])

    op.create_table(
        "payables",
        *_uuid_pk("payables"),
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.Column("technician_id", sa.UUID(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("hours", HOURS, nullable=False),
        sa.Column("labour", MONEY, nullable=False),
        sa.Column("expenses", MONEY, nullable=False),
        sa.Column("total", MONEY, nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'approved'"), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approved_by", sa.Text(), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("notes", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.CheckConstraint("status IN ('approved', 'paid')", name=op.f("ck_payables_status")),
        sa.CheckConstraint("approved_by IN ('organisation', 'auto')", name=op.f("ck_payables_approved_by")),
        sa.CheckConstraint("total = labour + expenses", name=op.f("ck_payables_total")),
        _fk("payables", "job_id", "jobs", "CASCADE"),
        _fk("payables", "org_id", "organizations", "CASCADE"),
        _fk("payables", "technician_id", "technicians", "CASCADE"),
        sa.UniqueConstraint("job_id", name=op.f("uq_payables_job_id")),
    )
    op.create_index("ix_payables_org_id_approved_at", "payables", ["org_id", "approved_at", "id"])
    op.create_index("ix_payables_technician_id_approved_at", "payables", ["technician_id", "approved_at", "id"])


def downgrade() -> None:
    op.drop_table("payables")
    op.drop_table("job_expenses")
    op.drop_table("attachments")
    op.drop_table("job_visits")
    op.drop_index("ix_jobs_completed_at_completed", table_name="jobs", postgresql_where=sa.text("status = 'completed'"))
    op.drop_constraint(op.f("fk_jobs_template_id_job_templates"), "jobs", type_="foreignkey")
    op.drop_column("jobs", "template_id")
    op.drop_column("jobs", "approved_at")
    op.drop_column("jobs", "tasks")
    op.drop_table("job_templates")
    op.drop_constraint(op.f("ck_organizations_auto_approve_days"), "organizations", type_="check")
    op.drop_column("organizations", "auto_approve_days")
    # Approved jobs were completed first; incomplete ones too.
    op.execute("UPDATE jobs SET status = 'completed' WHERE status IN ('approved', 'incomplete')")
    op.drop_constraint(op.f("ck_jobs_status"), "jobs", type_="check")
    op.create_check_constraint(op.f("ck_jobs_status"), "jobs", f"status IN ({STATUSES_0002})")
