"""organisations, technician pools, presence

Revision ID: 0001
Revises:
Create Date: 2026-11-26 01:13:59.559874
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geography
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.create_table(
        "organizations",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column(
            "settings",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organizations")),
    )
    op.create_geospatial_table(
        "technicians",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("firebase_uid", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("on_duty", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "location",
            Geography(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeogFromText",
                name="geography",
            ),
            nullable=True,
        ),
        sa.Column("location_recorded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("location_accuracy_m", sa.Float(), nullable=True),
        sa.Column("speed_mps", sa.Float(), nullable=True),
        sa.Column("heading_deg", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_technicians")),
        sa.UniqueConstraint("firebase_uid", name=op.f("uq_technicians_firebase_uid")),
    )
    op.create_geospatial_index(
        "ix_technicians_location",
        "technicians",
        ["location"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.Column("prefix", sa.Text(), nullable=False),
        sa.Column("key_hash", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_api_keys_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index(op.f("ix_api_keys_org_id"), "api_keys", ["org_id"], unique=False)
    op.create_table(
        "devices",
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("technician_id", sa.UUID(), nullable=False),
        sa.Column("platform", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("platform IN ('android', 'ios')", name=op.f("ck_devices_platform")),
        sa.ForeignKeyConstraint(
            ["technician_id"],
            ["technicians.id"],
            name=op.f("fk_devices_technician_id_technicians"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token", name=op.f("pk_devices")),
    )
    op.create_index(op.f("ix_devices_technician_id"), "devices", ["technician_id"], unique=False)
    op.create_geospatial_table(
        "location_pings",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("technician_id", sa.UUID(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
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
        sa.Column("accuracy_m", sa.Float(), nullable=True),
        sa.Column("speed_mps", sa.Float(), nullable=True),
        sa.Column("heading_deg", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["technician_id"],
            ["technicians.id"],
            name=op.f("fk_location_pings_technician_id_technicians"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_location_pings")),
    )
    op.create_index(
        "ix_location_pings_received_at",
        "location_pings",
        ["received_at"],
        unique=False,
        postgresql_using="brin",
    )
    op.create_index(
        "ix_location_pings_technician_id_recorded_at",
        "location_pings",
        ["technician_id", "recorded_at"],
        unique=False,
    )
    op.create_geospatial_table(
        "pool_memberships",
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.Column("technician_id", sa.UUID(), nullable=False),
        sa.Column("tier", sa.Text(), nullable=False),
        sa.Column("skills", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("service_radius_km", sa.Float(), nullable=False),
        sa.Column(
            "home",
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
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("tier IN ('preferred', 'approved')", name=op.f("ck_pool_memberships_tier")),
        sa.CheckConstraint(
            "service_radius_km > 0 AND service_radius_km <= 500",
            name=op.f("ck_pool_memberships_service_radius"),
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_pool_memberships_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["technician_id"],
            ["technicians.id"],
            name=op.f("fk_pool_memberships_technician_id_technicians"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "technician_id", name=op.f("pk_pool_memberships")),
    )
    op.create_geospatial_index(
        "ix_pool_memberships_home",
        "pool_memberships",
        ["home"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(
        "ix_pool_memberships_org_id_created_at",
        "pool_memberships",
        ["org_id", "created_at", "technician_id"],
        unique=False,
    )
    op.create_index(op.f("ix_pool_memberships_technician_id"), "pool_memberships", ["technician_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_pool_memberships_technician_id"), table_name="pool_memberships")
    op.drop_index("ix_pool_memberships_org_id_created_at", table_name="pool_memberships")
    op.drop_geospatial_index(
        "ix_pool_memberships_home", table_name="pool_memberships", postgresql_using="gist", column_name="home"
    )
    op.drop_geospatial_table("pool_memberships")
    op.drop_index("ix_location_pings_technician_id_recorded_at", table_name="location_pings")
    op.drop_index("ix_location_pings_received_at", table_name="location_pings", postgresql_using="brin")
    op.drop_geospatial_table("location_pings")
    op.drop_index(op.f("ix_devices_technician_id"), table_name="devices")
    op.drop_table("devices")
    op.drop_index(op.f("ix_api_keys_org_id"), table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_geospatial_index(
        "ix_technicians_location", table_name="technicians", postgresql_using="gist", column_name="location"
    )
    op.drop_geospatial_table("technicians")
    op.drop_table("organizations")
