"""What every grant shares: two phases (validate, then respond), the client check, the response."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from typing import ClassVar
from typing import Protocol

from ...infra.crypto import TokenCipher
from ...infra.transactions import commit_or_confirm
from .. import client_auth
from .. import clients
from .. import scopes as scope_rules
from .. import tokens
from ..collaborators import AuditLog
from ..collaborators import DbSession
from ..collaborators import UserDirectory
from ..config import TokenSettings
from ..errors import InvalidClientError
from ..errors import OAuth2Error
from ..errors import UnauthorizedClientError
from ..keys import KeyRing
from ..keys import LoadedKey
from ..profile import Profile
from ..requests import TokenRequest

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
#: How siwa-web authenticated the person in a web sign-in: through Apple, a federated sign-in.
AMR = ("fed",)


@dataclass(frozen=True)
class ClientRef:
    """The client as far as a refresh or a code redemption needs it: its id, read (enabled and
    authenticated) with the token or code itself."""

    id: str


class GrantContext(Protocol):
    """What a grant uses of the server that runs it (the server satisfies it; so can a test)."""

    settings: TokenSettings
    session: DbSession
    audit: AuditLog
    users: UserDirectory
    keys: KeyRing
    cipher: TokenCipher
    apple_client: Callable[[], Any]


class BaseGrant:
    """A token-endpoint grant: `validate_token_request()`, then `create_token_response()`.

    Validation must not change anything (and must not call Apple); the response phase does
    the work in one transaction and signs tokens only after the commit.
    """

    GRANT_TYPE: ClassVar[str]
    AUDIT_EVENT: ClassVar[str]
    #: Spellings seen in the wild that should get a helpful unsupported_grant_type.
    MISSPELLINGS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, server: GrantContext, request: TokenRequest) -> None:
        self.server = server
        self.settings = server.settings
        self.request = request
        self.session = server.session
        self.audit = server.audit
        self.client: clients.ActiveClient | None = None
        self.user_id: str | None = None  # for the audit trail once known
        self._signer: LoadedKey | None = None  # taken before the commit (see `_commit`)

    def validate_token_request(self) -> None:
        raise NotImplementedError

    def create_token_response(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def audit_client_id(self) -> str | None:
        if self.client is not None:
            return self.client.id
        values = self.request.params.get("client_id") or [None]
        return values[0]

    def _validate_client(self, kind: str) -> clients.ActiveClient:
        """The enabled client of `kind` the request authenticates as.

        :raises InvalidClientError: unknown client, or a secret that does not fit.
        :raises UnauthorizedClientError: a client of the other kind (this grant is not for it).
        """
        credentials = client_auth.presented(self.request)
        client = client_auth.authenticate(self.session, credentials)
        if client is None:
            raise self._no_such_client(credentials.client_id)
        if client.kind != kind:
            raise UnauthorizedClientError(
                f"This grant is for {kind} clients; {client.id} is a {client.kind} client.",
                reason=f"{client.kind}_client")
        return client

    def _no_such_client(self, client_id: str | None) -> OAuth2Error:
        """The error for a client_id that names no enabled token client (security ref. TX-11).

        The web sign-in's Services ID is a client of ours, just not one that may use the token
        endpoint: `unauthorized_client`, with a description that says what to send instead.
        """
        if client_id and client_id in self.settings.web_client_ids:
            return UnauthorizedClientError(
                "This client_id is the web sign-in's Services ID, which may not use this grant. "
                "Native apps send the client_id of a native client (flask clients create).",
                reason="web_client")
        return InvalidClientError(reason="client_unknown" if client_id else "client_missing")

    def _take_signer(self) -> None:
        """Take the signing key now, before the grant writes anything.

        Then, once the grant's commit is done, nothing is left that could fail on the database:
        a 503 is only ever answered for work that was not stored. (Before the writes, because
        the very first key is created on a connection of its own, which on SQLite would wait
        for the grant's write lock.)
        """
        self._signer = self.server.keys.signer()

    def _commit(self, stored: Callable[[], bool], what: str) -> None:
        """Commit the grant's work so that the answer agrees with what is stored: if the
        COMMIT's answer is lost, `stored()` asks whether it was applied (infra/transactions.py).
        """
        commit_or_confirm(self.session, stored, what)

    def _token_body(
        self,
        *,
        profile: Profile,
        audience: str,
        scopes: tuple[str, ...],
        family_id: str,
        auth_time: int,
        refresh_token: str | None,
        nonce: str | None = None,
        session_id: str | None = None,
        amr: tuple[str, ...] | None = None,
    ) -> dict[str, Any]:
        """Sign the access token (and the ID token when `openid` was granted) and shape the JSON."""
        assert self.client is not None
        ring = self.server.keys if self._signer is None else _Pinned(self._signer)
        settings, now = self.settings, int(time.time())
        scope = scope_rules.join(scopes)
        access = tokens.issue_access_token(
            ring, settings, user_id=profile.user_id, client_id=self.client.id, audience=audience,
            scope=scope, family_id=family_id, auth_time=auth_time, now=now,
        )
        body: dict[str, Any] = {
            "access_token": access.value,
            "token_type": "Bearer",
            "expires_in": access.expires_in,
            "scope": scope,
        }
        if scope_rules.OPENID in scopes:
            body["id_token"] = tokens.issue_id_token(
                ring, settings, user_id=profile.user_id, client_id=self.client.id,
                auth_time=auth_time, family_id=family_id, profile=profile.claims(scopes),
                nonce=nonce, session_id=session_id, amr=amr, now=now,
            )
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        return body


class _Pinned:
    """A key ring that only signs, with the key taken before the commit (no database access)."""

    def __init__(self, key: LoadedKey) -> None:
        self._key = key

    def signer(self) -> LoadedKey:
        return self._key
