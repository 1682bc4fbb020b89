"""What people allowed third-party web apps, remembered per user and client (OIDC Core §3.1.2.4).

A remembered consent covers a request when it holds every scope asked for; allowing more later
widens it. First-party apps (registered with `--first-party`) need none.
"""
from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy import select

from ..models import Consent
from ..models.base import now_utc
from .collaborators import DbSession


def granted(session: DbSession, user_id: str, client_id: str) -> frozenset[str]:
    """The scopes this user allowed this client (empty if never)."""
    scope = session.execute(
        select(Consent.scope).where(Consent.user_id == user_id, Consent.client_id == client_id)
    ).scalar_one_or_none()
    return frozenset(scope.split()) if scope else frozenset()


def covers(session: DbSession, user_id: str, client_id: str, scopes: tuple[str, ...]) -> bool:
    return set(scopes) <= granted(session, user_id, client_id)


def remember(session: DbSession, user_id: str, client_id: str, scopes: tuple[str, ...]) -> None:
    """Add `scopes` to what the user allowed the client; the caller commits."""
    row = session.execute(
        select(Consent).where(Consent.user_id == user_id, Consent.client_id == client_id)
    ).scalar_one_or_none()
    if row is None:
        session.add(Consent(user_id=user_id, client_id=client_id, scope=" ".join(scopes)))
        return
    merged = dict.fromkeys(row.scope.split() + list(scopes))
    row.scope = " ".join(merged)
    row.updated_at = now_utc()


def forget(session: DbSession, user_id: str, client_id: str) -> int:
    """Forget what the user allowed the client (Disconnect); the caller commits."""
    return session.execute(
        delete(Consent).where(Consent.user_id == user_id, Consent.client_id == client_id)
    ).rowcount
