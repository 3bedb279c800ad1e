"""Proof of work: tasks on the job, a completion refused while a required one is not done, worked hours from the
visits, attachments (sniffed, size-limited, readable by the organisation and the assigned technician only) and
expenses."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import psycopg
from litestar.testing import AsyncTestClient

from tests.api.closing_helpers import JPEG, PDF, PNG, TASKS, assigned, closing_client, complete, on_site, upload
from tests.api.jobs_helpers import get_job, job_body, technician
from tests.helpers import new_org

__all__ = ["closing_client"]


async def test_tasks_get_default_keys_and_are_shown_on_the_job(closing_client: AsyncTestClient) -> None:
    org = await new_org(closing_client)
    response = await closing_client.post("/v1/jobs", json=job_body(auto=False, tasks=TASKS), headers=org)
    assert response.status_code == 201, response.text
    assert [(t["key"], t["required"], t["value"], t["done_at"]) for t in response.json()["tasks"]] == [
        ("t1", True, None, None),
        ("photo", True, None, None),
        ("t3", False, None, None),
    ]
    duplicate = [{"type": "checkbox", "label": "a"}, {"key": "t1", "type": "text", "label": "b"}]
    response = await closing_client.post("/v1/jobs", json=job_body(auto=False, tasks=duplicate), headers=org)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("tasks[1].key:")
    too_many = [{"type": "checkbox", "label": f"step {i}"} for i in range(51)]
    response = await closing_client.post("/v1/jobs", json=job_body(auto=False, tasks=too_many), headers=org)
    assert response.status_code in (400, 422)


async def test_complete_with_a_required_task_not_done_is_409_naming_the_missing_tasks(
    closing_client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(closing_client)
    job, _, auth = await assigned(closing_client, org, tasks=TASKS)
    await on_site(closing_client, auth, job["id"])

    response = await complete(closing_client, auth, job["id"])
    assert response.status_code == 409, response.text
    assert response.json()["extra"]["missing_tasks"] == ["t1", "photo"]

    response = await closing_client.put(f"/v1/jobs/{job['id']}/tasks/t1", json={"value": True}, headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["value"] is True and response.json()["done_at"] is not None
    photo = await upload(closing_client, auth, job["id"])
    assert photo.status_code == 201, photo.text
    response = await complete(closing_client, auth, job["id"])
    assert response.json()["extra"]["missing_tasks"] == ["photo"]
    response = await closing_client.put(
        f"/v1/jobs/{job['id']}/tasks/photo", json={"value": photo.json()["id"]}, headers=auth
    )
    assert response.status_code == 200, response.text

    response = await complete(closing_client, auth, job["id"])
    assert response.status_code == 200, response.text
    shown = await get_job(closing_client, org, job["id"])
    assert shown["status"] == "completed"
    assert {t["key"]: t["value"] for t in shown["tasks"]} == {"t1": True, "photo": photo.json()["id"], "t3": None}


async def test_a_task_value_of_the_wrong_kind_is_422_and_outside_work_409(closing_client: AsyncTestClient) -> None:
    org = await new_org(closing_client)
    job, _, auth = await assigned(closing_client, org, tasks=TASKS)
    url = f"/v1/jobs/{job['id']}/tasks"
    response = await closing_client.put(f"{url}/t1", json={"value": True}, headers=auth)
    assert response.status_code == 409, response.text  # assigned: not on the way yet
    await on_site(closing_client, auth, job["id"])
    for key, value in [("t1", "yes"), ("t3", ""), ("t3", "x" * 2001), ("photo", "not-an-id"), ("photo", True)]:
        response = await closing_client.put(f"{url}/{key}", json={"value": value}, headers=auth)
        assert response.status_code == 422, (key, value, response.text)
        assert response.json()["detail"].startswith("value:")
    pdf = await upload(closing_client, auth, job["id"], PDF, "application/pdf")
    response = await closing_client.put(f"{url}/photo", json={"value": pdf.json()["id"]}, headers=auth)
    assert response.status_code == 422, response.text  # a photo must be an image
    response = await closing_client.put(f"{url}/nope", json={"value": True}, headers=auth)
    assert response.status_code == 404


async def test_worked_hours_are_the_sum_of_the_visits(closing_client: AsyncTestClient, db: psycopg.Connection) -> None:
    org = await new_org(closing_client)
    job, _, auth = await assigned(closing_client, org)
    await on_site(closing_client, auth, job["id"])
    assert (await complete(closing_client, auth, job["id"])).status_code == 200
    # Two visits of 1.5 h and 0.25 h, as the clock would have recorded them.
    start = datetime.now(UTC) - timedelta(days=1)
    db.execute("DELETE FROM job_visits WHERE job_id = %s", (job["id"],))
    db.execute(
        "INSERT INTO job_visits (job_id, technician_id, checked_in_at, completed_at) "
        "SELECT id, technician_id, s, e FROM jobs, (VALUES (%s::timestamptz, %s::timestamptz), (%s, %s)) v(s, e) "
        "WHERE id = %s",
        (start, start + timedelta(hours=1.5), start + timedelta(hours=5), start + timedelta(hours=5.25), job["id"]),
    )
    assert (await get_job(closing_client, org, job["id"]))["hours"] == 1.75


async def test_a_job_sent_back_is_completed_again_after_a_return_visit(
    closing_client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(closing_client)
    job, technician_id, auth = await assigned(closing_client, org)
    await on_site(closing_client, auth, job["id"])
    assert (await complete(closing_client, auth, job["id"])).status_code == 200
    response = await closing_client.post(
        f"/v1/jobs/{job['id']}/mark-incomplete", json={"reason": "no photo of the meter"}, headers=org
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "incomplete"
    await on_site(closing_client, auth, job["id"])
    assert (await complete(closing_client, auth, job["id"])).status_code == 200
    assert db.execute("SELECT count(*) FROM job_visits WHERE job_id = %s", (job["id"],)).fetchone()[0] == 2
    counters = db.execute(
        "SELECT check_ins, completions FROM pool_memberships WHERE technician_id = %s", (technician_id,)
    ).fetchone()
    assert counters == (1, 1)  # a return visit is not a second job done


async def test_attachments_are_sniffed_stored_and_read_back_by_the_org_and_the_technician(
    closing_client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(closing_client)
    job, _, auth = await assigned(closing_client, org)
    response = await upload(closing_client, auth, job["id"])
    assert response.status_code == 409, response.text  # assigned: not yet en route
    await on_site(closing_client, auth, job["id"])

    response = await upload(closing_client, auth, job["id"], JPEG, "image/jpeg")
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["content_type"] == "image/jpeg"
    assert stored["size"] == len(JPEG)
    assert stored["sha256"] == hashlib.sha256(JPEG).hexdigest()
    again = await upload(closing_client, auth, job["id"], JPEG, "image/jpeg")
    assert again.status_code == 201 and again.json() == stored  # a retry answers the first

    for who in (org, auth):
        read = await closing_client.get(f"/v1/jobs/{job['id']}/attachments/{stored['id']}", headers=who)
        assert read.status_code == 200, read.text
        assert read.content == JPEG
        assert read.headers["content-type"].startswith("image/jpeg")

    other_org = await new_org(closing_client, "Other Org")
    _, other_auth = await technician(closing_client, other_org, "bob")
    for who in (other_org, other_auth):
        read = await closing_client.get(f"/v1/jobs/{job['id']}/attachments/{stored['id']}", headers=who)
        assert read.status_code == 404, read.text
    response = await upload(closing_client, other_auth, job["id"])
    assert response.status_code == 404


async def test_an_upload_of_another_type_than_it_says_is_415_and_too_large_413(
    closing_client: AsyncTestClient, db: psycopg.Connection
) -> None:
    org = await new_org(closing_client)
    job, _, auth = await assigned(closing_client, org)
    await on_site(closing_client, auth, job["id"])
    for content, content_type in [(PNG, "image/jpeg"), (b"GIF89a" + b"\x00" * 40, "image/png"), (PDF, "text/plain")]:
        response = await upload(closing_client, auth, job["id"], content, content_type)
        assert response.status_code == 415, (content_type, response.text)
    # Over 1 MiB (the API's limit elsewhere) is fine here...
    big = PNG + b"\x00" * (3 * 1024 * 1024)
    assert (await upload(closing_client, auth, job["id"], big)).status_code == 201
    # ...over 10 MiB is not.
    huge = PNG + b"\x00" * (10 * 1024 * 1024)
    response = await upload(closing_client, auth, job["id"], huge)
    assert response.status_code == 413, response.text
    assert db.execute("SELECT count(*) FROM attachments").fetchone()[0] == 1


async def test_expenses_are_claimed_by_the_assigned_technician_and_listed_on_the_job(
    closing_client: AsyncTestClient,
) -> None:
    org = await new_org(closing_client)
    job, _, auth = await assigned(closing_client, org)
    url = f"/v1/jobs/{job['id']}/expenses"
    response = await closing_client.post(url, json={"description": "Fuse", "amount": 12.5}, headers=auth)
    assert response.status_code == 201, response.text
    expense = response.json()
    assert (expense["amount"], expense["status"], expense["attachment_id"]) == (12.5, "pending", None)
    response = await closing_client.post(url, json={"description": "Cable", "amount": 1.234}, headers=auth)
    assert response.status_code == 422 and response.json()["detail"].startswith("amount:")
    response = await closing_client.post(
        url, json={"description": "Cable", "amount": 3, "attachment_id": expense["id"]}, headers=auth
    )
    assert response.status_code == 422 and response.json()["detail"].startswith("attachment_id:")
    assert [e["id"] for e in (await get_job(closing_client, org, job["id"]))["expenses"]] == [expense["id"]]
    other_org = await new_org(closing_client, "Other Org")
    _, other_auth = await technician(closing_client, other_org, "bob")
    response = await closing_client.post(url, json={"description": "Fuse", "amount": 1}, headers=other_auth)
    assert response.status_code == 404
