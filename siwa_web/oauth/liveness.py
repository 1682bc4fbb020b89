"""A per-process cache of "is this app session alive?" that every process hears revocations in.

Decision D5 makes our own APIs refuse an access token as soon as its family is revoked or its
user disabled or deleted. Asking the database on every Bearer request costs more than
verifying the token itself, so each process keeps the rows it read, tagged with a *version*:

* the version changes whenever any process commits a change that could end a session or alter
  the claims we serve (the app calls :meth:`LivenessCache.changed` after such a commit);
* a cached row is used only while the version is the one it was read under, and a row is
  stored only if the version did not move while it was being read — so a revocation is never
  hidden by a read that raced it;
* other processes hear of changes through a :class:`ChangeSignal`: a small file beside a
  SQLite database (one machine), or PostgreSQL's LISTEN/NOTIFY (any number of machines);
* when the signal cannot be trusted (the listener is disconnected), every lookup goes to the
  database, as if there were no cache;
* entries also expire after ``ttl`` seconds, which bounds what a change made behind the app's
  back (a hand-written SQL UPDATE) can go unseen for.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable
from collections.abc import Hashable
from typing import Any
from typing import Protocol

log = logging.getLogger(__name__)
# Set at interpreter exit: listener threads stop quietly instead of reporting the lost
# connection (or logging into closed streams) while the process winds down.
_exiting = threading.Event()
atexit.register(_exiting.set)

CHANNEL = "siwa_liveness"


class ChangeSignal(Protocol):
    """How processes tell each other that liveness data changed."""

    def version(self) -> Hashable | None:
        """The current version, or None when changes might be going unheard."""

    def bump(self) -> None:
        """Tell every process (after the change committed)."""


class LocalSignal:
    """Only this process changes the data (in-memory SQLite, a single process)."""

    def version(self) -> Hashable | None:
        return 0

    def bump(self) -> None:
        return None


class FileSignal:
    """Every process on this machine stats one small file; a change appends a byte to it.

    Size, not modification time, carries the news: file times are only as fine as the kernel's
    clock tick, so two changes within one tick would look like one.
    """

    MAX_SIZE = 64 * 1024

    def __init__(self, path: str) -> None:
        self.path = path

    def version(self) -> Hashable | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return "absent"
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns, st.st_ino

    def bump(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                if os.fstat(fd).st_size >= self.MAX_SIZE:
                    os.ftruncate(fd, 0)  # the mtime moves with it; readers see a new version
                os.write(fd, b".")
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("could not signal a session change through %s: %s", self.path, exc.strerror)


class PostgresSignal:
    """LISTEN on a dedicated connection in a background thread; NOTIFY after each change.

    One listener per process and database (started lazily, and again after a fork). Until it
    is listening, and whenever its connection drops, :meth:`version` is None and the cache is
    bypassed; every reconnect starts a new version, so nothing read before it is trusted.
    """

    _registry: dict[tuple[int, str], PostgresSignal] = {}
    _registry_lock = threading.Lock()

    @classmethod
    def for_database(cls, conninfo: str, notify: Callable[[], None]) -> PostgresSignal:
        key = (os.getpid(), conninfo)
        with cls._registry_lock:
            signal = cls._registry.get(key)
            if signal is None:
                signal = cls._registry[key] = cls(conninfo, notify)
            return signal

    def __init__(self, conninfo: str, notify: Callable[[], None], *, poll: float = 1.0) -> None:
        self.conninfo = conninfo
        self._notify = notify
        self._poll = poll
        self._generation = 0
        self._listening = False
        self._pid: int | None = None  # the process whose listener thread is running
        self._lock = threading.Lock()

    def version(self) -> Hashable | None:
        if self._pid != os.getpid():  # first use, or a forked worker: the thread is not ours
            self._start()
        return self._generation if self._listening else None

    def bump(self) -> None:
        try:
            self._notify()
        except Exception as exc:  # noqa: BLE001 - never fail the request that already committed
            log.error("could not signal a session change (NOTIFY failed: %s)", type(exc).__name__)

    def _start(self) -> None:
        with self._lock:
            if self._pid != os.getpid():
                self._listening = False
                self._pid = os.getpid()
                threading.Thread(
                    target=self._run, name="siwa-liveness-listener", daemon=True).start()

    def _run(self) -> None:
        import psycopg

        backoff = 0.5
        while not _exiting.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._generation += 1
                    self._listening = True
                    backoff = 0.5
                    while not _exiting.is_set():
                        for _ in conn.notifies(timeout=self._poll):
                            self._generation += 1
                        conn.execute("SELECT 1")  # notices a dead connection between notices
            except Exception as exc:  # noqa: BLE001 - keep listening whatever went wrong
                self._generation += 1
                self._listening = False
                if _exiting.is_set():
                    return
                log.warning("session-change listener disconnected (%s); retrying in %.1f s",
                            type(exc).__name__, backoff)
                _exiting.wait(backoff)
                backoff = min(backoff * 2, 30.0)


class LivenessCache:
    """Rows describing a session's liveness, by family id, valid while the version holds."""

    def __init__(self, signal: ChangeSignal, *, ttl: float, max_entries: int = 100_000) -> None:
        self.signal = signal
        self.ttl = ttl
        self.max_entries = max_entries
        self._local = 0  # changes committed by this process, seen before any signal arrives
        self._entries: dict[str, tuple[Hashable, float, Any]] = {}

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def _version(self) -> Hashable | None:
        shared = self.signal.version()
        return None if shared is None else (self._local, shared)

    def lookup(self, key: str, load: Callable[[], Any]) -> Any:
        """Return the cached row for `key`, or `load()` it (and keep it if nothing changed)."""
        if not self.enabled:
            return load()
        version = self._version()
        if version is None:
            return load()
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] == version and entry[1] > now:
            return entry[2]
        row = load()
        if row is not None and self._version() == version:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (version, now + self.ttl, row)
        return row

    def changed(self) -> None:
        """A change committed here: stop trusting this process's rows, then tell the others."""
        self._local += 1
        if self.enabled:
            self.signal.bump()
