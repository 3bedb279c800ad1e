"""credentials per organisation and technician, requirement sets, compliance alerts

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 03:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "credentials",
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.Column("technician_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("status IN ('valid', 'pending', 'failed')", name=op.f("ck_credentials_status")),
        sa.CheckConstraint(
            "kind ~ '^(background_check|drug_screen|insurance_liability|contractor_agreement|nda|cert:[a-z0-9_.-]{1,64})$'",
            name=op.f("ck_credentials_kind"),
        ),
        sa.CheckConstraint(
            "expires_at IS NULL OR issued_at IS NULL OR expires_at >= issued_at", name=op.f("ck_credentials_validity")
        ),
        sa.ForeignKeyConstraint(
            ["org_id", "technician_id"],
            ["pool_memberships.org_id", "pool_memberships.technician_id"],
            name=op.f("fk_credentials_org_id_pool_memberships"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "technician_id", "kind", name=op.f("pk_credentials")),
    )
    op.create_index(
        "ix_credentials_expires_at_valid",
        "credentials",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'valid' AND expires_at IS NOT NULL"),
    )
    op.create_table(
        "org_requirements",
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.Column("credentials", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column(
            "by_skill", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_org_requirements_org_id_organizations"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_org_requirements")),
    )
    op.create_table(
        "compliance_alerts",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.Column("technician_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("value", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("limit", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("job_id", sa.UUID(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dedupe_key", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('hours_per_week', 'consecutive_weeks', 'tenure', 'credential_expiring', 'credential_expired')",
            name=op.f("ck_compliance_alerts_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_compliance_alerts_job_id_jobs"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_compliance_alerts_org_id_organizations"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["technician_id"],
            ["technicians.id"],
            name=op.f("fk_compliance_alerts_technician_id_technicians"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compliance_alerts")),
        sa.UniqueConstraint("org_id", "dedupe_key", name=op.f("uq_compliance_alerts_org_id_dedupe_key")),
    )
    op.create_index("ix_compliance_alerts_org_id_at", "compliance_alerts", ["org_id", "at", "id"], unique=False)
    op.create_index(op.f("ix_compliance_alerts_technician_id"), "compliance_alerts", ["technician_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_compliance_alerts_technician_id"), table_name="compliance_alerts")
    op.drop_index("ix_compliance_alerts_org_id_at", table_name="compliance_alerts")
    op.drop_table("compliance_alerts")
    op.drop_table("org_requirements")
    op.drop_index(
        "ix_credentials_expires_at_valid",
        table_name="credentials",
        postgresql_where=sa.text("status = 'valid' AND expires_at IS NOT NULL"),
    )
    op.drop_table("credentials")
