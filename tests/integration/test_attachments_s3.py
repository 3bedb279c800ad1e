"""Attachments kept in S3: the app's upload and download go through obstore to a real local S3-compatible server
(moto's server mode on 127.0.0.1), and the object lands in the bucket under the configured prefix."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator

import boto3
import msgspec
import pytest
from litestar.testing import AsyncTestClient
from moto.server import ThreadedMotoServer

from backend.app import create_app
from backend.settings import Settings, StorageSettings
from tests.api.closing_helpers import JPEG, assigned, on_site, upload
from tests.helpers import new_org

BUCKET = "truckroll-attachments"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
async def s3_client(settings: Settings, s3: str) -> AsyncIterator[AsyncTestClient]:
    settings = msgspec.structs.replace(settings, storage=StorageSettings(url=f"s3://{BUCKET}/jobs"))
    async with AsyncTestClient(create_app(settings)) as client:
        yield client


async def test_an_attachment_goes_to_the_bucket_and_comes_back(s3_client: AsyncTestClient, s3: str) -> None:
    org = await new_org(s3_client)
    job, _, auth = await assigned(s3_client, org)
    await on_site(s3_client, auth, job["id"])
    big = JPEG + b"\x00" * (6 * 1024 * 1024)  # above obstore's 5 MiB part size: a multipart upload
    response = await upload(s3_client, auth, job["id"], big, "image/jpeg")
    assert response.status_code == 201, response.text
    attachment = response.json()

    listed = boto3.client("s3", endpoint_url=s3, region_name="us-east-1").list_objects_v2(Bucket=BUCKET)
    keys = [o["Key"] for o in listed.get("Contents", [])]
    assert len(keys) == 1
    assert keys[0].startswith("jobs/") and keys[0].endswith(f"/{job['id']}/{attachment['id']}")

    read = await s3_client.get(f"/v1/jobs/{job['id']}/attachments/{attachment['id']}", headers=org)
    assert read.status_code == 200, read.text
    assert hashlib.sha256(read.content).hexdigest() == attachment["sha256"] == hashlib.sha256(big).hexdigest()
