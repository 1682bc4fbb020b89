"""The headers siwa-web adds for safety: security headers on every response of the app (not on
the mounted emulator's pages), and the no-store pair for anything holding a secret.

Flask-free at import (the protocol core takes `NO_STORE` from here).
"""
from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    from flask import Flask

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "form-action 'self' {apple}; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
HSTS = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
#: Responses carrying tokens, claims or account data: no cache may keep them (RFC 6749 §5.1).
NO_STORE = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))
#: Where infra/request_id.py leaves the request's id; sent back as X-Request-ID from here.
REQUEST_ID_ENVIRON = "siwa.request_id"
REQUEST_ID_HEADER = "X-Request-ID"


class SecurityHeaders:
    """WSGI middleware adding each default header the response does not already have, and the
    request's id (infra/request_id.py) in place of any the app set.

    Done on the plain header list that goes to the server, in one pass: the same rule as an
    after_request hook, at a fraction of its cost (it runs on every API call).
    """

    def __init__(self, wsgi_app: Callable, defaults: list[tuple[str, str]], always_https: bool):
        self.wsgi_app = wsgi_app
        self.defaults = defaults
        self.always_https = always_https
        self._plain = tuple(defaults)
        self._https = (*defaults, HSTS)
        self._names = frozenset({name.lower() for name, _ in self._https}
                                | {REQUEST_ID_HEADER.lower()})

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        def add_defaults(status: str, headers: list[tuple[str, str]], *exc_info: Any):
            # read after the app ran, so that ProxyFix has set the forwarded scheme
            https = self.always_https or environ.get("wsgi.url_scheme") == "https"
            defaults = self._https if https else self._plain
            names = self._names
            for name, _ in headers:  # a plain loop: this runs on every response
                if name.lower() in names:  # the app set one itself: the rare, slower way
                    headers, defaults = _merge(headers, defaults)
                    break
            headers.extend(defaults)
            rid = environ.get(REQUEST_ID_ENVIRON)
            if rid is not None:
                headers.append((REQUEST_ID_HEADER, rid))
            return start_response(status, headers, *exc_info)

        return self.wsgi_app(environ, add_defaults)


def _merge(headers: list[tuple[str, str]], defaults: tuple[tuple[str, str], ...]
           ) -> tuple[list[tuple[str, str]], tuple[tuple[str, str], ...]]:
    """The app's headers without its X-Request-ID, and the defaults it did not set itself."""
    kept = [h for h in headers if h[0].lower() != REQUEST_ID_HEADER.lower()]
    present = {name.lower() for name, _ in kept}
    return kept, tuple(d for d in defaults if d[0].lower() not in present)


def init_app(app: Flask) -> None:
    defaults = [
        ("Content-Security-Policy", CSP.format(apple=app.config["APPLE_BASE_URL"])),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
    ]
    app.wsgi_app = SecurityHeaders(  # type: ignore[method-assign]
        app.wsgi_app, defaults, always_https=app.config["ISSUER"].startswith("https://"))
