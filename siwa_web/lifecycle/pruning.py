"""Retention: `flask prune` deletes rows nobody can use any more (safe to run from cron)."""
from __future__ import annotations

import json
import math
import time
from datetime import timedelta
from time import monotonic
from typing import Any

import click
from flask import Flask
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import Delete
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select

from ..infra.extensions import db
from ..models import AuditEvent
from ..models import AuthorizationCode
from ..models import BackchannelLogout
from ..models import LoginTransaction
from ..models import NotificationEvent
from ..models import PendingAuthorization
from ..models import PendingProfile
from ..models import TokenFamily
from ..models import WebSession
from ..models.base import now_utc


class RetentionError(ValueError):
    """A retention setting would delete what must be kept; the message names it."""


def _days(key: str) -> int:
    """A retention setting as a whole number of days, at least 1: 0 or less would delete rows
    still in use, and a typo such as "30d" would end in a traceback instead of its name."""
    raw = current_app.config.get(key)
    try:
        if isinstance(raw, bool):
            raise ValueError
        days = int(raw)
    except (TypeError, ValueError):
        raise RetentionError(f"{key} (SIWA_{key}) must be a whole number of days, "
                             f"got {raw!r}") from None
    if days < 1:
        raise RetentionError(f"{key} (SIWA_{key}) must be at least 1 day, got {raw!r}")
    return days


def _statements() -> dict[str, Any]:
    """One DELETE per table, for rows older than the retention settings."""
    cfg = current_app.config
    now = now_utc()
    grace = now - timedelta(days=_days("PRUNE_AFTER_DAYS"))
    audit_cutoff = now - timedelta(days=_days("AUDIT_RETENTION_DAYS"))
    idle = timedelta(seconds=cfg["SESSION_IDLE_TIMEOUT"])
    return {
        # a trip to Apple that ended (used or expired) more than a day ago
        "login_transactions": delete(LoginTransaction).where(
            LoginTransaction.expires_at < now - timedelta(days=1)),
        # an app's authorization request that waited (for sign-in or consent) and ended
        "pending_authorizations": delete(PendingAuthorization).where(
            PendingAuthorization.expires_at < now - timedelta(days=1)),
        # authorization codes live a minute; kept a day for replay detection, then gone
        "authorization_codes": delete(AuthorizationCode).where(
            AuthorizationCode.expires_at < now - timedelta(days=1)),
        # back-channel logouts delivered long ago (undelivered ones stay for `outbox retry`)
        "backchannel_logouts": delete(BackchannelLogout).where(
            BackchannelLogout.sent_at < grace),
        # a name Apple sent for a sign-in that never completed
        "pending_profiles": delete(PendingProfile).where(PendingProfile.created_at < grace),
        "web_sessions": delete(WebSession).where(or_(
            WebSession.revoked_at < grace, WebSession.last_seen_at < grace - idle)),
        "token_families": delete(TokenFamily).where(or_(
            TokenFamily.revoked_at < grace, TokenFamily.expires_at < grace)),
        # notifications older than this are refused by their `exp` anyway
        "notification_events": delete(NotificationEvent).where(
            NotificationEvent.received_at < grace),
        "audit_events": delete(AuditEvent).where(AuditEvent.created_at < audit_cutoff),
    }


def _positive(value: Any, name: str, kind: type) -> Any:
    """A batch size, pause or ratio as a finite number of the right kind (pause may be 0)."""
    try:
        if isinstance(value, bool):
            raise ValueError
        number = kind(value)
        if not math.isfinite(number):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise RetentionError(f"{name} must be a number, got {value!r}") from None
    if number < (1 if kind is int else 0):
        raise RetentionError(f"{name} must be at least {1 if kind is int else 0}, got {value!r}")
    return number


def delete_one_batch(stmt: Delete, batch_size: int) -> tuple[int, int]:
    """Delete at most `batch_size` of the rows `stmt` would; returns (found, deleted).

    Two bounded statements: the keys (SELECT ... LIMIT n, a range scan on the WHERE column's
    index where few rows match), then DELETE ... WHERE key IN (those keys), which probes the
    primary key. A single DELETE ... WHERE key IN (SELECT ... LIMIT n) let PostgreSQL hash the
    keys and scan the whole table for them, every batch. Does not commit.
    """
    table = stmt.table
    (key,) = table.primary_key.columns  # every pruned table has a one-column key
    keys = db.session.scalars(select(key).where(stmt.whereclause).limit(batch_size)).all()
    if not keys:
        return 0, 0
    return len(keys), db.session.execute(delete(table).where(key.in_(keys))).rowcount


def _delete_batches(stmt: Delete, batch_size: int, pause: float, ratio: float) -> int:
    """Run `stmt` as repeated batches of at most `batch_size` rows, each committed at once.

    A single DELETE of a million rows holds its row locks and its snapshot for the whole run and
    writes one huge burst of WAL; refreshes that touch the same tables would queue behind it.
    Batches keep every transaction short. Between them it sleeps `pause` plus `ratio` times
    as long as the batch took: the database's work for the prune then takes at most
    1 / (1 + ratio) of the run whatever the machine's speed, and live traffic gets the rest
    (without it, back-to-back batches on a 2-core machine took a whole core from the app).
    """
    deleted = 0
    while True:
        started = monotonic()
        found, count = delete_one_batch(stmt, batch_size)
        db.session.commit()
        deleted += count
        if found < batch_size:
            return deleted
        wait = pause + ratio * (monotonic() - started)
        if wait > 0:
            time.sleep(wait)


def prune(*, dry_run: bool = False, batch_size: int | None = None,
          pause: float | None = None, sleep_ratio: float | None = None) -> dict[str, int]:
    """Delete dead rows older than the retention settings; returns counts per table.

    Deletes in batches of `batch_size` rows (default PRUNE_BATCH_SIZE), one short transaction
    each, sleeping `pause` seconds (default PRUNE_PAUSE_SECONDS) plus `sleep_ratio` (default
    PRUNE_SLEEP_RATIO) times the batch's own time between batches. With
    `dry_run`, count what would go and delete nothing (the same WHERE clauses, as SELECT
    COUNT(*)). :raises RetentionError: for a setting that is not a positive number.
    """
    statements = _statements()
    cfg = current_app.config
    size = _positive(cfg["PRUNE_BATCH_SIZE"] if batch_size is None else batch_size,
                     "PRUNE_BATCH_SIZE (SIWA_PRUNE_BATCH_SIZE, --batch-size)", int)
    wait = _positive(cfg["PRUNE_PAUSE_SECONDS"] if pause is None else pause,
                     "PRUNE_PAUSE_SECONDS (SIWA_PRUNE_PAUSE_SECONDS, --pause)", float)
    ratio = _positive(cfg["PRUNE_SLEEP_RATIO"] if sleep_ratio is None else sleep_ratio,
                      "PRUNE_SLEEP_RATIO (SIWA_PRUNE_SLEEP_RATIO, --sleep-ratio)", float)
    if dry_run:
        counts = {}
        for name, stmt in statements.items():
            table = stmt.table
            counts[name] = db.session.execute(
                select(func.count()).select_from(table).where(stmt.whereclause)).scalar_one()
        db.session.rollback()
        return counts
    return {name: _delete_batches(stmt, size, wait, ratio) for name, stmt in statements.items()}


@click.command("prune")
@click.option("--dry-run", is_flag=True,
              help="Print how many rows would be deleted, per table, and delete nothing.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Rows per DELETE, each its own transaction (default PRUNE_BATCH_SIZE, 1000).")
@click.option("--pause", type=click.FloatRange(min=0), default=None,
              help="Seconds to sleep between batches (default PRUNE_PAUSE_SECONDS, 0).")
@click.option("--sleep-ratio", type=click.FloatRange(min=0), default=None,
              help="Also sleep this many times as long as each batch took (default "
                   "PRUNE_SLEEP_RATIO, 1: the database busy at most half the run; 0: flat out).")
@with_appcontext
def prune_command(dry_run: bool, batch_size: int | None, pause: float | None,
                  sleep_ratio: float | None) -> None:
    """Delete rows nobody can use any more and print the count per table as JSON.

    Login attempts, pending authorizations and authorization codes that ended more than a day
    ago; sessions, app sessions (token families), delivered back-channel logouts, Apple
    notifications and names Apple sent for sign-ins that never completed, once revoked,
    expired or idle more than PRUNE_AFTER_DAYS (default 30) ago (web sessions: after
    SESSION_IDLE_TIMEOUT too); audit events older than AUDIT_RETENTION_DAYS (default 365).
    Both settings must be whole numbers of days, at least 1. Deletes in batches of
    PRUNE_BATCH_SIZE rows, each committed at once, pausing PRUNE_PAUSE_SECONDS plus
    PRUNE_SLEEP_RATIO times the batch's own time between them, so it can run beside live
    traffic. Reads SQLALCHEMY_DATABASE_URI. Safe to run from cron and to overlap.
    """
    try:
        counts = prune(dry_run=dry_run, batch_size=batch_size, pause=pause,
                       sleep_ratio=sleep_ratio)
    except RetentionError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(json.dumps({"would_delete": counts} if dry_run else counts, sort_keys=True))


def init_app(app: Flask) -> None:
    app.cli.add_command(prune_command)
