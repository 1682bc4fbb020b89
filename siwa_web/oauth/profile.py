"""Who a token is about, in the one shape the grants, the Bearer check and its cache share."""
from __future__ import annotations

from typing import Any
from typing import NamedTuple

from ..models import User
from . import scopes as scope_rules


class Profile(NamedTuple):
    """The user's id and the attributes OIDC claims are made of.

    A plain tuple: it is built on every token response and kept in the liveness cache, and
    reading a NamedTuple's field costs a tenth of reading an ORM row's attribute. It is
    captured before commit, so nothing reloads an expired ORM object afterwards.
    """

    user_id: str
    email: str | None
    email_verified: bool
    first_name: str | None
    last_name: str | None

    @classmethod
    def of(cls, user: User) -> Profile:
        return cls(user.id, user.email, bool(user.email_verified), user.first_name,
                   user.last_name)

    def claims(self, granted: tuple[str, ...] | frozenset[str]) -> dict[str, Any]:
        """OIDC standard claims for the granted scopes (Core §5.4)."""
        return scope_rules.profile_claims(
            granted, email=self.email, email_verified=self.email_verified,
            first_name=self.first_name, last_name=self.last_name)
