"""The Apple revocation outbox: revoke stored Apple tokens at `/auth/revoke`, now or later.

Rows are written in the same transaction that removes an account or an Apple ID (decision D10)
and sent after it commits, so an Apple outage never blocks the deletion (TN3194); retries,
leases and backoff are the shared outbox's (`outbox.py`). Apple answers 200 for a token that is
already revoked, so a send repeated after a crash is harmless.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

import click
from flask import Flask
from flask.cli import with_appcontext

from ..apple.errors import AppleMisconfigured
from ..apple.errors import AppleRejected
from ..apple.errors import AppleUnavailable
from ..infra.apple_client import apple_client
from ..infra.cli_groups import add_apple_command
from ..infra.extensions import db
from ..models import AppleRevocation
from ..users import deletion
from ..users.accounts import cipher
from .outbox import Outbox
from .outbox import Report as OutboxReport
from .outbox import SendFailed

log = logging.getLogger(__name__)


def _send_to_apple(row: AppleRevocation) -> dict | None:
    """Revoke one row's token at Apple; the plaintext never outlives the call."""
    try:
        token = cipher().decrypt(row.token_encrypted)
    except ValueError:
        log.error("Apple revocation %s cannot be decrypted: check TOKEN_ENCRYPTION_KEYS", row.id,
                  extra={"event": "apple_revocation_undecryptable"})
        raise SendFailed("token cannot be decrypted") from None
    try:
        apple_client().revoke(client_id=row.client_id, token=token,
                              token_type_hint=row.token_type_hint)
    except AppleUnavailable:
        raise SendFailed("Apple unavailable", stop=True) from None
    except AppleMisconfigured:
        log.error("Apple rejected our client credentials while revoking (invalid_client) for "
                  "client id %s: check the team id, key id and private key", row.client_id,
                  extra={"event": "apple_invalid_client", "client_id": row.client_id})
        raise SendFailed("Apple said invalid_client") from None
    except AppleRejected as exc:
        raise SendFailed(f"Apple said {exc.error}") from None
    row.token_encrypted = ""  # a revoked token is worth nothing; keep no copy of it
    return None


APPLE_REVOCATIONS = Outbox(
    model=AppleRevocation, label="Apple revocation", event="apple_revocation",
    prefix="APPLE_REVOCATION", send_one=_send_to_apple, logger=log)
DEFAULTS = APPLE_REVOCATIONS.defaults()
Report = OutboxReport


def send_due(ids: list[str] | None = None, *, limit: int = 500) -> OutboxReport:
    """Send due revocations (only `ids`, if given); see `Outbox.send_due`."""
    return APPLE_REVOCATIONS.send_due(ids, limit=limit)


def delete_account(
    user_id: str, *, record: Callable[[deletion.Removed], None] | None = None,
) -> tuple[deletion.Removed, OutboxReport]:
    """Delete an account and commit, then tell Apple (decision D10); the one way to delete.

    The dashboard and `flask users delete` both come through here. `record` adds the caller's
    own audit event to the deletion's transaction, knowing what was removed. The outbox is sent
    only after the commit, so Apple being down never holds the deletion up.

    :raises LookupError: if the user is gone already (rolled back; nothing changed).
    """
    try:
        removed = deletion.delete_account(user_id)
    except LookupError:
        db.session.rollback()
        raise
    if record is not None:
        record(removed)
    db.session.commit()
    return removed, send_due(removed.revocation_ids)


def backoff(attempts: int) -> timedelta:
    return APPLE_REVOCATIONS.backoff(attempts)


def pending_summary() -> tuple[int, int]:
    return APPLE_REVOCATIONS.pending_summary()


def _alert_after() -> int:
    return APPLE_REVOCATIONS.alert_after()


@click.command("retry-revocations")
@with_appcontext
@click.option("--limit", default=500, show_default=True, type=click.IntRange(min=1),
              help="Most rows to send in this run (at least 1).")
def retry_revocations_command(limit: int) -> None:
    """Send pending Apple token revocations that are due (safe to run from cron).

    `flask outbox retry` sends these and web apps' back-channel logouts; this sends only these.
    Reads SQLALCHEMY_DATABASE_URI, the Apple settings it revokes with (APPLE_BASE_URL,
    APPLE_TEAM_ID, APPLE_KEY_ID, APPLE_PRIVATE_KEY), TOKEN_ENCRYPTION_KEYS (the stored Apple
    tokens are encrypted), APPLE_REVOCATION_BACKOFF_BASE / _BACKOFF_MAX / _LEASE, and
    APPLE_REVOCATION_ALERT_ATTEMPTS: it exits 1 when rows have failed at least that many times,
    so cron or a monitor can alert; the rows are kept and retried on every later run.
    """
    report = send_due(limit=limit)
    total, stuck = pending_summary()
    click.echo(f"Apple revocations: {report.sent} sent, {report.failed} failed, "
               f"{report.skipped} skipped (claimed by another run), {total} still pending.")
    if stuck:
        click.echo(f"{stuck} revocation(s) have failed {_alert_after()} or more times; see the "
                   "apple_revocation_failed log lines for Apple's answer.", err=True)
        raise SystemExit(1)


def init_app(app: Flask) -> None:
    """Add the config defaults and `flask apple retry-revocations` (joining an existing group)."""
    for key, value in DEFAULTS.items():
        app.config.setdefault(key, value)
    add_apple_command(app, retry_revocations_command)
