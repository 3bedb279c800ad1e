"""live tracking: notify subscribers of a job's changes

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 04:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The channel is backend.tracking.live.CHANNEL; a migration keeps its own copy, as history must not change
# when the code does.
CHANNEL = "truckroll_tracking"


def upgrade() -> None:
    # A trigger rather than a NOTIFY in each flow: every way a job changes state or technician (assignment,
    # en route, check-in, completion, cancellation, back-out, an operator's SQL) reaches the customer's
    # open link, and only once the change commits. The payload is the job id: small, and no credential.
    op.execute(
        f"""
        CREATE FUNCTION tracking_notify_job() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', NEW.id::text);
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER jobs_tracking_notify
        AFTER UPDATE OF status, technician_id, window_start, window_end ON jobs
        FOR EACH ROW
        WHEN (
            OLD.status IS DISTINCT FROM NEW.status
            OR OLD.technician_id IS DISTINCT FROM NEW.technician_id
            OR OLD.window_start IS DISTINCT FROM NEW.window_start
            OR OLD.window_end IS DISTINCT FROM NEW.window_end
        )
        EXECUTE FUNCTION tracking_notify_job()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER jobs_tracking_notify ON jobs")
    op.execute("DROP FUNCTION tracking_notify_job()")
