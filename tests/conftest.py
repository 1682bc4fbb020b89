"""Shared fixtures: an app per test on SQLite and (when reachable) PostgreSQL, flaskr style."""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import create_engine
from sqlalchemy import text

from siwa_web import create_app
from siwa_web.infra.extensions import db
from support.config import DB_BACKENDS
from support.config import ISSUER
from support.config import KEY_ID
from support.config import PG_SERVER_URL
from support.config import SERVICES_ID
from support.config import TEAM_ID
from support.config import count_rows
from support.config import empty_postgres

pytest_plugins = ["support.apple", "support.browsers", "support.emulator", "support.faults",
                  "support.limits", "support.servers", "support.tokens", "support.web",
                  "support.teams"]

@pytest.fixture(scope="session")
def apple_private_key_pem() -> str:
    """The team's .p8 key for the whole run (the emulator or fake Apple trusts its public half)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A migrated SQLite file, copied for each test (migrating every time is slow)."""
    path = tmp_path_factory.mktemp("db") / "template.sqlite"
    _migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_database() -> str:
    """A fresh, migrated PostgreSQL database for this run, dropped at the end."""
    if os.environ.get("SIWA_TEST_DATABASE_URL"):
        url = PG_SERVER_URL
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
        _migrate(url)
        yield url
        return
    name = f"siwa_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_SERVER_URL.rsplit("/", 1)[0] + "/" + name
    _migrate(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _migrate(url: str) -> None:
    from flask_migrate import upgrade

    app = create_app({"TESTING": True, "SECRET_KEY": "migrate", "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade()
        db.engine.dispose()


@pytest.fixture(params=DB_BACKENDS)
def database_url(request, tmp_path) -> str:
    """The database of one test: a copy of the SQLite template, or the PostgreSQL test database."""
    if request.param == "sqlite":
        path = tmp_path / "siwa.sqlite"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    url = request.getfixturevalue("postgres_database")
    yield url
    empty_postgres(url)


@pytest.fixture
def app_config(database_url, apple_private_key_pem) -> dict:
    """The test dict given to create_app; tests may change it before using `app`."""
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "ISSUER": ISSUER,
        "APPLE_EMULATOR": False,
        "APPLE_BASE_URL": "https://appleid.apple.com",
        "APPLE_TEAM_ID": TEAM_ID,
        "APPLE_KEY_ID": KEY_ID,
        "APPLE_PRIVATE_KEY": apple_private_key_pem,
        "APPLE_SERVICES_ID": SERVICES_ID,
        "RATELIMIT_ENABLED": True,
        # The test client calls itself "localhost", not ISSUER's siwa.test; the host check has
        # its own tests (tests/web/test_issuer_host.py) and the walk-through.
        "ENFORCE_ISSUER_HOST": False,
        "EMULATOR_STATE_FILE": "",  # no state file shared between tests (tmp paths where needed)
    }


@pytest.fixture
def app(app_config):
    app = create_app(app_config)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def nothing_stored(app):
    """Assert at the end of the test that no table gained or lost rows (audit events excepted)."""
    before = count_rows(app)
    yield
    after = count_rows(app)
    before.pop("audit_events", None)
    after.pop("audit_events", None)
    assert after == before
