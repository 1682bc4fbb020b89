"""In-memory Apple: users, consents, codes and tokens, guarded by one lock per emulator app.

With a state file (`settings.state_file`) what Apple would remember across a restart — users,
consents, refresh tokens, signing keys — is loaded at start, saved after each request and
reloaded when another process changed it (`store.py`).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import sqlite3
import string
import threading
import time
from collections import deque
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from .keys import KeyRing
from .settings import EmulatorSettings
from .store import Records
from .store import StateFile

log = logging.getLogger(__name__)

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
        self.store: StateFile | None = None  # opened at the first request (`sync`)
        self.keys = KeyRing()
        self.shard = "".join(secrets.choice(string.ascii_lowercase) for _ in range(4))
        self.reset()

    # --- the state file -----------------------------------------------------------------------

    def records(self) -> Records:
        """What survives a restart, as (kind, id) -> JSON: users, consents, refresh tokens, keys."""
        with self.lock:
            out: Records = {}
            for user in self.users.values():
                out[("user", user.id)] = _dump(dataclasses.asdict(user))
            for authz in self.authorizations.values():
                body = {**dataclasses.asdict(authz), "scopes": sorted(authz.scopes)}
                out[("consent", authz.user_id)] = _dump(body)
            for token in self.tokens.values():
                if token.kind == "refresh":
                    out[("token", token.value)] = _dump(dataclasses.asdict(token))
            for order, jwk in enumerate(self.keys.private_jwks()):
                out[("key", jwk["kid"])] = _dump({"order": order, "jwk": jwk})
            return out

    def _apply(self, saved: Records) -> None:
        """Take users, consents and refresh tokens from `saved` (keys are read at start)."""
        with self.lock:
            self.users = {}
            self.authorizations = {}
            self.tokens = {v: t for v, t in self.tokens.items() if t.kind != "refresh"}
            for (kind, _key), body in sorted(saved.items()):
                data = json.loads(body)
                if kind == "user":
                    self.users[data["id"]] = AppleUser(**data)
                elif kind == "consent":
                    data["scopes"] = frozenset(data["scopes"])
                    self.authorizations[data["user_id"]] = Authorization(**data)
                elif kind == "token":
                    self.tokens[data["value"]] = Token(**data)

    def sync(self) -> None:
        """Before a request: open the file the first time (an app that is only built, never
        asked, writes nothing), then reload whenever another process saved or reset it."""
        path = self.settings.state_file
        if path is None:
            return
        with self.lock:
            try:
                if self.store is None:
                    self.store = StateFile(path)
                    self._reload()
                    self.persist()  # a new file gets this process's keys
                elif self.store.changed_elsewhere():
                    self._reload()
            except sqlite3.Error as exc:
                log.warning("emulator: cannot read its state file %s: %s", path, exc,
                            extra={"event": "emulator"})

    def _reload(self) -> None:
        assert self.store is not None
        saved = self.store.load()
        self._apply(saved)
        keys = _saved_keys(saved)
        if keys and [k["kid"] for k in keys] != [k.kid for k in self.keys.keys]:
            self.keys = KeyRing.restore(keys)

    def persist(self) -> None:
        """After a request: save what changed (one transaction; a failure is logged, not fatal)."""
        if self.store is None:
            return
        with self.lock:
            try:
                self.store.save(self.records())
            except sqlite3.Error as exc:
                log.warning("emulator: cannot write its state file: %s", exc,
                            extra={"event": "emulator"})

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

    # --- Apple's behaviour --------------------------------------------------------------------

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


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _saved_keys(saved: Records) -> list[dict[str, Any]]:
    """The saved signing keys (private JWKs), oldest first."""
    rows = [json.loads(body) for (kind, _), body in saved.items() if kind == "key"]
    return [row["jwk"] for row in sorted(rows, key=lambda row: row["order"])]
