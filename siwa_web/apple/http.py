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
"""
from __future__ import annotations

import os
import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter

_IDLE_SINCE = "_siwa_idle_since"


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
