"""Find or create users by Apple `sub` (never by email), shared by the web and native flows.

This module is the token service's `UserDirectory` (siwa_web.oauth.collaborators).
"""
from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import bindparam
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.attributes import set_committed_value

from ..apple.claims import NAME_MAX  # noqa: F401  (re-exported)
from ..apple.claims import AppleClaims
from ..apple.claims import Name
from ..infra.crypto import TokenCipher
from ..infra.extensions import db
from ..models import AppleIdentity
from ..models import AppleToken
from ..models import User
from ..models.base import UTCDateTime
from ..models.base import now_utc
from ..oauth.collaborators import AccountDisabled  # noqa: F401  (raised here, caught by callers)
from . import transfer

# A returning sign-in's routine writes, run as Core statements: with them, and attributes set
# only when they change, its commit has nothing for the unit of work to flush (which cost more
# than the SQL: docs/performance.md, section 5). Neither table is watched by the liveness cache.
_IDENTITIES, _TOKENS = AppleIdentity.__table__, AppleToken.__table__
_NOW = bindparam("now", type_=UTCDateTime())
_TOUCH_IDENTITY = (
    update(_IDENTITIES).where(_IDENTITIES.c.id == bindparam("row_id")).values(last_used_at=_NOW)
)
_RESEAL_TOKEN = (
    update(_TOKENS).where(_TOKENS.c.id == bindparam("row_id"))
    .values(refresh_token_encrypted=bindparam("sealed"), last_used_at=_NOW, invalidated_at=None,
            check_state=None, next_check_at=bindparam("next_check", type_=UTCDateTime()))
)


class IdentityTaken(Exception):
    """The Apple ID is already linked to a different user."""


def cipher() -> TokenCipher:
    """Return the cipher for Apple refresh tokens at rest."""
    return TokenCipher(current_app.config["TOKEN_ENCRYPTION_KEYS"])


def find_identity(sub: str) -> AppleIdentity | None:
    stmt = select(AppleIdentity).where(AppleIdentity.sub == sub)
    return db.session.execute(stmt).scalar_one_or_none()


def find_for_claims(claims: AppleClaims) -> AppleIdentity | None:
    """The identity these claims sign in to: by `sub`, or during a team transfer by the
    `transfer_sub` we exported (the sign-in then moves it to the new `sub`)."""
    identity = find_identity(claims.sub)
    if identity is None and claims.transfer_sub:
        identity = transfer.find_by_transfer_sub(claims.transfer_sub)
    return identity


def _identity_for_sign_in(sub: str) -> AppleIdentity | None:
    """One query for what a sign-in touches: lazy loads would cost round trips and autoflushes."""
    stmt = (
        select(AppleIdentity)
        .where(AppleIdentity.sub == sub)
        .options(joinedload(AppleIdentity.user), joinedload(AppleIdentity.apple_tokens))
    )
    return db.session.execute(stmt).unique().scalar_one_or_none()


def sign_in(
    claims: AppleClaims,
    *,
    apple_client_id: str,
    apple_refresh_token: str | None,
    name: Name | None = None,
    link_to: User | None = None,
) -> tuple[User, AppleIdentity, bool]:
    """Upsert the user and identity for verified claims; caller commits.

    Returns (user, identity, created).

    Conflict-safe: concurrent first sign-ins of one `sub` race on the UNIQUE(sub) index inside a
    savepoint; the loser re-reads the winner's row, so one `sub` always yields one user.
    """
    begin_write()
    identity = _identity_for_sign_in(claims.sub)
    if identity is None and claims.transfer_sub:
        identity = _transferred_identity(claims)
    created = False
    if identity is None:
        identity, created = _create_identity(claims, name, link_to)
    if link_to is not None and identity.user_id != link_to.id:
        raise IdentityTaken(claims.sub)
    user = identity.user
    if not user.is_active:
        raise AccountDisabled(user.id)
    _refresh_attributes(user, identity, claims, name if created else None)
    if apple_refresh_token:
        store_apple_token(identity, apple_client_id, apple_refresh_token)
    return user, identity, created


def _transferred_identity(claims: AppleClaims) -> AppleIdentity | None:
    """During a team transfer's 60 days: the identity we exported this `transfer_sub` for.

    It takes the new `sub` now, even before `flask apple transfer import` ran. If the new sub
    is somehow another identity's already, that one simply signs in (found by sub above).
    """
    identity = transfer.find_by_transfer_sub(claims.transfer_sub or "")
    if identity is None:
        return None
    transfer.move_identity(identity, claims.sub, via="sign_in")
    return identity


def begin_write() -> None:
    """Open a real transaction before the savepoint below, so a sign-in commits as one unit.

    pysqlite (in its default, legacy transaction mode) only opens a transaction before a write;
    a SAVEPOINT issued outside one starts it instead, and releasing that savepoint COMMITS —
    the user and identity would be durable before the rest of the sign-in. An explicit BEGIN
    keeps the whole sign-in one transaction on SQLite too; IMMEDIATE takes the write lock now
    (waiting up to busy_timeout), so reads inside it cannot turn into "database is locked"
    when it later writes. Other databases need nothing.
    """
    connection = db.session.connection()
    if connection.dialect.name != "sqlite":
        return
    driver = connection.connection.dbapi_connection
    if driver is not None and driver.isolation_level is not None and not driver.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _create_identity(
    claims: AppleClaims, name: Name | None, link_to: User | None
) -> tuple[AppleIdentity, bool]:
    try:
        with db.session.begin_nested():
            user = link_to or User()
            if link_to is None:
                db.session.add(user)
            # An empty collection, not an unloaded one: a new identity has no tokens to select.
            identity = AppleIdentity(user=user, sub=claims.sub, issuer=claims.iss, apple_tokens=[])
            db.session.add(identity)
        return identity, True
    except IntegrityError:
        identity = find_identity(claims.sub)
        if identity is None:  # pragma: no cover - the winner must be visible after the conflict
            raise
        return identity, False


def _refresh_attributes(
    user: User, identity: AppleIdentity, claims: AppleClaims, name: Name | None
) -> None:
    """Copy email flags from the signed token; the name only when the user is new."""
    now = now_utc()
    db.session.connection().execute(_TOUCH_IDENTITY, {"row_id": identity.id, "now": now})
    set_committed_value(identity, "last_used_at", now)
    if claims.email:
        flags = {"email": claims.email, "email_verified": claims.email_verified,
                 "is_private_email": claims.is_private_email}
        _assign(identity, flags)
        if not user.email or user.email == identity.email or len(user.identities) <= 1:
            if user.email != claims.email:  # a new address: nothing is known against it yet
                _assign(user, {"email_deliverable": True})
            _assign(user, flags)
    if name is not None and not (user.first_name or user.last_name):
        user.first_name, user.last_name = name.first, name.last


def _assign(row: User | AppleIdentity, values: dict[str, object]) -> None:
    """Set only what differs: an unchanged row is then not even looked at by the flush."""
    for key, value in values.items():
        if getattr(row, key) != value:
            setattr(row, key, value)


def store_apple_token(identity: AppleIdentity, client_id: str, refresh_token: str) -> AppleToken:
    """Keep Apple's refresh token encrypted, per Apple client id, for later revocation.

    Apple has just issued it, so its daily check (`flask apple validate-tokens`) is due one
    check interval from now.
    """
    sealed, now = cipher().encrypt(refresh_token), now_utc()
    next_check = now + timedelta(seconds=int(current_app.config["APPLE_TOKEN_CHECK_INTERVAL"]))
    row = next((t for t in identity.apple_tokens if t.client_id == client_id), None)
    if row is None:
        try:
            with db.session.begin_nested():  # a concurrent sign-in may insert it first
                row = AppleToken(identity=identity, client_id=client_id,
                                 refresh_token_encrypted=sealed, last_used_at=now,
                                 next_check_at=next_check)
                db.session.add(row)
            return row
        except IntegrityError:
            db.session.expire(identity, ["apple_tokens"])
            row = next(t for t in identity.apple_tokens if t.client_id == client_id)
    db.session.connection().execute(
        _RESEAL_TOKEN, {"row_id": row.id, "sealed": sealed, "now": now, "next_check": next_check}
    )
    for key, value in (("refresh_token_encrypted", sealed), ("last_used_at", now),
                       ("invalidated_at", None), ("check_state", None),
                       ("next_check_at", next_check)):
        set_committed_value(row, key, value)
    return row


def deliverable_email(user: User) -> str | None:
    """The address siwa-web may send mail to, or None: the one check every sender must make.

    None when the account has no email, or when it is a Hide-My-Email relay address whose
    forwarding the person turned off (Apple's `email-disabled`): mail to it would never arrive,
    and Apple reports undelivered relay mail to the team's admins.
    """
    if not user.email or not user.email_deliverable:
        return None
    return user.email
