from __future__ import annotations

import uuid
from datetime import UTC, datetime

from litestar import Controller, Request, get, put
from litestar.params import FromPath, FromQuery, JSONBody

from backend.auth import org_only
from backend.compliance import engagement, services
from backend.compliance.schemas import (
    KINDS_DOC,
    AlertOut,
    CredentialOut,
    CredentialPut,
    Credentials,
    EngagementPolicyIn,
    EngagementPolicyOut,
    Requirements,
)
from backend.db.engine import DbSession
from backend.pagination import Cursor, Limit
from backend.schemas import Page


class CredentialController(Controller):
    path = "/v1/technicians/{technician_id:uuid}/credentials"
    tags = ["compliance"]
    guards = [org_only]

    @get("/", operation_id="listTechnicianCredentials", summary="The credentials this organisation recorded")
    async def list_credentials(
        self, request: Request, technician_id: FromPath[uuid.UUID], db_session: DbSession
    ) -> Credentials:
        return Credentials(
            items=await services.list_credentials(request.user.org_id, technician_id, session=db_session)
        )

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
        return await services.put_credential(
            request.user.org_id, technician_id, kind, data, now=datetime.now(UTC), session=db_session
        )


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
        return await services.put_requirements(request.user.org_id, data, session=db_session)

    @get(
        "/engagement-policy",
        operation_id="getEngagementPolicy",
        summary="The organisation's co-employment guardrails",
        description="Without a policy set: every limit null, `mode: warn` (nothing is checked).",
    )
    async def get_engagement_policy(self, request: Request, db_session: DbSession) -> EngagementPolicyOut:
        return await engagement.get_policy(request.user.org_id, session=db_session)

    @put(
        "/engagement-policy",
        operation_id="putEngagementPolicy",
        summary="Set the organisation's co-employment guardrails",
        description=(
            "Limits, each optional (null or omitted: not checked): `max_hours_per_week` (hours worked in the "
            "last 7 days, 0 < h ≤ 168), `max_consecutive_weeks` (1..520), `max_tenure_months` (1..600). They are "
            "checked whenever a job is offered or directly assigned, with the figures *including the new job*: "
            "its `estimated_hours` added to the last 7 days, its week ending the run of weeks, tenure counted up "
            "to its start (see `GET /v1/technicians/{id}/engagement` for the figures). A figure above its limit "
            "passes it; reaching it exactly does not. `block`: the technician is not offered the job (and a "
            "direct assignment is refused with 409), `explain` says `engagement_limit:<kind>` (kinds: "
            "`hours_per_week`, `consecutive_weeks`, `tenure`). `warn`: the candidate keeps its place with "
            '`warnings: ["engagement_limit:<kind>"]`. Either way an alert of that kind is raised when the offer '
            "is made or withheld — once per technician, limit and calendar week (UTC) — its `value` being the "
            "figure with the new job. No push goes to anyone's phone for it. Replaces the whole policy."
        ),
    )
    async def put_engagement_policy(
        self, request: Request, data: JSONBody[EngagementPolicyIn], db_session: DbSession
    ) -> EngagementPolicyOut:
        return await engagement.put_policy(request.user.org_id, data, now=datetime.now(UTC), session=db_session)


class EngagementController(Controller):
    path = "/v1/technicians/{technician_id:uuid}/engagement"
    tags = ["compliance"]
    guards = [org_only]

    @get(
        "/",
        operation_id="getTechnicianEngagement",
        summary="How much the technician works for this organisation",
        description=(
            "From the work done for this organisation (each completed job, check-in to completion): "
            "`hours_last_7d` (hours inside the last 7 days), `consecutive_weeks` (calendar weeks, Monday 00:00 "
            "UTC, in a row with work, ending this week — or last week while this week has none yet), "
            "`tenure_months` (whole months since the current engagement began; a gap of more than 30 days "
            "between two pieces of work ends an engagement, and tenure is 0 once the last work is more than "
            "30 days old), `jobs_completed`. 404 for a technician outside this pool."
        ),
    )
    async def get_engagement(
        self, request: Request, technician_id: FromPath[uuid.UUID], db_session: DbSession
    ) -> engagement.Engagement:
        return await services.engagement_of(
            request.user.org_id, technician_id, now=datetime.now(UTC), session=db_session
        )


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
            "`hours_per_week`, `consecutive_weeks` and `tenure`: an engagement limit passed when a job was "
            "offered (or withheld, in block mode), once per technician, limit and calendar week; `value` is the "
            "figure with that job, `limit` the policy's, `job_id` the job. "
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
        return await services.list_alerts(
            request.user.org_id, since=since, limit=limit, cursor=cursor, session=db_session
        )
