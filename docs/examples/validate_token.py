#!/usr/bin/env python3
"""Validate a siwa-web access token in your own API, with PyJWT and requests only.

    pip install "pyjwt[crypto]" requests
    python validate_token.py --issuer https://siwa.example.com \
        --audience https://siwa.example.com/api <access token>

Prints the verified claims as JSON and exits 0; otherwise prints the answer an API should give
and exits 1 (401 invalid_token), 2 (403 insufficient_scope) or 3 (503: the issuer's keys could
not be fetched). In a real API, build one `AccessTokenValidator` at start-up and call
`bearer_answer()` per request: it never raises, so a JWKS outage is a 503 with Retry-After,
not a 500.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from dataclasses import dataclass
from dataclasses import field

import jwt  # PyJWT
import requests

ACCESS_TOKEN_TYPES = {"at+jwt", "application/at+jwt"}  # RFC 9068 §2.1
ALGORITHMS = ["ES256"]  # what siwa-web signs with; never take the algorithm from the token
REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"]
RETRY_AFTER = 30  # seconds a client should wait when the keys cannot be fetched


class InvalidToken(Exception):
    """The token must be refused with 401 and `WWW-Authenticate: Bearer error="invalid_token"`."""


class JwksUnavailable(Exception):
    """The issuer's keys cannot be fetched and none we hold can check this token: answer 503
    with Retry-After (the token may be fine; the client should try again, not sign in again)."""


class AccessTokenValidator:
    """Check typ, signature (keys from the issuer's JWKS, by kid), iss, aud, exp and claims.

    The key set is cached for `max_age` seconds (or what the JWKS response's Cache-Control
    says). When it cannot be refetched, the last set keeps being used for up to `stale_max`
    seconds more, so a short issuer outage does not take your API down; a token whose key is in
    no set we hold then raises JwksUnavailable rather than InvalidToken.
    """

    def __init__(self, issuer: str, audience: str, *, jwks_url: str | None = None,
                 leeway: int = 0, refetch_cooldown: float = 30.0, max_age: float = 300.0,
                 stale_max: float = 24 * 3600.0, timeout: float = 5.0) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.jwks_url = jwks_url or self.issuer + "/.well-known/jwks.json"
        self.leeway = leeway
        self.refetch_cooldown = refetch_cooldown
        self.max_age = max_age
        self.stale_max = stale_max
        self.timeout = timeout
        self.session = requests.Session()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")  # when the set we hold was fetched
        self._tried_at = float("-inf")  # the last attempt, successful or not
        self._fresh_for = max_age
        self._lock = threading.Lock()

    def validate(self, token: str) -> dict:
        """Return the token's claims. :raises InvalidToken: :raises JwksUnavailable:"""
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
        now = time.monotonic()
        failure = None
        if now - self._fetched_at >= self._fresh_for:  # the set is stale: refresh it
            failure = self._refresh_once_per_cooldown(now)
        key = self._keys.get(kid)
        # An unknown kid may be a freshly rotated key: refetch, but not more than once per
        # cooldown, so that tokens with random kids cannot make us hammer the issuer.
        if key is None and failure is None:
            failure = self._refresh_once_per_cooldown(now)
            key = self._keys.get(kid)
        if key is not None:
            if now - self._fetched_at > self._fresh_for + self.stale_max:
                raise JwksUnavailable(f"the keys we hold are too old to trust ({failure})")
            return key
        if failure is not None:  # we could not ask the issuer whether the kid is new
            raise JwksUnavailable(failure)
        raise InvalidToken("unknown kid")

    def _refresh_once_per_cooldown(self, now: float) -> str | None:
        """Refetch unless tried within the cooldown; returns why it failed, or None."""
        with self._lock:
            if now - self._tried_at < self.refetch_cooldown:
                return None if self._fetched_at >= self._tried_at else "the last fetch failed"
            self._tried_at = now
            try:
                response = self.session.get(self.jwks_url, timeout=self.timeout)
                response.raise_for_status()
                document = response.json()
                entries = document["keys"]
                if not isinstance(entries, list):
                    raise ValueError("keys is not a list")
            except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
                return f"cannot fetch {self.jwks_url}: {type(exc).__name__}"
            keys = {}
            for data in entries:
                try:
                    keys[data["kid"]] = jwt.PyJWK(data)
                except (KeyError, TypeError, jwt.PyJWTError):
                    continue  # skip keys we cannot use (RFC 7517 §5)
            self._keys = keys
            self._fetched_at = now
            self._fresh_for = _max_age(response.headers.get("Cache-Control"), self.max_age)
            return None


def _max_age(cache_control: str | None, default: float) -> float:
    found = re.search(r"max-age=(\d+)", cache_control or "")
    return min(float(found.group(1)), default) if found else default


@dataclass
class BearerAnswer:
    """What an API answers: the claims (status 200), or the status, headers and JSON body of
    the refusal (RFC 6750 §3)."""

    status: int
    claims: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, str] = field(default_factory=dict)


def bearer_answer(validator: AccessTokenValidator, authorization: str | None,
                  scope: str | None = None, realm: str = "api") -> BearerAnswer:
    """Check an `Authorization` header; never raises (so never a 500)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return BearerAnswer(401, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'},
                            body={"error": "invalid_request",
                                  "error_description": "Send an access token: Authorization: "
                                                       "Bearer <token>."})
    try:
        claims = validator.validate(token.strip())
    except InvalidToken:
        return BearerAnswer(401, headers={
            "WWW-Authenticate": f'Bearer realm="{realm}", error="invalid_token"'},
            body={"error": "invalid_token",
                  "error_description": "The access token is invalid or expired."})
    except JwksUnavailable:
        return BearerAnswer(503, headers={"Retry-After": str(RETRY_AFTER)},
                            body={"error": "temporarily_unavailable",
                                  "error_description": "The token cannot be checked right now; "
                                                       "try again shortly."})
    if scope and scope not in str(claims.get("scope", "")).split():
        return BearerAnswer(403, headers={"WWW-Authenticate": (
            f'Bearer realm="{realm}", error="insufficient_scope", scope="{scope}"')},
            body={"error": "insufficient_scope", "error_description": f"Needs {scope}."})
    return BearerAnswer(200, claims=claims)


EXIT_CODES = {200: 0, 401: 1, 403: 2, 503: 3}


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
    answer = bearer_answer(validator, "Bearer " + args.token, scope=args.scope)
    if answer.claims is not None:
        print(json.dumps(answer.claims, indent=2, sort_keys=True))
        return 0
    headers = "".join(f"\n{name}: {value}" for name, value in answer.headers.items())
    print(f"{answer.status} {answer.body['error']}: {answer.body['error_description']}{headers}",
          file=sys.stderr)
    return EXIT_CODES[answer.status]


if __name__ == "__main__":
    sys.exit(main())
