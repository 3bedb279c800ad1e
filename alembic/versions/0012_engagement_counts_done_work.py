"""engagement counts every job done on site (completed, incomplete, approved): the worked-history index covers them

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 04:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# matching.lifecycle.DONE as of this revision (written out: a migration is frozen in time).
DONE = "status IN ('approved', 'completed', 'incomplete')"


def upgrade() -> None:
    op.drop_index(
        "ix_jobs_org_id_technician_id_worked", table_name="jobs", postgresql_where=sa.text("status = 'completed'")
    )
    op.create_index(
        "ix_jobs_org_id_technician_id_worked",
        "jobs",
        ["org_id", "technician_id", "checked_in_at"],
        unique=False,
        postgresql_where=sa.text(DONE),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_org_id_technician_id_worked", table_name="jobs", postgresql_where=sa.text(DONE))
    op.create_index(
        "ix_jobs_org_id_technician_id_worked",
        "jobs",
        ["org_id", "technician_id", "checked_in_at"],
        unique=False,
        postgresql_where=sa.text("status = 'completed'"),
    )
