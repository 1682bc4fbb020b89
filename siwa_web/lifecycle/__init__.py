"""After sign-in: Apple's notifications, the outboxes (revocations, logouts), pruning."""
from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Apple's notification endpoint, the outboxes (Apple revocations, back-channel logouts)
    with `flask outbox retry` and `flask apple retry-revocations`, the daily Apple token check
    `flask apple validate-tokens`, and `flask prune`."""
    from . import backchannel
    from . import cli
    from . import notifications
    from . import pruning
    from . import revocations
    from . import transfer
    from . import validation

    notifications.init_app(app)
    revocations.init_app(app)
    validation.init_app(app)
    backchannel.init_app(app)
    cli.init_app(app)
    pruning.init_app(app)
    transfer.init_app(app)  # `flask apple transfer ...` (team transfer)
