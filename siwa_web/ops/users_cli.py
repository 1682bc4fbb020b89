"""`flask users find|show|sign-out|disable|enable|delete`: support's commands for one account.

Every command prints text, or one JSON document with `--json`; refuses bad input with a message
that names the problem and a non-zero exit (2: the command line is wrong; 1: no such user, or
nothing found); and writes an `operator_*` audit event saying what it did and which
operating-system user ran it (`SUDO_USER`, else the login name: a hint, not proof). The
account's owner sees those events in their activity list. Text from the database is printed
with control characters replaced, so a name or user agent cannot drive the terminal.

Changes go the same ways as the dashboard's: `end_web_sessions` and `revoke_user_families` end
sessions (web apps signed in through an ended session hear of it by back-channel logout, sent
before the command returns), `lifecycle.revocations.delete_account` deletes, and
`users.disabled_at` is what sign-in, token exchange, refresh and every Bearer check already
refuse (signalled to every worker's liveness cache on commit).
"""
from __future__ import annotations

import getpass
import json
import os
from collections.abc import Callable
from typing import Any

import click
from flask import Flask
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import update

from ..infra.extensions import db
from ..lifecycle import revocations
from ..models import User
from ..models.base import now_utc
from ..oauth.refresh import revoke_user_families
from ..users import audit
from ..users.deletion import Removed
from ..users.sign_out import end_web_sessions
from . import lookup

users_cli = AppGroup(
    "users", help="""Support: find an account, look at it, sign it out, disable, enable or
delete it.

Every command reads SQLALCHEMY_DATABASE_URI and writes an operator_* audit event. sign-out and
delete tell web apps by back-channel logout (BACKCHANNEL_LOGOUT_CONNECT_TIMEOUT / _READ_TIMEOUT);
delete asks Apple to revoke its tokens (APPLE_BASE_URL, APPLE_TEAM_ID, APPLE_KEY_ID,
APPLE_PRIVATE_KEY, TOKEN_ENCRYPTION_KEYS). Exit 2: the command line is wrong; 1: no such user.
""")
SIGNED_OUT = "signed out by support"  # revoked_reason of the sessions `sign-out` ends
ID_MAX = 36

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print one JSON document instead of text.")


# --- helpers -------------------------------------------------------------------------------------


def _printable(value: object, limit: int = 200) -> str:
    """Text safe on a terminal: control characters (escape sequences) become "?"."""
    text = "" if value is None else str(value)
    return "".join(ch if ch.isprintable() else "?" for ch in text[:limit])


def _when(iso: str | None) -> str:
    """"2025-06-01 09:12 UTC" from an ISO timestamp in UTC."""
    return f"{iso[:16].replace('T', ' ')} UTC" if iso else "never"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _operator() -> str:
    """Who ran the command, as the operating system says (never a secret)."""
    name = os.environ.get("SUDO_USER")
    if not name:
        try:
            name = getpass.getuser()
        except Exception:  # noqa: BLE001 - no login name (a container without /etc/passwd)
            name = None
    return _printable(name or "unknown", 64)


def _record(event: str, user_id: str | None, details: dict[str, Any]) -> None:
    """Add the operator event to the current transaction."""
    audit.record(event, user_id=user_id, details={**details, "operator": _operator()})


def _target(user_id: str, event: str) -> User:
    """The user named on the command line; an unknown id is refused (and audited as refused)."""
    wanted = user_id.strip()
    if not wanted:
        raise click.UsageError("ID is empty: give a user id (flask users find prints them)")
    user = db.session.get(User, wanted) if len(wanted) <= ID_MAX else None
    if user is None:
        shown = _printable(wanted, 64)
        audit.record_failure(event, "unknown user",
                             details={"target": shown, "operator": _operator()})
        raise click.ClickException(
            f"unknown user id {shown!r}: no user has it (find one with flask users find)")
    return user


def _deliver_before_exit() -> None:
    """Send web apps' back-channel logouts in this process, right after the commit.

    A request hands them to a background thread; a command's process ends with the command,
    which would cut that thread short (the outbox would keep the rows for `flask outbox retry`).
    """
    current_app.config["BACKCHANNEL_LOGOUT_DELIVERY"] = "inline"


def _emit(as_json: bool, data: Any, text: Callable[[], str]) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else text())


def _name(summary: dict[str, Any]) -> str:
    name = " ".join(p for p in (summary["first_name"], summary["last_name"]) if p)
    return _printable(name) if name else "(no name)"


def _summary_line(summary: dict[str, Any]) -> str:
    status = summary["status"]
    if summary["disabled_at"]:
        status += f" since {_when(summary['disabled_at'])}"
    return (f"{summary['id']}  {_name(summary)}  {_printable(summary['email'] or '-')}  "
            f"{status}, {_plural(summary['apple_ids'], 'Apple ID')}, "
            f"created {_when(summary['created_at'])}")


def _ended(counts: dict[str, int]) -> str:
    parts = []
    if "web_sessions" in counts:
        parts.append(_plural(counts["web_sessions"], "web session"))
    if "app_sessions" in counts:
        parts.append(_plural(counts["app_sessions"], "app session"))
    return " and ".join(parts) + " ended"


# --- find, show ----------------------------------------------------------------------------------


@users_cli.command("find")
@click.option("--email", help="An email address: the profile's or an Apple ID's, in any case.")
@click.option("--sub", help="An Apple user id (`sub`), exactly.")
@click.option("--id", "user_id", help="A siwa-web user id.")
@json_option
def find_command(email: str | None, sub: str | None, user_id: str | None,
                 as_json: bool) -> None:
    """Find accounts by --email, --sub or --id.

    Give exactly one. Exits 1 when no account matches. Reads SQLALCHEMY_DATABASE_URI.
    """
    given = [(option, value) for option, value in
             (("--email", email), ("--sub", sub), ("--id", user_id)) if value is not None]
    if not given:
        raise click.UsageError("nothing selected: give one of --email, --sub or --id")
    if len(given) > 1:
        raise click.UsageError(
            f"conflicting options: {' and '.join(o for o, _ in given)}; give only one")
    [(option, value)] = given
    value = value.strip()
    if not value:
        raise click.UsageError(f"{option} is empty")
    if option == "--email" and "@" not in value:
        raise click.UsageError(f"--email {_printable(value, 64)!r} is not an email address")
    finder = {"--email": lookup.find_by_email, "--sub": lookup.find_by_sub,
              "--id": lookup.find_by_id}[option]
    users = finder(value)
    by = option[2:]
    for user in users:
        _record("operator_find", user.id, {"by": by})
    if not users:
        _record("operator_find", None, {"by": by, "found": 0})
    db.session.commit()
    found = [lookup.summary(user) for user in users]

    def text() -> str:
        if not found:
            return f"No user found by {by}."
        more = " (the first ones; narrow the search)" if len(found) == lookup.FIND_LIMIT else ""
        lines = [f"{_plural(len(found), 'user')} found{more}:"]
        return "\n".join(lines + [_summary_line(s) for s in found])

    _emit(as_json, found, text)
    if not found:
        raise SystemExit(1)


@users_cli.command("show")
@click.argument("user_id", metavar="ID")
@json_option
def show_command(user_id: str, as_json: bool) -> None:
    """Show an account's Apple IDs, sessions and activity.

    Its Apple IDs, web and app sessions not signed out, last activity and ten latest events.
    Reads SQLALCHEMY_DATABASE_URI and the session limits (SESSION_IDLE_TIMEOUT,
    SESSION_ABSOLUTE_TIMEOUT, REFRESH_TOKEN_IDLE_TTL) to tell live sessions from expired ones.
    """
    user = _target(user_id, "operator_show")
    data = lookup.details(user)
    _record("operator_show", user.id, {})
    db.session.commit()
    _emit(as_json, data, lambda: _show_text(data))


def _show_text(data: dict[str, Any]) -> str:
    user = data["user"]
    email = _printable(user["email"] or "none")
    flags = [f for f, on in (("verified", user["email_verified"]),
                             ("private relay", user["is_private_email"])) if on]
    status = user["status"] + (f" since {_when(user['disabled_at'])}" if user["disabled_at"]
                               else "")
    last = data["last_activity"]
    lines = [
        f"User {user['id']}",
        f"  Name           {_name(user)}",
        f"  Email          {email}" + (f" ({', '.join(flags)})" if flags else ""),
        f"  Status         {status}",
        f"  Created        {_when(user['created_at'])}",
        "  Last activity  " + (f"{_when(last['at'])} ({_printable(last['what'])})" if last
                               else "none"),
        f"Apple IDs ({len(data['identities'])})",
    ]
    for i in data["identities"]:
        held = [t["client_id"] for t in i["apple_tokens"] if t["held"]]
        lines.append(f"  {_printable(i['sub'])}  {_printable(i['email'] or '-')}  linked "
                     f"{_when(i['created_at'])}, last used {_when(i['last_used_at'])}"
                     + (f", Apple token for {_printable(', '.join(held))}" if held else ""))
    lines += _sessions("Web sessions", data["web_sessions"], lambda s: (
        f"signed in {_when(s['created_at'])}, last seen {_when(s['last_seen_at'])}, "
        f"IP {_printable(s['ip'] or '-')}, {_printable(s['user_agent'] or 'no user agent', 80)}"))
    lines += _sessions("App sessions", data["app_sessions"], lambda s: (
        f"{_printable(s['client_name'])} ({_printable(s['client_id'])}), "
        f"scope {_printable(s['scope'])}, started {_when(s['created_at'])}, "
        f"last used {_when(s['last_used_at'])}, IP {_printable(s['ip'] or '-')}"))
    lines.append(f"Recent events (last {lookup.RECENT_EVENTS})")
    lines += [f"  {_when(e['at'])}  {e['code']:<4} {_printable(e['event'])}  {e['outcome']}"
              + (f" ({_printable(e['reason'])})" if e["reason"] else "")
              for e in data["recent_events"]] or ["  none"]
    return "\n".join(lines)


def _sessions(title: str, rows: list[dict[str, Any]],
              describe: Callable[[dict[str, Any]], str]) -> list[str]:
    live = sum(1 for row in rows if row["live"])
    lines = [f"{title} ({live} live, {len(rows) - live} expired)"]
    lines += [f"  {row['id']}  {'' if row['live'] else '[expired] '}{describe(row)}"
              for row in rows] or ["  none"]
    return lines


# --- sign-out, disable, enable, delete ----------------------------------------------------------


@users_cli.command("sign-out")
@click.argument("user_id", metavar="ID")
@click.option("--web", is_flag=True, help="End the web sessions (browsers).")
@click.option("--apps", is_flag=True, help="End the app sessions (refresh-token families).")
@json_option
def sign_out_command(user_id: str, web: bool, apps: bool, as_json: bool) -> None:
    """End an account's sessions at once.

    Web and app sessions, unless --web or --apps names one kind. Reads
    SQLALCHEMY_DATABASE_URI; web apps signed in through an ended session are told by back-channel
    logout (BACKCHANNEL_LOGOUT_CONNECT_TIMEOUT, BACKCHANNEL_LOGOUT_READ_TIMEOUT).
    """
    if not (web or apps):
        web = apps = True
    user = _target(user_id, "operator_sign_out")
    _deliver_before_exit()
    ended: dict[str, int] = {}
    if web:
        ended["web_sessions"] = end_web_sessions(user.id, SIGNED_OUT)
    if apps:
        ended["app_sessions"] = revoke_user_families(db.session, user.id, SIGNED_OUT)
    _record("operator_sign_out", user.id, ended)
    db.session.commit()
    _emit(as_json, {"user_id": user.id, **ended},
          lambda: f"Signed out user {user.id}: {_ended(ended)}.")


@users_cli.command("disable")
@click.argument("user_id", metavar="ID")
@json_option
def disable_command(user_id: str, as_json: bool) -> None:
    """Stop an account from being used, until enable.

    No sign-in, token exchange or refresh; its sessions and access tokens are refused.
    Reads SQLALCHEMY_DATABASE_URI.
    """
    user = _target(user_id, "operator_disable")
    changed = db.session.execute(
        update(User).where(User.id == user.id, User.disabled_at.is_(None))
        .values(disabled_at=now_utc())
    ).rowcount == 1
    _record("operator_disable", user.id, {"changed": changed})
    db.session.commit()
    db.session.refresh(user)
    since = lookup.iso(user.disabled_at)

    def text() -> str:
        if not changed:
            return f"User {user.id} was already disabled (since {_when(since)}); nothing changed."
        return (f"Disabled user {user.id}: it cannot sign in on the web or in apps, and its "
                "sessions and tokens are refused until `flask users enable`. To end them for "
                "good, run `flask users sign-out` too.")

    _emit(as_json, {"user_id": user.id, "status": "disabled", "changed": changed,
                    "disabled_at": since}, text)


@users_cli.command("enable")
@click.argument("user_id", metavar="ID")
@json_option
def enable_command(user_id: str, as_json: bool) -> None:
    """Let a disabled account be used again.

    It can sign in, and its sessions that have not expired work again. Reads
    SQLALCHEMY_DATABASE_URI.
    """
    user = _target(user_id, "operator_enable")
    changed = db.session.execute(
        update(User).where(User.id == user.id, User.disabled_at.is_not(None))
        .values(disabled_at=None)
    ).rowcount == 1
    _record("operator_enable", user.id, {"changed": changed})
    db.session.commit()
    apple_ids = lookup.summary(user)["apple_ids"]

    def text() -> str:
        if not changed:
            return f"User {user.id} was not disabled; nothing changed."
        note = "" if apple_ids else (" It has no Apple ID linked, so nobody can sign in to it "
                                     "(Apple said the last one was deleted).")
        return (f"Enabled user {user.id}: it can sign in again, and its sessions that have not "
                f"expired work again.{note}")

    _emit(as_json, {"user_id": user.id, "status": "active", "changed": changed,
                    "apple_ids": apple_ids}, text)


@users_cli.command("delete")
@click.argument("user_id", metavar="ID")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def delete_command(user_id: str, yes: bool, as_json: bool) -> None:
    """Delete an account, as its owner can.

    The dashboard's deletion: every session ends, the rows go in one transaction, and Apple
    is asked to revoke its tokens afterwards. Asks first unless --yes. Reads
    SQLALCHEMY_DATABASE_URI, TOKEN_ENCRYPTION_KEYS and the Apple settings (APPLE_BASE_URL,
    APPLE_TEAM_ID, APPLE_KEY_ID, APPLE_PRIVATE_KEY); revocations Apple does not take are kept
    for `flask outbox retry`.
    """
    user = _target(user_id, "operator_delete")
    summary = lookup.summary(user)
    db.session.commit()  # no transaction stays open while the prompt waits
    if not yes:
        who = _name(summary) if summary["first_name"] or summary["last_name"] else \
            _printable(summary["email"] or "no name")
        click.confirm(
            f"Delete user {user.id} ({who}, {_plural(summary['apple_ids'], 'Apple ID')}) and "
            "every session of it? This cannot be undone.", abort=True, err=True)

    def record(removed: Removed) -> None:
        _record("operator_delete", user.id, {
            "web_sessions": removed.web_sessions, "app_sessions": removed.app_sessions,
            "apple_revocations": len(removed.revocation_ids)})

    _deliver_before_exit()
    try:
        removed, report = revocations.delete_account(user.id, record=record)
    except LookupError:
        raise click.ClickException(
            f"user {user.id} was deleted meanwhile (by someone else); nothing changed") from None
    queued = len(removed.revocation_ids)
    pending = queued - report.sent
    ended = {"web_sessions": removed.web_sessions, "app_sessions": removed.app_sessions}

    def text() -> str:
        apple = (f"{_plural(queued, 'Apple token')} revoked at Apple" if queued and not pending
                 else "no Apple token was stored" if not queued
                 else f"{pending} of {_plural(queued, 'Apple token')} not revoked yet: "
                      "`flask apple retry-revocations` keeps trying")
        return f"Deleted user {user.id}: {_ended(ended)}; {apple}."

    _emit(as_json, {"user_id": user.id, "deleted": True, **ended,
                    "apple_revocations": {"queued": queued, "sent": report.sent,
                                          "pending": pending}}, text)


def init_app(app: Flask) -> None:
    app.cli.add_command(users_cli)
