"""What the token service is handed by the app around it: a database session, a user
directory and an audit log, as protocols — so the core never imports the app's `db`,
its account code or its audit module, and a test can hand it anything that fits.
"""
from __future__ import annotations

from typing import Any
from typing import Protocol
from typing import TypeAlias

from sqlalchemy.orm import Session
from sqlalchemy.orm import scoped_session

from ..apple.claims import AppleClaims
from ..apple.claims import Name
from ..models import AppleIdentity
from ..models import User

#: A SQLAlchemy session, or a scoped session that stands for the current one (Flask-SQLAlchemy's
#: `db.session`). Everything the core writes joins the caller's transaction; the caller commits.
DbSession: TypeAlias = Session | scoped_session[Session]


class AccountDisabled(Exception):
    """The Apple ID belongs to a disabled account: no sign-in, no tokens."""


class UserDirectory(Protocol):
    """Finds or creates the user behind verified Apple claims (by `sub`, never by email)."""

    def sign_in(
        self, claims: AppleClaims, *, apple_client_id: str, apple_refresh_token: str | None,
        name: Name | None = None,
    ) -> tuple[User, AppleIdentity, bool]:
        """(user, identity, created); joins the session's transaction.

        :raises AccountDisabled:
        """


class AuditLog(Protocol):
    """Writes audit events: in the caller's transaction, at once, or on their own."""

    def record(self, event: str, outcome: str = "success", *, user_id: str | None = None,
               reason: str | None = None, client_id: str | None = None,
               details: dict[str, Any] | None = None) -> None: ...

    def record_now(self, event: str, *, user_id: str | None = None, reason: str | None = None,
                   client_id: str | None = None,
                   details: dict[str, Any] | None = None) -> None: ...

    def record_failure(self, event: str, reason: str, **kwargs: Any) -> None: ...
