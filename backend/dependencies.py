"""What handlers are given: the request's session and the process's long-lived services, as Litestar
dependencies (`create_app` registers `providers()`). The app's lifespans create the services and keep them in
its state; handlers name what they need (`queue: Queue`) and never look in `app.state` themselves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import procrastinate
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from sqlalchemy.ext.asyncio import AsyncSession

from backend.presence.recorder import PingRecorder
from backend.tracking.eta import Router
from backend.tracking.live import LiveTracking

Queue = NamedDependency[procrastinate.App]
"""The job queue (`queue`): flows defer their pushes and deadlines on it."""
Recorder = NamedDependency[PingRecorder]
"""The group commit for location pings (`ping_recorder`)."""
# Any, not Router: Litestar checks a dependency with isinstance, which a Protocol that is not runtime-checkable
# refuses (every request would answer 500).
EtaRouter = NamedDependency[Any]
"""The configured ETA router (`eta_router`), a `backend.tracking.eta.Router`."""
LiveHub = NamedDependency[LiveTracking]
"""The process's hub of live tracking sockets (`live_tracking`)."""


async def provide_db_session(state: State) -> AsyncIterator[AsyncSession]:
    async with state.sessionmaker() as session:
        yield session


async def provide_queue(state: State) -> procrastinate.App:
    return state.queue


async def provide_ping_recorder(state: State) -> PingRecorder:
    return state.ping_recorder


async def provide_eta_router(state: State) -> Router:
    return state.eta_router


async def provide_live_tracking(state: State) -> LiveTracking:
    return state.live_tracking


def providers() -> dict[str, Provide]:
    """The app's dependencies by name (a new set for each app: a `Provide` keeps per-app state)."""
    return {
        "db_session": Provide(provide_db_session),
        "queue": Provide(provide_queue),
        "ping_recorder": Provide(provide_ping_recorder),
        "eta_router": Provide(provide_eta_router),
        "live_tracking": Provide(provide_live_tracking),
    }
