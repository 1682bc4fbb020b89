#!/usr/bin/env python3
"""What a single-page app does to sign people in through siwa-web: a public client (no
secret) with PKCE, written with Authlib so that it runs here; a JavaScript app takes the same
steps with its OpenID Connect library.

    pip install authlib requests "pyjwt[crypto]"
    flask --app app clients create --type web --public --name "Example SPA" \
        --redirect-uri http://127.0.0.1:8000/callback          # prints the client_id
    python docs/examples/spa_pkce.py --issuer http://localhost:5000 --client-id cli_... \
        --redirect-uri http://127.0.0.1:8000/callback

The script prints the authorization URL; open it, sign in, and paste the address the browser
ends up on (nothing needs to answer there). It then calls /userinfo, refreshes the tokens and
revokes them, printing each result. In code, `SinglePageApp.sign_in` takes the browser step
as a function: given the URL, return that address.
"""
from __future__ import annotations

import argparse
import json
import secrets
from collections.abc import Callable
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import jwt  # PyJWT, for the ID token
import requests
from authlib.integrations.requests_client import OAuth2Session

SCOPE = "openid profile email offline_access"  # offline_access: a refresh token too


class SignInError(Exception):
    """The sign-in did not succeed; `error` is the OAuth error code."""

    def __init__(self, error: str, description: str = "") -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error


class SinglePageApp:
    """One signed-in person's tokens, held in memory as a single-page app holds them."""

    def __init__(self, issuer: str, client_id: str, redirect_uri: str, *,
                 timeout: float = 10) -> None:
        self.timeout = timeout
        response = requests.get(issuer.rstrip("/") + "/.well-known/openid-configuration",
                                timeout=timeout)
        response.raise_for_status()
        self.metadata = response.json()
        # No client_secret: the client authenticates with client_id alone ("none"), and PKCE
        # proves that the app redeeming the code is the one that asked for it.
        self.oauth = OAuth2Session(client_id, redirect_uri=redirect_uri,
                                   code_challenge_method="S256",
                                   token_endpoint_auth_method="none",
                                   revocation_endpoint_auth_method="none")
        self.id_token_claims: dict = {}

    def sign_in(self, browser: Callable[[str], str], scope: str = SCOPE) -> dict:
        """Send the browser to siwa-web and redeem the code it brings back; returns the tokens."""
        verifier = secrets.token_urlsafe(48)  # stays in the app; the URL carries its SHA-256
        nonce = secrets.token_urlsafe(16)
        url, state = self.oauth.create_authorization_url(
            self.metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce,
            scope=scope)
        # The answer comes in the query; the fragment (siwa-web appends "#_") is not part of it.
        answer = {k: v[0] for k, v in parse_qs(urlsplit(browser(url)).query).items()}
        if answer.get("state") != state or answer.get("iss") != self.metadata["issuer"]:
            raise SignInError("answer_mismatch", "not the answer to this request")
        if "error" in answer:  # e.g. access_denied, login_required
            raise SignInError(answer["error"], answer.get("error_description", ""))
        token = self.oauth.fetch_token(
            self.metadata["token_endpoint"], grant_type="authorization_code",
            code=answer["code"], code_verifier=verifier, timeout=self.timeout)
        self.id_token_claims = self._verify_id_token(token["id_token"], nonce)
        return token

    def _verify_id_token(self, id_token: str, nonce: str) -> dict:
        key = jwt.PyJWKClient(self.metadata["jwks_uri"]).get_signing_key_from_jwt(id_token)
        claims = jwt.decode(
            id_token, key, algorithms=self.metadata["id_token_signing_alg_values_supported"],
            audience=self.oauth.client_id, issuer=self.metadata["issuer"],
            options={"require": ["iss", "sub", "aud", "exp", "iat", "nonce"]})
        if claims["nonce"] != nonce:
            raise SignInError("invalid_id_token", "the nonce is not this sign-in's")
        return claims

    def userinfo(self) -> dict:
        """The signed-in person's claims, from /userinfo with the access token."""
        response = self.oauth.get(self.metadata["userinfo_endpoint"], timeout=self.timeout)
        response.raise_for_status()
        return response.json()

    def refresh(self) -> dict:
        """New tokens for the refresh token; the old refresh token stops working."""
        return self.oauth.refresh_token(self.metadata["token_endpoint"], timeout=self.timeout)

    def sign_out(self) -> None:
        """Revoke the refresh token: this app session (and its access tokens) ends."""
        response = self.oauth.revoke_token(
            self.metadata["revocation_endpoint"], token=self.oauth.token["refresh_token"],
            token_type_hint="refresh_token", timeout=self.timeout)
        response.raise_for_status()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--issuer", required=True, help="siwa-web's ISSUER")
    parser.add_argument("--client-id", required=True, help="a public web client's client_id")
    parser.add_argument("--redirect-uri", required=True, help="one of its redirect URIs")
    args = parser.parse_args(argv)

    def browser(url: str) -> str:
        print(f"Open this URL and sign in:\n\n  {url}\n")
        return input("Paste the address the browser ended on: ").strip()

    app = SinglePageApp(args.issuer, args.client_id, args.redirect_uri)
    try:
        app.sign_in(browser)
    except SignInError as exc:
        print(f"not signed in: {exc}")
        return 1
    for title, value in (("ID token", app.id_token_claims), ("/userinfo", app.userinfo()),
                         ("refreshed", sorted(app.refresh()))):
        print(f"== {title}\n{json.dumps(value, indent=2, sort_keys=True)}")
    app.sign_out()
    print("== signed out (refresh token revoked)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
