"""A framework-free view of a token or revocation request."""
from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidRequestError

# RFC 8693 lets these repeat; we answer more than one with invalid_target, not invalid_request.
REPEATABLE = frozenset({"audience", "resource"})


@dataclass
class TokenRequest:
    """Body parameters (every value, so repeats can be refused), plus who sent them."""

    params: dict[str, list[str]]
    ip: str | None = None
    user_agent: str | None = None
    authorization: str | None = None  # the Authorization header (client_secret_basic)

    def check_no_repeats(self) -> None:
        """:raises InvalidRequestError: if a parameter appears twice (RFC 6749 §3.1)."""
        for name, values in self.params.items():
            if len(values) > 1 and name not in REPEATABLE:
                raise InvalidRequestError(
                    "A request parameter was sent more than once.", reason="duplicate_parameter"
                )

    def get(self, name: str) -> str | None:
        """Return the single value of `name`; empty values count as absent (RFC 6749 §3.1)."""
        values = [v for v in self.params.get(name, ()) if v != ""]
        if len(values) > 1:
            raise InvalidRequestError(
                "A request parameter was sent more than once.", reason="duplicate_parameter"
            )
        return values[0] if values else None

    def getlist(self, name: str) -> list[str]:
        return [v for v in self.params.get(name, ()) if v != ""]

    @property
    def grant_type(self) -> str | None:
        return self.get("grant_type")

    @property
    def client_id(self) -> str | None:
        return self.get("client_id")
