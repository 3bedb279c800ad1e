from __future__ import annotations

from datetime import UTC, datetime

from litestar import Controller, Request, delete, get, post, put
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_202_ACCEPTED

from backend.auth import technician_only
from backend.db.engine import DbSession
from backend.presence import services
from backend.presence.schemas import DeviceOut, DeviceRegister, DutyUpdate, Me, PingBatch, PingsAccepted


class MeController(Controller):
    path = "/v1/me"
    tags = ["technician"]
    guards = [technician_only]

    @get("/", operation_id="getMe", summary="The calling technician's profile and pool memberships")
    async def read(self, request: Request, db_session: DbSession) -> Me:
        return await services.me(request.user.technician_id, session=db_session)

    @put("/duty", operation_id="setDuty", summary="Go on or off duty")
    async def set_duty(self, request: Request, data: JSONBody[DutyUpdate], db_session: DbSession) -> Me:
        await services.set_duty(request.user.technician_id, data.on_duty, session=db_session)
        return await services.me(request.user.technician_id, session=db_session)

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
    async def post_locations(self, request: Request, data: JSONBody[PingBatch]) -> PingsAccepted:
        state = request.app.state
        problems = services.stale_pings(data.pings, datetime.now(UTC))
        if problems:
            raise ClientException(
                f"{problems[0]['key']}: {problems[0]['message']}; the batch was not stored",
                status_code=422,
                extra=problems,
            )
        if not await state.ping_recorder.record(request.user.technician_id, data.pings):
            raise ClientException(
                "off_duty: the technician is off duty and has no active job; pings are not recorded",
                status_code=409,
            )
        return PingsAccepted(accepted=len(data.pings))

    @post("/devices", operation_id="registerDevice", summary="Register a phone's FCM token")
    async def register_device(
        self, request: Request, data: JSONBody[DeviceRegister], db_session: DbSession
    ) -> DeviceOut:
        return await services.register_device(request.user.technician_id, data.token, data.platform, session=db_session)

    @delete("/devices/{token:str}", operation_id="removeDevice", summary="Forget a phone's FCM token")
    async def remove_device(self, request: Request, token: FromPath[str], db_session: DbSession) -> None:
        if not await services.remove_device(request.user.technician_id, token, session=db_session):
            raise NotFoundException("no such device token for this technician")
