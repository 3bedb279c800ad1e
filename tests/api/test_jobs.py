"""Organisation: jobs — posting (defaults, validation, Idempotency-Key), reading, listing and candidates."""

from __future__ import annotations

import re
import uuid

import psycopg
from litestar.testing import AsyncTestClient

from tests.api.jobs_helpers import (
    at,
    count,
    event_types,
    get_job,
    job_body,
    north,
    offers_by_technician,
    post_job,
    technician,
    wave,
)
from tests.helpers import new_org

DEFAULT_DISPATCH = {
    "waves": [{"tiers": ["preferred", "approved"], "radius_km": 50, "max_offers": 10, "offer_ttl_s": 120}],
    "auto": True,
}


def jobs_in_db(db: psycopg.Connection) -> int:
    return count(db, "SELECT count(*) FROM jobs")


# --- posting ---------------------------------------------------------------------------------------------


async def test_post_job_is_201_with_id_status_token_offers_and_timeline(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    tech_id, _ = await technician(client, org, "ana", km=1)

    response = await client.post("/v1/jobs", json=job_body(), headers=org)

    assert response.status_code == 201, response.text
    job = response.json()
    uuid.UUID(job["id"])
    assert job["status"] == "offering"
    assert job["title"] == "Boiler does not start"
    assert job["technician"] is None
    # The customer's link: at least 128 bits of url-safe randomness (22 base64url characters).
    assert re.fullmatch(r"[A-Za-z0-9_-]{22,}", job["tracking_token"]), job["tracking_token"]
    # Default dispatch: one wave, both tiers, 50 km, 10 offers, 120 s.
    assert job["dispatch"] == DEFAULT_DISPATCH
    assert job["current_wave"] == 1
    assert [(o["technician_id"], o["status"], o["wave"]) for o in job["offers"]] == [(tech_id, "pending", 1)]
    assert event_types(job) == ["posted", "wave_started"]
    assert job["events"][1]["data"] == {"wave": 1, "offers": 1}
    assert job["estimated_hours"] == 2.0  # the window's length by default

    # The job reads back the same, and a second job gets another token.
    again = await get_job(client, org, job["id"])
    assert again["tracking_token"] == job["tracking_token"]
    assert again["offers"] == job["offers"]
    other = await post_job(client, org, auto=False)
    assert other["tracking_token"] != job["tracking_token"]
    assert count(db, "SELECT count(*) FROM jobs WHERE tracking_token = %s", job["tracking_token"]) == 1


async def test_dispatch_auto_false_posts_an_open_job_and_offers_nothing(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    await technician(client, org, "ana", km=1)

    job = await post_job(client, org, waves=[wave(max_offers=3, offer_ttl_s=60)], auto=False)

    assert job["status"] == "open"
    assert job["offers"] == []
    assert job["current_wave"] == 0
    assert job["dispatch"]["auto"] is False
    assert event_types(job) == ["posted"]
    assert count(db, "SELECT count(*) FROM offers") == 0


def invalid_jobs() -> list[tuple[str, dict, str]]:
    """(what is wrong, body overrides, the field the error must name)"""
    start = at(60)
    return [
        ("window end before start", {"window": {"start": at(120), "end": at(60)}}, "window.end"),
        ("window end equal to start", {"window": {"start": start, "end": start}}, "window.end"),
        ("window over already", {"window": {"start": at(-120), "end": at(-60)}}, "window.end"),
        ("unknown tier", {"dispatch": {"waves": [wave(tiers=["gold"])]}}, "tiers"),
        ("radius_km 0", {"dispatch": {"waves": [wave(radius_km=0)]}}, "radius_km"),
        ("radius_km 501", {"dispatch": {"waves": [wave(radius_km=501)]}}, "radius_km"),
        ("max_offers 0", {"dispatch": {"waves": [wave(max_offers=0)]}}, "max_offers"),
        ("max_offers 101", {"dispatch": {"waves": [wave(max_offers=101)]}}, "max_offers"),
        ("offer_ttl_s 0", {"dispatch": {"waves": [wave(offer_ttl_s=0)]}}, "offer_ttl_s"),
        ("offer_ttl_s 86401", {"dispatch": {"waves": [wave(offer_ttl_s=86401)]}}, "offer_ttl_s"),
        ("11 waves", {"dispatch": {"waves": [wave()] * 11}}, "waves"),
        ("no waves", {"dispatch": {"waves": []}}, "waves"),
        ("empty title", {"title": ""}, "title"),
        ("whitespace title", {"title": "  \t "}, "title"),
        ("lat 91", {"location": {"lat": 91, "lon": 13.4}}, "lat"),
        ("lon -181", {"location": {"lat": 52.5, "lon": -181}}, "lon"),
        ("missing customer.name", {"customer": {"phone": "+49 30 1234567"}}, "customer"),
    ]


async def test_invalid_jobs_are_rejected_naming_the_field_and_nothing_is_stored(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    await technician(client, org, "ana", km=1)

    for what, overrides, field in invalid_jobs():
        response = await client.post("/v1/jobs", json=job_body(**overrides), headers=org)
        assert response.status_code in (400, 422), (what, response.status_code, response.text)
        assert field in response.json()["detail"], (what, response.text)
    missing_name = await client.post("/v1/jobs", json=job_body(customer={}), headers=org)
    assert missing_name.status_code in (400, 422)
    assert "name" in missing_name.json()["detail"], missing_name.text

    assert jobs_in_db(db) == 0
    assert count(db, "SELECT count(*) FROM offers") == 0
    assert count(db, "SELECT count(*) FROM job_events") == 0
    # The bounds themselves are allowed.
    edge = [wave(radius_km=500, max_offers=100, offer_ttl_s=86400)] * 9 + [wave(radius_km=0.1, offer_ttl_s=1)]
    assert (await client.post("/v1/jobs", json=job_body(waves=edge, auto=False), headers=org)).status_code == 201


# --- Idempotency-Key ---------------------------------------------------------------------------------------


async def test_a_replay_with_the_same_key_and_body_returns_the_same_bytes_and_one_job(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    await technician(client, org, "ana", km=1)
    body = job_body()
    headers = {**org, "Idempotency-Key": "post-job-0001"}

    first = await client.post("/v1/jobs", json=body, headers=headers)
    second = await client.post("/v1/jobs", json=body, headers=headers)

    assert first.status_code == 201, first.text
    assert second.status_code == 201
    assert second.content == first.content
    assert jobs_in_db(db) == 1
    assert count(db, "SELECT count(*) FROM offers") == 1  # the job was dispatched once


async def test_idempotency_key_other_body_other_key_and_length(client: AsyncTestClient, db: psycopg.Connection) -> None:
    org = await new_org(client)
    body = job_body(auto=False)

    first = await client.post("/v1/jobs", json=body, headers={**org, "Idempotency-Key": "k-1"})
    assert first.status_code == 201, first.text

    changed = await client.post(
        "/v1/jobs", json={**body, "title": "Something else"}, headers={**org, "Idempotency-Key": "k-1"}
    )
    assert changed.status_code == 422, changed.text
    assert jobs_in_db(db) == 1

    other_key = await client.post("/v1/jobs", json=body, headers={**org, "Idempotency-Key": "k-2"})
    assert other_key.status_code == 201, other_key.text
    assert other_key.json()["id"] != first.json()["id"]
    assert jobs_in_db(db) == 2

    too_long = await client.post("/v1/jobs", json=body, headers={**org, "Idempotency-Key": "x" * 256})
    assert too_long.status_code == 400, too_long.text
    assert jobs_in_db(db) == 2
    longest = await client.post("/v1/jobs", json=body, headers={**org, "Idempotency-Key": "x" * 255})
    assert longest.status_code == 201, longest.text
    assert jobs_in_db(db) == 3


async def test_idempotency_keys_are_scoped_per_organisation(client: AsyncTestClient, db: psycopg.Connection) -> None:
    acme, beta = await new_org(client, "Acme"), await new_org(client, "Beta")
    body = job_body(auto=False)

    a = await client.post("/v1/jobs", json=body, headers={**acme, "Idempotency-Key": "shared"})
    b = await client.post("/v1/jobs", json=body, headers={**beta, "Idempotency-Key": "shared"})

    assert a.status_code == 201 and b.status_code == 201, (a.text, b.text)
    assert a.json()["id"] != b.json()["id"]
    assert jobs_in_db(db) == 2
    # Each organisation sees its own job, not the other's replayed answer.
    assert (await client.get(f"/v1/jobs/{b.json()['id']}", headers=beta)).status_code == 200
    assert (await client.get(f"/v1/jobs/{b.json()['id']}", headers=acme)).status_code == 404


# --- reading and listing --------------------------------------------------------------------------------


async def test_another_organisations_job_is_404_everywhere(client: AsyncTestClient, db: psycopg.Connection) -> None:
    acme, beta = await new_org(client, "Acme"), await new_org(client, "Beta")
    tech_id, _ = await technician(client, acme, "ana", km=1)
    job = await post_job(client, acme, auto=False)
    job_id = job["id"]

    assert (await client.get(f"/v1/jobs/{job_id}", headers=beta)).status_code == 404
    assert (await client.get(f"/v1/jobs/{job_id}/candidates", headers=beta)).status_code == 404
    assert (await client.post(f"/v1/jobs/{job_id}/dispatch", headers=beta)).status_code == 404
    assert (await client.post(f"/v1/jobs/{job_id}/cancel", json={}, headers=beta)).status_code == 404
    assigned = await client.post(f"/v1/jobs/{job_id}/assign", json={"technician_id": tech_id}, headers=beta)
    assert assigned.status_code == 404
    assert (await client.get(f"/v1/jobs/{uuid.uuid4()}", headers=acme)).status_code == 404
    assert (await client.get("/v1/jobs", headers=beta)).json()["items"] == []

    # Nothing happened to it.
    assert (await get_job(client, acme, job_id))["status"] == "open"
    assert count(db, "SELECT count(*) FROM offers") == 0


async def test_list_filters_by_status_and_bounds_limit(client: AsyncTestClient) -> None:
    org = await new_org(client)
    open_ids = [(await post_job(client, org, auto=False, title=f"Open {i}"))["id"] for i in range(3)]
    cancelled = await post_job(client, org, auto=False, title="Cancelled")
    assert (await client.post(f"/v1/jobs/{cancelled['id']}/cancel", json={}, headers=org)).status_code == 200

    everything = await client.get("/v1/jobs", headers=org)
    assert everything.status_code == 200
    assert {j["id"] for j in everything.json()["items"]} == {*open_ids, cancelled["id"]}
    only_open = (await client.get("/v1/jobs", params={"status": "open"}, headers=org)).json()
    assert {j["id"] for j in only_open["items"]} == set(open_ids)
    assert all(j["status"] == "open" for j in only_open["items"])
    only_cancelled = (await client.get("/v1/jobs", params={"status": "cancelled"}, headers=org)).json()
    assert [j["id"] for j in only_cancelled["items"]] == [cancelled["id"]]
    assert (await client.get("/v1/jobs", params={"status": "unfilled"}, headers=org)).json()["items"] == []
    assert (await client.get("/v1/jobs", params={"status": "bogus"}, headers=org)).status_code == 400

    for bad in (0, 201, -1):
        response = await client.get("/v1/jobs", params={"limit": bad}, headers=org)
        assert response.status_code == 400, (bad, response.text)
        assert "limit" in response.json()["detail"]
    assert (await client.get("/v1/jobs", params={"limit": 200}, headers=org)).status_code == 200

    # limit=1 pages through the open jobs one at a time, newest first, each exactly once.
    seen, cursor = [], None
    while True:
        params = {"status": "open", "limit": 1, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/jobs", params=params, headers=org)).json()
        assert len(page["items"]) <= 1
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(seen) <= 3
    assert seen == list(reversed(open_ids))


# --- candidates -------------------------------------------------------------------------------------------


async def test_candidates_are_ranked_best_first_with_parts_adding_up_and_reading_offers_nothing(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    near, _ = await technician(client, org, "near", km=1)
    mid, _ = await technician(client, org, "mid", km=3)
    far, _ = await technician(client, org, "far", km=6)
    approved, _ = await technician(client, org, "approved", km=1.5, tier="approved")
    job = await post_job(client, org, auto=False)

    response = await client.get(f"/v1/jobs/{job['id']}/candidates", headers=org)

    assert response.status_code == 200, response.text
    body = response.json()
    items = body["items"]
    assert body.get("excluded") is None
    assert [c["rank"] for c in items] == [1, 2, 3, 4]
    # Preferred and closest first; the approved member is the closest but one, yet loses the tier's 0.1.
    assert [c["technician_id"] for c in items] == [near, mid, far, approved]
    assert [c["score"] for c in items] == sorted((c["score"] for c in items), reverse=True)
    expected_km = {near: 1, mid: 3, far: 6, approved: 1.5}
    for c in items:
        assert abs(sum(c["components"].values()) - c["score"]) < 1e-5, c
        assert set(c["components"]) >= {"proximity", "rating", "reliability", "tier"}
        assert abs(c["distance_m"] - expected_km[c["technician_id"]] * 1000) < 15, c
        # No speed reported: 30 km/h with a detour factor of 1.3.
        assert abs(c["eta_s"] - c["distance_m"] * 1.3 / (30 / 3.6)) <= 1, c
        assert 0 <= c["score"] <= 1
    assert items[0]["components"]["tier"] > items[3]["components"]["tier"]

    limited = (await client.get(f"/v1/jobs/{job['id']}/candidates", params={"limit": 2}, headers=org)).json()
    assert [c["technician_id"] for c in limited["items"]] == [near, mid]
    assert (await client.get(f"/v1/jobs/{job['id']}/candidates", params={"wave": 2}, headers=org)).status_code == 400

    # Reading candidates offered nothing to anyone.
    assert count(db, "SELECT count(*) FROM offers") == 0
    after = await get_job(client, org, job["id"])
    assert after["status"] == "open"
    assert after["offers"] == []
    assert event_types(after) == ["posted"]


async def test_explain_lists_every_left_out_member_with_all_its_reasons(
    client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(client)
    skills = ["hvac", "plumbing"]
    # The job's window is [+30 min, +150 min].
    start, end, later_end = at(30), at(150), at(180)
    window = {"start": start, "end": end}

    # Busy: assigned to another job whose window overlaps; touching: assigned to one that starts at our end.
    busy, _ = await technician(client, org, "busy", km=1.5, skills=skills)
    touching, _ = await technician(client, org, "touching", km=2.5, skills=skills)
    for who, other_window in ((busy, {"start": at(60), "end": at(90)}), (touching, {"start": end, "end": later_end})):
        other = await post_job(client, org, auto=False, window=other_window)
        assigned = await client.post(f"/v1/jobs/{other['id']}/assign", json={"technician_id": who}, headers=org)
        assert assigned.status_code == 200, assigned.text

    offered, _ = await technician(client, org, "offered", km=1, skills=skills)
    second, _ = await technician(client, org, "second", km=2, skills=skills)
    off_duty, _ = await technician(client, org, "offduty", km=1.5, on_duty=False, skills=skills)
    no_ping, _ = await technician(client, org, "noping", km=None, skills=skills)
    unskilled, _ = await technician(client, org, "unskilled", km=1.5, skills=["electrical"])
    distant, _ = await technician(client, org, "distant", km=80, skills=skills, service_radius_km=200)
    approved, _ = await technician(client, org, "approved", km=1.5, skills=skills, tier="approved")
    everything, _ = await technician(
        client, org, "everything", km=None, on_duty=False, skills=["electrical"], tier="approved", active=False
    )

    # One wave, preferred only, a single offer: it goes to the closest eligible member.
    job = await post_job(
        client, org, skills=skills, window=window, waves=[wave(max_offers=1, tiers=["preferred"], radius_km=50)]
    )
    assert list(offers_by_technician(job)) == [offered]

    response = await client.get(f"/v1/jobs/{job['id']}/candidates", params={"explain": "true"}, headers=org)

    assert response.status_code == 200, response.text
    body = response.json()
    assert [c["technician_id"] for c in body["items"]] == [second, touching]
    excluded = {e["technician_id"]: e["reasons"] for e in body["excluded"]}
    assert excluded == {
        offered: ["already_offered"],
        busy: ["busy"],
        off_duty: ["off_duty"],
        no_ping: ["stale_location"],
        unskilled: ["missing_skill:hvac", "missing_skill:plumbing"],
        distant: ["out_of_radius"],
        approved: ["tier"],
        everything: [
            "inactive",
            "tier",
            "off_duty",
            "stale_location",
            "missing_skill:hvac",
            "missing_skill:plumbing",
        ],
    }
    # Explaining offered nothing more either.
    assert count(db, "SELECT count(*) FROM offers WHERE job_id = %s", job["id"]) == 1


async def test_a_later_job_measures_from_home_and_ignores_duty(client: AsyncTestClient) -> None:
    org = await new_org(client)
    # Off duty, never pinged, based 2 km from the site.
    homebody, _ = await technician(client, org, "homebody", km=None, on_duty=False, home=north(2))
    # On duty 1 km from the site right now, but based 100 km away (service radius 25 km).
    traveller, _ = await technician(client, org, "traveller", km=1, home=north(100))

    later = await post_job(client, org, auto=False, start_in_min=180)
    asap = await post_job(client, org, auto=False, start_in_min=30)

    body = (await client.get(f"/v1/jobs/{later['id']}/candidates?explain=true", headers=org)).json()
    assert [c["technician_id"] for c in body["items"]] == [homebody]
    assert abs(body["items"][0]["distance_m"] - 2000) < 15
    assert {e["technician_id"]: e["reasons"] for e in body["excluded"]} == {traveller: ["out_of_radius"]}

    # The same pool for a job starting within 2 h: live positions and duty decide.
    body = (await client.get(f"/v1/jobs/{asap['id']}/candidates?explain=true", headers=org)).json()
    assert [c["technician_id"] for c in body["items"]] == [traveller]
    assert abs(body["items"][0]["distance_m"] - 1000) < 15
    assert {e["technician_id"]: e["reasons"] for e in body["excluded"]} == {homebody: ["off_duty", "stale_location"]}
