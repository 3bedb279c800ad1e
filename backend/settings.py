"""Settings read from the environment, validated once at start.

Every problem is reported with the name of the variable at fault, so that a bad deployment fails loudly
before it serves anything. Each default is declared once, on its struct: a variable left unset leaves the
field out, and the struct fills it in.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import msgspec

from matching import EtaModel, MatchSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
DEV_ADMIN_TOKEN = "dev-admin-token"

Env = Literal["development", "test", "production"]
PushMode = Literal["log", "fcm"]
WorkerMode = Literal["inprocess", "external"]
RouterKind = Literal["greatcircle", "osrm"]
LogFormat = Literal["json", "text"]


class SettingsError(ValueError):
    """A TRUCKROLL_* (or related) variable has an invalid value."""


class DatabaseSettings(msgspec.Struct, frozen=True):
    url: str | None
    """External PostGIS; None means the embedded cluster under .truckroll/."""
    pool_size: int = 10
    embedded_root: str = str(REPO_ROOT / ".truckroll" / "postgres")
    timeout_s: float = 1.0
    """How long one wait on the database (a connect, a statement, a commit) lasts before it gives up and the
    request is answered 503 (API.md: within 2 s): a frozen server must not hang requests."""


class ServerSettings(msgspec.Struct, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 1024 * 1024
    log_format: LogFormat = "text"
    """The development default; production's is json (one JSON object a line)."""
    cors_origins: tuple[str, ...] = ()
    """The origins whose pages may call the API from a browser (CORS); none: no CORS headers at all."""


class AuthSettings(msgspec.Struct, frozen=True):
    admin_token: str = DEV_ADMIN_TOKEN
    firebase_project_id: str = "truckroll-dev"


class PushSettings(msgspec.Struct, frozen=True):
    mode: PushMode = "log"
    """The development default; production pushes through FCM unless TRUCKROLL_PUSH says otherwise."""
    fcm_endpoint: str | None = None
    credentials_file: str | None = None


class WorkerSettings(msgspec.Struct, frozen=True):
    mode: WorkerMode = "inprocess"
    """inprocess: the server also runs the job queue's worker; external: `truckroll worker` does.
    The development default; production's is external."""


class WebhookSettings(msgspec.Struct, frozen=True):
    allow_private: bool = True
    """Webhooks may go to http:// and to loopback, private and link-local addresses (local receivers). The
    development and test default; production's is off (backend.webhooks.addresses)."""


class TrackingSettings(msgspec.Struct, frozen=True):
    """Arrival estimates and tracking: the ETA model and router, the customer's link, how long raw pings are kept."""

    router: RouterKind = "greatcircle"
    osrm_url: str | None = None
    """Base URL of an OSRM server (…/route/v1/driving/… is appended); required with router=osrm."""
    osrm_timeout_s: float = 2.0
    eta: EtaModel = EtaModel()
    """The great-circle ETA: the tracking link's (and OSRM's fallback), and the one candidates are ranked by."""
    rate_limit_per_minute: int = 60
    """Requests a minute per client IP on the tracking routes (the customer's link)."""
    ping_retention_days: int = 30
    """Raw ping history older than this is purged (the latest position on the technician row stays)."""


class StorageSettings(msgspec.Struct, frozen=True):
    """Where attachments' bytes are kept: an object store (obstore) named by a URL."""

    url: str = (REPO_ROOT / ".truckroll" / "attachments").as_uri()
    """`file:///dir` (local disk; the development default is under .truckroll/) or `s3://bucket/prefix`, whose
    credentials, region and endpoint come from the standard AWS_* variables (AWS_ENDPOINT_URL for an
    S3-compatible service, AWS_ALLOW_HTTP=true for a plain-HTTP one)."""


class Settings(msgspec.Struct, frozen=True):
    env: Env
    database: DatabaseSettings
    server: ServerSettings
    auth: AuthSettings
    push: PushSettings
    worker: WorkerSettings = WorkerSettings()
    tracking: TrackingSettings = TrackingSettings()
    storage: StorageSettings = StorageSettings()
    webhooks: WebhookSettings = WebhookSettings()

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def matching(self) -> MatchSettings:
        """How candidates are ranked: with the ETA model the tracking link uses (one model, one setting)."""
        return MatchSettings(eta=self.tracking.eta)


def _given(**values: Any) -> dict[str, Any]:
    """The fields whose variables are set; a struct fills in the others with the defaults it declares."""
    return {name: value for name, value in values.items() if value is not None}


def _number(environ: Mapping[str, str], name: str, lo, hi, kind: type = int):
    """The variable's value, checked against [lo, hi]; None when it is unset or empty."""
    raw = environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = kind(raw)
    except ValueError:
        expected = "an integer" if kind is int else "a number"
        raise SettingsError(f"{name}: expected {expected}, got {raw!r}") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name}: must be between {lo:g} and {hi:g}, got {value:g}")
    return value


def _int(environ: Mapping[str, str], name: str, lo: int, hi: int) -> int | None:
    return _number(environ, name, lo, hi, int)


def _float(environ: Mapping[str, str], name: str, lo: float, hi: float) -> float | None:
    return _number(environ, name, lo, hi, float)


def _choice(environ: Mapping[str, str], name: str, kind: Any) -> str | None:
    """The variable's value, one of the Literal `kind`'s; None when it is unset or empty."""
    value = environ.get(name) or None
    choices = get_args(kind)
    if value is not None and value not in choices:
        raise SettingsError(f"{name}: must be one of {', '.join(choices)}, got {value!r}")
    return value


def _flag(environ: Mapping[str, str], name: str) -> bool | None:
    """A yes/no variable (1/0, true/false, yes/no, on/off); None when it is unset or empty."""
    raw = (environ.get(name) or "").strip().lower()
    if not raw:
        return None
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}: expected 1/0, true/false, yes/no or on/off, got {raw!r}")


def _origins(environ: Mapping[str, str], name: str) -> tuple[str, ...] | None:
    """A comma-separated list of origins (`scheme://host[:port]`, or `*` for any); None when unset or empty."""
    origins = tuple(o.strip() for o in (environ.get(name) or "").split(",") if o.strip())
    for origin in origins:
        if origin != "*" and not re.fullmatch(r"https?://[^/\s?#]+", origin):
            raise SettingsError(f"{name}: expected origins such as https://console.example.com, got {origin!r}")
    return origins or None


def sqlalchemy_url(url: str) -> str:
    """Accept the usual postgres:// and postgresql:// spellings; always drive psycopg 3."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise SettingsError(f"DATABASE_URL: expected a postgresql:// URL, got {url.split('://')[0]!r}://…")


def libpq_url(url: str) -> str:
    """The same database for libpq (psycopg, procrastinate): a `sqlalchemy_url` without the driver's name."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _check_service_account(path: str) -> None:
    """FCM sends with a service account's key: refuse at start a file that is not one (not at the first push)."""
    name = "GOOGLE_APPLICATION_CREDENTIALS"
    try:
        info = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SettingsError(f"{name}: no such file {path!r}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SettingsError(f"{name}: {path!r} is not a readable JSON key file ({exc})") from None
    missing = [
        f for f in ("project_id", "private_key", "client_email") if not isinstance(info, dict) or not info.get(f)
    ]
    if not isinstance(info, dict) or info.get("type") != "service_account" or missing:
        kind = info.get("type") if isinstance(info, dict) else type(info).__name__
        raise SettingsError(
            f"{name}: {path!r} is not a service account key (type {kind!r}"
            + (f", missing {', '.join(missing)}" if missing else "")
            + "); download one from the Firebase console, Project settings → Service accounts"
        )


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    env = _choice(environ, "TRUCKROLL_ENV", Env) or "development"
    production = env == "production"

    raw_url = environ.get("DATABASE_URL") or None
    if raw_url is None and production:
        raise SettingsError(
            "DATABASE_URL: required when TRUCKROLL_ENV=production (the embedded cluster is for development)"
        )
    database = DatabaseSettings(
        url=sqlalchemy_url(raw_url) if raw_url else None,
        **_given(
            pool_size=_int(environ, "TRUCKROLL_DB_POOL_SIZE", 1, 200),
            timeout_s=_float(environ, "TRUCKROLL_DB_TIMEOUT_S", 0.1, 60),
        ),
    )

    server = ServerSettings(
        **_given(
            host=environ.get("TRUCKROLL_HOST") or None,
            port=_int(environ, "TRUCKROLL_PORT", 1, 65535),
            max_body_bytes=_int(environ, "TRUCKROLL_MAX_BODY_BYTES", 1024, 64 * 1024 * 1024),
            log_format=_choice(environ, "TRUCKROLL_LOG_FORMAT", LogFormat) or ("json" if production else None),
            cors_origins=_origins(environ, "TRUCKROLL_CORS_ORIGINS"),
        )
    )

    admin_token = environ.get("TRUCKROLL_ADMIN_TOKEN") or ""
    if production and len(admin_token) < 32:
        raise SettingsError("TRUCKROLL_ADMIN_TOKEN: required in production, at least 32 characters")
    emulator = environ.get("FIREBASE_AUTH_EMULATOR_HOST") or None
    if production and emulator:
        raise SettingsError(
            "FIREBASE_AUTH_EMULATOR_HOST: must not be set when TRUCKROLL_ENV=production "
            "(the emulator convention accepts unsigned ID tokens)"
        )
    project_id = environ.get("TRUCKROLL_FIREBASE_PROJECT_ID") or ""
    if production and not project_id:
        raise SettingsError("TRUCKROLL_FIREBASE_PROJECT_ID: required in production")
    auth = AuthSettings(**_given(admin_token=admin_token or None, firebase_project_id=project_id or None))

    push_mode = _choice(environ, "TRUCKROLL_PUSH", PushMode) or ("fcm" if production else None)
    endpoint = environ.get("TRUCKROLL_FCM_ENDPOINT") or None
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise SettingsError(f"TRUCKROLL_FCM_ENDPOINT: expected an http(s) URL, got {endpoint!r}")
    credentials_file = environ.get("GOOGLE_APPLICATION_CREDENTIALS") or None
    if credentials_file:
        _check_service_account(credentials_file)
    if push_mode == "fcm" and production and not credentials_file:
        raise SettingsError("GOOGLE_APPLICATION_CREDENTIALS: required with TRUCKROLL_PUSH=fcm in production")
    push = PushSettings(**_given(mode=push_mode, fcm_endpoint=endpoint, credentials_file=credentials_file))

    worker = WorkerSettings(
        **_given(mode=_choice(environ, "TRUCKROLL_WORKER", WorkerMode) or ("external" if production else None))
    )
    allow_private = _flag(environ, "TRUCKROLL_WEBHOOK_ALLOW_PRIVATE")
    webhooks = WebhookSettings(**_given(allow_private=False if allow_private is None and production else allow_private))
    router = _choice(environ, "TRUCKROLL_ROUTER", RouterKind)
    osrm_url = (environ.get("TRUCKROLL_OSRM_URL") or "").rstrip("/") or None
    if osrm_url and not osrm_url.startswith(("http://", "https://")):
        raise SettingsError(f"TRUCKROLL_OSRM_URL: expected an http(s) URL, got {osrm_url!r}")
    if router == "osrm" and not osrm_url:
        raise SettingsError("TRUCKROLL_OSRM_URL: required with TRUCKROLL_ROUTER=osrm")
    tracking = TrackingSettings(
        **_given(
            router=router,
            osrm_url=osrm_url,
            osrm_timeout_s=_float(environ, "TRUCKROLL_OSRM_TIMEOUT_S", 0.1, 30),
            eta=EtaModel(
                **_given(
                    detour_factor=_float(environ, "TRUCKROLL_ETA_DETOUR_FACTOR", 1.0, 5.0),
                    city_speed_kmh=_float(environ, "TRUCKROLL_ETA_CITY_SPEED_KMH", 1.0, 200.0),
                )
            ),
            rate_limit_per_minute=_int(environ, "TRUCKROLL_TRACKING_RATE_LIMIT", 1, 100_000),
            ping_retention_days=_int(environ, "TRUCKROLL_PING_RETENTION_DAYS", 1, 3650),
        )
    )
    storage_url = environ.get("TRUCKROLL_STORAGE_URL") or None
    if storage_url and not re.fullmatch(r"(file:///|s3://[^/\s]+)\S*", storage_url):
        raise SettingsError(f"TRUCKROLL_STORAGE_URL: expected file:///dir or s3://bucket/prefix, got {storage_url!r}")
    return Settings(
        storage=StorageSettings(**_given(url=storage_url)),
        tracking=tracking,
        worker=worker,
        env=env,  # type: ignore[arg-type]
        database=database,
        server=server,
        auth=auth,
        push=push,
        webhooks=webhooks,
    )
