"""Tell the Bearer-token liveness cache about every committed change that can end a session.

One path, at the level every write goes through whichever way it was sent (an ORM flush, an
ORM or Core UPDATE/DELETE, text SQL; through the session, `session.connection()`,
`engine.begin()` or any other connection of the app's engine):

* `before_cursor_execute` sees each statement's SQL. One that can change what the Bearer check
  reads (`WATCHED`: an UPDATE whose SET names a watched column, a DELETE of a watched row or of
  a row whose deletion cascades into one, an upsert, anything else that names those tables)
  marks its DBAPI connection (`Connection.info` belongs to the DBAPI connection);
* the dialect's `do_commit` and `do_rollback`, which every transaction of the engine ends in
  (the pool's reset-on-return included), are wrapped: a marked connection signals
  (`LivenessCache.changed`) once its COMMIT has returned, and forgets the mark when it rolls
  back. So a signal never precedes the commit (another worker could re-read and keep the old
  row), and a connection that commits twice signals each time, without waiting to be returned
  to the pool. A connection in AUTOCOMMIT mode has written already: its mark is signalled when
  its SQLAlchemy transaction ends, by commit or rollback (at the latest when it is closed). A
  write undone by ROLLBACK TO SAVEPOINT still counts: one signal too many costs a re-read.

A change that cannot affect liveness — the last-used time, address and user agent a refresh
writes on its family — does not count, so the caches survive traffic. What bypasses the
engine (another program, psql, the DBAPI connection used directly) is bounded only by
LIVENESS_CACHE_SECONDS; so would be a change made by a trigger, view or function, of which the
schema has none.
"""
from __future__ import annotations

import logging
import re
from functools import partial
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine
from sqlalchemy.engine import make_url

from ..infra.extensions import db
from ..models import Client
from ..models import TokenFamily
from ..models import User
from ..oauth.liveness import CHANNEL
from ..oauth.liveness import ChangeSignal
from ..oauth.liveness import FileSignal
from ..oauth.liveness import LivenessCache
from ..oauth.liveness import LocalSignal
from ..oauth.liveness import PostgresSignal

log = logging.getLogger(__name__)

# What authenticate() reads and caches (it looks the rows up by id): a change to any of these
# ends or alters a session.
WATCHED: dict[type, tuple[str, ...]] = {
    TokenFamily: ("id", "revoked_at", "expires_at", "user_id", "client_id"),
    User: ("id", "disabled_at", "email", "email_verified", "first_name", "last_name"),
    Client: ("id", "disabled_at"),
}


def _watched_tables() -> tuple[dict[str, frozenset[str]], frozenset[str]]:
    """Watched columns by table, and the tables a DELETE from which can end a session.

    Follows the foreign keys: deleting a client deletes its families (ON DELETE CASCADE), so a
    DELETE from `clients` counts; so would a DELETE whose ON DELETE SET NULL/DEFAULT rewrites a
    watched column, and an UPDATE whose ON UPDATE action rewrites one.
    """
    columns: dict[str, set[str]] = {
        inspect(model).local_table.name: set(names) for model, names in WATCHED.items()}
    deleting = set(columns)
    while True:
        size = len(deleting) + sum(map(len, columns.values()))
        for table in db.metadata.tables.values():
            for fk in table.foreign_keys:
                parent = fk.column.table.name
                rewrites = fk.parent.name in columns.get(table.name, ())
                ondelete, onupdate = (fk.ondelete or "").upper(), (fk.onupdate or "").upper()
                if (table.name in deleting and ondelete == "CASCADE") or (
                        rewrites and ondelete in ("SET NULL", "SET DEFAULT")):
                    deleting.add(parent)
                if rewrites and onupdate in ("CASCADE", "SET NULL", "SET DEFAULT"):
                    columns.setdefault(parent, set()).add(fk.column.name)
        if size == len(deleting) + sum(map(len, columns.values())):
            return {t: frozenset(c) for t, c in columns.items()}, frozenset(deleting)


WATCHED_COLUMNS, ENDS_SESSIONS_WHEN_DELETED = _watched_tables()
_NAMES = ENDS_SESSIONS_WHEN_DELETED | frozenset(WATCHED_COLUMNS)
_MENTIONS = re.compile(r"\b(?:" + "|".join(sorted(_NAMES)) + r")\b", re.IGNORECASE)

# --- which statements count ---------------------------------------------------------------------

_TOKEN = re.compile(r"""
    '(?:[^']|'')*'                          # a string literal (skipped)
  | \$(\w*)\$.*?\$\1\$                      # a dollar-quoted string (skipped)
  | --[^\n]*  | /\*.*?\*/                   # comments (skipped)
  | "((?:[^"]|"")*)"  | `([^`]*)`           # quoted identifiers
  | ([^\W\d]\w*)                            # a word: keyword or identifier
  | ([().;])                                # what the reader follows
  | \S                                      # anything else (skipped)
""", re.DOTALL | re.VERBOSE)
_READS = frozenset(("SELECT", "PRAGMA", "SHOW", "SAVEPOINT", "RELEASE", "BEGIN", "COMMIT",
                    "ROLLBACK", "END", "LISTEN", "UNLISTEN", "NOTIFY"))
_WRITES = frozenset(("INSERT", "UPDATE", "DELETE", "REPLACE", "WITH"))
_SET_ENDS = frozenset(("WHERE", "FROM", "RETURNING", "ORDER", "LIMIT"))


class _Unreadable(Exception):
    """The statement cannot be read with certainty: count it."""


def _tokens(sql: str) -> list[tuple[str, str]]:
    """("word", UPPER) for keywords and names, ("name", UPPER) for quoted names, ("punct", c)."""
    if "\\" in sql:  # backslash escapes (E'...') would make the literals unreadable
        raise _Unreadable
    out = []
    for m in _TOKEN.finditer(sql):
        _dollar, quoted, backquoted, word, punct = m.groups()
        if word is not None:
            out.append(("word", word.upper()))
        elif quoted is not None or backquoted is not None:
            out.append(("name", (quoted if quoted is not None else backquoted).upper()))
        elif punct is not None:
            out.append(("punct", punct))
    return out


def _table_at(tokens: list[tuple[str, str]], i: int) -> tuple[str, int]:
    """The (lower-case, unqualified) table named at `i`, and the index after it."""
    if i < len(tokens) and tokens[i] == ("word", "ONLY"):
        i += 1
    name = ""
    while i < len(tokens) and tokens[i][0] in ("word", "name"):
        name = tokens[i][1].lower()
        if i + 2 < len(tokens) and tokens[i + 1] == ("punct", "."):
            i += 2  # schema.table: keep the last part
            continue
        return name, i + 1
    return name, i


def _set_names(tokens: list[tuple[str, str]], i: int) -> set[str]:
    """Every name in the SET clause of the UPDATE whose table ends at `i` (its targets and
    whatever the new values read: more than needed, never less)."""
    names, depth, in_set = set(), 0, False
    for kind, value in tokens[i:]:
        if kind == "punct":
            depth += {"(": 1, ")": -1}.get(value, 0)
            if depth < 0 or (value == ";" and depth == 0):
                break  # the end of a WITH member, or of the statement
        elif in_set:
            if depth == 0 and kind == "word" and value in _SET_ENDS:
                break
            names.add(value.lower())
        elif depth == 0 and (kind, value) == ("word", "SET"):
            in_set = True
    if not in_set:
        raise _Unreadable
    return names


def _changes_liveness(sql: str) -> bool:
    """Whether a statement can change what a Bearer check reads (when committed).

    Errs on the side of counting: what it cannot read with certainty counts.
    """
    if not _MENTIONS.search(sql):
        return False
    try:
        tokens = _tokens(sql)
        if not tokens or tokens[0][1] in _READS:
            return False
        if tokens[0][1] not in _WRITES:
            return True  # TRUNCATE, MERGE, ALTER, DROP, CALL ... of these tables: assume the worst
        upsert = any(a[1] == "DO" and b[1] == "UPDATE" or a[1] == "DUPLICATE"
                     for a, b in zip(tokens, tokens[1:], strict=False))
        for i, (kind, value) in enumerate(tokens):
            if kind != "word":
                continue
            if value == "UPDATE":
                j = i + 1
                if j < len(tokens) and tokens[j][1] == "OR":  # SQLite: UPDATE OR IGNORE ...
                    j += 2
                table, j = _table_at(tokens, j)
                if table in WATCHED_COLUMNS and not WATCHED_COLUMNS[table].isdisjoint(
                        _set_names(tokens, j)):
                    return True
            elif value == "DELETE":
                j = i + 1 + (i + 1 < len(tokens) and tokens[i + 1][1] == "FROM")
                if _table_at(tokens, j)[0] in ENDS_SESSIONS_WHEN_DELETED:
                    return True
            elif value == "INTO":
                table = _table_at(tokens, i + 1)[0]
                verb = tokens[i - 1][1] if i else ""
                if verb in ("REPLACE", "MERGE") and table in _NAMES:
                    return True  # REPLACE deletes the row it replaces
                if table in WATCHED_COLUMNS and upsert:
                    return True
        return False
    except _Unreadable:
        return True


_verdicts: dict[str, bool] = {}  # by statement text: the same SQL always gets the same answer
_MAX_VERDICTS = 4096  # distinct statements remembered (text SQL with literals is unbounded)


def _verdict(sql: str) -> bool:
    verdict = _changes_liveness(sql)
    if len(_verdicts) >= _MAX_VERDICTS:
        _verdicts.clear()
    _verdicts[sql] = verdict
    return verdict


# --- marking connections, signalling after the commit -------------------------------------------

_MARK = "siwa_liveness_changed"  # in Connection.info, which belongs to the DBAPI connection
_IN_TRANSACTION, _AUTOCOMMITTED = "transaction", "autocommit"


def _before_cursor_execute(conn: Connection, _cursor: Any, statement: str, parameters: Any,
                           _context: Any, _executemany: bool) -> tuple[str, Any]:
    # Every statement the app sends passes here, the Bearer check's lookup on every API call
    # among them, so the usual case must cost next to nothing: a read is dismissed by its first
    # six characters (SQLAlchemy writes statements without leading space; a SELECT cannot
    # write). Any other statement is looked up by its text — SQLAlchemy's compiled cache hands
    # over the same string object each time, whose hash Python keeps — and read only once.
    if statement.startswith("SELECT"):
        return statement, parameters
    verdict = _verdicts.get(statement)
    if not (_verdict(statement) if verdict is None else verdict):
        return statement, parameters
    info = conn.info
    if _autocommits(conn):
        info[_MARK] = _AUTOCOMMITTED
    else:
        info.setdefault(_MARK, _IN_TRANSACTION)
    return statement, parameters


def _autocommits(conn: Connection) -> bool:
    """Whether the DBAPI connection commits each statement itself (isolation_level=AUTOCOMMIT)."""
    driver = conn.connection.dbapi_connection
    if getattr(driver, "autocommit", None) is True:  # psycopg; sqlite3 from Python 3.12
        return True
    return conn.dialect.name == "sqlite" and getattr(driver, "isolation_level", "") is None


def _take_mark(dbapi_connection: Any) -> str | None:
    """Remove and return the mark of the connection SQLAlchemy commits or rolls back.

    SQLAlchemy passes the pool's proxy, whose `info` is the one statements marked; while it
    first connects it passes a bare one without `info`, on which nothing can have been marked.
    """
    try:
        return dbapi_connection.info.pop(_MARK, None)
    except (AttributeError, NotImplementedError):
        return None


def _signal(liveness: LivenessCache) -> None:
    try:
        liveness.changed()
    except Exception:  # noqa: BLE001 - never fail the transaction that already committed
        log.exception("could not signal a session change",
                      extra={"event": "liveness_signal_failed"})


def install(engine: Engine, liveness: LivenessCache) -> None:
    """Watch every statement of `engine` and signal `liveness` after each commit that counts."""
    dialect = engine.dialect  # one per engine: the wrappers below apply to this engine only
    installed = getattr(dialect, "_siwa_liveness", None)
    if installed is liveness:
        return
    if installed is not None:
        raise RuntimeError("this engine already signals another app's liveness cache")
    commit, rollback = dialect.do_commit, dialect.do_rollback

    def do_commit(dbapi_connection: Any) -> None:
        try:
            commit(dbapi_connection)
        finally:  # a COMMIT that failed may still have landed (a lost connection): count it
            if _take_mark(dbapi_connection):
                _signal(liveness)

    def do_rollback(dbapi_connection: Any) -> None:
        try:
            rollback(dbapi_connection)
        finally:
            if _take_mark(dbapi_connection) == _AUTOCOMMITTED:  # nothing to roll back
                _signal(liveness)

    dialect.do_commit, dialect.do_rollback = do_commit, do_rollback
    dialect._siwa_liveness = liveness
    event.listen(engine, "before_cursor_execute", _before_cursor_execute, retval=True)


def make_signal(app: Flask) -> ChangeSignal | None:
    """The cross-process signal for the app's database; None if there is none (no caching)."""
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    backend = url.get_backend_name()
    if backend == "sqlite":
        path = url.database
        if not path or path == ":memory:" or url.query.get("mode") == "memory":
            return LocalSignal()  # an in-memory database lives in one process
        return FileSignal(path + "-liveness")
    if backend == "postgresql":
        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return PostgresSignal.for_database(conninfo, partial(_notify, app))
    return None


def _notify(app: Flask) -> None:
    with app.app_context():
        engine = db.engine
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(f"NOTIFY {CHANNEL}")


def init_app(app: Flask, liveness: LivenessCache) -> None:
    """Signal `liveness` for the app's engine (captured here: no app context needed later)."""
    if not liveness.enabled:
        return  # nothing is cached, so there is nothing to tell
    with app.app_context():
        install(db.engine, liveness)
