"""The talent pool (`/v1/technicians`): onboarding, validation, tenancy, listing and partial updates."""

from __future__ import annotations

import json
import uuid

import anyio.to_thread
import httpx
import psycopg
import pytest
from litestar.testing import AsyncTestClient

from tests.helpers import ADMIN, new_org, onboard, technician_auth, technician_body

DOCUMENTED_FIELDS = {
    "id",
    "name",
    "skills",
    "tier",
    "active",
    "service_radius_km",
    "home",
    "on_duty",
    "last_location",
    "rating",
}
ONE_MB = 1024 * 1024


def stored_counts(db: psycopg.Connection) -> tuple[int, int]:
    return db.execute("SELECT (SELECT count(*) FROM technicians), (SELECT count(*) FROM pool_memberships)").fetchone()


def membership_row(db: psycopg.Connection, technician_id: str) -> list[tuple]:
    return db.execute(
        "SELECT org_id, tier, skills, service_radius_km, active, notes, ST_Y(home::geometry), ST_X(home::geometry) "
        "FROM pool_memberships WHERE technician_id = %s ORDER BY org_id",
        (technician_id,),
    ).fetchall()


async def walk(client: AsyncTestClient, org: dict[str, str], query: str = "") -> list[list[dict]]:
    """Every page of the pool listing, following next_cursor until it is null."""
    pages: list[list[dict]] = []
    cursor = None
    for _ in range(1000):
        params = query + (f"&cursor={cursor}" if cursor else "")
        response = await client.get(f"/v1/technicians?{params}", headers=org)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
    raise AssertionError("pagination never ended")


# --- onboarding ---------------------------------------------------------------------------------------


async def test_onboard_returns_201_with_the_documented_fields(client: AsyncTestClient, db: psycopg.Connection) -> None:
    org = await new_org(client)
    response = await client.post("/v1/technicians", json=technician_body("uid-ana"), headers=org)

    assert response.status_code == 201, response.text
    body = response.json()
    assert DOCUMENTED_FIELDS <= body.keys()
    uuid.UUID(body["id"])
    assert body["name"] == "Ana Albrecht"
    assert sorted(body["skills"]) == ["electrical", "hvac"]
    assert body["tier"] == "preferred"
    assert body["active"] is True
    assert body["service_radius_km"] == 25
    assert body["home"] == {"lat": 52.52, "lon": 13.405}
    assert body["on_duty"] is False
    assert body["last_location"] is None
    assert body["rating"] is None

    # What was stored is what was answered, and reading it back gives the same object.
    assert db.execute("SELECT id::text, firebase_uid, name FROM technicians").fetchall() == [
        (body["id"], "uid-ana", "Ana Albrecht")
    ]
    [(_, tier, _, radius, active, _, lat, lon)] = membership_row(db, body["id"])
    assert (tier, radius, active, lat, lon) == ("preferred", 25, True, 52.52, 13.405)
    again = await client.get(f"/v1/technicians/{body['id']}", headers=org)
    assert again.status_code == 200
    assert again.json() == body


async def test_onboard_accepts_the_boundary_values(client: AsyncTestClient) -> None:
    org = await new_org(client)
    edge = await onboard(
        client, org, "uid-edge", home={"lat": 90, "lon": -180}, service_radius_km=500, tier="approved", active=False
    )
    assert edge["home"] == {"lat": 90, "lon": -180}
    assert edge["service_radius_km"] == 500
    assert edge["tier"] == "approved"
    assert edge["active"] is False
    small = await onboard(client, org, "uid-small", home={"lat": -90, "lon": 180}, service_radius_km=0.1)
    assert small["service_radius_km"] == pytest.approx(0.1)


async def test_skills_are_trimmed_lower_cased_and_deduplicated(client: AsyncTestClient) -> None:
    org = await new_org(client)
    technician = await onboard(
        client, org, "uid-skills", skills=[" HVAC ", "hvac", "Electrical", "ELECTRICAL\t", "Fiber Optics "]
    )
    assert sorted(technician["skills"]) == ["electrical", "fiber optics", "hvac"]
    assert len(technician["skills"]) == 3

    read = await client.get(f"/v1/technicians/{technician['id']}", headers=org)
    assert sorted(read.json()["skills"]) == ["electrical", "fiber optics", "hvac"]


def _without(key: str) -> dict:
    body = technician_body("uid-bad")
    del body[key]
    return body


INVALID_ONBOARDING = [
    pytest.param(technician_body("uid-bad", home={"lat": 91, "lon": 13.4}), "home.lat", id="lat-91"),
    pytest.param(technician_body("uid-bad", home={"lat": 52.5, "lon": -181}), "home.lon", id="lon-minus-181"),
    pytest.param(technician_body("uid-bad", service_radius_km=0), "service_radius_km", id="radius-0"),
    pytest.param(technician_body("uid-bad", service_radius_km=501), "service_radius_km", id="radius-501"),
    pytest.param(technician_body("uid-bad", tier="gold"), "tier", id="tier-gold"),
    pytest.param(technician_body("uid-bad", name=""), "name", id="empty-name"),
    pytest.param(technician_body("uid-bad", name="   "), "name", id="whitespace-name"),
    pytest.param(_without("firebase_uid"), "firebase_uid", id="missing-firebase-uid"),
    pytest.param(technician_body("uid-bad", nickname="Ani"), "nickname", id="unknown-field"),
    pytest.param(technician_body("uid-bad", skills=["hvac", "  "]), "skills", id="blank-skill"),
    pytest.param(technician_body("uid-bad", home={"lon": 13.4}), "lat", id="home-without-lat"),
    pytest.param(technician_body("uid-bad", home=None), "home", id="home-null"),
]


@pytest.mark.parametrize(("body", "field"), INVALID_ONBOARDING)
async def test_invalid_onboarding_is_400_naming_the_field_and_stores_nothing(
    client: AsyncTestClient, db: psycopg.Connection, body: dict, field: str
) -> None:
    org = await new_org(client)
    response = await client.post("/v1/technicians", json=body, headers=org)

    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["status_code"] == 400
    assert field in payload["detail"]
    assert stored_counts(db) == (0, 0)


async def test_an_unknown_field_inside_home_is_400_and_stores_nothing(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    body = technician_body("uid-bad", home={"lat": 52.52, "lon": 13.405, "altitude_m": 34})
    response = await client.post("/v1/technicians", json=body, headers=org)
    assert response.status_code == 400, response.text
    assert "altitude_m" in response.json()["detail"]
    assert stored_counts(db) == (0, 0)


async def test_invalid_onboarding_of_a_known_person_adds_no_membership(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    first, second = await new_org(client, "First"), await new_org(client, "Second")
    await onboard(client, first, "uid-known")

    response = await client.post(
        "/v1/technicians", json=technician_body("uid-known", service_radius_km=501), headers=second
    )
    assert response.status_code == 400
    assert "service_radius_km" in response.json()["detail"]
    assert stored_counts(db) == (1, 1)


async def test_onboarding_the_same_person_twice_into_one_pool_is_409(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    technician = await onboard(client, org, "uid-twice")

    response = await client.post(
        "/v1/technicians",
        json=technician_body("uid-twice", name="Someone Else", tier="approved", skills=["plumbing"]),
        headers=org,
    )
    assert response.status_code == 409, response.text
    assert stored_counts(db) == (1, 1)
    # The first onboarding stands untouched.
    read = await client.get(f"/v1/technicians/{technician['id']}", headers=org)
    assert read.json() == technician


async def test_one_person_in_two_pools_has_one_id_and_separate_views(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    acme, beta = await new_org(client, "Acme"), await new_org(client, "Beta")
    at_acme = await onboard(
        client,
        acme,
        "uid-shared",
        name="Ana Albrecht",
        email="ana@example.com",
        skills=["HVAC"],
        tier="preferred",
        service_radius_km=25,
        notes="acme: reliable on rooftops",
    )
    at_beta = await onboard(
        client,
        beta,
        "uid-shared",
        name="A. Nother-Name",
        email="other@example.com",
        skills=["Plumbing", "welding"],
        tier="approved",
        service_radius_km=80,
        home={"lat": 48.137, "lon": 11.575},
        notes="beta: secret remark",
    )

    assert at_beta["id"] == at_acme["id"]
    assert stored_counts(db) == (1, 2)
    # The first organisation's contact profile is kept.
    assert at_beta["name"] == "Ana Albrecht"
    assert db.execute("SELECT name, email FROM technicians").fetchone() == ("Ana Albrecht", "ana@example.com")

    acme_view = (await client.get(f"/v1/technicians/{at_acme['id']}", headers=acme)).json()
    beta_view = (await client.get(f"/v1/technicians/{at_acme['id']}", headers=beta)).json()
    assert (acme_view["tier"], acme_view["skills"], acme_view["service_radius_km"]) == ("preferred", ["hvac"], 25)
    assert acme_view["home"] == {"lat": 52.52, "lon": 13.405}
    assert acme_view.get("notes") == "acme: reliable on rooftops"
    assert (beta_view["tier"], sorted(beta_view["skills"]), beta_view["service_radius_km"]) == (
        "approved",
        ["plumbing", "welding"],
        80,
    )
    assert beta_view["home"] == {"lat": 48.137, "lon": 11.575}
    assert "acme" not in json.dumps(beta_view)
    assert "beta" not in json.dumps(acme_view)

    # One organisation's PATCH leaves the other's view as it was.
    patched = await client.patch(
        f"/v1/technicians/{at_acme['id']}",
        json={"tier": "approved", "skills": ["Roofing"], "service_radius_km": 5, "active": False},
        headers=acme,
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["tier"], patched.json()["skills"], patched.json()["active"]) == (
        "approved",
        ["roofing"],
        False,
    )
    assert (await client.get(f"/v1/technicians/{at_acme['id']}", headers=beta)).json() == beta_view
    beta_listing = (await client.get("/v1/technicians", headers=beta)).json()["items"]
    assert beta_listing == [beta_view]


async def test_a_technician_of_another_pool_is_404_without_leaking_anything(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    owner, stranger = await new_org(client, "Owner"), await new_org(client, "Stranger")
    secret = await onboard(
        client, owner, "uid-private", name="Zelda Quincey", skills=["cryogenics"], notes="owner-only remark"
    )
    before = membership_row(db, secret["id"])

    missing = await client.get(f"/v1/technicians/{uuid.uuid4()}", headers=stranger)
    assert missing.status_code == 404
    for response in (
        await client.get(f"/v1/technicians/{secret['id']}", headers=stranger),
        await client.patch(
            f"/v1/technicians/{secret['id']}", json={"tier": "approved", "active": False}, headers=stranger
        ),
    ):
        assert response.status_code == 404, response.text
        text = response.text
        for leak in (secret["id"], "Zelda", "cryogenics", "owner-only", "Owner"):
            assert leak not in text
        # Indistinguishable from an id that does not exist at all.
        assert response.json() == missing.json()

    assert membership_row(db, secret["id"]) == before
    assert (await client.get("/v1/technicians", headers=stranger)).json() == {"items": [], "next_cursor": None}


# --- listing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["0", "201", "-1", "ten"])
async def test_list_limit_out_of_range_is_400_naming_limit(client: AsyncTestClient, limit: str) -> None:
    org = await new_org(client)
    response = await client.get(f"/v1/technicians?limit={limit}", headers=org)
    assert response.status_code == 400, response.text
    assert "limit" in response.json()["detail"]


async def test_list_limit_defaults_to_50_and_accepts_1_and_200(client: AsyncTestClient) -> None:
    org = await new_org(client)
    ids = [(await onboard(client, org, f"uid-{i:03d}"))["id"] for i in range(51)]

    default = (await client.get("/v1/technicians", headers=org)).json()
    assert len(default["items"]) == 50
    assert default["next_cursor"] is not None

    one = (await client.get("/v1/technicians?limit=1", headers=org)).json()
    assert len(one["items"]) == 1
    assert one["next_cursor"] is not None

    everything = (await client.get("/v1/technicians?limit=200", headers=org)).json()
    assert sorted(t["id"] for t in everything["items"]) == sorted(ids)
    assert everything["next_cursor"] is None


async def test_cursor_pagination_walks_every_member_exactly_once_in_a_stable_order(client: AsyncTestClient) -> None:
    org, other = await new_org(client, "Mine"), await new_org(client, "Other")
    ids = [(await onboard(client, org, f"uid-{i}"))["id"] for i in range(7)]
    await onboard(client, other, "uid-elsewhere")

    pages = await walk(client, org, "limit=3")
    assert [len(p) for p in pages] == [3, 3, 1]
    walked = [t["id"] for page in pages for t in page]
    assert sorted(walked) == sorted(ids)
    assert len(set(walked)) == len(walked)

    again = [t["id"] for page in await walk(client, org, "limit=3") for t in page]
    assert again == walked
    single = [t["id"] for page in await walk(client, org, "limit=1") for t in page]
    assert single == walked

    # An exact multiple of the page size ends with next_cursor null, not an empty extra page.
    pages = await walk(client, org, "limit=7")
    assert [len(p) for p in pages] == [7]


async def test_cursor_pagination_with_members_onboarded_at_the_same_instant(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    ids = [(await onboard(client, org, f"uid-{i}"))["id"] for i in range(5)]
    db.execute("UPDATE pool_memberships SET created_at = '2026-01-01T00:00:00Z'")

    walked = [t["id"] for page in await walk(client, org, "limit=2") for t in page]
    assert sorted(walked) == sorted(ids)
    assert len(walked) == 5


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "!!!",
        "WyJ5ZXN0ZXJkYXkiLCAiMSJd",  # base64 of ["yesterday", "1"]
        "eyJhIjogMX0",  # base64 of {"a": 1}
    ],
)
async def test_an_invalid_cursor_is_400_naming_cursor(client: AsyncTestClient, cursor: str) -> None:
    org = await new_org(client)
    await onboard(client, org, "uid-1")
    response = await client.get("/v1/technicians", params={"cursor": cursor}, headers=org)
    assert response.status_code == 400, response.text
    assert "cursor" in response.json()["detail"]


async def test_list_filters_by_tier_and_active(client: AsyncTestClient) -> None:
    org = await new_org(client)
    pa = await onboard(client, org, "uid-pa", tier="preferred", active=True)
    pi = await onboard(client, org, "uid-pi", tier="preferred", active=False)
    aa = await onboard(client, org, "uid-aa", tier="approved", active=True)
    ai = await onboard(client, org, "uid-ai", tier="approved", active=False)

    async def ids(query: str) -> set[str]:
        return {t["id"] for page in await walk(client, org, query) for t in page}

    assert await ids("tier=preferred") == {pa["id"], pi["id"]}
    assert await ids("tier=approved") == {aa["id"], ai["id"]}
    assert await ids("active=true") == {pa["id"], aa["id"]}
    assert await ids("active=false") == {pi["id"], ai["id"]}
    assert await ids("tier=approved&active=false") == {ai["id"]}
    assert await ids("tier=approved&active=false&limit=1") == {ai["id"]}
    assert await ids("tier=preferred&limit=1") == {pa["id"], pi["id"]}

    bad = await client.get("/v1/technicians?tier=gold", headers=org)
    assert bad.status_code == 400
    assert "tier" in bad.json()["detail"]


# --- partial update -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"tier": "approved"}, {"tier": "approved"}),
        ({"active": False}, {"active": False}),
        ({"service_radius_km": 12.5}, {"service_radius_km": 12.5}),
        ({"skills": [" Plumbing", "PLUMBING", "Gas "]}, {"skills": ["gas", "plumbing"]}),
        ({}, {}),
    ],
    ids=["tier", "active", "radius", "skills", "nothing"],
)
async def test_patch_changes_only_the_given_fields(client: AsyncTestClient, change: dict, expected: dict) -> None:
    org = await new_org(client)
    before = await onboard(client, org, "uid-patch", notes="keep me")

    response = await client.patch(f"/v1/technicians/{before['id']}", json=change, headers=org)
    assert response.status_code == 200, response.text
    after = response.json()
    if "skills" in after:
        after["skills"] = sorted(after["skills"])
        before["skills"] = sorted(before["skills"])
    assert after == {**before, **expected}
    read = (await client.get(f"/v1/technicians/{before['id']}", headers=org)).json()
    read["skills"] = sorted(read["skills"])
    assert read == after


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tier": "gold"}, "tier"),
        ({"tier": None}, "tier"),
        ({"service_radius_km": 0}, "service_radius_km"),
        ({"service_radius_km": 501}, "service_radius_km"),
        ({"active": "yes"}, "active"),
        ({"skills": ["hvac", ""]}, "skills"),
        ({"skills": "hvac"}, "skills"),
        ({"tier": "approved", "name": "Renamed"}, "name"),
    ],
    ids=["tier-gold", "tier-null", "radius-0", "radius-501", "active-string", "empty-skill", "skills-string", "name"],
)
async def test_patch_with_bad_values_is_400_and_changes_nothing(
    client: AsyncTestClient, db: psycopg.Connection, change: dict, field: str
) -> None:
    org = await new_org(client)
    before = await onboard(client, org, "uid-patch")
    stored = membership_row(db, before["id"])

    response = await client.patch(f"/v1/technicians/{before['id']}", json=change, headers=org)
    assert response.status_code == 400, response.text
    assert field in response.json()["detail"]
    assert (await client.get(f"/v1/technicians/{before['id']}", headers=org)).json() == before
    assert membership_row(db, before["id"]) == stored
    assert db.execute("SELECT name FROM technicians").fetchone() == ("Ana Albrecht",)


# --- body size and credentials ------------------------------------------------------------------------


def _padded(body: dict, size: int) -> bytes:
    """The JSON of `body`, padded with whitespace to exactly `size` bytes (still valid JSON)."""
    raw = json.dumps(body).encode()
    assert raw.endswith(b"}")
    return raw[:-1] + b" " * (size - len(raw)) + b"}"


async def test_a_body_of_exactly_1_mb_is_accepted(client: AsyncTestClient, db: psycopg.Connection) -> None:
    org = await new_org(client)
    content = _padded(technician_body("uid-exact"), ONE_MB)
    assert len(content) == ONE_MB
    response = await client.post(
        "/v1/technicians", content=content, headers={**org, "content-type": "application/json"}
    )
    assert response.status_code == 201, response.text
    assert stored_counts(db) == (1, 1)


async def test_a_body_over_1_mb_is_413_and_nothing_is_stored(client: AsyncTestClient, db: psycopg.Connection) -> None:
    org = await new_org(client)
    response = await client.post(
        "/v1/technicians",
        content=_padded(technician_body("uid-big"), ONE_MB + 1),
        headers={**org, "content-type": "application/json"},
    )
    assert response.status_code == 413, response.text
    assert stored_counts(db) == (0, 0)

    technician = await onboard(client, org, "uid-small")
    patch = await client.patch(
        f"/v1/technicians/{technician['id']}",
        content=_padded({"tier": "approved"}, 2 * ONE_MB),
        headers={**org, "content-type": "application/json"},
    )
    assert patch.status_code == 413, patch.text
    assert (await client.get(f"/v1/technicians/{technician['id']}", headers=org)).json()["tier"] == "preferred"


async def test_a_chunked_body_over_1_mb_is_413(client: AsyncTestClient, db: psycopg.Connection) -> None:
    """Without a Content-Length the limit must still hold (the body is streamed in chunks)."""
    org = await new_org(client)
    content = _padded(technician_body("uid-chunked"), 2 * ONE_MB)

    async def chunks():
        for start in range(0, len(content), 64 * 1024):
            yield content[start : start + 64 * 1024]

    async def post() -> httpx.Response:
        # Litestar's test transport cannot stream a request body; drive the app directly, on its own loop.
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver.local") as http:
            return await http.post(
                "/v1/technicians", content=chunks(), headers={**org, "content-type": "application/json"}
            )

    response = await anyio.to_thread.run_sync(client.blocking_portal.call, post)
    assert "content-length" not in response.request.headers
    assert response.status_code == 413, response.text
    assert stored_counts(db) == (0, 0)


async def test_the_pool_is_for_organisation_keys_only(client: AsyncTestClient, db: psycopg.Connection) -> None:
    org = await new_org(client)
    technician = await onboard(client, org, "uid-self")
    cases = [
        ("GET", "/v1/technicians", None),
        ("GET", f"/v1/technicians/{technician['id']}", None),
        ("POST", "/v1/technicians", technician_body("uid-new")),
        ("PATCH", f"/v1/technicians/{technician['id']}", {"tier": "approved"}),
    ]
    for method, url, body in cases:
        for headers, status in (
            ({}, 401),
            ({"Authorization": "Bearer trk_not-a-real-key"}, 401),
            ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),
            (technician_auth("uid-self"), 403),
            (ADMIN, 403),
        ):
            response = await client.request(method, url, json=body, headers=headers)
            assert response.status_code == status, (method, url, headers, response.text)
    assert stored_counts(db) == (1, 1)
    assert (await client.get(f"/v1/technicians/{technician['id']}", headers=org)).json()["tier"] == "preferred"


async def test_onboarding_replayed_with_its_idempotency_key_answers_the_first_201(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    headers = {**org, "Idempotency-Key": "onboard-mia"}
    body = technician_body("mia")

    first = await client.post("/v1/technicians", json=body, headers=headers)
    replay = await client.post("/v1/technicians", json=body, headers=headers)

    assert first.status_code == 201, first.text
    assert (replay.status_code, replay.content) == (201, first.content)
    assert db.execute("SELECT count(*) FROM pool_memberships").fetchone()[0] == 1
    other = await client.post("/v1/technicians", json=technician_body("other"), headers=headers)
    assert other.status_code == 422 and "Idempotency-Key" in other.json()["detail"]
