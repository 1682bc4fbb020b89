"""Web apps (relying parties) for the provider tests: registration, PKCE, the code flow."""
from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs
from urllib.parse import urlsplit

from siwa_web.infra.extensions import db
from siwa_web.oauth import clients

ISSUER = "https://siwa.test"
APP_REDIRECT = "https://app.example/callback"
OTHER_REDIRECT = "https://app.example/other"


@dataclass
class WebApp:
    client_id: str
    secret: str | None
    redirect_uri: str = APP_REDIRECT


def register(app, *, public: bool = False, first_party: bool = True, name: str = "Example App",
             redirect_uris: tuple[str, ...] = (APP_REDIRECT, OTHER_REDIRECT),
             **options) -> WebApp:
    with app.app_context():
        client, secret = clients.create_web(
            db.session, name=name, redirect_uris=redirect_uris, public=public,
            first_party=first_party, production=False, **options)
        db.session.commit()
        return WebApp(client.id, secret, redirect_uris[0])


def pkce() -> tuple[str, str]:
    """(verifier, S256 challenge)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def basic(webapp: WebApp, secret: str | None = None) -> dict[str, str]:
    raw = f"{webapp.client_id}:{secret if secret is not None else webapp.secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def authorize_params(webapp: WebApp, challenge: str | None, **extra) -> dict[str, str]:
    params = {"response_type": "code", "client_id": webapp.client_id,
              "redirect_uri": webapp.redirect_uri, "scope": "openid profile email",
              "state": "state-123", "nonce": "nonce-456"}
    if challenge is not None:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    params.update(extra)
    return {k: v for k, v in params.items() if v is not None}


def answer(response) -> dict[str, str]:
    """The parameters of a redirect back to the app (query, with `#_` dropped)."""
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    location = response.headers["Location"]
    parts = urlsplit(location)
    return {k: v[0] for k, v in parse_qs(parts.query).items()} | {
        "_to": f"{parts.scheme}://{parts.netloc}{parts.path}"}


def redeem(client, webapp: WebApp, code: str, verifier: str | None, **extra):
    data = {"grant_type": "authorization_code", "code": code,
            "redirect_uri": webapp.redirect_uri}
    if verifier is not None:
        data["code_verifier"] = verifier
    headers = {}
    if webapp.secret is not None:
        headers = basic(webapp)
    else:
        data["client_id"] = webapp.client_id
    data.update(extra)
    return client.post("/oauth/token", data={k: v for k, v in data.items() if v is not None},
                       headers=headers)
