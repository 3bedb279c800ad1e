"""`/v1/me`: the calling technician's own routes, whatever domain serves them (presence, offers, jobs)."""

from __future__ import annotations

from datetime import UTC, datetime

from litestar import Controller, Request, delete, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_202_ACCEPTED

from backend.auth import technician_only
from backend.closing import payables
from backend.closing.schemas import Earning
from backend.db.engine import DbSession
from backend.dependencies import Recorder
from backend.errors import BadRequest
from backend.jobs import services as job_services
from backend.jobs.schemas import MyOffer, TechnicianJob
from backend.pagination import Cursor, Limit
from backend.presence import services as presence
from backend.presence.schemas import DeviceOut, DeviceRegister, DutyUpdate, Me, PingBatch, PingsAccepted
from backend.schemas import Page


class MeController(Controller):
    path = "/v1/me"
    tags = ["technician"]
    guards = [technician_only]

    @get("/", operation_id="getMe", summary="The calling technician's profile and pool memberships")
    async def read(self, request: Request, db_session: DbSession) -> Me:
        return await presence.me(request.user.technician_id, session=db_session)

    @put("/duty", operation_id="setDuty", summary="Go on or off duty")
    async def set_duty(self, request: Request, data: JSONBody[DutyUpdate], db_session: DbSession) -> Me:
        return await presence.set_duty(request.user.technician_id, data.on_duty, session=db_session)

    @post(
        "/locations",
        operation_id="postLocations",
        status_code=HTTP_202_ACCEPTED,
        summary="Report positions (1..100 pings)",
        description=(
            "Answered only after the pings are committed. A batch with a ping older than 24 h or more than "
            "2 min in the future is rejected whole (422, naming each bad ping). The latest position is the ping "
            "with the newest `recorded_at`; an older batch arriving late is kept in the history only. "
            "409 with `off_duty` in `detail` while the technician is off duty with no active job."
        ),
    )
    async def post_locations(
        self, request: Request, data: JSONBody[PingBatch], ping_recorder: Recorder
    ) -> PingsAccepted:
        return await presence.record_pings(
            request.user.technician_id, data.pings, recorder=ping_recorder, now=datetime.now(UTC)
        )

    @post("/devices", operation_id="registerDevice", summary="Register a phone's FCM token")
    async def register_device(
        self, request: Request, data: JSONBody[DeviceRegister], db_session: DbSession
    ) -> DeviceOut:
        return await presence.register_device(request.user.technician_id, data.token, data.platform, session=db_session)

    @delete("/devices/{token:str}", operation_id="removeDevice", summary="Forget a phone's FCM token")
    async def remove_device(self, request: Request, token: FromPath[str], db_session: DbSession) -> None:
        await presence.remove_device(request.user.technician_id, token, session=db_session)

    @get("/offers", operation_id="getMyOffers", summary="My pending offers")
    async def offers(self, request: Request, db_session: DbSession) -> Page[MyOffer]:
        items = await job_services.pending_offers(request.user.technician_id, datetime.now(UTC), session=db_session)
        return Page(items=items, next_cursor=None)

    @get(
        "/earnings",
        operation_id="getMyEarnings",
        summary="My payables across every organisation",
        description=(
            "Each payable with the name of the organisation that owes it, in the order of approval (oldest first); "
            "`since` (inclusive, with an offset) filters on `approved_at`."
        ),
    )
    async def earnings(
        self,
        request: Request,
        db_session: DbSession,
        since: FromQuery[datetime | None] = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> Page[Earning]:
        if since is not None and since.tzinfo is None:
            raise BadRequest("since", "needs a time zone offset", source="query")
        return await payables.earnings(
            request.user.technician_id, since=since, limit=limit, cursor=cursor, session=db_session
        )

    @get("/jobs", operation_id="getMyJobs", summary="The jobs assigned to me, most recent window first")
    async def jobs(
        self, request: Request, db_session: DbSession, limit: Limit = 50, cursor: Cursor = None
    ) -> Page[TechnicianJob]:
        return await job_services.technician_jobs(
            request.user.technician_id, limit=limit, cursor=cursor, session=db_session
        )
