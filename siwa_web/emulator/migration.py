"""Apple teams and app transfers (TN3159): subs per team, `transfer_sub`, the 60-day window.

The emulator serves one app group. `settings.team_id` and `settings.client_keys` are the team
that owns it now; each `AppleUser.sub` (and relay address) is the user's id in that team.
Moving the app to another registered team swaps every user's sub and relay address for that
team's (kept per team, so moving back restores them), and for 60 days links old and new with a
`transfer_sub`: the old team obtains it for a sub (`sub` + `target`), the new team trades it
for the new sub, and identity tokens carry it. For those 60 days the old team's credentials
still work for the migration calls, as at Apple.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from .client_auth import ClientSecretError
from .client_auth import authenticate as authenticate_team
from .errors import AppleError
from .state import AppleUser
from .state import EmulatorState
from .state import new_relay_email
from .state import new_sub

WINDOW = 60 * 86400  # how long after a transfer the migration calls and claims work
MIGRATION_CALLS = ("client_credentials",)  # /auth/token grants the old team may still use
INVALID_TRANSFER_SUB = "The transfer_sub is invalid or has expired."


@dataclass(frozen=True)
class Move:
    """One transfer of the app group from a team to another, at Apple's time `at`."""

    from_team: str
    to_team: str
    at: float

    def open(self, now: float) -> bool:
        return self.at <= now <= self.at + WINDOW


@dataclass
class Ledger:
    """Every team Apple knows here and what moved between them."""

    teams: dict[str, dict[str, str]]  # team id -> Key ID -> PEM public key
    parked: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    links: dict[tuple[str, str, str], str] = field(default_factory=dict)  # user, from, to
    moves: list[Move] = field(default_factory=list)

    def link(self, user_id: str, from_team: str, to_team: str) -> str:
        """The stable transfer_sub for one user and one direction."""
        return self.links.setdefault((user_id, from_team, to_team), new_sub())

    def linked(self, transfer_sub: str) -> tuple[str, str, str] | None:
        return next((k for k, v in self.links.items() if v == transfer_sub), None)

    def open_move(self, from_team: str, to_team: str, now: float) -> Move | None:
        return next((m for m in reversed(self.moves) if m.from_team == from_team
                     and m.to_team == to_team and m.open(now)), None)


def ledger(state: EmulatorState) -> Ledger:
    """The state's ledger; the owning team is registered on first use. Caller holds the lock."""
    if state.migration is None:
        settings = state.settings
        state.migration = Ledger(teams={settings.team_id: dict(settings.client_keys)})
    return state.migration


def register_team(state: EmulatorState, team_id: str, client_keys: dict[str, str]) -> None:
    """Another team (the one the app will move to) with its Sign in with Apple keys."""
    with state.lock:
        led = ledger(state)
        if team_id == state.settings.team_id:
            raise ValueError("that team owns the app already")
        led.teams[team_id] = dict(client_keys)


def transfer(state: EmulatorState, to_team: str) -> Move:
    """Move the app group to `to_team`: new subs for everyone, links for its users."""
    with state.lock:
        led = ledger(state)
        from_team, now = state.settings.team_id, state.now()
        if to_team not in led.teams or to_team == from_team:
            raise ValueError("to_team must be another registered team")
        for user in state.users.values():
            _move_user(state, led, user, from_team, to_team, now)
        state.settings.team_id = to_team
        state.settings.client_keys = dict(led.teams[to_team])
        move = Move(from_team, to_team, now)
        led.moves.append(move)
        return move


def _move_user(state: EmulatorState, led: Ledger, user: AppleUser, from_team: str,
               to_team: str, now: float) -> None:
    led.parked[(user.id, from_team)] = (user.sub, user.relay_email)
    user.sub, user.relay_email = led.parked.pop((user.id, to_team), None) or (
        new_sub(), new_relay_email())
    known = user.id in state.authorizations and state.authorizations[user.id].status != "none"
    user.transfer_sub = led.link(user.id, from_team, to_team) if known else None
    user.transfer_until = now + WINDOW if known else 0.0


def authenticate(state: EmulatorState, form: Mapping[str, str], *,
                 migration_call: bool) -> tuple[str, str]:
    """(client_id, team id) of the caller: the owning team, or for a migration call within
    60 days of a transfer, the team the app left."""
    settings = state.settings
    try:
        return authenticate_team(settings, form, state.now()), settings.team_id
    except ClientSecretError:
        if not migration_call:
            raise
        with state.lock:
            led = ledger(state)
            old = [m.from_team for m in reversed(led.moves)
                   if m.to_team == settings.team_id and m.open(state.now())]
            keys = {team: led.teams[team] for team in old}
        for team, client_keys in keys.items():
            former = dataclasses.replace(settings, team_id=team, client_keys=client_keys)
            try:
                return authenticate_team(former, form, state.now()), team
            except ClientSecretError:
                continue
        raise


def user_migration_info(state: EmulatorState, team: str, form: Mapping[str, str]) -> dict:
    """`/auth/usermigrationinfo`: `sub` + `target` -> transfer_sub; transfer_sub -> new sub."""
    with state.lock:
        if form.get("transfer_sub"):
            return _exchange(state, team, form["transfer_sub"])
        if form.get("sub") and form.get("target"):
            return _transfer_sub(state, team, form["sub"], form["target"])
    raise AppleError("invalid_request", "Send sub and target, or transfer_sub.")


def _transfer_sub(state: EmulatorState, team: str, sub: str, target: str) -> dict[str, Any]:
    led = ledger(state)
    if target not in led.teams or target == team:
        raise AppleError("invalid_request", "target is not another team.")
    user = _user_in_team(state, led, team, sub)
    authz = state.authorizations.get(user.id) if user else None
    if user is None or authz is None or authz.status == "none":
        raise AppleError("invalid_request", "sub is not a user of this app.")
    if authz.status != "authorized":
        raise AppleError("invalid_request", "The user has revoked authorization.")
    return {"transfer_sub": led.link(user.id, team, target)}


def _user_in_team(state: EmulatorState, led: Ledger, team: str, sub: str) -> AppleUser | None:
    if team == state.settings.team_id:
        return next((u for u in state.users.values() if u.sub == sub), None)
    return next((state.users[uid] for (uid, t), (s, _) in led.parked.items()
                 if t == team and s == sub and uid in state.users), None)


def _exchange(state: EmulatorState, team: str, transfer_sub: str) -> dict[str, Any]:
    led = ledger(state)
    linked = led.linked(transfer_sub)
    if linked is None or team != state.settings.team_id:
        raise AppleError("invalid_request", INVALID_TRANSFER_SUB)
    user_id, from_team, to_team = linked
    if to_team != team or led.open_move(from_team, to_team, state.now()) is None:
        raise AppleError("invalid_request", INVALID_TRANSFER_SUB)
    user = state.users[user_id]
    authz = state.authorization(user_id)
    answer: dict[str, Any] = {"sub": user.sub}
    if "email" in authz.scopes:
        answer["email"] = user.email if authz.share_email else user.relay_email
        answer["is_private_email"] = not authz.share_email
    return answer


def check_bearer(state: EmulatorState, header: str | None, client_id: str) -> None:
    """A live access token of this client (client_credentials or a user's) must come along."""
    scheme, _, value = (header or "").partition(" ")
    with state.lock:
        token = state.tokens.get(value.strip()) if scheme.lower() == "bearer" else None
        ok = (token is not None and token.kind == "access" and not token.revoked
              and token.client_id == client_id
              and (token.expires_at is None or state.now() < token.expires_at))
    if not ok:
        raise AppleError("invalid_request", "A valid access token is required.")
