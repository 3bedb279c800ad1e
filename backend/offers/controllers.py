from __future__ import annotations

import uuid

from litestar import Controller, Request, Response, post
from litestar.params import FromPath, JSONBody

from backend.auth import technician_only
from backend.db.engine import DbSession
from backend.dependencies import MatchConfig, Queue
from backend.idempotency import step
from backend.jobs import dispatch, services
from backend.jobs.schemas import DeclineBody, TechnicianJob


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
        self, request: Request, offer_id: FromPath[uuid.UUID], db_session: DbSession, queue: Queue
    ) -> Response[TechnicianJob]:
        technician_id = request.user.technician_id

        async def action(now):
            job_id = await dispatch.accept(offer_id, technician_id, session=db_session, queue=queue, now=now)
            return await services.technician_view(job_id, session=db_session)

        return await step(request, db_session, action)

    @post("/{offer_id:uuid}/decline", operation_id="declineOffer", status_code=200, summary="Decline an offer")
    async def decline(
        self,
        request: Request,
        offer_id: FromPath[uuid.UUID],
        db_session: DbSession,
        queue: Queue,
        match_settings: MatchConfig,
        data: JSONBody[DeclineBody | None] = None,
    ) -> Response[dict]:
        technician_id = request.user.technician_id
        reason = data.reason if data else None

        async def action(now):
            await dispatch.decline(
                offer_id, technician_id, reason, session=db_session, queue=queue, match_settings=match_settings, now=now
            )
            return {"id": str(offer_id), "status": "declined"}

        return await step(request, db_session, action)
