"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): `GET|POST /oauth/logout`.

An app sends the browser here to sign the person out of siwa-web. With a valid
`id_token_hint` for the browser's own session the session ends at once; otherwise the person
is asked to confirm (an app could not otherwise be told apart from a page that merely links
here). Ending the session notifies, by back-channel logout, every web app that signed in
through it. The browser then returns to `post_logout_redirect_uri` with `state` — only when
that URI is registered for the app named by the hint or `client_id`, matched exactly;
otherwise it stays on siwa-web's "signed out" page.
"""
from __future__ import annotations

import logging

from flask import Blueprint
from flask import Flask
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from ..infra.extensions import csrf
from ..infra.extensions import db
from ..oauth import clients
from ..oauth import redirect_uris
from ..oauth import tokens
from ..tokens.extension import server
from ..users import audit
from ..web import sessions
from ..web.errors import render_error
from ..web.origin import refuse_cross_site_posts
from .responses import with_query

bp = Blueprint("logout", __name__, url_prefix="/oauth/logout")
log = logging.getLogger(__name__)
STATE_MAX = 512


class LogoutRequestError(Exception):
    """The request cannot be honoured as asked; shown on our page, never redirected."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(reason)
        self.message, self.reason = message, reason


def _single(name: str) -> str | None:
    values = [v for v in request.values.getlist(name) if v != ""]
    if len(values) > 1:
        raise LogoutRequestError(f"The parameter {name} appears more than once.",
                                 "repeated_" + name)
    return values[0] if values else None


def _read() -> tuple[dict | None, clients.ActiveClient | None, str | None, str | None]:
    """(hint claims, client, where to return, state). :raises LogoutRequestError:"""
    hint, client_id = _single("id_token_hint"), _single("client_id")
    target, state = _single("post_logout_redirect_uri"), _single("state")
    claims = None
    if hint is not None:
        try:
            claims = tokens.id_token_hint_claims(server().keys, server().settings, hint)
        except tokens.TokenInvalid as exc:
            raise LogoutRequestError("The app sent a sign-in token siwa-web did not issue.",
                                     "hint_" + exc.reason) from exc
        if client_id is not None and client_id != claims["aud"]:
            raise LogoutRequestError("The app named itself differently from its sign-in token.",
                                     "client_id_mismatch")
        client_id = claims["aud"]
    client = clients.get_active(db.session, client_id) if client_id else None
    if client_id is not None and (client is None or not client.is_web):
        raise LogoutRequestError("The app asking to sign you out is not known here.",
                                 "client_unknown")
    if target is not None and (client is None or not redirect_uris.matches(
            target, client.post_logout_redirect_uris)):
        raise LogoutRequestError("The address the app asked to return to is not one it "
                                 "registered, so you are not sent there.",
                                 "post_logout_redirect_uri_mismatch")
    if state is not None and (len(state) > STATE_MAX or not state.isascii()):
        raise LogoutRequestError("The app's state value is too long or not plain text.",
                                 "state_invalid")
    return claims, client, target, state


@bp.route("", methods=["GET", "POST"])
@csrf.exempt  # apps may POST here from their own pages (RP-Initiated Logout §2); see below
def end_session() -> ResponseReturnValue:
    """Sign out at once for the hinted session; otherwise ask the person to confirm."""
    try:
        claims, client, target, state = _read()
    except LogoutRequestError as exc:
        return _refused(exc)
    row = sessions.current() if current_user.is_authenticated else None
    if row is None and request.method == "POST":
        # An app's page POSTed here from its own site: the browser kept our SameSite=Lax
        # cookie back. The same request as a GET navigation carries it.
        response = redirect(url_for("logout.end_session", **request.form.to_dict(flat=False)),
                            code=303)
        response.headers["Cache-Control"] = "no-store"
        return response
    if row is None:
        return _done(client, target, state)
    if claims is not None and claims["sub"] == current_user.id and claims["sid"] == row.id:
        return _sign_out(client, target, state)
    return _confirm_page(client, target, state)


@bp.post("/confirm")
def confirm() -> ResponseReturnValue:
    """The person confirmed on our page (CSRF token and same-origin checked)."""
    refuse_cross_site_posts()
    try:
        _, client, target, state = _read()
    except LogoutRequestError as exc:
        return _refused(exc)
    if not current_user.is_authenticated:
        return _done(client, target, state)
    return _sign_out(client, target, state)


def _sign_out(client: clients.ActiveClient | None, target: str | None,
              state: str | None) -> ResponseReturnValue:
    audit.record("web_logout", user_id=current_user.id,
                 client_id=client.id if client else None, details={"initiated_by": "app"})
    sessions.end_current("signed out by app" if client else "logout")
    db.session.commit()
    return _done(client, target, state)


def _done(client: clients.ActiveClient | None, target: str | None,
          state: str | None) -> ResponseReturnValue:
    if target is not None:
        params = {"state": state} if state is not None else {}
        response = redirect(with_query(target, params) if params else target, code=303)
        response.headers["Cache-Control"] = "no-store"
        return response
    body = render_template("provider/signed_out.html", client=client)
    return body, 200, {"Cache-Control": "no-store"}


def _confirm_page(client: clients.ActiveClient | None, target: str | None,
                  state: str | None) -> ResponseReturnValue:
    body = render_template("provider/logout_confirm.html", client=client, target=target,
                           state=state)
    return body, 200, {"Cache-Control": "no-store"}


def _refused(exc: LogoutRequestError) -> ResponseReturnValue:
    log.info("logout request refused: %s", exc.reason,
             extra={"event": "logout_refused", "reason": exc.reason})
    body, status = render_error(400, "This sign-out link is not valid", exc.message,
                                "You are still signed in. Sign out from your account page.")
    return body, status, {"Cache-Control": "no-store"}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
