"""The Apple revocation outbox: revoke stored Apple tokens at `/auth/revoke`, now or later.

Rows are written in the same transaction that removes an account or an Apple ID (decision D10),
so a revocation is never lost, and sent only after that commit, so an Apple outage never blocks
the deletion (TN3194). A failed send is retried with exponential backoff by
`flask apple retry-revocations`, which is safe to run from cron: each row is claimed with a
compare-and-set on `next_attempt_at` before Apple is called, so overlapping runs (or a run
overlapping the send right after a deletion) never send one row twice at once. Apple answers 200
for a token that is already revoked, so a send repeated after a crash is harmless.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta

import click
from flask import Flask
from flask import current_app
from flask.cli import AppGroup
from flask.cli import with_appcontext
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update

from ..apple.errors import AppleMisconfigured
from ..apple.errors import AppleRejected
from ..apple.errors import AppleUnavailable
from ..infra.apple_client import apple_client
from ..infra.extensions import db
from ..models import AppleRevocation
from ..models.base import now_utc
from ..users import audit
from ..users.accounts import cipher

log = logging.getLogger(__name__)

DEFAULTS = {
    "APPLE_REVOCATION_BACKOFF_BASE": 60,  # seconds before the first retry; doubles each time
    "APPLE_REVOCATION_BACKOFF_MAX": 6 * 3600,  # never wait longer than this between attempts
    "APPLE_REVOCATION_ALERT_ATTEMPTS": 8,  # log an error (alert) from this many failures on
    "APPLE_REVOCATION_LEASE": 300,  # a claimed row is not picked again for this long
}


@dataclass
class Report:
    """What one pass over the outbox did."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0  # claimed by a concurrent run
    failed_ids: list[str] = field(default_factory=list)

    @property
    def all_sent(self) -> bool:
        return self.failed == 0 and self.skipped == 0


def send_due(ids: list[str] | None = None, *, limit: int = 500) -> Report:
    """Send due outbox rows (only `ids`, if given), committing after each one.

    Stops early when Apple is unreachable: the remaining rows stay due for the next run, and a
    user waiting on a deletion does not wait for one timeout per token.
    """
    report = Report()
    if ids is not None and not ids:
        return report
    now = now_utc()
    stmt = select(AppleRevocation.id).where(
        AppleRevocation.sent_at.is_(None), AppleRevocation.next_attempt_at <= now
    )
    if ids is not None:
        stmt = stmt.where(AppleRevocation.id.in_(ids))
    due = db.session.scalars(stmt.order_by(AppleRevocation.next_attempt_at).limit(limit)).all()
    db.session.commit()
    for row_id in due:
        row = _claim(row_id, now)
        if row is None:
            report.skipped += 1
            continue
        outcome = _send(row)
        if outcome == "sent":
            report.sent += 1
            continue
        report.failed += 1
        report.failed_ids.append(row.id)
        if outcome == "unavailable":
            break
    return report


def backoff(attempts: int) -> timedelta:
    """Return how long to wait after `attempts` failures: base·2^(n-1), capped."""
    cfg = current_app.config
    base, cap = cfg["APPLE_REVOCATION_BACKOFF_BASE"], cfg["APPLE_REVOCATION_BACKOFF_MAX"]
    return timedelta(seconds=min(cap, base * 2 ** min(max(attempts - 1, 0), 30)))


def _claim(row_id: str, due_before: datetime) -> AppleRevocation | None:
    """Take a due row for this worker by pushing its next attempt past the lease; None if lost."""
    lease = timedelta(seconds=current_app.config["APPLE_REVOCATION_LEASE"])
    won = db.session.execute(
        update(AppleRevocation)
        .where(
            AppleRevocation.id == row_id,
            AppleRevocation.sent_at.is_(None),
            AppleRevocation.next_attempt_at <= due_before,
        )
        .values(next_attempt_at=now_utc() + lease)
    ).rowcount == 1
    db.session.commit()
    return db.session.get(AppleRevocation, row_id) if won else None


def _send(row: AppleRevocation) -> str:
    """Call Apple for one claimed row and record the outcome: "sent", "failed" or "unavailable"."""
    try:
        token = cipher().decrypt(row.token_encrypted)
    except ValueError:
        log.error("Apple revocation %s cannot be decrypted: check TOKEN_ENCRYPTION_KEYS", row.id)
        _failed(row, "token cannot be decrypted")
        return "failed"
    try:
        apple_client().revoke(client_id=row.client_id, token=token,
                              token_type_hint=row.token_type_hint)
    except AppleUnavailable:
        _failed(row, "Apple unavailable")
        return "unavailable"
    except AppleMisconfigured:
        log.error("Apple rejected our client credentials while revoking (invalid_client) for "
                  "client id %s: check the team id, key id and private key", row.client_id)
        _failed(row, "Apple said invalid_client")
        return "failed"
    except AppleRejected as exc:
        _failed(row, f"Apple said {exc.error}"[:200])
        return "failed"
    except Exception:  # noqa: BLE001 - a bug must neither strand the row nor break a deletion
        log.exception("Apple revocation %s failed unexpectedly", row.id)
        row_id = row.id
        db.session.rollback()
        _failed(db.session.get(AppleRevocation, row_id), "unexpected error")
        return "failed"
    row.attempts += 1
    row.sent_at = now_utc()
    row.last_error = None
    row.token_encrypted = ""  # a revoked token is worth nothing; keep no copy of it
    audit.record("apple_revocation_sent", user_id=row.user_id, client_id=row.client_id,
                 details={"revocation": row.id, "attempts": row.attempts})
    db.session.commit()
    return "sent"


def _failed(row: AppleRevocation, error: str) -> None:
    row.attempts += 1
    row.last_error = error
    row.next_attempt_at = now_utc() + backoff(row.attempts)
    level = logging.ERROR if row.attempts >= _alert_after() else logging.WARNING
    log.log(level, "Apple revocation %s failed (attempt %d, %s); next try at %s",
            row.id, row.attempts, error, row.next_attempt_at.isoformat(),
            extra={"event": "apple_revocation_failed", "client_id": row.client_id})
    audit.record("apple_revocation_failed", "failure", user_id=row.user_id,
                 client_id=row.client_id, reason=error,
                 details={"revocation": row.id, "attempts": row.attempts,
                          "next_attempt_at": row.next_attempt_at.isoformat()})
    db.session.commit()


def _alert_after() -> int:
    return int(current_app.config["APPLE_REVOCATION_ALERT_ATTEMPTS"])


def pending_summary() -> tuple[int, int]:
    """Return (rows still pending, rows pending after at least the alert number of attempts)."""
    pending = AppleRevocation.sent_at.is_(None)
    total = db.session.scalar(select(func.count()).where(pending)) or 0
    stuck = db.session.scalar(
        select(func.count()).where(pending, AppleRevocation.attempts >= _alert_after())
    ) or 0
    return total, stuck


@click.command("retry-revocations")
@with_appcontext
@click.option("--limit", default=500, show_default=True, help="Most rows to send in this run.")
def retry_revocations_command(limit: int) -> None:
    """Send pending Apple token revocations that are due (safe to run from cron).

    Exits 1 when rows have failed at least APPLE_REVOCATION_ALERT_ATTEMPTS times, so cron or a
    monitor can alert; the rows are kept and retried on every later run.
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
    group = app.cli.commands.get("apple")
    if not isinstance(group, click.Group):
        group = AppGroup("apple", help="Talk to Apple's Sign in with Apple REST API.")
        app.cli.add_command(group)
    group.add_command(retry_revocations_command)
