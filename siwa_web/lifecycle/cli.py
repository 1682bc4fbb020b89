"""`flask outbox retry`: send what is due in every outbox (safe to run from cron and to overlap)."""
from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from .backchannel import BACKCHANNEL_LOGOUTS
from .outbox import Outbox
from .revocations import APPLE_REVOCATIONS

OUTBOXES: tuple[tuple[str, Outbox], ...] = (
    ("Apple revocations", APPLE_REVOCATIONS),
    ("Back-channel logouts", BACKCHANNEL_LOGOUTS),
)
outbox_cli = AppGroup("outbox", help="Deliveries siwa-web owes other servers: Apple token "
                                     "revocations and web apps' back-channel logouts.")


@outbox_cli.command("retry")
@click.option("--limit", default=500, show_default=True, type=click.IntRange(min=1),
              help="Most rows to send per outbox in this run (at least 1).")
def retry(limit: int) -> None:
    """Send every due row of every outbox; exit 1 if a row keeps failing.

    A row that failed `<OUTBOX>_ALERT_ATTEMPTS` times (APPLE_REVOCATION_ALERT_ATTEMPTS,
    BACKCHANNEL_LOGOUT_ALERT_ATTEMPTS) makes the command exit 1, so cron mails you; the row is
    kept and retried on every later run.

    Reads SQLALCHEMY_DATABASE_URI; for Apple, APPLE_BASE_URL, APPLE_TEAM_ID, APPLE_KEY_ID,
    APPLE_PRIVATE_KEY and TOKEN_ENCRYPTION_KEYS; the backoff and lease settings of each outbox
    (APPLE_REVOCATION_*, BACKCHANNEL_LOGOUT_*, including the delivery timeouts).
    """
    stuck_any = False
    for label, outbox in OUTBOXES:
        report = outbox.send_due(limit=limit)
        total, stuck = outbox.pending_summary()
        click.echo(f"{label}: {report.sent} sent, {report.failed} failed, {report.skipped} "
                   f"skipped (claimed by another run), {total} still pending.")
        if stuck:
            stuck_any = True
            click.echo(f"{label}: {stuck} row(s) failed {outbox.alert_after()} or more times; "
                       f"see the {outbox.event}_failed log lines.", err=True)
    if stuck_any:
        raise SystemExit(1)


def init_app(app: Flask) -> None:
    app.cli.add_command(outbox_cli)
