"""Build the emulator as its own small Flask app, and mount it inside siwa-web for `make run`."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from flask import Flask
from flask import Response
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException
from werkzeug.http import http_date
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from .. import config
from ..infra.json_provider import ReusedEncoderJSONProvider
from .errors import apple_json
from .settings import EmulatorSettings
from .settings import settings_from_app
from .state import EmulatorState
from .web import STATE_KEY
from .web import current_state

ROOT = Path(__file__).resolve().parent.parent.parent
EXTENSION_KEY = "siwa.emulator"
PAGE_CSP = "default-src 'self'; base-uri 'none'; frame-ancestors 'none'"


def create_emulator_app(settings: EmulatorSettings) -> Flask:
    """A separate app with its own state (in memory, or in `settings.state_file` if given)."""
    _check_keys(settings)
    app = Flask(
        "siwa_web.emulator",
        template_folder=str(ROOT / "templates" / "emulator"),
        static_folder=str(ROOT / "static" / "emulator"),
        static_url_path="/static",
    )
    app.json = ReusedEncoderJSONProvider(app)  # depth-bounded request JSON, as siwa-web's own
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    state = EmulatorState(settings)
    app.extensions[STATE_KEY] = state
    from . import admin_flows  # noqa: F401  (adds its routes to the admin blueprint)
    from . import consent  # noqa: F401  (the same: out-of-band consent withdrawal)
    from . import views_migration  # noqa: F401  (team transfer: oauth and admin routes)
    from .admin import bp as admin_bp
    from .views_authorize import bp as authorize_bp
    from .views_oauth import bp as oauth_bp

    for bp in (oauth_bp, authorize_bp, admin_bp):
        app.register_blueprint(bp)
    app.after_request(_page_headers)
    app.register_error_handler(HTTPException, _http_error)
    if settings.state_file is not None:
        _keep_state_on_disk(app, state)
    return app


def _keep_state_on_disk(app: Flask, state: EmulatorState) -> None:
    """Reload what another process saved before each request; save what changed after it."""

    @app.after_request
    def _save(response: Response) -> Response:
        state.persist()
        return response

    app.before_request(state.sync)


def _check_keys(settings: EmulatorSettings) -> None:
    """Fail at start-up, not on the first token call, when a client key is not EC P-256."""
    for kid, pem in settings.client_keys.items():
        try:
            key = load_pem_public_key(pem.encode())
        except ValueError as exc:
            raise ValueError(f"client_keys[{kid!r}] is not a PEM public key") from exc
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise ValueError(f"client_keys[{kid!r}] must be an EC P-256 key")


def _page_headers(response: Response) -> Response:
    """Pages load only the emulator's own CSS and JS; nothing may frame them.

    Every answer is dated by Apple's (shiftable) clock, so clock-skew checks can be tested.
    """
    response.headers["Date"] = http_date(current_state().now())
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def _http_error(exc: HTTPException) -> ResponseReturnValue:
    name = (exc.name or "error").lower().replace(" ", "_")
    return apple_json({"error": name}, exc.code or 500)


def should_mount(app: Flask) -> bool:
    """Mount only when siwa-web is configured to talk to `<ISSUER>/__apple`."""
    cfg = app.config
    return bool(cfg.get("APPLE_EMULATOR")) and (
        cfg.get("APPLE_BASE_URL") == cfg["ISSUER"] + config.EMULATOR_MOUNT
    )


def mount(app: Flask) -> Flask:
    """Serve the emulator at /__apple in the same process (one process for `make run`)."""
    emulator = create_emulator_app(settings_from_app(app))
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {config.EMULATOR_MOUNT: emulator})
    app.extensions[EXTENSION_KEY] = emulator
    _route_apple_client(app, emulator)
    return emulator


def _route_apple_client(app: Flask, emulator: Flask) -> None:
    """Send the app's own Apple calls straight to the mounted emulator (no HTTP to itself)."""
    from ..infra.apple_client import EXTENSION_KEY as APPLE_KEY
    from .transport import WSGIAdapter

    client = app.extensions.get(APPLE_KEY)
    if client is not None:
        base = app.config["APPLE_BASE_URL"]
        client.session.mount(base + "/", WSGIAdapter(emulator, urlsplit(base).path))
