"""Write audit events: who did what, from where, with which outcome — never secrets."""
from __future__ import annotations

from typing import Any

from flask import has_request_context
from flask import request
from sqlalchemy import insert

from ..infra.extensions import db
from ..models import AuditEvent

_INSERT = insert(AuditEvent.__table__)


def _clean(value: str | None, limit: int) -> str | None:
    """Drop control characters so attacker text cannot forge log or audit lines."""
    if value is None:
        return None
    return "".join(ch if ch.isprintable() else "?" for ch in value)[:limit]


def _values(
    event: str, outcome: str, user_id: str | None, reason: str | None, client_id: str | None,
    details: dict[str, Any] | None,
) -> dict[str, Any]:
    ip = ua = None
    if has_request_context():
        ip = request.remote_addr
        ua = request.headers.get("User-Agent")
    return {
        "event": event, "outcome": outcome, "user_id": user_id, "reason": _clean(reason, 100),
        "client_id": _clean(client_id, 255), "ip": _clean(ip, 64), "user_agent": _clean(ua, 512),
        "details": details or {},
    }


def record(
    event: str,
    outcome: str = "success",
    *,
    user_id: str | None = None,
    reason: str | None = None,
    client_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Add an event to the current transaction; it commits (or rolls back) with the change."""
    db.session.add(AuditEvent(**_values(event, outcome, user_id, reason, client_id, details)))


def record_now(
    event: str,
    *,
    user_id: str | None = None,
    reason: str | None = None,
    client_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Like `record`, but INSERT at once, without the unit of work (the refresh hot path)."""
    values = _values(event, "success", user_id, reason, client_id, details)
    db.session.connection().execute(_INSERT, values)


def record_failure(event: str, reason: str, **kwargs: Any) -> None:
    """Record a failure in its own transaction, after the failed work was rolled back."""
    db.session.rollback()
    record(event, "failure", reason=reason, **kwargs)
    db.session.commit()
