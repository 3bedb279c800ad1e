"""Approval and payables: approve (hours override, rejected expenses, max_expenses), mark-incomplete with its push,
payables listed and exported as CSV, marked paid idempotently, earnings across organisations, the organisation's
auto_approve_days and the periodic auto-approval (once per job, even run twice at once)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import anyio
import psycopg
from litestar.testing import AsyncTestClient

from backend.closing.approval import auto_approve
from tests.api.closing_helpers import assigned, closing_client, complete, on_site
from tests.api.jobs_helpers import event_types, get_job, has_push, job_body, pushes_when
from tests.fakes.fcm import FakeFcmServer
from tests.helpers import new_org, technician_body

__all__ = ["closing_client"]

HOURLY = {"type": "hourly", "currency": "EUR", "rate": 40, "max_hours": 8, "max_expenses": 50}


async def completed_job(client: AsyncTestClient, org: dict, uid: str = "ana", pay=HOURLY, expenses=()):
    job, technician_id, auth = await assigned(client, org, uid, pay=pay)
    ids = []
    for description, amount in expenses:
        response = await client.post(
            f"/v1/jobs/{job['id']}/expenses", json={"description": description, "amount": amount}, headers=auth
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    await on_site(client, auth, job["id"])
    assert (await complete(client, auth, job["id"])).status_code == 200
    return job, technician_id, auth, ids


def worked(db: psycopg.Connection, job_id: str, hours: float) -> None:
    """The job's one visit made `hours` long."""
    db.execute(
        "UPDATE job_visits SET checked_in_at = completed_at - make_interval(secs => %s) WHERE job_id = %s",
        (hours * 3600, job_id),
    )


async def test_approve_settles_the_payable_from_the_worked_hours_and_the_expenses(
    closing_client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(closing_client)
    job, technician_id, _, (fuse, cable, taxi) = await completed_job(
        closing_client, org, expenses=[("Fuse", 12.5), ("Cable", 40), ("Taxi", 30)]
    )
    worked(db, job["id"], 2.5)
    response = await closing_client.post(
        f"/v1/jobs/{job['id']}/approve", json={"reject_expenses": [taxi], "note": "thanks"}, headers=org
    )
    assert response.status_code == 200, response.text
    approved = response.json()
    assert approved["status"] == "approved"
    payable = approved["payable"]
    assert (payable["hours"], payable["labour"], payable["expenses"], payable["total"]) == (2.5, 100, 50, 150)
    assert (payable["currency"], payable["status"], payable["approved_by"]) == ("EUR", "approved", "organisation")
    assert payable["technician_id"] == technician_id and payable["paid_at"] is None
    assert any("max_expenses" in n for n in payable["notes"]) and "thanks" in payable["notes"]
    assert {e["id"]: e["status"] for e in approved["expenses"]} == {
        fuse: "approved",
        cable: "approved",
        taxi: "rejected",
    }
    assert event_types(approved)[-1] == "approved"
    assert approved["events"][-1]["data"]["by"] == "organisation"
    again = await closing_client.post(f"/v1/jobs/{job['id']}/approve", headers=org)
    assert again.status_code == 409, again.text
    assert db.execute("SELECT count(*) FROM payables").fetchone()[0] == 1


async def test_approve_with_hours_overrides_the_worked_hours_and_the_cap_applies(
    closing_client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(closing_client)
    job, *_ = await completed_job(closing_client, org)
    response = await closing_client.post(f"/v1/jobs/{job['id']}/approve", json={"hours": 9.5}, headers=org)
    assert response.status_code == 200, response.text
    payable = response.json()["payable"]
    assert (payable["hours"], payable["labour"], payable["total"]) == (8, 320, 320)
    assert any("max_hours" in n for n in payable["notes"])
    assert db.execute("SELECT labour, total FROM payables").fetchone() == (320, 320)


async def test_approve_refuses_bad_hours_foreign_expenses_and_jobs_not_completed(
    closing_client: AsyncTestClient,
) -> None:
    org = await new_org(closing_client)
    job, _, auth = await assigned(closing_client, org, pay=HOURLY)
    response = await closing_client.post(f"/v1/jobs/{job['id']}/approve", headers=org)
    assert response.status_code == 409, response.text
    assert response.json()["extra"] == {"status": "assigned", "wanted": "approved"}
    await on_site(closing_client, auth, job["id"])
    await complete(closing_client, auth, job["id"])
    response = await closing_client.post(f"/v1/jobs/{job['id']}/approve", json={"hours": 1.234}, headers=org)
    assert response.status_code == 422 and response.json()["detail"].startswith("hours:")
    response = await closing_client.post(
        f"/v1/jobs/{job['id']}/approve", json={"reject_expenses": [job["id"]]}, headers=org
    )
    assert response.status_code == 422 and response.json()["detail"].startswith("reject_expenses[0]:")
    other = await new_org(closing_client, "Other Org")
    for action, body in (("approve", {}), ("mark-incomplete", {"reason": "x"})):
        response = await closing_client.post(f"/v1/jobs/{job['id']}/{action}", json=body, headers=other)
        assert response.status_code == 404, (action, response.text)


async def test_mark_incomplete_pushes_the_technician(closing_client: AsyncTestClient, fcm: FakeFcmServer) -> None:
    org = await new_org(closing_client)
    job, *_ = await completed_job(closing_client, org)
    response = await closing_client.post(
        f"/v1/jobs/{job['id']}/mark-incomplete", json={"reason": "signature missing"}, headers=org
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "incomplete"
    await pushes_when(fcm, has_push("tok-ana", "job_incomplete", job_id=job["id"]))
    response = await closing_client.post(f"/v1/jobs/{job['id']}/approve", headers=org)
    assert response.status_code == 409


async def test_payables_list_csv_paid_and_earnings(closing_client: AsyncTestClient, db: psycopg.Connection) -> None:
    acme = await new_org(closing_client, "Acme")
    job, technician_id, auth, _ = await completed_job(closing_client, acme, pay={"amount": 99.99, "currency": "EUR"})
    approved = await closing_client.post(
        f"/v1/jobs/{job['id']}/approve", json={"note": '=HYPERLINK("http://evil")'}, headers=acme
    )
    payable = approved.json()["payable"]
    # The same technician works for a second organisation.
    globex = await new_org(closing_client, "Globex")
    posted = await closing_client.post(
        "/v1/jobs", json=job_body(auto=False, pay={"amount": 10, "currency": "USD"}), headers=globex
    )
    other_job = posted.json()["id"]
    assert (await closing_client.post("/v1/technicians", json=technician_body("ana"), headers=globex)).is_success
    response = await closing_client.post(
        f"/v1/jobs/{other_job}/assign", json={"technician_id": technician_id}, headers=globex
    )
    assert response.status_code == 200, response.text
    await on_site(closing_client, auth, other_job)
    await complete(closing_client, auth, other_job)
    assert (await closing_client.post(f"/v1/jobs/{other_job}/approve", headers=globex)).status_code == 200

    page = (await closing_client.get("/v1/payables", headers=acme)).json()
    assert [p["id"] for p in page["items"]] == [payable["id"]] and page["next_cursor"] is None
    assert (await closing_client.get("/v1/payables?status=paid", headers=acme)).json()["items"] == []
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert (await closing_client.get("/v1/payables", params={"since": later}, headers=acme)).json()["items"] == []

    export = await closing_client.get("/v1/payables.csv", headers=acme)
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert len(rows) == 1 and rows[0]["id"] == payable["id"] and rows[0]["total"] == "99.99"
    assert rows[0]["notes"].startswith("'=HYPERLINK")

    hook = await closing_client.post(
        "/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["payable.paid"]}, headers=acme
    )
    assert hook.status_code == 201, hook.text
    url = f"/v1/payables/{payable['id']}/paid"
    paid = await closing_client.post(url, json={"reference": "TX-1"}, headers=acme)
    assert paid.status_code == 200, paid.text
    assert (paid.json()["status"], paid.json()["reference"]) == ("paid", "TX-1")
    same = await closing_client.post(url, json={"reference": "TX-1"}, headers=acme)
    assert same.status_code == 200 and same.json() == paid.json()
    sent = db.execute("SELECT type, body FROM webhook_events").fetchall()
    assert [t for t, _ in sent] == ["payable.paid"]  # once, not again for the same reference
    assert '"reference":"TX-1"' in sent[0][1] and '"total":99.99' in sent[0][1]
    assert (await closing_client.post(url, json={"reference": "TX-2"}, headers=acme)).status_code == 409
    assert (await closing_client.post(url, json={"reference": "TX-1"}, headers=globex)).status_code == 404

    earnings = (await closing_client.get("/v1/me/earnings", headers=auth)).json()["items"]
    assert sorted((e["org_name"], e["currency"], e["total"]) for e in earnings) == [
        ("Acme", "EUR", 99.99),
        ("Globex", "USD", 10),
    ]
    globex_payables = (await closing_client.get("/v1/payables", headers=globex)).json()["items"]
    assert [p["job_id"] for p in globex_payables] == [other_job]


async def test_org_settings_and_auto_approval_once_even_when_run_twice_at_once(
    closing_client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(closing_client)
    assert (await closing_client.get("/v1/org/settings", headers=org)).json() == {"auto_approve_days": 7}
    response = await closing_client.put("/v1/org/settings", json={"auto_approve_days": 61}, headers=org)
    assert response.status_code in (400, 422)
    response = await closing_client.put("/v1/org/settings", json={"auto_approve_days": 2}, headers=org)
    assert response.status_code == 200 and response.json() == {"auto_approve_days": 2}

    old, *_ = await completed_job(closing_client, org, "ana")
    recent, *_ = await completed_job(closing_client, org, "bob")
    db.execute("UPDATE jobs SET completed_at = now() - interval '3 days' WHERE id = %s", (old["id"],))

    sessions = closing_client.app.state.sessionmaker

    async def run() -> int:
        async with sessions() as session:
            return await auto_approve(datetime.now(UTC), session=session)

    results = await _twice(closing_client, run)
    assert sorted(results) == [0, 1]
    approved = await get_job(closing_client, org, old["id"])
    assert approved["status"] == "approved" and approved["payable"]["approved_by"] == "auto"
    assert approved["events"][-1]["data"]["by"] == "auto"
    assert (await get_job(closing_client, org, recent["id"]))["status"] == "completed"
    assert db.execute("SELECT count(*) FROM payables").fetchone()[0] == 1

    await closing_client.put("/v1/org/settings", json={"auto_approve_days": 0}, headers=org)
    db.execute("UPDATE jobs SET completed_at = now() - interval '90 days' WHERE id = %s", (recent["id"],))
    assert await _twice(closing_client, run) == [0, 0]


async def _collect(results, run):
    results.append(await run())


async def _twice(client: AsyncTestClient, run) -> list[int]:
    """Two auto-approvals at once, on the app's loop (as two workers would run them)."""

    async def both() -> list[int]:
        results: list[int] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_collect, results, run)
            tg.start_soon(_collect, results, run)
        return results

    return await anyio.to_thread.run_sync(client.blocking_portal.call, both)
