"""In-memory Apple: users, consents, codes and tokens, guarded by one lock per emulator app."""
from __future__ import annotations

import secrets
import string
import threading
import time
from collections import deque
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from .keys import KeyRing
from .settings import EmulatorSettings

CODE_TTL = 300  # authorization codes live 5 minutes
ACCESS_TTL = 3600
PAGE_TTL = 900  # a consent page's one-time token
RELAY_DOMAIN = "privaterelay.appleid.com"
ENDPOINTS = ("token", "revoke", "keys", "usermigrationinfo")


def new_sub() -> str:
    """Apple's team-scoped user id shape: NNNNNN.<32 hex>.NNNN."""
    return f"{secrets.randbelow(10**6):06d}.{secrets.token_hex(16)}.{secrets.randbelow(10**4):04d}"


def new_relay_email() -> str:
    """A Hide-My-Email address, stable for the user within this team."""
    local = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(10))
    return f"{local}@{RELAY_DOMAIN}"


@dataclass
class AppleUser:
    id: str
    email: str
    first_name: str
    last_name: str
    sub: str = field(default_factory=new_sub)
    relay_email: str = field(default_factory=new_relay_email)
    forwarding: bool = True  # relay forwarding (email-enabled / email-disabled)
    # After a team transfer (migration.py): the old team's link, in identity tokens for 60 days.
    transfer_sub: str | None = None
    transfer_until: float = 0.0


@dataclass
class Authorization:
    """Consent of one user for the team's app group: none -> authorized -> revoked."""

    user_id: str
    status: str = "none"
    scopes: frozenset[str] = frozenset()
    share_email: bool = True
    last_client_id: str | None = None

    @property
    def first_time(self) -> bool:
        return self.status != "authorized"


@dataclass
class Code:
    value: str
    client_id: str
    redirect_uri: str | None  # None for native codes
    user_id: str
    nonce: str | None
    issued_at: float
    auth_time: int
    used: bool = False


@dataclass
class Token:
    value: str
    kind: str  # "refresh" or "access"
    client_id: str
    user_id: str | None  # None for client_credentials access tokens
    issued_at: float
    expires_at: float | None = None  # refresh tokens do not expire on a timer
    revoked: bool = False


@dataclass
class ClaimStyle:
    """Switchable claim typing, to pin the historical variants."""

    email_verified: str = "boolean"  # or "string"
    is_private_email: str = "boolean"  # or "string", "omit"
    id_token_lifetime: int = 600


@dataclass
class ForcedFailure:
    status: int | None  # None: only delay, then behave normally
    body: Any
    delay: float = 0.0


class EmulatorState:
    """Everything Apple remembers; callers hold `lock` around read-modify-write sequences."""

    def __init__(self, settings: EmulatorSettings) -> None:
        self.settings = settings
        self.lock = threading.RLock()
        self.keys = KeyRing()
        self.shard = "".join(secrets.choice(string.ascii_lowercase) for _ in range(4))
        self.reset()

    def reset(self) -> None:
        """Forget users, consents, tokens, hooks and the log; keep keys so RP caches stay valid."""
        with self.lock:
            self.users: dict[str, AppleUser] = {}
            self.authorizations: dict[str, Authorization] = {}
            self.codes: dict[str, Code] = {}
            self.tokens: dict[str, Token] = {}
            self.pages: dict[str, dict[str, Any]] = {}
            self.next_logins: deque[dict[str, Any]] = deque()
            self.failures: dict[str, deque[ForcedFailure]] = {e: deque() for e in ENDPOINTS}
            self.requests: list[dict[str, Any]] = []
            self.notifications: list[dict[str, Any]] = []
            self.clock_offset = 0.0
            self.migration: Any = None  # teams and transfers (migration.py), made on first use
            self.claims = ClaimStyle(id_token_lifetime=self.settings.id_token_lifetime)

    def now(self) -> float:
        """Apple's clock: real time plus the test-controlled offset."""
        return time.time() + self.clock_offset

    def add_user(self, email: str, first_name: str = "", last_name: str = "") -> AppleUser:
        with self.lock:
            user = AppleUser(f"u{len(self.users) + 1}-{secrets.token_hex(3)}",
                             email, first_name, last_name)
            self.users[user.id] = user
            return user

    def find_user(self, user_id: str | None = None, sub: str | None = None) -> AppleUser | None:
        with self.lock:
            if user_id is not None:
                return self.users.get(user_id)
            return next((u for u in self.users.values() if u.sub == sub), None)

    def authorization(self, user_id: str) -> Authorization:
        with self.lock:
            return self.authorizations.setdefault(user_id, Authorization(user_id))

    def revoke_user(self, user_id: str) -> None:
        """End consent and invalidate every token, as Apple does on revoke or 'Stop using'."""
        with self.lock:
            self.authorization(user_id).status = "revoked"
            for token in self.tokens.values():
                if token.user_id == user_id:
                    token.revoked = True
            for value in [v for v, c in self.codes.items() if c.user_id == user_id]:
                del self.codes[value]  # "The code has expired or has been revoked."

    def take_failure(self, endpoint: str) -> ForcedFailure | None:
        """Consume the next scripted failure of `endpoint`, if any."""
        with self.lock:
            queue = self.failures.get(endpoint)
            return queue.popleft() if queue else None

    def new_page(self, data: dict[str, Any]) -> str:
        """Register a rendered page; its random token may be submitted once."""
        with self.lock:
            now = time.time()
            for key in [k for k, v in self.pages.items() if v["created"] + PAGE_TTL < now]:
                del self.pages[key]
            token = secrets.token_urlsafe(24)
            self.pages[token] = {**data, "created": now}
            return token

    def take_page(self, token: str) -> dict[str, Any] | None:
        """Pop a page token: a second submission (replay) finds nothing."""
        with self.lock:
            page = self.pages.pop(token, None)
            if page is None or page["created"] + PAGE_TTL < time.time():
                return None
            return page
