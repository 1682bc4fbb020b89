"""Answers to the app: a redirect with the code or the error (`query`), or an auto-submitting
form (`form_post`); both carry `state` and `iss` (RFC 9207), and are never cached."""
from __future__ import annotations

from urllib.parse import urlencode
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

from flask import Response
from flask import make_response
from flask import redirect
from flask import render_template

from ..infra.security_headers import NO_STORE
from ..oauth.errors import OAuth2Error


def with_query(uri: str, params: dict[str, str]) -> str:
    """`uri` with `params` added to its query (kept as it is otherwise)."""
    parts = urlsplit(uri)
    query = urlencode(params)
    return urlunsplit(parts._replace(query=f"{parts.query}&{query}" if parts.query else query))


def answer(redirect_uri: str, response_mode: str, params: dict[str, str | None]) -> Response:
    fields = {k: v for k, v in params.items() if v is not None}
    if response_mode == "form_post":
        response = make_response(render_template(
            "provider/form_post.html", action=redirect_uri, fields=fields))
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(redirect_uri))
        # The page posts to the app: the only form target this response may use.
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; script-src 'self'; style-src 'self'; "
            f"form-action {origin}; frame-ancestors 'none'; base-uri 'none'")
    else:
        # `#_` keeps browsers from re-attaching a fragment of the request (RFC 9700 §4.1.3)
        response = redirect(with_query(redirect_uri, fields) + "#_", code=303)
    for name, value in NO_STORE:
        response.headers[name] = value
    return response


def code(redirect_uri: str, response_mode: str, *, code: str, state: str | None,
         issuer: str) -> Response:
    return answer(redirect_uri, response_mode, {"code": code, "state": state, "iss": issuer})


def error(redirect_uri: str, response_mode: str, exc: OAuth2Error, *, state: str | None,
          issuer: str) -> Response:
    body = exc.get_body()
    return answer(redirect_uri, response_mode, {
        "error": body["error"], "error_description": body.get("error_description"),
        "state": state, "iss": issuer})
