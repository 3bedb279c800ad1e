"""The customer's tracking link: the JSON view, its live socket and the page. No credential: the unguessable
token in the link is the credential."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from litestar import Controller, Litestar, MediaType, Request, Response, Router, WebSocket, get, websocket
from litestar.datastructures import ResponseHeader
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException, NotFoundException, TooManyRequestsException, WebSocketDisconnect
from litestar.middleware.rate_limit import RateLimitConfig, RateLimitMiddleware
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, Parameter
from litestar.types import ASGIApp, Receive, Scope, Send

from backend.db.engine import DbSession
from backend.dependencies import EtaRouter, LiveHub
from backend.settings import TrackingSettings
from backend.tracking import page, services
from backend.tracking.eta import open_router
from backend.tracking.live import Update
from backend.tracking.schemas import TrackingError, TrackingView

# The token is in the URL: it must not leak to another site through the Referer header (a map tile
# server, a link on the page), nor be kept by a shared cache.
PRIVATE_HEADERS = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
NO_LINK = "no such tracking link (or it has closed)"
# Close codes of the live socket. A browser's script never sees the HTTP status of a refused WebSocket
# handshake (only a bare 1006), so the socket is accepted and then closed with a code in the range kept for
# applications, echoing the HTTP status: the page can tell "stop trying" (4404) from "come back later".
CLOSED_LINK = 4404
TOO_MANY = 4429

LIVE_DESCRIPTION = """

**Live updates**: a WebSocket at `/v1/track/{tracking_token}/live` (no credential, no subprotocol) sends
this same JSON object as a text message on connect and again after every change of status, technician,
ETA or position, whichever server process the change reached. The server sends only; messages from the
client are ignored. An unknown or closed link is accepted and then closed with code **4404** (reason
`no such tracking link (or it has closed)`): do not reconnect. Connects count against the same per-client
rate limit as this route; over it, the socket is closed with code **4429** and a reason that says when to
retry. Any other close: reconnect with backoff (and read this route meanwhile). The handshake response
carries `Referrer-Policy: no-referrer`."""


@asynccontextmanager
async def eta_router(app: Litestar) -> AsyncIterator[None]:
    """The configured ETA router for the life of the app (an OSRM router holds an HTTP client)."""
    async with open_router(app.state.settings.tracking) as router:
        app.state.eta_router = router
        yield


class TrackingController(Controller):
    path = "/v1/track"
    tags = ["customer"]
    security = [{}]  # no credential: the token in the path is the credential

    @get(
        "/{tracking_token:str}",
        operation_id="trackJob",
        summary="Follow a job's technician: status, first name, ETA and (on the way or on site) position",
        description=(
            "For the customer, through the link returned when the job was posted. `technician` is set from "
            "`assigned` on (first name only; null again if the job is cancelled). `technician_location` is "
            "shown only while the job is `en_route` or `on_site`. `eta_s` is the estimated seconds to arrival "
            "while `en_route` (null until a position is known) and **0 once `on_site`** (arrived); `eta_at` is "
            "now + `eta_s`, null when `eta_s` is. 404 for an unknown link, and once the job has been completed "
            "or cancelled for more than 24 h. Rate-limited per client address (default 60 a minute): 429 with "
            "`Retry-After`. Responses carry `Referrer-Policy: no-referrer` and `Cache-Control: no-store`."
            + LIVE_DESCRIPTION
        ),
        response_headers=[ResponseHeader(name=k, value=v) for k, v in PRIVATE_HEADERS.items()],
        responses={
            404: ResponseSpec(
                TrackingError,
                generate_examples=False,
                description="Unknown link, or closed 24 h after completion/cancellation",
            ),
            429: ResponseSpec(
                TrackingError,
                generate_examples=False,
                description="Too many requests from this address; see `Retry-After`",
            ),
        },
    )
    async def track(
        self,
        db_session: DbSession,
        eta_router: EtaRouter,
        tracking_token: FromPath[str] = Parameter(description="the token from the tracking link"),
    ) -> TrackingView:
        out = await services.view(tracking_token, session=db_session, router=eta_router, now=datetime.now(UTC))
        if out is None:
            raise NotFoundException(NO_LINK)
        return out

    # WebSocket routes have no place in OpenAPI 3.1: the socket is documented in trackJob's description.
    @websocket("/{tracking_token:str}/live", name="trackJobLive")
    async def live(self, socket: WebSocket, tracking_token: FromPath[str], live_tracking: LiveHub) -> None:
        await socket.accept(headers=PRIVATE_HEADERS)
        job_id = await live_tracking.job_id(tracking_token)
        if job_id is None:
            await socket.close(code=CLOSED_LINK, reason=NO_LINK)
            return
        # Watching starts before the first view is read, so that no change falls between the two.
        async with live_tracking.watch(job_id, tracking_token) as updates:
            first = await live_tracking.view(tracking_token)
            if first is None:
                await socket.close(code=CLOSED_LINK, reason=NO_LINK)
                return
            await socket.send_json(first)
            receiving = asyncio.create_task(_until_disconnect(socket))
            forwarding = asyncio.create_task(_forward(socket, updates))
            done, pending = await asyncio.wait((receiving, forwarding), return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                    await task
            for task in done:
                with contextlib.suppress(WebSocketDisconnect):
                    task.result()


async def _until_disconnect(socket: WebSocket) -> None:
    while (await socket.receive())["type"] != "websocket.disconnect":
        continue


async def _forward(socket: WebSocket, updates: asyncio.Queue[Update]) -> None:
    while (update := await updates.get()) is not None:
        await socket.send_data(update)
    await socket.close(code=CLOSED_LINK, reason=NO_LINK)


def _page_error(_: Request, exc: HTTPException) -> Response:
    headers = {**(exc.headers or {}), **PRIVATE_HEADERS}
    if isinstance(exc, TooManyRequestsException):
        body = page.render_message("Please wait a moment", "Too many requests from this address: try again shortly.")
    else:
        body = page.render_message("Link not found", "This tracking link does not exist or has closed.")
    return Response(body, status_code=exc.status_code, headers=headers, media_type=MediaType.HTML)


class TrackingPageController(Controller):
    path = "/t"
    tags = ["customer"]
    security = [{}]  # the token in the path is the credential
    exception_handlers = {NotFoundException: _page_error, TooManyRequestsException: _page_error}

    @get(
        "/{tracking_token:str}",
        operation_id="trackJobPage",
        summary="The customer's tracking page (HTML): status, first name, ETA and a map, updating live",
        description=(
            "The mobile-first page a customer opens from the link in a text message. The HTML as served states "
            "the status, the technician's first name, the ETA (as text and as a clock time, in UTC until the "
            "page's script shows local times) and, on the way or on site, the last position, so it is useful "
            "without JavaScript; with it, the page follows the live WebSocket (see trackJob), reconnects with "
            "backoff and reads trackJob while the socket is down. The map (OpenStreetMap tiles) is an extra: "
            "without tiles the page says the same in text. Unknown or closed links: a 404 HTML page. "
            "Rate-limited with the other tracking routes (429 HTML page with `Retry-After`). Responses carry "
            "`Referrer-Policy: no-referrer`, `Cache-Control: no-store` and a Content-Security-Policy that "
            "allows only the page's own inline script and style (by hash), the socket to this origin and the "
            "map tiles."
        ),
        media_type=MediaType.HTML,
        response_headers=[
            *(ResponseHeader(name=k, value=v) for k, v in PRIVATE_HEADERS.items()),
            ResponseHeader(
                name="Content-Security-Policy",
                documentation_only=True,
                description="default-src 'none'; the page's inline script and style by hash; the map tiles",
            ),
        ],
        responses={
            404: ResponseSpec(
                str,
                generate_examples=False,
                description="Unknown link, or closed 24 h after completion",
                media_type=MediaType.HTML,
            ),
            429: ResponseSpec(
                str,
                generate_examples=False,
                description="Too many requests from this address",
                media_type=MediaType.HTML,
            ),
        },
    )
    async def show(
        self,
        db_session: DbSession,
        eta_router: EtaRouter,
        tracking_token: FromPath[str] = Parameter(description="the token from the tracking link"),
    ) -> Response[str]:
        now = datetime.now(UTC)
        view = await services.view(tracking_token, session=db_session, router=eta_router, now=now)
        if view is None:
            raise NotFoundException(NO_LINK)
        headers = {**PRIVATE_HEADERS, "Content-Security-Policy": page.page().content_security_policy}
        return Response(page.render(view, now), media_type=MediaType.HTML, headers=headers)


def _private_error(_: Request, exc: HTTPException) -> Response:
    headers = {**(exc.headers or {}), **PRIVATE_HEADERS}
    return Response(
        {"status_code": exc.status_code, "detail": exc.detail},
        status_code=exc.status_code,
        headers=headers,
        media_type=MediaType.JSON,
    )


class TrackingRateLimit(RateLimitMiddleware):
    """Litestar's limiter, counting the live socket's connects too (it counts HTTP requests only), in the
    same store and budget as the other tracking routes, and saying when to come back: `Retry-After` on a
    429, the same in the reason of a socket it closes."""

    def __init__(self, app: ASGIApp, config: RateLimitConfig) -> None:
        super().__init__(app, config)
        self.scopes = {ScopeType.HTTP, ScopeType.WEBSOCKET}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except TooManyRequestsException as exc:
            retry = (exc.headers or {}).get("RateLimit-Reset", "60")
            if scope["type"] != ScopeType.WEBSOCKET:
                exc.headers = {**(exc.headers or {}), "Retry-After": retry}
                raise
            socket = WebSocket(scope, receive, send)
            await socket.accept(headers=PRIVATE_HEADERS)
            await socket.close(code=TOO_MANY, reason=f"too many requests from this address; retry in {retry} s")


def tracking_router(settings: TrackingSettings) -> Router:
    """The customer-facing routes, rate-limited per client address against enumeration of tokens.

    The limiter is Litestar's own, with its default in-memory store: each server process counts on its
    own, so with N processes a client may make up to N times the limit. Behind a proxy the client
    address must be the real one (the ASGI server's forwarded-header support), or every customer
    shares the proxy's budget.
    """
    limit = RateLimitConfig(
        rate_limit=("minute", settings.rate_limit_per_minute),
        store="tracking_rate_limit",
        middleware_class=TrackingRateLimit,
    )
    return Router(
        path="/",
        route_handlers=[TrackingController, TrackingPageController],
        middleware=[limit.middleware],
        exception_handlers={NotFoundException: _private_error, TooManyRequestsException: _private_error},
    )
