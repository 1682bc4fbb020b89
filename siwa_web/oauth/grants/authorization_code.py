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

from sqlalchemy import Row

from ...models.base import new_id
from ...models.base import now_utc
from .. import client_auth
from .. import clients
from .. import codes
from .. import refresh
from .. import scopes as scope_rules
from ..errors import InvalidClientError
from ..errors import InvalidGrantError
from ..errors import InvalidRequestError
from ..errors import UnauthorizedClientError
from ..profile import Profile
from .base import AMR
from .base import BaseGrant
from .base import ClientRef


class AuthorizationCodeGrant(BaseGrant):
    """Trade an authorization code (and PKCE verifier) for our tokens."""

    GRANT_TYPE = "authorization_code"
    AUDIT_EVENT = "web_app_code"

    def validate_token_request(self) -> None:
        value = self.request.get("code")
        credentials = client_auth.presented(self.request)
        # Claimed first, in one statement with everything checked below; a failed check rolls
        # the claim back with the rest of the transaction (the server's failure path).
        self.family_id = new_id()
        # The signing key first (a read): nothing after the commit may touch the database. On a
        # fresh installation there is none yet; the first is made only for a code that checks
        # out (create_token_response), so a refused request stores nothing.
        self._signer = self.server.keys.existing_signer()
        self._value = value
        code = codes.claim(self.session, value, self.family_id)
        claimed = code is not None
        if not claimed:  # never issued, or used before: a replay
            code = codes.presented(self.session, value)
        self.client = self._code_client(code, credentials)
        if value is None:
            raise InvalidRequestError("code is required.", reason="code_missing")
        redirect_uri = self.request.get("redirect_uri")
        if redirect_uri is None:
            raise InvalidRequestError("redirect_uri is required.", reason="redirect_uri_missing")
        verifier = self.request.get("code_verifier")
        if code is None or code.client_id != self.client.id:
            raise InvalidGrantError(reason="code_unknown" if code is None else "code_client")
        self.code = code
        self.user_id = code.user_id
        if not claimed:
            self._replayed(code.family_id, code.user_id, code.client_id)
        if code.expires_at <= now_utc():
            raise InvalidGrantError(reason="code_expired")
        if redirect_uri != code.redirect_uri:
            raise InvalidGrantError(reason="redirect_uri_mismatch")
        self._check_pkce(code.code_challenge, verifier)
        if code.web_session_id is not None and code.web_session_revoked_at is not None:
            # the sign-in the code stands for ended (signed out) before the app redeemed it
            raise InvalidGrantError(reason="web_session_ended")
        self.scopes = tuple(code.scope.split())

    def _code_client(self, code: Row | None, credentials: client_auth.Presented):
        """The authenticated web client; from the code's own row when it names the presenter
        (one query instead of two, as for refresh tokens)."""
        if code is not None and credentials.client_id == code.client_id:
            if code.client_disabled_at is not None:
                raise InvalidClientError(reason="client_disabled")
            client_auth.check_secret(code.client_secret_hash, credentials)
            if code.client_kind != clients.WEB:
                raise UnauthorizedClientError(reason=f"{code.client_kind}_client")
            return ClientRef(code.client_id)
        return self._validate_client(clients.WEB)

    def _first_signer(self) -> None:
        """The very first signing key, made on a connection of its own, which on SQLite would wait
        for this grant's write lock: let the claim go, make the key, claim again."""
        self.session.rollback()
        self._take_signer()
        if codes.claim(self.session, self._value, self.family_id) is None:  # redeemed meanwhile
            row = codes.presented(self.session, self._value)
            self._replayed(row.family_id if row is not None else None, self.code.user_id,
                           self.code.client_id)

    def _check_pkce(self, challenge: str | None, verifier: str | None) -> None:
        if challenge is None:
            if verifier is not None:  # PKCE downgrade (RFC 9700 §4.8.2)
                raise InvalidGrantError(reason="pkce_downgrade")
            return
        if verifier is None:
            raise InvalidGrantError(reason="pkce_verifier_missing")
        if not codes.verifier_matches(challenge, verifier):
            raise InvalidGrantError(reason="pkce_verifier_mismatch")

    def _replayed(self, family_id: str | None, user_id: str, client_id: str) -> None:
        """A used code again: revoke what its first redemption issued, then refuse."""
        if family_id is not None and refresh.revoke_family_id(
                self.session, family_id, "code_replayed") is not None:
            self.audit.record("authorization_code_replayed", "failure", user_id=user_id,
                              client_id=client_id, reason="family_revoked",
                              details={"family_id": family_id})
        self.session.commit()
        raise InvalidGrantError(reason="code_replayed")

    def create_token_response(self) -> dict[str, Any]:
        assert self.client is not None
        code = self.code
        if code.user_disabled_at is not None:
            raise InvalidGrantError("This account is disabled.", reason="user_disabled")
        family_id = self.family_id  # the claim recorded it on the code
        if self._signer is None:
            self._first_signer()
        offline = scope_rules.OFFLINE_ACCESS in self.scopes
        scope = scope_rules.join(self.scopes)
        family = refresh.start_family(
            self.session, self.settings, user_id=code.user_id, client_id=code.client_id,
            identity_id=None, scope=scope, audience=code.audience, offline=offline,
            ip=self.request.ip, user_agent=self.request.user_agent,
            web_session_id=code.web_session_id, auth_time=code.auth_time, family_id=family_id,
        )
        self.audit.record_now(
            self.AUDIT_EVENT, user_id=code.user_id, client_id=code.client_id,
            details={"family_id": family.id, "scope": scope, "audience": code.audience},
        )
        self._commit(lambda: refresh.family_exists(self.session, family_id),
                     f"code redemption (family {family_id})")
        profile = Profile(code.user_id, code.user_email, bool(code.user_email_verified),
                          code.user_first_name, code.user_last_name)
        return self._token_body(
            profile=profile, audience=code.audience, scopes=self.scopes, family_id=family.id,
            auth_time=int(code.auth_time.timestamp()), refresh_token=family.refresh_token,
            nonce=code.nonce, session_id=code.web_session_id, amr=AMR,
        )
