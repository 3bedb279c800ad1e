from __future__ import annotations

import pytest

from backend.settings import SettingsError, load_settings

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
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8000)
    assert settings.push.mode == "log"


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
