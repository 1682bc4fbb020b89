"""Retention: `flask prune` deletes rows nobody can use any more (safe to run from cron)."""
from __future__ import annotations

import json
from datetime import timedelta

import click
from flask import Flask
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import delete
from sqlalchemy import or_

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


def prune() -> dict[str, int]:
    """Delete dead rows older than the retention settings; returns counts per table."""
    cfg = current_app.config
    now = now_utc()
    grace = now - timedelta(days=cfg["PRUNE_AFTER_DAYS"])
    idle = timedelta(seconds=cfg["SESSION_IDLE_TIMEOUT"])
    statements = {
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
        "audit_events": delete(AuditEvent).where(
            AuditEvent.created_at < now - timedelta(days=cfg["AUDIT_RETENTION_DAYS"])),
    }
    counts = {name: db.session.execute(stmt).rowcount for name, stmt in statements.items()}
    db.session.commit()
    return counts


@click.command("prune")
@with_appcontext
def prune_command() -> None:
    """Delete expired login attempts, dead sessions and token families, and old audit events."""
    click.echo(json.dumps(prune(), sort_keys=True))


def init_app(app: Flask) -> None:
    app.cli.add_command(prune_command)
