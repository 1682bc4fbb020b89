"""Taking things out of an account: one Apple ID (unlink) or the whole account (decision D10).

Both run in one transaction that the caller commits, and both start by locking the user row, so
they serialise with each other: two concurrent unlinks cannot remove a user's last two Apple IDs,
and an unlink racing a deletion cannot strand a token outside the outbox. Apple tokens are not
revoked here: an outbox row per stored token is written in the same transaction, and the caller
sends the outbox after commit (`lifecycle.revocations.send_due`).
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import selectinload

from ..infra.extensions import db
from ..models import AppleIdentity
from ..models import AppleRevocation
from ..models import AppleToken
from ..models import PendingProfile
from ..models import TokenFamily
from ..models import User
from ..models import WebSession
from ..models.base import now_utc
from ..oauth.refresh import revoke_family
from ..oauth.refresh import revoke_user_families
from . import audit
from .sign_out import end_sessions
from .sign_out import end_web_sessions


class LastIdentity(Exception):
    """The Apple ID is the account's only way to sign in, so it cannot be unlinked."""


@dataclass(frozen=True)
class Removed:
    """What an unlink or a deletion ended, for the confirmation message."""

    web_sessions: int
    app_sessions: int
    revocation_ids: list[str]


def lock_user(user_id: str) -> User | None:
    """Return the user row locked for the rest of the transaction (FOR UPDATE on PostgreSQL).

    SQLite has no row locks and ignores FOR UPDATE, so there a no-op UPDATE takes the database's
    write lock first: the re-counts that follow then see every earlier writer's commit.
    """
    if db.session.get_bind().dialect.name == "sqlite":
        db.session.execute(
            update(User).where(User.id == user_id).values(disabled_at=User.disabled_at)
        )
    return db.session.execute(
        select(User)
        .where(User.id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def _identities(user_id: str) -> list[AppleIdentity]:
    """Re-read the user's identities (and their Apple tokens) after the lock was taken."""
    return list(db.session.scalars(
        select(AppleIdentity)
        .where(AppleIdentity.user_id == user_id)
        .options(selectinload(AppleIdentity.apple_tokens))
        .execution_options(populate_existing=True)
    ))


def unlink_identity(user_id: str, identity_id: str, *, keep_session: str | None) -> Removed:
    """Remove one Apple ID from an account; caller commits, then sends the outbox.

    Web sessions and app sessions that were signed in through that Apple ID end with it (except
    `keep_session`, the browser doing this), and its Apple tokens are queued for revocation.

    :raises LookupError: if the identity does not exist or belongs to someone else.
    :raises LastIdentity: if it is the account's only Apple ID.
    """
    if lock_user(user_id) is None:
        raise LookupError(identity_id)
    identities = _identities(user_id)
    target = next((i for i in identities if i.id == identity_id), None)
    if target is None:
        raise LookupError(identity_id)
    if len(identities) < 2:
        raise LastIdentity(identity_id)
    _move_email_off(identities, target)
    revocations = [queue_revocation(t, user_id) for t in target.apple_tokens]
    ended = len(end_sessions(WebSession.identity_id == target.id,
                             WebSession.id != (keep_session or ""),
                             reason="Apple Account unlinked"))
    families = db.session.scalars(
        select(TokenFamily).where(TokenFamily.identity_id == target.id,
                                  TokenFamily.revoked_at.is_(None))
    ).all()
    apps = sum(1 for f in families if revoke_family(db.session, f, "Apple Account unlinked"))
    db.session.flush()
    ids = [r.id for r in revocations if r is not None]
    audit.record("identity_unlinked", user_id=user_id,
                 details={"identity": target.id, "web_sessions": ended, "app_sessions": apps,
                          "apple_revocations": len(ids)})
    db.session.delete(target)  # its Apple tokens go with it (cascade)
    return Removed(web_sessions=ended, app_sessions=apps, revocation_ids=ids)


def _move_email_off(identities: list[AppleIdentity], target: AppleIdentity) -> None:
    """If the profile email came from the Apple ID being unlinked, take another one's."""
    user = target.user
    if user.email is None or user.email != target.email:
        return
    other = next((i for i in identities if i is not target and i.email), None)
    user.email = other.email if other else None
    user.email_verified = other.email_verified if other else False
    user.is_private_email = other.is_private_email if other else False


def delete_account(user_id: str) -> Removed:
    """Delete a user and everything hanging off it; caller commits, then sends the outbox.

    Every web session and app session is revoked before the rows cascade away, so nothing that
    was already loaded elsewhere can keep working; one outbox row per stored Apple refresh token
    keeps the client id that obtained it. The audit trail (no foreign key) outlives the user.

    :raises LookupError: if the user is gone already (a concurrent deletion won).
    """
    user = lock_user(user_id)
    if user is None:
        raise LookupError(user_id)
    identities = _identities(user_id)
    revocations = [
        queue_revocation(token, user_id)
        for identity in identities
        for token in identity.apple_tokens
    ]
    ended = end_web_sessions(user_id, "account deleted")
    apps = revoke_user_families(db.session, user_id, "account deleted")
    subs = [i.sub for i in identities]
    if subs:  # a name Apple sent that never made it into an account is personal data too
        db.session.execute(delete(PendingProfile).where(PendingProfile.sub.in_(subs)))
    db.session.flush()
    ids = [r.id for r in revocations if r is not None]
    audit.record("account_deleted", user_id=user_id,
                 details={"apple_ids": len(identities), "web_sessions": ended,
                          "app_sessions": apps, "apple_revocations": len(ids)})
    db.session.delete(user)  # identities and Apple tokens by ORM cascade, the rest by FK cascade
    return Removed(web_sessions=ended, app_sessions=apps, revocation_ids=ids)


def queue_revocation(token: AppleToken, user_id: str) -> AppleRevocation | None:
    """Add an outbox row for a stored Apple refresh token (still encrypted); caller commits."""
    if not token.refresh_token_encrypted:
        return None
    row = AppleRevocation(
        client_id=token.client_id,  # Apple only revokes with the client id that obtained it
        token_encrypted=token.refresh_token_encrypted,
        token_type_hint="refresh_token",
        user_id=user_id,
        next_attempt_at=now_utc(),
    )
    db.session.add(row)
    return row
