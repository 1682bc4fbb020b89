"""Error answers for the whole app: HTML pages whose reference is the request id (in the log
and the X-Request-ID header), RFC 6749 JSON on protocol paths, and the 503 for a database that
fails at any point of a request.
"""
from __future__ import annotations

import logging

from flask import Flask
from flask import Response
from flask import jsonify
from flask import make_response
from flask import render_template
from flask import request
from flask_login import current_user
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from ..infra import request_id
from ..infra.database import driver_error_name
from ..infra.database import end_request_transaction
from ..infra.database import request_committed
from ..oauth.errors import TemporarilyUnavailableError
from ..oauth.server import DB_UNAVAILABLE
from ..tokens.service import render_error as render_oauth_error
from . import error_pages

log = logging.getLogger(__name__)
DB_RETRY_AFTER = TemporarilyUnavailableError.retry_after
JSON_PREFIXES = ("/oauth/", "/api/", "/userinfo", "/.well-known/", "/apple/")
# Under /oauth/ but opened by a person's browser: they get our HTML page, not JSON.
BROWSER_PREFIXES = ("/oauth/authorize", "/oauth/logout")


def new_reference() -> str:
    """Return the id the user can quote and support greps for: this request's id."""
    return request_id.current() or request_id.new_id()


def wants_json() -> bool:
    path = request.path
    return path.startswith(JSON_PREFIXES) and not path.startswith(BROWSER_PREFIXES)


def render_error(status: int, title: str, message: str, action: str | None = None,
                 ref: str | None = None) -> tuple[str, int]:
    """Render the one HTML error page; every failure shown to a browser goes through here."""
    ref = ref or new_reference()
    body = render_template("errors/error.html", status=status, title=title, message=message,
                           action=action, ref=ref)
    return body, status


def database_unavailable(exc: BaseException) -> Response:
    """The 503 for a database that failed: protocol JSON with Retry-After, or our HTML page.

    Never a traceback or the SQL: the log line names the driver's error class and a reference.
    """
    ref = new_reference()
    log.error("database unavailable on %s: %s", request.path, driver_error_name(exc),
              extra={"event": "database_unavailable", "ref": ref,
                     "reason": "database_unavailable"})
    if wants_json():
        return render_oauth_error(TemporarilyUnavailableError(reason="database_unavailable"))
    response = make_response(render_error(
        503, "We could not finish this request", "Our database did not answer, so this "
        "request could not be finished.", "Wait a moment, then try again.", ref=ref))
    response.headers["Retry-After"] = str(DB_RETRY_AFTER)
    response.headers["Cache-Control"] = "no-store"
    return response


def _database_failed(exc: Exception) -> Response:
    """Error handler: a query, commit or connection failed somewhere in the request."""
    from ..infra.extensions import db

    try:
        db.session.rollback()
    except SQLAlchemyError:
        log.debug("rollback after a database failure failed too",
                  extra={"event": "database_unavailable"})
    return database_unavailable(exc)


def _end_transaction(response: Response) -> Response:
    """End the request's transaction while the answer can still change (infra/database.py).

    If that fails, a request that committed nothing is answered 503, like any other database
    failure. One that committed keeps its answer: its work is stored, and only closing a later
    read failed; a 503 would tell the client that nothing happened.
    """
    committed = request_committed()
    try:
        end_request_transaction()
    except SQLAlchemyError as exc:
        if committed:
            log.error("database failure after this request committed (answer kept): %s",
                      driver_error_name(exc), extra={"event": "database_unavailable"})
            return response
        return database_unavailable(exc)
    return response


def _http_page(exc: HTTPException):
    """siwa-web's page for an HTTP error, in its own words (never Werkzeug's), with a wait."""
    ref = new_reference()
    status = exc.code or 500
    log.info("http error %s on %s", status, request.path,
             extra={"event": "http_error", "status": status, "path": request.path})
    page = error_pages.page_for(exc, request.path)
    action = page.action_for(current_user.is_authenticated)
    headers = {"Cache-Control": "no-store"}
    wait = error_pages.retry_after(exc)
    if wait is not None:
        headers["Retry-After"] = str(wait)
        action = error_pages.wait_advice(wait)
    allowed = getattr(exc, "valid_methods", None)
    if status == 405 and allowed:
        headers["Allow"] = ", ".join(allowed)
    body, status = render_error(status, page.title, page.message, action, ref=ref)
    return body, status, headers


def init_app(app: Flask) -> None:
    for failure in DB_UNAVAILABLE:
        app.register_error_handler(failure, _database_failed)
    app.after_request(_end_transaction)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        if wants_json():
            code = "invalid_request" if exc.code and exc.code < 500 else "server_error"
            resp = jsonify(error=code, error_description=exc.name)
            resp.status_code = exc.code or 500
            resp.headers["Cache-Control"] = "no-store"
            return resp
        return _http_page(exc)

    @app.errorhandler(Exception)
    def _crash(exc: Exception):
        from ..infra.extensions import db

        db.session.rollback()
        ref = new_reference()
        log.exception("unhandled error on %s", request.path,
                      extra={"event": "crash", "path": request.path})
        if wants_json():
            resp = jsonify(error="server_error", error_description=f"Internal error (ref {ref})")
            resp.status_code = 500
            resp.headers["Cache-Control"] = "no-store"
            return resp
        page = error_pages.PAGES[500]
        body, status = render_error(500, page.title, page.message, page.action, ref=ref)
        return body, status, {"Cache-Control": "no-store"}
