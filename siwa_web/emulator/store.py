"""The emulator's memory on disk, so a restart of `make run` does not forget Apple's users.

siwa-web keeps its accounts across restarts; an emulator that forgot its users would hand out
new `sub`s for "the same" person, and each would become a second, unreachable account. What
Apple would remember is kept here: users (with their `sub` and relay address), consents,
refresh tokens and the signing keys. Codes, pages and scripted failures stay in memory.

One SQLite file, one row per record: each save is one transaction (never half-written), and
several processes (`flask emulator run` beside `make run`, gunicorn workers) may share the file —
a process notices another's commit through `PRAGMA data_version` and reloads.
"""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

Records = dict[tuple[str, str], str]  # (kind, id) -> JSON body

SCHEMA = "CREATE TABLE IF NOT EXISTS records (kind TEXT NOT NULL, id TEXT NOT NULL, " \
         "body TEXT NOT NULL, PRIMARY KEY (kind, id))"
KEEP_ON_RESET = ("key",)


class StateFile:
    """Records of one emulator in `path`; callers serialise access (the state's lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.exists()
        self.conn = sqlite3.connect(path, timeout=10, isolation_level=None,
                                    check_same_thread=False)
        if fresh:
            os.chmod(path, 0o600)  # it holds refresh tokens and private signing keys
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(SCHEMA)
        self.saved: Records = {}
        self.version = -1

    def _data_version(self) -> int:
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def load(self) -> Records:
        """Read every record and remember them as saved."""
        rows = self.conn.execute("SELECT kind, id, body FROM records").fetchall()
        self.saved = {(kind, key): body for kind, key, body in rows}
        self.version = self._data_version()
        return dict(self.saved)

    def changed_elsewhere(self) -> bool:
        """Whether another connection (another process) committed since our last load/save."""
        return self._data_version() != self.version

    def save(self, records: Records) -> None:
        """Write what differs from the last load/save, in one transaction."""
        upserts = [(k[0], k[1], body) for k, body in records.items() if self.saved.get(k) != body]
        deletes = [k for k in self.saved if k not in records]
        if not upserts and not deletes:
            return
        with self._transaction():
            self.conn.executemany("DELETE FROM records WHERE kind = ? AND id = ?", deletes)
            self.conn.executemany(
                "INSERT INTO records (kind, id, body) VALUES (?, ?, ?) "
                "ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body", upserts)
        self.saved = dict(records)

    def clear(self, keep: tuple[str, ...] = KEEP_ON_RESET) -> int:
        """Forget every record but the kinds in `keep`; return how many were removed."""
        marks = ", ".join("?" for _ in keep) or "''"
        with self._transaction():
            removed = self.conn.execute(
                f"DELETE FROM records WHERE kind NOT IN ({marks})", keep).rowcount
        self.saved = {k: v for k, v in self.saved.items() if k[0] in keep}
        return removed

    def _transaction(self):
        return _Transaction(self.conn)

    def close(self) -> None:
        self.conn.close()


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT (ROLLBACK on error): writers queue instead of failing late."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, exc, tb) -> None:
        self.conn.execute("COMMIT" if kind is None else "ROLLBACK")
