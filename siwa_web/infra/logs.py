"""Logging that cannot leak secrets or be forged with control characters."""
from __future__ import annotations

import json
import logging
import re
import sys

from flask import Flask

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
# The request line of an access-log record of Werkzeug's server ("GET /healthz HTTP/1.1"),
# possibly wrapped in the ANSI colour codes it adds for statuses other than 200.
_REQUEST_LINE = re.compile(r"^(?:\x1b\[[0-9;]*m)*[A-Z]+ ([^ ?]*)")
_ACCESS_FORMAT = '"%s" %s %s'  # what Werkzeug's `log_request` logs, the request line first


def redact(text: str) -> str:
    """Remove JWTs, PEM blocks and secret-named parameters from free text."""
    text = _PEM.sub("[REDACTED KEY]", text)
    text = _JWT.sub("[REDACTED JWT]", text)
    return _FIELD.sub(lambda m: f"{m.group(1)}=[REDACTED]", text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; json.dumps escapes CR/LF/ESC, so lines cannot be forged."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key in ("ref", "event", "reason", "client_id", "user_id", "fp"):
            if hasattr(record, key):
                data[key] = redact(str(getattr(record, key)))
        if record.exc_info:
            data["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(data, ensure_ascii=True)


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
        return match is None or match.group(1) not in self.paths


def quiet_access_log(*paths: str) -> None:
    """Leave requests for `paths` out of the development server's access log (process-wide)."""
    logger = logging.getLogger("werkzeug")
    quiet = next((f for f in logger.filters if isinstance(f, QuietPaths)), None)
    if quiet is None:
        quiet = QuietPaths()
        logger.addFilter(quiet)
    quiet.paths.update(paths)


def init_app(app: Flask) -> None:
    """Send siwa_web and werkzeug logs through the redacting JSON formatter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("siwa_web", "werkzeug"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(app.config["LOG_LEVEL"])
        logger.propagate = True
