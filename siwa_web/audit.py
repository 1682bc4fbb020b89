"""Write audit events: who did what, from where, with which outcome — never secrets."""
from __future__ import annotations

from typing import Any

from flask import has_request_context
from flask import request

from .extensions import db
from .models import AuditEvent


def _clean(value: str | None, limit: int) -> str | None:
    """Drop control characters so attacker text cannot forge log or audit lines."""
    if value is None:
        return None
    return "".join(ch if ch.isprintable() else "?" for ch in value)[:limit]


def record(
    event: str,
    outcome: str = "success",
    *,
    user_id: str | None = None,
    reason: str | None = None,
    client_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an event to the current transaction; it commits (or rolls back) with the change."""
    ip = ua = None
    if has_request_context():
        ip = request.remote_addr
        ua = request.headers.get("User-Agent")
    row = AuditEvent(
        event=event,
        outcome=outcome,
        user_id=user_id,
        reason=_clean(reason, 100),
        client_id=_clean(client_id, 255),
        ip=_clean(ip, 64),
        user_agent=_clean(ua, 512),
        details=details or {},
    )
    db.session.add(row)
    return row


def record_failure(event: str, reason: str, **kwargs: Any) -> None:
    """Record a failure in its own transaction, after the failed work was rolled back."""
    db.session.rollback()
    record(event, "failure", reason=reason, **kwargs)
    db.session.commit()
