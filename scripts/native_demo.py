#!/usr/bin/env python3
"""Play a native iOS app against a running siwa-web and its Apple emulator.

    .venv/bin/flask --app app clients create --name "Demo iOS" --bundle-id com.example.demo
    make run                                                    # the emulator is at /__apple
    .venv/bin/python scripts/native_demo.py --client-id cli_... --bundle-id com.example.demo

Steps, as an app would do them: sign in with Apple on the "device" (the emulator hands out the
credential an `ASAuthorizationAppleIDCredential` carries), exchange the authorization code at
/oauth/token, call /api/me, refresh, revoke, and show that the revoked session is dead.
Exits 0 when every step behaved as documented in docs/native.md.

To try the token endpoint and your API by hand, let the demo stop earlier and print shell
variables for `eval`:

    eval "$(.venv/bin/python scripts/native_demo.py --client-id ... --bundle-id ... --export)"
        # ACCESS_TOKEN, ID_TOKEN, REFRESH_TOKEN: a live sign-in (nothing refreshed or revoked)
    eval "$(.venv/bin/python scripts/native_demo.py --client-id ... --bundle-id ... --apple-code)"
        # APPLE_CODE and NONCE: an unspent Apple code for your own POST /oauth/token

With a standalone emulator (`flask emulator run`), pass its URL with --apple-url.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shlex
import sys

import requests

DEFAULT_BASE_URL = "http://localhost:5000"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
APPLE_CODE = "http://auth0.com/oauth/token-type/apple-authz-code"


APPLE_URL_HINT = (
    "siwa-web mounts the emulator at <base-url>/__apple only when it runs it itself (make run); "
    "with a standalone one (flask emulator run), pass its URL: --apple-url http://127.0.0.1:5001 "
    "(the value of SIWA_APPLE_BASE_URL).")


class DemoFailed(Exception):
    pass


class Demo:
    def __init__(self, base_url: str, apple_url: str, client_id: str, bundle_id: str,
                 quiet: bool = False) -> None:
        self.base_url = base_url.rstrip("/")
        self.apple_url = apple_url.rstrip("/")
        self.client_id = client_id
        self.bundle_id = bundle_id
        self.quiet = quiet
        self.http = requests.Session()
        self.http.headers["User-Agent"] = "siwa-native-demo/1.0 (simulated iOS)"

    def say(self, step: str, data: object = None) -> None:
        if self.quiet:
            return
        print(f"\n== {step}")
        if data is not None:
            print(json.dumps(data, indent=2, sort_keys=True) if not isinstance(data, str) else data)

    def expect(self, response: requests.Response, status: int, what: str) -> dict:
        """The JSON body of an answer with `status`; anything else names URL, status and body."""
        request = response.request
        where = f"{request.method} {response.url}"
        try:
            body = response.json() if response.content else {}
        except ValueError:
            kind = response.headers.get("Content-Type", "no content type").split(";")[0]
            start = " ".join(response.text.split())[:80]
            raise DemoFailed(f"{what}: {where} answered {response.status_code} with {kind}, not "
                             f"JSON: {start!r}") from None
        if response.status_code != status:
            raise DemoFailed(f"{what}: {where} answered {response.status_code} (expected "
                             f"{status}): {body}")
        return body

    def device_sign_in(self, raw_nonce: str) -> dict:
        """What Sign in with Apple returns on the device; Apple gets SHA256(raw nonce)."""
        url = self.apple_url + "/__emulator/native/authorize"
        try:
            response = self.http.post(url, json={
                "bundle_id": self.bundle_id, "email": "demo@example.com", "first_name": "Demo",
                "last_name": "User", "nonce": hashlib.sha256(raw_nonce.encode()).hexdigest()})
        except requests.ConnectionError:
            raise DemoFailed(f"emulator native sign-in: nothing answers at {self.apple_url}. "
                             f"{APPLE_URL_HINT}") from None
        if response.status_code == 404 or "json" not in response.headers.get("Content-Type", ""):
            kind = response.headers.get("Content-Type", "no content type").split(";")[0]
            raise DemoFailed(
                f"emulator native sign-in: POST {url} answered {response.status_code} "
                f"({kind}): the Apple emulator's test controls are not there. {APPLE_URL_HINT}")
        credential = self.expect(response, 200, "emulator native sign-in")
        self.say("1. Apple credential on the device", {
            "user": credential["user"], "fullName": credential["fullName"],
            "authorizationCode": credential["authorizationCode"][:12] + "..."})
        return credential

    def exchange(self, credential: dict, raw_nonce: str) -> dict:
        full_name = credential.get("fullName") or {}
        form = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": credential["authorizationCode"],
            "subject_token_type": APPLE_CODE,
            "client_id": self.client_id,
            "scope": "openid profile email offline_access",
            "nonce": raw_nonce,
        }
        if full_name:  # only on the first authorization: send it, or it is lost
            form["user_profile"] = json.dumps({"name": {
                "firstName": full_name.get("givenName"), "lastName": full_name.get("familyName")}})
        tokens = self.expect(self.http.post(self.base_url + "/oauth/token", data=form), 200,
                             "token exchange")
        self.say("2. POST /oauth/token (token exchange)", _shorten(tokens))
        return tokens

    def me(self, access_token: str, status: int = 200) -> dict:
        response = self.http.get(self.base_url + "/api/me",
                                 headers={"Authorization": f"Bearer {access_token}"})
        body = self.expect(response, status, "GET /api/me")
        if status != 200:
            body = {"status": response.status_code,
                    "WWW-Authenticate": response.headers.get("WWW-Authenticate")}
        return body

    def refresh(self, refresh_token: str) -> dict:
        tokens = self.expect(self.http.post(self.base_url + "/oauth/token", data={
            "grant_type": "refresh_token", "refresh_token": refresh_token,
            "client_id": self.client_id}), 200, "refresh")
        if tokens["refresh_token"] == refresh_token:
            raise DemoFailed("refresh did not rotate the refresh token")
        self.say("4. POST /oauth/token (refresh_token): a new refresh token", _shorten(tokens))
        return tokens

    def revoke(self, refresh_token: str) -> None:
        response = self.http.post(self.base_url + "/oauth/revoke", data={
            "token": refresh_token, "token_type_hint": "refresh_token",
            "client_id": self.client_id})
        if response.status_code != 200:
            raise DemoFailed(f"revoke: {response.status_code} {response.text}")
        self.say("5. POST /oauth/revoke: 200")

    def discover(self) -> None:
        url = self.base_url + "/.well-known/openid-configuration"
        try:
            response = self.http.get(url)
        except requests.ConnectionError:
            raise DemoFailed(f"discovery: nothing answers at {self.base_url}; start siwa-web "
                             "(make run) or pass its URL with --base-url") from None
        config = self.expect(response, 200, f"discovery (is {self.base_url} siwa-web?)")
        if TOKEN_EXCHANGE not in config.get("grant_types_supported", ()):
            raise DemoFailed(f"discovery: {url} does not offer the token exchange")

    def apple_code(self) -> dict[str, str]:
        """An unspent Apple code and the raw nonce it is bound to, for a hand-made exchange."""
        self.discover()
        raw_nonce = secrets.token_urlsafe(32)
        credential = self.device_sign_in(raw_nonce)
        return {"APPLE_CODE": credential["authorizationCode"], "NONCE": raw_nonce}

    def tokens(self) -> dict[str, str]:
        """A live sign-in's tokens (exchanged, not refreshed or revoked)."""
        self.discover()
        raw_nonce = secrets.token_urlsafe(32)
        tokens = self.exchange(self.device_sign_in(raw_nonce), raw_nonce)
        return {"ACCESS_TOKEN": tokens["access_token"], "ID_TOKEN": tokens["id_token"],
                "REFRESH_TOKEN": tokens["refresh_token"]}

    def run(self) -> None:
        self.discover()
        raw_nonce = secrets.token_urlsafe(32)
        credential = self.device_sign_in(raw_nonce)
        tokens = self.exchange(credential, raw_nonce)
        self.say("3. GET /api/me", self.me(tokens["access_token"]))
        rotated = self.refresh(tokens["refresh_token"])
        self.say("   GET /api/me with the new access token", self.me(rotated["access_token"]))
        self.revoke(rotated["refresh_token"])
        self.say("6. GET /api/me after revocation", self.me(rotated["access_token"], status=401))
        gone = self.http.post(self.base_url + "/oauth/token", data={
            "grant_type": "refresh_token", "refresh_token": rotated["refresh_token"],
            "client_id": self.client_id})
        self.say("   refresh after revocation", self.expect(gone, 400, "refresh after revoke"))
        self.say("done: sign-in, API call, refresh and revocation behaved as documented")


def _shorten(tokens: dict) -> dict:
    return {k: (v[:16] + "..." if k.endswith("token") and isinstance(v, str) else v)
            for k, v in tokens.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Play a native iOS app against siwa-web.")
    parser.add_argument("--base-url", default=os.environ.get("SIWA_ISSUER") or DEFAULT_BASE_URL,
                        help="siwa-web's ISSUER (default: $SIWA_ISSUER, else "
                             f"{DEFAULT_BASE_URL}, where make run serves)")
    parser.add_argument("--apple-url", help="the emulator (default: <base-url>/__apple)")
    parser.add_argument("--client-id", required=True, help="from `flask clients create`")
    parser.add_argument("--bundle-id", required=True, help="the client's bundle id")
    parser.add_argument("--quiet", action="store_true")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--export", action="store_true",
                      help="sign in and exchange only, then print `export ACCESS_TOKEN=... "
                           "ID_TOKEN=... REFRESH_TOKEN=...` for eval in a shell")
    only.add_argument("--apple-code", action="store_true",
                      help="sign in on the device only, then print `export APPLE_CODE=... "
                           "NONCE=...`: an unspent code for your own POST /oauth/token")
    args = parser.parse_args(argv)
    demo = Demo(args.base_url, args.apple_url or args.base_url.rstrip("/") + "/__apple",
                args.client_id, args.bundle_id, quiet=args.quiet or args.export or args.apple_code)
    try:
        if args.export or args.apple_code:
            found = demo.tokens() if args.export else demo.apple_code()
            print("export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in found.items()))
        else:
            demo.run()
    except (DemoFailed, requests.RequestException) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
