"""Malformed requests are the caller's mistake: a 4xx naming what is wrong, never a 500 (API.md, "Conventions" and
"Operating it"). Bodies are sent as raw bytes, as an attacker or a broken client would send them."""

from __future__ import annotations

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from backend.app import create_app
from backend.settings import Settings
from tests.api.routes_helpers import WRITES, operations
from tests.helpers import ADMIN, new_org, onboard, technician_auth

JSON = {"Content-Type": "application/json"}
NOT_UTF8 = b'{"name": "\xff\xfe"}'
DEEP = b"[" * 6000 + b"]" * 6000

# Every one of these is answered 4xx by every write route, whatever the route expects.
MALFORMED: dict[str, tuple[bytes, dict[str, str]]] = {
    "not UTF-8": (NOT_UTF8, JSON),
    "not UTF-8, outside a string": (b"\xff\xfe{}", JSON),
    "nested 6,000 deep": (DEEP, JSON),
    "objects nested 6,000 deep": (b'{"a":' * 6000 + b"1" + b"}" * 6000, JSON),
    "unterminated nesting": (b"{" * 6000, JSON),
    "truncated": (b'{"name": "Ana', JSON),
    "binary": (bytes(range(256)), JSON),
    "UTF-8 byte order mark": (b'\xef\xbb\xbf{"name": "Ana"}', JSON),
    "NaN": (b'{"name": NaN}', JSON),
    "huge number": (b'{"stars": 1e999999}', JSON),
    "huge integer": (b'{"stars": ' + b"9" * 5000 + b"}", JSON),
    "lone surrogate": (b'{"name": "\\ud800"}', JSON),
    "NUL in a string": (b'{"name": "a\\u0000b", "reason": "\\u0000", "token": "\\u0000"}', JSON),
    "a JSON string": (b'"hello"', JSON),
    "null": (b"null", JSON),
    "wrong Content-Type": (b'{"name": "Ana"}', {"Content-Type": "text/plain"}),
    "a form": (b"name=Ana", {"Content-Type": "application/x-www-form-urlencoded"}),
    "multipart": (
        b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--x--\r\n",
        {"Content-Type": "multipart/form-data; boundary=x"},
    ),
    "garbage Content-Type": (b"{}", {"Content-Type": "\x01;;;=="}),
}


@pytest.fixture
async def credentials(client: AsyncTestClient) -> dict[str, dict[str, str]]:
    org = await new_org(client)
    await onboard(client, org, "walker")
    return {"operator": ADMIN, "org": org, "technician": technician_auth("walker")}


async def test_a_body_that_is_not_utf8_is_400_naming_it(client: AsyncTestClient, credentials) -> None:
    response = await client.post("/v1/technicians", content=NOT_UTF8, headers={**credentials["org"], **JSON})
    assert response.status_code == 400
    assert response.json() == {"status_code": 400, "detail": "body: a string is not UTF-8 (byte 0xff)"}


async def test_json_nested_6000_deep_is_400(client: AsyncTestClient, credentials) -> None:
    response = await client.post("/v1/admin/orgs", content=DEEP, headers={**ADMIN, **JSON})
    assert response.status_code == 400
    assert response.json()["detail"] == "body: JSON nested too deeply"


async def test_a_body_that_is_not_json_is_415(client: AsyncTestClient, credentials) -> None:
    response = await client.post(
        "/v1/admin/orgs", content=b'{"name": "Acme"}', headers={**ADMIN, "Content-Type": "text/plain"}
    )
    assert response.status_code == 415
    assert response.json()["detail"] == "Content-Type: expected application/json, got 'text/plain'"
    # JSON by another name, and no Content-Type at all, are read as JSON.
    for headers in ({"Content-Type": "application/json; charset=utf-8"}, {"Content-Type": "application/ld+json"}, {}):
        response = await client.post("/v1/admin/orgs", content=b'{"name": "Acme"}', headers={**ADMIN, **headers})
        assert response.status_code == 201, (headers, response.text)


async def test_a_string_with_nul_is_400_naming_the_field(client: AsyncTestClient, credentials, db) -> None:
    response = await client.post("/v1/admin/orgs", content=b'{"name": "Ac\\u0000me"}', headers={**ADMIN, **JSON})
    assert response.status_code == 400
    assert response.json()["detail"] == "name: must not contain the character U+0000 (NUL)"
    assert db.execute("SELECT count(*) FROM organizations").fetchone()[0] == 1  # the fixture's only


async def test_a_body_over_the_limit_is_still_413(client: AsyncTestClient, credentials) -> None:
    body = b'{"name": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    response = await client.post("/v1/admin/orgs", content=body, headers={**ADMIN, **JSON})
    assert response.status_code == 413


async def test_every_write_route_answers_malformed_bytes_with_a_documented_4xx(
    client: AsyncTestClient, credentials
) -> None:
    """The fuzz: each malformed body to each write route, with a credential it accepts (so that the body is read)."""
    schema = (await client.get("/schema/openapi.json")).json()
    tried = 0
    for operation in operations(client.app, WRITES):
        documented = {int(s) for s in schema["paths"][operation.path][operation.method.lower()]["responses"]}
        headers = operation.caller(credentials)
        url = operation.url()
        for name, (body, content_type) in MALFORMED.items():
            response = await client.request(operation.method, url, content=body, headers={**headers, **content_type})
            what = f"{operation.method} {operation.path} with {name}: {response.status_code} {response.text[:200]}"
            assert 400 <= response.status_code < 500, what
            assert response.status_code in documented, f"undocumented {what} (documented: {sorted(documented)})"
            assert response.json()["status_code"] == response.status_code, what
            tried += 1
    assert tried >= 20 * len(MALFORMED), tried


async def test_options_on_every_route_lists_its_methods_without_a_credential(client: AsyncTestClient) -> None:
    urls: dict[str, str] = {}
    methods: dict[str, set[str]] = {}
    for operation in operations(client.app):
        urls.setdefault(operation.path, operation.url())
        methods.setdefault(operation.path, set()).add(operation.method)
    assert len(urls) > 30
    for path, url in urls.items():
        response = await client.options(url)
        assert response.status_code == 204, (url, response.status_code, response.text)
        assert set(response.headers["allow"].split(", ")) == {*methods[path], "OPTIONS"}, url
        assert "access-control-allow-origin" not in response.headers
        # A caller that sends its credential anyway (or a wrong one) gets the same answer.
        response = await client.options(url, headers={"Authorization": "Bearer nonsense"})
        assert response.status_code == 204, url


CONSOLE = "https://console.example.com"


@pytest.fixture
async def cors_client(settings: Settings) -> AsyncTestClient:
    settings = msgspec.structs.replace(
        settings, server=msgspec.structs.replace(settings.server, cors_origins=(CONSOLE, "http://localhost:5173"))
    )
    async with AsyncTestClient(create_app(settings)) as client:
        yield client


async def test_a_cors_preflight_is_answered_204_for_an_allowed_origin(cors_client: AsyncTestClient) -> None:
    preflight = {
        "Origin": CONSOLE,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
    }
    response = await cors_client.options("/v1/jobs", headers=preflight)
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == CONSOLE
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "idempotency-key" in response.headers["access-control-allow-headers"].lower()
    assert response.headers["x-request-id"]

    refused = await cors_client.options("/v1/jobs", headers={**preflight, "Origin": "https://evil.example"})
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers

    # OPTIONS without an Origin is not a preflight: the route's own answer.
    assert (await cors_client.options("/v1/jobs")).headers["allow"] == "GET, OPTIONS, POST"


async def test_cors_headers_go_only_to_allowed_origins(cors_client: AsyncTestClient, client: AsyncTestClient) -> None:
    response = await cors_client.get("/healthz", headers={"Origin": CONSOLE})
    assert response.headers["access-control-allow-origin"] == CONSOLE
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()
    other = await cors_client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    # Without TRUCKROLL_CORS_ORIGINS, no CORS headers at all.
    plain = await client.get("/healthz", headers={"Origin": CONSOLE})
    assert not [h for h in plain.headers if h.startswith("access-control-")]
