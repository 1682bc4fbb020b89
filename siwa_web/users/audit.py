"""Write audit events: who did what, from where, with which outcome — never secrets.

Each event is also written to the log, once its transaction commits (a rolled-back change
logs nothing), with its code from `models/events.py`; the IP and browser stay in the table.
"""
from __future__ import annotations

import logging
from typing import Any

from flask import has_request_context
from flask import request
from sqlalchemy import event as sa_event
from sqlalchemy import insert
from sqlalchemy.orm import Session

from ..infra.extensions import db
from ..models import AuditEvent

_INSERT = insert(AuditEvent.__table__)
log = logging.getLogger("siwa_web.audit")
_PENDING = "siwa_audit_log"  # Session.info key: the lines to log when the transaction commits


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
    log_level: int | None = logging.INFO,
) -> None:
    """Add an event to the current transaction; it commits (or rolls back) with the change.

    `log_level` is the level of its log line; None when the caller writes its own line.
    """
    values = _values(event, outcome, user_id, reason, client_id, details)
    db.session.add(AuditEvent(**values))
    _log_on_commit(values, log_level)


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
    _log_on_commit(values, logging.INFO)


def record_failure(event: str, reason: str, **kwargs: Any) -> None:  # kwargs: see `record`
    """Record a failure in its own transaction, after the failed work was rolled back."""
    db.session.rollback()
    record(event, "failure", reason=reason, **kwargs)
    db.session.commit()


def _log_on_commit(values: dict[str, Any], level: int | None) -> None:
    if level is None:
        return
    db.session.info.setdefault(_PENDING, []).append((values, level))


@sa_event.listens_for(Session, "after_commit")
def _write_log(session: Session) -> None:
    """Log the committed transaction's audit events, one line each."""
    for values, level in session.info.pop(_PENDING, ()):
        log.log(level, "%s %s%s", values["event"], values["outcome"],
                f": {values['reason']}" if values["reason"] else "", extra={
            "event": values["event"], "outcome": values["outcome"], "reason": values["reason"],
            "user_id": values["user_id"], "client_id": values["client_id"],
            "details": values["details"],
        })


@sa_event.listens_for(Session, "after_soft_rollback")
def _forget(session: Session, previous_transaction: Any) -> None:
    """A rolled-back transaction's events never happened: log none of them."""
    if previous_transaction.parent is None:  # the whole transaction, not a savepoint
        session.info.pop(_PENDING, None)
