"""One id per request: in every log line, the `X-Request-ID` header and on error pages.

A proxy we trust (TRUST_PROXY_HOPS > 0) may hand us its own id, so its access log and ours
share one key; anything else (no trusted proxy, or a value that is too long, has control
characters, spaces or non-ASCII) is ignored and we make our own. The error pages show the same
id as "Reference", so a user quoting it leads support straight to the log lines.

A small WSGI wrapper does it, not request hooks: the token endpoint's hot path runs no
`before_request`/`after_request` function it can avoid (tests/infra/test_ratelimit_hooks.py).
"""
from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

from flask import Flask
from flask import has_request_context
from flask import request

from .security_headers import REQUEST_ID_ENVIRON as ENVIRON_KEY

# Letters, digits and . _ : - only, at most 64: a UUID, a hex id or Heroku's and Envoy's ids fit.
WELL_FORMED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_last = threading.local()  # the id of the thread's latest request, for the server's access line


def new_id() -> str:
    """Return a fresh id: 12 upper-case hex digits, short enough to read out over the phone."""
    return secrets.token_hex(6).upper()


def accepted(value: str | None) -> str | None:
    """Return `value` if it is a well-formed id, else None."""
    if value is None or not value.isascii() or not WELL_FORMED.fullmatch(value):
        return None
    return value


def current() -> str | None:
    """The id of the request being served (None outside a request)."""
    if has_request_context():
        return request.environ.get(ENVIRON_KEY)
    return None


def last_in_thread() -> str | None:
    """The id of the latest request this thread served: the dev server logs after the app."""
    return getattr(_last, "value", None)


class RequestIdMiddleware:
    """Give each request its id (the trusted proxy's, if well-formed). The response carries it
    back from infra/security_headers.py, which already walks every response's headers once."""

    def __init__(self, app: Callable, trust_incoming: bool) -> None:
        self.app = app
        self.trust_incoming = trust_incoming

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        incoming = environ.get("HTTP_X_REQUEST_ID") if self.trust_incoming else None
        rid = accepted(incoming) or new_id()
        environ[ENVIRON_KEY] = rid
        _last.value = rid
        return self.app(environ, start_response)


def init_app(app: Flask) -> None:
    trust = bool(app.config.get("TRUST_PROXY_HOPS"))
    app.wsgi_app = RequestIdMiddleware(app.wsgi_app, trust)  # type: ignore[method-assign]
