"""Ratings: both sides of a completed job rate it once, double-blind until both have rated or 14 days have
passed; the organisation's released ratings make the technician's Bayesian `rating`."""

from __future__ import annotations

import types
import uuid
from datetime import UTC, datetime, timedelta

import anyio
import httpx
import psycopg
import pytest
from litestar.testing import AsyncTestClient

from backend.db.engine import make_engine, make_sessionmaker
from backend.queue import Runtime
from backend.ratings import services
from backend.ratings.schemas import RatingBody
from backend.settings import Settings
from backend.tasks import make_queue
from tests.api.jobs_helpers import SITE, in_app_loop, post_job, technician
from tests.helpers import new_org, technician_auth

FOURTEEN_DAYS = timedelta(days=14)


@pytest.fixture
async def sessionmaker(settings: Settings):
    engine = make_engine(settings.database)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def assigned_job(
    client: AsyncTestClient, org: dict, uid: str = "ana", *, onboarded: tuple[str, dict] | None = None
) -> tuple[str, str, dict]:
    """A job assigned directly to technician `uid` (onboarded first unless `onboarded` gives their id and auth):
    (job id, technician id, technician auth)."""
    technician_id, auth = onboarded or await technician(client, org, uid, km=1, device=False)
    job = await post_job(client, org, auto=False)
    response = await client.post(f"/v1/jobs/{job['id']}/assign", json={"technician_id": technician_id}, headers=org)
    assert response.status_code == 200, response.text
    return job["id"], technician_id, auth


async def completed_job(
    client: AsyncTestClient, org: dict, uid: str = "ana", *, onboarded: tuple[str, dict] | None = None
) -> tuple[str, str, dict]:
    job_id, technician_id, auth = await assigned_job(client, org, uid, onboarded=onboarded)
    for step, body in (("en-route", None), ("check-in", {**SITE, "accuracy_m": 10}), ("complete", None)):
        response = await client.post(f"/v1/jobs/{job_id}/{step}", json=body, headers=auth)
        assert response.status_code == 200, (step, response.text)
    return job_id, technician_id, auth


async def rate(client: AsyncTestClient, caller: dict, job_id: str, stars, comment: str | None = None, **headers):
    body = {"stars": stars} if comment is None else {"stars": stars, "comment": comment}
    return await client.post(f"/v1/jobs/{job_id}/rating", json=body, headers={**caller, **headers})


async def ratings(client: AsyncTestClient, caller: dict, job_id: str) -> dict:
    response = await client.get(f"/v1/jobs/{job_id}/ratings", headers=caller)
    assert response.status_code == 200, response.text
    return response.json()


def shown(view: dict) -> tuple:
    """(by_org, by_technician) as (stars, comment) pairs or None."""
    return tuple(None if r is None else (r["stars"], r["comment"]) for r in (view["by_org"], view["by_technician"]))


async def technician_rating(client: AsyncTestClient, org: dict, technician_id: str) -> float | None:
    response = await client.get(f"/v1/technicians/{technician_id}", headers=org)
    assert response.status_code == 200, response.text
    return response.json()["rating"]


def completed_at(db: psycopg.Connection, job_id: str) -> datetime:
    return db.execute("SELECT completed_at FROM jobs WHERE id = %s", (job_id,)).fetchone()[0]


def move_completion(db: psycopg.Connection, job_id: str, to: datetime) -> None:
    db.execute("UPDATE jobs SET completed_at = %s WHERE id = %s", (to, job_id))


def aggregate(db: psycopg.Connection, org_id: str, technician_id: str) -> tuple[int, int]:
    return db.execute(
        "SELECT rating_count, rating_sum FROM pool_memberships WHERE org_id = %s AND technician_id = %s",
        (org_id, technician_id),
    ).fetchone()


def org_id_of(db: psycopg.Connection, job_id: str) -> str:
    return db.execute("SELECT org_id FROM jobs WHERE id = %s", (job_id,)).fetchone()[0]


# --- double-blind ---------------------------------------------------------------------------------------


async def test_each_side_sees_only_its_own_rating_until_both_have_rated(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    job_id, ana, auth = await completed_job(client, org)
    assert shown(await ratings(client, org, job_id)) == (None, None)

    response = await rate(client, org, job_id, 5, "fixed it first time")
    assert response.status_code == 201, response.text
    posted = response.json()
    assert (posted["side"], posted["stars"], posted["comment"], posted["released"]) == (
        "org",
        5,
        "fixed it first time",
        False,
    )
    assert shown(await ratings(client, org, job_id)) == ((5, "fixed it first time"), None)
    assert shown(await ratings(client, auth, job_id)) == (None, None)
    # Nothing released, nothing counted: the average would give the hidden rating away.
    assert await technician_rating(client, org, ana) is None

    response = await rate(client, auth, job_id, 3, "paid late")
    assert response.status_code == 201, response.text
    assert response.json()["released"] is True

    for caller in (org, auth):
        view = await ratings(client, caller, job_id)
        assert shown(view) == ((5, "fixed it first time"), (3, "paid late"))
        assert view["released"] is True
    # One 5-star rating against the prior of five 4-star ones: 25 / 6.
    assert await technician_rating(client, org, ana) == 4.17
    assert aggregate(db, org_id_of(db, job_id), ana) == (1, 5)


async def test_the_technician_rating_first_is_hidden_from_the_organisation(client: AsyncTestClient) -> None:
    org = await new_org(client)
    job_id, _, auth = await completed_job(client, org)
    assert (await rate(client, auth, job_id, 2)).status_code == 201

    assert shown(await ratings(client, auth, job_id)) == (None, (2, None))
    assert shown(await ratings(client, org, job_id)) == (None, None)
    assert (await ratings(client, org, job_id))["released"] is False


async def test_ratings_are_released_14_days_after_completion_and_then_no_longer_taken(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    job_id, _, auth = await completed_job(client, org)
    assert (await rate(client, org, job_id, 4, "ok")).status_code == 201

    # A few seconds short of 14 days (the margin covers the request's own time): still hidden, still open.
    move_completion(db, job_id, datetime.now(UTC) - FOURTEEN_DAYS + timedelta(seconds=5))
    view = await ratings(client, auth, job_id)
    assert shown(view) == (None, None) and view["released"] is False
    assert datetime.fromisoformat(view["window_closes_at"]) == completed_at(db, job_id) + FOURTEEN_DAYS

    # 14 days on: released to the silent side without waiting for the hourly task, and closed to it.
    move_completion(db, job_id, datetime.now(UTC) - FOURTEEN_DAYS)
    view = await ratings(client, auth, job_id)
    assert shown(view) == ((4, "ok"), None) and view["released"] is True
    response = await rate(client, auth, job_id, 1)
    assert response.status_code == 409, response.text
    assert "window closed" in response.json()["detail"]
    assert shown(await ratings(client, org, job_id)) == ((4, "ok"), None)


async def test_the_boundary_is_exactly_completion_plus_14_days(
    client: AsyncTestClient, db: psycopg.Connection, sessionmaker
) -> None:
    org = await new_org(client)
    job_id, ana, _ = await completed_job(client, org)
    assert (await rate(client, org, job_id, 4)).status_code == 201
    job, technician_id = uuid.UUID(job_id), uuid.UUID(ana)
    closes = completed_at(db, job_id) + FOURTEEN_DAYS
    just_before = closes - timedelta(microseconds=1)

    async with sessionmaker() as session:
        assert (await services.read(job, "technician", technician_id, now=just_before, session=session)).by_org is None
        assert (await services.read(job, "technician", technician_id, now=closes, session=session)).by_org is not None
    async with sessionmaker() as session:
        with pytest.raises(services.Conflict, match="window closed"):
            await services.rate(job, "technician", technician_id, RatingBody(stars=5), now=closes, session=session)
    async with sessionmaker() as session:
        posted = await services.rate(
            job, "technician", technician_id, RatingBody(stars=5), now=just_before, session=session
        )
    assert posted.released is True


# --- who may rate, when, and what -----------------------------------------------------------------------


async def test_a_job_is_rated_only_after_completion(client: AsyncTestClient, db: psycopg.Connection) -> None:
    org = await new_org(client)
    job_id, _, auth = await assigned_job(client, org)
    for caller in (org, auth):
        response = await rate(client, caller, job_id, 5)
        assert response.status_code == 409, response.text
        assert "assigned" in response.json()["detail"]
    assert db.execute("SELECT count(*) FROM job_ratings").fetchone()[0] == 0


async def test_each_side_rates_once(client: AsyncTestClient) -> None:
    org = await new_org(client)
    job_id, _, auth = await completed_job(client, org)
    for caller, first, second in ((org, 5, 1), (auth, 4, 2)):
        assert (await rate(client, caller, job_id, first)).status_code == 201
        response = await rate(client, caller, job_id, second)
        assert response.status_code == 409, response.text
        assert "already been rated" in response.json()["detail"]
    assert shown(await ratings(client, org, job_id)) == ((5, None), (4, None))


async def test_only_the_assigned_technician_and_the_job_s_organisation_see_or_rate_it(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org, other_org = await new_org(client, "Acme"), await new_org(client, "Other")
    job_id, _, _ = await completed_job(client, org)
    await technician(client, org, "ben", km=2, device=False)
    strangers = (technician_auth("ben"), other_org)
    for caller in strangers:
        response = await rate(client, caller, job_id, 1)
        assert response.status_code == 404, response.text
        response = await client.get(f"/v1/jobs/{job_id}/ratings", headers=caller)
        assert response.status_code == 404, response.text
    for caller in (org, *strangers):
        assert (await rate(client, caller, str(uuid.uuid4()), 3)).status_code == 404
    assert db.execute("SELECT count(*) FROM job_ratings").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"stars": 0}, "stars"),
        ({"stars": 6}, "stars"),
        ({"stars": "x"}, "stars"),
        ({"stars": 4.5}, "stars"),
        ({}, "stars"),
        ({"stars": 4, "comment": "x" * 2001}, "comment"),
    ],
)
async def test_a_rating_that_is_not_one_is_422_naming_the_field(
    client: AsyncTestClient, db: psycopg.Connection, body: dict, field: str
) -> None:
    org = await new_org(client)
    job_id, _, _ = await completed_job(client, org)
    response = await client.post(f"/v1/jobs/{job_id}/rating", json=body, headers=org)
    assert response.status_code == 422, response.text
    assert field in response.json()["detail"], response.json()
    assert db.execute("SELECT count(*) FROM job_ratings").fetchone()[0] == 0


async def test_a_replayed_rating_with_the_same_idempotency_key_gets_the_first_answer(client: AsyncTestClient) -> None:
    org = await new_org(client)
    job_id, _, _ = await completed_job(client, org)
    key = {"Idempotency-Key": "rate-once"}
    first = await rate(client, org, job_id, 5, "great", **key)
    again = await rate(client, org, job_id, 5, "great", **key)
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert (await rate(client, org, job_id, 1, **key)).status_code == 422  # same key, another body


async def test_when_both_sides_rate_at_once_both_are_released_and_counted_once(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    job_id, ana, auth = await completed_job(client, org)

    async def both(http: httpx.AsyncClient) -> list[httpx.Response]:
        answers: list[httpx.Response] = []

        async def post(caller: dict, stars: int) -> None:
            answers.append(await http.post(f"/v1/jobs/{job_id}/rating", json={"stars": stars}, headers=caller))

        async with anyio.create_task_group() as tg:
            tg.start_soon(post, org, 5)
            tg.start_soon(post, auth, 4)
        return answers

    answers = await in_app_loop(client, both)
    assert [a.status_code for a in answers] == [201, 201]
    assert sorted(a.json()["released"] for a in answers) == [False, True]
    assert shown(await ratings(client, auth, job_id)) == ((5, None), (4, None))
    assert aggregate(db, org_id_of(db, job_id), ana) == (1, 5)


# --- the Bayesian rating --------------------------------------------------------------------------------


async def test_the_hourly_release_counts_a_one_sided_rating_once_its_window_has_closed(
    client: AsyncTestClient, db: psycopg.Connection, sessionmaker, settings: Settings
) -> None:
    org, other_org = await new_org(client, "Acme"), await new_org(client, "Other")
    job_id, ana, ana_auth = await completed_job(client, org)
    rated_both_id, _, _ = await completed_job(client, org, onboarded=(ana, ana_auth))
    await technician(client, other_org, "ana", km=1, device=False)
    assert (await rate(client, org, job_id, 2)).status_code == 201  # the technician never answers this one
    assert (await rate(client, org, rated_both_id, 5)).status_code == 201
    assert (await rate(client, ana_auth, rated_both_id, 5)).status_code == 201
    assert await technician_rating(client, org, ana) == 4.17  # (20 + 5) / 6: only the released one

    # Completion times stay real, so the app's own hourly run (real time) cannot release anything here.
    closes = completed_at(db, job_id) + FOURTEEN_DAYS
    async with sessionmaker() as session:
        assert await services.release_due(closes - timedelta(seconds=1), session=session) == 0
    assert await technician_rating(client, org, ana) == 4.17

    queue = make_queue(settings.database.url)
    [periodic] = [p for p in queue.periodic_registry.periodic_tasks.values() if p.task.name == "release_ratings"]
    minute, *every_hour = periodic.cron.split()
    assert minute.isdigit() and every_hour == ["*", "*", "*", "*"]
    runtime = Runtime(sessionmaker=sessionmaker, sender=None)  # type: ignore[arg-type]
    context = types.SimpleNamespace(additional_context={"runtime": runtime})
    await periodic.task.func(context, timestamp=int(closes.timestamp()) + 1)

    # (20 + 5 + 2) / 7: the late one counts now, the job both rated is not counted a second time.
    assert await technician_rating(client, org, ana) == 3.86
    assert aggregate(db, org_id_of(db, job_id), ana) == (2, 7)
    async with sessionmaker() as session:
        assert await services.release_due(closes + timedelta(days=30), session=session) == 0
    assert aggregate(db, org_id_of(db, job_id), ana) == (2, 7)
    # Another organisation sees only its own ratings of the same technician: none.
    assert await technician_rating(client, other_org, ana) is None
