"""Which browser origins may call the token endpoints from JavaScript (single-page apps).

An origin is allowed when it is the origin (scheme, host, port) of a redirect URI of an
enabled web client. The set is read from the database at most every `ttl` seconds per process,
so a browser's preflight costs no query; a newly registered app is allowed within that time.
"""
from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

from sqlalchemy import select

from ..models import Client
from .collaborators import DbSession


def origin_of(uri: str) -> str | None:
    parts = urlsplit(uri)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc.lower()}"


class AllowedOrigins:
    """A per-process cache of the allowed origins."""

    def __init__(self, ttl: float = 30.0) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._origins: frozenset[str] = frozenset()
        self._loaded_at = float("-inf")

    def allows(self, session: DbSession, origin: str) -> bool:
        if time.monotonic() - self._loaded_at >= self.ttl:
            self._reload(session)
        return origin in self._origins

    def _reload(self, session: DbSession) -> None:
        with self._lock:
            if time.monotonic() - self._loaded_at < self.ttl:
                return
            uris = session.execute(
                select(Client.redirect_uris)
                .where(Client.kind == "web", Client.disabled_at.is_(None))
            ).scalars().all()
            self._origins = frozenset(
                o for listed in uris for u in (listed or ()) if (o := origin_of(u)))
            self._loaded_at = time.monotonic()
