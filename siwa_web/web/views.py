"""Browser sign-in: the login page, the trip to Apple, Apple's form_post callback, logout."""
from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

from flask import Blueprint
from flask import Flask
from flask import current_app
from flask import flash
from flask import make_response
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_login import login_required

from ..infra import metrics
from ..infra.apple_client import apple_client
from ..infra.extensions import csrf
from ..infra.extensions import db
from ..infra.extensions import limiter
from ..users import audit
from . import failures
from . import login_tx
from . import sessions
from . import signin
from .errors import new_reference
from .errors import render_error

bp = Blueprint("auth", __name__, url_prefix="/auth")
log = logging.getLogger(__name__)
CODE_RE = re.compile(r"^[A-Za-z0-9._-]{1,1024}$")
DEFAULT_NEXT = "/dashboard"
# Pages that asked for a sign-in and must get the browser back even when it is cancelled at
# Apple: a web app's authorization request answers its app instead of waiting forever.
RETURN_EVEN_IF_CANCELLED = ("/oauth/authorize/resume?",)


def safe_next(target: str | None) -> str:
    """Return `target` if it is a plain path on this site, else the dashboard (no open redirect)."""
    if not target or len(target) > 512 or not target.startswith("/") or target.startswith("//"):
        return DEFAULT_NEXT
    if "\\" in target or any(not ch.isprintable() or ch.isspace() for ch in target):
        return DEFAULT_NEXT
    if "%5c" in target.lower() or "%2f%2f" in target.lower() or "%0" in target:
        return DEFAULT_NEXT
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return DEFAULT_NEXT
    return target


@bp.get("/login")
def login() -> ResponseReturnValue:
    """Show the Sign in with Apple page (also to a signed-in browser with `prompt=login`: an
    app asked for a fresh sign-in)."""
    if current_user.is_authenticated and request.args.get("prompt") != "login":
        return redirect(safe_next(request.args.get("next")))
    next_url = safe_next(request.args.get("next"))
    resp = make_response(render_template("auth/login.html", next=next_url))
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _login_limit_breached(_limit) -> None:
    """Count the refusal; Flask-Limiter then answers 429 as usual."""
    metrics.recorder().rate_limited("RATELIMIT_LOGIN_PER_IP")


@bp.get("/apple/login")
@limiter.limit(lambda: current_app.config["RATELIMIT_LOGIN_PER_IP"],
               on_breach=_login_limit_breached)
def start() -> ResponseReturnValue:
    """Start a login transaction and send the browser to Apple."""
    return _to_apple("login", safe_next(request.args.get("next")))


@bp.post("/apple/link")
@login_required
def link() -> ResponseReturnValue:
    """Send a signed-in user to Apple to link another Apple Account."""
    return _to_apple("link", "/dashboard", user_id=current_user.id)


@bp.post("/apple/reauth")
@login_required
def reauth() -> ResponseReturnValue:
    """Send a signed-in user to Apple for a fresh sign-in before a sensitive action."""
    return _to_apple("reauth", safe_next(request.form.get("next")), user_id=current_user.id)


def _to_apple(purpose: str, next_url: str, user_id: str | None = None) -> ResponseReturnValue:
    started = login_tx.begin(purpose, next_url, user_id)
    db.session.commit()
    url = apple_client().authorize_url(
        client_id=current_app.config["APPLE_SERVICES_ID"],
        redirect_uri=current_app.config["APPLE_REDIRECT_URI"],
        state=started.state,
        nonce=started.nonce,
    )
    resp = redirect(url, code=303)
    login_tx.set_cookie(resp, started)
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.post("/apple/callback")
@csrf.exempt  # Apple cannot send our CSRF token; `state` bound to the browser protects this
def callback() -> ResponseReturnValue:
    """Receive Apple's form_post, verify it, and sign the user in."""
    form = request.form
    try:
        tx = login_tx.consume(form.get("state"))
    except login_tx.StateError as exc:
        return _failed(exc)
    if form.get("error"):
        return _cancelled(tx, form.get("error", ""))
    code = form.get("code", "")
    if not CODE_RE.match(code) or not form.get("id_token"):
        return _failed(failures.IncompleteAnswer(), tx)
    name = signin.parse_user_json(form.get("user"))
    user = current_user._get_current_object() if current_user.is_authenticated else None
    try:
        outcome = signin.complete(tx, code, form["id_token"], name, user)
    except failures.KNOWN as exc:  # anything else is a bug: the crash page and a traceback
        db.session.rollback()
        return _failed(exc, tx)
    return _finished(tx, outcome)


def _finished(tx, outcome: signin.Outcome) -> ResponseReturnValue:
    metrics.recorder().web_sign_in("success")
    if outcome.linked:
        flash("Apple Account linked. You can now sign in with either.", "success")
    elif tx.purpose == "reauth":
        flash("Signed in again. You can continue.", "success")
    elif outcome.created:
        flash(f"Welcome, {outcome.user.display_name}! Your account is ready.", "success")
    resp = redirect(safe_next(tx.next_url), code=303)
    login_tx.clear_cookie(resp)
    return resp


def _cancelled(tx, error: str) -> ResponseReturnValue:
    cancelled = error == "user_cancelled_authorize"
    metrics.recorder().web_sign_in("cancelled" if cancelled else "apple_error")
    audit.record_failure("web_login", "cancelled" if cancelled else "apple_error")
    if safe_next(tx.next_url).startswith(RETURN_EVEN_IF_CANCELLED):
        # A web app's authorization request waits there: it answers the app (access_denied).
        resp = redirect(safe_next(tx.next_url), code=303)
        login_tx.clear_cookie(resp)
        return resp
    if error == "user_cancelled_authorize":
        flash("Sign in with Apple was cancelled. You can try again whenever you like.", "info")
    else:
        flash("Apple could not complete the sign-in. Please try again.", "error")
    target = url_for("dashboard.index") if current_user.is_authenticated else url_for("auth.login")
    resp = redirect(target, code=303)
    login_tx.clear_cookie(resp)
    return resp


def _failed(exc: Exception, tx=None) -> ResponseReturnValue:
    """Answer a failure from the table in `failures` with its page, log lines and audit record.

    The audit record names the user when one is known (the transaction's, e.g. a refused link,
    or the signed-in browser's), so the failure shows in that user's activity.
    """
    failure = failures.failure_for(exc)
    if failure is None:
        raise exc
    metrics.recorder().web_sign_in(failure.outcome)
    if failure.alert:
        log.error(failure.alert, *failure.alert_args(exc), extra={"event": failure.alert_event})
    signed_in = current_user.is_authenticated
    user_id = (tx.user_id if tx is not None else None) or (current_user.id if signed_in else None)
    details = {"purpose": tx.purpose} if tx is not None and tx.purpose != "login" else {}
    return _fail(failure.status, failure.title, failure.message, failure.reason_for(exc),
                 action=failure.action_for(signed_in), headers=failure.headers(),
                 user_id=user_id, details=details)


def _fail(status: int, title: str, message: str, reason: str,
          action: str = failures.START_AGAIN, headers: dict | None = None,
          user_id: str | None = None, details: dict | None = None) -> tuple:
    ref = new_reference()  # the request id, which every log line of this request carries
    log.warning("web sign-in failed: %s", reason, extra={
        "event": "web_login", "outcome": "failure", "ref": ref, "reason": reason})
    audit.record_failure("web_login", reason[:100], user_id=user_id,
                         details={**(details or {}), "ref": ref}, log_level=None)
    body, status = render_error(status, title, message, action, ref=ref)
    return body, status, {"Cache-Control": "no-store", **(headers or {})}


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """End this browser's session on the server, not just the cookie."""
    if current_user.is_authenticated:
        audit.record("web_logout", user_id=current_user.id)
        sessions.end_current("logout")
        db.session.commit()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"), code=303)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)

    @app.get("/favicon.ico")
    def favicon() -> ResponseReturnValue:
        """Pages name static/favicon.svg; a browser asking the old path anyway gets a quiet
        empty answer, not a 404 with an error line and reference on every page."""
        return "", 204, {"Cache-Control": "public, max-age=86400"}

    @app.get("/")
    def index() -> ResponseReturnValue:
        signed_in = current_user.is_authenticated
        return redirect(url_for("dashboard.index" if signed_in else "auth.login"))
