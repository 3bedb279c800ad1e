"""Routes of closing the work (API.md): tasks, attachments and expenses by the assigned technician; approval and
sending back by the organisation; payables and their CSV export; the organisation's settings."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from litestar import Controller, Request, Response, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import Stream

from backend.auth import OrgCaller, org_only, org_or_technician, technician_only
from backend.closing import approval, payables, storage, work
from backend.closing.money import documented, encode
from backend.closing.schemas import (
    ApproveBody,
    AttachmentOut,
    ExpenseIn,
    ExpenseOut,
    MarkIncompleteBody,
    OrgSettings,
    PaidBody,
    PayableOut,
    PayableStatus,
)
from backend.closing.tasks import TaskKey, TaskOut, TaskValue
from backend.db.engine import DbSession
from backend.dependencies import AttachmentStore, Queue, Sessions
from backend.errors import BadRequest
from backend.idempotency import step
from backend.jobs import services as job_services
from backend.jobs.schemas import JobOut
from backend.pagination import Cursor, Limit
from backend.schemas import Page


def _since(since: datetime | None) -> datetime | None:
    if since is not None and since.tzinfo is None:
        raise BadRequest("since", "needs a time zone offset", source="query")
    return since


class ProofOfWorkController(Controller):
    """The assigned technician's tasks, attachments and expenses."""

    path = "/v1/jobs"
    tags = ["closing the work"]

    @put(
        "/{job_id:uuid}/tasks/{key:str}",
        operation_id="putJobTask",
        guards=[technician_only],
        summary="Record a task's value",
        description=(
            "By the assigned technician while the job is `en_route`, `on_site` or `incomplete` (409 otherwise). "
            "checkbox: `true`; text: 1..2000 characters; number: a number; photo: the id of an image attachment of "
            "this job; signature: the id of an attachment of this job. A value of the wrong kind is 422 naming "
            "`value`; `null` clears the task (it is then not done). 404 for an unknown task key or a job not "
            "assigned to the caller. Answers the task with `done_at`."
        ),
    )
    async def put_task(
        self,
        request: Request,
        job_id: FromPath[uuid.UUID],
        key: FromPath[TaskKey],
        data: JSONBody[TaskValue],
        db_session: DbSession,
    ) -> Response[TaskOut]:
        technician_id = request.user.technician_id

        async def action(now: datetime) -> TaskOut:
            return await work.put_task(job_id, technician_id, key, data.value, session=db_session, now=now)

        return await step(request, db_session, action)

    @post(
        "/{job_id:uuid}/attachments",
        operation_id="postJobAttachment",
        guards=[technician_only],
        status_code=201,
        request_max_body_size=storage.MAX_BYTES,
        responses=documented(413, 415),
        summary="Upload a photo, signature or document (the raw bytes)",
        description=(
            "By the assigned technician, from `en_route` until the job is approved (409 otherwise). The body is "
            "the file itself with `Content-Type: image/jpeg`, `image/png` or `application/pdf`, at most 10 MiB "
            "(413 beyond, answered as soon as the body passes it; this route's own limit, not the API's 1 MiB). "
            "The type is read from the bytes: a body that is not what its Content-Type says is 415, and so is any "
            "other Content-Type. Retry-safe by content: the same bytes uploaded again to the same job answer the "
            "attachment they made the first time (`Idempotency-Key` is not needed here). Only the job's "
            "organisation and its assigned technician can read it back."
        ),
    )
    async def post_attachment(
        self, request: Request, job_id: FromPath[uuid.UUID], db_session: DbSession, attachment_store: AttachmentStore
    ) -> Response[AttachmentOut]:
        technician_id = request.user.technician_id
        org_id = await work.can_upload(job_id, technician_id, session=db_session)
        # No connection is held while the bytes arrive.
        await db_session.rollback()
        upload = await storage.receive(request.stream(), request.content_type[0])
        same = await work.same_upload(job_id, upload.sha256, session=db_session)
        if same is not None:
            upload.file.close()
            return Response(encode(same), status_code=201, media_type="application/json")
        attachment_id = uuid.uuid4()
        key = storage.key(org_id, job_id, attachment_id)
        await storage.put(attachment_store, key, upload)
        out = await work.add_attachment(
            job_id, technician_id, attachment_id, key, upload, session=db_session, now=datetime.now(UTC)
        )
        await db_session.commit()
        return Response(encode(out), status_code=201, media_type="application/json")

    @get(
        "/{job_id:uuid}/attachments/{attachment_id:uuid}",
        operation_id="getJobAttachment",
        guards=[org_or_technician],
        summary="An attachment's bytes",
        description=(
            "With the content type it was uploaded with. The job's organisation or its assigned technician only; "
            "404 for anyone else. Never cached by shared caches."
        ),
    )
    async def get_attachment(
        self,
        request: Request,
        job_id: FromPath[uuid.UUID],
        attachment_id: FromPath[uuid.UUID],
        db_session: DbSession,
        attachment_store: AttachmentStore,
    ) -> Stream:
        user = request.user
        org_id = user.org_id if isinstance(user, OrgCaller) else None
        found = await work.readable_attachment(
            job_id,
            attachment_id,
            org_id=org_id,
            technician_id=None if org_id else user.technician_id,
            session=db_session,
        )
        return Stream(
            storage.stream(attachment_store, found.storage_key),
            media_type=found.content_type,
            headers={
                "Content-Length": str(found.size),
                "Cache-Control": "private, no-store",
                "X-Content-Type-Options": "nosniff",
                "ETag": f'"{found.sha256}"',
            },
        )

    @post(
        "/{job_id:uuid}/expenses",
        operation_id="postJobExpense",
        guards=[technician_only],
        status_code=201,
        summary="Claim an expense on a job",
        description=(
            "By the assigned technician, from assignment until approval (409 otherwise, and for a job without pay "
            "terms: there is no currency to claim in). `amount` in the job's currency, at most 2 decimals (422). "
            "`attachment_id`, a receipt, must be an attachment of this job (422). Pending until the job is approved; "
            "listed on the job as `expenses`. Honours `Idempotency-Key`."
        ),
    )
    async def post_expense(
        self, request: Request, job_id: FromPath[uuid.UUID], data: JSONBody[ExpenseIn], db_session: DbSession
    ) -> Response[ExpenseOut]:
        technician_id = request.user.technician_id

        async def action(now: datetime) -> ExpenseOut:
            return await work.add_expense(job_id, technician_id, data, session=db_session, now=now)

        return await step(request, db_session, action, status=201)


class ApprovalController(Controller):
    path = "/v1/jobs"
    tags = ["closing the work"]
    guards = [org_only]

    @post(
        "/{job_id:uuid}/approve",
        operation_id="approveJob",
        status_code=200,
        summary="Approve the work; the job's payable is settled",
        description=(
            "`completed` only (409 naming the status otherwise). `hours` (≤ 2 decimals) replaces the worked hours "
            "for pay. Expenses listed in `reject_expenses` are rejected (422 for an id not of this job), the others "
            "approved, paid up to the pay's `max_expenses` in total (the payable's `notes` say what was cut). "
            "Labour follows the pay terms, rounded half-up to the cent once. `note` is added to the payable's notes. "
            "A job without pay terms gets a payable of its hours in currency XXX (ISO 4217: no currency) with "
            "nothing owed. Answers the job with its `payable`; the timeline records who approved it. Honours "
            "`Idempotency-Key`."
        ),
    )
    async def approve(
        self,
        request: Request,
        job_id: FromPath[uuid.UUID],
        db_session: DbSession,
        data: JSONBody[ApproveBody | None] = None,
    ) -> Response[JobOut]:
        org_id = request.user.org_id

        async def action(now: datetime) -> JobOut:
            await approval.approve(
                org_id, job_id, data or ApproveBody(), by="organisation", session=db_session, now=now
            )
            return await job_services.read(org_id, job_id, session=db_session)

        return await step(request, db_session, action)

    @post(
        "/{job_id:uuid}/mark-incomplete",
        operation_id="markJobIncomplete",
        status_code=200,
        summary="Send the work back to the technician",
        description=(
            "`completed` only (409 otherwise). The technician is pushed `job_incomplete`; they fix what is missing "
            "(tasks, attachments, expenses; checking in again for a return visit, whose time adds to the worked "
            "hours) and complete again. Answers the job. Honours `Idempotency-Key`."
        ),
    )
    async def mark_incomplete(
        self,
        request: Request,
        job_id: FromPath[uuid.UUID],
        data: JSONBody[MarkIncompleteBody],
        db_session: DbSession,
        queue: Queue,
    ) -> Response[JobOut]:
        org_id = request.user.org_id

        async def action(now: datetime) -> JobOut:
            await approval.mark_incomplete(
                org_id, job_id, data.reason.strip(), session=db_session, queue=queue, now=now
            )
            return await job_services.read(org_id, job_id, session=db_session)

        return await step(request, db_session, action)


class PayableController(Controller):
    path = "/v1/payables"
    tags = ["closing the work"]
    guards = [org_only]

    @get(
        "/",
        operation_id="listPayables",
        summary="This organisation's payables, in the order they were approved",
        description=(
            "Oldest first by `approved_at` (then id); `since` (inclusive, with an offset) filters on `approved_at`, "
            "`status` on approved/paid."
        ),
    )
    async def list_payables(
        self,
        request: Request,
        db_session: DbSession,
        status: FromQuery[PayableStatus | None] = None,
        since: FromQuery[datetime | None] = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> Page[PayableOut]:
        return await payables.list_payables(
            request.user.org_id, status=status, since=_since(since), limit=limit, cursor=cursor, session=db_session
        )

    @post(
        "/{payable_id:uuid}/paid",
        operation_id="markPayablePaid",
        status_code=200,
        summary="Record that the payable was paid (outside Truckroll)",
        description=(
            "approved → paid with the payment's `reference`. Again with the same reference: 200, unchanged; with "
            "another: 409. 404 for another organisation's payable. Honours `Idempotency-Key`."
        ),
    )
    async def paid(
        self, request: Request, payable_id: FromPath[uuid.UUID], data: JSONBody[PaidBody], db_session: DbSession
    ) -> Response[PayableOut]:
        org_id = request.user.org_id

        async def action(now: datetime) -> PayableOut:
            return await payables.mark_paid(org_id, payable_id, data.reference.strip(), session=db_session, now=now)

        return await step(request, db_session, action)


@get(
    "/v1/payables.csv",
    operation_id="exportPayablesCsv",
    guards=[org_only],
    tags=["closing the work"],
    summary="This organisation's payables as CSV, for an accounts system",
    description=(
        "`text/csv` (UTF-8, CRLF line ends), a header row then one row per payable in the order of approval, with "
        "the fields of the payable objects (`notes` joined by `; `; times RFC 3339; empty for null). Streamed as "
        "it is read. A cell that a spreadsheet would take for a formula (beginning with =, +, -, @, tab or "
        "carriage return) is written with a leading apostrophe. Same `status` and `since` filters as the list."
    ),
    media_type="text/csv; charset=utf-8",
)
async def export_payables(
    request: Request,
    sessionmaker: Sessions,
    status: FromQuery[PayableStatus | None] = None,
    since: FromQuery[datetime | None] = None,
) -> Stream:
    lines = payables.csv_lines(request.user.org_id, status=status, since=_since(since), sessions=sessionmaker)
    return Stream(
        lines,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="payables.csv"', "Cache-Control": "private, no-store"},
    )


class OrgSettingsController(Controller):
    path = "/v1/org/settings"
    tags = ["closing the work"]
    guards = [org_only]

    @get("/", operation_id="getOrgSettings", summary="This organisation's settings")
    async def read(self, request: Request, db_session: DbSession) -> OrgSettings:
        return await approval.settings_of(request.user.org_id, session=db_session)

    @put(
        "/",
        operation_id="putOrgSettings",
        summary="Set this organisation's settings",
        description=(
            "`auto_approve_days` 0..60 (default 7; 0 = never): a job `completed` for that many days is approved "
            "by the system, as if approved with no changes (`approved_by: auto`), within 10 minutes."
        ),
    )
    async def put_settings(self, request: Request, data: JSONBody[OrgSettings], db_session: DbSession) -> OrgSettings:
        return await approval.put_settings(request.user.org_id, data, session=db_session)
