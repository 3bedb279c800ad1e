"""Where attachments' bytes live: an object store (obstore), local disk or S3-compatible, chosen by one setting
(`TRUCKROLL_STORAGE_URL`). Objects are named `<org>/<job>/<attachment id>`: never public, and served only through
the API to the job's organisation and its assigned technician.

An upload is read from the request as it streams in: into a spooled temporary file (1 MiB in memory, the rest on
disk) while it is hashed and measured, its type sniffed from its first bytes (`filetype`), and only then put in
the store, so that a refused upload (too large, of another type) never reaches it.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NamedTuple

import filetype
import obstore
from litestar import Litestar
from obstore.store import LocalStore, ObjectStore, from_url

from backend.errors import UnsupportedMediaType
from backend.settings import StorageSettings

CONTENT_TYPES = ("image/jpeg", "image/png", "application/pdf")
MAX_BYTES = 10 * 1024 * 1024
SNIFF_BYTES = 262
"""What `filetype` reads to tell a type."""
IN_MEMORY = 1024 * 1024


def make_store(settings: StorageSettings) -> ObjectStore:
    if settings.url.startswith("file://"):
        path = Path(settings.url.removeprefix("file://"))
        path.mkdir(parents=True, exist_ok=True)
        return LocalStore(prefix=path)
    return from_url(settings.url)


@asynccontextmanager
async def attachment_store(app: Litestar) -> AsyncIterator[None]:
    """The app's lifespan part that opens the store (`app.state.attachment_store`)."""
    app.state.attachment_store = make_store(app.state.settings.storage)
    yield


def key(org_id, job_id, attachment_id) -> str:
    return f"{org_id}/{job_id}/{attachment_id}"


class Upload(NamedTuple):
    file: tempfile.SpooledTemporaryFile
    content_type: str
    size: int
    sha256: str


async def receive(chunks: AsyncIterable[bytes], declared: str) -> Upload:
    """Read an upload as it streams in. 415 unless `declared` is one of CONTENT_TYPES and the bytes are of that
    type. The size limit is the route's (Litestar answers 413 as soon as the body passes it)."""
    if declared not in CONTENT_TYPES:
        raise UnsupportedMediaType(f"Content-Type: expected one of {', '.join(CONTENT_TYPES)}, got {declared!r}")
    digest = hashlib.sha256()
    size = 0
    head = b""
    spool = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY)
    try:
        async for chunk in chunks:
            if not chunk:
                continue
            if len(head) < SNIFF_BYTES:
                head += chunk[: SNIFF_BYTES - len(head)]
            digest.update(chunk)
            size += len(chunk)
            spool.write(chunk)
        kind = filetype.guess_mime(head) if head else None
        if kind != declared:
            found = f"the bytes are {kind}" if kind else "the bytes are of no type this route takes"
            raise UnsupportedMediaType(f"Content-Type: {declared} was declared, but {found}")
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return Upload(spool, declared, size, digest.hexdigest())


async def put(store: ObjectStore, path: str, upload: Upload) -> None:
    with upload.file:
        await obstore.put_async(store, path, upload.file)


async def stream(store: ObjectStore, path: str) -> AsyncIterator[bytes]:
    result = await obstore.get_async(store, path)
    async for chunk in result.stream(min_chunk_size=256 * 1024):
        yield bytes(chunk)
