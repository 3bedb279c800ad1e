from __future__ import annotations

import uuid
from datetime import UTC, datetime

from litestar import Controller, Request, get, put
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, FromQuery, JSONBody

from backend.auth import org_only
from backend.compliance import services
from backend.compliance.schemas import (
    KINDS_DOC,
    AlertOut,
    CredentialOut,
    CredentialPut,
    Credentials,
    Requirements,
    is_credential_kind,
)
from backend.db.engine import DbSession
from backend.pagination import Cursor, Limit
from backend.schemas import Page

NOT_IN_POOL = "no such technician in this organisation's pool"


def _unprocessable(key: str, source: str, message: str) -> ValidationException:
    return ValidationException(
        f"{key}: {message}", status_code=422, extra=[{"key": key, "source": source, "message": message}]
    )


def _unknown_kind(key: str, source: str, kind: str) -> ValidationException:
    return _unprocessable(key, source, f"unknown credential kind {kind!r}; known kinds: {KINDS_DOC}")


class CredentialController(Controller):
    path = "/v1/technicians/{technician_id:uuid}/credentials"
    tags = ["compliance"]
    guards = [org_only]

    @get("/", operation_id="listTechnicianCredentials", summary="The credentials this organisation recorded")
    async def list_credentials(
        self, request: Request, technician_id: FromPath[uuid.UUID], db_session: DbSession
    ) -> Credentials:
        items = await services.list_credentials(request.user.org_id, technician_id, session=db_session)
        if items is None:
            raise NotFoundException(NOT_IN_POOL)
        return Credentials(items=items)

    @put(
        "/{kind:str}",
        operation_id="putTechnicianCredential",
        summary="Record a credential this organisation verified",
        description=(
            f"Kinds: {KINDS_DOC}. Replaces the record of that kind (omitted fields become null). Matching asks "
            "for `status: valid` and `expires_at` null or not before the job window's end. Another organisation "
            "never sees it. 422 for an unknown kind or `expires_at` before `issued_at`; 404 for a technician "
            "outside this pool."
        ),
    )
    async def put_credential(
        self,
        request: Request,
        technician_id: FromPath[uuid.UUID],
        kind: FromPath[str],
        data: JSONBody[CredentialPut],
        db_session: DbSession,
    ) -> CredentialOut:
        if not is_credential_kind(kind):
            raise _unknown_kind("kind", "path", kind)
        if data.issued_at is not None and data.expires_at is not None and data.expires_at < data.issued_at:
            raise _unprocessable("expires_at", "body", "must not be before issued_at")
        out = await services.put_credential(
            request.user.org_id, technician_id, kind, data, now=datetime.now(UTC), session=db_session
        )
        if out is None:
            raise NotFoundException(NOT_IN_POOL)
        return out


class OrgController(Controller):
    path = "/v1/org"
    tags = ["compliance"]
    guards = [org_only]

    @get("/requirements", operation_id="getOrgRequirements", summary="What a technician must hold to be offered work")
    async def get_requirements(self, request: Request, db_session: DbSession) -> Requirements:
        return await services.get_requirements(request.user.org_id, session=db_session)

    @put(
        "/requirements",
        operation_id="putOrgRequirements",
        summary="Set what a technician must hold to be offered work",
        description=(
            "`credentials`: kinds every technician must hold; `by_skill`: kinds required when a job needs that "
            "skill (skills are trimmed and lower-cased). A technician is offered a job only while holding each "
            "with `status: valid` and `expires_at` null or not before the window's end; `explain` names what is "
            "missing (`credential_missing:<kind>`, `credential_not_valid:<kind>`, `credential_expired:<kind>`). "
            f"Replaces the whole set. Kinds: {KINDS_DOC}; an unknown one is 422."
        ),
    )
    async def put_requirements(
        self, request: Request, data: JSONBody[Requirements], db_session: DbSession
    ) -> Requirements:
        try:
            return await services.put_requirements(request.user.org_id, data, session=db_session)
        except services.UnknownKind as exc:
            raise _unknown_kind(exc.key, "body", exc.kind) from None


class ComplianceController(Controller):
    path = "/v1/compliance"
    tags = ["compliance"]
    guards = [org_only]

    @get(
        "/alerts",
        operation_id="listComplianceAlerts",
        summary="Compliance alerts, oldest first",
        description=(
            "Kinds: `credential_expiring` (a valid credential expires within 30 days) and `credential_expired`, "
            "raised once each by a daily job; for them `value` is the credential's kind and `limit` its expiry. "
            "`since` (inclusive) filters by the time an alert was raised."
        ),
    )
    async def list_alerts(
        self,
        request: Request,
        db_session: DbSession,
        since: FromQuery[datetime | None] = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> Page[AlertOut]:
        if since is not None and since.tzinfo is None:
            raise ValidationException(
                "since: needs a time zone offset",
                extra=[{"key": "since", "source": "query", "message": "needs a time zone offset"}],
            )
        return await services.list_alerts(
            request.user.org_id, since=since, limit=limit, cursor=cursor, session=db_session
        )
