"""One outbox mechanism for everything siwa-web must tell another server after a commit.

Rows are written in the same transaction as the change that needs telling (so nothing is ever
lost) and sent only after it commits (so a slow or dead receiver never blocks the person's
action). A failed send is retried with exponential backoff by `flask outbox retry`, safe to run
from cron: each row is claimed with a compare-and-set on `next_attempt_at` (a lease) before the
receiver is called, so overlapping runs never send one row twice at once. Receivers must take a
repeat calmly (Apple's revocation and back-channel logout both do).

Each outbox is an `Outbox`: its table (with `id`, `attempts`, `next_attempt_at`, `last_error`,
`sent_at`, `user_id`, `client_id`), its settings prefix and the function that sends one row.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import Select
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update

from ..infra.extensions import db
from ..models.base import now_utc
from ..users import audit

log = logging.getLogger(__name__)


class SendFailed(Exception):
    """This row could not be sent; `error` is kept on the row (never a secret)."""

    def __init__(self, error: str, *, stop: bool = False) -> None:
        super().__init__(error)
        self.error = error[:200]
        self.stop = stop  # the receiver is down: leave the rest of this run for later


@dataclass
class Report:
    """What one pass over an outbox did."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0  # claimed by a concurrent run
    failed_ids: list[str] = field(default_factory=list)

    @property
    def all_sent(self) -> bool:
        return self.failed == 0 and self.skipped == 0


@dataclass(frozen=True)
class Outbox:
    """A table of things to send, and how to send one."""

    model: Any
    label: str  # "Apple revocation": how logs and the CLI name a row
    event: str  # "apple_revocation": audit events `<event>_sent` / `<event>_failed`
    prefix: str  # settings `<prefix>_BACKOFF_BASE`, `_BACKOFF_MAX`, `_ALERT_ATTEMPTS`, `_LEASE`
    send_one: Callable[[Any], dict[str, Any] | None]  # raises SendFailed; returns audit details
    logger: logging.Logger = log  # the outbox's own module logger, for its log lines

    def defaults(self, base: int = 60, cap: int = 6 * 3600, alert: int = 8,
                 lease: int = 300) -> dict[str, int]:
        return {f"{self.prefix}_BACKOFF_BASE": base, f"{self.prefix}_BACKOFF_MAX": cap,
                f"{self.prefix}_ALERT_ATTEMPTS": alert, f"{self.prefix}_LEASE": lease}

    def _setting(self, name: str) -> int:
        return int(current_app.config[f"{self.prefix}_{name}"])

    def send_due(self, ids: list[str] | None = None, *, limit: int = 500) -> Report:
        """Send due rows (only `ids`, if given), committing after each one; stop early when the
        receiver is down, so the rest waits for the next run instead of one timeout each."""
        report = Report()
        if ids is not None and not ids:
            return report
        now = now_utc()
        due = db.session.scalars(self.due_statement(now, ids, limit)).all()
        db.session.commit()
        for row_id in due:
            row = self._claim(row_id, now)
            if row is None:
                report.skipped += 1
                continue
            stop = self._send(row, report)
            if stop:
                break
        return report

    def due_statement(self, now: datetime, ids: list[str] | None = None,
                      limit: int = 500) -> Select:
        """The ids of unsent rows due by `now`, oldest first: the claim's candidates (its own
        function so bench/datasize.py can EXPLAIN it at production size)."""
        model = self.model
        stmt = select(model.id).where(model.sent_at.is_(None), model.next_attempt_at <= now)
        if ids is not None:
            stmt = stmt.where(model.id.in_(ids))
        return stmt.order_by(model.next_attempt_at).limit(limit)

    def backoff(self, attempts: int) -> timedelta:
        """How long to wait after `attempts` failures: base·2^(n-1), capped."""
        base, cap = self._setting("BACKOFF_BASE"), self._setting("BACKOFF_MAX")
        return timedelta(seconds=min(cap, base * 2 ** min(max(attempts - 1, 0), 30)))

    def _claim(self, row_id: str, due_before: datetime) -> Any:
        """Take a due row by pushing its next attempt past the lease; None if another run won."""
        model = self.model
        lease = timedelta(seconds=self._setting("LEASE"))
        won = db.session.execute(
            update(model)
            .where(model.id == row_id, model.sent_at.is_(None),
                   model.next_attempt_at <= due_before)
            .values(next_attempt_at=now_utc() + lease)
        ).rowcount == 1
        db.session.commit()
        return db.session.get(model, row_id) if won else None

    def _send(self, row: Any, report: Report) -> bool:
        """Send one claimed row and record the outcome; True if the run should stop."""
        try:
            details = self.send_one(row)
        except SendFailed as exc:
            self._failed(row, exc.error)
            report.failed += 1
            report.failed_ids.append(row.id)
            return exc.stop
        except Exception:  # noqa: BLE001 - a bug must neither strand the row nor break the caller
            self.logger.exception("%s %s failed unexpectedly", self.label, row.id,
                                  extra={"event": "outbox_crash"})
            row_id = row.id
            db.session.rollback()
            self._failed(db.session.get(self.model, row_id), "unexpected error")
            report.failed += 1
            report.failed_ids.append(row_id)
            return False
        row.attempts += 1
        row.sent_at = now_utc()
        row.last_error = None
        audit.record(f"{self.event}_sent", user_id=row.user_id, client_id=row.client_id,
                     details={self.event.split("_")[-1]: row.id, "attempts": row.attempts,
                              **(details or {})})
        db.session.commit()
        report.sent += 1
        return False

    def _failed(self, row: Any, error: str) -> None:
        row.attempts += 1
        row.last_error = error
        row.next_attempt_at = now_utc() + self.backoff(row.attempts)
        level = logging.ERROR if row.attempts >= self.alert_after() else logging.WARNING
        self.logger.log(level, "%s %s failed (attempt %d, %s); next try at %s",
                self.label, row.id, row.attempts, error, row.next_attempt_at.isoformat(),
                extra={"event": f"{self.event}_failed", "outcome": "failure",
                       "client_id": row.client_id, "user_id": row.user_id})
        audit.record(f"{self.event}_failed", "failure", user_id=row.user_id,
                     client_id=row.client_id, reason=error, log_level=None,  # logged above
                     details={self.event.split("_")[-1]: row.id, "attempts": row.attempts,
                              "next_attempt_at": row.next_attempt_at.isoformat()})
        db.session.commit()

    def alert_after(self) -> int:
        return self._setting("ALERT_ATTEMPTS")

    def pending_summary(self) -> tuple[int, int]:
        """(rows still pending, rows pending after at least the alert number of attempts)."""
        model = self.model
        pending = model.sent_at.is_(None)
        total = db.session.scalar(select(func.count()).where(pending)) or 0
        stuck = db.session.scalar(
            select(func.count()).where(pending, model.attempts >= self.alert_after())) or 0
        return total, stuck
