"""An Idempotency-Key whose first request died is never left blocking: the key, the action and the stored
answer are one transaction, so a request killed (or cut off from its database) before its commit leaves
nothing, and the retry with the same key runs the action once.

The first request is held inside its action by locking the job's row from another connection, then its
server process is killed with SIGKILL (or its database connection is terminated); the retry goes to another
server on the same database."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import NamedTuple

import httpx
import psycopg
import pytest
from litestar.testing import AsyncTestClient

from backend.settings import Settings
from tests.api.jobs_helpers import eventually, get_job, in_app_loop
from tests.api.test_workflow import assigned_job
from tests.helpers import ADMIN_TOKEN, PROJECT_ID, new_org

KEY = {"Idempotency-Key": "en-route-after-a-crash"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server(NamedTuple):
    url: str
    process: subprocess.Popen

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)


@pytest.fixture
def server(settings: Settings) -> Iterator[Server]:
    """A real server process (granian, as `truckroll serve` runs it) on the test database; killed at the end."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database.url,
        "TRUCKROLL_ENV": "test",
        "TRUCKROLL_ADMIN_TOKEN": ADMIN_TOKEN,
        "TRUCKROLL_FIREBASE_PROJECT_ID": PROJECT_ID,
        "TRUCKROLL_WORKER": "external",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--host", "127.0.0.1"]
        + ["--port", str(port), "backend.app:app_from_env"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the workers die with it
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, "the server exited at start"
            assert time.monotonic() < deadline, "the server did not start within 30 s"
            time.sleep(0.2)
        yield Server(url, process)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def wait_until_blocked(db: psycopg.Connection, within: float = 10.0) -> int:
    """The pid of the backend waiting for a row lock (the request held inside its action)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        row = db.execute(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        ).fetchone()
        if row:
            return row[0]
        time.sleep(0.05)
    raise AssertionError("the request never reached the locked job row")


async def retry_until_answered(client: AsyncTestClient, path: str, auth: dict) -> httpx.Response:
    """A client retries a 409 "still running" (the dead request's transaction may take a moment to end)."""

    async def answered():
        response = await client.post(path, headers={**auth, **KEY})
        return response if response.status_code != 409 else None

    return await eventually(answered, within=15, what="an answer other than 409 still running")


async def test_a_key_whose_server_was_killed_mid_action_is_free_for_the_retry(
    client: AsyncTestClient, db: psycopg.Connection, migrated: str, server: Server
) -> None:
    org = await new_org(client)
    job, _, auth = await assigned_job(client, org)
    path = f"/v1/jobs/{job['id']}/en-route"

    with psycopg.connect(migrated.replace("+psycopg", "")) as locker:
        locker.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (job["id"],))
        with httpx.Client(base_url=server.url, timeout=30) as http:
            threading.Thread(target=_swallow, args=(http, path, {**auth, **KEY}), daemon=True).start()
            wait_until_blocked(db)
            server.kill()
        locker.rollback()  # the dead request's statement now finds no one to answer, and its transaction ends

    response = await retry_until_answered(client, path, auth)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "en_route"
    seen = await get_job(client, org, job["id"])
    assert [e["type"] for e in seen["events"]].count("en_route") == 1
    replay = await client.post(path, headers={**auth, **KEY})
    assert (replay.status_code, replay.content) == (200, response.content)


async def test_a_key_whose_request_lost_its_database_is_free_for_the_retry(
    client: AsyncTestClient, db: psycopg.Connection, migrated: str
) -> None:
    org = await new_org(client)
    job, _, auth = await assigned_job(client, org)
    path = f"/v1/jobs/{job['id']}/en-route"

    with psycopg.connect(migrated.replace("+psycopg", "")) as locker:
        locker.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (job["id"],))

        async def first(http: httpx.AsyncClient) -> httpx.Response:
            request = asyncio.ensure_future(http.post(path, headers={**auth, **KEY}))
            pid = await asyncio.to_thread(wait_until_blocked, db)
            db.execute("SELECT pg_terminate_backend(%s)", (pid,))  # the database goes away under the request
            return await request

        cut_off = await in_app_loop(client, first)
        locker.rollback()

    assert cut_off.status_code == 503, cut_off.text
    response = await retry_until_answered(client, path, auth)
    assert response.status_code == 200, response.text
    assert (await get_job(client, org, job["id"]))["status"] == "en_route"


def _swallow(http: httpx.Client, path: str, headers: dict) -> None:
    try:
        http.post(path, headers=headers)
    except httpx.HTTPError:
        pass  # the server was killed under it
