"""Responses that no cache may keep: tokens, claims and account pages (RFC 6749 §5.1)."""
from __future__ import annotations

from typing import Any

from flask import Response
from flask import current_app

from .security_headers import NO_STORE


def no_store(response: Response) -> Response:
    """Mark an existing response as not cacheable."""
    for name, value in NO_STORE:
        response.headers[name] = value
    return response


def no_store_json(body: Any, status: int = 200) -> Response:
    """`jsonify(body)` with the no-store headers (it runs on every API call).

    The headers are added one by one: handing them to the constructor costs three times as
    much (Werkzeug first checks which kind of mapping it was given).
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    response = app.response_class(app.json.dumps(body) + "\n", status, mimetype="application/json")
    add = response.headers.add
    for name, value in NO_STORE:
        add(name, value)
    return response
