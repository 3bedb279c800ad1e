"""Settings read from the environment, validated once at start.

Every problem is reported with the name of the variable at fault, so that a bad deployment fails loudly
before it serves anything.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import msgspec

REPO_ROOT = Path(__file__).resolve().parent.parent
DEV_ADMIN_TOKEN = "dev-admin-token"


class SettingsError(ValueError):
    """A TRUCKROLL_* (or related) variable has an invalid value."""


class DatabaseSettings(msgspec.Struct, frozen=True):
    url: str | None
    """External PostGIS; None means the embedded cluster under .truckroll/."""
    pool_size: int = 10
    embedded_root: str = str(REPO_ROOT / ".truckroll" / "postgres")


class ServerSettings(msgspec.Struct, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 1024 * 1024


class AuthSettings(msgspec.Struct, frozen=True):
    admin_token: str
    firebase_project_id: str


class PushSettings(msgspec.Struct, frozen=True):
    mode: Literal["log", "fcm"] = "log"
    fcm_endpoint: str | None = None
    credentials_file: str | None = None


class WorkerSettings(msgspec.Struct, frozen=True):
    mode: Literal["inprocess", "external"] = "inprocess"
    """inprocess: the server also runs the job queue's worker; external: `truckroll worker` does."""


class TrackingSettings(msgspec.Struct, frozen=True):
    """Arrival tracking: the ETA's router, the customer's link, and how long raw pings are kept."""

    router: Literal["greatcircle", "osrm"] = "greatcircle"
    osrm_url: str | None = None
    """Base URL of an OSRM server (…/route/v1/driving/… is appended); required with router=osrm."""
    osrm_timeout_s: float = 2.0
    detour_factor: float = 1.3
    """Roads are longer than the great circle: the straight-line distance is multiplied by this."""
    city_speed_kmh: float = 30.0
    """The speed assumed when the technician is not moving (or their speed is unknown)."""
    moving_speed_mps: float = 1.0
    """At or above this recent speed the technician counts as moving and their own speed is used."""
    rate_limit_per_minute: int = 60
    """Requests a minute per client IP on the tracking routes (the customer's link)."""
    ping_retention_days: int = 30
    """Raw ping history older than this is purged (the latest position on the technician row stays)."""


class Settings(msgspec.Struct, frozen=True):
    env: Literal["development", "test", "production"]
    database: DatabaseSettings
    server: ServerSettings
    auth: AuthSettings
    push: PushSettings
    worker: WorkerSettings = WorkerSettings()
    tracking: TrackingSettings = TrackingSettings()

    @property
    def is_production(self) -> bool:
        return self.env == "production"


def _number(environ: Mapping[str, str], name: str, default, lo, hi, kind: type = int):
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        expected = "an integer" if kind is int else "a number"
        raise SettingsError(f"{name}: expected {expected}, got {raw!r}") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name}: must be between {lo:g} and {hi:g}, got {value:g}")
    return value


def _int(environ: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    return _number(environ, name, default, lo, hi, int)


def _float(environ: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    return _number(environ, name, default, lo, hi, float)


def _choice(environ: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = environ.get(name) or default
    if value not in choices:
        raise SettingsError(f"{name}: must be one of {', '.join(choices)}, got {value!r}")
    return value


def sqlalchemy_url(url: str) -> str:
    """Accept the usual postgres:// and postgresql:// spellings; always drive psycopg 3."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise SettingsError(f"DATABASE_URL: expected a postgresql:// URL, got {url.split('://')[0]!r}://…")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    env = _choice(environ, "TRUCKROLL_ENV", "development", ("development", "test", "production"))
    production = env == "production"

    raw_url = environ.get("DATABASE_URL") or None
    if raw_url is None and production:
        raise SettingsError(
            "DATABASE_URL: required when TRUCKROLL_ENV=production (the embedded cluster is for development)"
        )
    database = DatabaseSettings(
        url=sqlalchemy_url(raw_url) if raw_url else None,
        pool_size=_int(environ, "TRUCKROLL_DB_POOL_SIZE", 10, 1, 200),
    )

    server = ServerSettings(
        host=environ.get("TRUCKROLL_HOST") or "127.0.0.1",
        port=_int(environ, "TRUCKROLL_PORT", 8000, 1, 65535),
        max_body_bytes=_int(environ, "TRUCKROLL_MAX_BODY_BYTES", 1024 * 1024, 1024, 64 * 1024 * 1024),
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
    auth = AuthSettings(
        admin_token=admin_token or DEV_ADMIN_TOKEN,
        firebase_project_id=project_id or "truckroll-dev",
    )

    push_mode = _choice(environ, "TRUCKROLL_PUSH", "fcm" if production else "log", ("log", "fcm"))
    endpoint = environ.get("TRUCKROLL_FCM_ENDPOINT") or None
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise SettingsError(f"TRUCKROLL_FCM_ENDPOINT: expected an http(s) URL, got {endpoint!r}")
    credentials_file = environ.get("GOOGLE_APPLICATION_CREDENTIALS") or None
    if credentials_file and not Path(credentials_file).is_file():
        raise SettingsError(f"GOOGLE_APPLICATION_CREDENTIALS: no such file {credentials_file!r}")
    if push_mode == "fcm" and production and not credentials_file:
        raise SettingsError("GOOGLE_APPLICATION_CREDENTIALS: required with TRUCKROLL_PUSH=fcm in production")
    push = PushSettings(mode=push_mode, fcm_endpoint=endpoint, credentials_file=credentials_file)  # type: ignore[arg-type]

    worker = WorkerSettings(
        mode=_choice(environ, "TRUCKROLL_WORKER", "external" if production else "inprocess", ("inprocess", "external"))  # type: ignore[arg-type]
    )
    router = _choice(environ, "TRUCKROLL_ROUTER", "greatcircle", ("greatcircle", "osrm"))
    osrm_url = (environ.get("TRUCKROLL_OSRM_URL") or "").rstrip("/") or None
    if osrm_url and not osrm_url.startswith(("http://", "https://")):
        raise SettingsError(f"TRUCKROLL_OSRM_URL: expected an http(s) URL, got {osrm_url!r}")
    if router == "osrm" and not osrm_url:
        raise SettingsError("TRUCKROLL_OSRM_URL: required with TRUCKROLL_ROUTER=osrm")
    tracking = TrackingSettings(
        router=router,  # type: ignore[arg-type]
        osrm_url=osrm_url,
        osrm_timeout_s=_float(environ, "TRUCKROLL_OSRM_TIMEOUT_S", 2.0, 0.1, 30),
        detour_factor=_float(environ, "TRUCKROLL_ETA_DETOUR_FACTOR", 1.3, 1.0, 5.0),
        city_speed_kmh=_float(environ, "TRUCKROLL_ETA_CITY_SPEED_KMH", 30.0, 1.0, 200.0),
        rate_limit_per_minute=_int(environ, "TRUCKROLL_TRACKING_RATE_LIMIT", 60, 1, 100_000),
        ping_retention_days=_int(environ, "TRUCKROLL_PING_RETENTION_DAYS", 30, 1, 3650),
    )
    return Settings(
        tracking=tracking,
        worker=worker,
        env=env,  # type: ignore[arg-type]
        database=database,
        server=server,
        auth=auth,
        push=push,
    )
