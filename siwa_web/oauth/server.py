"""The authorization server: grant registry and dispatch, revocation, and Bearer authentication.

Framework-free: views hand in a `TokenRequest` and render what comes back, or the
`OAuth2Error` that is raised.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

from sqlalchemy import bindparam
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..infra.crypto import TokenCipher
from ..infra.transactions import DB_UNAVAILABLE
from ..models import Client
from ..models import TokenFamily
from ..models import User
from . import client_auth
from . import clients
from . import refresh
from . import tokens
from .collaborators import AuditLog
from .collaborators import DbSession
from .collaborators import UserDirectory
from .config import TokenSettings
from .errors import InvalidClientError
from .errors import InvalidRequestError
from .errors import InvalidTokenError
from .errors import OAuth2Error
from .errors import TemporarilyUnavailableError
from .errors import UnsupportedGrantTypeError
from .errors import UnsupportedTokenTypeError
from .grants import BaseGrant
from .keys import KeyRing
from .liveness import LivenessCache
from .liveness import LocalSignal
from .profile import Profile
from .requests import TokenRequest

log = logging.getLogger(__name__)


class Principal(NamedTuple):
    """A verified access token plus the live user behind it (immutable; built on every API call)."""

    token: tokens.AccessToken
    profile: Profile

    @property
    def user_id(self) -> str:
        return self.profile.user_id

    @property
    def email(self) -> str | None:
        return self.profile.email

    @property
    def email_verified(self) -> bool:
        return self.profile.email_verified

    @property
    def first_name(self) -> str | None:
        return self.profile.first_name

    @property
    def last_name(self) -> str | None:
        return self.profile.last_name


class AuthorizationServer:
    """Everything the token service does, given settings and what it is handed: a database
    session and engine, a user directory, an audit log and a way to reach Apple.
    """

    def __init__(
        self, settings: TokenSettings, *, session: DbSession, engine: Engine,
        users: UserDirectory, audit: AuditLog, apple_client: Callable[[], Any],
        liveness: LivenessCache | None = None,
    ) -> None:
        self.settings = settings
        self.session = session
        self.users = users
        self.audit = audit
        self.liveness = liveness or LivenessCache(LocalSignal(), ttl=0)
        self.keys = KeyRing(settings, engine)
        self.clients = clients.ClientCache(settings.client_cache_seconds)
        self.cipher = TokenCipher(list(settings.encryption_keys))
        self.apple_client = apple_client
        self._grants: dict[str, type[BaseGrant]] = {}

    # --- token endpoint ----------------------------------------------------------------------

    def register_grant(self, grant_cls: type[BaseGrant]) -> None:
        self._grants[grant_cls.GRANT_TYPE] = grant_cls

    @property
    def grant_types(self) -> list[str]:
        return list(self._grants)

    def get_token_grant(self, request: TokenRequest) -> BaseGrant:
        """:raises InvalidRequestError, UnsupportedGrantTypeError:"""
        grant_type = request.grant_type
        if grant_type is None:
            raise InvalidRequestError("grant_type is required.", reason="grant_type_missing")
        grant_cls = self._grants.get(grant_type)
        if grant_cls is not None:
            return grant_cls(self, request)
        for known in self._grants.values():
            if grant_type in known.MISSPELLINGS:
                raise UnsupportedGrantTypeError(
                    f"Unsupported grant_type. Did you mean {known.GRANT_TYPE} (oauth, not oath)?",
                    reason="grant_type_misspelled",
                )
        raise UnsupportedGrantTypeError(reason="grant_type_unsupported")

    def create_token_response(self, request: TokenRequest) -> dict[str, Any]:
        """Run a grant; returns the JSON body. :raises OAuth2Error:"""
        request.check_no_repeats()
        grant = self.get_token_grant(request)
        try:
            try:
                grant.validate_token_request()
                return grant.create_token_response()
            except DB_UNAVAILABLE as exc:
                log.error("database unavailable during %s: %s", grant.AUDIT_EVENT,
                          type(exc).__name__, extra={"event": "database_unavailable"})
                self._rollback()
                raise TemporarilyUnavailableError(reason="database_unavailable") from exc
        except OAuth2Error as error:
            self._record_failure(grant.AUDIT_EVENT, error, grant.audit_client_id, grant.user_id)
            raise

    # --- revocation (RFC 7009) -----------------------------------------------------------------

    def create_revocation_response(self, request: TokenRequest) -> None:
        """Revoke the family behind a refresh or access token. :raises OAuth2Error:

        Unknown, expired, malformed and already-revoked tokens succeed silently (RFC 7009 §2.2);
        another client's token is refused and left alone (decision D4); our ID tokens cannot be
        revoked (`unsupported_token_type`, as Keycloak answers).
        """
        request.check_no_repeats()
        client_id = request.client_id
        try:
            token = request.get("token")
            if token is None:
                raise InvalidRequestError("token is required.", reason="token_missing")
            credentials = client_auth.presented(request)
            client_id = credentials.client_id
            client = client_auth.authenticate(self.session, credentials)
            if client is None:
                raise InvalidClientError(reason="client_unknown" if client_id else "client_missing")
            # token_type_hint only changes the lookup order; an unknown hint is ignored.
            lookups = [self._refresh_token_family, self._jwt_family]
            if request.get("token_type_hint") == "access_token":
                lookups.reverse()
            for lookup in lookups:
                found = lookup(token)
                if found is not None:
                    kind, family = found
                    self._revoke(client.id, kind, family)
                    return
        except DB_UNAVAILABLE as exc:
            self._rollback()
            raise TemporarilyUnavailableError(reason="database_unavailable") from exc
        except OAuth2Error as error:
            self._record_failure("token_revoked", error, client_id, None)
            raise

    def _refresh_token_family(self, token: str) -> tuple[str, TokenFamily] | None:
        row = refresh.find(self.session, token)
        return None if row is None else ("refresh_token", row.family)

    def _jwt_family(self, token: str) -> tuple[str, TokenFamily | None] | None:
        found = tokens.identify(self.keys, self.settings, token)
        if found is None:
            return None
        kind, claims = found
        if kind == "id_token":
            raise UnsupportedTokenTypeError(
                "ID tokens cannot be revoked; revoke the refresh token instead.",
                reason="id_token_presented",
            )
        sid = claims.get("sid")
        family = self.session.get(TokenFamily, sid) if isinstance(sid, str) else None
        if family is not None and claims.get("client_id") != family.client_id:
            return None  # not a token we would have issued
        return kind, family

    def _revoke(self, client_id: str, kind: str, family: TokenFamily | None) -> None:
        if family is None:
            return
        if family.client_id != client_id:
            raise InvalidRequestError(
                "The token was not issued to this client.", reason="client_mismatch"
            )
        if refresh.revoke_family(self.session, family, "revoked_by_client"):
            self.audit.record(
                "token_revoked", user_id=family.user_id, client_id=client_id,
                details={"family_id": family.id, "token_type": kind},
            )
        self.session.commit()

    # --- protected resources (RFC 6750) -------------------------------------------------------

    def authenticate(self, token: str, *, audience: str | None = None) -> Principal:
        """Verify a Bearer access token and that its family and user are alive.

        :raises InvalidTokenError: for every kind of bad token (the reason is only logged).
        :raises TemporarilyUnavailableError: if the database cannot be asked.
        """
        audience = audience or self.settings.default_audience
        try:
            access = tokens.verify_access_token(self.keys, self.settings, token, audience=audience)
            row = self.liveness.lookup(
                access.family_id, lambda: _family_and_user(self.session, access))
        except tokens.TokenInvalid as exc:
            log.debug("bearer token refused: %s", exc.reason,
                      extra={"event": "bearer_refused", "reason": exc.reason})
            raise InvalidTokenError(reason=exc.reason) from exc
        except DB_UNAVAILABLE as exc:  # the key list or the session could not be read
            raise TemporarilyUnavailableError(reason="database_unavailable") from exc
        reason = (
            "family_unknown" if row is None or row.profile.user_id != access.sub
            else "family_revoked" if row.revoked
            else "user_disabled" if row.disabled
            else "client_disabled" if row.client_disabled
            # the app session is over, whatever the token says
            else "family_expired" if row.expires_at <= time.time()
            else None
        )
        if reason is not None:
            log.debug("bearer token refused: %s", reason,
                      extra={"event": "bearer_refused", "reason": reason})
            if reason == "client_disabled":  # the holder can do nothing about it: say so
                raise InvalidTokenError("The app this access token was issued to is disabled.",
                                        reason=reason)
            raise InvalidTokenError(reason=reason)
        return Principal(access, row.profile)

    # --- audit ------------------------------------------------------------------------------------

    def _record_failure(
        self, event: str, error: OAuth2Error, client_id: str | None, user_id: str | None
    ) -> None:
        """Audit a refused request in its own transaction; never let auditing mask the error.

        The audit event makes the log line once committed; when the database is down there is
        no row, and the line is logged here instead.
        """
        if error.reason == "database_unavailable":  # the audit row could not be written either
            log.info("%s refused: %s", event, error.reason, extra={
                "event": event, "outcome": "failure", "reason": error.reason,
                "client_id": client_id})
            return
        try:
            self.audit.record_failure(
                event, error.reason[:100], client_id=client_id[:255] if client_id else None,
                user_id=user_id, details={"error": error.error},
            )
        except SQLAlchemyError:
            self._rollback()
            log.exception("could not record audit event %s", event,
                          extra={"event": "audit_write_failed"})


    def _rollback(self) -> None:
        """Leave the session usable after a database failure (a second failure is not news)."""
        try:
            self.session.rollback()
        except SQLAlchemyError:
            log.debug("rollback after a database failure failed too",
                      extra={"event": "database_unavailable"})


# Built once: constructing the statement cost more than running it on every API call.
# The client's row comes along: a disabled client's access tokens are refused (`flask clients
# disable`), as its grants are.
_FAMILY_AND_USER = (
    select(
        TokenFamily.revoked_at, TokenFamily.expires_at, TokenFamily.user_id, User.disabled_at,
        User.email, User.email_verified, User.first_name, User.last_name,
        Client.disabled_at.label("client_disabled_at"),
    )
    .join(User, User.id == TokenFamily.user_id)
    .join(Client, Client.id == TokenFamily.client_id)
    .where(TokenFamily.id == bindparam("family_id"))
)


class SessionState(NamedTuple):
    """What a Bearer check needs of a family and its user, as the liveness cache keeps it.

    A plain tuple rather than SQLAlchemy's Row: it is read on every API call, and each
    attribute of a Row costs about ten times as much to read.
    """

    revoked: bool
    disabled: bool
    expires_at: float  # POSIX timestamp
    profile: Profile
    client_disabled: bool = False


def _family_and_user(session: DbSession, access: tokens.AccessToken) -> SessionState | None:
    row = session.connection().execute(
        _FAMILY_AND_USER, {"family_id": access.family_id}).first()
    if row is None:
        return None
    return SessionState(
        revoked=row.revoked_at is not None, disabled=row.disabled_at is not None,
        expires_at=row.expires_at.timestamp(),
        profile=Profile(row.user_id, row.email, bool(row.email_verified), row.first_name,
                        row.last_name),
        client_disabled=row.client_disabled_at is not None,
    )

