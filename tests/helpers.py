"""Helpers the API tests share: credentials of each kind and a few request bodies."""

from __future__ import annotations

from litestar.testing import AsyncTestClient

from backend.auth import emulator_id_token

ADMIN_TOKEN = "test-admin-token-0123456789abcdef0123"
PROJECT_ID = "truckroll-test"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def technician_auth(uid: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {emulator_id_token(uid, PROJECT_ID)}"}


async def new_org(client: AsyncTestClient, name: str = "Acme Field Services") -> dict[str, str]:
    response = await client.post("/v1/admin/orgs", json={"name": name}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['api_key']}"}


def technician_body(uid: str, **overrides) -> dict:
    body = {
        "name": "Ana Albrecht",
        "firebase_uid": uid,
        "skills": ["hvac", "electrical"],
        "home": {"lat": 52.52, "lon": 13.405},
        "service_radius_km": 25,
        "tier": "preferred",
    }
    body.update(overrides)
    return body


async def onboard(client: AsyncTestClient, org: dict[str, str], uid: str, **overrides) -> dict:
    response = await client.post("/v1/technicians", json=technician_body(uid, **overrides), headers=org)
    assert response.status_code == 201, response.text
    return response.json()
