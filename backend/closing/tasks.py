"""A job's tasks: the checklist a technician works through (API.md, "Closing the work").

Tasks are posted with the job (≤ 50) and kept on the job row (`jobs.tasks`, JSONB: they are read and written with
the job, under its lock). A task is done once it has a value; completing a job with a required task not done is
refused with the missing keys (`extra.missing_tasks`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from backend.errors import Invalid

TaskType = Literal["checkbox", "text", "number", "photo", "signature"]
TaskKey = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_-]{1,64}$", description="1..64 of a-z 0-9 _ -")]
MAX_TASKS = 50
MAX_TEXT = 2000


class TaskIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: TaskType
    label: Annotated[str, msgspec.Meta(min_length=1, max_length=500, pattern=r"\S")]
    required: bool = False
    key: TaskKey | None = None
    """Defaults to t1, t2, … by the task's position."""


Tasks = Annotated[list[TaskIn], msgspec.Meta(max_length=MAX_TASKS)]


class TaskOut(msgspec.Struct):
    key: str
    type: TaskType
    label: str
    required: bool
    value: Any | None = None
    done_at: datetime | None = None


class TaskValue(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    value: Any
    """checkbox: true; text: 1..2000 characters; number: a number; photo/signature: an attachment id of this job.
    null clears the task."""


def stored(tasks: list[TaskIn] | None, field: str = "tasks") -> list[dict]:
    """The tasks as the job row keeps them, keys filled in; 422 naming a repeated key."""
    rows: list[dict] = []
    seen: set[str] = set()
    for i, task in enumerate(tasks or ()):
        key = task.key or f"t{i + 1}"
        if key in seen:
            raise Invalid(f"{field}[{i}].key", f"{key!r} is used by another task")
        seen.add(key)
        rows.append(
            {
                "key": key,
                "type": task.type,
                "label": task.label,
                "required": task.required,
                "value": None,
                "done_at": None,
            }
        )
    return rows


def shown(rows: list[dict]) -> list[TaskOut]:
    return msgspec.convert(rows, list[TaskOut])


def missing(rows: list[dict]) -> list[str]:
    """The keys of the required tasks not done."""
    return [t["key"] for t in rows if t["required"] and t.get("value") is None]


def checked_value(task_type: str, value: Any) -> tuple[Any, uuid.UUID | None]:
    """(the value as stored, the attachment id it names if any); 422 naming `value` when it is not of the task's kind.
    The attachment's belonging to the job is for the caller to check."""
    if value is None:
        return None, None
    if task_type == "checkbox":
        if value is not True:
            raise Invalid("value", "a checkbox task takes true (null clears it)")
        return True, None
    if task_type == "text":
        if not isinstance(value, str) or not 1 <= len(value) <= MAX_TEXT or not value.strip():
            raise Invalid("value", f"a text task takes 1..{MAX_TEXT} characters")
        if "\x00" in value:
            raise Invalid("value", "must not contain the character U+0000 (NUL)")
        return value, None
    if task_type == "number":
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or value != value
            or abs(value) == float("inf")
        ):
            raise Invalid("value", "a number task takes a number")
        return value, None
    try:
        attachment_id = uuid.UUID(value) if isinstance(value, str) else None
    except ValueError:
        attachment_id = None
    if attachment_id is None:
        raise Invalid("value", f"a {task_type} task takes the id of an attachment of this job")
    return str(attachment_id), attachment_id
