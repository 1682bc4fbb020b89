"""Browser pages on ISSUER's host only: cookies set on another name never reach the callback.

Opening `http://127.0.0.1:5000` while ISSUER says `http://localhost:5000` puts the sign-in
attempt's cookie on 127.0.0.1, and Apple then posts back to localhost: the sign-in fails as
"started in another browser". In development a GET or HEAD is sent to the same path on
ISSUER's host; anything else, and every request in production, gets a page naming the host to
use. The target is built from ISSUER alone, never from the request's Host header, so a forged
Host cannot turn this into an open redirect. JSON endpoints and health probes are left alone:
machines may reach them by any name.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask
from flask import redirect
from flask import request
from flask.typing import ResponseReturnValue

from .. import config
from .errors import render_error
from .errors import wants_json

DEFAULT_PORTS = {"http": "80", "https": "443"}
MACHINE_PATHS = ("/healthz", "/readyz", "/metrics", "/static/")  # probes use any address


def normal_host(host: str, scheme: str) -> str:
    """Lower-case `host`, without the scheme's default port (`siwa.test:443` is `siwa.test`)."""
    host = host.strip().lower().rstrip(".")
    name, _, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    if name and port == DEFAULT_PORTS.get(scheme):
        return name
    return host


def init_app(app: Flask) -> None:
    """Check the host before every other hook (CSRF, rate limits, sessions) when enabled."""
    if not app.config.get("ENFORCE_ISSUER_HOST", True):
        return
    issuer = urlsplit(app.config["ISSUER"])
    expected = normal_host(issuer.netloc, issuer.scheme)
    origin = f"{issuer.scheme}://{issuer.netloc}"
    develop = not config.is_production(app)
    # The Host headers that are ISSUER's as sent (`siwa.test`, `siwa.test:443`): one set lookup
    # answers nearly every request; anything else takes the full comparison.
    exact = {expected, f"{expected}:{DEFAULT_PORTS.get(issuer.scheme)}", issuer.netloc}

    def on_issuer_host() -> ResponseReturnValue | None:
        if request.environ.get("HTTP_HOST") in exact or \
                normal_host(request.host, issuer.scheme) == expected:
            return None
        if request.path.startswith(MACHINE_PATHS) or wants_json():
            return None
        if develop and request.method in ("GET", "HEAD"):
            target = origin + request.root_path + request.path
            query = request.query_string.decode("latin-1")
            return redirect(f"{target}?{query}" if query else target, code=307)
        body, status = render_error(
            421, f"siwa-web answers at {expected}",
            f"This server is set up for {origin} only, and this request was sent to another "
            "address. Nothing was changed.",
            f"Open {origin}/ and start again from there.")
        return body, status, {"Cache-Control": "no-store"}

    app.before_request_funcs.setdefault(None, []).insert(0, on_issuer_host)
