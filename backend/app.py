"""The Litestar application. `create_app(settings)` composes the domains; nothing runs at import time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from litestar import Litestar, MediaType, Request, Response
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.exceptions import ValidationException
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ControllerRouterHandler

from backend.auth import PUBLIC_PATHS, AuthMiddleware, IdTokenVerifier, ServiceUnavailable
from backend.closing.controllers import (
    ApprovalController,
    OrgSettingsController,
    PayableController,
    ProofOfWorkController,
    export_payables,
)
from backend.closing.money import JsonResponse
from backend.closing.storage import attachment_store
from backend.compliance.controllers import (
    ComplianceController,
    CredentialController,
    EngagementController,
    OrgController,
)
from backend.db.engine import RETRY_AFTER_S, UNAVAILABLE, database_url, make_engine, make_sessionmaker
from backend.dependencies import providers
from backend.errors import DomainError, domain_error, validation_error
from backend.health import health, readiness
from backend.jobs.controllers import JobController, TechnicianJobController
from backend.me.controllers import MeController
from backend.observability import REQUEST_ID_HEADER, RequestLog, configure_logging, remember_failure
from backend.offers.controllers import OfferController
from backend.openapi import ClosedStructs, DocumentedErrors, LocalSwaggerUI
from backend.orgs.controllers import AdminOrgController
from backend.presence.recorder import PingRecorder
from backend.protocol import JsonRequest, allow_every_method
from backend.push import make_sender
from backend.queue import WORKER_OPTIONS, Runtime, run_supervised_worker
from backend.ratings.controllers import RatingController
from backend.settings import Settings, libpq_url, load_settings
from backend.tasks import make_queue
from backend.technicians.controllers import TechnicianController
from backend.templates.controllers import JobTemplateController
from backend.tracking.controllers import eta_router, tracking_router
from backend.tracking.live import live_tracking
from backend.webhooks.controllers import WebhookController

API_DESCRIPTION = """\
Truckroll dispatches on-site jobs to a curated pool of field technicians.

Callers authenticate with `Authorization: Bearer <credential>`: the operator's token, an organisation
API key (`trk_…`) or, for technicians, a Firebase ID token. Bodies are JSON (`Content-Type: application/json`,
UTF-8). Errors have the shape `{"status_code", "detail", "extra"}`; `detail` names the offending field for
400/422. Each operation lists every status it can answer: 401 (no credential, or an invalid one), 403 (a
credential of the wrong kind, or a Firebase account not onboarded by any organisation), 404 (also for another
organisation's objects), 413 (a body over `TRUCKROLL_MAX_BODY_BYTES`, 1 MiB by default), 415 (a body that is
not JSON) and 503 with `Retry-After` (the database or Firebase unreachable) among them.

Every response carries `X-Request-ID`: the caller's own (1..128 characters of `A-Za-z0-9._-`) or a new one. It
is in the server's log line for the request: quote it when reporting a problem.

`Idempotency-Key` (1..255 characters) is honoured on the POSTs that create or change state (jobs and their
actions, offers, ratings, technicians, closing the work; an attachment upload is deduplicated by its bytes
instead): a retry with the same key and body answers the first response byte for byte; the same key with
another body (or path) is 422; while the first request is still running, 409. A request that died before
answering leaves its key free. Keys are kept 48 h.
"""


@asynccontextmanager
async def _resources(app: Litestar) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    engine = make_engine(settings.database)
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.id_tokens = IdTokenVerifier(settings.auth.firebase_project_id)
    app.state.technician_ids = {}
    recorder = PingRecorder(libpq_url(database_url(settings.database)), timeout_s=settings.database.timeout_s)
    recorder.start()
    app.state.ping_recorder = recorder
    queue = make_queue(database_url(settings.database))
    app.state.queue = queue
    worker = None
    sender = (
        make_sender(settings.push, settings.auth.firebase_project_id) if settings.worker.mode == "inprocess" else None
    )
    try:
        async with queue.open_async():
            if sender is not None:
                runtime = Runtime(
                    sessionmaker=app.state.sessionmaker,
                    sender=sender,
                    tracking=settings.tracking,
                    matching=settings.matching,
                )
                worker = asyncio.create_task(
                    run_supervised_worker(queue, additional_context={"runtime": runtime}, **WORKER_OPTIONS),
                    name="queue-worker",
                )
            yield
    finally:
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        if sender is not None:
            await sender.aclose()
        await recorder.stop()
        app.state.id_tokens.close()
        await engine.dispose()


def _unavailable(_: Request, exc: Exception) -> Response:
    detail = str(exc) if isinstance(exc, ServiceUnavailable) else "the database is unavailable"
    return Response(
        {"status_code": 503, "detail": detail},
        status_code=503,
        headers={"Retry-After": RETRY_AFTER_S},
        media_type=MediaType.JSON,
    )


def create_app(
    settings: Settings | None = None, *, extra_route_handlers: Sequence[ControllerRouterHandler] = ()
) -> Litestar:
    settings = settings or load_settings()
    state = State({"settings": settings})
    app = Litestar(
        route_handlers=[
            health,
            readiness,
            AdminOrgController,
            TechnicianController,
            CredentialController,
            OrgController,
            ComplianceController,
            EngagementController,
            MeController,
            JobController,
            TechnicianJobController,
            RatingController,
            OfferController,
            ProofOfWorkController,
            ApprovalController,
            PayableController,
            export_payables,
            OrgSettingsController,
            JobTemplateController,
            WebhookController,
            tracking_router(settings.tracking),
            *extra_route_handlers,
        ],
        state=state,
        lifespan=[_resources, eta_router, live_tracking, attachment_store],
        dependencies=providers(state),
        middleware=[DefineMiddleware(AuthMiddleware, exclude=[f"^{p}" for p in PUBLIC_PATHS])],
        exception_handlers={
            DomainError: domain_error,
            ValidationException: validation_error,
            ServiceUnavailable: _unavailable,
            **dict.fromkeys(UNAVAILABLE, _unavailable),
        },
        request_max_body_size=settings.server.max_body_bytes,
        request_class=JsonRequest,
        # Money is exact: decimals are written as JSON numbers, never strings (backend.closing.money).
        response_class=JsonResponse,
        after_exception=[remember_failure],
        cors_config=_cors(settings.server.cors_origins),
        plugins=[DocumentedErrors(), ClosedStructs()],
        openapi_config=OpenAPIConfig(
            title="Truckroll",
            version="1.0.0",
            description=API_DESCRIPTION,
            path="/schema",
            render_plugins=[LocalSwaggerUI()],
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="Operator token, organisation API key, or Firebase ID token",
                    )
                }
            ),
            security=[{"bearer": []}],
        ),
        # The process's logging is configured where it starts (`app_from_env`), not by each app.
        logging_config=None,
        debug=False,
    )
    # Outermost, around Litestar's exception handling, CORS and routing: it sees every response.
    app.asgi_handler = RequestLog(app.asgi_handler)
    app.before_send.append(allow_every_method(app))
    return app


def _cors(origins: tuple[str, ...]) -> CORSConfig | None:
    if not origins:
        return None
    return CORSConfig(
        allow_origins=list(origins),
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key", REQUEST_ID_HEADER],
        expose_headers=[REQUEST_ID_HEADER, "Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"],
    )


def app_from_env() -> Litestar:
    """Factory for the ASGI server (`truckroll serve` runs granian with it)."""
    settings = load_settings()
    configure_logging(settings.server.log_format)
    return create_app(settings)
