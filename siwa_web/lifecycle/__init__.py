"""What happens after sign-in on Apple's side: notifications, revocation outbox, pruning."""
from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Apple's notification endpoint, `flask apple retry-revocations` and `flask prune`."""
    from . import notifications
    from . import pruning
    from . import revocations

    notifications.init_app(app)
    revocations.init_app(app)
    pruning.init_app(app)
