"""Schemathesis against the served OpenAPI document, in process (ASGI), with real credentials: whatever it sends,
valid or not, no operation answers a 5xx or a status its document does not list."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from litestar import Litestar
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from backend.app import create_app
from backend.settings import libpq_url, load_settings
from tests.api.jobs_helpers import job_body, north
from tests.api.routes_helpers import operations
from tests.helpers import ADMIN, ADMIN_TOKEN, PROJECT_ID, technician_auth, technician_body

# Bounds the run (about 25 s on 2 cores): about 40 operations, each with this many requests of valid data, as many
# of invalid data, and as many again of valid data on objects that exist.
MAX_EXAMPLES = 30


def error_body_conformance(ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case):
    """An error's body is as its operation documents it (ErrorBody, or the tracking link's own)."""
    if response.status_code >= 400:
        return response_schema_conformance(ctx, response, case)
    return None


# No 5xx, no status the operation does not list, and error bodies as documented.
CHECKS = [not_a_server_error, status_code_conformance, error_body_conformance]


@pytest.fixture(scope="module")
def app(migrated: str, app_tables: list[str]) -> Iterator[Litestar]:
    """One app for the whole run, started by Schemathesis's ASGI client (on its own event loop): the queue
    worker is left out, pushes are logged."""
    app = create_app(
        load_settings(
            {
                "TRUCKROLL_ENV": "test",
                "DATABASE_URL": migrated,
                "TRUCKROLL_WORKER": "external",
                "TRUCKROLL_PUSH": "log",
                "TRUCKROLL_ADMIN_TOKEN": ADMIN_TOKEN,
                "TRUCKROLL_FIREBASE_PROJECT_ID": PROJECT_ID,
                "FIREBASE_AUTH_EMULATOR_HOST": os.environ["FIREBASE_AUTH_EMULATOR_HOST"],
            }
        )
    )
    try:
        yield app
    finally:
        asgi.shutdown_lifespans()
        with psycopg.connect(libpq_url(migrated), autocommit=True) as conn:
            conn.execute(f"TRUNCATE {', '.join(app_tables)} RESTART IDENTITY CASCADE")


@dataclass(frozen=True)
class World:
    """What the generated requests act on: real credentials of each kind, and real objects for the paths."""

    callers: dict[tuple[str, str], dict[str, str]]
    """For each operation (method, path), the headers of a credential of the kind it serves."""
    ids: dict[str, str]
    """Path parameters naming objects that exist: this organisation's job (offered to the technician), the
    technician, the offer, the organisation."""


@pytest.fixture(scope="module")
def world(app: Litestar) -> World:
    """An organisation (its API key), a technician on duty near the job site (an emulator Firebase ID token) and a
    job that was offered to them."""
    with asgi.get_client(app) as client:

        def ok(response, status: int = 200):
            assert response.status_code == status, response.text
            return response.json()

        created = ok(client.post("/v1/admin/orgs", json={"name": "Schemathesis Field Services"}, headers=ADMIN), 201)
        org = {"Authorization": f"Bearer {created['api_key']}"}
        technician = technician_auth("fuzzy")
        onboarded = ok(client.post("/v1/technicians", json=technician_body("fuzzy", skills=["hvac"]), headers=org), 201)
        ok(client.put("/v1/me/duty", json={"on_duty": True}, headers=technician))
        ping = {**north(1), "recorded_at": datetime.now(UTC).isoformat()}
        ok(client.post("/v1/me/locations", json={"pings": [ping]}, headers=technician), 202)
        job = ok(client.post("/v1/jobs", json=job_body(), headers=org), 201)
        [offer] = ok(client.get("/v1/me/offers", headers=technician))["items"]
    credentials = {"operator": ADMIN, "org": org, "technician": technician}
    return World(
        callers={(op.method, op.path): op.caller(credentials) for op in operations(app)},
        ids={"job_id": job["id"], "technician_id": onboarded["id"], "offer_id": offer["id"], "org_id": created["id"]},
    )


@pytest.fixture(scope="module")
def api_schema(app: Litestar) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/schema/openapi.json", app)


def test_no_5xx_and_no_undocumented_status(api_schema: schemathesis.BaseSchema, world: World) -> None:
    """Each operation, with data that fits its schema and data that does not, then with the path naming objects
    that exist. (Schemathesis's pytest plugin does not run under pytest 9.2: the operations are driven here.)"""
    failures: list[str] = []
    runs = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        headers = world.callers[(operation.method.upper(), operation.path)]
        existing = {p.name: world.ids[p.name] for p in operation.path_parameters if p.name in world.ids}
        for mode, path_parameters in (
            (GenerationMode.POSITIVE, None),
            (GenerationMode.NEGATIVE, None),
            *([(GenerationMode.POSITIVE, existing)] if existing else []),
        ):
            strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)
            try:
                _run(strategy, headers)
            except Unsatisfiable:  # nothing of this operation can be made invalid (no parameters, no body)
                continue
            except FailureGroup as exc:  # failed checks: kept, so that one run reports every operation's
                failures.append(f"{operation.method.upper()} {operation.path} ({mode}, {path_parameters}):\n{exc}")
            runs += 1
    assert runs >= 2 * 38
    assert not failures, "\n\n".join(failures)


def _run(strategy, headers: dict[str, str]) -> None:
    @given(case=strategy)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        # A copy: the call adds its own headers to the dict it is given.
        case.call_and_validate(headers=dict(headers), checks=CHECKS)

    run()
