"""Database failures as one vocabulary, and commits whose lost answer is asked about, not guessed.

Flask-free (the protocol core commits through it too):

* `DB_UNAVAILABLE`: the exceptions that mean "the database did not answer" (a lost or refused
  connection, a pool that gave none in time), answered 503, never 500.
* `commit_or_confirm`: when the connection breaks during COMMIT, the server may or may not have
  applied it. Rather than answer 503 for work that is stored (a client told "nothing happened"
  while its session exists), the caller's `stored()` asks the database on a fresh connection:
  applied means success goes on; not applied means the 503 is true. Only if the database
  cannot be asked either does the outcome stay unknown: then the answer is 503 and an ERROR
  log line names what may have been stored (docs/operations.md, "Failure bounds").
* `COMMITTED` in `Session.info`: set on every commit (and on a confirmed one), so the end of a
  request knows whether its answer describes stored work (web/errors.py).
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.exc import InterfaceError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)
DB_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeoutError)
COMMITTED = "siwa_committed"


@event.listens_for(Session, "after_commit")
def _note_commit(session: Session) -> None:
    session.info[COMMITTED] = True


def commit_or_confirm(session: Session, stored: Callable[[], bool], what: str) -> None:
    """Commit; if the COMMIT fails, return only if `stored()` finds the work in the database.

    :raises DB_UNAVAILABLE: the commit was not applied (nothing was stored), or its outcome
        is unknown (the database cannot be asked; logged at ERROR with `what`).
    """
    try:
        session.commit()
        return
    except DB_UNAVAILABLE as exc:
        lost = exc
    _rollback(session)
    try:
        applied = stored()
    except DB_UNAVAILABLE:
        _rollback(session)
        log.error("COMMIT failed and the database cannot be asked whether it was applied: "
                  "%s may be stored, and was answered 503", what,
                  extra={"event": "commit_outcome_unknown", "reason": "commit_outcome_unknown"})
        raise lost from None
    if not applied:
        _rollback(session)
        raise lost
    log.warning("COMMIT failed but was applied: %s is stored and answered as a success", what,
                extra={"event": "commit_answer_lost", "reason": "commit_answer_lost"})
    session.info[COMMITTED] = True


def _rollback(session: Session) -> None:
    try:
        session.rollback()
    except SQLAlchemyError:
        log.debug("rollback after a database failure failed too",
                  extra={"event": "database_unavailable"})
