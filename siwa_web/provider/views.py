"""Blueprint `provider`: `/oauth/authorize` for web apps, its resumption after sign-in, consent.

A request is checked (`oauth.authorize`), then answered at once when the browser has a live
siwa-web session and nothing needs asking (single sign-on: no trip to Apple); otherwise it
waits (`pending`) while the person signs in with Apple or decides on the consent page, and
is answered from there. Only `client_id` / `redirect_uri` problems stay on siwa-web's error
page; every other answer goes to the app's redirect URI with `state` and `iss`.

Each answer is counted in `siwa_authorize_requests_total` by outcome: `code` (a code went to
the app), `login` / `consent` (the request waits for a sign-in or a decision), the OAuth error
code sent to the app, `unsafe_request` (bad client_id / redirect_uri: our error page),
`expired` (a waiting request that is gone) and `rate_limited`.
"""
from __future__ import annotations

import logging
from datetime import datetime
from datetime import timedelta

from flask import Blueprint
from flask import Flask
from flask import current_app
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from ..infra import metrics
from ..infra.extensions import csrf
from ..infra.extensions import db
from ..models import WebSession
from ..models.base import now_utc
from ..oauth import authorize
from ..oauth import clients
from ..oauth import codes
from ..oauth import consents
from ..oauth.authorize import AuthorizationRequest
from ..oauth.errors import AccessDeniedError
from ..oauth.errors import ConsentRequiredError
from ..oauth.errors import LoginRequiredError
from ..oauth.errors import OAuth2Error
from ..tokens import ratelimits
from ..tokens.extension import server
from ..users import audit
from ..web import sessions
from ..web.errors import new_reference
from ..web.errors import render_error
from ..web.origin import refuse_cross_site_posts
from . import pending
from . import responses
from . import scope_words

bp = Blueprint("provider", __name__, url_prefix="/oauth/authorize")
log = logging.getLogger(__name__)


@bp.route("", methods=["GET", "POST"])
@csrf.exempt  # an app's page may POST the request here (OIDC Core §3.1.2.1); nothing is changed
def authorize_endpoint() -> ResponseReturnValue:
    """Check the request, then answer it now (single sign-on) or after sign-in / consent."""
    limited = _rate_limited()
    if limited is not None:
        return limited
    params = request.args if request.method == "GET" else request.form
    values = {name: params.getlist(name) for name in params.keys()}
    try:
        target = authorize.identify_client(db.session, values, server().clients)
    except authorize.UnsafeRequest as exc:
        return _unsafe(exc)
    try:
        req = authorize.validate(target, values,
                                 default_audience=server().settings.default_audience)
    except OAuth2Error as exc:
        return _error(target.redirect_uri, target.response_mode, exc, target.state,
                      target.client.id)
    return _proceed(req, target.client, login_after=_login_after(req))


@bp.get("/resume")
def resume() -> ResponseReturnValue:
    """Back from signing in with Apple: carry on with the request it interrupted."""
    row = pending.load(request.args.get("request"))
    if row is None:
        return _expired()
    req = AuthorizationRequest.from_params(row.params)
    client = clients.get_active(db.session, req.client_id)
    if client is None:
        return _expired()
    pending.finish(row)
    session_row = _signed_in_session()
    if session_row is None or (row.login_after is not None
                               and session_row.auth_time < row.login_after):
        # Back without a (fresh enough) sign-in: it was cancelled or failed at Apple.
        db.session.commit()
        return _error(req.redirect_uri, req.response_mode,
                      AccessDeniedError("The person did not sign in.", reason="not_signed_in"),
                      req.state, client.id)
    return _proceed(req, client, login_after=row.login_after)


@bp.route("/consent", methods=["GET", "POST"])
def consent() -> ResponseReturnValue:
    """Ask whether the app may have what it asks for (third-party apps only), then answer."""
    handle = request.values.get("request")
    row = pending.load(handle)
    session_row = _signed_in_session()
    if row is None or session_row is None or (  # a request still waiting for a fresh sign-in
            row.login_after is not None and session_row.auth_time < row.login_after):
        return _expired()
    req = AuthorizationRequest.from_params(row.params)
    client = clients.get_active(db.session, req.client_id)
    if client is None:
        return _expired()
    if request.method == "GET":
        return _consent_page(client, req, handle)
    refuse_cross_site_posts()  # backs up the CSRF token, as on the dashboard
    pending.finish(row)
    if request.form.get("decision") != "allow":
        audit.record("consent_denied", "failure", user_id=session_row.user_id,
                     client_id=client.id, reason="denied")
        db.session.commit()
        return _error(req.redirect_uri, req.response_mode,
                      AccessDeniedError("The person did not allow the app.", reason="denied"),
                      req.state, client.id)
    consents.remember(db.session, session_row.user_id, client.id, req.scopes)
    audit.record("consent_granted", user_id=session_row.user_id, client_id=client.id,
                 details={"scope": " ".join(req.scopes)})
    return _issue(req, client, session_row)


def _rate_limited() -> ResponseReturnValue | None:
    """RATELIMIT_AUTHORIZE_PER_IP, counted straight in the limiter's store as the token
    endpoint's limits are (Flask-Limiter's decorator cost a tenth of a single-sign-on answer)."""
    try:
        ratelimits.hit_setting("RATELIMIT_AUTHORIZE_PER_IP", "authorize", request.remote_addr or "")
    except ratelimits.RateLimited as exc:
        metrics.recorder().authorize("rate_limited")
        minutes = max(1, round(exc.retry_after / 60))
        body, status = render_error(
            429, "Too many sign-in requests",
            "This network sent more sign-in requests than siwa-web accepts in a short time.",
            f"Wait about {minutes} minute{'s' if minutes != 1 else ''}, then try again.")
        return body, status, {"Retry-After": str(exc.retry_after), "Cache-Control": "no-store"}
    return None


# --- the decision ------------------------------------------------------------------------------


def _signed_in_session() -> WebSession | None:
    """This browser's live siwa-web session (asking Flask-Login loads and checks it)."""
    return sessions.current() if current_user.is_authenticated else None


def _login_after(req: AuthorizationRequest) -> datetime | None:
    """The moment a sign-in must be newer than, if `prompt=login` or `max_age` ask for one."""
    now = now_utc()
    if "login" in req.prompt:
        return now
    session_row = _signed_in_session()
    if req.max_age is not None and session_row is not None and \
            now - session_row.auth_time > timedelta(seconds=req.max_age):
        return now
    return None


def _proceed(req: AuthorizationRequest, client: clients.ActiveClient,
             login_after: datetime | None) -> ResponseReturnValue:
    session_row = _signed_in_session()
    if session_row is None or (login_after is not None and session_row.auth_time < login_after):
        if "none" in req.prompt:
            return _error(req.redirect_uri, req.response_mode,
                          LoginRequiredError(reason="login_required"), req.state, client.id)
        return _wait(req, "login", login_after=login_after)
    needs_consent = not client.first_party and (
        "consent" in req.prompt
        or not consents.covers(db.session, session_row.user_id, client.id, req.scopes))
    if needs_consent:
        if "none" in req.prompt:
            return _error(req.redirect_uri, req.response_mode,
                          ConsentRequiredError(reason="consent_required"), req.state, client.id)
        return _wait(req, "consent", login_after=None)
    return _issue(req, client, session_row)


def _wait(req: AuthorizationRequest, step: str, *,
          login_after: datetime | None) -> ResponseReturnValue:
    secret, new = pending.browser_secret()
    handle = pending.store(req, secret, login_after=login_after)
    db.session.commit()
    metrics.recorder().authorize(step)
    if step == "login":
        target = url_for("auth.login", next=url_for("provider.resume", request=handle),
                         prompt="login" if login_after is not None else None)
    else:
        target = url_for("provider.consent", request=handle)
    response = redirect(target, code=303)
    response.headers["Cache-Control"] = "no-store"
    if new:
        pending.set_cookie(response, secret)
    return response


def _issue(req: AuthorizationRequest, client: clients.ActiveClient,
           session_row: WebSession) -> ResponseReturnValue:
    settings = server().settings
    code = codes.issue(
        db.session, ttl=int(current_app.config["AUTHORIZATION_CODE_TTL"]), client_id=client.id,
        user_id=session_row.user_id, web_session_id=session_row.id, redirect_uri=req.redirect_uri,
        scope=" ".join(req.scopes), audience=req.audience, nonce=req.nonce,
        code_challenge=req.code_challenge, auth_time=session_row.auth_time,
    )
    db.session.commit()
    metrics.recorder().authorize("code")
    return responses.code(req.redirect_uri, req.response_mode, code=code, state=req.state,
                          issuer=settings.issuer)


# --- pages and errors --------------------------------------------------------------------------


def _consent_page(client: clients.ActiveClient, req: AuthorizationRequest,
                  handle: str | None) -> ResponseReturnValue:
    body = render_template(
        "provider/consent.html", client=client, request_handle=handle,
        scopes=scope_words.describe(req.scopes, client),
        redirect_host=req.redirect_uri.split("/")[2])
    return body, 200, {"Cache-Control": "no-store"}


def _error(redirect_uri: str, response_mode: str, exc: OAuth2Error, state: str | None,
           client_id: str) -> ResponseReturnValue:
    log.info("authorization request refused: %s", exc.reason,
             extra={"event": "authorization_refused", "reason": exc.reason,
                    "client_id": client_id})
    metrics.recorder().authorize(exc.error)
    return responses.error(redirect_uri, response_mode, exc, state=state,
                           issuer=server().settings.issuer)


def _unsafe(exc: authorize.UnsafeRequest) -> ResponseReturnValue:
    metrics.recorder().authorize("unsafe_request")
    ref = new_reference()
    log.warning("authorization request not answerable: %s", exc.reason,
                extra={"event": "authorization_unanswerable", "reason": exc.reason})
    body, status = render_error(400, exc.title, exc.message,
                                "Go back to the app and start signing in again.", ref=ref)
    return body, status, {"Cache-Control": "no-store"}


def _expired() -> ResponseReturnValue:
    metrics.recorder().authorize("expired")
    body, status = render_error(
        400, "This sign-in request is no longer valid",
        "It may have expired, been answered already, or been started in another browser.",
        "Go back to the app and start signing in again.")
    return body, status, {"Cache-Control": "no-store"}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)

