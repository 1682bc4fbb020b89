"""Follow an Apple identity to its new `sub` after the app moved to another Apple team.

Apple's `sub` is scoped to a developer team, so a team transfer gives every user a new one.
Both roads lead here: `flask apple transfer import` (Apple tells us the new sub for each stored
`transfer_sub`) and a sign-in during the 60-day window (the identity token carries the
`transfer_sub` next to the new sub). Either way the identity row keeps its id, user and tokens,
only its `sub` changes, and never onto a sub that already belongs to another identity: two
accounts are never merged behind anyone's back.
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from ..infra.crypto import fingerprint
from ..infra.extensions import db
from ..models import AppleIdentity
from ..models.base import now_utc
from . import audit

AUDIT_EVENT = "apple_identity_transferred"


class SubTaken(Exception):
    """The new sub already belongs to another identity; nothing was changed."""

    def __init__(self, other_user_id: str) -> None:
        super().__init__("the new Apple sub already belongs to another user")
        self.other_user_id = other_user_id


def find_by_transfer_sub(transfer_sub: str) -> AppleIdentity | None:
    """The one identity we exported `transfer_sub` for; None if none (or, oddly, several)."""
    stmt = (
        select(AppleIdentity)
        .where(AppleIdentity.transfer_sub == transfer_sub)
        .options(joinedload(AppleIdentity.user), joinedload(AppleIdentity.apple_tokens))
        .limit(2)
    )
    rows = db.session.execute(stmt).unique().scalars().all()
    return rows[0] if len(rows) == 1 else None


def move_identity(identity: AppleIdentity, new_sub: str, *, via: str,
                  email: str | None = None, is_private_email: bool | None = None) -> bool:
    """Give `identity` its new team's `sub`; caller commits. False if it had it already.

    :raises SubTaken: another identity holds `new_sub` (e.g. the user made a second account
        under the new team before the import ran); the caller reports it, nothing changes.
    """
    if identity.sub == new_sub:
        if identity.transferred_at is None:
            identity.transferred_at = now_utc()
        return False
    other = db.session.execute(
        select(AppleIdentity.user_id).where(AppleIdentity.sub == new_sub)
    ).scalar_one_or_none()
    if other is not None:
        raise SubTaken(other)
    old_sub = identity.sub
    identity.previous_sub, identity.sub = old_sub, new_sub
    identity.transferred_at = now_utc()
    if email:
        _move_email(identity, email, bool(is_private_email))
    audit.record(AUDIT_EVENT, user_id=identity.user_id, reason=via, details={
        "identity": identity.id, "via": via, "team": identity.transfer_team,
        "old_sub_fp": fingerprint(old_sub), "new_sub_fp": fingerprint(new_sub)})
    return True


def _move_email(identity: AppleIdentity, email: str, is_private: bool) -> None:
    """Relay addresses are per team too: the user's address follows if it was this identity's."""
    user = identity.user
    if user.email is None or user.email == identity.email:
        user.email, user.is_private_email = email, is_private
    identity.email, identity.is_private_email = email, is_private
