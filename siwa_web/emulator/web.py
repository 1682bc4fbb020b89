"""Flask glue shared by the emulator's views: its state, scripted failures, the request log."""
from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from flask import Response
from flask import current_app
from flask import request

from .errors import AppleError
from .errors import apple_json
from .state import EmulatorState
from .state import ForcedFailure
from .tokens import fingerprint

STATE_KEY = "siwa.emulator.state"
FORM_TYPE = "application/x-www-form-urlencoded"
TOKEN_FIELDS = ("code", "refresh_token", "token")  # whichever the call carried


def current_state() -> EmulatorState:
    """The state of the emulator app serving this request (never shared between apps)."""
    return current_app.extensions[STATE_KEY]


def require_form() -> None:
    """Apple accepts only percent-encoded form bodies; JSON is `invalid_request`."""
    if request.mimetype != FORM_TYPE:
        raise AppleError("invalid_request", f"Content-Type must be {FORM_TYPE}.")


def _failure_response(failure: ForcedFailure) -> Response:
    if isinstance(failure.body, str):
        return Response(failure.body, status=failure.status, content_type="text/plain")
    return apple_json(failure.body if failure.body is not None else {"error": "server_error"},
                      failure.status or 500)


def _log(state: EmulatorState, endpoint: str, response: Response) -> None:
    """Record what the RP sent (fingerprints only: no secret appears in the log)."""
    form = request.form
    presented = next((form[f] for f in TOKEN_FIELDS if form.get(f)), None)
    body = response.get_json(silent=True) if response.is_json else None
    with state.lock:
        state.requests.append({
            "endpoint": endpoint,
            "client_id": form.get("client_id"),
            "grant_type": form.get("grant_type"),
            "token_type_hint": form.get("token_type_hint"),
            "token_sha256": fingerprint(presented) if presented else None,
            "status": response.status_code,
            "error": body.get("error") if isinstance(body, dict) else None,
            "time": state.now(),
        })


def endpoint(name: str, log: bool = False) -> Callable:
    """Apply scripted failures/delays for `name`, turn `AppleError` into JSON, log if asked."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Response]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            state = current_state()
            failure = state.take_failure(name)
            if failure is not None and failure.delay:
                time.sleep(failure.delay)
            if failure is not None and failure.status is not None:
                response = _failure_response(failure)
            else:
                try:
                    response = current_app.make_response(view(*args, **kwargs))
                except AppleError as exc:
                    response = exc.response()
            if log:
                _log(state, name, response)
            return response

        return wrapper

    return decorate
