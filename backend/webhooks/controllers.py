from __future__ import annotations

import uuid
from datetime import UTC, datetime

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody

from backend.auth import org_only
from backend.db.engine import DbSession
from backend.dependencies import WebhookConfig
from backend.idempotency import step
from backend.openapi import ErrorBody
from backend.pagination import Cursor, Limit
from backend.webhooks import services
from backend.webhooks.delivery import SCHEDULE_DOC
from backend.webhooks.schemas import (
    TYPES_DOC,
    Deliveries,
    Redelivery,
    WebhookCreated,
    WebhookIn,
    WebhookOut,
    WebhookPatch,
    Webhooks,
)

DELIVERY_DOC = (
    "Each event is POSTed as `{id, type, created_at, org_id, data}` (`data.job`: the job as `GET /v1/jobs/{id}` "
    "shows it when the change commits, without `events`) with the Standard Webhooks headers `webhook-id` (the event "
    "id: dedupe on it), `webhook-timestamp` and `webhook-signature` (`v1,` + base64 HMAC-SHA256 keyed with the "
    "secret's decoded bytes over `{webhook-id}.{webhook-timestamp}.{body}`). 2xx is delivered. Order is not "
    "guaranteed; each event is delivered at least once. " + SCHEDULE_DOC
)
URL_DOC = (
    "`url` must be https:// (http:// too where TRUCKROLL_WEBHOOK_ALLOW_PRIVATE is on, as in development); in "
    "production a URL whose host resolves to a loopback, private, link-local, multicast, unspecified or reserved "
    "address is 422, and it is checked again on the address connected to at each delivery."
)


class WebhookController(Controller):
    path = "/v1/webhooks"
    tags = ["webhooks"]
    guards = [org_only]

    @post(
        "/",
        operation_id="createWebhook",
        summary="Register an endpoint for this organisation's events",
        description=(
            f'Event types: {TYPES_DOC}; `["*"]` takes them all. {URL_DOC} The `secret` is shown only in this '
            "answer. Registering a URL this organisation registered before updates that endpoint (same id and "
            "delivery log), turns it back on if it was disabled and gives it a new secret. Honours "
            f"`Idempotency-Key`. {DELIVERY_DOC}"
        ),
    )
    async def create(
        self, request: Request, data: JSONBody[WebhookIn], db_session: DbSession, webhook_settings: WebhookConfig
    ) -> Response[WebhookCreated]:
        org_id = request.user.org_id
        return await step(
            request,
            db_session,
            lambda now: services.create(org_id, data, settings=webhook_settings, session=db_session, now=now),
            status=201,
        )

    @get("/", operation_id="listWebhooks", summary="This organisation's endpoints (oldest first), without secrets")
    async def list_webhooks(
        self, request: Request, db_session: DbSession, limit: Limit = 50, cursor: Cursor = None
    ) -> Webhooks:
        return await services.list_webhooks(request.user.org_id, limit=limit, cursor=cursor, session=db_session)

    @get("/{webhook_id:uuid}", operation_id="getWebhook", summary="One endpoint, without its secret")
    async def get_webhook(self, request: Request, webhook_id: FromPath[uuid.UUID], db_session: DbSession) -> WebhookOut:
        return await services.get(request.user.org_id, webhook_id, session=db_session)

    @patch(
        "/{webhook_id:uuid}",
        operation_id="updateWebhook",
        summary="Change an endpoint, or turn it off or back on",
        description=(
            f"Omitted fields are unchanged. `enabled: true` turns back on an endpoint that was disabled (after 3 days "
            f"of failures, or by `enabled: false`) and forgets its failures. {URL_DOC} 409 when another endpoint of "
            "this organisation has the new URL."
        ),
        responses={409: ResponseSpec(ErrorBody, description="Another endpoint has this URL", generate_examples=False)},
    )
    async def update_webhook(
        self,
        request: Request,
        webhook_id: FromPath[uuid.UUID],
        data: JSONBody[WebhookPatch],
        db_session: DbSession,
        webhook_settings: WebhookConfig,
    ) -> WebhookOut:
        out = await services.update_webhook(
            request.user.org_id,
            webhook_id,
            data,
            settings=webhook_settings,
            session=db_session,
            now=datetime.now(UTC),
        )
        await db_session.commit()
        return out

    @delete("/{webhook_id:uuid}", operation_id="deleteWebhook", summary="Remove an endpoint and its delivery log")
    async def remove(self, request: Request, webhook_id: FromPath[uuid.UUID], db_session: DbSession) -> None:
        await services.remove(request.user.org_id, webhook_id, session=db_session)
        await db_session.commit()

    @get(
        "/{webhook_id:uuid}/deliveries",
        operation_id="listWebhookDeliveries",
        summary="An endpoint's delivery log, newest first",
        description="One delivery per event sent to this endpoint: its status, attempts and the last answer.",
    )
    async def deliveries(
        self,
        request: Request,
        webhook_id: FromPath[uuid.UUID],
        db_session: DbSession,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> Deliveries:
        return await services.deliveries(
            request.user.org_id, webhook_id, limit=limit, cursor=cursor, session=db_session
        )

    @post(
        "/{webhook_id:uuid}/deliveries/{delivery_id:uuid}/redeliver",
        operation_id="redeliverWebhook",
        summary="Send a delivered or failed event again",
        description=(
            "The same body under the same `webhook-id`, queued at once (202), then retried as any delivery. 409 "
            "while the delivery is still pending, or while the endpoint is disabled. Honours `Idempotency-Key`."
        ),
        status_code=202,
    )
    async def redeliver(
        self, request: Request, webhook_id: FromPath[uuid.UUID], delivery_id: FromPath[uuid.UUID], db_session: DbSession
    ) -> Response[Redelivery]:
        org_id = request.user.org_id
        return await step(
            request,
            db_session,
            lambda now: services.redeliver(org_id, webhook_id, delivery_id, session=db_session, now=now),
            status=202,
        )
