"""The HTTP session to Apple: pooled keep-alive connections, never reused once idle too long.

A server closes a keep-alive connection after its own idle timeout. A request sent on such a
connection at the moment the server closes it fails with "Remote end closed connection
without response" — after it was sent, so it must not be retried (Apple codes are single-use,
REL-06) and the sign-in would end in a 503. urllib3 drops connections the server has already
closed, but not one closing right now. So, like Go's `IdleConnTimeout`, a pooled connection
idle for `idle_seconds` or more is closed and a fresh one opened instead: keep this below the
server's keep-alive timeout (gunicorn's is 2 s, nginx's 75 s).

Proxy (`HTTPS_PROXY`, `NO_PROXY`) and CA bundle (`REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE`)
settings are read from the environment once, when the session is made, instead of on every
request as requests does by default (that, with its `~/.netrc` lookup, was about a twentieth
of a native sign-in's CPU: docs/performance.md, section 5).

Timeouts in requests are per socket operation: an Apple that sends one byte every 1.7 s never
trips an 8 s read timeout and held a token exchange for 40 s. So every call also runs under a
`Deadline` (`call_deadline`): a watchdog shuts the call's socket down when it passes, and the
call fails at once (requests raises ConnectionError). A `budget` bounds a whole sign-in the same
way: each call's deadline is the nearer of its own and the budget's end, and no call starts
once the budget is spent.
"""
from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import requests
from requests.adapters import HTTPAdapter

_IDLE_SINCE = "_siwa_idle_since"
WATCH_INTERVAL = 0.05  # how often a passed deadline re-checks for a socket still connecting


class DeadlinePassed(Exception):
    """No time is left for another call to Apple in this budget."""


class Deadline:
    """A point on the monotonic clock by which something must be over."""

    def __init__(self, seconds: float) -> None:
        self.ends = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.ends - time.monotonic()


_budget: ContextVar[Deadline | None] = ContextVar("siwa_apple_budget", default=None)
_call: ContextVar[_Watch | None] = ContextVar("siwa_apple_call", default=None)


@contextlib.contextmanager
def budget(seconds: float) -> Iterator[Deadline]:
    """Every Apple call inside ends within `seconds` from now (an enclosing budget still holds)."""
    outer = _budget.get()
    deadline = Deadline(seconds)
    if outer is not None and outer.ends < deadline.ends:
        deadline = outer
    token = _budget.set(deadline)
    try:
        yield deadline
    finally:
        _budget.reset(token)


def call_seconds(limit: float) -> float:
    """The time one call may take now: `limit`, or less if the budget ends sooner.

    :raises DeadlinePassed: the budget is spent.
    """
    deadline = _budget.get()
    seconds = limit if deadline is None else min(limit, deadline.remaining())
    if seconds <= 0:
        raise DeadlinePassed("the time allowed for Apple is spent")
    return seconds


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Bound one HTTP call, all of it, to `seconds`: its sockets are shut down when they pass."""
    watch = _Watch(seconds)
    token = _call.set(watch)
    try:
        yield
    finally:
        _call.reset(token)
        watch.done()


class _Watch:
    """A watchdog thread for one call: waits for the call's end or its deadline, whichever comes
    first; past the deadline it shuts down every connection the call took from a pool."""

    def __init__(self, seconds: float) -> None:
        self._over = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[Any] = []
        self.expired = False
        threading.Thread(target=self._run, args=(seconds,), daemon=True,
                         name="siwa-apple-deadline").start()

    def attach(self, conn: Any) -> None:
        with self._lock:
            self._conns.append(conn)
        if self.expired:
            _shut(conn)

    def done(self) -> None:
        self._over.set()

    def _run(self, seconds: float) -> None:
        if self._over.wait(seconds):
            return
        self.expired = True
        while True:  # until the call gives up: a socket may still be connecting
            with self._lock:
                conns = list(self._conns)
            for conn in conns:
                _shut(conn)
            if self._over.wait(WATCH_INTERVAL):
                return


def _shut(conn: Any) -> None:
    """End a connection's socket so that a read blocked on it returns now."""
    sock = getattr(conn, "sock", None)
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed or never connected
        pass


# Private urllib3 hooks, on purpose: urllib3 has no idle timeout and no public hook for when a
# connection goes back into a pool or comes out of it. So the limit overrides the pools'
# `_get_conn(timeout=None)` and `_put_conn(conn)` (alike in urllib3 1.26 and 2.x; requests>=2.32.3
# accepts urllib3>=1.21.1) and installs those pools through each pool manager's
# `pool_classes_by_scheme`. The nearest public route, a connection class whose `is_connected`
# (what a pool asks before reusing a connection) turns False once idle, does not exist before
# urllib3 2.0, still needs the same pool-class swap to bring its connections in, and could only
# count idle time from the response headers, not from the connection's return to the pool.
# tests/apple/test_apple_http.py pins these hooks: an urllib3 that renames or stops calling them
# fails there instead of silently reusing idle connections.
class _IdleLimit:
    """Mixed into urllib3's pools: stamp a connection when it comes back, check it on reuse."""

    idle_seconds: float = 1.5

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        since = getattr(conn, _IDLE_SINCE, None)
        if since is not None and time.monotonic() - since >= self.idle_seconds:
            conn.close()  # reopened on its next request, before anything is sent
        watch = _call.get()
        if watch is not None:  # the call's deadline may shut this connection down
            watch.attach(conn)
        return conn

    def _put_conn(self, conn: Any) -> None:
        if conn is not None:
            setattr(conn, _IDLE_SINCE, time.monotonic())
        super()._put_conn(conn)  # type: ignore[misc]


class IdleLimitAdapter(HTTPAdapter):
    """An HTTPAdapter whose pools never reuse a connection idle for `idle_seconds` or more.

    That holds for the pools of every proxy it uses too: a keep-alive connection to a proxy
    is closed by the proxy's own idle timeout just the same.
    """

    def __init__(self, idle_seconds: float, **kwargs: Any) -> None:
        self.idle_seconds = idle_seconds
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        self._limited: dict[type, type] = {}
        super().init_poolmanager(*args, **kwargs)
        self._limit(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        made = proxy not in self.proxy_manager
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if made:
            self._limit(manager)
        return manager

    def _limit(self, manager: Any) -> None:
        """Give a (proxy) pool manager's pools the idle limit, whatever pool classes it has."""
        manager.pool_classes_by_scheme = {
            scheme: self._limited_class(cls)
            for scheme, cls in manager.pool_classes_by_scheme.items()
        }

    def _limited_class(self, cls: type) -> type:
        if issubclass(cls, _IdleLimit):
            return cls
        if cls not in self._limited:
            self._limited[cls] = type("IdleLimit" + cls.__name__, (_IdleLimit, cls),
                                      {"idle_seconds": self.idle_seconds})
        return self._limited[cls]


def session(
    idle_seconds: float, pool_size: int = 32, base_url: str | None = None
) -> requests.Session:
    """A session for Apple's endpoints; the pool fits a worker's threads (16 by default).

    With `base_url`, the environment's proxy and CA settings for it are fixed now.
    """
    s = requests.Session()
    adapter = IdleLimitAdapter(idle_seconds, pool_connections=4, pool_maxsize=pool_size)
    s.mount("https://", adapter)
    s.mount("http://", adapter)
    if base_url is not None:
        s.proxies.update(requests.utils.get_environ_proxies(base_url))
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            s.verify = bundle
        s.trust_env = False
    return s
