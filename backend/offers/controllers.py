from __future__ import annotations

import uuid
from datetime import UTC, datetime

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, JSONBody

from backend.auth import technician_only
from backend.db.engine import DbSession
from backend.jobs import flows, services
from backend.jobs.controllers import technician_step
from backend.jobs.schemas import DeclineBody, MyOffer, TechnicianJob
from backend.pagination import Cursor, Limit
from backend.schemas import Page

NO_OFFER = "no such offer for you"


class OfferController(Controller):
    path = "/v1/offers"
    tags = ["technician"]
    guards = [technician_only]

    @post(
        "/{offer_id:uuid}/accept",
        operation_id="acceptOffer",
        status_code=200,
        summary="Accept an offer: the first accept for a job wins",
        description="409 when the job was already taken or the offer expired or was withdrawn; 404 for someone else's offer.",
    )
    async def accept(
        self, request: Request, offer_id: FromPath[uuid.UUID], db_session: DbSession
    ) -> Response[TechnicianJob]:
        async def action(technician_id, now):
            queue = request.app.state.queue
            job_id = await flows.accept(offer_id, technician_id, session=db_session, queue=queue, now=now)
            return await services.technician_view(job_id, session=db_session)

        return await technician_step(request, db_session, action, not_found=NO_OFFER)

    @post("/{offer_id:uuid}/decline", operation_id="declineOffer", status_code=200, summary="Decline an offer")
    async def decline(
        self,
        request: Request,
        offer_id: FromPath[uuid.UUID],
        db_session: DbSession,
        data: JSONBody[DeclineBody | None] = None,
    ) -> Response[dict]:
        async def action(technician_id, now):
            reason = data.reason if data else None
            queue = request.app.state.queue
            await flows.decline(offer_id, technician_id, reason, session=db_session, queue=queue, now=now)
            return {"id": str(offer_id), "status": "declined"}

        return await technician_step(request, db_session, action, not_found=NO_OFFER)


class MyWorkController(Controller):
    path = "/v1/me"
    tags = ["technician"]
    guards = [technician_only]

    @get("/offers", operation_id="getMyOffers", summary="My pending offers")
    async def offers(self, request: Request, db_session: DbSession) -> Page[MyOffer]:
        items = await services.pending_offers(request.user.technician_id, datetime.now(UTC), session=db_session)
        return Page(items=items, next_cursor=None)

    @get("/jobs", operation_id="getMyJobs", summary="The jobs assigned to me, most recent window first")
    async def jobs(
        self, request: Request, db_session: DbSession, limit: Limit = 50, cursor: Cursor = None
    ) -> Page[TechnicianJob]:
        return await services.technician_jobs(
            request.user.technician_id, limit=limit, cursor=cursor, session=db_session
        )
