"""Money: exact decimals in, through the database (NUMERIC) and out as JSON numbers.

A money value is a `Decimal` everywhere in Python, `NUMERIC(14, 2)` in PostgreSQL and a JSON number with at most
2 decimals on the wire. msgspec encodes a `Decimal` as a JSON string unless told otherwise, so every JSON the API
writes goes through `encode` (`decimal_format="number"`): the idempotent runner's stored answers and, through
`JsonResponse` (the app's response class), every answer Litestar renders.
"""

from __future__ import annotations

from decimal import Decimal
from http import HTTPStatus
from typing import Annotated, Any

import msgspec
from litestar import Response
from litestar.openapi import ResponseSpec
from litestar.response.base import MEDIA_TYPE_APPLICATION_JSON_PATTERN
from litestar.serialization import default_serializer

from backend.errors import Invalid

MAX_MONEY = Decimal("1000000000")
MAX_HOURS = Decimal("10000")
CENT = Decimal("0.01")

MONEY_DOC = "an amount in the job's currency: a JSON number, ≥ 0, with at most 2 decimals"
HOURS_DOC = "hours: a JSON number, ≥ 0, with at most 2 decimals"


def _number(description: str, *, nullable: bool = False) -> msgspec.Meta:
    """`extra` is what Litestar's OpenAPI says of the field: it would say a Decimal is a string (as msgspec writes
    it by default); this API writes and reads it as a number."""
    schema = {"oneOf": [{"type": "number"}, {"type": "null"}]} if nullable else {"type": "number"}
    return msgspec.Meta(extra_json_schema={"description": description, "extra": schema})


Money = Annotated[Decimal, _number(MONEY_DOC)]
MaybeMoney = Annotated[Decimal | None, _number(MONEY_DOC, nullable=True)]
Hours = Annotated[Decimal, _number(HOURS_DOC)]
MaybeHours = Annotated[Decimal | None, _number(HOURS_DOC, nullable=True)]

_encoder = msgspec.json.Encoder(enc_hook=default_serializer, decimal_format="number")
encode = _encoder.encode
"""JSON bytes with decimals as numbers (and Litestar's encodings of the types msgspec does not know)."""


class JsonResponse(Response):
    """Litestar's Response, rendering JSON with decimals as numbers."""

    def render(self, content: Any, media_type: str, enc_hook=default_serializer) -> bytes:
        if not isinstance(content, bytes | str) and MEDIA_TYPE_APPLICATION_JSON_PATTERN.match(media_type):
            if enc_hook is default_serializer:
                return encode(content)
            return msgspec.json.Encoder(enc_hook=enc_hook, decimal_format="number").encode(content)
        return super().render(content, media_type, enc_hook)


def documented(*statuses: int) -> dict[int, ResponseSpec]:
    """Error answers of an operation that the app's OpenAPI plugin cannot tell from the route's shape."""
    from backend.openapi import WHY, ErrorBody

    return {
        s: ResponseSpec(ErrorBody, description=WHY.get(s, HTTPStatus(s).phrase), generate_examples=False)
        for s in statuses
    }


def checked(value: Decimal | None, field: str, *, upper: Decimal = MAX_MONEY, positive: bool = False) -> None:
    """422 naming `field` unless the value is finite, ≥ 0 (> 0 with `positive`), ≤ `upper`, with ≤ 2 decimals."""
    if value is None:
        return
    if not value.is_finite():
        raise Invalid(field, "must be a number")
    if value < 0 or (positive and value == 0):
        raise Invalid(field, "must be greater than 0" if positive else "must not be negative")
    if value > upper:
        raise Invalid(field, f"must be at most {upper}")
    if value.as_tuple().exponent < -2 and value != value.quantize(CENT):
        raise Invalid(field, "at most 2 decimals")
