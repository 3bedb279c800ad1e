"""Who is calling: the platform operator, an organisation (API key) or a technician (Firebase ID token).

The middleware turns the bearer credential into a principal; guards on each controller say which kind
of principal a route serves. No credential or an invalid one is 401, a valid one of the wrong kind 403.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

import anyio.to_thread
import firebase_admin
from firebase_admin import auth as firebase_auth
from google.auth.credentials import AnonymousCredentials
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from sqlalchemy import select

from backend.db.models import ApiKey, Technician

API_KEY_PREFIX = "trk_"
PUBLIC_PATHS = ("/schema", "/healthz", "/t/", "/v1/track/")
"""Paths served without a credential (a route elsewhere may also opt out with `exclude_from_auth=True`)."""


@dataclass(frozen=True, slots=True)
class Operator:
    pass


@dataclass(frozen=True, slots=True)
class OrgCaller:
    org_id: uuid.UUID
    key_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class TechnicianCaller:
    firebase_uid: str
    technician_id: uuid.UUID | None
    """None for a Firebase account that no organisation has onboarded yet."""


Principal = Operator | OrgCaller | TechnicianCaller


def hash_api_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class IdTokenVerifier:
    """Verifies Firebase ID tokens with firebase-admin, remembering verified tokens until they expire.

    A phone reuses one ID token for up to an hour, so the cache spares the verification (and, outside
    the emulator, the thread hop around firebase-admin's blocking certificate fetch) on every ping.
    """

    _names = itertools.count()

    def __init__(self, project_id: str, *, cache_size: int = 10_000) -> None:
        # Verifying an ID token needs only Google's public certificates: no credential of ours. Without this
        # explicit anonymous one, firebase-admin looks for application-default credentials at the first
        # technician request and, finding none (or a file that is not a service account), fails every one.
        self._app = firebase_admin.initialize_app(
            AnonymousCredentials(), options={"projectId": project_id}, name=f"truckroll-auth-{next(self._names)}"
        )
        self._cache: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._cache_size = cache_size

    async def uid(self, token: str) -> str | None:
        now = time.time()
        hit = self._cache.get(token)
        if hit is not None and hit[1] > now:
            return hit[0]
        try:
            claims = await anyio.to_thread.run_sync(firebase_auth.verify_id_token, token, self._app)
        except (ValueError, firebase_auth.InvalidIdTokenError, firebase_auth.ExpiredIdTokenError):
            return None
        except firebase_auth.CertificateFetchError as exc:
            raise ServiceUnavailable("cannot fetch Firebase's token-signing certificates") from exc
        uid = claims["uid"]
        self._cache[token] = (uid, min(float(claims.get("exp", now + 300)), now + 3600))
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return uid

    def close(self) -> None:
        firebase_admin.delete_app(self._app)


class ServiceUnavailable(Exception):
    """A dependency the request needs is down; answered with 503."""


class AuthMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise NotAuthorizedException("missing credential: send 'Authorization: Bearer <token>'")
        state = connection.app.state
        principal = await _principal(credential, state)
        if principal is None:
            raise NotAuthorizedException("invalid or revoked credential")
        return AuthenticationResult(user=principal, auth=credential)


async def _principal(credential: str, state) -> Principal | None:
    if hmac.compare_digest(credential.encode(), state.settings.auth.admin_token.encode()):
        return Operator()
    if credential.startswith(API_KEY_PREFIX):
        async with state.sessionmaker() as session:
            row = (
                await session.execute(
                    select(ApiKey.id, ApiKey.org_id).where(
                        ApiKey.key_hash == hash_api_key(credential), ApiKey.revoked_at.is_(None)
                    )
                )
            ).first()
        return OrgCaller(org_id=row.org_id, key_id=row.id) if row else None
    if credential.count(".") != 2:
        return None
    uid = await state.id_tokens.uid(credential)
    if uid is None:
        return None
    return TechnicianCaller(firebase_uid=uid, technician_id=await _technician_id(uid, state))


async def _technician_id(uid: str, state) -> uuid.UUID | None:
    # A technician's id never changes for a uid, so a hit is cached for the life of the process;
    # a miss is not (the account may be onboarded a moment later).
    known: dict[str, uuid.UUID] = state.technician_ids
    if uid in known:
        return known[uid]
    async with state.sessionmaker() as session:
        technician_id = await session.scalar(select(Technician.id).where(Technician.firebase_uid == uid))
    if technician_id is not None:
        known[uid] = technician_id
    return technician_id


def needs_credential(path: str, handler: BaseRouteHandler) -> bool:
    """Whether the route at `path` is behind the auth middleware (as `create_app` installs it)."""
    return not (path.startswith(PUBLIC_PATHS) or handler.opt.get("exclude_from_auth"))


def _options(connection: ASGIConnection) -> bool:
    """An OPTIONS request, which Litestar answers itself (`Allow`, or the CORS preflight). The auth middleware
    leaves OPTIONS unauthenticated by design (its `exclude_http_methods`), yet Litestar runs the route's guards on
    it (litestar#2314): a guard must let it through, since there is no user to look at (that was a 500)."""
    return connection.scope.get("method") == "OPTIONS"


def _require(kind: type, what: str):
    # Guards are coroutines: Litestar runs a plain function guard in a worker thread, a hop that cost a
    # quarter of the CPU of a location ping.
    async def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
        if not _options(connection) and not isinstance(connection.user, kind):
            raise PermissionDeniedException(f"this route is for {what}")

    return guard


operator_only = _require(Operator, "the platform operator (TRUCKROLL_ADMIN_TOKEN)")
org_only = _require(OrgCaller, "organisations (an organisation API key)")


_technician_caller = _require(TechnicianCaller, "technicians (a Firebase ID token)")


async def technician_only(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    if _options(connection):
        return
    await _technician_caller(connection, handler)
    if connection.user.technician_id is None:
        raise PermissionDeniedException("this Firebase account has not been onboarded into any pool")


async def org_or_technician(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """For the few routes both sides of a job use (ratings); the handler tells them apart by the caller's kind."""
    if _options(connection) or isinstance(connection.user, OrgCaller):
        return
    if not isinstance(connection.user, TechnicianCaller):
        raise PermissionDeniedException("this route is for organisations (an API key) and technicians (an ID token)")
    await technician_only(connection, handler)


def emulator_id_token(uid: str, project_id: str, *, lifetime_s: int = 3600) -> str:
    """An unsigned ID token in the Firebase Auth emulator's format, for development and tests only:
    firebase-admin accepts it only while FIREBASE_AUTH_EMULATOR_HOST is set."""

    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {
        "iss": f"https://securetoken.google.com/{project_id}",
        "aud": project_id,
        "sub": uid,
        "user_id": uid,
        "iat": now,
        "auth_time": now,
        "exp": now + lifetime_s,
        "firebase": {"sign_in_provider": "custom", "identities": {}},
    }
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."
