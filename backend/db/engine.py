"""Engine and session factory, and the one way this process connects to the database.

Nothing connects until the first query. Every connection, the engine's as well as the ping recorder's and
the live-tracking listener's, comes from `connect()`, which bounds each wait on the server: a database that
does not answer (stopped by SIGSTOP, a stalled disk, a network partition) makes the waiting call fail with
an OperationalError after `timeout_s` (the app answers 503) instead of hanging the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import psycopg.errors
import sqlalchemy.exc
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from backend.settings import DatabaseSettings, libpq_url

UNAVAILABLE = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    psycopg.OperationalError,
)
"""What a call on the database raises when the database is down, frozen or unreachable (answered 503)."""
RETRY_AFTER_S = "5"
"""The `Retry-After` of such a 503: seconds before asking again."""

# A silent peer on TCP (a partition, a vanished host) is noticed by an idle connection, such as the
# live-tracking listener's, after about 5 + 3 × 2 s; libpq ignores these on a Unix socket.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}


def database_url(settings: DatabaseSettings) -> str:
    """The configured URL, or the embedded cluster's (which `truckroll serve` / `make run` start)."""
    if settings.url:
        return settings.url
    from infra.postgis import LocalCluster

    return LocalCluster(Path(settings.embedded_root)).url()


class Deadline:
    """How long one wait on a database may last, and what the last waits found: one per pool of connections.

    Once a wait has run out with no answer since, new connections are refused for as long again: those
    requests are answered 503 at once instead of after a wait of their own. Without that, a silent database
    would make a request queued for a pooled connection wait once for a connection and once more to connect,
    and a burst larger than the pool would wait round after round.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._ran_out_at: float | None = None

    def ran_out(self) -> None:
        self._ran_out_at = time.monotonic()

    def answered(self) -> None:
        self._ran_out_at = None

    def raise_if_silent(self) -> None:
        if self._ran_out_at is not None and time.monotonic() - self._ran_out_at < self.seconds:
            raise psycopg.errors.ConnectionTimeout(f"the database did not answer within {self.seconds:g} s")


class _Cursor(psycopg.AsyncCursor):
    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        with self.connection.answer_within():
            return await super().execute(*args, **kwargs)

    async def executemany(self, *args: Any, **kwargs: Any) -> None:
        with self.connection.answer_within():
            await super().executemany(*args, **kwargs)


class BoundedConnection(psycopg.AsyncConnection):
    """A psycopg connection whose round trips (statements, commit, rollback) give up after its deadline.

    Neither cancelling the waiting task nor a server-side `statement_timeout` can bound the wait on a
    server that does not run at all: psycopg answers a cancellation by sending the server a cancel request
    and waiting for it (5 s, then 5 s more: 11 s measured on a frozen server), and a frozen server enforces
    nothing. So when the deadline passes, the socket is shut down under the waiting call: psycopg sees the
    connection end, fails the call at once and marks the connection broken (SQLAlchemy then discards it and
    the pool's others). A server that comes back finds the client gone and rolls the transaction back.
    """

    deadline: Deadline  # set by connect()

    @contextlib.contextmanager
    def answer_within(self) -> Iterator[None]:
        expired = False

        def cut() -> None:
            nonlocal expired
            expired = True
            with contextlib.suppress(OSError, psycopg.Error), socket.socket(fileno=os.dup(self.fileno())) as sock:
                sock.shutdown(socket.SHUT_RDWR)

        timer = asyncio.get_running_loop().call_later(self.deadline.seconds, cut)
        try:
            yield
        except psycopg.OperationalError as exc:
            if expired:
                self.deadline.ran_out()
                raise psycopg.errors.ConnectionTimeout(
                    f"the database did not answer within {self.deadline.seconds:g} s"
                ) from exc
            raise
        finally:
            timer.cancel()
        self.deadline.answered()

    async def commit(self) -> None:
        with self.answer_within():
            await super().commit()

    async def rollback(self) -> None:
        with self.answer_within():
            await super().rollback()


async def connect(conninfo: str, *, deadline: Deadline, **kwargs: Any) -> BoundedConnection:
    """A new connection to `conninfo` (a libpq URL), made within the deadline and bounded by it.

    libpq's own connect_timeout counts whole seconds from 2 up; a frozen server accepts the connection into
    its listen backlog and then never answers the handshake, so the whole connect is given the deadline.
    """
    deadline.raise_if_silent()
    try:
        async with asyncio.timeout(deadline.seconds):
            connection = await BoundedConnection.connect(conninfo, cursor_factory=_Cursor, **KEEPALIVES, **kwargs)
    except TimeoutError:
        deadline.ran_out()
        raise psycopg.errors.ConnectionTimeout(
            f"could not connect to the database within {deadline.seconds:g} s"
        ) from None
    deadline.answered()
    connection.deadline = deadline
    return connection


# Every statement here is short and parameterised. JIT compilation only ever costs them time. And psycopg
# prepares a statement run five times on a connection; a generic plan then spares re-planning it at each
# run, which for the matching walk (CTEs, laterals, sub-plans) took longer than running it (~1 ms of ~4).
# Its plan is checked with auto_explain in tests/integration/test_matching_postgis.py.
CONNECTION_OPTIONS = "-c jit=off -c plan_cache_mode=force_generic_plan"


def make_engine(settings: DatabaseSettings) -> AsyncEngine:
    url = database_url(settings)
    deadline = Deadline(settings.timeout_s)

    async def new_connection() -> BoundedConnection:
        return await connect(libpq_url(url), deadline=deadline, options=CONNECTION_OPTIONS)

    # No pre-ping: it would cost every checkout a round trip, while a connection found dead costs one
    # request a 503 and makes the pool replace all of its connections. A burst larger than the pool queues
    # for a connection up to twice the deadline: a healthy database frees them within milliseconds, and a
    # silent one frees them all within the deadline (the queued requests are then refused at once).
    return create_async_engine(
        url,
        async_creator=new_connection,
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        pool_timeout=2 * settings.timeout_s,
        pool_pre_ping=False,
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


DbSession = NamedDependency[AsyncSession]
"""A request's session (provided by the app as `db_session`); services commit explicitly."""
