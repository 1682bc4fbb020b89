"""The signed-in user's account page: who they are, where they are signed in, and the controls.

Every action is a POST form with a CSRF token (CSRFProtect, app-wide), names its target by an id
that is looked up *within the signed-in user's rows* (another user's id is a plain 404), and
writes an audit event in the transaction that makes the change. Removing an Apple Account and
deleting the account also need a recent sign-in (`FRESH_LOGIN_MAX_AGE`).
"""
from __future__ import annotations

from datetime import timedelta

from flask import Blueprint
from flask import Flask
from flask import abort
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_login import login_required
from flask_login import logout_user
from werkzeug.wrappers import Response

from ..infra.extensions import db
from ..infra.nostore import no_store
from ..lifecycle import revocations as apple_revocations
from ..models import WebSession
from ..models.base import now_utc
from ..oauth.refresh import revoke_family
from ..oauth.refresh import revoke_user_families
from ..users import audit
from ..users import deletion
from ..users import sign_out
from ..users.sign_out import end_sessions
from ..users.sign_out import end_web_sessions
from ..web import sessions
from ..web.errors import render_error
from ..web.origin import refuse_cross_site_posts
from . import cards

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")
MANUAL_REVOKE = ("On an iPhone: Settings → your name → Sign-In & Security → Sign in with Apple; "
                 "on the web: account.apple.com → Sign-In and Security → Sign in with Apple.")


bp.before_request(refuse_cross_site_posts)  # backs up the CSRF token (DASH-04)


# Account pages show who is signed in where: never keep them in any cache.
bp.after_request(no_store)


def _user_id() -> str:
    return current_user.id


def _current_session_id() -> str | None:
    row = sessions.current()
    return row.id if row is not None else None


def _is_fresh() -> bool:
    """Return whether this browser signed in with Apple recently enough for a sensitive action."""
    row = sessions.current()
    max_age = timedelta(seconds=current_app.config["FRESH_LOGIN_MAX_AGE"])
    return row is not None and now_utc() - row.auth_time <= max_age


def _back() -> Response:
    return redirect(url_for("dashboard.index"), code=303)


@bp.get("")
@login_required
def index() -> ResponseReturnValue:
    """Show the profile, linked Apple Accounts, web and app sessions, and recent activity."""
    overview = cards.overview(current_user, _current_session_id())
    return render_template("dashboard/index.html", o=overview)


@bp.get("/activity")
@login_required
def activity() -> ResponseReturnValue:
    """Show the user's own audit trail, newest first, a page at a time."""
    page = cards.activity_page(_user_id(), request.args.get("page", 1, type=int))
    return render_template("dashboard/activity.html", page=page)


@bp.post("/sessions/<session_id>/revoke")
@login_required
def revoke_session(session_id: str) -> ResponseReturnValue:
    """Sign one web session out, at once."""
    row = cards.own_session(_user_id(), session_id)
    if row is None:
        abort(404)
    if row.id == _current_session_id():  # the page offers "Sign out" here; honour it anyway
        audit.record("session_revoked", user_id=_user_id(), details={"session": row.id})
        sessions.end_current("signed out from dashboard")
        db.session.commit()
        flash("You are signed out.", "info")
        return redirect(url_for("auth.login"), code=303)
    # compare-and-set: a double submit records one revocation
    won = end_sessions(WebSession.id == row.id, reason="signed out from dashboard")
    if won:
        audit.record("session_revoked", user_id=_user_id(), details={"session": row.id})
        flash("That session is signed out. Anyone using it has to sign in again.", "success")
    else:
        flash("That session had already ended.", "info")
    db.session.commit()
    return _back()


@bp.post("/sessions/revoke-others")
@login_required
def revoke_other_sessions() -> ResponseReturnValue:
    """Sign out every web session except this browser's."""
    count = end_web_sessions(_user_id(), "signed out from dashboard",
                             keep=_current_session_id())
    audit.record("sessions_revoked_others", user_id=_user_id(), details={"count": count})
    db.session.commit()
    flash(f"Signed out {_plural(count, 'other session')}." if count
          else "There were no other sessions to sign out.", "success")
    return _back()


@bp.post("/apps/<family_id>/revoke")
@login_required
def revoke_app(family_id: str) -> ResponseReturnValue:
    """End one app session: its refresh token and access tokens stop working at once."""
    family = cards.own_family(_user_id(), family_id)
    if family is None:
        abort(404)
    name = family.client.name
    if revoke_family(db.session, family, "revoked from dashboard"):
        audit.record("family_revoked", user_id=_user_id(), client_id=family.client_id,
                     details={"family": family.id})
        db.session.commit()
        flash(f"{name} is signed out on that device.", "success")
    else:
        db.session.rollback()
        flash(f"That {name} session had already ended.", "info")
    return _back()


@bp.post("/apps/revoke-all")
@login_required
def revoke_all_apps() -> ResponseReturnValue:
    """End every app session of the user."""
    count = revoke_user_families(db.session, _user_id(), "revoked from dashboard")
    audit.record("families_revoked_all", user_id=_user_id(), details={"count": count})
    db.session.commit()
    flash(f"Signed out of {_plural(count, 'app session')}." if count
          else "No app was signed in.", "success")
    return _back()


@bp.get("/identities/<identity_id>/unlink")
@login_required
def confirm_unlink(identity_id: str) -> ResponseReturnValue:
    """Explain what unlinking an Apple Account does, after a fresh sign-in."""
    identity = cards.own_identity(_user_id(), identity_id)
    if identity is None:
        abort(404)
    if not _is_fresh():
        return _reauth_page(url_for("dashboard.confirm_unlink", identity_id=identity_id),
                            "remove an Apple Account from your account")
    count = cards.identity_count(_user_id())
    return render_template("dashboard/unlink.html", identity=cards.identity_card(identity),
                           is_last=count < 2)


@bp.post("/connected/<client_id>/disconnect")
@login_required
def disconnect_app(client_id: str) -> ResponseReturnValue:
    """Disconnect a web app: forget the consent, end its sign-ins, tell it (back-channel)."""
    card = next((c for c in cards.connected_apps(_user_id()) if c.client_id == client_id), None)
    if card is None:
        abort(404)
    ended = sign_out.disconnect_app(_user_id(), client_id)
    audit.record("app_disconnected", user_id=_user_id(), client_id=client_id,
                 details={"sign_ins_ended": ended})
    db.session.commit()
    flash(f"{card.name} is disconnected. It has to ask you again before it can sign you in.",
          "success")
    return _back()


@bp.post("/identities/<identity_id>/unlink")
@login_required
def unlink(identity_id: str) -> ResponseReturnValue:
    """Remove an Apple Account from the account, never the last one."""
    if cards.own_identity(_user_id(), identity_id) is None:
        abort(404)
    if not _is_fresh():
        return redirect(url_for("dashboard.confirm_unlink", identity_id=identity_id), code=303)
    try:
        removed = deletion.unlink_identity(_user_id(), identity_id,
                                           keep_session=_current_session_id())
    except LookupError:
        db.session.rollback()
        abort(404)
    except deletion.LastIdentity:
        db.session.rollback()
        body, status = render_error(
            409, "You can't remove your only Apple Account",
            "It is the only way to sign in to this account, so it was not removed.",
            "Link another Apple Account first, or delete the account instead.")
        return body, status
    db.session.commit()
    apple_revocations.send_due(removed.revocation_ids)
    ended = removed.web_sessions + removed.app_sessions
    flash("Apple Account removed. It can no longer sign in to this account"
          + (f", and {_plural(ended, 'session')} signed in with it ended." if ended else "."),
          "success")
    return _back()


@bp.get("/delete")
@login_required
def confirm_delete() -> ResponseReturnValue:
    """Explain what deleting the account does, after a fresh sign-in."""
    if not _is_fresh():
        return _reauth_page(url_for("dashboard.confirm_delete"), "delete your account")
    summary = cards.overview(current_user, _current_session_id())
    return render_template("dashboard/delete.html", o=summary)


@bp.post("/delete")
@login_required
def delete() -> ResponseReturnValue:
    """Delete the account at once; Apple is told afterwards, and again until it hears."""
    if not _is_fresh():
        return redirect(url_for("dashboard.confirm_delete"), code=303)
    if request.form.get("confirm") != "yes":
        flash("Tick the box to confirm that you want to delete the account.", "error")
        return redirect(url_for("dashboard.confirm_delete"), code=303)
    try:
        removed, report = apple_revocations.delete_account(_user_id())
    except LookupError:
        abort(404)
    logout_user()
    session.clear()
    if not removed.revocation_ids:
        flash("Your account and its data are deleted. To also remove siwa-web from your Apple "
              f"ID: {MANUAL_REVOKE}", "success")
    elif report.all_sent:
        flash("Your account and its data are deleted, and Apple has been told that siwa-web "
              "may no longer use your Apple Account.", "success")
    else:
        flash("Your account and its data are deleted. Apple could not be reached to end "
              "Sign in with Apple for siwa-web; we keep trying automatically. You can also do "
              f"it yourself: {MANUAL_REVOKE}", "warning")
    return redirect(url_for("auth.login"), code=303)


def _reauth_page(next_url: str, action: str) -> ResponseReturnValue:
    minutes = max(1, current_app.config["FRESH_LOGIN_MAX_AGE"] // 60)
    return render_template("dashboard/reauth.html", next_url=next_url, action=action,
                           minutes=minutes), 200


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
