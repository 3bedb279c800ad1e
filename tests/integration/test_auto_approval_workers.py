"""The periodic auto-approval with two real `truckroll worker` processes running it at the same moment: each due
job is approved once, with one payable, and a job a dispatcher approved just before is not approved again."""

from __future__ import annotations

import time

import psycopg
from litestar.testing import AsyncTestClient

from tests.api.closing_helpers import assigned, complete, on_site
from tests.api.jobs_helpers import eventually
from tests.helpers import new_org
from tests.integration.test_queue_crash import api, env, external, queue, workers

__all__ = ["api", "env", "external", "queue", "workers"]
JOBS = 6


async def test_two_workers_auto_approve_each_due_job_once(
    api: AsyncTestClient, db: psycopg.Connection, queue, workers
) -> None:
    org = await new_org(api)
    jobs = []
    for i in range(JOBS):
        job, _, auth = await assigned(api, org, f"tech{i}", pay={"amount": 50, "currency": "EUR"})
        await on_site(api, auth, job["id"])
        assert (await complete(api, auth, job["id"])).status_code == 200
        jobs.append(job["id"])
    db.execute("UPDATE jobs SET completed_at = now() - interval '8 days'")
    by_hand = await api.post(f"/v1/jobs/{jobs[0]}/approve", headers=org)
    assert by_hand.status_code == 200, by_hand.text

    workers()
    workers()
    now = int(time.time())
    task = queue.tasks["auto_approve_jobs"]
    await task.defer_async(timestamp=now)
    await task.defer_async(timestamp=now + 1)

    async def both_ran() -> bool:
        left = db.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'auto_approve_jobs' "
            "AND status IN ('todo', 'doing')"
        ).fetchone()[0]
        return left == 0

    await eventually(both_ran, within=30, what="both auto-approval runs")
    failed = db.execute(
        "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'auto_approve_jobs' AND status <> 'succeeded'"
    ).fetchone()[0]
    assert failed == 0
    assert db.execute("SELECT count(*) FROM jobs WHERE status = 'approved'").fetchone()[0] == JOBS
    rows = db.execute("SELECT approved_by, count(*) FROM payables GROUP BY approved_by").fetchall()
    assert dict(rows) == {"organisation": 1, "auto": JOBS - 1}
    approvals = db.execute(
        "SELECT job_id, count(*) FROM job_events WHERE type = 'approved' GROUP BY job_id HAVING count(*) > 1"
    ).fetchall()
    assert approvals == []
