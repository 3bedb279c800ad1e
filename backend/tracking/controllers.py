"""The customer's tracking link. No credential: the unguessable token in the link is the credential."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from litestar import Controller, Litestar, MediaType, Request, Response, Router, get
from litestar.datastructures import ResponseHeader
from litestar.exceptions import HTTPException, NotFoundException, TooManyRequestsException
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, Parameter

from backend.db.engine import DbSession
from backend.settings import TrackingSettings
from backend.tracking import services
from backend.tracking.eta import open_router
from backend.tracking.schemas import TrackingError, TrackingView

# The token is in the URL: it must not leak to another site through the Referer header (a map tile
# server, a link on the page), nor be kept by a shared cache.
PRIVATE_HEADERS = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
NO_LINK = "no such tracking link (or it has closed)"


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
        ),
        response_headers=[ResponseHeader(name=k, value=v) for k, v in PRIVATE_HEADERS.items()],
        responses={
            404: ResponseSpec(TrackingError, description="Unknown link, or closed 24 h after completion/cancellation"),
            429: ResponseSpec(TrackingError, description="Too many requests from this address; see `Retry-After`"),
        },
    )
    async def track(
        self,
        request: Request,
        db_session: DbSession,
        tracking_token: FromPath[str] = Parameter(description="the token from the tracking link"),
    ) -> TrackingView:
        out = await services.view(
            tracking_token,
            session=db_session,
            router=request.app.state.eta_router,
            now=datetime.now(UTC),
        )
        if out is None:
            raise NotFoundException(NO_LINK)
        return out


def _private_error(_: Request, exc: HTTPException) -> Response:
    headers = {**(exc.headers or {}), **PRIVATE_HEADERS}
    if isinstance(exc, TooManyRequestsException) and "RateLimit-Reset" in headers:
        headers["Retry-After"] = headers["RateLimit-Reset"]
    return Response(
        {"status_code": exc.status_code, "detail": exc.detail},
        status_code=exc.status_code,
        headers=headers,
        media_type=MediaType.JSON,
    )


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
    )
    return Router(
        path="/",
        route_handlers=[TrackingController],
        middleware=[limit.middleware],
        exception_handlers={NotFoundException: _private_error, TooManyRequestsException: _private_error},
    )
