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
  back (another program writing to the database) can go unseen for.
"""
from __future__ import annotations

import atexit
import fcntl
import logging
import mmap
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

# Forks seen by this process: a listener thread does not survive a fork, so PostgresSignal starts
# a new one when this moves (cheaper than an os.getpid() system call on every Bearer request).
_forks = 0


def _count_fork() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_count_fork)


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
    """Every process on this machine maps one small file; a change counts up in its first bytes.

    Readers look at a shared memory mapping, so asking for the version costs no system call: a
    Bearer request never hands the GIL to another thread for it (a `stat` per request did, and
    under load each hand-off cost a context switch; docs/performance.md, section 2). Writers
    count up under an exclusive `flock`, so no change is lost when two commit at once. Once a
    second a reader checks that the path still names the file it mapped, and maps the new one
    if the file was deleted or replaced (a new mapping starts a new version).
    """

    SIZE = 8
    RECHECK_SECONDS = 1.0

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        # (generation, mapping, (st_dev, st_ino)) swapped as one object; None: cannot be read
        self._state: tuple[int, mmap.mmap, tuple[int, int]] | None = None
        self._generation = 0
        self._checked = float("-inf")  # time.monotonic() of the last look at the path
        self._failing = False  # the last attempt could not map the file (logged once)

    def version(self) -> Hashable | None:
        if time.monotonic() - self._checked >= self.RECHECK_SECONDS:
            self._recheck()
        state = self._state
        if state is None:
            return None
        return state[0], state[1][:self.SIZE]

    def bump(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # released by close
                count = int.from_bytes(os.pread(fd, self.SIZE, 0), "little")
                os.pwrite(fd, ((count + 1) % 2 ** (8 * self.SIZE)).to_bytes(self.SIZE, "little"), 0)
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("could not signal a session change through %s: %s", self.path, exc.strerror,
                      extra={"event": "liveness_signal_failed"})

    def _recheck(self) -> None:
        """Map the file if it is not mapped yet, or if the path now names another file."""
        with self._lock:
            if time.monotonic() - self._checked < self.RECHECK_SECONDS:
                return  # another thread just did
            try:
                st = os.stat(self.path)
                if self._state is not None and self._state[2] == (st.st_dev, st.st_ino):
                    return
            except FileNotFoundError:
                pass  # deleted (or never created): map a new one
            except OSError as exc:
                self._unreadable(exc)
                return
            finally:
                self._checked = time.monotonic()
            try:
                mapping, ident = self._map()
            except (OSError, ValueError) as exc:
                self._unreadable(exc)
                return
            self._generation += 1
            self._failing = False
            # The old mapping is not closed: a reader may still hold it; it goes with its last
            # reference.
            self._state = (self._generation, mapping, ident)

    def _map(self) -> tuple[mmap.mmap, tuple[int, int]]:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except PermissionError:
            fd = os.open(self.path, os.O_RDONLY)  # readable is enough once it exists
        try:
            st = os.fstat(fd)
            if st.st_size < self.SIZE:
                os.ftruncate(fd, self.SIZE)
            return mmap.mmap(fd, self.SIZE, mmap.MAP_SHARED, mmap.PROT_READ), (st.st_dev, st.st_ino)
        finally:
            os.close(fd)

    def _unreadable(self, exc: Exception) -> None:
        if not self._failing:
            self._failing = True
            log.error("cannot watch %s for session changes (%s); Bearer checks read the "
                      "database every time", self.path, getattr(exc, "strerror", None) or exc,
                      extra={"event": "liveness_watch_failed"})
        self._state = None


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
        self._fork: int | None = None  # the `_forks` count when its listener thread started
        self._lock = threading.Lock()

    def version(self) -> Hashable | None:
        if self._fork != _forks:  # first use, or a forked worker: the thread is not ours
            self._start()
        return self._generation if self._listening else None

    def bump(self) -> None:
        try:
            self._notify()
        except Exception as exc:  # noqa: BLE001 - never fail the request that already committed
            log.error("could not signal a session change (NOTIFY failed: %s)", type(exc).__name__,
                      extra={"event": "liveness_signal_failed"})

    def _start(self) -> None:
        with self._lock:
            if self._fork != _forks:
                self._listening = False
                self._fork = _forks
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
                            type(exc).__name__, backoff, extra={"event": "liveness_watch_failed"})
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
