#!/usr/bin/env python3
"""A web app that signs people in through siwa-web, with Authlib's Flask client, and out again:
its Sign out ends siwa-web's session too (RP-initiated logout), and siwa-web tells it when a
siwa-web session ends elsewhere (back-channel logout).

    pip install flask authlib joserfc requests
    flask --app app clients create --type web --first-party --name "Example web app" \
        --redirect-uri http://127.0.0.1:8000/callback \
        --post-logout-redirect-uri http://127.0.0.1:8000/signed-out \
        --backchannel-logout-uri http://127.0.0.1:8000/backchannel-logout  # prints id, secret
    SIWA_ISSUER=http://localhost:5000 CLIENT_ID=cli_... CLIENT_SECRET=... \
        APP_SECRET_KEY="$(python -c 'import secrets; print(secrets.token_hex(32))')" \
        python docs/examples/webapp_flask.py                   # then open http://127.0.0.1:8000/

PORT changes the port (then register those URIs with it). See docs/web-apps.md.
"""
import os
import secrets
import time
from urllib.parse import urlencode

from authlib.integrations.flask_client import OAuth
from authlib.integrations.flask_client import OAuthError
from flask import Flask
from flask import abort
from flask import redirect
from flask import request
from flask import session
from flask import url_for
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from markupsafe import escape

ISSUER, CLIENT_ID = os.environ["SIWA_ISSUER"], os.environ["CLIENT_ID"]
LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
app = Flask(__name__)
app.secret_key = os.environ["APP_SECRET_KEY"]
# Browsers share cookies between the ports of a host: a name of its own keeps this app's
# session apart from siwa-web's (and from other apps') when they run side by side.
app.config["SESSION_COOKIE_NAME"] = "example_webapp"
oauth = OAuth(app)
# Authlib reads the endpoints from the discovery document and checks the ID token itself:
# its signature with a key from jwks_uri and an algorithm from the document's
# id_token_signing_alg_values_supported (siwa-web lists its own, ES256 by default), then
# iss, aud, exp, iat and the nonce it sent. Nothing about ES256 needs configuring.
oauth.register(
    "siwa", server_metadata_url=ISSUER + "/.well-known/openid-configuration",
    client_id=CLIENT_ID, client_secret=os.environ["CLIENT_SECRET"],
    client_kwargs={"scope": "openid profile email", "code_challenge_method": "S256"})
# Who is signed in, by siwa-web session (the ID token's `sid`, which logout tokens name),
# with the ID token that /logout hands back. In memory for the example: one process, lost on
# restart. Keep it in your database or Redis. The cookie holds the `sid` and the claims only.
SIGNED_IN: dict[str, dict] = {}  # sid -> {"sub": ..., "id_token": ...}
SEEN_LOGOUTS: dict[str, int] = {}  # jti -> exp of the logout tokens accepted: no replays


@app.get("/")
def home():
    user = session.get("user")
    if user is not None and session.get("sid") not in SIGNED_IN:  # ended by siwa-web
        session.clear()
        user = None
    if user is None:
        return '<p>Not signed in. <a href="/login">Sign in</a></p>'
    who = f"{escape(user.get('name', user['sub']))} &lt;{escape(user.get('email', ''))}&gt;"
    return (f"<p>Signed in as {who}</p><form method='post' action='/logout'>"
            "<button>Sign out</button></form>")


@app.get("/login")
def login():  # keeps state, nonce and the PKCE verifier in this app's session
    return oauth.siwa.authorize_redirect(url_for("callback", _external=True))


@app.get("/callback")
def callback():
    if request.args.get("iss") != ISSUER:  # siwa-web names itself in every answer
        abort(400)
    try:  # checks state, redeems the code with the secret and verifier, checks the ID token
        token = oauth.siwa.authorize_access_token()
    except OAuthError as exc:  # e.g. access_denied: the person pressed Deny
        return f'<p>Not signed in: {escape(exc.error)}. <a href="/login">Try again</a></p>', 400
    claims = token["userinfo"]  # the ID token's claims
    user = oauth.siwa.userinfo(token=token)  # GET /userinfo with the access token
    if user["sub"] != claims["sub"]:  # must be the person the ID token names
        abort(502)
    SIGNED_IN[claims["sid"]] = {"sub": claims["sub"], "id_token": token["id_token"]}
    session["user"], session["sid"] = dict(user), claims["sid"]
    return redirect("/")


@app.post("/logout")
def logout():  # ends this app's session, then siwa-web's (RP-initiated logout)
    signed_in = SIGNED_IN.pop(session.get("sid"), None)
    session.clear()
    if signed_in is None:  # siwa-web's session has ended already
        return redirect("/")
    session["logout_state"] = state = secrets.token_urlsafe(16)
    end_session = oauth.siwa.load_server_metadata()["end_session_endpoint"]
    return redirect(end_session + "?" + urlencode({
        "id_token_hint": signed_in["id_token"], "state": state,
        "post_logout_redirect_uri": url_for("signed_out", _external=True)}))


@app.get("/signed-out")
def signed_out():  # where siwa-web sends the browser back, with our state
    if request.args.get("state", "") != session.pop("logout_state", None):
        abort(400)
    return '<p>Signed out, here and at siwa-web. <a href="/login">Sign in</a></p>'


def logout_claims(token: str) -> dict:
    """The claims of a valid logout token for this app; JoseError or ValueError if not."""
    algorithms = oauth.siwa.load_server_metadata()["id_token_signing_alg_values_supported"]
    try:  # the same keys as ID tokens; an unknown key id: siwa-web rotated, fetch them again
        claims = jwt.decode(token, KeySet.import_key_set(oauth.siwa.fetch_jwk_set()),
                            algorithms).claims
    except InvalidKeyIdError:
        claims = jwt.decode(token, KeySet.import_key_set(oauth.siwa.fetch_jwk_set(force=True)),
                            algorithms).claims
    jwt.JWTClaimsRegistry(  # also refuses an expired token, or one issued in the future
        iss={"essential": True, "value": ISSUER}, aud={"essential": True, "value": CLIENT_ID},
        exp={"essential": True}, iat={"essential": True}, jti={"essential": True},
    ).validate(claims)
    if claims.get("events") != {LOGOUT_EVENT: {}} or "nonce" in claims:  # not an ID token
        raise ValueError("not a logout token")
    if not (claims.get("sid") or claims.get("sub")) or claims["jti"] in SEEN_LOGOUTS:
        raise ValueError("names no session, or replayed")
    for jti, exp in list(SEEN_LOGOUTS.items()):  # remember a jti until its token expires
        if exp < time.time():
            SEEN_LOGOUTS.pop(jti, None)
    SEEN_LOGOUTS[claims["jti"]] = claims["exp"]
    return claims


@app.post("/backchannel-logout")
def backchannel_logout():  # siwa-web, server to server: one of its sessions has ended
    try:
        claims = logout_claims(request.form.get("logout_token", ""))
    except (JoseError, ValueError):
        return {"error": "invalid_request"}, 400, {"Cache-Control": "no-store"}
    for sid, signed_in in list(SIGNED_IN.items()):  # its sid (or, without one, its sub)
        if sid == claims.get("sid") or ("sid" not in claims and signed_in["sub"] == claims["sub"]):
            SIGNED_IN.pop(sid, None)  # that browser's next request here finds it signed out
    return "", 200, {"Cache-Control": "no-store"}  # an unknown sid too: it has ended already


if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", "8000")))
