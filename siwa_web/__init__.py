"""siwa-web: Sign in with Apple for browsers and native apps, with our own tokens."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    from flask import Flask

ROOT = Path(__file__).resolve().parent.parent


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: config (defaults → instance/config.py → SIWA_* → test dict), then parts."""
    # Imported here, not at the top: `import siwa_web.oauth` (the Flask-free core) runs this
    # package's __init__ first, and must not load Flask (tests/test_architecture.py).
    from werkzeug.middleware.proxy_fix import ProxyFix

    from . import config
    from .infra.flask_class import SiwaFlask
    from .infra.json_provider import ReusedEncoderJSONProvider

    app = SiwaFlask(
        __name__,
        instance_path=str(ROOT / "instance"),
        instance_relative_config=True,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    app.json = ReusedEncoderJSONProvider(app)
    config.load(app, test_config)
    if app.config["TRUST_PROXY_HOPS"]:
        hops = int(app.config["TRUST_PROXY_HOPS"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    from . import account
    from . import emulator
    from . import infra
    from . import lifecycle
    from . import ops
    from . import provider
    from . import tokens
    from . import web

    infra.init_app(app)      # logs, database, CSRF, rate limits, headers, the Apple client
    web.init_app(app)        # browser sign-in, web sessions, error pages
    emulator.init_app(app)   # the offline Apple, when configured
    account.init_app(app)    # the dashboard
    tokens.init_app(app)     # the token service and Bearer APIs
    provider.init_app(app)   # web apps signing in through siwa-web (authorize, consent)
    lifecycle.init_app(app)  # Apple's notifications, the revocation outbox, pruning
    ops.init_app(app)        # health probes, support commands (flask users)
    infra.ratelimit.finish(app)  # every blueprint is in: drop limiter hooks with nothing to do
    return app


