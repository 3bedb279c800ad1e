"""A queue task whose worker dies while running it (kill -9, a lost host) runs again elsewhere, and running a
task twice is harmless.

The crash tests run real `truckroll worker` processes beside an API whose own worker is off
(TRUCKROLL_WORKER=external), kill one with SIGKILL at the bad moment, start another, and follow the job
through the API, the database and the fake FCM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path

import msgspec
import psycopg
import pytest
from litestar.testing import AsyncTestClient

from backend.app import create_app
from backend.db.engine import make_engine, make_sessionmaker
from backend.jobs import dispatch
from backend.push import make_sender, push
from backend.queue import STALLED_AFTER_S, WORKER_OPTIONS, Runtime
from backend.settings import REPO_ROOT, Settings, libpq_url, load_settings
from backend.tasks import make_queue, retry_stalled
from matching import MatchSettings
from notifications.messages import JobOffer
from tests.api.jobs_helpers import (
    event_types,
    eventually,
    get_job,
    has_push,
    job_when,
    offers_by_technician,
    parse,
    post_job,
    pushes,
    pushes_when,
    technician,
    wave,
)
from tests.fakes.fcm import FakeFcmServer
from tests.helpers import ADMIN_TOKEN, PROJECT_ID, new_org

# A dead worker's tasks are handed back once its last heartbeat is STALLED_AFTER_S old; it beat at most one
# interval before it died. Past that, a task takes a moment to be fetched again (a poll) and to run.
HANDED_BACK_WITHIN_S = STALLED_AFTER_S + WORKER_OPTIONS["update_heartbeat_interval"] + 10


@pytest.fixture
def env(migrated: str, db: psycopg.Connection, fcm: FakeFcmServer) -> dict[str, str]:
    """The test settings (as conftest's `settings`), with the queue's worker in processes of its own."""
    return {
        "TRUCKROLL_PUSH": "fcm",
        "TRUCKROLL_FCM_ENDPOINT": fcm.url,
        "TRUCKROLL_ENV": "test",
        "DATABASE_URL": migrated,
        "TRUCKROLL_ADMIN_TOKEN": ADMIN_TOKEN,
        "TRUCKROLL_FIREBASE_PROJECT_ID": PROJECT_ID,
        "FIREBASE_AUTH_EMULATOR_HOST": os.environ["FIREBASE_AUTH_EMULATOR_HOST"],
        "TRUCKROLL_WORKER": "external",
    }


@pytest.fixture
def external(env: dict[str, str]) -> Settings:
    return load_settings(env)


@pytest.fixture
async def api(external: Settings) -> AsyncIterator[AsyncTestClient]:
    """The API, which defers work but runs none of it."""
    async with AsyncTestClient(create_app(external)) as client:
        yield client


@pytest.fixture
def workers(env: dict[str, str], db: psycopg.Connection, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start `truckroll worker` processes (each returned once it has registered with the queue), with more
    settings if given; whatever happens, every one is killed at the end, and their logs are printed (shown
    when the test fails)."""
    started: list[subprocess.Popen] = []

    def start(**more: str) -> subprocess.Popen:
        known = {row[0] for row in db.execute("SELECT id FROM procrastinate_workers")}
        log = tmp_path / f"worker-{len(started) + 1}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "backend.cli", "worker"],
                cwd=REPO_ROOT,
                env={**os.environ, **env, **more},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        deadline = time.monotonic() + 30
        while not {row[0] for row in db.execute("SELECT id FROM procrastinate_workers")} - known:
            assert process.poll() is None, f"the worker exited ({process.returncode}): {log.read_text()}"
            assert time.monotonic() < deadline, f"the worker did not register within 30 s: {log.read_text()}"
            time.sleep(0.05)
        return process

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
        for log in sorted(tmp_path.glob("worker-*.log")):
            print(f"--- {log.name}\n{log.read_text()}")


def kill_9(process: subprocess.Popen) -> float:
    """SIGKILL: no handler runs, no task is finished or handed back, the heartbeats stop. Returns when."""
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    return time.monotonic()


def task_status(db: psycopg.Connection, task_name: str, job_id: str) -> str | None:
    """The status of the queue's `task_name` task about the job (None once done: successful ones are deleted)."""
    row = db.execute(
        "SELECT status FROM procrastinate_jobs WHERE task_name = %s AND args::text LIKE %s ORDER BY id DESC LIMIT 1",
        (task_name, f"%{job_id}%"),
    ).fetchone()
    return None if row is None else row[0]


def wait_for_task(
    db: psycopg.Connection, task_name: str, job_id: str, until: Callable[[str | None], bool], within: float
) -> None:
    """Until the status of the task about the job satisfies `until`. Polled without yielding to anything else:
    the test must kill the worker while the task is in hand."""
    deadline = time.monotonic() + within
    while not until(status := task_status(db, task_name, job_id)):
        assert time.monotonic() < deadline, f"{task_name} for {job_id} is still {status!r} after {within} s"
        time.sleep(0.02)


def doing(status: str | None) -> bool:
    return status == "doing"


async def handed_back(queue, outcome: Callable[[], object], *, within: float = HANDED_BACK_WITHIN_S) -> float:
    """Wait until `outcome()` holds, meanwhile handing stalled tasks back to the queue as the queue's own
    periodic task does. That task runs once a minute; calling `retry_stalled` here every 0.1 s instead keeps
    the test within seconds of the moment the dead worker counts as dead (STALLED_AFTER_S without a
    heartbeat), which is what it measures. Returns how long it took."""
    started = time.monotonic()

    async def check():
        await retry_stalled(queue)
        return outcome()

    await eventually(check, within=within, what="the dead worker's task to be run again")
    return time.monotonic() - started


def same_push(a: dict, b: dict) -> bool:
    """The same FCM message but for when it was sent: a job offer lives what is left of the offer (Android's
    `ttl`), and APNs' expiry is that moment."""

    def sent_at_any_time(message: dict) -> dict:
        headers = {k: v for k, v in message["apns"]["headers"].items() if k != "apns-expiration"}
        android = {k: v for k, v in message["android"].items() if k != "ttl"}
        return {**message, "apns": {**message["apns"], "headers": headers}, "android": android}

    return sent_at_any_time(a) == sent_at_any_time(b)


@pytest.fixture
async def queue(migrated: str):
    app = make_queue(migrated)
    async with app.open_async():
        yield app


# --- kill -9 at the bad moment --------------------------------------------------------------------------


async def test_a_wave_deadline_running_when_its_worker_is_killed_runs_again_on_another_worker(
    api: AsyncTestClient, db: psycopg.Connection, fcm: FakeFcmServer, migrated: str, queue, workers
) -> None:
    # The worker's statements give up after TRUCKROLL_DB_TIMEOUT_S; this one must still be waiting for the
    # job's row when the test kills it, however slowly the test gets there (what a statement that gives up
    # leads to is the next test's matter).
    first = workers(TRUCKROLL_DB_TIMEOUT_S="30")
    org = await new_org(api)
    ana, _ = await technician(api, org, "ana", km=1)
    job = await post_job(api, org, waves=[wave(max_offers=1, offer_ttl_s=3)])
    offer = offers_by_technician(job)[ana]

    # The job's row held from elsewhere (as psql would): when the deadline comes, close_wave waits for it.
    holder = psycopg.connect(libpq_url(migrated))
    try:
        holder.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", (job["id"],))
        await pushes_when(fcm, has_push("tok-ana", "job_offer", offer_id=offer["id"]))
        wait_for_task(db, "close_wave", job["id"], doing, within=10)
        killed_at = kill_9(first)
    finally:
        holder.rollback()
        holder.close()

    # What the crash left: the task still `doing` (for a worker that is gone) and the wave still open.
    job = await get_job(api, org, job["id"])
    assert job["status"] == "offering"
    assert offers_by_technician(job)[ana]["status"] == "pending"
    assert task_status(db, "close_wave", job["id"]) == "doing"

    workers()
    took = await handed_back(queue, lambda: task_status(db, "close_wave", job["id"]) is None)
    print(f"close_wave handed back and run {time.monotonic() - killed_at:.1f} s after the kill ({took:.1f} s waited)")

    job = await job_when(api, org, job["id"], lambda j: j["status"] == "unfilled", within=5)
    assert offers_by_technician(job)[ana]["status"] == "expired"
    assert event_types(job) == ["posted", "wave_started", "offers_expired", "unfilled"]
    await pushes_when(fcm, has_push("tok-ana", "offer_withdrawn", offer_id=offer["id"], job_id=job["id"]))


async def test_a_wave_deadline_that_fails_on_the_database_is_tried_again(
    api: AsyncTestClient, db: psycopg.Connection, fcm: FakeFcmServer, migrated: str, workers
) -> None:
    workers(TRUCKROLL_DB_TIMEOUT_S="1")
    org = await new_org(api)
    ana, _ = await technician(api, org, "ana", km=1)
    job = await post_job(api, org, waves=[wave(max_offers=1, offer_ttl_s=2)])

    # The job's row held longer than the worker waits for an answer: its close_wave gives up.
    holder = psycopg.connect(libpq_url(migrated))
    try:
        holder.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", (job["id"],))
        wait_for_task(db, "close_wave", job["id"], doing, within=10)
        wait_for_task(db, "close_wave", job["id"], lambda status: not doing(status), within=10)
    finally:
        holder.rollback()
        holder.close()

    # The deadline is tried again once the row is free (backend.queue.UntilTheDatabaseAnswers).
    job = await job_when(api, org, job["id"], lambda j: j["status"] == "unfilled", within=15)
    assert offers_by_technician(job)[ana]["status"] == "expired"


async def test_a_push_in_flight_when_its_worker_is_killed_is_sent_again(
    api: AsyncTestClient, db: psycopg.Connection, fcm: FakeFcmServer, queue, workers
) -> None:
    fcm.hold("tok-ana")  # FCM hangs: the push waits for an answer when the worker dies
    first = workers()
    org = await new_org(api)
    ana, _ = await technician(api, org, "ana", km=1)
    job = await post_job(api, org, waves=[wave(max_offers=1, offer_ttl_s=600)])
    offer = offers_by_technician(job)[ana]
    await pushes_when(fcm, has_push("tok-ana", "job_offer", offer_id=offer["id"]))
    wait_for_task(db, "deliver_push", job["id"], doing, within=5)
    killed_at = kill_9(first)
    fcm.let_go("tok-ana")  # FCM answers again; the dead worker's request is answered to nobody
    lost = len(fcm.requests_for("tok-ana"))

    workers()

    def sent_again() -> bool:
        return any(
            r.message["data"] == {**r.message["data"], "type": "job_offer", "offer_id": offer["id"]}
            for r in fcm.requests_for("tok-ana")[lost:]
        )

    took = await handed_back(queue, sent_again)
    print(
        f"deliver_push handed back and sent {time.monotonic() - killed_at:.1f} s after the kill ({took:.1f} s waited)"
    )

    again = [r.message for r in fcm.requests_for("tok-ana")]
    assert same_push(again[-1], again[0])  # the very push the phone never got: same offer, same collapse key
    assert again[-1]["android"]["collapse_key"] == offer["id"]

    async def done() -> bool:
        return task_status(db, "deliver_push", job["id"]) is None

    await eventually(done, what="deliver_push to be done")
    # Nothing told the phone the offer was gone: it is still open, and the phone has it.
    assert (await get_job(api, org, job["id"]))["status"] == "offering"
    assert [d["type"] for t, d in pushes(fcm) if t == "tok-ana"] == ["job_offer"] * len(again)


# --- a task run twice -----------------------------------------------------------------------------------


async def test_closing_a_wave_a_second_time_changes_nothing(
    api: AsyncTestClient, db: psycopg.Connection, external: Settings, migrated: str, queue
) -> None:
    org = await new_org(api)
    ana, _ = await technician(api, org, "ana", km=1)
    ben, _ = await technician(api, org, "ben", km=2)
    job = await post_job(api, org, waves=[wave(max_offers=1, offer_ttl_s=60), wave(max_offers=1, offer_ttl_s=600)])
    deadline = parse(offers_by_technician(job)[ana]["expires_at"])
    job_id = uuid.UUID(job["id"])

    engine = make_engine(external.database)
    try:
        sessionmaker = make_sessionmaker(engine)

        def queued() -> dict[str, int]:
            rows = db.execute("SELECT task_name, count(*) FROM procrastinate_jobs GROUP BY task_name").fetchall()
            return dict(rows)

        async def close_wave_1() -> dict:
            """What the queue's task does, a second after the wave's deadline."""
            async with sessionmaker() as session:
                await dispatch.close_wave(
                    job_id,
                    1,
                    session=session,
                    queue=queue,
                    match_settings=MatchSettings(),
                    now=deadline + timedelta(seconds=1),
                )
                await session.commit()
            return await get_job(api, org, job["id"])

        before = queued()
        once = await close_wave_1()
        after_once = queued()
        # The first run did the work: ana's offer expired (and her phone is told), wave 2 offers ben.
        assert event_types(once) == ["posted", "wave_started", "offers_expired", "wave_started"]
        assert {t: o["status"] for t, o in offers_by_technician(once).items()} == {ana: "expired", ben: "pending"}
        assert after_once["deliver_push"] == before["deliver_push"] + 2  # ana's offer_withdrawn, ben's job_offer
        assert after_once["close_wave"] == before["close_wave"] + 1  # wave 2's deadline

        # A second run (the queue handing back a task whose worker died after it committed): nothing more.
        twice = await close_wave_1()
        assert twice == once
        assert queued() == after_once
    finally:
        await engine.dispose()


async def test_a_push_sent_twice_carries_the_same_offer_and_collapse_key(
    api: AsyncTestClient, fcm: FakeFcmServer, external: Settings, queue
) -> None:
    org = await new_org(api)
    ana, _ = await technician(api, org, "ana", km=1)
    job = await post_job(api, org, waves=[wave(max_offers=1, offer_ttl_s=600)])
    offer = offers_by_technician(job)[ana]
    notice = JobOffer(
        technician_id=ana,
        job_id=job["id"],
        offer_id=offer["id"],
        expires_at=parse(offer["expires_at"]),
        title=job["title"],
        distance_m=1000.0,
    )
    engine = make_engine(external.database)
    sender = make_sender(external.push, PROJECT_ID)
    try:
        runtime = Runtime(sessionmaker=make_sessionmaker(engine), sender=sender)
        notices = msgspec.convert(msgspec.to_builtins([notice]), list[JobOffer])
        await push(runtime, queue, notices, 0)
        await push(runtime, queue, notices, 0)
    finally:
        await sender.aclose()
        await engine.dispose()

    first, second = (r.message for r in fcm.requests_for("tok-ana"))
    # The same message twice: the phone replaces the first notification with the second, showing one offer.
    assert same_push(first, second)
    assert first["data"]["offer_id"] == offer["id"]
    assert first["android"]["collapse_key"] == offer["id"]
    assert first["android"]["notification"]["tag"] == offer["id"]
    assert first["apns"]["headers"]["apns-collapse-id"] == offer["id"]
