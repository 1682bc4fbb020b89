#!/usr/bin/env python3
"""Validate a siwa-web access token in your own API, with PyJWT and requests only.

    pip install "pyjwt[crypto]" requests
    python validate_token.py --issuer https://siwa.example.com \
        --audience https://siwa.example.com/api <access token>

Prints the verified claims as JSON and exits 0, or prints why the token was refused and exits 1.
In a real API, build one `AccessTokenValidator` at start-up and call `validate()` per request.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time

import jwt  # PyJWT
import requests

ACCESS_TOKEN_TYPES = {"at+jwt", "application/at+jwt"}  # RFC 9068 §2.1
ALGORITHMS = ["ES256"]  # what siwa-web signs with; never take the algorithm from the token
REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"]


class InvalidToken(Exception):
    """The token must be refused with 401 and `WWW-Authenticate: Bearer error="invalid_token"`."""


class AccessTokenValidator:
    """Check typ, signature (keys from the issuer's JWKS, by kid), iss, aud, exp and claims."""

    def __init__(self, issuer: str, audience: str, *, jwks_url: str | None = None,
                 leeway: int = 0, refetch_cooldown: float = 30.0) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.jwks_url = jwks_url or self.issuer + "/.well-known/jwks.json"
        self.leeway = leeway
        self.refetch_cooldown = refetch_cooldown
        self.session = requests.Session()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def validate(self, token: str) -> dict:
        """Return the token's claims, or raise InvalidToken."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("not a JWT") from exc
        # 1. Only access tokens: an ID token (typ "JWT") must never work as a Bearer token.
        if str(header.get("typ", "")).lower() not in ACCESS_TOKEN_TYPES:
            raise InvalidToken("not an access token (typ must be at+jwt)")
        # 2. The key comes from the issuer's published set, looked up by kid; jku/x5u/jwk
        #    headers are ignored, and the algorithm is ours, not the header's.
        key = self._key(header.get("kid"))
        # 3. Signature, issuer, audience, expiry and the claims we rely on.
        try:
            return jwt.decode(
                token, key, algorithms=ALGORITHMS, issuer=self.issuer, audience=self.audience,
                leeway=self.leeway, options={"require": REQUIRED_CLAIMS, "strict_aud": True},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc

    def _key(self, kid: object) -> jwt.PyJWK:
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("no kid")
        key = self._keys.get(kid)
        # An unknown kid may be a freshly rotated key: refetch, but not more than once per
        # cooldown, so that tokens with random kids cannot make us hammer the issuer.
        if key is None and time.monotonic() - self._fetched_at >= self.refetch_cooldown:
            self._refresh()
            key = self._keys.get(kid)
        if key is None:
            raise InvalidToken("unknown kid")
        return key

    def _refresh(self) -> None:
        with self._lock:
            response = self.session.get(self.jwks_url, timeout=5)
            response.raise_for_status()
            keys = {}
            for data in response.json().get("keys", []):
                try:
                    keys[data["kid"]] = jwt.PyJWK(data)
                except (KeyError, jwt.PyJWTError):
                    continue  # skip keys we cannot use (RFC 7517 §5)
            self._keys = keys
            self._fetched_at = time.monotonic()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--issuer", required=True,
                        help="siwa-web's ISSUER, e.g. https://siwa.example.com")
    parser.add_argument("--audience", required=True, help="your API's identifier (the token's aud)")
    parser.add_argument("--jwks-url", help="default: <issuer>/.well-known/jwks.json")
    parser.add_argument("--scope", help="a scope the token must carry, e.g. read:things")
    parser.add_argument("token")
    args = parser.parse_args(argv)
    validator = AccessTokenValidator(args.issuer, args.audience, jwks_url=args.jwks_url)
    try:
        claims = validator.validate(args.token)
    except InvalidToken as exc:
        print(f"invalid_token: {exc}", file=sys.stderr)
        return 1
    if args.scope and args.scope not in claims.get("scope", "").split():
        print(f"insufficient_scope: {args.scope} is required", file=sys.stderr)
        return 2
    print(json.dumps(claims, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
