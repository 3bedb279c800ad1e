"""The rules a posted job must satisfy that its body's types cannot state."""

from __future__ import annotations

from datetime import datetime

from backend.closing import pay
from backend.errors import BadRequest
from backend.jobs.schemas import JobCreate


def check_new_job(data: JobCreate, now: datetime) -> None:
    """BadRequest naming the field: a window that ends before it starts or is over, a wave that repeats a tier;
    Invalid (422) naming the field of pay terms that do not fit their type."""
    if data.window.end <= data.window.start:
        raise BadRequest("window.end", "must be after window.start")
    if data.window.end <= now:
        raise BadRequest("window.end", "is in the past")
    for i, wave in enumerate(data.dispatch.waves):
        if len(set(wave.tiers)) != len(wave.tiers):
            raise BadRequest(f"dispatch.waves[{i}].tiers", "tiers must not repeat")
    if data.pay is not None:
        pay.check(data.pay)
