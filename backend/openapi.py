"""The served OpenAPI document: every status an operation can answer, and the API docs UI.

The error answers are derived once, here, from what each route is made of rather than written on every
controller: a credential check answers 401 (and 503 when the database or Firebase is down), a guard 403, a path
parameter 404, any parameter 400, a JSON body 400/413/415/422, a POST 400/409/413/422 (a state conflict; an
`Idempotency-Key` malformed, still running or reused with another body, its fingerprint reading the body), a rate
limit 429, the database 503. Each carries the one error body,
`ErrorBody`. A status a route's author documented with its own body (the tracking link's HTML pages) is kept.
And a body that refuses unknown fields says so (`ClosedStructs`).

The docs UI (Swagger UI, at /schema) is served from the `swagger-ui-py` package's files: the page loads nothing
from another site.
"""

from __future__ import annotations

import importlib.util
from http import HTTPStatus
from pathlib import Path
from typing import Any

import msgspec
from litestar import HttpMethod, Router
from litestar._openapi.schema_generation import SchemaCreator
from litestar._openapi.schema_generation.plugins import StructSchemaPlugin  # not exported; Litestar <3 is pinned
from litestar.middleware import DefineMiddleware
from litestar.middleware.rate_limit import RateLimitMiddleware
from litestar.openapi import ResponseSpec
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Schema
from litestar.plugins import ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute
from litestar.static_files import create_static_files_router
from litestar.typing import FieldDefinition

from backend.auth import needs_credential


class ErrorBody(msgspec.Struct):
    """Every error's body (API.md, "Conventions")."""

    status_code: int
    detail: str
    """What is wrong, in words; for 400/422, it starts with the offending field."""
    extra: dict[str, Any] | list[Any] | None = None
    """Structured details: the bad fields (`[{key, source, message}]`), or what a conflict is about."""


WHY: dict[int, str] = {
    400: "Malformed input: a body that is not UTF-8 JSON (or nested too deeply) or not of the documented shape, or a "
    "bad parameter or `Idempotency-Key`; `detail` names the field",
    401: "No credential, or an invalid or revoked one",
    403: "A valid credential of the wrong kind for this route (or a Firebase account no organisation onboarded)",
    404: "No such object for this caller (another organisation's objects included)",
    409: "The object's state does not allow this (`detail` and `extra` say why), or the first request with this "
    "`Idempotency-Key` is still running",
    413: "The body is larger than the limit (`TRUCKROLL_MAX_BODY_BYTES`, 1 MiB by default)",
    415: "The body is not `application/json`",
    422: "A value is not acceptable (`detail` names it), or the `Idempotency-Key` was used with another request",
    429: "Too many requests from this client; `Retry-After` says when to come back",
    503: "A dependency (the database, Firebase) is unavailable; `Retry-After` says when to try again",
}

# What a handler needs from the database, when it asks for it by name.
DATABASE_DEPENDENCIES = frozenset({"db_session", "ping_recorder"})


def error_statuses(route: HTTPRoute, method: str) -> set[int]:
    """The error statuses an operation can answer, from what the route is made of."""
    handler, kwargs = route.route_handler_map[method]
    parameters = handler.parsed_fn_signature.parameters
    statuses: set[int] = set()
    if needs_credential(route.path, handler):
        statuses |= {401, 503}
    if handler.resolve_guards():
        statuses.add(403)
    if route.path_parameters:
        statuses.add(404)
    if kwargs.expected_path_params or kwargs.expected_query_params or kwargs.expected_header_params:
        statuses.add(400)
    if DATABASE_DEPENDENCIES & parameters.keys():
        statuses.add(503)
    if "data" in parameters:
        statuses |= {400, 413, 415, 422}
    if method == HttpMethod.POST:
        # Every POST that changes state honours Idempotency-Key (API.md), which reads the body for its fingerprint.
        statuses |= {400, 409, 413, 422}
    if any(
        isinstance(m, DefineMiddleware) and issubclass(m.middleware, RateLimitMiddleware)
        for m in handler.resolve_middleware()
    ):
        statuses.add(429)
    return statuses


class ClosedStructs(StructSchemaPlugin):
    """A Struct that refuses unknown fields (`forbid_unknown_fields=True`: a 400) says so in its schema
    (`additionalProperties: false`), which Litestar's own plugin leaves out: a client or a fuzzer reading the
    document would otherwise send fields the API refuses."""

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        if field_definition.type_.__struct_config__.forbid_unknown_fields:
            schema.additional_properties = False
        return schema


class DocumentedErrors(ReceiveRoutePlugin):
    """Adds to each operation of the OpenAPI document the error statuses it can answer, with `ErrorBody`."""

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute):
            return
        for method, (handler, _) in route.route_handler_map.items():
            if method == HttpMethod.OPTIONS or not handler.resolve_include_in_schema():
                continue
            responses = dict(handler.responses or {})
            for status in sorted(error_statuses(route, method)):
                responses.setdefault(status, _error_response(status))
            handler.responses = responses


def _error_response(status: int) -> ResponseSpec:
    return ResponseSpec(ErrorBody, description=WHY.get(status, HTTPStatus(status).phrase), generate_examples=False)


# Swagger UI's files, from the package (found without importing it: only its files are used).
SWAGGER_UI_FILES = Path(importlib.util.find_spec("swagger_ui").origin).parent / "static"  # type: ignore[union-attr, arg-type]


class LocalSwaggerUI(SwaggerRenderPlugin):
    """Swagger UI (at /schema) with its script, style and icon served by the app itself, under /schema/ui/."""

    def __init__(self, schema_path: str = "/schema") -> None:
        assets = f"{schema_path}/ui"
        super().__init__(
            js_url=f"{assets}/swagger-ui-bundle.js",
            css_url=f"{assets}/swagger-ui.css",
            standalone_preset_js_url=f"{assets}/swagger-ui-standalone-preset.js",
            favicon=f"<link rel='icon' type='image/png' href='{assets}/favicon-32x32.png'>",
            path="/",
        )

    def receive_router(self, router: Router) -> None:
        super().receive_router(router)
        router.register(
            create_static_files_router(
                path="/ui", directories=[SWAGGER_UI_FILES], include_in_schema=False, name="swagger-ui-files"
            )
        )
