from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, JSONBody

from backend.auth import technician_only
from backend.db.engine import DbSession
from backend.idempotency import idempotent
from backend.jobs import flows, services
from backend.jobs.controllers import conflict
from backend.jobs.schemas import DeclineBody, MyOffer, TechnicianJob
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
        technician_id = request.user.technician_id

        async def run() -> tuple[int, bytes]:
            try:
                _, job_id = await flows.accept(
                    offer_id, technician_id, session=db_session, queue=request.app.state.queue, now=datetime.now(UTC)
                )
            except LookupError:
                raise NotFoundException(NO_OFFER) from None
            except flows.Conflict as exc:
                await db_session.rollback()
                raise conflict(exc) from None
            return 200, msgspec.json.encode(await services.technician_view(job_id, session=db_session))

        return await idempotent(request, db_session, run)

    @post("/{offer_id:uuid}/decline", operation_id="declineOffer", status_code=200, summary="Decline an offer")
    async def decline(
        self,
        request: Request,
        offer_id: FromPath[uuid.UUID],
        db_session: DbSession,
        data: JSONBody[DeclineBody | None] = None,
    ) -> Response[dict]:
        technician_id = request.user.technician_id

        async def run() -> tuple[int, bytes]:
            try:
                await flows.decline(
                    offer_id,
                    technician_id,
                    data.reason if data else None,
                    session=db_session,
                    queue=request.app.state.queue,
                    now=datetime.now(UTC),
                )
            except LookupError:
                raise NotFoundException(NO_OFFER) from None
            except flows.Conflict as exc:
                await db_session.rollback()
                raise conflict(exc) from None
            return 200, msgspec.json.encode({"id": str(offer_id), "status": "declined"})

        return await idempotent(request, db_session, run)


class MyWorkController(Controller):
    path = "/v1/me"
    tags = ["technician"]
    guards = [technician_only]

    @get("/offers", operation_id="getMyOffers", summary="My pending offers")
    async def offers(self, request: Request, db_session: DbSession) -> Page[MyOffer]:
        items = await services.pending_offers(request.user.technician_id, datetime.now(UTC), session=db_session)
        return Page(items=items, next_cursor=None)

    @get("/jobs", operation_id="getMyJobs", summary="The jobs assigned to me, most recent window first")
    async def jobs(self, request: Request, db_session: DbSession) -> Page[TechnicianJob]:
        items = await services.technician_jobs(request.user.technician_id, session=db_session)
        return Page(items=items, next_cursor=None)
