"""Logging that cannot leak secrets or be forged with control characters.

Every line is one event: its name, its stable short code (`siwa_web/models/events.py`) and the
id of the request it belongs to. In production the lines are JSON objects, one per line; in
development (LOG_FORMAT "text") they are short readable lines instead.
"""
from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

from flask import Flask

from ..models.events import code_for
from . import request_id

SECRET_FIELDS = (
    "code",
    "subject_token",
    "refresh_token",
    "access_token",
    "id_token",
    "client_secret",
    "token",
    "payload",
    "user",
    "user_profile",
    "state",
    "nonce",
)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_PEM = re.compile(r"-----BEGIN [A-Z ]+-----.*?-----END [A-Z ]+-----", re.S)
_FIELD = re.compile(r"\b(" + "|".join(SECRET_FIELDS) + r")=([^&\s]+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# The request line of an access-log record of Werkzeug's server ("GET /healthz HTTP/1.1"),
# possibly wrapped in the ANSI colour codes it adds for statuses other than 200.
_REQUEST_LINE = re.compile(r"^(?:\x1b\[[0-9;]*m)*([A-Z]+) ([^ ?]*)")
_ACCESS_FORMAT = '"%s" %s %s'  # what Werkzeug's `log_request` logs, the request line first
# The usual fields a log call passes in `extra`, in the order a line shows them; any other
# `extra` field follows them.
FIELDS = ("outcome", "reason", "client_id", "user_id", "status", "method", "path", "fp",
          "details")
# What every LogRecord has, and what a line carries under other names: not `extra` fields.
_NOT_EXTRA = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "event", "ref", "taskName"}


def redact(text: str) -> str:
    """Remove JWTs, PEM blocks and secret-named parameters from free text."""
    if "=" not in text and "eyJ" not in text and "-----BEGIN" not in text:
        return text  # none of the patterns can match (most fields: ids, reasons, paths)
    text = _PEM.sub("[REDACTED KEY]", text)
    text = _JWT.sub("[REDACTED JWT]", text)
    return _FIELD.sub(lambda m: f"{m.group(1)}=[REDACTED]", text)


def _clean(value: Any) -> Any:
    """Redact a field's value; dicts (an audit event's details) keep their shape."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, bool | int | float) or value is None:
        return value
    return redact(str(value))


def _access_line(record: logging.LogRecord) -> dict[str, Any] | None:
    """The fields of a Werkzeug access line, without its colours or query string (secrets)."""
    args = record.args
    if not (record.name == "werkzeug" and isinstance(args, tuple) and len(args) == 3
            and isinstance(args[0], str) and _ACCESS_FORMAT in str(record.msg)):
        return None
    match = _REQUEST_LINE.match(args[0])
    method, path = (match.group(1), match.group(2)) if match else ("-", "-")
    status = int(args[1]) if str(args[1]).isdigit() else str(args[1])
    return {"method": method, "path": _ANSI.sub("", path), "status": status}


def event_fields(record: logging.LogRecord) -> dict[str, Any]:
    """Return the event name, its code, the request id and the extra fields of `record`."""
    access = _access_line(record)
    if access is not None:
        event, fields = "http_request", access
        rid = request_id.last_in_thread()
    else:
        event = getattr(record, "event", None) or ("server" if record.name == "werkzeug"
                                                     else "")
        fields = {k: getattr(record, k) for k in FIELDS if hasattr(record, k)}
        fields.update({k: v for k, v in vars(record).items()
                       if k not in _NOT_EXTRA and k not in fields})
        rid = request_id.current()
    outcome = getattr(record, "outcome", "success")
    data: dict[str, Any] = {"code": code_for(event, outcome), "event": event or None}
    if rid is not None:
        data["request_id"] = rid
    data.update({k: _clean(v) for k, v in fields.items()})
    return data


def _message(record: logging.LogRecord, fields: dict[str, Any]) -> str:
    """The line's text: an access line shortened to "GET /path 404" (no query string, no
    colours), anything else redacted and without the colour codes Werkzeug adds."""
    if fields["event"] == "http_request":
        return f"{fields['method']} {fields['path']} {fields['status']}"
    return redact(_ANSI.sub("", record.getMessage()))


class JsonFormatter(logging.Formatter):
    """One JSON object per line; json.dumps escapes CR/LF/ESC, so lines cannot be forged."""

    def format(self, record: logging.LogRecord) -> str:
        fields = event_fields(record)
        data = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": _message(record, fields),
            **fields,
        }
        if record.exc_info:
            data["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(data, ensure_ascii=True, default=str)


class TextFormatter(logging.Formatter):
    """A short readable line for development: time, level, code, message, request id, fields.

    Control characters are escaped as in the JSON lines (a newline shows as \\n), so a hostile
    path or header can neither start a forged line nor send escape sequences to a terminal.
    """

    def format(self, record: logging.LogRecord) -> str:
        fields = event_fields(record)
        message = _message(record, fields).encode("unicode_escape").decode("ascii")
        code = fields.pop("code")
        event = fields.pop("event")
        rid = fields.pop("request_id", None)
        extra = " ".join(f"{k}={json.dumps(v, ensure_ascii=True, default=str)}"
                         for k, v in fields.items()
                         if v is not None and event != "http_request")
        line = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {code:<4} {message}"
        if rid:
            line += f"  [{rid}]"
        if extra:
            line += f"  {extra}"
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        return line


class QuietPaths(logging.Filter):
    """Drops the access-log lines Werkzeug's server writes for a few paths (health probes).

    A load balancer asks every few seconds; a line per probe would bury everything else.
    """

    def __init__(self) -> None:
        super().__init__()
        self.paths: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not (isinstance(args, tuple) and args and isinstance(args[0], str)
                and _ACCESS_FORMAT in str(record.msg)):
            return True
        match = _REQUEST_LINE.match(args[0])
        return match is None or match.group(2) not in self.paths


def quiet_access_log(*paths: str) -> None:
    """Leave requests for `paths` out of the development server's access log (process-wide)."""
    logger = logging.getLogger("werkzeug")
    quiet = next((f for f in logger.filters if isinstance(f, QuietPaths)), None)
    if quiet is None:
        quiet = QuietPaths()
        logger.addFilter(quiet)
    quiet.paths.update(paths)


def init_app(app: Flask) -> None:
    """Send siwa_web and werkzeug logs, one event a line, to stderr (LOG_FORMAT json or text)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if app.config["LOG_FORMAT"] == "text"
                         else JsonFormatter())
    for name in ("siwa_web", "werkzeug"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(app.config["LOG_LEVEL"])
        logger.propagate = True
    request_id.init_app(app)
