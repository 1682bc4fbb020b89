"""Turn an approved sign-in into Apple's answer: code, front-channel token, one-time user data."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .authorize import AuthorizeRequest
from .state import AppleUser
from .state import Authorization
from .state import Code
from .state import EmulatorState
from .tokens import half_hash
from .tokens import identity_token
from .tokens import opaque

LIKELY_REAL = 2  # real_user_status on a native first sign-in


@dataclass(frozen=True)
class Consent:
    """What the person chose on Apple's sheet; the edited name is never stored by Apple."""

    share_email: bool = True
    first_name: str | None = None
    last_name: str | None = None


def record_consent(
    state: EmulatorState, user: AppleUser, client_id: str, scopes: frozenset[str], consent: Consent
) -> tuple[Authorization, bool]:
    """First consent fixes scopes and the email choice until the user revokes."""
    authz = state.authorization(user.id)
    first = authz.first_time
    if first:
        authz.status = "authorized"
        authz.scopes = scopes
        authz.share_email = consent.share_email
    authz.last_client_id = client_id
    return authz, first


def new_code(
    state: EmulatorState,
    user: AppleUser,
    client_id: str,
    redirect_uri: str | None,
    nonce: str | None,
) -> Code:
    now = state.now()
    code = Code(opaque(state, "c"), client_id, redirect_uri, user.id, nonce, now, int(now))
    state.codes[code.value] = code
    return code


def user_blob(user: AppleUser, authz: Authorization, consent: Consent) -> dict[str, Any]:
    """The `user` form field: name and/or email, depending on the granted scopes."""
    blob: dict[str, Any] = {}
    if "name" in authz.scopes:
        first = user.first_name if consent.first_name is None else consent.first_name
        last = user.last_name if consent.last_name is None else consent.last_name
        blob["name"] = {"firstName": first, "lastName": last}
    if "email" in authz.scopes:
        blob["email"] = user.email if authz.share_email else user.relay_email
    return blob


def web_fields(
    state: EmulatorState, req: AuthorizeRequest, user: AppleUser, consent: Consent
) -> dict[str, str]:
    """The fields delivered to the redirect_uri after the person pressed Continue."""
    with state.lock:
        authz, first = record_consent(state, user, req.client_id, req.scopes, consent)
        code = new_code(state, user, req.client_id, req.redirect_uri, req.nonce)
        fields = {"code": code.value}
        if req.id_token:
            fields["id_token"] = identity_token(state, user, authz, req.client_id, {
                "c_hash": half_hash(code.value), "nonce": req.nonce,
                "auth_time": code.auth_time, "nonce_supported": True,
            })
        if req.state is not None:
            fields["state"] = req.state
        if first and authz.scopes:
            fields["user"] = json.dumps(user_blob(user, authz, consent))
        return fields


def native_credential(
    state: EmulatorState,
    bundle_id: str,
    user: AppleUser,
    nonce: str | None,
    scopes: frozenset[str],
    consent: Consent,
) -> dict[str, Any]:
    """What ASAuthorizationAppleIDCredential holds; the code has no redirect_uri."""
    with state.lock:
        authz, first = record_consent(state, user, bundle_id, scopes, consent)
        code = new_code(state, user, bundle_id, None, nonce)
        token = identity_token(state, user, authz, bundle_id, {
            "c_hash": half_hash(code.value), "nonce": nonce, "auth_time": code.auth_time,
            "nonce_supported": True, "real_user_status": LIKELY_REAL if first else None,
        })
        blob = user_blob(user, authz, consent) if first else {}
        name = blob.get("name")
        return {
            "identityToken": token,
            "authorizationCode": code.value,
            "user": user.sub,
            "fullName": {"givenName": name["firstName"], "familyName": name["lastName"]}
            if name else None,
            "email": blob.get("email"),
        }
