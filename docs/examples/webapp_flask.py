#!/usr/bin/env python3
"""A web app that signs people in through siwa-web, with Authlib's Flask client.

    pip install flask authlib requests
    flask --app app clients create --type web --first-party --name "Example web app" \
        --redirect-uri http://127.0.0.1:8000/callback          # prints client_id and secret
    SIWA_ISSUER=http://localhost:5000 CLIENT_ID=cli_... CLIENT_SECRET=... \
        APP_SECRET_KEY="$(python -c 'import secrets; print(secrets.token_hex(32))')" \
        python docs/examples/webapp_flask.py                   # then open http://127.0.0.1:8000/

PORT changes the port (then register that redirect URI). See docs/web-apps.md.
"""
import os

from authlib.integrations.flask_client import OAuth
from authlib.integrations.flask_client import OAuthError
from flask import Flask
from flask import abort
from flask import redirect
from flask import request
from flask import session
from flask import url_for
from markupsafe import escape

ISSUER = os.environ["SIWA_ISSUER"]
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
    client_id=os.environ["CLIENT_ID"], client_secret=os.environ["CLIENT_SECRET"],
    client_kwargs={"scope": "openid profile email", "code_challenge_method": "S256"})


@app.get("/")
def home():
    user = session.get("user")
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
    user = oauth.siwa.userinfo(token=token)  # GET /userinfo with the access token
    if user["sub"] != token["userinfo"]["sub"]:  # must be the person the ID token names
        abort(502)
    session["user"] = dict(user)  # the claims only: tokens stay out of the cookie
    return redirect("/")


@app.post("/logout")
def logout():
    session.pop("user", None)  # this app only: siwa-web's own session goes on
    return redirect("/")


if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", "8000")))
