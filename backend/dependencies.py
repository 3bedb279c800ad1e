"""What handlers are given: the request's session and the process's long-lived services, as Litestar
dependencies (`create_app` registers `providers(state)`). The app's lifespans create the services and keep
them in its state; handlers name what they need (`queue: Queue`) and never look in `app.state` themselves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import procrastinate
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.presence.recorder import PingRecorder
from backend.settings import WebhookSettings
from backend.tracking.eta import Router
from backend.tracking.live import LiveTracking
from matching import MatchSettings

Queue = NamedDependency[procrastinate.App]
"""The job queue (`queue`): dispatch defers its pushes and deadlines on it."""
Recorder = NamedDependency[PingRecorder]
"""The group commit for location pings (`ping_recorder`)."""
# Any, not Router: Litestar checks a dependency with isinstance, which a Protocol that is not runtime-checkable
# refuses (every request would answer 500).
EtaRouter = NamedDependency[Any]
"""The configured ETA router (`eta_router`), a `backend.tracking.eta.Router`."""
MatchConfig = NamedDependency[MatchSettings]
"""How candidates are ranked (`match_settings`): the ETA model configured by TRUCKROLL_ETA_*, as tracking uses it."""
LiveHub = NamedDependency[LiveTracking]
"""The process's hub of live tracking sockets (`live_tracking`)."""
# Any: obstore's store classes are several, with no common base to check against.
AttachmentStore = NamedDependency[Any]
"""The object store of attachments' bytes (`attachment_store`), an obstore store (backend.closing.storage)."""
Sessions = NamedDependency[async_sessionmaker]
"""Sessions that outlive the handler (`sessionmaker`): for a streamed answer read while it is sent (the request's
`db_session` is closed when the handler returns, before the body is sent)."""
WebhookConfig = NamedDependency[WebhookSettings]
"""Where webhooks may be sent (`webhook_settings`): TRUCKROLL_WEBHOOK_ALLOW_PRIVATE."""


def providers(state: State) -> dict[str, Provide]:
    """The app's dependencies by name, reading the app's `state` (the State given to Litestar is `app.state`).

    The providers take no parameters: resolving a `state` parameter costs every request ~6 µs (a location
    ping's budget is ~100 µs); a closure, ~1 µs."""

    async def db_session() -> AsyncIterator[AsyncSession]:
        async with state.sessionmaker() as session:
            yield session

    matching = state.settings.matching

    async def match_settings() -> MatchSettings:
        return matching

    async def queue() -> procrastinate.App:
        return state.queue

    async def ping_recorder() -> PingRecorder:
        return state.ping_recorder

    async def eta_router() -> Router:
        return state.eta_router

    async def live_tracking() -> LiveTracking:
        return state.live_tracking

    async def attachment_store() -> Any:
        return state.attachment_store

    async def sessionmaker() -> async_sessionmaker:
        return state.sessionmaker

    async def webhook_settings() -> WebhookSettings:
        return state.settings.webhooks

    return {
        "db_session": Provide(db_session),
        "queue": Provide(queue),
        "match_settings": Provide(match_settings),
        "ping_recorder": Provide(ping_recorder),
        "eta_router": Provide(eta_router),
        "live_tracking": Provide(live_tracking),
        "attachment_store": Provide(attachment_store),
        "sessionmaker": Provide(sessionmaker),
        "webhook_settings": Provide(webhook_settings),
    }
