"""The log: one event a line, with its code and the request id, and never a secret."""
from __future__ import annotations

import io
import json
import logging

import pytest

from siwa_web import create_app
from siwa_web.config import ConfigError
from siwa_web.infra import request_id
from siwa_web.infra.extensions import db
from siwa_web.infra.logs import JsonFormatter
from siwa_web.infra.logs import TextFormatter
from siwa_web.users import audit

JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIwMDExMTEifQ.c2lnbmF0dXJlLXBhcnQ"
PEM = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----"
ID_RE = r"[0-9A-F]{12}"


def _record(msg: str, *args, name: str = "siwa_web.test", level: int = logging.INFO,
            **extra) -> logging.LogRecord:
    record = logging.LogRecord(name, level, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def _json(record: logging.LogRecord) -> dict:
    line = JsonFormatter().format(record)
    assert "\n" not in line and "\r" not in line
    return json.loads(line)


# --- the JSON line ------------------------------------------------------------------------------


def test_a_line_carries_the_event_its_code_and_its_fields():
    data = _json(_record("refused: %s", "bad", event="native_exchange", outcome="failure",
                         reason="apple_invalid_grant", client_id="cli-1"))
    assert data["code"] == "fx" and data["event"] == "native_exchange"
    assert (data["outcome"], data["reason"], data["client_id"]) == (
        "failure", "apple_invalid_grant", "cli-1")
    assert "request_id" not in data  # outside a request there is none


@pytest.mark.parametrize("field", ["reason", "client_id", "path", "details", "message"])
def test_secrets_are_redacted_in_every_field(field):
    hostile = f"x code=abc123 refresh_token=rt-456 {JWT} {PEM}"
    value = {"nested": hostile} if field == "details" else hostile
    record = (_record(hostile.replace("%", "%%"), event="crash") if field == "message"
              else _record("m", event="crash", **{field: value}))
    line = JsonFormatter().format(record)
    text = TextFormatter().format(record)
    for out in (line, text):
        assert "abc123" not in out and "rt-456" not in out
        assert JWT not in out and "MIGHAgEAMBMGByqGSM49" not in out
    assert "[REDACTED JWT]" in line and "code=[REDACTED]" in line


def test_other_extra_fields_are_kept_and_redacted():
    data = _json(_record("apple transfer export finished", event="apple_transfer", done=3,
                         stopped=False, note=f"id_token={JWT}"))
    assert (data["code"], data["done"], data["stopped"]) == ("atr", 3, False)
    assert JWT not in json.dumps(data) and "[REDACTED]" in data["note"]
    assert "ref" not in data and "args" not in data and "exc_info" not in data


def test_control_characters_cannot_forge_lines():
    record = _record("refused: %s", "x\r\nINFO forged \x1b[31mred", event="logout_refused",
                     reason="a\nb")
    for out in (JsonFormatter().format(record), TextFormatter().format(record)):
        assert "\n" not in out and "\r" not in out and "\x1b" not in out


def _access_record(status: str) -> logging.LogRecord:
    """What Werkzeug's `log_request` logs, a coloured request line with a query string."""
    line = "\x1b[33mGET /dashboard?code=abc123&x=1 HTTP/1.1\x1b[0m"
    return _record('127.0.0.1 - - [07/Dec/2026 10:00:00] "%s" %s %s', line, status, "-",
                   name="werkzeug")


def test_the_dev_servers_access_line_is_a_proper_event_without_colours():
    data = _json(_access_record("404"))
    assert (data["code"], data["event"]) == ("req", "http_request")
    assert (data["method"], data["path"], data["status"]) == ("GET", "/dashboard", 404)
    assert data["message"] == "GET /dashboard 404"
    assert "\x1b" not in json.dumps(data) and "\\u001b" not in json.dumps(data)
    assert "abc123" not in json.dumps(data)


def test_werkzeugs_other_lines_have_a_code_too():
    assert _json(_record(" * Running on http://127.0.0.1:5000", name="werkzeug"))["code"] == "srv"


def test_text_lines_are_short_and_readable(monkeypatch):
    # an access line carries the id of the thread's latest request: none served here
    monkeypatch.setattr(request_id._last, "value", None, raising=False)
    line = TextFormatter().format(_record("ready again", event="readiness_restored"))
    assert line.split()[1:4] == ["INFO", "rdy", "ready"]
    access = TextFormatter().format(_access_record("404"))
    assert access.split(None, 3)[1:] == ["INFO", "req", "GET /dashboard 404"]
    server = TextFormatter().format(_record("\x1b[33mPress CTRL+C to quit\x1b[0m",
                                            name="werkzeug"))
    assert server.endswith(" srv  Press CTRL+C to quit")


# --- LOG_FORMAT ----------------------------------------------------------------------------------


def _formatter(app) -> logging.Formatter:
    return logging.getLogger("siwa_web").handlers[0].formatter


def test_development_logs_text_unless_told_json(app_config):
    assert isinstance(_formatter(create_app(app_config)), TextFormatter)
    assert create_app({**app_config, "LOG_FORMAT": "json"}).config["LOG_FORMAT"] == "json"
    assert isinstance(_formatter(None), JsonFormatter)
    debug = create_app({**app_config, "ENV": "production", "DEBUG": True,
                        "TOKEN_ENCRYPTION_KEYS": ["x" * 43 + "="], "ISSUER": "https://siwa.test"})
    assert debug.config["LOG_FORMAT"] == "text"


def test_a_bad_log_format_stops_start_up(app_config):
    with pytest.raises(ConfigError, match="SIWA_LOG_FORMAT"):
        create_app({**app_config, "LOG_FORMAT": "xml"})


# --- the request id ------------------------------------------------------------------------------


def test_each_answer_has_a_request_id_and_error_pages_quote_it(client, caplog, nothing_stored):
    with caplog.at_level(logging.INFO, logger="siwa_web"):
        resp = client.get("/no-such-page")
    rid = resp.headers["X-Request-ID"]
    assert resp.status_code == 404 and len(rid) == 12 and rid.isalnum() and rid.upper() == rid
    assert f"Reference: <code>{rid}</code>" in resp.get_data(as_text=True)
    [line] = [r for r in caplog.records if getattr(r, "event", None) == "http_error"]
    assert _json(line)["code"] == "he"
    assert client.get("/no-such-page").headers["X-Request-ID"] != rid


def test_json_errors_carry_it_too(client):
    resp = client.post("/oauth/token", data={})
    assert resp.status_code == 400 and len(resp.headers["X-Request-ID"]) == 12


def test_a_trusted_proxys_well_formed_id_is_kept(app_config):
    client = create_app({**app_config, "TRUST_PROXY_HOPS": 1}).test_client()
    for good in ("3f2a9c1e-7d4b-4b7e-9a0e-2c1d5e6f7a8b", "req.42:edge-1", "A" * 64):
        resp = client.get("/no-such-page", headers={"X-Request-ID": good})
        assert resp.headers["X-Request-ID"] == good
        assert f"Reference: <code>{good}</code>" in resp.get_data(as_text=True)


HOSTILE_IDS = {
    "too long": "A" * 65,
    "newline": "abc\r\nSet-Cookie: x=1",
    "non-ascii": "réf-123",
    "space": "abc def",
    "quote and markup": '"><script>alert(1)</script>',
    "empty": "",
    "leading dash": "-abc",
}


@pytest.mark.parametrize("value", HOSTILE_IDS.values(), ids=HOSTILE_IDS.keys())
def test_a_hostile_incoming_id_is_replaced(app_config, value, nothing_stored):
    app = create_app({**app_config, "TRUST_PROXY_HOPS": 1})
    resp = app.test_client().get("/no-such-page",
                                 environ_overrides={"HTTP_X_REQUEST_ID": value})
    rid = resp.headers["X-Request-ID"]
    assert resp.status_code == 404 and rid != value
    assert len(rid) == 12 and rid.isalnum()
    assert f"Reference: <code>{rid}</code>" in resp.get_data(as_text=True)
    assert "script" not in rid and "Set-Cookie" not in resp.headers


def test_without_a_trusted_proxy_an_incoming_id_is_ignored(client, nothing_stored):
    resp = client.get("/no-such-page", headers={"X-Request-ID": "proxy-chosen-id"})
    assert resp.headers["X-Request-ID"] != "proxy-chosen-id"


# --- audit events in the log ---------------------------------------------------------------------


def test_audit_events_are_logged_once_committed_and_not_when_rolled_back(app, caplog):
    with caplog.at_level(logging.INFO, logger="siwa_web.audit"), app.app_context():
        audit.record("session_revoked", user_id="u-1", details={"session": "s-1"})
        db.session.rollback()
        assert caplog.records == []
        audit.record("family_revoked", user_id="u-1", client_id="cli-1")
        assert caplog.records == []  # not before the commit
        db.session.commit()
    [line] = caplog.records
    data = _json(line)
    assert (data["code"], data["event"], data["user_id"]) == ("ao", "family_revoked", "u-1")


# --- the favicon ---------------------------------------------------------------------------------


def test_favicon_is_answered_quietly(client, caplog, nothing_stored):
    with caplog.at_level(logging.DEBUG, logger="siwa_web"):
        resp = client.get("/favicon.ico")
    assert resp.status_code == 204 and resp.data == b""
    assert [r for r in caplog.records if r.name.startswith("siwa_web")] == []
    page = client.get("/auth/login").get_data(as_text=True)
    assert 'rel="icon" href="/static/favicon.svg"' in page
    assert client.get("/static/favicon.svg").status_code == 200


def test_a_renewal_over_http_logs_one_rt_line_with_the_answers_request_id(app, fake_apple):
    from support.dashboard import app_sign_in
    from support.dashboard import refresh

    tokens = app_sign_in(app, fake_apple)
    out = io.StringIO()
    handler = logging.StreamHandler(out)  # formats as it is written, as the real one does
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("siwa_web")
    logger.addHandler(handler)
    try:
        resp = refresh(app, tokens)
    finally:
        logger.removeHandler(handler)
    assert resp.status_code == 200
    lines = [json.loads(text) for text in out.getvalue().splitlines()]
    [line] = [data for data in lines if data["event"] == "refresh"]
    assert (line["code"], line["outcome"]) == ("rt", "success")
    assert line["request_id"] == resp.headers["X-Request-ID"]
    assert line["details"]["family_id"]
    assert resp.get_json()["refresh_token"] not in json.dumps(line)
