from __future__ import annotations

import json

import pytest

from backend.settings import DEV_ADMIN_TOKEN, SettingsError, load_settings

PRODUCTION = {
    "TRUCKROLL_ENV": "production",
    "DATABASE_URL": "postgresql://truckroll@db.internal/truckroll",
    "TRUCKROLL_ADMIN_TOKEN": "x" * 40,
    "TRUCKROLL_FIREBASE_PROJECT_ID": "acme-prod",
    "TRUCKROLL_PUSH": "log",
}


def test_development_defaults() -> None:
    settings = load_settings({})
    assert settings.env == "development"
    assert settings.database.url is None  # the embedded cluster
    assert settings.database.pool_size == 10
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8000)
    assert settings.server.max_body_bytes == 1024 * 1024
    assert (settings.auth.admin_token, settings.auth.firebase_project_id) == (DEV_ADMIN_TOKEN, "truckroll-dev")
    assert settings.push.mode == "log"
    assert settings.worker.mode == "inprocess"
    assert (settings.tracking.router, settings.tracking.osrm_url, settings.tracking.osrm_timeout_s) == (
        "greatcircle",
        None,
        2.0,
    )


def test_an_empty_variable_counts_as_unset() -> None:
    names = ["TRUCKROLL_ENV", "TRUCKROLL_PORT", "TRUCKROLL_HOST", "TRUCKROLL_PUSH", "TRUCKROLL_ETA_DETOUR_FACTOR"]
    assert load_settings(dict.fromkeys(names, "")) == load_settings({})


SERVICE_ACCOUNT = {
    "type": "service_account",
    "project_id": "acme-prod",
    "private_key": "-----BEGIN PRIVATE KEY-----\n…\n-----END PRIVATE KEY-----\n",
    "client_email": "push@acme-prod.iam.gserviceaccount.com",
}


def key_file(tmp_path, content) -> str:
    path = tmp_path / "key.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_production_defaults_push_through_fcm_and_run_the_worker_apart(tmp_path) -> None:
    key = key_file(tmp_path, SERVICE_ACCOUNT)
    settings = load_settings({**PRODUCTION, "TRUCKROLL_PUSH": "", "GOOGLE_APPLICATION_CREDENTIALS": key})
    assert (settings.push.mode, settings.worker.mode) == ("fcm", "external")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ({"type": "authorized_user", "client_id": "x", "refresh_token": "y"}, "not a service account key"),
        ({**SERVICE_ACCOUNT, "private_key": ""}, "missing private_key"),
        ("[1, 2]", "not a service account key"),
        ("not json at all", "not a readable JSON key file"),
    ],
    ids=["user credentials", "no private key", "a JSON list", "not JSON"],
)
def test_production_refuses_to_start_with_a_key_file_that_is_not_a_service_account(tmp_path, content, says) -> None:
    environ = {**PRODUCTION, "TRUCKROLL_PUSH": "fcm", "GOOGLE_APPLICATION_CREDENTIALS": key_file(tmp_path, content)}
    with pytest.raises(SettingsError, match=f"GOOGLE_APPLICATION_CREDENTIALS: .*{says}"):
        load_settings(environ)


@pytest.mark.parametrize(
    ("variable", "value", "read"),
    [
        ("TRUCKROLL_DB_POOL_SIZE", "25", lambda s: s.database.pool_size == 25),
        ("TRUCKROLL_HOST", "0.0.0.0", lambda s: s.server.host == "0.0.0.0"),
        ("TRUCKROLL_PORT", "9000", lambda s: s.server.port == 9000),
        ("TRUCKROLL_MAX_BODY_BYTES", "2048", lambda s: s.server.max_body_bytes == 2048),
        ("TRUCKROLL_ADMIN_TOKEN", "operator", lambda s: s.auth.admin_token == "operator"),
        ("TRUCKROLL_FIREBASE_PROJECT_ID", "acme", lambda s: s.auth.firebase_project_id == "acme"),
        ("TRUCKROLL_PUSH", "fcm", lambda s: s.push.mode == "fcm"),
        ("TRUCKROLL_WORKER", "external", lambda s: s.worker.mode == "external"),
        ("TRUCKROLL_OSRM_TIMEOUT_S", "0.5", lambda s: s.tracking.osrm_timeout_s == 0.5),
        ("TRUCKROLL_ETA_DETOUR_FACTOR", "1.6", lambda s: s.tracking.eta.detour_factor == 1.6),
        ("TRUCKROLL_ETA_CITY_SPEED_KMH", "45", lambda s: s.tracking.eta.city_speed_kmh == 45.0),
        ("TRUCKROLL_TRACKING_RATE_LIMIT", "120", lambda s: s.tracking.rate_limit_per_minute == 120),
        ("TRUCKROLL_PING_RETENTION_DAYS", "7", lambda s: s.tracking.ping_retention_days == 7),
    ],
)
def test_each_variable_sets_its_setting(variable: str, value: str, read) -> None:
    assert not read(load_settings({}))
    assert read(load_settings({variable: value}))


def test_database_url_spellings_all_drive_psycopg() -> None:
    for url in ("postgres://u@h/db", "postgresql://u@h/db", "postgresql+psycopg://u@h/db"):
        assert load_settings({"DATABASE_URL": url}).database.url == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099"}, "FIREBASE_AUTH_EMULATOR_HOST"),
        ({"TRUCKROLL_ADMIN_TOKEN": "short"}, "TRUCKROLL_ADMIN_TOKEN"),
        ({"DATABASE_URL": ""}, "DATABASE_URL"),
        ({"TRUCKROLL_FIREBASE_PROJECT_ID": ""}, "TRUCKROLL_FIREBASE_PROJECT_ID"),
    ],
)
def test_production_refuses_unsafe_settings(overrides: dict, variable: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings({**PRODUCTION, **overrides})


def test_production_accepts_a_complete_configuration() -> None:
    assert load_settings(PRODUCTION).is_production


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"TRUCKROLL_PORT": "eighty"}, "TRUCKROLL_PORT"),
        ({"TRUCKROLL_PORT": "70000"}, "TRUCKROLL_PORT"),
        ({"TRUCKROLL_DB_POOL_SIZE": "0"}, "TRUCKROLL_DB_POOL_SIZE"),
        ({"TRUCKROLL_MAX_BODY_BYTES": "100"}, "TRUCKROLL_MAX_BODY_BYTES"),
        ({"TRUCKROLL_WORKER": "cron"}, "TRUCKROLL_WORKER"),
        ({"TRUCKROLL_OSRM_TIMEOUT_S": "60"}, "TRUCKROLL_OSRM_TIMEOUT_S"),
        ({"TRUCKROLL_ENV": "staging"}, "TRUCKROLL_ENV"),
        ({"TRUCKROLL_PUSH": "carrier-pigeon"}, "TRUCKROLL_PUSH"),
        ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL"),
        ({"TRUCKROLL_FCM_ENDPOINT": "ftp://fake"}, "TRUCKROLL_FCM_ENDPOINT"),
        ({"GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/sa.json"}, "GOOGLE_APPLICATION_CREDENTIALS"),
    ],
)
def test_a_bad_variable_is_named(environ: dict, variable: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings(environ)
