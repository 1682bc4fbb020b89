"""SQLite writers queue on the gate (thread lock + file lock), never in SQLite's busy handler."""
from __future__ import annotations

import fcntl
import gc
import logging
import multiprocessing
import os
import sqlite3
import threading
import time

import pytest

from siwa_web import create_app
from siwa_web.infra.extensions import db
from siwa_web.infra.sqlite_gate import GatedConnection
from siwa_web.infra.sqlite_gate import gate_for


@pytest.fixture
def path(tmp_path) -> str:
    path = str(tmp_path / "gate.sqlite")
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (n INTEGER)")
    return path


def connect(path: str, timeout: float = 5.0) -> GatedConnection:
    return sqlite3.connect(path, timeout=timeout, factory=GatedConnection,
                           check_same_thread=False)


def other_process_can_lock(path: str) -> bool:
    """Whether a writer in another process would get the gate now (a separate open file)."""
    fd = os.open(path + "-writer", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def gate_is_free(path: str) -> bool:
    return not gate_for(path).lock.locked() and other_process_can_lock(path)


@pytest.mark.parametrize("sql", [
    "INSERT INTO t VALUES (1)", "  update t SET n = 2", "DELETE FROM t",
    "REPLACE INTO t VALUES (3)", "BEGIN IMMEDIATE", "begin exclusive",
])
def test_writes_take_the_gate(path, sql):
    conn = connect(path)
    conn.cursor().execute(sql)
    assert conn.holds_gate and not gate_is_free(path)
    conn.rollback()
    assert not conn.holds_gate and gate_is_free(path)


def test_executemany_takes_the_gate_too(path):
    conn = connect(path)
    conn.cursor().executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])
    assert conn.holds_gate and not other_process_can_lock(path)
    conn.commit()
    assert gate_is_free(path)


@pytest.mark.parametrize("sql", [
    "SELECT * FROM t", "BEGIN", "BEGIN DEFERRED", "PRAGMA user_version", "CREATE TABLE u (x)",
])
def test_reads_and_ddl_do_not(path, sql):
    conn = connect(path)
    conn.cursor().execute(sql)
    assert not conn.holds_gate and gate_is_free(path)


@pytest.mark.parametrize("end", ["commit", "rollback", "close"])
def test_the_gate_opens_when_the_transaction_ends(path, end):
    conn = connect(path)
    conn.execute("INSERT INTO t VALUES (1)")
    assert not other_process_can_lock(path)
    getattr(conn, end)()
    assert gate_is_free(path)


def test_an_autocommit_write_leaves_the_gate_at_once(path):
    conn = connect(path)
    conn.isolation_level = None  # no implicit transaction: the INSERT is its own
    conn.execute("INSERT INTO t VALUES (1)")
    assert not conn.holds_gate and gate_is_free(path)


def test_a_failed_write_keeps_nothing_locked(path):
    conn = connect(path)
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("INSERT INTO missing VALUES (1)")
    conn.rollback()
    assert gate_is_free(path)


def test_a_dropped_connection_opens_the_gate(path):
    conn = connect(path)
    conn.execute("INSERT INTO t VALUES (1)")
    del conn
    gc.collect()  # pysqlite's statement cache makes a cycle: __del__ runs at collection
    assert gate_is_free(path)


def write_in_thread(conn: GatedConnection, value: int) -> threading.Event:
    """INSERT and COMMIT on another thread; the event is set once committed."""
    done = threading.Event()

    def write():
        conn.execute("INSERT INTO t VALUES (?)", (value,))
        conn.commit()
        done.set()

    threading.Thread(target=write, daemon=True).start()
    time.sleep(0.2)
    return done


def test_second_writer_waits_on_the_gate_not_in_sqlite(path):
    """While one thread writes, another waits before BEGIN: it never sleeps in busy handling."""
    first, second = connect(path), connect(path)
    first.execute("INSERT INTO t VALUES (1)")
    done = write_in_thread(second, 2)
    assert not done.is_set()
    assert not second.in_transaction  # queued on the gate, SQLite not asked yet
    first.commit()
    assert done.wait(5)
    assert connect(path).execute("SELECT COUNT(*) FROM t").fetchone() == (2,)


def _hold_write_lock(path: str, started, release) -> None:
    conn = connect(path)
    conn.execute("INSERT INTO t VALUES (100)")
    started.set()
    release.wait(10)
    conn.commit()


def test_a_writer_in_another_process_holds_the_gate(path):
    ctx = multiprocessing.get_context("spawn")  # no threads of other tests inherited
    started, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold_write_lock, args=(path, started, release))
    child.start()
    try:
        assert started.wait(10)
        conn = connect(path)
        done = write_in_thread(conn, 1)
        assert not done.is_set() and not conn.in_transaction
        release.set()
        assert done.wait(5)
    finally:
        release.set()
        child.join(10)
    assert child.exitcode == 0
    assert connect(path).execute("SELECT COUNT(*) FROM t").fetchone() == (2,)


def test_a_writer_that_cannot_get_the_gate_goes_ahead_without_it(path, caplog):
    gate = gate_for(path)
    gate.lock.acquire()  # a stuck holder in this process
    try:
        conn = connect(path, timeout=0.2)
        with caplog.at_level(logging.WARNING, logger="siwa_web.infra.sqlite_gate"):
            conn.execute("INSERT INTO t VALUES (1)")
        assert not conn.holds_gate and conn.in_transaction
        conn.commit()
        assert "writer gate busy" in caplog.text
    finally:
        gate.lock.release()
    assert gate_is_free(path)


def _write_many(path: str, rounds: int, threads: int) -> None:
    errors: list[BaseException] = []

    def work():
        conn = connect(path)
        try:
            for _ in range(rounds):
                conn.execute("INSERT INTO t VALUES (1)")
                conn.execute("UPDATE t SET n = n + 1 WHERE rowid = 1")
                conn.commit()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]


def test_many_processes_and_threads_lose_no_write(path):
    ctx = multiprocessing.get_context("fork")
    children = [ctx.Process(target=_write_many, args=(path, 25, 6)) for _ in range(3)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    assert [c.exitcode for c in children] == [0, 0, 0]
    conn = connect(path)
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (3 * 25 * 6,)
    assert conn.execute("SELECT n FROM t WHERE rowid = 1").fetchone() == (3 * 25 * 6 + 1,)
    assert gate_is_free(path)


@pytest.mark.parametrize(("setting", "gated"), [(True, True), (False, False)])
def test_the_app_gates_file_databases_unless_told_not_to(tmp_path, setting, gated):
    app = create_app({"TESTING": True, "SECRET_KEY": "x", "SQLITE_WRITER_GATE": setting,
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'app.sqlite'}"})
    with app.app_context():
        raw = db.engine.raw_connection()
        try:
            assert isinstance(raw.dbapi_connection, GatedConnection) is gated
        finally:
            raw.close()


def test_only_sqlite_is_gated(app):
    connect_args = app.config["SQLALCHEMY_ENGINE_OPTIONS"].get("connect_args", {})
    is_sqlite = app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite")
    assert (connect_args.get("factory") is GatedConnection) is is_sqlite


@pytest.mark.parametrize("database", [":memory:", "", "file:shared?mode=memory&cache=shared"])
def test_an_in_memory_database_is_gated_without_a_lock_file(tmp_path, monkeypatch, database):
    """One process holds an in-memory database: the thread lock suffices, and nothing named
    `:memory:-writer` appears in the working directory."""
    monkeypatch.chdir(tmp_path)
    conn = sqlite3.connect(database, factory=GatedConnection, uri=database.startswith("file:"))
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    assert gate_for(database).lock.locked()  # the write took the gate ...
    conn.commit()
    assert not gate_for(database).lock.locked()  # ... and the commit left it
    conn.close()
    assert list(tmp_path.iterdir()) == []


def test_an_app_on_an_in_memory_database_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://"})
    with app.app_context():
        db.create_all()
        db.session.execute(db.text("SELECT 1"))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith("-writer")]


def test_a_file_that_cannot_be_opened_raises_only_that(tmp_path):
    """The failed connection is collected without an error of its own (pytest turns one into
    a failure here)."""
    with pytest.raises(sqlite3.OperationalError, match="unable to open"):
        connect(str(tmp_path / "missing" / "siwa.sqlite"))
    gc.collect()
