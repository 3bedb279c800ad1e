"""job completion and cancellation times (the customer's tracking link closes 24 h after either)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 02:19:31.641607
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True))
    # Jobs that closed before these columns existed last changed when they closed.
    op.execute("UPDATE jobs SET completed_at = updated_at WHERE status = 'completed'")
    op.execute("UPDATE jobs SET cancelled_at = updated_at WHERE status = 'cancelled'")


def downgrade() -> None:
    op.drop_column("jobs", "cancelled_at")
    op.drop_column("jobs", "completed_at")
