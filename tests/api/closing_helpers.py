"""Helpers for the closing-the-work tests: a client whose attachments go to a temporary directory, a job with tasks
assigned and worked through, and small files of each type."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from backend.app import create_app
from backend.settings import Settings, StorageSettings
from tests.api.jobs_helpers import SITE, post_job, technician

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 64
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + b"1 0 obj\n<<>>\nendobj\n" * 4

TASKS = [
    {"type": "checkbox", "label": "Power is off", "required": True},
    {"key": "photo", "type": "photo", "label": "Photo of the new board", "required": True},
    {"type": "text", "label": "Anything else?", "required": False},
]


@pytest.fixture
async def closing_client(settings: Settings, tmp_path: Path) -> AsyncIterator[AsyncTestClient]:
    settings = msgspec.structs.replace(settings, storage=StorageSettings(url=(tmp_path / "store").as_uri()))
    async with AsyncTestClient(create_app(settings)) as client:
        yield client


async def assigned(client: AsyncTestClient, org: dict, uid: str = "ana", **job) -> tuple[dict, str, dict]:
    """A job (auto=False) assigned directly to a fresh technician `uid`: (job, technician id, auth)."""
    technician_id, auth = await technician(client, org, uid, km=1, name=f"{uid.title()} Albrecht")
    posted = await post_job(client, org, auto=False, **job)
    response = await client.post(f"/v1/jobs/{posted['id']}/assign", json={"technician_id": technician_id}, headers=org)
    assert response.status_code == 200, response.text
    return posted, technician_id, auth


async def on_site(client: AsyncTestClient, auth: dict, job_id: str) -> None:
    response = await client.post(f"/v1/jobs/{job_id}/check-in", json={**SITE, "accuracy_m": 10}, headers=auth)
    assert response.status_code == 200, response.text


async def upload(client: AsyncTestClient, auth: dict, job_id: str, content: bytes = PNG, content_type="image/png"):
    return await client.post(
        f"/v1/jobs/{job_id}/attachments", content=content, headers={**auth, "Content-Type": content_type}
    )


async def complete(client: AsyncTestClient, auth: dict, job_id: str):
    return await client.post(f"/v1/jobs/{job_id}/complete", headers=auth)
