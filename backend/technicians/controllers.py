from __future__ import annotations

import uuid
from datetime import UTC, datetime

from litestar import Controller, Request, Response, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody

from backend.auth import org_only
from backend.db.engine import DbSession
from backend.dependencies import MatchConfig, Queue
from backend.idempotency import step
from backend.pagination import Cursor, Limit
from backend.schemas import Page
from backend.technicians import services
from backend.technicians.schemas import TechnicianCreate, TechnicianOut, TechnicianUpdate, Tier


class TechnicianController(Controller):
    path = "/v1/technicians"
    tags = ["talent pool"]
    guards = [org_only]

    @post(
        "/",
        operation_id="onboardTechnician",
        summary="Onboard a technician into this organisation's pool",
        description=(
            "A technician is one person across organisations, identified by `firebase_uid`, with one `id` "
            "everywhere. Onboarding a person another organisation already knows adds a membership to this "
            "pool; their own profile (name, email, phone) is kept as it is. Tier, skills, service area, "
            "notes and `active` are this organisation's own view. Skills are trimmed and lower-cased. "
            "409 when the person is already in this pool. Honours `Idempotency-Key`."
        ),
    )
    async def onboard(
        self, request: Request, data: JSONBody[TechnicianCreate], db_session: DbSession
    ) -> Response[TechnicianOut]:
        org_id = request.user.org_id
        return await step(request, db_session, lambda _: services.onboard(org_id, data, session=db_session), status=201)

    @get("/", operation_id="listTechnicians", summary="List this organisation's pool")
    async def list_pool(
        self,
        request: Request,
        db_session: DbSession,
        limit: Limit = 50,
        cursor: Cursor = None,
        tier: FromQuery[Tier | None] = None,
        active: FromQuery[bool | None] = None,
    ) -> Page[TechnicianOut]:
        return await services.list_pool(
            request.user.org_id, limit=limit, cursor=cursor, tier=tier, active=active, session=db_session
        )

    @get("/{technician_id:uuid}", operation_id="getTechnician", summary="Read a technician of this pool")
    async def read(self, request: Request, technician_id: FromPath[uuid.UUID], db_session: DbSession) -> TechnicianOut:
        return await services.get(request.user.org_id, technician_id, session=db_session)

    @patch(
        "/{technician_id:uuid}",
        operation_id="updateTechnician",
        summary="Change this organisation's view of a technician",
        description=(
            "Fields: `tier`, `skills`, `service_radius_km`, `active`, `notes`. Omitted fields are unchanged. "
            "Setting `active` to false withdraws the technician's pending offers of this organisation's jobs."
        ),
    )
    async def update(
        self,
        request: Request,
        technician_id: FromPath[uuid.UUID],
        data: JSONBody[TechnicianUpdate],
        db_session: DbSession,
        queue: Queue,
        match_settings: MatchConfig,
    ) -> TechnicianOut:
        return await services.update(
            request.user.org_id,
            technician_id,
            data,
            session=db_session,
            queue=queue,
            match_settings=match_settings,
            now=datetime.now(UTC),
        )
