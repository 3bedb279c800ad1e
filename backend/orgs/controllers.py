from __future__ import annotations

import uuid

from litestar import Controller, delete, post
from litestar.params import FromPath, JSONBody

from backend.auth import operator_only
from backend.db.engine import DbSession
from backend.orgs import services
from backend.orgs.schemas import ApiKeyCreated, OrgCreate, OrgCreated


class AdminOrgController(Controller):
    path = "/v1/admin/orgs"
    tags = ["operator"]
    guards = [operator_only]

    @post(
        "/",
        operation_id="createOrg",
        summary="Create an organisation",
        description="Returns the organisation's first API key. The key is shown once; only its hash is stored.",
    )
    async def create_org(self, data: JSONBody[OrgCreate], db_session: DbSession) -> OrgCreated:
        org, key_row, key = await services.create_org(data.name, data.settings, session=db_session)
        return OrgCreated(id=org.id, name=org.name, api_key=key, api_key_id=key_row.id)

    @post(
        "/{org_id:uuid}/api-keys",
        operation_id="issueOrgApiKey",
        summary="Issue another API key for an organisation (key rotation)",
    )
    async def issue_key(self, org_id: FromPath[uuid.UUID], db_session: DbSession) -> ApiKeyCreated:
        return await services.add_api_key(org_id, session=db_session)

    @delete(
        "/{org_id:uuid}/api-keys/{key_id:uuid}",
        operation_id="revokeOrgApiKey",
        summary="Revoke an organisation API key",
        description="Requests made with a revoked key are refused with 401 from then on.",
    )
    async def revoke_key(self, org_id: FromPath[uuid.UUID], key_id: FromPath[uuid.UUID], db_session: DbSession) -> None:
        await services.revoke_api_key(org_id, key_id, session=db_session)
