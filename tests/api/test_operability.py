"""Operating it (API.md): a request id on every response, one log line per request, a traceback for every 5xx,
the log format and CORS by setting."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator

import pytest
from litestar import get
from litestar.testing import AsyncTestClient

from backend.app import create_app
from backend.observability import JsonFormatter, TextFormatter, logging_handler, request_id
from backend.settings import Settings, SettingsError, load_settings
from tests.helpers import ADMIN, ADMIN_TOKEN, new_org

HTTP_LOG = "truckroll.http"


class Boom(Exception):
    pass


@get("/v1/boom", exclude_from_auth=True, include_in_schema=False)
async def boom() -> None:
    raise Boom("the handler broke")


@pytest.fixture
async def boom_client(settings: Settings) -> AsyncIterator[AsyncTestClient]:
    async with AsyncTestClient(create_app(settings, extra_route_handlers=[boom])) as client:
        yield client


@pytest.fixture
def http_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=HTTP_LOG)
    return caplog


def lines_for(caplog: pytest.LogCaptureFixture, request_id: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == HTTP_LOG and r.request_id == request_id]


async def test_a_callers_request_id_is_echoed(client: AsyncTestClient) -> None:
    for rid in ("abc", "req-2026.11.25_0001", "x" * 128):
        response = await client.get("/healthz", headers={"X-Request-ID": rid})
        assert response.headers["x-request-id"] == rid


@pytest.mark.parametrize("bad", ["", "x" * 129, "has space", "semi;colon", "ünïcode", "a/b", "<script>"])
async def test_an_invalid_request_id_is_replaced_by_a_new_one(client: AsyncTestClient, bad: str) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": bad.encode()})
    assert response.headers["x-request-id"] != bad
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


async def test_every_response_carries_a_new_request_id(client: AsyncTestClient) -> None:
    org = await new_org(client)
    responses = [
        await client.get("/healthz"),
        await client.get("/v1/technicians", headers=org),
        await client.get("/v1/technicians"),  # 401
        await client.get("/v1/no-such-route"),  # 404 before any route
        await client.put("/v1/technicians", headers=org),  # 405
        await client.post("/v1/admin/orgs", content=b"\xff", headers=ADMIN),  # 400
        await client.options("/v1/jobs"),
        await client.get("/schema/openapi.json"),
    ]
    ids = [r.headers["x-request-id"] for r in responses]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids), ids
    assert len(set(ids)) == len(ids)


async def test_each_request_is_logged_once_with_route_status_duration_and_caller(
    client: AsyncTestClient, http_log: pytest.LogCaptureFixture
) -> None:
    created = (await client.post("/v1/admin/orgs", json={"name": "Acme"}, headers=ADMIN)).json()
    org = {"Authorization": f"Bearer {created['api_key']}"}
    http_log.clear()

    job_id = "1c5f1e04-4b8a-4d1a-9b59-0c4a3f1a2b3c"
    response = await client.get(f"/v1/jobs/{job_id}", headers={**org, "X-Request-ID": "trace-1"})
    assert response.status_code == 404
    await client.get("/healthz", headers={"X-Request-ID": "trace-2"})
    await client.get("/v1/technicians", headers={"X-Request-ID": "trace-3"})

    [line] = lines_for(http_log, "trace-1")
    assert line.levelno == logging.INFO
    assert (line.method, line.status, line.caller, line.org_id) == ("GET", 404, "org", created["id"])
    assert line.route == "/v1/jobs/{job_id}"  # the template: no ids (nor tracking tokens) in the log
    assert job_id not in line.getMessage()
    assert 0 < line.duration_ms < 5000
    [health] = lines_for(http_log, "trace-2")
    assert (health.caller, health.org_id, health.status) == ("anonymous", None, 200)
    [refused] = lines_for(http_log, "trace-3")
    assert (refused.caller, refused.status) == ("anonymous", 401)
    assert len([r for r in http_log.records if r.name == HTTP_LOG]) == 3


async def test_a_5xx_is_logged_with_its_traceback_and_request_id(
    boom_client: AsyncTestClient, http_log: pytest.LogCaptureFixture
) -> None:
    response = await boom_client.get("/v1/boom", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "boom-1"
    assert response.json() == {"status_code": 500, "detail": "Internal Server Error"}  # nothing of the cause
    [line] = lines_for(http_log, "boom-1")
    assert line.levelno == logging.ERROR
    assert (line.route, line.status) == ("/v1/boom", 500)
    assert isinstance(line.exc_info[1], Boom)

    as_json = json.loads(JsonFormatter().format(line))
    assert as_json["request_id"] == "boom-1"
    assert as_json["status"] == 500
    assert as_json["level"] == "ERROR"
    assert "Boom: the handler broke" in as_json["traceback"]
    assert 'in boom\n    raise Boom("the handler broke")' in as_json["traceback"]
    as_text = TextFormatter().format(line)
    assert "GET /v1/boom 500" in as_text and "request_id=boom-1" in as_text
    assert "Boom: the handler broke" in as_text


async def test_a_4xx_is_logged_without_a_traceback(client: AsyncTestClient, http_log: pytest.LogCaptureFixture) -> None:
    await client.post("/v1/admin/orgs", content=b"[" * 6000, headers={**ADMIN, "X-Request-ID": "deep"})
    [line] = lines_for(http_log, "deep")
    assert (line.status, line.levelno, line.exc_info) == (400, logging.INFO, None)


def test_other_log_lines_carry_the_request_id_too() -> None:
    token = request_id.set("abc")
    try:
        record = logging.LogRecord("truckroll.jobs", logging.WARNING, __file__, 1, "wave %d closed", (2,), None)
        for log_filter in logging_handler("json").filters:
            log_filter.filter(record)
    finally:
        request_id.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line == {
        "time": line["time"],
        "level": "WARNING",
        "logger": "truckroll.jobs",
        "message": "wave 2 closed",
        "request_id": "abc",
    }


def _env(**extra: str) -> dict[str, str]:
    return {
        "TRUCKROLL_ENV": "production",
        "DATABASE_URL": "postgresql://db.example/truckroll",
        "TRUCKROLL_ADMIN_TOKEN": ADMIN_TOKEN,
        "TRUCKROLL_FIREBASE_PROJECT_ID": "p",
        "TRUCKROLL_PUSH": "log",
        **extra,
    }


def test_log_format_is_json_in_production_text_in_development_and_checked() -> None:
    assert load_settings(_env()).server.log_format == "json"
    assert load_settings(_env(TRUCKROLL_LOG_FORMAT="text")).server.log_format == "text"
    assert load_settings({}).server.log_format == "text"
    with pytest.raises(SettingsError, match="TRUCKROLL_LOG_FORMAT"):
        load_settings({"TRUCKROLL_LOG_FORMAT": "xml"})


def test_cors_origins_are_read_and_checked() -> None:
    assert load_settings({}).server.cors_origins == ()
    origins = " https://console.example.com, http://localhost:5173 ,"
    assert load_settings({"TRUCKROLL_CORS_ORIGINS": origins}).server.cors_origins == (
        "https://console.example.com",
        "http://localhost:5173",
    )
    for bad in ("console.example.com", "https://console.example.com/", "ftp://x", "https://a.example/path"):
        with pytest.raises(SettingsError, match="TRUCKROLL_CORS_ORIGINS"):
            load_settings({"TRUCKROLL_CORS_ORIGINS": bad})
