"""Database faults injected at the driver boundary: the app's own code runs unchanged.

`DbFaults(engine)` wraps the dialect's `do_execute`, `do_commit` and `do_rollback` (the calls
SQLAlchemy makes into the DB-API driver) so that one of them raises the driver's own
OperationalError, as a dropped or killed connection does; SQLAlchemy then wraps and handles it
exactly as it would a real one. Importable: `from support.faults import DbFaults, kill_backend`;
fixture `db_faults` (the app's engine, restored after the test); `stored(app)` and
`assert_agrees(...)` compare an answer with what it stored.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy import text
from sqlalchemy.engine import Engine

from siwa_web.infra.extensions import db

MAX_STATEMENTS = 60  # more than any one request sends
LOST = "server closed the connection unexpectedly"  # what libpq says; psycopg marks disconnects


class DbFaults:
    """Arm one fault at a time; `disarm()` (or the fixture's end) restores the driver calls.

    * `fail_rollback()`: every ROLLBACK raises (the pool's reset-on-return too).
    * `fail_commit(applied=False, nth=1)`: the nth COMMIT from now raises; with
      `applied=True` the server applied it first (the connection was lost while the answer
      was on its way).
    * `fail_statement(pattern, nth=1)`: the nth statement matching `pattern` (a regex on the
      SQL, case-insensitive) raises before it reaches the server.
    `statements` lists the SQL of every statement sent since the last `record()`.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self.error = self.dialect.dbapi.OperationalError
        self._originals = {name: getattr(self.dialect, name) for name in
                           ("do_execute", "do_execute_no_params", "do_commit", "do_rollback")}
        self._statement: tuple[re.Pattern[str], int] | None = None
        self._commit: tuple[bool, int] | None = None  # (whether the server applies it, nth)
        self._rollback = False
        self.fired = 0
        self.statements: list[str] = []
        self.dialect.do_execute = self._execute(self._originals["do_execute"])
        self.dialect.do_execute_no_params = self._execute(self._originals["do_execute_no_params"])
        self.dialect.do_commit = self._do_commit
        self.dialect.do_rollback = self._do_rollback

    # --- arming ----------------------------------------------------------------------------------
    def fail_rollback(self) -> None:
        self._rollback = True

    def fail_commit(self, *, applied: bool = False, nth: int = 1) -> None:
        self._commit = (applied, nth)

    def fail_statement(self, pattern: str, nth: int = 1) -> None:
        self._statement = (re.compile(pattern, re.IGNORECASE | re.DOTALL), nth)

    def disarm(self) -> None:
        self._statement, self._commit, self._rollback = None, None, False

    def record(self) -> None:
        self.statements = []

    def restore(self) -> None:
        self.disarm()
        for name, original in self._originals.items():
            setattr(self.dialect, name, original)

    # --- the wrapped driver calls ---------------------------------------------------------------
    def _execute(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def execute(cursor: Any, statement: str, *args: Any, **kwargs: Any) -> Any:
            self.statements.append(statement)
            armed = self._statement
            if armed is not None and armed[0].search(statement):
                if armed[1] <= 1:
                    self._statement = None
                    self.fired += 1
                    raise self.error(LOST)
                self._statement = (armed[0], armed[1] - 1)
            return original(cursor, statement, *args, **kwargs)
        return execute

    def _do_commit(self, dbapi_connection: Any) -> None:
        armed = self._commit
        if armed is None or armed[1] > 1:
            if armed is not None:
                self._commit = (armed[0], armed[1] - 1)
            return self._originals["do_commit"](dbapi_connection)
        applied, self._commit = armed[0], None
        self.fired += 1
        if applied:
            self._originals["do_commit"](dbapi_connection)
        else:
            self._originals["do_rollback"](dbapi_connection)  # what the server does on loss
        raise self.error(LOST)

    def _do_rollback(self, dbapi_connection: Any) -> None:
        if self._rollback:
            self.fired += 1
            raise self.error(LOST)
        return self._originals["do_rollback"](dbapi_connection)


def kill_backend(url: str, pid: int) -> None:
    """pg_terminate_backend(pid) from a connection of our own, as an operator (or a crash) would."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        admin.dispose()


def stored(app) -> dict[str, int]:
    """What a sign-in or refresh stores, as counts."""
    queries = {
        "users": "SELECT COUNT(*) FROM users",
        "families": "SELECT COUNT(*) FROM token_families",
        "refresh_tokens": "SELECT COUNT(*) FROM refresh_tokens",
        "web_sessions": "SELECT COUNT(*) FROM web_sessions",
        "identities": "SELECT COUNT(*) FROM apple_identities",
        "successes": "SELECT COUNT(*) FROM audit_events WHERE outcome = 'success'",
    }
    with app.app_context():
        return {name: db.session.execute(text(sql)).scalar_one() for name, sql in queries.items()}


def assert_agrees(response, before: dict, after: dict, success_status: int, grew: set[str]):
    """Success and its rows, or a 503 and no change at all."""
    if response.status_code == success_status:
        assert {k for k in after if after[k] != before[k]} == grew, (before, after)
    else:
        assert response.status_code == 503, response.get_data(as_text=True)[:300]
        assert after == before, "answered 503 but something was stored"


@pytest.fixture
def db_faults(app):
    with app.app_context():
        faults = DbFaults(db.engine)
    yield faults
    faults.restore()
