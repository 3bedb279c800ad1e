"""The customer's live tracking socket (`/v1/track/{token}/live`), with two app instances over one database:
whatever instance a ping or a job's step reaches, a socket held on the other one hears of it within a second."""

from __future__ import annotations

import queue
import time
from collections.abc import AsyncIterator

import msgspec
import psycopg
import pytest
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import AsyncTestClient
from litestar.testing.websocket_test_session import WebSocketTestSession

from backend.app import create_app
from backend.settings import Settings, TrackingSettings
from backend.tracking import live
from tests.api.jobs_helpers import SITE, north
from tests.api.test_tracking import assigned_job, ping, send_pings, step, track
from tests.helpers import new_org

WITHIN_S = 1.0
# Waiting longer than the promise does not weaken it (the tests that time it wait at most WITHIN_S); it keeps
# the other tests from failing on a loaded machine, where the test client's sockets poll in busy loops.
RECEIVE_S = 3.0


@pytest.fixture
async def other(settings: Settings) -> AsyncIterator[AsyncTestClient]:
    """A second server over the same database, as another process behind the same load balancer would be."""
    async with AsyncTestClient(create_app(settings)) as client:
        yield client


def next_view(socket: WebSocketTestSession, within: float = RECEIVE_S) -> dict:
    """The next message, waited for no longer than `within` seconds."""
    try:
        return socket.receive_json(timeout=within)
    except queue.Empty:
        raise AssertionError(f"no view arrived within {within:g} s") from None


def view_by(socket: WebSocketTestSession, started: float) -> dict:
    """The next message, which must arrive within WITHIN_S of `started` (time.monotonic()): the promise is the
    bound of the wait."""
    return next_view(socket, within=max(started + WITHIN_S - time.monotonic(), 0.001))


def same_position(view: dict, position: dict) -> bool:
    location = view["technician_location"]
    return location is not None and (location["lat"], location["lon"]) == pytest.approx(
        (position["lat"], position["lon"])
    )


async def test_a_ping_posted_to_another_instance_reaches_the_socket_within_a_second(
    client: AsyncTestClient, other: AsyncTestClient
) -> None:
    org = await new_org(client)
    job, auth = await assigned_job(client, org, km=3)
    await step(client, auth, job["id"], "en-route")
    await send_pings(client, auth, ping(north(3), speed_mps=12.0))
    token = job["tracking_token"]

    with await client.websocket_connect(f"/v1/track/{token}/live") as socket:
        first = next_view(socket)
        assert first["status"] == "en_route"
        assert first["technician"] == {"first_name": "Ana"}
        assert same_position(first, north(3))
        served = await track(client, token)
        assert set(first) == set(served)
        assert first["eta_s"] == pytest.approx(served["eta_s"], abs=1)

        started = time.monotonic()
        await send_pings(other, auth, ping(north(1), speed_mps=12.0))
        moved = view_by(socket, started)
        assert same_position(moved, north(1))
        assert moved["eta_s"] < first["eta_s"] / 2  # ~108 s instead of ~325 s
        assert moved == {**await track(other, token), "eta_at": moved["eta_at"], "eta_s": moved["eta_s"]}


async def test_each_step_of_the_visit_arrives_as_it_happens(client: AsyncTestClient, other: AsyncTestClient) -> None:
    org = await new_org(client)
    job, auth = await assigned_job(client, org, km=2)

    with await client.websocket_connect(f"/v1/track/{job['tracking_token']}/live") as socket:
        assigned = next_view(socket)
        assert assigned["status"] == "assigned"
        assert assigned["technician_location"] is None

        await step(other, auth, job["id"], "en-route")
        view = view_by(socket, time.monotonic())
        assert view["status"] == "en_route"
        assert same_position(view, north(2))  # the position known from before is shown from now on
        assert view["eta_s"] > 0

        await step(other, auth, job["id"], "check-in", {**SITE, "accuracy_m": 8})
        view = view_by(socket, time.monotonic())
        assert (view["status"], view["eta_s"]) == ("on_site", 0)

        await step(other, auth, job["id"], "complete", {"notes": "new valve"})
        view = view_by(socket, time.monotonic())
        assert view["status"] == "completed"
        assert view["technician_location"] is None
        assert view["technician"] == {"first_name": "Ana"}


async def test_a_cancellation_reaches_the_socket(client: AsyncTestClient, other: AsyncTestClient) -> None:
    org = await new_org(client)
    job, auth = await assigned_job(client, org)
    await step(client, auth, job["id"], "en-route")

    with await client.websocket_connect(f"/v1/track/{job['tracking_token']}/live") as socket:
        assert next_view(socket)["status"] == "en_route"
        response = await other.post(f"/v1/jobs/{job['id']}/cancel", json={"reason": "fixed itself"}, headers=org)
        assert response.status_code == 200, response.text

        view = next_view(socket)
        assert (view["status"], view["technician"], view["technician_location"]) == ("cancelled", None, None)


async def test_pings_before_the_technician_sets_off_send_nothing(
    client: AsyncTestClient, other: AsyncTestClient
) -> None:
    org = await new_org(client)
    job, auth = await assigned_job(client, org, km=2)

    with await client.websocket_connect(f"/v1/track/{job['tracking_token']}/live") as socket:
        assert next_view(socket)["status"] == "assigned"
        # Stored (with any notification it makes) before it is answered: a view it made would come first.
        await send_pings(other, auth, ping(north(1.5)))
        await step(other, auth, job["id"], "en-route")
        view = next_view(socket)  # the customer sees no position before "en route": nothing changed
        assert view["status"] == "en_route"
        assert same_position(view, north(1.5))


async def test_subscribers_join_and_leave_without_disturbing_each_other(
    client: AsyncTestClient, other: AsyncTestClient
) -> None:
    org = await new_org(client)
    job, auth = await assigned_job(client, org, km=3)
    await step(client, auth, job["id"], "en-route")
    live = f"/v1/track/{job['tracking_token']}/live"

    with await client.websocket_connect(live) as first:
        assert same_position(next_view(first), north(3))
        await send_pings(other, auth, ping(north(2.5)))
        assert same_position(next_view(first), north(2.5))

        # A second reader of the same link (the customer's partner), on the same instance and on the other.
        with await client.websocket_connect(live) as second, await other.websocket_connect(live) as third:
            assert same_position(next_view(second), north(2.5))  # the current view on connect
            assert same_position(next_view(third), north(2.5))
            await send_pings(client, auth, ping(north(2)))
            for socket in (first, second, third):
                assert same_position(next_view(socket), north(2))

        # Both left; the first still hears everything, once: one change, one message (a second message of
        # the same change would come before the next change's).
        await send_pings(other, auth, ping(north(1.5)))
        assert same_position(next_view(first), north(1.5))
        await send_pings(other, auth, ping(north(1)))
        assert same_position(next_view(first), north(1))


async def test_the_socket_hears_again_after_the_database_drops_the_listening_connection(
    client: AsyncTestClient, other: AsyncTestClient, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Long enough a silence that the ping below certainly falls into it.
    monkeypatch.setattr(live, "RECONNECT_S", (1.5,))
    org = await new_org(client)
    job, auth = await assigned_job(client, org, km=3)
    await step(client, auth, job["id"], "en-route")

    with await client.websocket_connect(f"/v1/track/{job['tracking_token']}/live") as socket:
        assert same_position(next_view(socket), north(3))
        # A database restart or failover, as far as the listener can tell: its connection is gone.
        dropped = [
            pid
            for pid, terminated in db.execute(
                "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN truckroll_tracking'"
            )
            if terminated
        ]
        assert dropped
        # A ping while nobody listens: its notification is lost, and listening again reads the job afresh.
        await send_pings(other, auth, ping(north(2)))
        listening = db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN truckroll_tracking' AND pid <> ALL(%s)",
            (dropped,),
        ).fetchone()[0]
        assert listening == 0, "too slow to tell: the listener was back before the ping was stored"
        assert same_position(next_view(socket, within=10), north(2))
        # And what comes after is heard as before.
        await send_pings(other, auth, ping(north(1)))
        assert same_position(next_view(socket, within=10), north(1))


async def test_each_socket_hears_only_its_own_job(client: AsyncTestClient, other: AsyncTestClient) -> None:
    org = await new_org(client)
    ana_job, ana = await assigned_job(client, org, "ana", km=3)
    bob_job, bob = await assigned_job(client, org, "bob", km=4)
    for job, auth in ((ana_job, ana), (bob_job, bob)):
        await step(client, auth, job["id"], "en-route")

    with (
        await client.websocket_connect(f"/v1/track/{ana_job['tracking_token']}/live") as ana_socket,
        await client.websocket_connect(f"/v1/track/{bob_job['tracking_token']}/live") as bob_socket,
    ):
        assert same_position(next_view(ana_socket), north(3))
        assert same_position(next_view(bob_socket), north(4))
        await send_pings(other, bob, ping(north(3.5)))
        assert same_position(next_view(bob_socket), north(3.5))
        # Ana's socket heard nothing of it: the next thing it hears is her own next position.
        await send_pings(other, ana, ping(north(2.5)))
        assert same_position(next_view(ana_socket), north(2.5))


async def test_an_unknown_or_closed_link_is_refused_with_4404(client: AsyncTestClient, db: psycopg.Connection) -> None:
    org = await new_org(client)
    job, auth = await assigned_job(client, org)

    for token in ("not-a-real-token", job["tracking_token"][:-1]):
        with pytest.raises(WebSocketDisconnect) as refused:
            with await client.websocket_connect(f"/v1/track/{token}/live") as socket:
                next_view(socket)
        assert refused.value.code == 4404
        assert "no such tracking link" in refused.value.detail

    await step(client, auth, job["id"], "en-route")
    await step(client, auth, job["id"], "check-in", {**SITE, "accuracy_m": 8})
    await step(client, auth, job["id"], "complete", {"notes": "done"})
    db.execute("UPDATE jobs SET completed_at = now() - interval '25 hours' WHERE id = %s", (job["id"],))
    with pytest.raises(WebSocketDisconnect) as refused:
        with await client.websocket_connect(f"/v1/track/{job['tracking_token']}/live") as socket:
            next_view(socket)
    assert refused.value.code == 4404


async def test_the_socket_keeps_the_token_private(client: AsyncTestClient) -> None:
    org = await new_org(client)
    job, _ = await assigned_job(client, org)

    with await client.websocket_connect(f"/v1/track/{job['tracking_token']}/live") as socket:
        headers = {k.decode().lower(): v.decode() for k, v in socket.extra_headers or []}
        assert headers["referrer-policy"] == "no-referrer"
        assert next_view(socket)["status"] == "assigned"


async def test_connects_count_against_the_links_rate_limit(settings: Settings) -> None:
    tighter = msgspec.structs.replace(settings, tracking=TrackingSettings(rate_limit_per_minute=3))
    async with AsyncTestClient(create_app(tighter)) as client:
        org = await new_org(client)
        job, _ = await assigned_job(client, org)
        live = f"/v1/track/{job['tracking_token']}/live"
        await track(client, job["tracking_token"])
        with await client.websocket_connect(live) as socket:
            assert next_view(socket)["status"] == "assigned"
        with await client.websocket_connect(live) as socket:
            assert next_view(socket)["status"] == "assigned"

        with pytest.raises(WebSocketDisconnect) as limited:
            with await client.websocket_connect(live) as socket:
                next_view(socket)
        assert limited.value.code == 4429
        assert "retry in" in limited.value.detail
        assert (await client.get(f"/v1/track/{job['tracking_token']}")).status_code == 429
