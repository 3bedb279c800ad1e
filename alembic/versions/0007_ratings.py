"""two-sided double-blind ratings and each member's released rating aggregate

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "pool_memberships", sa.Column("rating_count", sa.Integer(), server_default=sa.text("0"), nullable=False)
    )
    op.add_column(
        "pool_memberships", sa.Column("rating_sum", sa.Integer(), server_default=sa.text("0"), nullable=False)
    )
    op.create_table(
        "job_ratings",
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("side", sa.Text(), nullable=False),
        sa.Column("stars", sa.SmallInteger(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.Column("technician_id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("side IN ('org', 'technician')", name=op.f("ck_job_ratings_side")),
        sa.CheckConstraint("stars BETWEEN 1 AND 5", name=op.f("ck_job_ratings_stars")),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_ratings_job_id_jobs"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_job_ratings_org_id_organizations"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["technician_id"],
            ["technicians.id"],
            name=op.f("fk_job_ratings_technician_id_technicians"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", "side", name=op.f("pk_job_ratings")),
    )
    op.create_index(
        "ix_job_ratings_created_at_unreleased",
        "job_ratings",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("released_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_job_ratings_created_at_unreleased",
        table_name="job_ratings",
        postgresql_where=sa.text("released_at IS NULL"),
    )
    op.drop_table("job_ratings")
    op.drop_column("pool_memberships", "rating_sum")
    op.drop_column("pool_memberships", "rating_count")
