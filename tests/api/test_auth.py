"""Every route in the OpenAPI document, called by each kind of caller and by nobody."""

from __future__ import annotations

import re
import uuid

import pytest
from litestar.testing import AsyncTestClient

from tests.helpers import ADMIN, PROJECT_ID, new_org, onboard, technician_auth

PUBLIC = ("/healthz", "/readyz", "/schema")
# The customer's link: no credential needed, and an unknown token is 404 whoever asks.
LINKS = ("/v1/track/", "/t/")
# Which caller each part of the API serves (API.md, "Callers and credentials").
# The first pattern that matches decides.
OWNER = [
    (r"^/v1/admin/", "operator"),
    (r"^/v1/jobs/\{job_id\}/(back-out|en-route|check-in|complete|attachments|expenses|tasks/\{key\})$", "technician"),
    (r"^/v1/technicians/\{technician_id\}/credentials", "org"),
    # Both sides of a job rate it; the organisation and the assigned technician read its proof of work.
    (r"^/v1/jobs/\{job_id\}/(ratings?|attachments/\{attachment_id\})$", "org technician"),
    (r"^/v1/(technicians|jobs|org|compliance|payables|payables\.csv|job-templates|webhooks)(/|$)", "org"),
    (r"^/v1/(me|offers)", "technician"),
]


def _owner(path: str) -> str:
    for pattern, owner in OWNER:
        if re.match(pattern, path):
            return owner
    raise AssertionError(f"{path} is not assigned to a kind of caller: add it to OWNER")


def _concrete(path: str) -> str:
    path = path.replace("{token}", "some-device-token").replace("{kind}", "nda")
    return re.sub(r"\{[a-z_]+_id\}", lambda _: str(uuid.uuid4()), path)


async def _routes(client: AsyncTestClient) -> list[tuple[str, str]]:
    schema = (await client.get("/schema/openapi.json")).json()
    routes = [
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    ]
    assert len(routes) >= 10, routes
    return routes


async def test_every_route_refuses_the_wrong_caller(client: AsyncTestClient) -> None:
    org = await new_org(client)
    await onboard(client, org, "walker")
    callers = {"operator": ADMIN, "org": org, "technician": technician_auth("walker")}
    for method, path in await _routes(client):
        url = _concrete(path)
        if path.startswith(PUBLIC):
            response = await client.request(method, url)
            assert response.status_code < 400, (method, path, response.text)
            continue
        if path.startswith(LINKS):
            for headers in ({}, {"Authorization": "Bearer nonsense"}, *callers.values()):
                response = await client.request(method, url, headers=headers)
                assert response.status_code == 404, (method, path, headers, response.status_code)
            continue
        owner = _owner(path)
        response = await client.request(method, url, json={})
        assert response.status_code == 401, (method, path, url, "no credential", response.status_code, response.text)
        response = await client.request(method, url, json={}, headers={"Authorization": "Bearer nonsense"})
        assert response.status_code == 401, (method, path, "bad credential", response.status_code)
        for kind, headers in callers.items():
            response = await client.request(method, url, json={}, headers=headers)
            if kind in owner.split():
                assert response.status_code not in (401, 403), (method, path, kind, response.text)
            else:
                assert response.status_code == 403, (method, path, kind, response.status_code)


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer trk_not-a-real-key", "Bearer a.b.c", "dev-admin-token"],
)
async def test_malformed_or_unknown_credentials_are_401(client: AsyncTestClient, header: str) -> None:
    response = await client.get("/v1/technicians", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["detail"]


async def test_a_token_for_another_firebase_project_is_refused(client: AsyncTestClient) -> None:
    from backend.auth import emulator_id_token

    org = await new_org(client)
    await onboard(client, org, "elsewhere")
    token = emulator_id_token("elsewhere", "some-other-project")
    response = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


async def test_revoked_api_key_stops_working(client: AsyncTestClient, db) -> None:
    created = (await client.post("/v1/admin/orgs", json={"name": "Rotating"}, headers=ADMIN)).json()
    old = {"Authorization": f"Bearer {created['api_key']}"}
    assert (await client.get("/v1/technicians", headers=old)).status_code == 200

    issued = await client.post(f"/v1/admin/orgs/{created['id']}/api-keys", headers=ADMIN)
    assert issued.status_code == 201
    new = {"Authorization": f"Bearer {issued.json()['api_key']}"}

    revoked = await client.delete(f"/v1/admin/orgs/{created['id']}/api-keys/{created['api_key_id']}", headers=ADMIN)
    assert revoked.status_code == 204
    assert (await client.get("/v1/technicians", headers=old)).status_code == 401
    assert (await client.get("/v1/technicians", headers=new)).status_code == 200
    # Revoking another organisation's key through this organisation's path is not possible.
    other = (await client.post("/v1/admin/orgs", json={"name": "Other"}, headers=ADMIN)).json()
    response = await client.delete(f"/v1/admin/orgs/{created['id']}/api-keys/{other['api_key_id']}", headers=ADMIN)
    assert response.status_code == 404


async def test_api_keys_are_stored_hashed_and_shown_once(client: AsyncTestClient, db) -> None:
    created = (await client.post("/v1/admin/orgs", json={"name": "Hashed"}, headers=ADMIN)).json()
    key = created["api_key"]
    stored = db.execute("SELECT key_hash, prefix FROM api_keys WHERE org_id = %s", (created["id"],)).fetchall()
    assert len(stored) == 1
    assert key.encode() not in bytes(stored[0][0])
    assert stored[0][1] != key


async def test_create_org_validates_its_body(client: AsyncTestClient, db) -> None:
    for body, field in [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({}, "name"),
        ({"name": "x", "settings": 3}, "settings"),
    ]:
        response = await client.post("/v1/admin/orgs", json=body, headers=ADMIN)
        assert response.status_code == 400, body
        assert field in response.json()["detail"], response.json()
    assert db.execute("SELECT count(*) FROM organizations").fetchone()[0] == 0


async def test_in_production_a_technician_token_whose_certificates_cannot_be_fetched_is_503_not_500(
    settings, monkeypatch
) -> None:
    """No application-default credentials on the host (none are needed to verify an ID token), and Google's
    certificates out of reach: the technician is told to retry (503), the operator's log says why."""
    import firebase_admin._token_gen

    from backend.app import create_app
    from backend.settings import load_settings

    monkeypatch.delenv("FIREBASE_AUTH_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    # Nothing listens on the discard port: the fetch fails at once, as it would with Google unreachable.
    monkeypatch.setattr(firebase_admin._token_gen, "ID_TOKEN_CERT_URI", "http://127.0.0.1:9/certs")
    production = load_settings(
        {
            "TRUCKROLL_ENV": "production",
            "DATABASE_URL": settings.database.url,
            "TRUCKROLL_ADMIN_TOKEN": "p" * 40,
            "TRUCKROLL_FIREBASE_PROJECT_ID": PROJECT_ID,
            "TRUCKROLL_PUSH": "log",
            "TRUCKROLL_WORKER": "external",
        }
    )
    async with AsyncTestClient(create_app(production)) as client:
        response = await client.get("/v1/me", headers={"Authorization": f"Bearer {_signed_looking_token('ana')}"})

    assert response.status_code == 503, response.text
    assert response.headers.get("retry-after")
    assert "certificates" in response.json()["detail"]


def _signed_looking_token(uid: str) -> str:
    """A token shaped like one Firebase signs (RS256, a key id, valid claims), so that verifying it needs the
    certificates; its signature is never reached."""
    import base64
    import json
    import time

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    now = int(time.time())
    claims = {
        "iss": f"https://securetoken.google.com/{PROJECT_ID}",
        "aud": PROJECT_ID,
        "sub": uid,
        "iat": now,
        "auth_time": now,
        "exp": now + 3600,
    }
    return f"{part({'alg': 'RS256', 'kid': 'key-1', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"
