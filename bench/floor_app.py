"""The app under benchmark plus a floor endpoint: the same body and response as the ping route, no I/O.

`POST /bench/floor` decodes a `PingBatch` and answers 202 `PingsAccepted` without authentication (the
token verifier touches the database on a token's first sight) and without touching the database, so that
the difference between it and `POST /v1/me/locations` is what storing the pings costs.
"""

from __future__ import annotations

import logging

from litestar import Litestar, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_202_ACCEPTED

from backend.app import create_app
from backend.presence.schemas import PingBatch, PingsAccepted
from backend.settings import load_settings

FLOOR_PATH = "/bench/floor"


@post(FLOOR_PATH, status_code=HTTP_202_ACCEPTED, opt={"exclude_from_auth": True}, include_in_schema=False)
async def floor(data: JSONBody[PingBatch]) -> PingsAccepted:
    return PingsAccepted(accepted=len(data.pings))


def app() -> Litestar:
    """Factory for granian (`granian --factory bench.floor_app:app`)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return create_app(load_settings(), extra_route_handlers=[floor])
