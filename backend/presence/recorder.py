"""Group commit for location pings.

Every request's pings wait in a queue; one flusher writes everything queued in a single transaction
(one INSERT into the history, one UPDATE of the latest positions, a notification for each customer's
live tracking link that changed) and then acknowledges each request.
While a flush is running the next batch gathers, so under load many requests share one commit, and no
request is acknowledged before its pings are durable.

The flush is a single statement on a connection of its own, in autocommit (the statement is its own
transaction, committed durably before anyone is answered) and prepared: no BEGIN/COMMIT round trips and
no ORM layer on the hottest path of the API. Its connection gives up on a silent database after the
database timeout, like the engine's (backend.db.engine.connect).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg

from backend.db.engine import Deadline, connect
from backend.presence.schemas import Ping
from backend.tracking.live import CHANNEL
from matching.lifecycle import ACTIVE, LOCATED, sql_list

log = logging.getLogger("truckroll.presence")

# The latest position only moves forward in time: a late, older batch goes to the history alone.
# Pings are stored only for a technician who is on duty or on an active job (API.md: nobody is tracked
# off shift).
# A technician whose latest position moved while on the way or on site changes what their customer's open
# tracking link shows: the same statement notifies it (backend.tracking.live), so the notification leaves
# only if the position commits, and costs one probe of the active-jobs index per moved technician. A CTE
# that nothing reads is never run: the final SELECT counts the notifications to make it run.
FLUSH = f"""
WITH batch AS (
    SELECT * FROM unnest(
        CAST(%(technician_id)s AS uuid[]), CAST(%(lat)s AS float8[]), CAST(%(lon)s AS float8[]),
        CAST(%(recorded_at)s AS timestamptz[]), CAST(%(accuracy_m)s AS float8[]),
        CAST(%(speed_mps)s AS float8[]), CAST(%(heading_deg)s AS float8[])
    ) AS b(technician_id, lat, lon, recorded_at, accuracy_m, speed_mps, heading_deg)
),
allowed AS (
    SELECT t.id FROM technicians t
    WHERE t.id IN (SELECT technician_id FROM batch)
      AND (t.on_duty OR EXISTS (
          SELECT 1 FROM jobs j WHERE j.technician_id = t.id AND j.status IN ({sql_list(ACTIVE)})
      ))
),
accepted AS (
    SELECT b.*, ST_SetSRID(ST_MakePoint(b.lon, b.lat), 4326)::geography AS location
    FROM batch b JOIN allowed a ON a.id = b.technician_id
),
stored AS (
    INSERT INTO location_pings (technician_id, recorded_at, location, accuracy_m, speed_mps, heading_deg)
    SELECT technician_id, recorded_at, location, accuracy_m, speed_mps, heading_deg FROM accepted
),
latest AS (
    SELECT DISTINCT ON (technician_id) * FROM accepted ORDER BY technician_id, recorded_at DESC
),
moved AS (
    UPDATE technicians t
    SET location = l.location, location_recorded_at = l.recorded_at, location_accuracy_m = l.accuracy_m,
        speed_mps = l.speed_mps, heading_deg = l.heading_deg
    FROM latest l
    WHERE t.id = l.technician_id
      AND (t.location_recorded_at IS NULL OR t.location_recorded_at < l.recorded_at)
    RETURNING t.id
),
notified AS (
    SELECT pg_notify('{CHANNEL}', j.id::text)
    FROM jobs j
    WHERE j.technician_id IN (SELECT id FROM moved) AND j.status IN ({sql_list(LOCATED)})
)
SELECT id, (SELECT count(*) FROM notified) FROM allowed
"""


@dataclass
class _Pending:
    technician_id: uuid.UUID
    pings: Sequence[Ping]
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class PingRecorder:
    def __init__(self, conninfo: str, *, timeout_s: float, max_batch_pings: int = 20_000) -> None:
        self._conninfo = conninfo
        self._deadline = Deadline(timeout_s)
        self._conn: psycopg.AsyncConnection | None = None
        self._max_batch_pings = max_batch_pings
        self._queue: deque[_Pending] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ping-recorder")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for pending in self._queue:
            if not pending.done.done():
                pending.done.set_exception(RuntimeError("server shutting down"))
        if self._conn is not None:
            await self._conn.close()

    async def record(self, technician_id: uuid.UUID, pings: Sequence[Ping]) -> bool:
        """Store the pings; True once committed, False when the technician may not be tracked now."""
        pending = _Pending(technician_id, pings)
        self._queue.append(pending)
        self._wake.set()
        return await pending.done

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, size = [], 0
                while self._queue and size < self._max_batch_pings:
                    pending = self._queue.popleft()
                    batch.append(pending)
                    size += len(pending.pings)
                await self._flush(batch)

    async def _flush(self, batch: list[_Pending]) -> None:
        columns: dict[str, list] = {
            k: [] for k in ("technician_id", "lat", "lon", "recorded_at", "accuracy_m", "speed_mps", "heading_deg")
        }
        for pending in batch:
            for ping in pending.pings:
                columns["technician_id"].append(pending.technician_id)
                columns["lat"].append(ping.lat)
                columns["lon"].append(ping.lon)
                columns["recorded_at"].append(ping.recorded_at)
                columns["accuracy_m"].append(ping.accuracy_m)
                columns["speed_mps"].append(ping.speed_mps)
                columns["heading_deg"].append(ping.heading_deg)
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await connect(
                    self._conninfo, deadline=self._deadline, autocommit=True, options="-c jit=off"
                )
            cursor = await self._conn.execute(FLUSH, columns, prepare=True)
            allowed = {row[0] for row in await cursor.fetchall()}
        except Exception as exc:  # every waiting request must hear about it, not hang
            if self._conn is not None:
                await self._conn.close()  # a fresh connection for the next flush
                self._conn = None
            log.exception("flushing %d ping requests failed", len(batch))
            if isinstance(exc, psycopg.OperationalError):
                # The database is down or did not answer: the requests that queued up meanwhile would
                # wait as long again for the same answer. They hear it now; the next request tries afresh.
                batch += self._queue
                self._queue.clear()
            for pending in batch:
                if not pending.done.done():
                    pending.done.set_exception(exc)
            return
        for pending in batch:
            if not pending.done.done():
                pending.done.set_result(pending.technician_id in allowed)
