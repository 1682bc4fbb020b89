"""`grant_type=refresh_token` with rotation, a grace window and reuse detection (D2, D3).

https://datatracker.ietf.org/doc/html/rfc6749#section-6 ; the family semantics are described in
`siwa_web.oauth.refresh`.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from .. import client_auth
from .. import clients
from .. import refresh
from .. import scopes as scope_rules
from ..errors import InvalidClientError
from ..errors import InvalidGrantError
from ..errors import InvalidRequestError
from ..profile import Profile
from .base import AMR
from .base import BaseGrant
from .base import ClientRef


class RefreshTokenGrant(BaseGrant):
    """Trade a refresh token for a new access token and the next refresh token of its family."""

    GRANT_TYPE = "refresh_token"
    AUDIT_EVENT = "refresh"

    def validate_token_request(self) -> None:
        value = self.request.get("refresh_token")
        if value is None:
            raise InvalidRequestError("refresh_token is required.", reason="refresh_token_missing")
        requested = self.request.get("scope")
        self.requested_scopes = None if requested is None else scope_rules.parse(requested)
        self.row = refresh.find_presented(self.session, value)
        self.client = self._validate_refresh_client(self.row)
        if self.row is None:
            raise InvalidGrantError(reason="refresh_token_unknown")
        self.user_id = self.row.user_id
        if self.row.client_id != self.client.id:
            # Keycloak's "unmatching clients": refused, and the token stays valid for its owner.
            raise InvalidGrantError(reason="client_mismatch")
        granted = tuple(self.row.scope.split())
        if self.requested_scopes is None:
            self.scopes = granted
        else:
            scope_rules.require_subset(self.requested_scopes, set(granted),
                                       reason="scope_escalation")
            self.scopes = self.requested_scopes

    def _validate_refresh_client(self, row: Row | None) -> clients.ActiveClient | ClientRef:
        """The client usually comes with the token's row already (one query instead of two);
        a confidential web client proves itself with its secret either way."""
        credentials = client_auth.presented(self.request)
        if row is not None and credentials.client_id == row.client_id:
            if row.client_disabled_at is not None:
                raise InvalidClientError(reason="client_disabled")
            client_auth.check_secret(row.client_secret_hash, credentials)
            return ClientRef(row.client_id)
        client = client_auth.authenticate(self.session, credentials)
        if client is None:
            raise self._no_such_client(credentials.client_id)
        return client

    def create_token_response(self) -> dict[str, Any]:
        assert self.client is not None
        self._take_signer()
        try:
            rotation = refresh.rotate(
                self.session, self.settings, self.row, self.server.cipher,
                ip=self.request.ip, user_agent=self.request.user_agent,
            )
        except refresh.ReuseDetected as exc:
            self.audit.record(
                "refresh_token_reuse_detected", "failure", user_id=self.user_id,
                client_id=self.client.id, reason="family_revoked",
                details={"family_id": exc.family_id},
            )
            self.session.commit()
            raise InvalidGrantError(reason=exc.reason) from exc
        except refresh.RefreshError as exc:
            # A disabled account is said so, as the token exchange does: the app can tell its
            # user why, instead of starting a sign-in that would be refused the same way.
            description = "This account is disabled." if exc.reason == "user_disabled" else None
            raise InvalidGrantError(description, reason=exc.reason) from exc
        row = self.row
        self.audit.record_now(
            self.AUDIT_EVENT, user_id=row.user_id, client_id=self.client.id,
            reason="grace_retry" if rotation.grace_retry else None,
            details={"family_id": row.family_id, "scope": scope_rules.join(self.scopes)},
        )
        successor = rotation.refresh_token
        self._commit(lambda: refresh.find(self.session, successor) is not None,
                     f"refresh (family {row.family_id})")
        profile = Profile(row.user_id, row.email, bool(row.email_verified), row.first_name,
                          row.last_name)
        return self._token_body(
            profile=profile, audience=row.audience, scopes=self.scopes, family_id=row.family_id,
            auth_time=int(row.family_auth_time.timestamp()), refresh_token=rotation.refresh_token,
            session_id=row.web_session_id,
            amr=AMR if row.web_session_id is not None else None,
        )
