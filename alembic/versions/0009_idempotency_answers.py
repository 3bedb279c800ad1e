"""idempotency keys are stored with their answer, in the action's transaction: never without one

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 03:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A key without an answer was claimed by a request that died before answering: it blocked every retry.
    op.execute("DELETE FROM idempotent_requests WHERE status_code IS NULL OR response_body IS NULL")
    op.alter_column("idempotent_requests", "status_code", existing_type=sa.Integer(), nullable=False)
    op.alter_column("idempotent_requests", "response_body", existing_type=sa.LargeBinary(), nullable=False)


def downgrade() -> None:
    op.alter_column("idempotent_requests", "response_body", existing_type=sa.LargeBinary(), nullable=True)
    op.alter_column("idempotent_requests", "status_code", existing_type=sa.Integer(), nullable=True)
