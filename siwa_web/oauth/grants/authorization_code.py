"""`grant_type=authorization_code` (RFC 6749 §4.1.3, OIDC Core §3.1.3, RFC 7636): web apps.

The app authenticates (its secret, or nothing for a public client), presents the code with
the very redirect URI it was issued for and its PKCE verifier, and gets an ID token (`aud` =
its client id, `nonce`, `auth_time` of the real Apple sign-in, `sid` of the siwa-web browser
session, `amr`), an access token for the audience it asked for and, with `offline_access`, a
refresh token in a rotating family bound to this client and this sign-in.

Every failure about the code itself is one `invalid_grant`, whatever the cause (unknown,
expired, used, another client's, another redirect URI, wrong verifier, or the browser session
it was issued in has ended since — signed out or revoked): the reason is logged and audited,
never sent. A code presented a second time also revokes what its first redemption issued
(RFC 6749 §4.1.2).
"""
from __future__ import annotations

from typing import Any

from ...models import AuthorizationCode
from ...models import User
from ...models import WebSession
from ...models.base import now_utc
from .. import clients
from .. import codes
from .. import refresh
from .. import scopes as scope_rules
from ..errors import InvalidGrantError
from ..errors import InvalidRequestError
from ..profile import Profile
from .base import BaseGrant

#: How siwa-web authenticated the person: through Apple, a federated sign-in.
AMR = ("fed",)


class AuthorizationCodeGrant(BaseGrant):
    """Trade an authorization code (and PKCE verifier) for our tokens."""

    GRANT_TYPE = "authorization_code"
    AUDIT_EVENT = "web_app_code"

    def validate_token_request(self) -> None:
        self.client = self._validate_client(clients.WEB)
        value = self.request.get("code")
        if value is None:
            raise InvalidRequestError("code is required.", reason="code_missing")
        redirect_uri = self.request.get("redirect_uri")
        if redirect_uri is None:
            raise InvalidRequestError("redirect_uri is required.", reason="redirect_uri_missing")
        verifier = self.request.get("code_verifier")
        code = codes.find(self.session, value)
        if code is None or code.client_id != self.client.id:
            raise InvalidGrantError(reason="code_unknown" if code is None else "code_client")
        self.code = code
        self.user_id = code.user_id
        if code.consumed_at is not None:
            self._replayed(code)
        if code.expires_at <= now_utc():
            raise InvalidGrantError(reason="code_expired")
        if redirect_uri != code.redirect_uri:
            raise InvalidGrantError(reason="redirect_uri_mismatch")
        self._check_pkce(code, verifier)
        if code.web_session_id is not None and not self._session_alive(code.web_session_id):
            raise InvalidGrantError(reason="web_session_ended")
        self.scopes = tuple(code.scope.split())

    def _session_alive(self, web_session_id: str) -> bool:
        """The sign-in the code stands for is still on: its browser session is not revoked."""
        row = self.session.get(WebSession, web_session_id)
        return row is not None and row.revoked_at is None

    def _check_pkce(self, code: AuthorizationCode, verifier: str | None) -> None:
        if code.code_challenge is None:
            if verifier is not None:  # PKCE downgrade (RFC 9700 §4.8.2)
                raise InvalidGrantError(reason="pkce_downgrade")
            return
        if verifier is None:
            raise InvalidGrantError(reason="pkce_verifier_missing")
        if not codes.verifier_matches(code.code_challenge, verifier):
            raise InvalidGrantError(reason="pkce_verifier_mismatch")

    def _replayed(self, code: AuthorizationCode) -> None:
        """A used code again: revoke what its first redemption issued, then refuse."""
        if code.family_id is not None and refresh.revoke_family_id(
                self.session, code.family_id, "code_replayed") is not None:
            self.audit.record("authorization_code_replayed", "failure", user_id=code.user_id,
                              client_id=code.client_id, reason="family_revoked",
                              details={"family_id": code.family_id})
        self.session.commit()
        raise InvalidGrantError(reason="code_replayed")

    def create_token_response(self) -> dict[str, Any]:
        assert self.client is not None
        code = self.code
        if not codes.claim(self.session, code):  # a parallel redemption won
            self.session.rollback()
            self._replayed(codes.find_by_id(self.session, code.id) or code)
        user = self.session.get(User, code.user_id)
        if user is None or not user.is_active:
            self.session.rollback()
            raise InvalidGrantError("This account is disabled.", reason="user_disabled")
        offline = scope_rules.OFFLINE_ACCESS in self.scopes
        scope = scope_rules.join(self.scopes)
        family = refresh.start_family(
            self.session, self.settings, user_id=user.id, client_id=self.client.id,
            identity_id=None, scope=scope, audience=code.audience, offline=offline,
            ip=self.request.ip, user_agent=self.request.user_agent,
            web_session_id=code.web_session_id, auth_time=code.auth_time,
        )
        codes.attach_family(self.session, code, family.id)
        self.audit.record_now(
            self.AUDIT_EVENT, user_id=user.id, client_id=self.client.id,
            details={"family_id": family.id, "scope": scope, "audience": code.audience},
        )
        profile = Profile.of(user)
        self.session.commit()
        return self._token_body(
            profile=profile, audience=code.audience, scopes=self.scopes, family_id=family.id,
            auth_time=int(code.auth_time.timestamp()), refresh_token=family.refresh_token,
            nonce=code.nonce, session_id=code.web_session_id, amr=AMR,
        )
