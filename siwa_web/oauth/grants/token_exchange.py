"""Native Sign in with Apple: exchange an Apple authorization code for our tokens.

RFC 8693 token exchange, as profiled by Auth0's "Native Social" login: https://auth0.com/docs/
api/authentication/token-exchange-for-native-social/token-exchange-native-social

Order matters: an Apple code is single-use, so everything local is
validated first; Apple is called outside any transaction; the user, family, first refresh token
and audit row are written in one transaction; tokens are signed only after the commit.
"""
from __future__ import annotations

import logging
import re
from typing import Any

from sqlalchemy.exc import IntegrityError

from ...apple import bounded_json
from ...apple.claims import NAME_MAX
from ...apple.claims import Name
from ...apple.errors import AppleError
from ...apple.errors import AppleMisconfigured
from ...apple.errors import AppleRejected
from ...apple.errors import AppleUnavailable
from ...apple.errors import InvalidIdentityToken
from ...infra.crypto import fingerprint
from .. import clients
from .. import refresh
from .. import scopes as scope_rules
from ..collaborators import AccountDisabled
from ..errors import InvalidGrantError
from ..errors import InvalidRequestError
from ..errors import InvalidTargetError
from ..errors import ServerError
from ..errors import TemporarilyUnavailableError
from ..errors import is_safe_description
from ..profile import Profile
from .base import ACCESS_TOKEN_TYPE
from .base import BaseGrant

log = logging.getLogger(__name__)

APPLE_AUTHZ_CODE = "http://auth0.com/oauth/token-type/apple-authz-code"
MAX_SUBJECT_TOKEN = 1024
MAX_USER_PROFILE = 4096
MAX_NONCE = 256
_APPLE_CODE = re.compile(r"^[A-Za-z0-9._-]+$")
_NONCE = re.compile(r"^[\x21-\x7e]+$")
SIGN_IN_ATTEMPTS = 3
# What an app developer can act on, by the verifier's reason; anything else stays generic.
ID_TOKEN_PROBLEMS = {
    "nonce mismatch": "The nonce in the identity token from Apple does not match the nonce sent.",
    "missing nonce": "The identity token from Apple carries no nonce, but a nonce was sent.",
    "invalid nonce": "The nonce in the identity token from Apple is malformed.",
    "expired": "The identity token from Apple has expired.",
    "too old": "The identity token from Apple was issued too long ago.",
    "invalid aud": "The identity token from Apple is for another app.",
}


class TokenExchangeGrant(BaseGrant):
    """`grant_type=urn:ietf:params:oauth:grant-type:token-exchange` with an Apple code."""

    GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
    AUDIT_EVENT = "native_exchange"
    # Auth0's own overview page once spelled the URN with "oath"; name the right one.
    MISSPELLINGS = ("urn:ietf:params:oath:grant-type:token-exchange",)

    # --- phase 1: local validation, before the one-time Apple code is spent -------------------

    def validate_token_request(self) -> None:
        self.client = self._validate_client(clients.NATIVE)
        self.subject_token = self._validate_subject_token()
        self._validate_unsupported_parameters()
        self.audience = self._validate_audience()
        self.scopes = self._validate_scope()
        self.name = self._validate_user_profile()
        self.nonce = self._validate_nonce()

    def _validate_subject_token(self) -> str:
        token_type = self.request.get("subject_token_type")
        if token_type is None:
            raise InvalidRequestError("subject_token_type is required.",
                                      reason="subject_token_type_missing")
        if token_type != APPLE_AUTHZ_CODE:
            raise InvalidRequestError(
                f"subject_token_type must be {APPLE_AUTHZ_CODE}.",
                reason="subject_token_type_unsupported",
            )
        token = self.request.get("subject_token")
        if token is None:
            raise InvalidRequestError("subject_token is required.", reason="subject_token_missing")
        if len(token) > MAX_SUBJECT_TOKEN or not _APPLE_CODE.match(token):
            raise InvalidRequestError(
                "subject_token is not an Apple authorization code.",
                reason="subject_token_malformed",
            )
        return token

    def _validate_unsupported_parameters(self) -> None:
        if self.request.getlist("actor_token") or self.request.getlist("actor_token_type"):
            raise InvalidRequestError("Actor tokens are not supported.", reason="actor_token")
        requested = self.request.get("requested_token_type")
        if requested is not None and requested != ACCESS_TOKEN_TYPE:
            raise InvalidRequestError(
                f"requested_token_type must be {ACCESS_TOKEN_TYPE}.", reason="requested_token_type"
            )

    def _validate_audience(self) -> str:
        """One audience (or `resource`, its alias): our API by default, else the client's list."""
        values = self.request.getlist("audience") + self.request.getlist("resource")
        if len(set(values)) > 1:
            raise InvalidTargetError(reason="audience_multiple")
        audience = values[0] if values else self.settings.default_audience
        assert self.client is not None
        if audience == self.client.id or audience not in clients.allowed_audiences(
            self.client, self.settings.default_audience
        ):
            raise InvalidTargetError(reason="audience_not_allowed")
        return audience

    def _validate_scope(self) -> tuple[str, ...]:
        assert self.client is not None
        requested = scope_rules.parse(self.request.get("scope"), default=scope_rules.DEFAULT_SCOPE)
        scope_rules.require_subset(
            requested, scope_rules.allowed_for(self.client.scopes), reason="scope_not_allowed"
        )
        return requested

    def _validate_user_profile(self) -> Name | None:
        """Parse `{"name": {"firstName": ..., "lastName": ...}}`; other members are ignored."""
        raw = self.request.get("user_profile")
        if raw is None:
            return None
        if len(raw) > MAX_USER_PROFILE:
            raise InvalidRequestError("user_profile is too large.", reason="user_profile_too_large")
        try:
            data = bounded_json.loads(raw)
        except ValueError as exc:
            raise InvalidRequestError(
                "user_profile must be a JSON object.", reason="user_profile_not_json"
            ) from exc
        if not isinstance(data, dict):
            raise InvalidRequestError("user_profile must be a JSON object.",
                                      reason="user_profile_not_object")
        name = data.get("name")
        if name is None:
            return None
        if not isinstance(name, dict) or any(
            name.get(part) is not None
            and (not isinstance(name[part], str) or len(name[part]) > NAME_MAX)
            for part in ("firstName", "lastName")
        ):
            raise InvalidRequestError(
                "user_profile.name must hold firstName and lastName strings of at most "
                f"{NAME_MAX} characters.",
                reason="user_profile_name_invalid",
            )
        return Name.from_apple(data)

    def _validate_nonce(self) -> str | None:
        nonce = self.request.get("nonce")
        if nonce is not None and (len(nonce) > MAX_NONCE or not _NONCE.match(nonce)):
            raise InvalidRequestError("nonce is malformed.", reason="nonce_malformed")
        return nonce

    # --- phase 2: Apple, then one transaction, then tokens ------------------------------------

    def create_token_response(self) -> dict[str, Any]:
        assert self.client is not None
        # End the validation reads first: no pooled connection (or, on PostgreSQL, open
        # transaction) is held while Apple answers, which may take a while.
        self.session.commit()
        apple_tokens, claims = self._redeem_code()
        self._take_signer()  # after Apple said yes (a refused exchange creates no first key)
        profile, family_id, auth_time, refresh_token = self._sign_in(apple_tokens, claims)
        body = self._token_body(
            profile=profile, audience=self.audience, scopes=self.scopes, family_id=family_id,
            auth_time=auth_time, refresh_token=refresh_token, nonce=self.nonce,
        )
        return {"issued_token_type": ACCESS_TOKEN_TYPE, **body}

    def _redeem_code(self):
        """Redeem the code as the app (bundle id, no redirect URI); verify Apple's ID token."""
        assert self.client is not None
        bundle_id = self.client.bundle_id
        apple = self.server.apple_client()
        try:
            with apple.budget():  # the code call and a key refetch together: APPLE_SIGN_IN_BUDGET
                apple_tokens = apple.exchange_code(client_id=bundle_id, code=self.subject_token)
                claims = apple.verify_id_token(
                    apple_tokens.id_token, audience=bundle_id, nonce=self.nonce,
                    nonce_mode="native", code=self.subject_token,
                    access_token=apple_tokens.access_token,
                )
        except AppleMisconfigured as exc:
            log.error(
                "Apple rejected our client credentials (invalid_client) for %s: check "
                "APPLE_TEAM_ID, APPLE_KEY_ID, APPLE_PRIVATE_KEY and that the bundle id is an "
                "App ID of the team with Sign in with Apple enabled",
                bundle_id, extra={"event": "apple_invalid_client", "client_id": self.client.id},
            )
            raise ServerError(reason="apple_invalid_client") from exc
        except AppleRejected as exc:
            description = exc.description if is_safe_description(exc.description) else None
            raise InvalidGrantError(description, reason=f"apple_{exc.error}"[:60]) from exc
        except InvalidIdentityToken as exc:
            raise InvalidGrantError(
                ID_TOKEN_PROBLEMS.get(exc.reason, "The identity token from Apple is not valid."),
                reason="id_token_" + exc.reason.replace(" ", "_")[:50],
            ) from exc
        except AppleUnavailable as exc:
            raise TemporarilyUnavailableError(reason="apple_unavailable") from exc
        except AppleError as exc:
            raise TemporarilyUnavailableError(reason="apple_error") from exc
        # Belt and braces: the verifier pins these already.
        if claims.aud != bundle_id:
            raise InvalidGrantError(reason="id_token_audience")
        if self.nonce is None and claims.nonce is not None:
            raise InvalidGrantError("The identity token carries a nonce but none was sent.",
                                    reason="nonce_unexpected")
        return apple_tokens, claims

    def _sign_in(self, apple_tokens, claims) -> tuple[Profile, str, int, str | None]:
        """One transaction: user, identity, Apple refresh token, family, refresh token, audit."""
        for attempt in range(1, SIGN_IN_ATTEMPTS + 1):
            try:
                return self._sign_in_once(apple_tokens, claims)
            except IntegrityError:
                # A concurrent first sign-in of the same Apple ID won a unique index: re-read.
                self.session.rollback()
                if attempt == SIGN_IN_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _sign_in_once(self, apple_tokens, claims) -> tuple[Profile, str, int, str | None]:
        assert self.client is not None
        try:
            user, identity, created = self.server.users.sign_in(
                claims, apple_client_id=self.client.bundle_id,
                apple_refresh_token=apple_tokens.refresh_token, name=self.name,
            )
        except AccountDisabled as exc:
            raise InvalidGrantError("This account is disabled.", reason="user_disabled") from exc
        self.user_id = user.id
        offline = scope_rules.OFFLINE_ACCESS in self.scopes
        scope = scope_rules.join(self.scopes)
        family = refresh.start_family(
            self.session, self.settings, user_id=user.id, client_id=self.client.id,
            identity_id=identity.id, scope=scope, audience=self.audience, offline=offline,
            ip=self.request.ip, user_agent=self.request.user_agent,
        )
        self.audit.record_now(
            self.AUDIT_EVENT, user_id=user.id, client_id=self.client.id,
            details={"family_id": family.id, "new_user": created, "scope": scope,
                     "audience": self.audience, "apple_sub_fp": fingerprint(claims.sub)},
        )
        profile = Profile.of(user)
        auth_time = int(family.created_at.timestamp())
        family_id = family.id
        self._commit(lambda: refresh.family_exists(self.session, family_id),
                     f"native sign-in (family {family_id})")
        return profile, family.id, auth_time, family.refresh_token
