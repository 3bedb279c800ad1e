"""Live tracking: every open customer link hears of its job's changes, whichever server process made them.

Postgres carries the news. A change of a job's status, technician or window (a trigger, migration 0006) and
a new latest position of a technician on the way or on site (the ping recorder's flush) each `pg_notify`
CHANNEL with the job's id, inside the transaction that stores the change: the news leaves only once it is
true, and costs no connection of its own.

Each process LISTENs to that one channel on one connection of its own. One channel with the job id as
payload, rather than a channel per job: sockets come and go all day, and hearing of a job nobody here
watches costs a dict lookup. The id, not the tracking token, travels: the token is the customer's
credential and has no business in notifications. The listening connection is supervised: when it drops (a
database restart, a failover) it is opened again with backoff, and since notifications sent meanwhile are
lost, every watched job is then read afresh. (Litestar's psycopg channels backend, tried first, stays
silent for good once its listening connection is gone.)

For a job with sockets open here the view is recomputed once per notification (and notifications that
arrive during a recomputation are folded into one more), then handed to every socket. A socket keeps only
the newest view it has not sent yet: a slow phone gets the latest state, not a backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import msgspec
import psycopg
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.db.engine import Deadline, connect, database_url
from backend.settings import libpq_url
from backend.tracking import services
from backend.tracking.eta import Router
from backend.tracking.schemas import TrackingView

log = logging.getLogger("truckroll.tracking")

CHANNEL = "truckroll_tracking"
# Waits between attempts to listen again after the connection dropped.
RECONNECT_S = (0.2, 0.5, 1.0, 2.0, 5.0)
# A socket's first view waits at most this long for the listener (the database may be down).
LISTENING_WAIT_S = 5.0

Update = bytes | None
"""A view encoded as the JSON of `GET /v1/track/{token}`, or None once the link has closed."""


class _Watched:
    """A job with sockets open in this process."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.mailboxes: set[asyncio.Queue[Update]] = set()
        self.refreshing: asyncio.Task | None = None
        self.stale = False


class LiveTracking:
    def __init__(
        self, dsn: str, *, timeout_s: float, sessionmaker: async_sessionmaker[AsyncSession], router: Router
    ) -> None:
        self._dsn = dsn
        self._deadline = Deadline(timeout_s)
        self._sessionmaker = sessionmaker
        self._router = router
        self._jobs: dict[str, _Watched] = {}
        self._listener: asyncio.Task | None = None
        self._listening = asyncio.Event()

    async def view(self, token: str) -> TrackingView | None:
        async with self._sessionmaker() as session:
            return await services.view(token, session=session, router=self._router, now=datetime.now(UTC))

    async def job_id(self, token: str) -> uuid.UUID | None:
        async with self._sessionmaker() as session:
            return await services.job_id(token, session=session)

    @asynccontextmanager
    async def watch(self, job_id: uuid.UUID, token: str) -> AsyncIterator[asyncio.Queue[Update]]:
        """The job's updates for one socket, from now until the context ends."""
        await self._listen()
        key = str(job_id)
        watched = self._jobs.setdefault(key, _Watched(token))
        mailbox: asyncio.Queue[Update] = asyncio.Queue(maxsize=1)
        watched.mailboxes.add(mailbox)
        try:
            yield mailbox
        finally:
            watched.mailboxes.discard(mailbox)
            if not watched.mailboxes and self._jobs.get(key) is watched:
                del self._jobs[key]

    async def close(self) -> None:
        tasks = [w.refreshing for w in self._jobs.values() if w.refreshing is not None]
        if self._listener is not None:
            tasks.append(self._listener)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _listen(self) -> None:
        """Listening starts with the first socket (a process that serves none holds no connection for it);
        a socket reads its first view only once changes can no longer slip by unheard."""
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen_forever(), name="live-tracking")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), LISTENING_WAIT_S)

    async def _listen_forever(self) -> None:
        failures = 0
        while True:
            try:
                # Bounded like every connection (a frozen database fails the attempt, not hangs it); an idle
                # listener notices a silent peer on TCP by its keepalives.
                async with await connect(self._dsn, deadline=self._deadline, autocommit=True) as connection:
                    await connection.execute(f"LISTEN {CHANNEL}")
                    if failures:
                        log.info("live tracking listens again; reading the %d watched jobs afresh", len(self._jobs))
                        for watched in list(self._jobs.values()):
                            self._changed(watched)
                    failures = 0
                    self._listening.set()
                    async for notification in connection.notifies():
                        watched = self._jobs.get(notification.payload)
                        if watched is not None:
                            self._changed(watched)
            except (psycopg.Error, OSError) as exc:
                self._listening.clear()
                wait = RECONNECT_S[min(failures, len(RECONNECT_S) - 1)]
                failures += 1
                log.warning("live tracking stopped listening (%s); again in %.1f s", exc, wait)
                await asyncio.sleep(wait)

    def _changed(self, watched: _Watched) -> None:
        if watched.refreshing is None:
            watched.refreshing = asyncio.create_task(self._refresh(watched))
        else:
            watched.stale = True

    async def _refresh(self, watched: _Watched) -> None:
        try:
            while True:
                watched.stale = False
                try:
                    view = await self.view(watched.token)
                except Exception:  # the next notification (or the page's own polling) tries again
                    log.exception("recomputing a live tracking view failed")
                    return
                update = None if view is None else msgspec.json.encode(view)
                for mailbox in watched.mailboxes:
                    if mailbox.full():
                        mailbox.get_nowait()
                    mailbox.put_nowait(update)
                if not watched.stale:
                    return
        finally:
            watched.refreshing = None


@asynccontextmanager
async def live_tracking(app: Litestar) -> AsyncIterator[None]:
    """The process's hub of live tracking sockets (after the session factory and the ETA router exist)."""
    hub = LiveTracking(
        libpq_url(database_url(app.state.settings.database)),
        timeout_s=app.state.settings.database.timeout_s,
        sessionmaker=app.state.sessionmaker,
        router=app.state.eta_router,
    )
    app.state.live_tracking = hub
    try:
        yield
    finally:
        await hub.close()
