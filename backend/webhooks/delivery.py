"""Delivering webhook events: one queue task per delivery (an event to an endpoint), signed, retried, and at most
`SLOTS_PER_ENDPOINT` at a time per endpoint.

An attempt leases one of the endpoint's slots (a row of `webhook_slots`, taken with SKIP LOCKED and given back when
the attempt is recorded; the lease of a worker that died runs out by itself after `LEASE_S`). With every slot taken
the task comes back a moment later without counting an attempt: a slow receiver holds its own slots, never the
workers. The attempt's outcome and, when it is to be tried again, the next attempt's queue job are written in one
transaction; a worker killed between the POST and that transaction leaves its task to `backend.tasks.retry_stalled`,
which runs it again (at least once; receivers dedupe on `webhook-id`).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import hmac
import logging
import random
import uuid
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import procrastinate
from procrastinate.jobs import Job
from procrastinate.manager import JobManager
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.db.engine import UNAVAILABLE
from backend.queue import runtime_of, tasks
from backend.settings import load_settings
from backend.webhooks import addresses

log = logging.getLogger("truckroll.webhooks")

QUEUE = "push"
"""Outbound deliveries share the push queue, below the pushes' priority (an offer's push is time-critical)."""
PRIORITY = -1
TASK = "deliver_webhook"
TIMEOUT_S = 10.0
"""For the whole attempt: resolving, connecting, sending and reading the answer."""
READ_LIMIT = 64 * 1024
"""At most this much of an answer is read; the rest is dropped with the connection."""
ERROR_EXCERPT = 300
SLOTS_PER_ENDPOINT = 4
"""Half the concurrency of a worker (backend.queue.WORKER_OPTIONS): one endpoint never holds all of a worker."""
LEASE_S = 15
"""TIMEOUT_S for the attempt, and time to record it: a lease held longer than this is a dead worker's."""
SCHEDULE: tuple[timedelta, ...] = tuple(
    timedelta(seconds=s) for s in (5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 28800, 28800)
)
"""The wait after the n-th failed attempt, each ±20 % at random (jitter): 5 s, 30 s, 2 min, 10 min, 30 min, 1 h,
2 h, 4 h, then 8 h. Eleven retries span 31.7 h (at least 25.4 h with the jitter)."""
JITTER = 0.2
RETRY_FOR = timedelta(hours=24)
"""A delivery is given up only once SCHEDULE is spent and this long has passed since the event."""
DISABLE_AFTER = timedelta(days=3)
"""An endpoint whose attempts have all failed this long is disabled."""
SCHEDULE_DOC = (
    "Retries: a network error, a timeout (10 s) or any answer but 2xx is tried again after 5 s, 30 s, 2 min, "
    "10 min, 30 min, 1 h, 2 h, 4 h, then every 8 h (each wait ±20 % at random) until 11 retries and 24 h since the "
    "event are both past; a `Retry-After` answer (seconds or an HTTP date, up to 24 h) replaces the wait. A 4xx "
    "other than 408 and 429 fails at once. Redirects are not followed (a 3xx is a failure). An endpoint that has "
    "failed for 3 days without a success is disabled (`disabled_at`, `disabled_reason`); re-registering its URL or "
    '`PATCH {"enabled": true}` turns it back on. At most '
    + str(SLOTS_PER_ENDPOINT)
    + " deliveries to one endpoint are in flight at a time."
)

_jobs = JobManager(procrastinate.PsycopgConnector())
"""Only writes queue jobs, on a transaction's own connection: it never opens a connection of its own."""


async def _driver_connection(session: AsyncSession):
    connection = await session.connection()
    return (await connection.get_raw_connection()).driver_connection


async def queue(session: AsyncSession, delivery_ids: list[uuid.UUID], *, at: datetime | None = None) -> None:
    """Queue an attempt of each delivery in the session's transaction (it exists only if that commits)."""
    if not delivery_ids:
        return
    await _jobs.batch_defer_jobs_async(
        [
            Job(
                queue=QUEUE,
                priority=PRIORITY,
                lock=None,
                queueing_lock=None,
                task_name=TASK,
                task_kwargs={"delivery_id": str(d)},
                scheduled_at=at,
            )
            for d in delivery_ids
        ],
        connection=await _driver_connection(session),
    )


def sign(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks: `v1,` + base64 HMAC-SHA256, keyed with the secret's decoded bytes, of `id.timestamp.body`."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{event_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None = None
    retry_after: timedelta | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def final(self) -> bool:
        """A 4xx other than 408/429 fails at once: the receiver will not take it."""
        return self.status_code is not None and 400 <= self.status_code < 500 and self.status_code not in (408, 429)


def _retry_after(value: str | None, now: datetime) -> timedelta | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        wait = timedelta(seconds=int(value))
    else:
        try:
            wait = email.utils.parsedate_to_datetime(value) - now
        except (TypeError, ValueError):
            return None
    return min(max(wait, timedelta(seconds=1)), RETRY_FOR)


class Sender:
    """POSTs to receivers with one HTTP client (per event loop): no redirects, no proxies from the environment,
    `TIMEOUT_S` for the whole attempt, and the connection made to the address the SSRF guard checked."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private
        self.client = httpx.AsyncClient(
            timeout=TIMEOUT_S,
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            headers={"user-agent": "Truckroll-Webhooks/1", "content-type": "application/json"},
        )

    async def post(self, url: str, secret: str, event_id: str, body: bytes) -> Outcome:
        now = datetime.now(UTC)
        timestamp = int(now.timestamp())
        headers = {
            "webhook-id": event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, event_id, timestamp, body),
        }
        try:
            async with asyncio.timeout(TIMEOUT_S):
                target = await addresses.resolve(url, allow_private=self.allow_private)
                headers["host"] = target.url.netloc.decode("ascii")
                request = self.client.build_request(
                    "POST",
                    target.url.copy_with(host=str(target.address)),
                    headers=headers,
                    content=body,
                    extensions={"sni_hostname": target.host} if target.url.scheme == "https" else {},
                )
                response = await self.client.send(request, stream=True)
                try:
                    excerpt = await _read_capped(response)
                finally:
                    await response.aclose()
        except addresses.Refused as exc:
            return Outcome(None, f"refused: {exc}")
        except TimeoutError:
            return Outcome(None, f"timed out after {TIMEOUT_S:.0f} s")
        except httpx.HTTPError as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}"[:ERROR_EXCERPT])
        if 200 <= response.status_code < 300:
            return Outcome(response.status_code)
        return Outcome(
            response.status_code,
            f"HTTP {response.status_code}: {excerpt.decode('utf-8', 'replace')}"[:ERROR_EXCERPT],
            _retry_after(response.headers.get("retry-after"), now),
        )

    async def aclose(self) -> None:
        await self.client.aclose()


async def _read_capped(response: httpx.Response) -> bytes:
    """The answer's first bytes; reading stops at READ_LIMIT."""
    excerpt, read = b"", 0
    async for chunk in response.aiter_raw():
        if len(excerpt) < ERROR_EXCERPT:
            excerpt += chunk[: ERROR_EXCERPT - len(excerpt)]
        read += len(chunk)
        if read >= READ_LIMIT:
            break
    return excerpt


_senders: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Sender] = weakref.WeakKeyDictionary()


def sender() -> Sender:
    """The process's sender on the running loop. TRUCKROLL_WEBHOOK_ALLOW_PRIVATE is read from the environment, which
    the worker (`truckroll worker`, or the server's in-process worker) is configured by."""
    loop = asyncio.get_running_loop()
    found = _senders.get(loop)
    if found is None:
        found = _senders[loop] = Sender(allow_private=load_settings().webhooks.allow_private)
    return found


class EndpointBusy(Exception):
    """Every slot of the endpoint is leased: the task comes back shortly."""


class UntilDeliveredOrOutage(procrastinate.BaseRetryStrategy):
    """A busy endpoint: again within a second, without it counting as an attempt. The database unavailable: again
    1, 2, 4 … 30 s later, as every task of the queue. A failed attempt is not an exception: it is recorded, and
    the next one queued, in one transaction."""

    def get_retry_decision(self, *, exception: BaseException, job) -> procrastinate.RetryDecision | None:
        if isinstance(exception, EndpointBusy):
            return procrastinate.RetryDecision(retry_in={"seconds": random.uniform(0.2, 1.0)})
        if isinstance(exception, UNAVAILABLE):
            return procrastinate.RetryDecision(retry_in={"seconds": min(2**job.attempts, 30)})
        return None


_CLAIM = text(
    """
WITH d AS (
    SELECT d.id, d.endpoint_id, d.status, d.attempts, ev.created_at, e.url, e.secret, e.disabled_at,
           e.disabled_reason, ev.id AS event_id, ev.body
    FROM webhook_deliveries d
    JOIN webhook_endpoints e ON e.id = d.endpoint_id
    JOIN webhook_events ev ON ev.id = d.event_id
    WHERE d.id = :id
), free AS (
    SELECT s.endpoint_id, s.slot FROM webhook_slots s JOIN d ON s.endpoint_id = d.endpoint_id
    WHERE d.status = 'pending' AND d.disabled_at IS NULL AND s.leased_until < now()
    ORDER BY s.slot LIMIT 1 FOR UPDATE OF s SKIP LOCKED
), taken AS (
    UPDATE webhook_slots s SET leased_until = now() + make_interval(secs => :lease)
    FROM free WHERE s.endpoint_id = free.endpoint_id AND s.slot = free.slot
    RETURNING s.slot
)
SELECT d.*, (SELECT slot FROM taken) AS slot FROM d
"""
)

_RECORD = text(
    """
WITH released AS (
    UPDATE webhook_slots SET leased_until = '-infinity' WHERE endpoint_id = :endpoint_id AND slot = :slot
    RETURNING slot
), delivery AS (
    UPDATE webhook_deliveries
    SET status = :status, attempts = attempts + 1, last_status_code = :code, last_error = :error,
        next_attempt_at = :next_attempt_at
    WHERE id = :id AND status = 'pending'
    RETURNING id
), endpoint AS (
    UPDATE webhook_endpoints
    SET failing_since = CASE WHEN :ok THEN NULL ELSE coalesce(failing_since, :now) END,
        disabled_at = CASE WHEN NOT :ok AND disabled_at IS NULL AND failing_since <= :disable_before THEN :now
                      ELSE disabled_at END,
        disabled_reason = CASE WHEN NOT :ok AND disabled_at IS NULL AND failing_since <= :disable_before
                          THEN 'failing without a success since ' || to_char(failing_since AT TIME ZONE 'UTC',
                               'YYYY-MM-DD"T"HH24:MI:SS"Z"') || '; last error: ' || coalesce(:error, '')
                          ELSE disabled_reason END
    WHERE id = :endpoint_id AND (NOT :ok OR failing_since IS NOT NULL)
    RETURNING disabled_at
)
SELECT (SELECT count(*) FROM delivery) AS recorded, (SELECT count(*) FROM released) AS released
"""
)

_GIVE_UP = text(
    """
UPDATE webhook_deliveries SET status = 'failed', last_error = :error, next_attempt_at = NULL
WHERE id = :id AND status = 'pending'
"""
)


AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}


def next_attempt(attempts: int, created_at: datetime, outcome: Outcome, now: datetime) -> datetime | None:
    """When the delivery is tried again after its `attempts`-th attempt failed with `outcome`, or None to give up."""
    if outcome.final:
        return None
    spent = attempts > len(SCHEDULE)
    if spent and now - created_at >= RETRY_FOR:
        return None
    if outcome.retry_after is not None:
        return now + outcome.retry_after
    wait = SCHEDULE[min(attempts, len(SCHEDULE)) - 1]
    return now + wait * random.uniform(1 - JITTER, 1 + JITTER)


async def attempt(delivery_id: uuid.UUID, *, sessionmaker: async_sessionmaker[AsyncSession], sender: Sender) -> str:
    """One attempt of a delivery; what became of it ("succeeded", "retry", "failed", or "skipped" for a delivery
    that is gone or no longer pending). Raises EndpointBusy when every slot of its endpoint is taken."""
    async with sessionmaker() as session:
        # Each of these is one statement: in autocommit, one round trip each.
        connection = await session.connection(execution_options=AUTOCOMMIT)
        row = (await connection.execute(_CLAIM, {"id": delivery_id, "lease": LEASE_S})).first()
        if row is None or row.status != "pending":
            return "skipped"
        if row.disabled_at is not None:
            await connection.execute(
                _GIVE_UP, {"id": delivery_id, "error": f"endpoint disabled: {row.disabled_reason or ''}".strip()}
            )
            return "failed"
        if row.slot is None:
            raise EndpointBusy(str(row.endpoint_id))
    outcome = await sender.post(row.url, row.secret, str(row.event_id), row.body.encode())
    now = datetime.now(UTC)
    attempts = row.attempts + 1
    retry_at = None if outcome.delivered else next_attempt(attempts, row.created_at, outcome, now)
    status = "succeeded" if outcome.delivered else ("pending" if retry_at else "failed")
    async with sessionmaker() as session:
        # The outcome alone is one statement; with the next attempt's queue job, a transaction.
        connection = await session.connection(execution_options=None if retry_at else AUTOCOMMIT)
        recorded = (
            await connection.execute(
                _RECORD,
                {
                    "id": delivery_id,
                    "endpoint_id": row.endpoint_id,
                    "slot": row.slot,
                    "status": status,
                    "code": outcome.status_code,
                    "error": outcome.error,
                    "next_attempt_at": retry_at,
                    "ok": outcome.delivered,
                    "now": now,
                    "disable_before": now - DISABLE_AFTER,
                },
            )
        ).first()
        if retry_at is not None and recorded.recorded:
            await queue(session, [delivery_id], at=retry_at)
        if retry_at is not None:
            await session.commit()
    if not outcome.delivered:
        log.info("webhook delivery %s attempt %d: %s", delivery_id, attempts, outcome.error)
    return "retry" if retry_at else status


@tasks.task(name=TASK, queue=QUEUE, pass_context=True, retry=UntilDeliveredOrOutage(), priority=PRIORITY)
async def deliver(context: procrastinate.JobContext, delivery_id: str) -> None:
    await attempt(uuid.UUID(delivery_id), sessionmaker=runtime_of(context).sessionmaker, sender=sender())
