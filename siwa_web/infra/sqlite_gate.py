"""SQLite writers take turns at a gate instead of sleeping in SQLite's busy handler.

SQLite allows one writer per database. A connection that finds the write lock taken sleeps in
SQLite's busy handler — 1, 2, 5 … then 100 ms at a time — and retries. With dozens of threads
in several workers, writers that have waited longest poll least often, so newcomers overtake
them: under load a few requests waited seconds, and some gave up after the 5 s busy timeout
(503). Here a writer first takes its process's thread lock and then an exclusive `flock` on
`<database>-writer`, shared by every process; both wake the next waiter the moment they are
free. Only the holder ever asks SQLite for its write lock, and SQLite's locking alone still
guarantees correctness: the gate only decides who goes next.

A thread that cannot get its process's lock within the busy timeout goes ahead without the
gate (and meets SQLite's busy handler, as before). The file lock is waited for without a
limit: its holder is inside a write transaction, which holds SQLite's own lock just as long.
The gate is left at commit, rollback, close, or when the connection is collected.

Installed with `connect_args={"factory": GatedConnection}` (see `config._gate_sqlite`);
`SQLITE_WRITER_GATE = False` turns it off.
"""
from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
from typing import Any

log = logging.getLogger(__name__)

# Statements that take SQLite's write lock (pysqlite opens a transaction before the first four).
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "BEGIN IMMEDIATE", "BEGIN EXCLUSIVE")
_gates: dict[tuple[int, str], Gate] = {}
_gates_lock = threading.Lock()


class Gate:
    """A thread lock for this process, then a file lock shared by every process."""

    def __init__(self, database: str) -> None:
        self.lock = threading.Lock()
        # An in-memory database lives in one process: the thread lock is the whole gate (and no
        # `:memory:-writer` file appears in the working directory).
        self.fd = None if is_in_memory(database) else os.open(
            database + "-writer", os.O_RDWR | os.O_CREAT, 0o600)

    def acquire(self, timeout: float) -> bool:
        if not self.lock.acquire(timeout=timeout):
            return False
        if self.fd is None:
            return True
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError:
            self.lock.release()
            return False
        return True

    def release(self) -> None:
        try:
            if self.fd is not None:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            self.lock.release()


def is_in_memory(database: str) -> bool:
    """Whether sqlite3 was given an in-memory database (`:memory:`, "" or a `mode=memory` URI)."""
    return database in ("", ":memory:") or "mode=memory" in database


def gate_for(database: str) -> Gate:
    """The gate of one database file in this process (a forked child opens its own)."""
    key = (os.getpid(), database)
    with _gates_lock:
        gate = _gates.get(key)
        if gate is None:
            gate = _gates[key] = Gate(database)
        return gate


def _is_write(sql: str) -> bool:
    return sql.lstrip()[:15].upper().startswith(_WRITES)


class GatedCursor(sqlite3.Cursor):
    """Takes its connection's gate before the first write of a transaction."""

    def execute(self, sql: str, parameters: Any = (), /) -> GatedCursor:
        return self._gated(super().execute, sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> GatedCursor:
        return self._gated(super().executemany, sql, seq_of_parameters)

    def _gated(self, run: Any, sql: str, parameters: Any) -> GatedCursor:
        conn: GatedConnection = self.connection  # type: ignore[assignment]
        if not conn.holds_gate and _is_write(sql):
            conn.enter_gate()
        try:
            return run(sql, parameters)
        finally:
            conn.leave_gate_if_idle()


class GatedConnection(sqlite3.Connection):
    """A pysqlite connection that leaves the gate when its transaction ends."""

    # Also the value of a connection whose file could not be opened: `__init__` raised before
    # setting it, and `__del__` still runs.
    holds_gate = False

    def __init__(self, database: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        self._gate = gate_for(str(database))
        self._wait = float(kwargs.get("timeout", 5.0))
        self.holds_gate = False

    def cursor(self, factory: Any = GatedCursor) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:  # type: ignore[override]
        return self.cursor().execute(sql, parameters)

    def enter_gate(self) -> None:
        if self._gate.acquire(timeout=self._wait):
            self.holds_gate = True
        else:
            log.warning("SQLite writer gate busy for %.1f s; writing without it", self._wait,
                        extra={"event": "sqlite_gate_busy"})

    def leave_gate_if_idle(self) -> None:
        if self.holds_gate and not self.in_transaction:
            self._leave_gate()

    def _leave_gate(self) -> None:
        if self.holds_gate:
            self.holds_gate = False
            self._gate.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._leave_gate()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._leave_gate()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._leave_gate()

    def __del__(self) -> None:  # dropped without close(): never keep the others waiting
        self._leave_gate()
