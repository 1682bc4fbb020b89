"""Withdrawing consent out of band: Settings → Apple Account → Sign in with Apple → Stop using.

Apple does not always tell the app (a notification may never arrive, or none is configured);
the app then learns it only when a stored refresh token starts answering `invalid_grant`. These
controls do exactly that — end the consent and invalidate every token, send nothing — so the
daily token check can be tested end to end:

* `POST /__emulator/consent/withdraw` with `{"sub": ...}` or `{"user_id": ...}` (JSON or form);
* `GET /__emulator/consent`: a page listing the users, with a "Stop using" button each;
* `flask emulator withdraw-consent SUB`: the same from a shell, against the emulator mounted in
  this app or, failing that, the one at `APPLE_BASE_URL` (`flask emulator run`).
"""
from __future__ import annotations

from typing import Any

import click
import requests
from flask import current_app
from flask import jsonify
from flask import redirect
from flask import render_template_string
from flask import request
from flask import url_for
from flask.cli import with_appcontext
from flask.typing import ResponseReturnValue

from .admin import BadInput
from .admin import body
from .admin import bp
from .admin import find_user
from .admin import user_json
from .state import EmulatorState
from .web import STATE_KEY
from .web import current_state

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Emulator: Sign in with Apple consent</title>
<link rel="stylesheet" href="{{ url_for('static', filename='emulator.css') }}"></head>
<body><main><h1>Sign in with Apple in Settings</h1>
<p>"Stop using" ends a person's consent and every token, and sends no notification.</p>
<table><tr><th>Email</th><th>sub</th><th>Consent</th><th></th></tr>
{% for u in users %}<tr><td>{{ u.email }}</td><td><code>{{ u.sub }}</code></td>
<td>{{ u.authorization.status }}</td><td>{% if u.authorization.status == "authorized" %}
<form method="post" action="{{ url_for('admin.withdraw_consent') }}">
<input type="hidden" name="sub" value="{{ u.sub }}"><button>Stop using</button></form>
{% endif %}</td></tr>{% endfor %}</table></main></body></html>"""


def withdraw(state: EmulatorState, data: dict[str, Any]) -> dict[str, Any]:
    """End the user's consent and tokens without telling the app; return the user."""
    user = find_user(state, data)
    state.revoke_user(user.id)
    with state.lock:
        return user_json(state, user)


@bp.get("/consent")
def consent_page() -> ResponseReturnValue:
    """Every test user with their consent, and the out-of-band "Stop using" button."""
    state = current_state()
    with state.lock:
        users = [user_json(state, u) for u in state.users.values()]
    return render_template_string(PAGE, users=users)


@bp.post("/consent/withdraw")
def withdraw_consent() -> ResponseReturnValue:
    """Withdraw by `sub` or `user_id`; a form post (the page) goes back to the page."""
    state = current_state()
    if request.mimetype == "application/x-www-form-urlencoded":
        withdraw(state, {"sub": request.form.get("sub") or None,
                         "user_id": request.form.get("user_id") or None})
        return redirect(url_for("admin.consent_page"), code=303)
    return jsonify(user=withdraw(state, body()))


@click.command("withdraw-consent")
@with_appcontext
@click.argument("sub")
def withdraw_consent_command(sub: str) -> None:
    """Stop using Sign in with Apple for SUB, out of band (no notification is sent).

    Acts on the emulator mounted in this app, or else on the one at APPLE_BASE_URL.
    """
    mounted = current_app.extensions.get("siwa.emulator")
    if mounted is not None:
        with mounted.app_context():
            try:
                withdraw(mounted.extensions[STATE_KEY], {"sub": sub})
            except BadInput as exc:
                raise click.ClickException(str(exc)) from None
    else:
        url = current_app.config["APPLE_BASE_URL"].rstrip("/") + "/__emulator/consent/withdraw"
        try:
            resp = requests.post(url, json={"sub": sub}, timeout=5)
        except requests.RequestException as exc:
            raise click.ClickException(f"the emulator at {url} did not answer: {exc}") from None
        if resp.status_code != 200:
            raise click.ClickException(f"the emulator at {url} answered {resp.status_code}")
    click.echo(f"Consent withdrawn for {sub}: its Apple tokens now answer invalid_grant.")
