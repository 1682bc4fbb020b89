"""A tiny WSGI app for bench/server_guarantees.py: who answered, and a request that takes time.

  GET /pid          {"pid": <worker pid>, "remote_addr": ...}
  GET /slow?s=N     the same after sleeping N seconds (an in-flight request to finish)
"""
from __future__ import annotations

import json
import os
import time
from typing import Any
from urllib.parse import parse_qs


def create() -> Any:
    """The WSGI callable (a factory, so gunicorn and granian load it alike)."""

    def app(environ: dict, start_response: Any) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/slow":
            seconds = float(parse_qs(environ.get("QUERY_STRING", "")).get("s", ["1"])[0])
            time.sleep(min(seconds, 30))
        elif path != "/pid":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        body = json.dumps({"pid": os.getpid(), "remote_addr": environ.get("REMOTE_ADDR")})
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body.encode()]

    return app
