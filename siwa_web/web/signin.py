"""Finish a browser sign-in from Apple's form_post: verify, redeem, upsert, in a safe order.

Order: the state was consumed already; verify the front-channel identity token (nonce, c_hash)
and save the one-time name by `sub`; redeem the code at Apple outside any transaction; verify
the back-channel token; then one transaction for user, identity, Apple token and web session.
Nothing is written for a request that fails verification.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select

from ..apple import bounded_json
from ..apple.claims import AppleClaims
from ..apple.errors import InvalidIdentityToken
from ..infra.apple_client import apple_client
from ..infra.extensions import db
from ..infra.transactions import commit_or_confirm
from ..models import AppleIdentity
from ..models import LoginTransaction
from ..models import PendingProfile
from ..models import User
from ..models import WebSession
from ..users import accounts
from ..users import audit
from ..users.accounts import Name
from . import sessions

log = logging.getLogger(__name__)
USER_JSON_MAX = 4096


class SubjectMismatch(Exception):
    """The identity token in the browser's POST names a different Apple ID than Apple's answer."""


class WrongAccount(Exception):
    """A fresh sign-in for deletion used an Apple ID that is not linked to this account."""


@dataclass(frozen=True)
class Outcome:
    """The signed-in user and what happened, for the view to phrase."""

    user: User
    created: bool
    linked: bool
    session: WebSession | None


def parse_user_json(raw: str | None) -> Name | None:
    """Apple's first-login `user` field: name only (its email is unsigned and ignored)."""
    if not raw or len(raw) > USER_JSON_MAX:
        return None
    try:
        return Name.from_apple(bounded_json.loads(raw))
    except ValueError:
        return None


def complete(tx: LoginTransaction, code: str, front_id_token: str, name: Name | None,
             current_user: User | None) -> Outcome:
    """Turn a verified Apple answer into a signed-in (or linked, or re-authenticated) user."""
    apple = apple_client()
    services_id = current_app.config["APPLE_SERVICES_ID"]
    with apple.budget():  # every Apple call of this callback together: APPLE_SIGN_IN_BUDGET
        front = apple.verify_id_token(front_id_token, audience=services_id, nonce=tx.nonce,
                                      code=code)
        if name is not None:
            _save_pending_name(front.sub, name)
        tokens = apple.exchange_code(client_id=services_id, code=code,
                                     redirect_uri=current_app.config["APPLE_REDIRECT_URI"])
        back = apple.verify_id_token(tokens.id_token, audience=services_id,
                                     access_token=tokens.access_token)
    if back.sub != front.sub:
        raise SubjectMismatch()
    if back.nonce is not None and back.nonce != tx.nonce:
        raise InvalidIdentityToken("nonce mismatch")
    return _commit(tx, back, tokens.refresh_token, current_user)


def _stored_check(session_row: WebSession | None, identity_id: str, user_id: str
                  ) -> Callable[[], bool]:
    """How to tell, after a lost COMMIT answer, whether this sign-in (or link) was stored."""
    if session_row is not None:
        session_id = session_row.id
        query = select(WebSession.id).where(WebSession.id == session_id)
    else:  # a link: the identity now belongs to the user
        query = select(AppleIdentity.id).where(AppleIdentity.id == identity_id,
                                               AppleIdentity.user_id == user_id)
    return lambda: db.session.execute(query).first() is not None


def _save_pending_name(sub: str, name: Name) -> None:
    """Persist the name before anything else can fail; Apple will not send it again."""
    row = db.session.get(PendingProfile, sub) or PendingProfile(sub=sub)
    row.first_name, row.last_name = name.first, name.last
    db.session.add(row)
    db.session.commit()


def _commit(tx: LoginTransaction, claims: AppleClaims, apple_refresh_token: str | None,
            current_user: User | None) -> Outcome:
    services_id = current_app.config["APPLE_SERVICES_ID"]
    link_to = current_user if tx.purpose == "link" else None
    if tx.purpose == "reauth":
        existing = accounts.find_for_claims(claims)
        if current_user is None or existing is None or existing.user_id != current_user.id:
            raise WrongAccount()
    pending = db.session.get(PendingProfile, claims.sub)
    name = Name(pending.first_name, pending.last_name) if pending else None
    user, identity, created = accounts.sign_in(
        claims, apple_client_id=services_id, apple_refresh_token=apple_refresh_token,
        name=name, link_to=link_to,
    )
    if pending is not None:
        db.session.delete(pending)
    session_row = None
    if tx.purpose == "link":
        audit.record("identity_linked", user_id=user.id, client_id=services_id,
                     details={"identity": identity.id})
    else:
        if current_user is not None:
            sessions.end_current("replaced by sign-in")
        session_row = sessions.start(user, identity)
        audit.record("web_login", user_id=user.id, client_id=services_id,
                     details={"new_user": created, "purpose": tx.purpose})
    db.session.flush()  # ids are given on flush: the check below names the rows by id
    commit_or_confirm(db.session, _stored_check(session_row, identity.id, user.id),
                      f"web sign-in of user {user.id}")
    return Outcome(user=user, created=created, linked=tx.purpose == "link", session=session_row)
