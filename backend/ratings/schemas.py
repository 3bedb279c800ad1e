from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

Side = Literal["org", "technician"]
Stars = Annotated[int, msgspec.Meta(ge=1, le=5, description="1 (worst) to 5 (best), a whole number")]
COMMENT_MAX_LENGTH = 2000
Comment = Annotated[str, msgspec.Meta(max_length=COMMENT_MAX_LENGTH)]


class RatingBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    stars: Stars
    comment: Comment | None = None


class RatingOut(msgspec.Struct):
    stars: int
    comment: str | None
    at: datetime


class PostedRating(msgspec.Struct):
    """The rating just stored, as its author sees it."""

    side: Side
    """`org`: the organisation's rating of the technician; `technician`: the technician's of the organisation."""
    stars: int
    comment: str | None
    at: datetime
    released: bool
    """True when the other side has rated too: both ratings are now visible to both sides."""


class JobRatings(msgspec.Struct):
    by_org: RatingOut | None
    by_technician: RatingOut | None
    released: bool
    """Both sides see both ratings: both have rated, or the rating window has closed."""
    window_closes_at: datetime | None
    """Completion + 14 days: ratings are taken until then and released at the latest then (null before completion)."""
