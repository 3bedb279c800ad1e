"""matching indexes: partial GiST of on-duty positions, GIN of skills

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 02:07:40.717166
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_geospatial_index(
        "ix_technicians_location_on_duty",
        "technicians",
        ["location"],
        unique=False,
        postgresql_using="gist",
        postgresql_where=sa.text("on_duty"),
        postgresql_ops={},
    )
    op.create_index("ix_pool_memberships_skills", "pool_memberships", ["skills"], postgresql_using="gin")


def downgrade() -> None:
    op.drop_index("ix_pool_memberships_skills", table_name="pool_memberships", postgresql_using="gin")
    op.drop_geospatial_index(
        "ix_technicians_location_on_duty",
        table_name="technicians",
        postgresql_using="gist",
        postgresql_where=sa.text("on_duty"),
        column_name="location",
    )
