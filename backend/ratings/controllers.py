from __future__ import annotations

import uuid
from datetime import UTC, datetime

from litestar import Controller, Request, Response, get, post
from litestar.exceptions import ValidationException
from litestar.params import FromPath, JSONBody

from backend.auth import OrgCaller, org_or_technician
from backend.db.engine import DbSession
from backend.errors import validation_error
from backend.idempotency import step
from backend.ratings import services
from backend.ratings.schemas import COMMENT_MAX_LENGTH, JobRatings, PostedRating, RatingBody, Side

RULES = (
    "The organisation (API key) rates the technician; the assigned technician (ID token) rates the organisation. "
    "Double-blind: a side always sees its own rating, and the other side's only once it is released — when both "
    "have rated, or when the rating window closes, at exactly 14 days after the job's completion "
    "(`completed_at`). "
)


def _caller(request: Request) -> tuple[Side, uuid.UUID]:
    user = request.user
    return ("org", user.org_id) if isinstance(user, OrgCaller) else ("technician", user.technician_id)


def _unprocessable(request: Request, exc: ValidationException) -> Response:
    """A body that is not a rating (stars outside 1..5 or not a whole number, a comment too long) is 422,
    with `detail` naming the field like every other validation error."""
    return validation_error(request, exc, status_code=422)


class RatingController(Controller):
    path = "/v1/jobs"
    tags = ["ratings"]
    guards = [org_or_technician]
    exception_handlers = {ValidationException: _unprocessable}

    @post(
        "/{job_id:uuid}/rating",
        operation_id="rateJob",
        status_code=201,
        summary="Rate a completed job, once per side",
        description=RULES
        + "Ratings are taken from completion until the window closes; later, 409 (a late rater could otherwise "
        "read the released rating first and answer it). `stars` is a whole number 1..5 and `comment` at most "
        f"{COMMENT_MAX_LENGTH} characters (422 naming the field otherwise). 409 before completion and for a "
        "side's second rating; 404 for another organisation's job or a job not assigned to the calling "
        "technician. Answers the stored rating; `released` says whether the other side has rated too. "
        "Honours `Idempotency-Key`.",
    )
    async def rate(
        self, request: Request, job_id: FromPath[uuid.UUID], data: JSONBody[RatingBody], db_session: DbSession
    ) -> Response[PostedRating]:
        side, party_id = _caller(request)

        async def run(now: datetime) -> PostedRating:
            return await services.rate(job_id, side, party_id, data, now=now, session=db_session)

        return await step(request, db_session, run, status=201)

    @get(
        "/{job_id:uuid}/ratings",
        operation_id="getJobRatings",
        summary="Both ratings of a job, as the caller may see them",
        description=RULES
        + "`released` says whether both are visible; `window_closes_at` is completion + 14 days (null before "
        "completion). 404 for another organisation's job or a job not assigned to the calling technician.",
    )
    async def read(self, request: Request, job_id: FromPath[uuid.UUID], db_session: DbSession) -> JobRatings:
        side, party_id = _caller(request)
        return await services.read(job_id, side, party_id, now=datetime.now(UTC), session=db_session)
