"""The served OpenAPI document lists, for every operation, each status it can answer with the error body's schema
(API.md, "Operating it"), and the docs UI loads nothing from another site."""

from __future__ import annotations

import re

from litestar.testing import AsyncTestClient

ERROR = {"$ref": "#/components/schemas/ErrorBody"}


async def _schema(client: AsyncTestClient) -> dict:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    return response.json()


def _statuses(schema: dict, method: str, path: str) -> set[int]:
    return {int(s) for s in schema["paths"][path][method]["responses"]}


async def test_each_operation_lists_the_errors_it_can_answer(client: AsyncTestClient) -> None:
    schema = await _schema(client)
    # A keyed action on a job: credential, guard, the job in the path, Idempotency-Key, a state conflict, no body.
    assert _statuses(schema, "post", "/v1/jobs/{job_id}/dispatch") == {200, 400, 401, 403, 404, 409, 413, 422, 503}
    # A body, no object in the path.
    assert _statuses(schema, "post", "/v1/jobs") == {201, 400, 401, 403, 409, 413, 415, 422, 503}
    assert _statuses(schema, "put", "/v1/org/requirements") == {200, 400, 401, 403, 413, 415, 422, 503}
    assert _statuses(schema, "get", "/v1/me") == {200, 401, 403, 503}
    assert _statuses(schema, "get", "/v1/technicians") == {200, 400, 401, 403, 503}
    assert _statuses(schema, "delete", "/v1/me/devices/{token}") == {204, 400, 401, 403, 404, 503}
    # The customer's link: no credential, rate-limited.
    assert _statuses(schema, "get", "/v1/track/{tracking_token}") == {200, 400, 404, 429, 503}
    assert _statuses(schema, "get", "/healthz") == {200}


async def test_every_error_answer_has_the_error_body(client: AsyncTestClient) -> None:
    schema = await _schema(client)
    body = schema["components"]["schemas"]["ErrorBody"]
    assert set(body["required"]) == {"status_code", "detail"}
    assert set(body["properties"]) == {"status_code", "detail", "extra"}
    operations = 0
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if not path.startswith("/v1/"):
                continue
            operations += 1
            errors = {s: r for s, r in operation["responses"].items() if int(s) >= 400}
            assert set(errors) - {"400"}, (method, path, "lists only 400")
            for status, response in errors.items():
                assert response["description"], (method, path, status)
                (content,) = response["content"].values()
                if path.startswith("/t/"):  # the tracking page answers its errors in HTML
                    continue
                assert content["schema"] in (ERROR, {"$ref": "#/components/schemas/TrackingError"}), (
                    method,
                    path,
                    status,
                )
    assert operations >= 38


async def test_the_docs_ui_loads_nothing_from_another_site(client: AsyncTestClient) -> None:
    page = await client.get("/schema")
    assert page.status_code == 200
    assert "SwaggerUIBundle" in page.text
    references = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert len(references) >= 4, references
    for reference in references:
        assert reference.startswith("/schema/"), reference
        asset = await client.get(reference)
        assert asset.status_code == 200, reference
        assert len(asset.content) > 1000, reference
    assert "cdn" not in page.text.lower() and "https://" not in page.text.split("spec:")[0]
    # The raw document stays.
    assert (await client.get("/schema/openapi.json")).json()["openapi"].startswith("3.1")
