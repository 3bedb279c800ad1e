"""engagement policies, worked-hours history index, reliability counters

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTERS = (
    "offers_answered",
    "offers_accepted",
    "assignments",
    "backouts",
    "check_ins",
    "on_time_check_ins",
    "completions",
)


def upgrade() -> None:
    op.create_table(
        "engagement_policies",
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.Column("max_hours_per_week", sa.Float(), nullable=True),
        sa.Column("max_consecutive_weeks", sa.Integer(), nullable=True),
        sa.Column("max_tenure_months", sa.Integer(), nullable=True),
        sa.Column("mode", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("mode IN ('warn', 'block')", name=op.f("ck_engagement_policies_mode")),
        sa.CheckConstraint(
            "max_hours_per_week IS NULL OR max_hours_per_week > 0",
            name=op.f("ck_engagement_policies_max_hours_per_week"),
        ),
        sa.CheckConstraint(
            "max_consecutive_weeks IS NULL OR max_consecutive_weeks > 0",
            name=op.f("ck_engagement_policies_max_consecutive_weeks"),
        ),
        sa.CheckConstraint(
            "max_tenure_months IS NULL OR max_tenure_months > 0",
            name=op.f("ck_engagement_policies_max_tenure_months"),
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_engagement_policies_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_engagement_policies")),
    )
    op.add_column("jobs", sa.Column("checked_in_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_jobs_org_id_technician_id_worked",
        "jobs",
        ["org_id", "technician_id", "checked_in_at"],
        unique=False,
        postgresql_where=sa.text("status = 'completed'"),
    )
    for column in COUNTERS:
        op.add_column("pool_memberships", sa.Column(column, sa.Integer(), server_default=sa.text("0"), nullable=False))
    # Work done and reliability so far, from the recorded timeline.
    op.execute(
        """
        UPDATE jobs j SET checked_in_at = e.at
        FROM (SELECT job_id, min(at) AS at FROM job_events WHERE type = 'checked_in' GROUP BY job_id) e
        WHERE e.job_id = j.id
        """
    )
    op.execute(
        """
        WITH offered AS (
            SELECT j.org_id, o.technician_id,
                   count(*) FILTER (WHERE o.status IN ('accepted', 'declined', 'expired')) AS answered,
                   count(*) FILTER (WHERE o.status = 'accepted') AS accepted
            FROM offers o JOIN jobs j ON j.id = o.job_id
            WHERE o.wave > 0
            GROUP BY j.org_id, o.technician_id
        ),
        done AS (
            SELECT j.org_id, (e.data->>'technician_id')::uuid AS technician_id,
                   count(*) FILTER (WHERE e.type = 'assigned') AS assignments,
                   count(*) FILTER (WHERE e.type = 'backed_out') AS backouts,
                   count(*) FILTER (WHERE e.type = 'checked_in') AS check_ins,
                   count(*) FILTER (WHERE e.type = 'checked_in' AND e.at <= j.window_end) AS on_time_check_ins,
                   count(*) FILTER (WHERE e.type = 'completed') AS completions
            FROM job_events e JOIN jobs j ON j.id = e.job_id
            WHERE e.type IN ('assigned', 'backed_out', 'checked_in', 'completed') AND e.data ? 'technician_id'
            GROUP BY 1, 2
        )
        UPDATE pool_memberships m SET
            offers_answered = coalesce(offered.answered, 0),
            offers_accepted = coalesce(offered.accepted, 0),
            assignments = coalesce(done.assignments, 0),
            backouts = coalesce(done.backouts, 0),
            check_ins = coalesce(done.check_ins, 0),
            on_time_check_ins = coalesce(done.on_time_check_ins, 0),
            completions = coalesce(done.completions, 0)
        FROM pool_memberships p
        LEFT JOIN offered ON offered.org_id = p.org_id AND offered.technician_id = p.technician_id
        LEFT JOIN done ON done.org_id = p.org_id AND done.technician_id = p.technician_id
        WHERE m.org_id = p.org_id AND m.technician_id = p.technician_id
          AND (offered.org_id IS NOT NULL OR done.org_id IS NOT NULL)
        """
    )


def downgrade() -> None:
    for column in reversed(COUNTERS):
        op.drop_column("pool_memberships", column)
    op.drop_index(
        "ix_jobs_org_id_technician_id_worked", table_name="jobs", postgresql_where=sa.text("status = 'completed'")
    )
    op.drop_column("jobs", "checked_in_at")
    op.drop_table("engagement_policies")
