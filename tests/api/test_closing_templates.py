"""Job templates: saved, listed, read, replaced and deleted by their organisation only; a job posted from one gets
its fields, each replaced by the job's own (lists replaced, not merged)."""

from __future__ import annotations

from litestar.testing import AsyncTestClient

from tests.api.jobs_helpers import SITE, at
from tests.helpers import new_org

TEMPLATE = {
    "name": "Boiler service",
    "title": "Annual boiler service",
    "description": "Service and safety check",
    "skills": ["hvac"],
    "estimated_hours": 1.5,
    "pay": {"type": "hourly", "currency": "EUR", "rate": 42.5, "max_hours": 3},
    "tasks": [{"type": "checkbox", "label": "Flue checked", "required": True}],
    "dispatch": {
        "waves": [{"tiers": ["preferred"], "radius_km": 20, "max_offers": 3, "offer_ttl_s": 300}],
        "auto": False,
    },
}


def where_and_when() -> dict:
    return {"location": SITE, "window": {"start": at(60), "end": at(180)}, "customer": {"name": "Dora"}}


async def test_a_job_from_a_template_gets_its_fields_replaced_by_the_jobs_own(client: AsyncTestClient) -> None:
    org = await new_org(client)
    response = await client.post("/v1/job-templates", json=TEMPLATE, headers=org)
    assert response.status_code == 201, response.text
    template = response.json()
    assert {k: template[k] for k in TEMPLATE if k != "tasks"} == {k: v for k, v in TEMPLATE.items() if k != "tasks"}
    assert [{k: t[k] for k in ("type", "label", "required")} for t in template["tasks"]] == TEMPLATE["tasks"]

    response = await client.post("/v1/jobs", json={**where_and_when(), "template_id": template["id"]}, headers=org)
    assert response.status_code == 201, response.text
    job = response.json()
    assert (job["title"], job["skills"], job["estimated_hours"], job["pay"]) == (
        "Annual boiler service",
        ["hvac"],
        1.5,
        TEMPLATE["pay"],
    )
    assert [t["label"] for t in job["tasks"]] == ["Flue checked"]
    assert job["dispatch"]["auto"] is False and job["status"] == "open"
    assert job["template_id"] == template["id"]

    own = {
        **where_and_when(),
        "template_id": template["id"],
        "title": "Boiler leaks",
        "skills": ["plumbing"],
        "tasks": [{"type": "photo", "label": "The leak"}],
    }
    job = (await client.post("/v1/jobs", json=own, headers=org)).json()
    assert (job["title"], job["skills"], [t["label"] for t in job["tasks"]]) == (
        "Boiler leaks",
        ["plumbing"],
        ["The leak"],
    )
    assert job["description"] == "Service and safety check"


async def test_templates_are_listed_replaced_and_deleted(client: AsyncTestClient) -> None:
    org = await new_org(client)
    first = (await client.post("/v1/job-templates", json=TEMPLATE, headers=org)).json()
    second = (await client.post("/v1/job-templates", json={"name": "Empty"}, headers=org)).json()
    listed = (await client.get("/v1/job-templates", headers=org)).json()
    assert [t["id"] for t in listed["items"]] == [second["id"], first["id"]]
    response = await client.put(f"/v1/job-templates/{first['id']}", json={"name": "Renamed", "title": "T"}, headers=org)
    assert response.status_code == 200, response.text
    assert (response.json()["name"], response.json()["title"], response.json()["pay"]) == ("Renamed", "T", None)
    assert (await client.get(f"/v1/job-templates/{first['id']}", headers=org)).json()["name"] == "Renamed"
    assert (await client.delete(f"/v1/job-templates/{first['id']}", headers=org)).status_code == 204
    assert (await client.get(f"/v1/job-templates/{first['id']}", headers=org)).status_code == 404


async def test_a_template_is_checked_like_a_job_and_a_job_still_needs_title_and_skills(
    client: AsyncTestClient,
) -> None:
    org = await new_org(client)
    bad = {**TEMPLATE, "pay": {"type": "hourly", "currency": "EUR", "amount": 10, "rate": 5}}
    response = await client.post("/v1/job-templates", json=bad, headers=org)
    assert response.status_code == 422 and response.json()["detail"].startswith("pay.amount:")
    response = await client.post("/v1/jobs", json=where_and_when(), headers=org)
    assert response.status_code == 400 and response.json()["detail"].startswith("title:")
    bare = (await client.post("/v1/job-templates", json={"name": "Bare", "title": "x"}, headers=org)).json()
    response = await client.post("/v1/jobs", json={**where_and_when(), "template_id": bare["id"]}, headers=org)
    assert response.status_code == 400 and response.json()["detail"].startswith("skills:")


async def test_another_organisations_template_is_404_everywhere(client: AsyncTestClient) -> None:
    org = await new_org(client)
    template = (await client.post("/v1/job-templates", json=TEMPLATE, headers=org)).json()
    other = await new_org(client, "Other Org")
    url = f"/v1/job-templates/{template['id']}"
    assert (await client.get(url, headers=other)).status_code == 404
    assert (await client.put(url, json={"name": "Mine now"}, headers=other)).status_code == 404
    assert (await client.delete(url, headers=other)).status_code == 404
    assert (await client.get("/v1/job-templates", headers=other)).json()["items"] == []
    response = await client.post("/v1/jobs", json={**where_and_when(), "template_id": template["id"]}, headers=other)
    assert response.status_code == 422, response.text  # an id in a body that names nothing of this organisation's
    assert response.json()["detail"].startswith("template_id:")
    assert (await client.get(url, headers=org)).json()["name"] == "Boiler service"
