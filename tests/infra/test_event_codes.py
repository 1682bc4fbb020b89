"""Every event siwa-web emits has a stable code, and docs/operations.md lists exactly the table.

The emit sites are found by reading the source (ast): a log call or an audit call whose event is
not in `models/events.py` fails here, as does an event name computed in a place this test does
not know how to enumerate.
"""
from __future__ import annotations

import ast
import re

import pytest

from siwa_web import ROOT
from siwa_web.lifecycle.backchannel import BACKCHANNEL_LOGOUTS
from siwa_web.lifecycle.notifications import HANDLERS
from siwa_web.lifecycle.notifications import _email_forwarding
from siwa_web.lifecycle.revocations import APPLE_REVOCATIONS
from siwa_web.models.events import BOTH
from siwa_web.models.events import EVENTS
from siwa_web.models.events import LOG
from siwa_web.models.events import code_for
from siwa_web.oauth.grants.authorization_code import AuthorizationCodeGrant
from siwa_web.oauth.grants.refresh_token import RefreshTokenGrant
from siwa_web.oauth.grants.token_exchange import TokenExchangeGrant
from siwa_web.users.transfer import AUDIT_EVENT as TRANSFER_EVENT
from siwa_web.web.failures import FAILURES

PACKAGE = ROOT / "siwa_web"
LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical", "log"}
AUDIT_FUNCTIONS = {"record", "record_now", "record_failure"}  # of `audit` or `self.audit`
AUDIT_WRAPPERS = {"_record", "_record_failure"}  # a module's own helpers around them
GRANT_EVENTS = {g.AUDIT_EVENT for g in (AuthorizationCodeGrant, RefreshTokenGrant,
                                        TokenExchangeGrant)}
OUTBOX_EVENTS = {f"{o.event}_{end}" for o in (BACKCHANNEL_LOGOUTS, APPLE_REVOCATIONS)
                 for end in ("sent", "failed")}
# Event names computed at run time, by file and expression, and every value each can take.
DYNAMIC = {
    ("oauth/server.py", "grant.AUDIT_EVENT"): GRANT_EVENTS,
    ("oauth/server.py", "event"): GRANT_EVENTS | {"token_revoked"},
    ("oauth/grants/authorization_code.py", "self.AUDIT_EVENT"): GRANT_EVENTS,
    ("oauth/grants/refresh_token.py", "self.AUDIT_EVENT"): GRANT_EVENTS,
    ("oauth/grants/token_exchange.py", "self.AUDIT_EVENT"): GRANT_EVENTS,
    ("lifecycle/outbox.py", "f'{self.event}_sent'"): OUTBOX_EVENTS,
    ("lifecycle/outbox.py", "f'{self.event}_failed'"): OUTBOX_EVENTS,
    ("lifecycle/notifications.py", "f\"apple_{event.type.replace('-', '_')}\""): {
        f"apple_{t.replace('-', '_')}" for t, h in HANDLERS.items() if h is _email_forwarding},
    ("web/views.py", "failure.alert_event"): {f.alert_event for f in FAILURES if f.alert},
    # `_record(event, ...)` and `_target(user_id, event)` pass on their callers' literals
    ("ops/users_cli.py", "event"): set(),
    ("users/transfer.py", "AUDIT_EVENT"): {TRANSFER_EVENT},
    # the line an audit event makes once committed: any audit event
    ("users/audit.py", "values['event']"): {n for n, e in EVENTS.items() if e.shows == BOTH},
}
# Events written by Werkzeug's server, not by a call in siwa_web.
EXTERNAL = {"http_request", "server"}


def _emit_sites() -> list[tuple[str, int, ast.expr]]:
    """Every (file, line, event expression) of a log call or an audit call in siwa_web."""
    sites = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            owner = ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""
            if name in LOG_METHODS and owner.split(".")[-1] in ("log", "logger"):
                extra = next((k.value for k in node.keywords if k.arg == "extra"), None)
                event = None
                if isinstance(extra, ast.Dict):
                    event = next((v for k, v in zip(extra.keys, extra.values, strict=True)
                                  if isinstance(k, ast.Constant) and k.value == "event"), None)
                sites.append((rel, node.lineno, event))
            elif node.args and (name in AUDIT_WRAPPERS or (
                    name in AUDIT_FUNCTIONS and owner.split(".")[-1] == "audit")):
                sites.append((rel, node.lineno, node.args[0]))
            elif name == "_target" and rel == "ops/users_cli.py" and len(node.args) == 2:
                sites.append((rel, node.lineno, node.args[1]))
    return sites


SITES = _emit_sites()


def _emitted() -> set[str]:
    names = set()
    for rel, _line, expr in SITES:
        if rel == "users/audit.py":  # logs what was recorded elsewhere: proves nothing here
            continue
        if isinstance(expr, ast.Constant):
            names.add(expr.value)
        elif expr is not None:
            names |= DYNAMIC.get((rel, ast.unparse(expr)), set())
    return names


def test_the_search_finds_the_emit_sites():
    """The walk sees both kinds of call (a broken walk would pass everything below)."""
    found = {(rel, ast.unparse(e) if e is not None else None) for rel, _, e in SITES}
    assert ("web/views.py", "'web_logout'") in found
    assert ("ops/health.py", "'readiness_lost'") in found
    assert ("oauth/server.py", "grant.AUDIT_EVENT") in found
    assert len(SITES) > 60


@pytest.mark.parametrize("site", SITES, ids=[f"{r}:{n}" for r, n, _ in SITES])
def test_every_emit_site_names_an_event_with_a_code(site):
    rel, line, expr = site
    assert expr is not None, f"{rel}:{line} logs without extra={{'event': ...}}"
    if isinstance(expr, ast.Constant):
        assert expr.value in EVENTS, f"{rel}:{line}: {expr.value!r} has no code"
        return
    key = (rel, ast.unparse(expr))
    assert key in DYNAMIC, f"{rel}:{line}: event {key[1]} is computed; list its values here"
    assert DYNAMIC[key] <= set(EVENTS), f"{rel}:{line}: {DYNAMIC[key] - set(EVENTS)} lack codes"


def test_every_event_in_the_table_is_emitted():
    """No stale rows: each event in the table is written somewhere."""
    assert set(EVENTS) - _emitted() - EXTERNAL == set()


def test_codes_are_short_unique_and_stable_in_form():
    codes = [c for e in EVENTS.values() for c in (e.code, e.failure) if c]
    assert len(codes) == len(set(codes))
    assert all(re.fullmatch(r"[a-z]{1,4}", c) for c in codes)
    assert all(e.code or e.failure for e in EVENTS.values())
    # the first codes operators learn
    assert (code_for("web_login"), code_for("web_login", "failure")) == ("s", "f")
    assert (code_for("native_exchange"), code_for("native_exchange", "failure")) == ("sx", "fx")
    assert code_for("refresh") == "rt"
    assert code_for("no_such_event") == "?"


def _documented() -> dict[str, tuple[str, str, str]]:
    """The rows of docs/operations.md's code table: event -> (code, failure code, shows)."""
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("### Event codes", 1)[1].split("\n#", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[2].startswith("`"):
            code, failure, event, _meaning, _fields, shows = cells
            rows[event.strip("`")] = (code.strip("`"), failure.strip("`"), shows)
    return rows


SHOWN = {BOTH: "activity + log", LOG: "log"}


def test_the_docs_list_exactly_the_table():
    expected = {name: (e.code or "—", e.failure or "—", SHOWN[e.shows])
                for name, e in EVENTS.items()}
    assert _documented() == expected
