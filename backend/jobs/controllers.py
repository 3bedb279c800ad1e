from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from backend.auth import org_only, technician_only
from backend.closing import money
from backend.db.engine import DbSession
from backend.dependencies import MatchConfig, Queue
from backend.idempotency import idempotent, step
from backend.jobs import dispatch, onsite, services
from backend.jobs.schemas import (
    AssignBody,
    BackOutBody,
    CancelBody,
    Candidates,
    JobCreate,
    JobOut,
    JobStatus,
    TechnicianJob,
)
from backend.jobs.validation import check_new_job
from backend.pagination import Cursor, Limit
from backend.schemas import Page
from backend.templates import services as templates


class JobController(Controller):
    path = "/v1/jobs"
    tags = ["jobs"]
    guards = [org_only]

    @post(
        "/",
        operation_id="postJob",
        summary="Post a job (and, unless dispatch.auto is false, start offering it)",
        description=(
            "Honours `Idempotency-Key`. Default dispatch: one wave, both tiers, 50 km, 10 offers, 120 s. "
            "`template_id` starts from a job template (422 naming it for another organisation's): each field given replaces "
            "the template's, lists included; `title` and `skills` come from one or the other (400 naming them). "
            "`pay` is fixed, hourly or blended (422 naming a field its type does not use or needs and lacks, or an "
            "amount with more than 2 decimals); `tasks` (≤ 50) get keys t1, t2 … by default. "
            "`estimated_hours` defaults to the window's length. 400/422 name the bad field: window end before "
            "start or in the past, repeated tiers, out-of-range values."
        ),
    )
    async def post_job(
        self,
        request: Request,
        data: JSONBody[JobCreate],
        db_session: DbSession,
        queue: Queue,
        match_settings: MatchConfig,
    ) -> Response[JobOut]:
        now = datetime.now(UTC)
        org_id = request.user.org_id
        data = await templates.job_from(org_id, data, session=db_session)
        check_new_job(data, now)

        async def run() -> tuple[int, bytes]:
            job_id = await dispatch.post_job(
                org_id, data, session=db_session, queue=queue, match_settings=match_settings, now=now
            )
            return 201, money.encode(await services.read(org_id, job_id, session=db_session))

        return await idempotent(request, db_session, run)

    @get("/", operation_id="listJobs", summary="This organisation's jobs, newest first")
    async def list_jobs(
        self,
        request: Request,
        db_session: DbSession,
        status: FromQuery[JobStatus | None] = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> Page[JobOut]:
        return await services.list_jobs(
            request.user.org_id, status=status, limit=limit, cursor=cursor, session=db_session
        )

    @get(
        "/{job_id:uuid}",
        operation_id="getJob",
        summary="A job with its offers and timeline",
        description="Offers are listed by wave; an offer of wave 0 records a direct assignment by a dispatcher.",
    )
    async def read(self, request: Request, job_id: FromPath[uuid.UUID], db_session: DbSession) -> JobOut:
        return await services.read(request.user.org_id, job_id, session=db_session)

    @get(
        "/{job_id:uuid}/candidates",
        operation_id="getJobCandidates",
        summary="The ranked eligible technicians for this job now",
        description=(
            "Under wave `wave` (default: the current wave, or 1 before dispatch). `components` are the parts of "
            "the score and add up to it. `explain=true` also lists every pool member left out with all its "
            "reasons. Reading candidates offers nothing."
        ),
    )
    async def candidates(
        self,
        request: Request,
        job_id: FromPath[uuid.UUID],
        db_session: DbSession,
        match_settings: MatchConfig,
        wave: Annotated[int | None, Parameter(ge=1, le=10)] = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 10,
        explain: FromQuery[bool] = False,
    ) -> Candidates:
        return await services.candidates(
            request.user.org_id,
            job_id,
            wave=wave,
            limit=limit,
            explain=explain,
            now=datetime.now(UTC),
            match_settings=match_settings,
            session=db_session,
        )

    async def _act(self, request: Request, job_id: uuid.UUID, db_session, action) -> Response[JobOut]:
        """`action(org_id, now)`, once per Idempotency-Key, answered with the job as it then is."""
        org_id = request.user.org_id

        async def run(now: datetime) -> JobOut:
            await action(org_id, now)
            return await services.read(org_id, job_id, session=db_session)

        return await step(request, db_session, run)

    @post(
        "/{job_id:uuid}/dispatch", operation_id="dispatchJob", status_code=200, summary="Start or restart dispatching"
    )
    async def dispatch(
        self,
        request: Request,
        job_id: FromPath[uuid.UUID],
        db_session: DbSession,
        queue: Queue,
        match_settings: MatchConfig,
    ) -> Response[JobOut]:
        return await self._act(
            request,
            job_id,
            db_session,
            lambda org, now: dispatch.dispatch(
                org, job_id, session=db_session, queue=queue, match_settings=match_settings, now=now
            ),
        )

    @post(
        "/{job_id:uuid}/assign",
        operation_id="assignJob",
        status_code=200,
        summary="Assign a technician directly",
        description="409 with `extra.reasons` (the `explain` reasons) when the technician is not eligible.",
    )
    async def assign(
        self,
        request: Request,
        job_id: FromPath[uuid.UUID],
        data: JSONBody[AssignBody],
        db_session: DbSession,
        queue: Queue,
        match_settings: MatchConfig,
    ) -> Response[JobOut]:
        return await self._act(
            request,
            job_id,
            db_session,
            lambda org, now: dispatch.assign(
                org, job_id, data.technician_id, session=db_session, queue=queue, match_settings=match_settings, now=now
            ),
        )

    @post("/{job_id:uuid}/cancel", operation_id="cancelJob", status_code=200, summary="Cancel a job")
    async def cancel(
        self,
        request: Request,
        job_id: FromPath[uuid.UUID],
        db_session: DbSession,
        queue: Queue,
        data: JSONBody[CancelBody | None] = None,
    ) -> Response[JobOut]:
        reason = data.reason if data else None
        return await self._act(
            request,
            job_id,
            db_session,
            lambda org, now: dispatch.cancel(org, job_id, reason, session=db_session, queue=queue, now=now),
        )


class TechnicianJobController(Controller):
    path = "/v1/jobs"
    tags = ["technician"]
    guards = [technician_only]

    @post(
        "/{job_id:uuid}/back-out",
        operation_id="backOutOfJob",
        status_code=200,
        summary="Give an assigned job back; dispatch resumes with the next wave",
    )
    async def back_out(
        self,
        request: Request,
        job_id: FromPath[uuid.UUID],
        data: JSONBody[BackOutBody],
        db_session: DbSession,
        queue: Queue,
        match_settings: MatchConfig,
    ) -> Response[TechnicianJob]:
        technician_id = request.user.technician_id

        async def action(now):
            await dispatch.back_out(
                job_id,
                technician_id,
                data.reason,
                session=db_session,
                queue=queue,
                match_settings=match_settings,
                now=now,
            )
            return await services.technician_view(job_id, session=db_session)

        return await step(request, db_session, action)

    @post(
        "/{job_id:uuid}/en-route",
        operation_id="setJobEnRoute",
        status_code=200,
        summary="On the way to an assigned job",
        description=(
            "assigned → en_route. From now on the customer's tracking link shows the technician's position and "
            "ETA. 404 unless the job is assigned to the caller; 409 naming the current status otherwise. "
            "Honours `Idempotency-Key`."
        ),
    )
    async def en_route(
        self, request: Request, job_id: FromPath[uuid.UUID], db_session: DbSession
    ) -> Response[TechnicianJob]:
        technician_id = request.user.technician_id

        async def action(now):
            await onsite.en_route(job_id, technician_id, session=db_session, now=now)
            return await services.technician_view(job_id, session=db_session)

        return await step(request, db_session, action)

    @post(
        "/{job_id:uuid}/check-in",
        operation_id="checkInToJob",
        status_code=200,
        summary="Arrive on site",
        description=(
            "en_route (or assigned) → on_site. `geofence` is `verified` when the reported position is within "
            "max(150 m, accuracy_m) of the job site (great-circle distance), else `outside`: the check-in is "
            "then recorded and flagged on the job's timeline, not refused. 404 unless the job is assigned to the "
            "caller; 409 naming the current status otherwise. Honours `Idempotency-Key`."
        ),
    )
    async def check_in(
        self, request: Request, job_id: FromPath[uuid.UUID], data: JSONBody[onsite.CheckInBody], db_session: DbSession
    ) -> Response[onsite.CheckInOut]:
        technician_id = request.user.technician_id

        async def action(now):
            verdict, distance, radius = await onsite.check_in(job_id, technician_id, data, session=db_session, now=now)
            return onsite.CheckInOut(
                geofence=verdict,
                distance_m=round(distance, 1),
                radius_m=round(radius, 1),
                job=await services.technician_view(job_id, session=db_session),
            )

        return await step(request, db_session, action)

    @post(
        "/{job_id:uuid}/complete",
        operation_id="completeJob",
        status_code=200,
        summary="The work is done",
        description=(
            "on_site → completed. The customer's tracking link stops showing the technician's position and "
            "closes (404) 24 h later. 404 unless the job is assigned to the caller; 409 naming the current status "
            "otherwise. Honours `Idempotency-Key`."
        ),
    )
    async def complete(
        self,
        request: Request,
        job_id: FromPath[uuid.UUID],
        db_session: DbSession,
        data: JSONBody[onsite.CompleteBody | None] = None,
    ) -> Response[TechnicianJob]:
        technician_id = request.user.technician_id
        notes = data.notes if data else None

        async def action(now):
            await onsite.complete(job_id, technician_id, notes, session=db_session, now=now)
            return await services.technician_view(job_id, session=db_session)

        return await step(request, db_session, action)
