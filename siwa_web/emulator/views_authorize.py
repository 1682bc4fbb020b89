"""The person-facing part of `/auth/authorize`: sign-in page, consent page, delivery."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

from flask import Blueprint
from flask import Response
from flask import make_response
from flask import redirect
from flask import render_template
from flask import request
from flask.typing import ResponseReturnValue

from . import authorize
from .authorize import AuthorizeRequest
from .errors import AppleError
from .issue import Consent
from .issue import web_fields
from .state import AppleUser
from .state import EmulatorState
from .web import current_state

bp = Blueprint("authorize", __name__)
CANCELLED = "user_cancelled_authorize"
NAME_MAX = 100
EMAIL_MAX = 254
NEW_USER_FIELDS = ("email", "first_name", "last_name")


@bp.get("/auth/authorize")
def start() -> ResponseReturnValue:
    """Validate like Apple (errors are JSON, never redirected), then ask who signs in."""
    state = current_state()
    try:
        req = authorize.parse(state.settings, request.args)
    except AppleError as exc:
        return exc.response()
    with state.lock:
        script = state.next_logins.popleft() if state.next_logins else None
    if script is not None:
        return _run_script(state, req, script)
    return _signin_page(state, req)


@bp.post("/auth/authorize")
def submit() -> ResponseReturnValue:
    """Handle a page's form; its one-time token makes a replayed submission fail."""
    state = current_state()
    page = state.take_page(request.form.get("page", ""))
    if page is None:
        return render_template("expired.html"), 400
    req = AuthorizeRequest.from_dict(page["request"])
    if request.form.get("action") == "cancel":
        return deliver(req, cancel_fields(req))
    if page["stage"] == "signin":
        return _after_signin(state, req)
    user = state.find_user(page["user_id"])
    if user is None:  # the emulator was reset while the page was open
        return render_template("expired.html"), 400
    return deliver(req, web_fields(state, req, user, _consent_from_form(req)))


def cancel_fields(req: AuthorizeRequest) -> dict[str, str]:
    """The only error Apple sends to the redirect_uri."""
    fields = {"error": CANCELLED}
    if req.state is not None:
        fields["state"] = req.state
    return fields


def deliver(req: AuthorizeRequest, fields: dict[str, str]) -> Response:
    """Hand the result to the RP per response_mode: auto-submitted form, query or fragment."""
    if req.response_mode == "form_post":
        page = render_template("form_post.html", action=req.redirect_uri, fields=fields)
        response = make_response(page)
        response.headers["Cache-Control"] = "no-store"
        return response
    encoded = urlencode(fields)
    parts = urlsplit(req.redirect_uri)
    if req.response_mode == "query":
        query = f"{parts.query}&{encoded}" if parts.query else encoded
        return redirect(urlunsplit(parts._replace(query=query)), 302)
    return redirect(urlunsplit(parts._replace(fragment=encoded)), 302)


def _signin_page(state: EmulatorState, req: AuthorizeRequest, error: str | None = None,
                 status: int = 200) -> ResponseReturnValue:
    page = state.new_page({"stage": "signin", "request": req.as_dict()})
    with state.lock:
        users = [(u, state.authorization(u.id).first_time) for u in state.users.values()]
    chosen = chosen_account(request.form) if request.method == "POST" else ""
    if not chosen:  # the first visit: the first known user, or the new-user form if none
        chosen = users[0][0].id if users else "new"
    html = render_template("signin.html", req=req, page=page, users=users, error=error,
                           form=request.form, chosen=chosen, app_name=state.settings.app_name)
    return html, status


def _consent_page(state: EmulatorState, req: AuthorizeRequest, user: AppleUser) -> str:
    page = state.new_page({"stage": "consent", "request": req.as_dict(), "user_id": user.id})
    return render_template("consent.html", req=req, page=page, user=user,
                           app_name=state.settings.app_name)


def chosen_account(form: Any) -> str:
    """The account the person picked: typing into the new-user fields picks "new".

    The fields belong to the "New test user" option, so filled fields win over a radio button
    that was merely preselected (browsers without JavaScript cannot tick it while typing).
    """
    if any(form.get(k, "").strip() for k in NEW_USER_FIELDS):
        return "new"
    return form.get("account", "")


def _after_signin(state: EmulatorState, req: AuthorizeRequest) -> ResponseReturnValue:
    form = request.form
    account = chosen_account(form)
    if account == "new":
        email = form.get("email", "").strip()
        first, last = form.get("first_name", "").strip(), form.get("last_name", "").strip()
        if "@" not in email or len(email) > EMAIL_MAX:
            return _signin_page(state, req, "Enter the test user's email address.", 400)
        if len(first) > NAME_MAX or len(last) > NAME_MAX:
            return _signin_page(state, req, f"Names are limited to {NAME_MAX} characters.", 400)
        user = state.add_user(email, first, last)
    else:
        found = state.find_user(account) if account else None
        if found is None:
            return _signin_page(state, req, "Choose a test user or create one.", 400)
        user = found
    if state.authorization(user.id).first_time and req.scopes:
        return _consent_page(state, req, user)
    return deliver(req, web_fields(state, req, user, Consent()))


def _consent_from_form(req: AuthorizeRequest) -> Consent:
    form = request.form
    names: dict[str, str | None] = {"first_name": None, "last_name": None}
    if "name" in req.scopes:
        names = {k: form.get(k, "").strip()[:NAME_MAX] for k in names}
    return Consent(share_email=form.get("email_choice") != "hide", **names)


def _run_script(state: EmulatorState, req: AuthorizeRequest, script: dict[str, Any]) -> Response:
    """Complete a queued headless sign-in (admin `next-login`) without showing a page."""
    if script.get("cancel"):
        return deliver(req, cancel_fields(req))
    user = state.find_user(script.get("user_id")) if script.get("user_id") else None
    if user is None:
        user = state.add_user(script["email"], script.get("first_name", ""),
                              script.get("last_name", ""))
    consent = Consent(script.get("share_email", True), script.get("edited_first_name"),
                      script.get("edited_last_name"))
    return deliver(req, web_fields(state, req, user, consent))
