"""The app's routes as the tests that go through all of them see them: each operation, the credential of the kind
its guards want, and a concrete URL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute

from backend.auth import operator_only, org_only, org_or_technician, technician_only

WRITES = ("POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    """As in the OpenAPI document: `/v1/jobs/{job_id}/dispatch`."""
    route: HTTPRoute
    handler: HTTPRouteHandler

    def url(self) -> str:
        """The path with each parameter filled in (a random id: an object that does not exist)."""
        values = {
            name: str(uuid.uuid4()) if parameter.type is uuid.UUID else ("nda" if name == "kind" else "x-token")
            for name, parameter in self.route.path_parameters.items()
        }
        return self.path.format(**values)

    def caller(self, credentials: Mapping[str, dict[str, str]]) -> dict[str, str]:
        """The headers of a credential of the kind this operation serves (none for a public one), from
        `credentials` by kind: operator, org, technician."""
        guards = self.handler.resolve_guards()
        for guard, kind in ((operator_only, "operator"), (org_only, "org"), (org_or_technician, "org")):
            if guard in guards:
                return credentials[kind]
        return credentials["technician"] if technician_only in guards else {}


def operations(app: Litestar, methods: tuple[str, ...] = ("GET", *WRITES)) -> Iterator[Operation]:
    """Every operation of the app's routes that the OpenAPI document describes."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for method, (handler, _) in route.route_handler_map.items():
            if method in methods and handler.resolve_include_in_schema():
                yield Operation(method, route.path_format, route, handler)
