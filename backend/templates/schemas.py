from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from backend.closing.pay import Pay
from backend.closing.tasks import TaskIn, Tasks
from backend.jobs.schemas import Dispatch, Text200
from backend.technicians.schemas import Skills

FIELDS = ("title", "description", "skills", "estimated_hours", "pay", "tasks", "dispatch")
"""A template's fields, each one of a posted job's: a field the job gives replaces the template's (lists too)."""


class JobTemplateIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Text200
    title: Text200 | None = None
    description: Annotated[str, msgspec.Meta(max_length=10_000)] | None = None
    skills: Skills | None = None
    estimated_hours: Annotated[float, msgspec.Meta(gt=0, le=336)] | None = None
    pay: Pay | None = None
    tasks: Tasks | None = None
    dispatch: Dispatch | None = None


class JobTemplateOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    created_at: datetime
    updated_at: datetime
    title: str | None = None
    description: str | None = None
    skills: list[str] | None = None
    estimated_hours: float | None = None
    pay: Pay | None = None
    tasks: list[TaskIn] | None = None
    dispatch: Dispatch | None = None
