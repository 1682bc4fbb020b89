"""`/auth/token` grants and `/auth/revoke`, with Apple's observed error descriptions."""
from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

from .errors import AppleError
from .state import ACCESS_TTL
from .state import CODE_TTL
from .state import EmulatorState
from .state import Token
from .tokens import half_hash
from .tokens import identity_token
from .tokens import opaque

CODE_EXPIRED = "The code has expired or has been revoked."
CODE_USED = "The code has already been used."
TOKEN_REVOKED = "The token has expired or has been revoked."
REDIRECT_MISMATCH = "redirect_uri mismatch. The code was not issued to"
MIGRATION_SCOPE = "user.migration"

Grant = Callable[[EmulatorState, str, Mapping[str, str]], dict[str, Any]]


def _required(form: Mapping[str, str], name: str) -> str:
    value = form.get(name) or ""
    if not value:
        raise AppleError("invalid_request", f"{name} is required.")
    return value


def _mismatch(what: str, client_id: str) -> str:
    return f"client_id mismatch. The {what} was not issued to {client_id}."


def _access_token(state: EmulatorState, client_id: str, user_id: str | None) -> Token:
    now = state.now()
    token = Token(opaque(state, "a"), "access", client_id, user_id, now, now + ACCESS_TTL)
    state.tokens[token.value] = token
    return token


def _bearer(access: Token) -> dict[str, Any]:
    return {"access_token": access.value, "token_type": "Bearer", "expires_in": ACCESS_TTL}


def authorization_code(state: EmulatorState, client_id: str, form: Mapping[str, str]) -> dict:
    """Redeem a single-use, 5-minute code bound to client_id and redirect_uri."""
    value = _required(form, "code")
    presented_uri = form.get("redirect_uri") or None
    code = state.codes.get(value)
    if code is None:
        raise AppleError("invalid_grant", CODE_EXPIRED)
    if code.used:
        raise AppleError("invalid_grant", CODE_USED)
    if state.now() > code.issued_at + CODE_TTL:
        raise AppleError("invalid_grant", CODE_EXPIRED)
    if code.client_id != client_id:
        raise AppleError("invalid_grant", _mismatch("code", client_id))
    if presented_uri != code.redirect_uri:
        uri = presented_uri or ""
        raise AppleError("invalid_grant", f"{REDIRECT_MISMATCH} {uri}.")
    code.used = True
    user, authz = state.users[code.user_id], state.authorization(code.user_id)
    access = _access_token(state, client_id, user.id)
    refresh = Token(opaque(state, "r"), "refresh", client_id, user.id, state.now())
    state.tokens[refresh.value] = refresh
    extra = {"at_hash": half_hash(access.value), "auth_time": code.auth_time, "nonce": code.nonce}
    return {**_bearer(access), "refresh_token": refresh.value,
            "id_token": identity_token(state, user, authz, client_id, extra)}


def refresh_token(state: EmulatorState, client_id: str, form: Mapping[str, str]) -> dict:
    """Validate a refresh token; Apple does not rotate it, so none comes back."""
    token = state.tokens.get(_required(form, "refresh_token"))
    if token is None or token.kind != "refresh" or token.revoked:
        raise AppleError("invalid_grant", TOKEN_REVOKED)
    if token.client_id != client_id:
        raise AppleError("invalid_grant", _mismatch("token", client_id))
    authz = state.authorization(str(token.user_id))
    if authz.status != "authorized":
        raise AppleError("invalid_grant", TOKEN_REVOKED)
    user = state.users[authz.user_id]
    access = _access_token(state, client_id, user.id)
    extra = {"at_hash": half_hash(access.value)}
    return {**_bearer(access), "id_token": identity_token(state, user, authz, client_id, extra)}


def client_credentials(state: EmulatorState, client_id: str, form: Mapping[str, str]) -> dict:
    """App-transfer access token (TN3159): only `scope=user.migration`."""
    if form.get("scope") != MIGRATION_SCOPE:
        raise AppleError("invalid_scope")
    return _bearer(_access_token(state, client_id, None))


GRANTS: dict[str, Grant] = {
    "authorization_code": authorization_code,
    "refresh_token": refresh_token,
    "client_credentials": client_credentials,
}


def token(state: EmulatorState, client_id: str, form: Mapping[str, str]) -> dict[str, Any]:
    """Dispatch on grant_type; an unknown one is `unsupported_grant_type`."""
    grant = GRANTS.get(_required(form, "grant_type"))
    if grant is None:
        raise AppleError("unsupported_grant_type")
    with state.lock:
        return grant(state, client_id, form)


def revoke(state: EmulatorState, client_id: str, form: Mapping[str, str]) -> None:
    """Revoke a token and the consent behind it; unknown or revoked tokens are fine (RFC 7009)."""
    value = _required(form, "token")
    with state.lock:
        found = state.tokens.get(value)
        if found is None:
            return
        if found.client_id != client_id:
            raise AppleError("invalid_grant", _mismatch("token", client_id))
        if found.revoked:
            return
        found.revoked = True
        if found.user_id is not None:
            state.revoke_user(found.user_id)
