"""A fake appleid.apple.com on requests_mock: keys, token and revoke endpoints, hostile tokens.

The fake signs and checks JWTs with its own small code (plus PyJWT for the client secret), never
with siwa_web's, so a bug in the app's JOSE handling cannot hide behind the same bug here.

Importable helpers (`from support.apple import ...`): TEAM_ID, KEY_ID, SERVICES_ID, BUNDLE_ID,
DEFAULT_SUB, REMOVE, FakeClock, FakeApple, AppleAuthorization, Reply, sign_jws, oidc_hash,
sha256_hex, b64url, rsa_public_jwk. Fixtures: `fake_apple` (per test), `fake_apple_keys` (session).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from urllib.parse import parse_qs

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

TEAM_ID = "TESTTEAM01"  # must match tests/conftest.py
KEY_ID = "TESTKEY001"
SERVICES_ID = "com.example.siwa.web"
BUNDLE_ID = "com.example.siwa.ios"
APPLE_BASE_URL = "https://appleid.apple.com"
APPLE_ISSUER = "https://appleid.apple.com"
APPLE_KIDS = ("FAKEKID001", "FAKEKID002")
DEFAULT_SUB = "001234.0123456789abcdef0123456789abcdef.0001"
RELAY_DOMAIN = "privaterelay.appleid.com"
CLIENT_SECRET_AUDIENCE = "https://appleid.apple.com"
CLIENT_SECRET_MAX_LIFETIME = 15777000
_HASHES = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}
_CRYPTO_HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


class _Remove:
    """Sentinel: `mint_id_token(email=REMOVE)` drops the claim (or header field) entirely."""

    def __repr__(self) -> str:
        return "REMOVE"


REMOVE: Any = _Remove()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def oidc_hash(value: str) -> str:
    """c_hash / at_hash: base64url of the left half of SHA-256 (OIDC Core 3.3.2.11)."""
    return b64url(hashlib.sha256(value.encode()).digest()[:16])


def sha256_hex(value: str) -> str:
    """What a native app sends to Apple as the nonce for a raw nonce `value`."""
    return hashlib.sha256(value.encode()).hexdigest()


def sign_jws(header: dict, payload: dict | bytes, alg: str, key: Any) -> str:
    """Compact JWS with any alg: none, HS*, RS*, PS256, ES256 (raw r||s); no checks at all."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(body)}".encode()
    size = alg[2:]
    if alg == "none":
        sig = b""
    elif alg.startswith("HS"):
        sig = hmac.new(key, signing_input, _HASHES[size]).digest()
    elif alg.startswith("RS"):
        sig = key.sign(signing_input, padding.PKCS1v15(), _CRYPTO_HASHES[size]())
    elif alg.startswith("PS"):
        pss = padding.PSS(padding.MGF1(_CRYPTO_HASHES[size]()), _CRYPTO_HASHES[size].digest_size)
        sig = key.sign(signing_input, pss, _CRYPTO_HASHES[size]())
    elif alg == "ES256":
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        raise ValueError(f"fake Apple cannot sign with {alg}")
    return f"{signing_input.decode()}.{b64url(sig)}"


def rsa_public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, str]:
    nums = key.public_key().public_numbers()
    n = nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big")
    e = nums.e.to_bytes((nums.e.bit_length() + 7) // 8, "big")
    return {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64url(n), "e": b64url(e)}


def _opaque(prefix: str) -> str:
    """Apple-shaped opaque token: prefix + 32 hex + .0. + 4 letters + . + 22 base64url chars."""
    return f"{prefix}{secrets.token_hex(16)}.0.mock.{secrets.token_urlsafe(16)[:22]}"


class FakeClock:
    """A settable clock for the app's AppleClient and the fake alike: `clock.advance(seconds)`."""

    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Reply:
    """One programmed answer: JSON or raw text with a status, or an exception to raise."""

    status: int = 200
    json: Any = None
    text: str | None = None
    exc: BaseException | type[BaseException] | None = None
    headers: dict[str, str] | None = None
    delay: float = 0.0


@dataclass
class _Grant:
    """What a code or refresh token stands for; client_id None means any client."""

    client_id: str | None
    sub: str
    claims: dict[str, Any] = field(default_factory=dict)
    redirect_uri: str | None = None


@dataclass(frozen=True)
class AppleAuthorization:
    """A front-channel result as the browser or the native app would receive it."""

    code: str
    id_token: str
    sub: str


class FakeApple:
    """Apple's token, revoke and keys endpoints at APPLE_BASE_URL, and a hostile-token minter.

    Identity tokens
      mint_id_token(**claims): RS256 with the current Apple key (`signing_kid`). Defaults: iss,
        aud=SERVICES_ID, sub=DEFAULT_SUB, iat=now, exp=now+86400, auth_time, email (a relay
        address derived from sub), email_verified=True, is_private_email=True. Any claim may be
        overridden; the value REMOVE drops it. Keyword options: alg (header alg and signing alg),
        key (signing key, e.g. `foreign_key`), kid, header (extra/overriding header fields,
        REMOVE drops), payload (raw bytes to sign instead of JSON claims), code / access_token
        (add c_hash / at_hash).
      mint_none_token(**claims), mint_hs256_token(key_form="pem"|"jwk", **claims): the classic
        alg:none and RS->HS confusion forgeries; mint_es256_token(**claims) with a stray EC key.
      oidc_hash(value), sha256_hex(value), public_jwk(kid), public_pem(kid), foreign_key.
    Keys endpoint (GET /auth/keys)
      Publishes `published_kids` (first key only at start) plus `jwks_extra` raw entries;
      `jwks_calls` counts every request. rotate_keys() publishes and signs with the second key;
      retire_key(kid) unpublishes one.
    Token endpoint (POST /auth/token)
      Checks form encoding and the client secret (verify_client_secret, on while
      `check_client_secret`), then: authorization_code -> access, refresh and id token (aud = posted
      client_id, at_hash, a stable sub per code via sub_for_code, or what set_code/authorize
      registered; codes are single use while `single_use_codes`); refresh_token -> access and id
      token for a refresh token it issued or that register_refresh_token added. `token_requests`
      holds every parsed form (dict of str), answered or not.
    Revoke endpoint (POST /auth/revoke)
      Checks the client secret, records `revoke_requests`, adds the token to `revoked_tokens`
      (a revoked refresh token then fails with invalid_grant) and answers 200.
    Programming failures
      next_token_response / next_revoke_response / next_jwks_response(status=, json=, text=,
      exc=, headers=, delay=) queue one-shot answers (FIFO) that replace the default behaviour;
      outage(endpoint, ...) makes "token", "revoke" or "keys" answer that way (default 503 HTML)
      until restore(endpoint). An `exc` (class or instance, e.g. requests.exceptions.ReadTimeout)
      is raised after the request was recorded, like a timeout after sending.
    Helpers
      authorize(client_id=, nonce=, sub=, redirect_uri=, **claims) -> AppleAuthorization(code,
      id_token with c_hash, sub) with the code registered for the back channel (same sub, nonce
      and claims); set_code(code, sub=, client_id=, redirect_uri=, **claims).
      `clock` (default time.time) drives iat/exp and client-secret checks; TEAM_ID, KEY_ID,
      SERVICES_ID, BUNDLE_ID constants match conftest.
    """

    TEAM_ID = TEAM_ID
    KEY_ID = KEY_ID
    SERVICES_ID = SERVICES_ID
    BUNDLE_ID = BUNDLE_ID
    REMOVE = REMOVE
    oidc_hash = staticmethod(oidc_hash)
    sha256_hex = staticmethod(sha256_hex)

    def __init__(self, mocker: Any, keys: dict[str, Any], client_secret_pem: str) -> None:
        self.base_url = APPLE_BASE_URL
        self.keys_url = f"{APPLE_BASE_URL}/auth/keys"
        self.token_url = f"{APPLE_BASE_URL}/auth/token"
        self.revoke_url = f"{APPLE_BASE_URL}/auth/revoke"
        self.authorize_endpoint = f"{APPLE_BASE_URL}/auth/authorize"
        self.keys: dict[str, rsa.RSAPrivateKey] = {kid: keys[kid] for kid in APPLE_KIDS}
        self.foreign_key: rsa.RSAPrivateKey = keys["foreign"]
        self.stray_ec_key: ec.EllipticCurvePrivateKey = keys["ec"]
        self.signing_kid = APPLE_KIDS[0]
        self.published_kids = [APPLE_KIDS[0]]
        self.jwks_extra: list[Any] = []
        self.jwks_calls = 0
        self.token_requests: list[dict[str, str]] = []
        self.revoke_requests: list[dict[str, str]] = []
        self.revoked_tokens: list[str] = []
        self.client_secret_errors: list[str] = []
        self.check_client_secret = True
        self.single_use_codes = True
        self.team_id, self.key_id = TEAM_ID, KEY_ID
        self.clock: Callable[[], float] = time.time
        self._secret_key = serialization.load_pem_private_key(
            client_secret_pem.encode(), None).public_key()
        self._queues: dict[str, list[Reply]] = {"token": [], "revoke": [], "keys": []}
        self._outages: dict[str, Reply] = {}
        self._codes: dict[str, _Grant] = {}
        self._used_codes: set[str] = set()
        self._refresh: dict[str, _Grant] = {}
        mocker.get(self.keys_url, text=self._endpoint("keys", self._keys))
        mocker.post(self.token_url, text=self._endpoint("token", self._token))
        mocker.post(self.revoke_url, text=self._endpoint("revoke", self._revoke))

    # --- identity tokens ----------------------------------------------------------------------
    def default_claims(self, sub: str = DEFAULT_SUB) -> dict[str, Any]:
        now = int(self.clock())
        return {"iss": APPLE_ISSUER, "aud": SERVICES_ID, "sub": sub, "iat": now,
                "exp": now + 86400, "auth_time": now, "email": self.relay_email(sub),
                "email_verified": True, "is_private_email": True}

    def mint_id_token(self, *, alg: str = "RS256", key: Any = None, kid: Any = None,
                      header: dict | None = None, payload: bytes | None = None,
                      code: str | None = None, access_token: str | None = None,
                      **claims: Any) -> str:
        sub = claims.get("sub")
        body = self.default_claims(sub if isinstance(sub, str) else DEFAULT_SUB)
        if code is not None:
            body["c_hash"] = oidc_hash(code)
        if access_token is not None:
            body["at_hash"] = oidc_hash(access_token)
        body.update(claims)
        hdr = {"kid": self.signing_kid if kid is None else kid, "alg": alg, **(header or {})}
        return sign_jws(_drop_removed(hdr), _drop_removed(body) if payload is None else payload,
                        alg, self._default_key(alg) if key is None else key)

    def mint_none_token(self, **claims: Any) -> str:
        return self.mint_id_token(alg="none", **claims)

    def mint_hs256_token(self, key_form: str = "pem", **claims: Any) -> str:
        """HS256 keyed with the Apple public key, as PEM bytes or as the JWK JSON text."""
        secret = (self.public_pem() if key_form == "pem"
                  else json.dumps(self.public_jwk()).encode())
        return self.mint_id_token(alg="HS256", key=secret, **claims)

    def mint_es256_token(self, **claims: Any) -> str:
        return self.mint_id_token(alg="ES256", key=self.stray_ec_key, **claims)

    def public_jwk(self, kid: str | None = None) -> dict[str, str]:
        kid = kid or self.signing_kid
        return rsa_public_jwk(self.keys[kid], kid)

    def public_pem(self, kid: str | None = None) -> bytes:
        return self.keys[kid or self.signing_kid].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def jwks(self) -> dict[str, list]:
        return {"keys": [self.public_jwk(k) for k in self.published_kids] + list(self.jwks_extra)}

    def rotate_keys(self) -> None:
        """Publish the second Apple key and sign with it from now on (REL-07)."""
        new = next(k for k in APPLE_KIDS if k != self.signing_kid)
        if new not in self.published_kids:
            self.published_kids.append(new)
        self.signing_kid = new

    def retire_key(self, kid: str) -> None:
        self.published_kids.remove(kid)

    @staticmethod
    def relay_email(sub: str) -> str:
        digest = hashlib.sha256(sub.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{digest[:10]}@{RELAY_DOMAIN}"

    @staticmethod
    def sub_for_code(code: str) -> str:
        """The stable Apple-shaped `sub` the token endpoint returns for an unregistered code."""
        h = hashlib.sha256(code.encode()).hexdigest()
        return f"{int(h[:6], 16) % 1000000:06d}.{h[:32]}.{int(h[32:36], 16) % 10000:04d}"

    def _default_key(self, alg: str) -> Any:
        if alg.startswith("HS"):
            return self.public_pem()
        if alg.startswith("ES"):
            return self.stray_ec_key
        return self.keys[self.signing_kid]

    # --- codes and refresh tokens -------------------------------------------------------------
    def set_code(self, code: str, *, sub: str | None = None, client_id: str | None = None,
                 redirect_uri: str | None = None, **claims: Any) -> None:
        """Make the token endpoint answer `code` with this sub and claims (and check client/URI)."""
        self._codes[code] = _Grant(client_id, sub or self.sub_for_code(code), claims, redirect_uri)

    def authorize(self, *, client_id: str = SERVICES_ID, nonce: str | None = None,
                  sub: str | None = None, redirect_uri: str | None = None,
                  **claims: Any) -> AppleAuthorization:
        """What Apple hands the browser/app: a registered code and a front-channel id_token."""
        code = _opaque("c")
        if nonce is not None:
            claims.setdefault("nonce", nonce)
        self.set_code(code, sub=sub, client_id=client_id, redirect_uri=redirect_uri, **claims)
        grant = self._codes[code]
        token = self.mint_id_token(code=code, **{"aud": client_id, "sub": grant.sub, **claims})
        return AppleAuthorization(code=code, id_token=token, sub=grant.sub)

    def register_refresh_token(self, token: str, *, sub: str = DEFAULT_SUB,
                               client_id: str | None = None, **claims: Any) -> None:
        self._refresh[token] = _Grant(client_id, sub, claims)

    # --- programming ---------------------------------------------------------------------------
    @property
    def issued_refresh_tokens(self) -> list[str]:
        """Every refresh token this Apple handed out, oldest first."""
        return list(self._refresh)

    def next_token_response(self, **reply: Any) -> None:
        self._queues["token"].append(Reply(**reply))

    def next_revoke_response(self, **reply: Any) -> None:
        self._queues["revoke"].append(Reply(**reply))

    def next_jwks_response(self, **reply: Any) -> None:
        self._queues["keys"].append(Reply(**reply))

    def outage(self, endpoint: str, **reply: Any) -> None:
        """Answer every `endpoint` request ("token", "revoke", "keys") this way (default 503)."""
        reply.setdefault("status", 503)
        reply.setdefault("text", "<html><body>Service Unavailable</body></html>")
        self._outages[endpoint] = Reply(**reply)

    def restore(self, endpoint: str) -> None:
        self._outages.pop(endpoint, None)

    # --- client secret -------------------------------------------------------------------------
    def verify_client_secret(self, form: dict[str, str]) -> dict[str, Any]:
        """Check the posted client_secret like Apple would; raise ValueError(reason) if broken."""
        secret, client_id = form.get("client_secret"), form.get("client_id")
        if not secret or not client_id:
            raise ValueError("client_id or client_secret missing")
        try:
            header = pyjwt.get_unverified_header(secret)
            claims = pyjwt.decode(
                secret, self._secret_key, algorithms=["ES256"], audience=CLIENT_SECRET_AUDIENCE,
                issuer=self.team_id, options={"require": ["iss", "sub", "aud", "exp", "iat"],
                                              "verify_exp": False, "verify_iat": False})
        except pyjwt.PyJWTError as exc:
            raise ValueError(f"client secret rejected: {exc}") from exc
        now = self.clock()
        checks = [(header.get("kid") == self.key_id, "wrong kid"),
                  (claims["sub"] == client_id, "sub != client_id"),
                  (claims["iat"] <= now + 60, "iat in the future"),
                  (claims["exp"] > now, "expired"),
                  (claims["exp"] - claims["iat"] <= CLIENT_SECRET_MAX_LIFETIME, "exp too far")]
        for ok, reason in checks:
            if not ok:
                raise ValueError(reason)
        return claims

    # --- endpoints -----------------------------------------------------------------------------
    def _endpoint(self, name: str, default: Callable) -> Callable:
        def serve(request: Any, context: Any) -> str:
            form = {} if name == "keys" else _parse_form(request.text)
            if name == "token":
                self.token_requests.append(form)
            elif name == "revoke":
                self.revoke_requests.append(form)
            else:
                self.jwks_calls += 1
            queue = self._queues[name]
            reply = queue.pop(0) if queue else self._outages.get(name)
            if reply is not None:
                return _play(reply, context)
            return default(request, form, context)
        return serve

    def _keys(self, _request: Any, _form: dict, context: Any) -> str:
        return _json(context, 200, self.jwks())

    def _client_error(self, request: Any, form: dict, context: Any) -> str | None:
        if not request.headers.get("Content-Type", "").startswith(
                "application/x-www-form-urlencoded") or form.get("__duplicate__"):
            return _json(context, 400, {"error": "invalid_request"})
        if self.check_client_secret:
            try:
                self.verify_client_secret(form)
            except ValueError as exc:
                self.client_secret_errors.append(str(exc))
                return _json(context, 400, {"error": "invalid_client"})
        return None

    def _token(self, request: Any, form: dict, context: Any) -> str:
        error = self._client_error(request, form, context)
        if error is not None:
            return error
        if form.get("grant_type") == "authorization_code":
            return self._code_grant(form, context)
        if form.get("grant_type") == "refresh_token":
            return self._refresh_grant(form, context)
        return _json(context, 400, {"error": "unsupported_grant_type"})

    def _code_grant(self, form: dict, context: Any) -> str:
        code, client_id = form.get("code"), form["client_id"]
        if not code:
            return _json(context, 400, {"error": "invalid_request"})
        if self.single_use_codes and code in self._used_codes:
            return _invalid_grant(context, "The code has already been used.")
        grant = self._codes.get(code) or _Grant(None, self.sub_for_code(code))
        if grant.client_id not in (None, client_id):
            return _invalid_grant(context, _client_mismatch(client_id))
        if grant.redirect_uri is not None and form.get("redirect_uri") != grant.redirect_uri:
            return _invalid_grant(context, "redirect_uri mismatch. The code was not issued to "
                                           f"{form.get('redirect_uri')}.")
        self._used_codes.add(code)
        refresh = _opaque("r")
        self._refresh[refresh] = _Grant(client_id, grant.sub, grant.claims)
        return self._tokens(context, client_id, grant.sub, grant.claims, refresh)

    def _refresh_grant(self, form: dict, context: Any) -> str:
        token, client_id = form.get("refresh_token"), form["client_id"]
        if not token:
            return _json(context, 400, {"error": "invalid_request"})
        grant = self._refresh.get(token)
        if grant is None or token in self.revoked_tokens:
            return _invalid_grant(context, "The token has expired or has been revoked.")
        if grant.client_id not in (None, client_id):
            return _invalid_grant(context, _client_mismatch(client_id))
        claims = {k: v for k, v in grant.claims.items() if k not in ("nonce", "c_hash")}
        return self._tokens(context, client_id, grant.sub, {"auth_time": REMOVE, **claims}, None)

    def _tokens(self, context: Any, client_id: str, sub: str, claims: dict,
                refresh: str | None) -> str:
        access = _opaque("a")
        claims = {"aud": client_id, "sub": sub, **claims}
        id_token = self.mint_id_token(access_token=access, **claims)
        body = {"access_token": access, "token_type": "Bearer", "expires_in": 3600,
                "refresh_token": refresh, "id_token": id_token}
        return _json(context, 200, {k: v for k, v in body.items() if v is not None})

    def _revoke(self, request: Any, form: dict, context: Any) -> str:
        error = self._client_error(request, form, context)
        if error is not None:
            return error
        if not form.get("token"):
            return _json(context, 400, {"error": "invalid_request"})
        self.revoked_tokens.append(form["token"])
        context.status_code = 200
        return ""


def _drop_removed(data: dict) -> dict:
    return {k: v for k, v in data.items() if v is not REMOVE}


def _parse_form(text: str | None) -> dict[str, str]:
    pairs = parse_qs(text or "", keep_blank_values=True)
    form = {k: v[0] for k, v in pairs.items()}
    if any(len(v) > 1 for v in pairs.values()):
        form["__duplicate__"] = "1"
    return form


def _json(context: Any, status: int, body: Any) -> str:
    context.status_code = status
    context.headers["Content-Type"] = "application/json;charset=UTF-8"
    context.headers["Cache-Control"] = "no-store"
    return json.dumps(body)


def _client_mismatch(client_id: str) -> str:
    return f"client_id mismatch. The code was not issued to {client_id}."


def _invalid_grant(context: Any, description: str) -> str:
    return _json(context, 400, {"error": "invalid_grant", "error_description": description})


def _play(reply: Reply, context: Any) -> str:
    if reply.delay:
        time.sleep(reply.delay)
    if reply.exc is not None:
        raise reply.exc() if isinstance(reply.exc, type) else reply.exc
    context.status_code = reply.status
    context.headers.update(reply.headers or {})
    if reply.json is not None:
        context.headers.setdefault("Content-Type", "application/json;charset=UTF-8")
        return json.dumps(reply.json)
    return reply.text or ""


@pytest.fixture(scope="session")
def fake_apple_keys() -> dict[str, Any]:
    """Apple's two RSA signing keys, a foreign RSA key and a stray EC key, once per run."""
    keys: dict[str, Any] = {kid: rsa.generate_private_key(65537, 2048) for kid in APPLE_KIDS}
    keys["foreign"] = rsa.generate_private_key(65537, 2048)
    keys["ec"] = ec.generate_private_key(ec.SECP256R1())
    return keys


@pytest.fixture
def fake_apple(requests_mock, fake_apple_keys, apple_private_key_pem) -> FakeApple:
    """Apple at https://appleid.apple.com for one test (see FakeApple for the whole API)."""
    return FakeApple(requests_mock, fake_apple_keys, apple_private_key_pem)


@pytest.fixture
def clock(fake_apple) -> FakeClock:
    """A settable clock shared by fake Apple and whatever the test builds with it."""
    clock = FakeClock()
    fake_apple.clock = clock
    return clock
