from __future__ import annotations

import uuid
from datetime import UTC, datetime

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.params import FromPath, JSONBody

from backend.auth import org_only
from backend.closing.money import encode
from backend.db.engine import DbSession
from backend.idempotency import step
from backend.pagination import Cursor, Limit
from backend.schemas import Page
from backend.templates import services
from backend.templates.schemas import JobTemplateIn, JobTemplateOut

FILLING = (
    "`POST /v1/jobs {template_id, ...}` starts from the template: each field the job gives replaces the template's "
    "(lists are replaced, not merged); `title` and `skills` must come from one or the other; another "
    "organisation's template there is 422 naming `template_id`. "
)


class JobTemplateController(Controller):
    path = "/v1/job-templates"
    tags = ["job templates"]
    guards = [org_only]

    @post(
        "/",
        operation_id="postJobTemplate",
        status_code=201,
        summary="Save a job template",
        description=FILLING
        + "Fields: name, title, description, skills, estimated_hours, pay, tasks, dispatch; checked as a job's "
        "are (422/400 naming the field). Honours `Idempotency-Key`.",
    )
    async def create(
        self, request: Request, data: JSONBody[JobTemplateIn], db_session: DbSession
    ) -> Response[JobTemplateOut]:
        org_id = request.user.org_id

        async def action(now: datetime) -> JobTemplateOut:
            return await services.create(org_id, data, session=db_session, now=now)

        return await step(request, db_session, action, status=201)

    @get("/", operation_id="listJobTemplates", summary="This organisation's job templates, newest first")
    async def list_templates(
        self, request: Request, db_session: DbSession, limit: Limit = 50, cursor: Cursor = None
    ) -> Page[JobTemplateOut]:
        return await services.list_templates(request.user.org_id, limit=limit, cursor=cursor, session=db_session)

    @get("/{template_id:uuid}", operation_id="getJobTemplate", summary="A job template")
    async def read(self, request: Request, template_id: FromPath[uuid.UUID], db_session: DbSession) -> JobTemplateOut:
        return await services.read(request.user.org_id, template_id, session=db_session)

    @put(
        "/{template_id:uuid}",
        operation_id="putJobTemplate",
        summary="Replace a job template",
        description="The whole template: a field left out is cleared. Jobs already posted from it keep their fields.",
    )
    async def replace(
        self, request: Request, template_id: FromPath[uuid.UUID], data: JSONBody[JobTemplateIn], db_session: DbSession
    ) -> Response[JobTemplateOut]:
        out = await services.replace(request.user.org_id, template_id, data, session=db_session, now=datetime.now(UTC))
        await db_session.commit()
        return Response(encode(out), media_type="application/json")

    @delete(
        "/{template_id:uuid}",
        operation_id="deleteJobTemplate",
        summary="Delete a job template",
        description="Jobs posted from it keep their fields (their `template_id` becomes null).",
    )
    async def remove(self, request: Request, template_id: FromPath[uuid.UUID], db_session: DbSession) -> None:
        await services.remove(request.user.org_id, template_id, session=db_session)
        await db_session.commit()
