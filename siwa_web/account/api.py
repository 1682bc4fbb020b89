"""`DELETE /api/account`: delete the account from inside an app (App Store Guideline 5.1.1(v)).

The same deletion as the dashboard's (`lifecycle.revocations.delete_account`: one transaction,
every web and app session ended, back-channel logouts queued, one Apple revocation per stored
Apple token with the client id that obtained it, sent after the commit), reached with a Bearer
access token instead of a browser session.

Who may call it: any access token of siwa-web's own API (`DEFAULT_AUDIENCE`) issued to one of
siwa-web's own apps — a native app, or a web app registered as first party. A third-party web
app cannot delete the person's account (403). The token names the account (`sub`); there is
nothing else to say in the request.

A recent sign-in is required, as on the dashboard: when the token's `auth_time` is older than
`ACCOUNT_DELETION_MAX_AUTH_AGE`, the answer is a 401 step-up challenge (RFC 9470,
`error="insufficient_user_authentication"`, `max_age`) and nothing is deleted; the app signs
the person in with Apple again and retries with the new access token.
"""
from __future__ import annotations

import time

from flask import Blueprint
from flask import Flask
from flask import current_app
from flask.typing import ResponseReturnValue

from ..infra.extensions import csrf
from ..infra.extensions import db
from ..infra.nostore import no_store_json
from ..lifecycle import revocations
from ..models import Client
from ..oauth.clients import NATIVE
from ..oauth.errors import InsufficientScopeError
from ..oauth.errors import InsufficientUserAuthenticationError
from ..oauth.errors import InvalidTokenError
from ..oauth.tokens import AccessToken
from ..tokens.protect import principal as current_principal
from ..tokens.protect import require_token
from ..users import audit
from ..users import deletion

bp = Blueprint("account_api", __name__)
FIRST_PARTY_ONLY = "Only siwa-web's own apps may delete an account."


def _check_client(token: AccessToken) -> None:
    """Native apps and first-party web apps only. :raises InsufficientScopeError:"""
    client = db.session.get(Client, token.client_id)
    if client is None or not (client.kind == NATIVE or client.first_party):
        raise InsufficientScopeError("", description=FIRST_PARTY_ONLY, reason="not_first_party")


def _check_recent(token: AccessToken) -> None:
    """The sign-in behind the token is recent. :raises InsufficientUserAuthenticationError:"""
    max_age = int(current_app.config["ACCOUNT_DELETION_MAX_AUTH_AGE"])
    if token.auth_time is None or time.time() - token.auth_time > max_age:
        raise InsufficientUserAuthenticationError(max_age, reason="auth_time_too_old")


@bp.delete("/api/account")
@require_token()
def delete_account() -> ResponseReturnValue:
    """Delete the caller's account at once; Apple is told afterwards, and again until it hears."""
    token = current_principal().token
    _check_client(token)
    _check_recent(token)

    def record(removed: deletion.Removed) -> None:
        audit.record("account_deleted_in_app", user_id=token.sub, client_id=token.client_id,
                     details={"family": token.family_id})

    try:
        removed, report = revocations.delete_account(token.sub, record=record)
    except LookupError:  # a concurrent deletion won: this token is now for nobody
        raise InvalidTokenError(reason="user_gone") from None
    return no_store_json({
        "deleted": True,
        "web_sessions_ended": removed.web_sessions,
        "app_sessions_ended": removed.app_sessions,
        # Whether Apple was told now; if not, siwa-web keeps trying (`flask outbox retry`).
        "apple_revocations": {"queued": len(removed.revocation_ids), "sent": report.sent},
    })


def init_app(app: Flask) -> None:
    csrf.exempt(bp)  # Bearer-only: no cookie, so no cross-site request can carry it
    app.register_blueprint(bp)
