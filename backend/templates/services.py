"""Job templates of an organisation, and how a job posted from one is filled in."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec
from sqlalchemy import delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from backend.closing import pay, tasks
from backend.db.models import JobTemplate
from backend.errors import BadRequest, Invalid, NotFound
from backend.jobs.schemas import Dispatch, JobCreate
from backend.pagination import decode_cursor, page_of
from backend.schemas import Page
from backend.templates.schemas import FIELDS, JobTemplateIn, JobTemplateOut

NO_SUCH_TEMPLATE = "no such job template in this organisation"


def _check(data: JobTemplateIn) -> None:
    """The rules a job states on the same fields (422/400 naming the field)."""
    if data.pay is not None:
        pay.check(data.pay)
    tasks.stored(data.tasks)
    for i, wave in enumerate(data.dispatch.waves if data.dispatch else ()):
        if len(set(wave.tiers)) != len(wave.tiers):
            raise BadRequest(f"dispatch.waves[{i}].tiers", "tiers must not repeat")


def _out(t: JobTemplate) -> JobTemplateOut:
    return msgspec.convert(
        {**t.fields, "id": t.id, "name": t.name, "created_at": t.created_at, "updated_at": t.updated_at},
        JobTemplateOut,
    )


def _fields(data: JobTemplateIn) -> dict:
    return {f: v for f in FIELDS if (v := msgspec.to_builtins(getattr(data, f))) is not None}


async def create(org_id: uuid.UUID, data: JobTemplateIn, *, session: AsyncSession, now: datetime) -> JobTemplateOut:
    _check(data)
    template = JobTemplate(
        id=uuid.uuid4(), org_id=org_id, name=data.name.strip(), fields=_fields(data), created_at=now, updated_at=now
    )
    session.add(template)
    await session.flush()
    return _out(template)


async def _get(org_id: uuid.UUID, template_id: uuid.UUID, session: AsyncSession, *, lock: bool = False):
    query = select(JobTemplate).where(JobTemplate.id == template_id, JobTemplate.org_id == org_id)
    if lock:
        query = query.with_for_update()
    template = await session.scalar(query.execution_options(populate_existing=True))
    if template is None:
        raise NotFound(NO_SUCH_TEMPLATE)
    return template


async def read(org_id: uuid.UUID, template_id: uuid.UUID, *, session: AsyncSession) -> JobTemplateOut:
    return _out(await _get(org_id, template_id, session))


async def list_templates(
    org_id: uuid.UUID, *, limit: int, cursor: str | None, session: AsyncSession
) -> Page[JobTemplateOut]:
    query = select(JobTemplate).where(JobTemplate.org_id == org_id)
    if cursor:
        query = query.where(tuple_(JobTemplate.created_at, JobTemplate.id) < decode_cursor(cursor))
    rows, next_cursor = page_of(
        (
            await session.scalars(query.order_by(JobTemplate.created_at.desc(), JobTemplate.id.desc()).limit(limit + 1))
        ).all(),
        limit,
        lambda t: (t.created_at, t.id),
    )
    return Page(items=[_out(t) for t in rows], next_cursor=next_cursor)


async def replace(
    org_id: uuid.UUID, template_id: uuid.UUID, data: JobTemplateIn, *, session: AsyncSession, now: datetime
) -> JobTemplateOut:
    """The whole template is replaced (a field left out is cleared); jobs posted from it before keep what they got."""
    _check(data)
    template = await _get(org_id, template_id, session, lock=True)
    template.name = data.name.strip()
    template.fields = _fields(data)
    template.updated_at = now
    await session.flush()
    return _out(template)


async def remove(org_id: uuid.UUID, template_id: uuid.UUID, *, session: AsyncSession) -> None:
    result = await session.execute(
        delete(JobTemplate).where(JobTemplate.id == template_id, JobTemplate.org_id == org_id)
    )
    if not result.rowcount:
        raise NotFound(NO_SUCH_TEMPLATE)


async def job_from(org_id: uuid.UUID, data: JobCreate, *, session: AsyncSession) -> JobCreate:
    """The job as posted, its missing fields taken from its template (if it names one); a field the job gives
    replaces the template's, lists included. 422 naming `template_id` for a template not of this organisation (as
    for any id in a body that names nothing of the caller's); 400 naming `title` or `skills` when neither the job
    nor its template gives it."""
    filled: dict = {}
    if data.template_id is not None:
        try:
            template = _out(await _get(org_id, data.template_id, session))
        except NotFound:
            raise Invalid("template_id", NO_SUCH_TEMPLATE) from None
        filled = {
            f: getattr(template, f) for f in FIELDS if getattr(data, f) is None and getattr(template, f) is not None
        }
    job = msgspec.structs.replace(data, **filled) if filled else data
    for required in ("title", "skills"):
        if getattr(job, required) is None:
            raise BadRequest(required, "required (from the job or its template)")
    if job.dispatch is None:
        job = msgspec.structs.replace(job, dispatch=Dispatch())
    return job
