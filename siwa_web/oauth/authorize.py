"""Authorization requests of web apps (RFC 6749 §4.1.1, OIDC Core §3.1.2, RFC 7636, RFC 9207).

Validation has two steps, because where an error may be sent depends on them:

1. `identify_client` — `client_id`, `redirect_uri`, `response_mode`. Until all three are known
   good nothing may go to the redirect URI (that would be an open redirector), so failures
   are `UnsafeRequest` and the browser stays on siwa-web's own error page.
2. `validate` — everything else. Failures are OAuth 2.0 errors sent back to the app's
   redirect URI with `state` and `iss`.

Flask-free: the provider's views hand it the request's parameters, every value of each.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict
from dataclasses import dataclass
from typing import Any

from . import clients
from . import redirect_uris
from . import scopes as scope_rules
from .codes import S256_CHALLENGE
from .collaborators import DbSession
from .errors import InvalidRequestError
from .errors import InvalidScopeError
from .errors import InvalidTargetError
from .errors import RequestNotSupportedError
from .errors import RequestUriNotSupportedError
from .errors import UnsupportedResponseTypeError

STATE_MAX = 512
NONCE_MAX = 255
LOGIN_HINT_MAX = 255
MAX_AGE_MAX = 10**9
RESPONSE_MODES = ("query", "form_post")
KNOWN_PROMPTS = frozenset({"none", "login", "consent", "select_account"})
_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]*\Z")  # \Z: `$` would also pass a final "\n"


class UnsafeRequest(Exception):
    """The request cannot be answered at the app's redirect URI: shown to the person instead."""

    def __init__(self, title: str, message: str, reason: str) -> None:
        super().__init__(reason)
        self.title, self.message, self.reason = title, message, reason


@dataclass(frozen=True)
class Target:
    """Where, and how, the answer to an authorization request goes."""

    client: clients.ActiveClient
    redirect_uri: str
    response_mode: str
    state: str | None


@dataclass(frozen=True)
class AuthorizationRequest:
    """A valid request, as kept while the person signs in or decides."""

    client_id: str
    redirect_uri: str
    response_mode: str
    state: str | None
    scopes: tuple[str, ...]
    audience: str
    nonce: str | None
    code_challenge: str | None
    prompt: tuple[str, ...]
    max_age: int | None

    def to_params(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> AuthorizationRequest:
        values = dict(params)
        values["scopes"] = tuple(values["scopes"])
        values["prompt"] = tuple(values["prompt"])
        return cls(**values)


def _single(params: Mapping[str, list[str]], name: str) -> str | None:
    """The one value of `name`; empty counts as absent; a repeat raises ValueError."""
    values = [v for v in params.get(name, ()) if v != ""]
    if len(values) > 1:
        raise ValueError(name)
    return values[0] if values else None


def identify_client(session: DbSession, params: Mapping[str, list[str]],
                    lookup: clients.ClientCache | None = None) -> Target:
    """Which client asks, and where its answer goes (`lookup` may answer from a cache).

    :raises UnsafeRequest: unknown client, unregistered redirect URI, unknown response mode.
    """
    try:
        client_id = _single(params, "client_id")
        redirect_uri = _single(params, "redirect_uri")
        response_mode = _single(params, "response_mode") or "query"
        state = _single(params, "state")
    except ValueError as exc:
        raise UnsafeRequest("This sign-in link is not valid",
                            f"The parameter {exc} appears more than once.",
                            "repeated_" + str(exc)) from exc
    client = (lookup.get(session, client_id) if lookup is not None
              else clients.get_active(session, client_id))
    if client is None or not client.is_web:
        raise UnsafeRequest("This app is not known here",
                            "The sign-in link names an app that is not registered with "
                            "this sign-in service, or that has been disabled.",
                            "client_unknown" if client is None else "client_not_web")
    if redirect_uri is None or not redirect_uris.matches(redirect_uri, client.redirect_uris):
        raise UnsafeRequest("This sign-in link is not valid",
                            f"The address {client.name} asked to return to is not one it "
                            "registered, so you are not sent there.",
                            "redirect_uri_missing" if redirect_uri is None
                            else "redirect_uri_mismatch")
    if response_mode not in RESPONSE_MODES:
        raise UnsafeRequest("This sign-in link is not valid",
                            f"{client.name} asked for an answer format siwa-web does not offer.",
                            "response_mode_unsupported")
    if state is not None and (len(state) > STATE_MAX or not _PRINTABLE_ASCII.match(state)):
        state = None  # not echoed: the error below tells the app why
    return Target(client, redirect_uri, response_mode, state)


def validate(target: Target, params: Mapping[str, list[str]], *,
             default_audience: str) -> AuthorizationRequest:
    """The rest of the request. :raises OAuth2Error: to be sent to the redirect URI."""
    for values in params.values():
        if len([v for v in values if v != ""]) > 1:
            raise InvalidRequestError("A request parameter was sent more than once.",
                                      reason="duplicate_parameter")
    get = params.get
    value = _first
    state = value(get("state"))
    if state is not None and target.state is None:
        raise InvalidRequestError(f"state must be at most {STATE_MAX} printable ASCII characters.",
                                  reason="state_invalid")
    if value(get("request")) is not None:
        raise RequestNotSupportedError(reason="request_object")
    if value(get("request_uri")) is not None:
        raise RequestUriNotSupportedError(reason="request_uri")
    response_type = value(get("response_type"))
    if response_type is None:
        raise InvalidRequestError("response_type is required.", reason="response_type_missing")
    if response_type != "code":
        raise UnsupportedResponseTypeError(reason="response_type_unsupported")
    client = target.client
    return AuthorizationRequest(
        client_id=client.id, redirect_uri=target.redirect_uri,
        response_mode=target.response_mode, state=target.state,
        scopes=_scopes(client, value(get("scope"))),
        audience=_audience(client, params, default_audience),
        nonce=_nonce(value(get("nonce"))),
        code_challenge=_code_challenge(client, value(get("code_challenge")),
                                       value(get("code_challenge_method"))),
        prompt=_prompt(value(get("prompt"))),
        max_age=_max_age(value(get("max_age"))),
    )


def _first(values: list[str] | None) -> str | None:
    found = [v for v in values or () if v != ""]
    return found[0] if found else None


def _scopes(client: clients.ActiveClient, raw: str | None) -> tuple[str, ...]:
    if raw is None:
        raise InvalidScopeError("scope is required and must include openid.",
                                reason="scope_missing")
    requested = scope_rules.parse(raw)
    if scope_rules.OPENID not in requested:
        raise InvalidScopeError("scope must include openid.", reason="scope_without_openid")
    scope_rules.require_subset(requested, scope_rules.allowed_for(client.scopes),
                               reason="scope_not_allowed")
    return requested


def _audience(client: clients.ActiveClient, params: Mapping[str, list[str]],
              default_audience: str) -> str:
    values = {v for name in ("audience", "resource") for v in params.get(name, ()) if v}
    if len(values) > 1:
        raise InvalidTargetError(reason="audience_multiple")
    audience = values.pop() if values else default_audience
    if audience not in clients.allowed_audiences(client, default_audience):
        raise InvalidTargetError(reason="audience_not_allowed")
    return audience


def _nonce(nonce: str | None) -> str | None:
    if nonce is not None and (len(nonce) > NONCE_MAX or not _PRINTABLE_ASCII.match(nonce)):
        raise InvalidRequestError(f"nonce must be at most {NONCE_MAX} printable ASCII "
                                  "characters.", reason="nonce_invalid")
    return nonce


def _code_challenge(client: clients.ActiveClient, challenge: str | None,
                    method: str | None) -> str | None:
    """S256 only (RFC 7636 §4.4.1 wording); required of public clients, honoured for all."""
    if method is not None and method != "S256":
        raise InvalidRequestError("transform algorithm not supported: use S256.",
                                  reason="pkce_method_unsupported")
    if challenge is None:
        if method is not None:
            raise InvalidRequestError("code_challenge_method without code_challenge.",
                                      reason="pkce_challenge_missing")
        if client.is_public:
            raise InvalidRequestError("code challenge required (PKCE with S256).",
                                      reason="pkce_required")
        return None
    if method is None:  # RFC 7636 would read this as plain, which is refused
        raise InvalidRequestError("code_challenge_method=S256 is required.",
                                  reason="pkce_method_missing")
    if not S256_CHALLENGE.match(challenge):
        raise InvalidRequestError("code_challenge must be 43 base64url characters (S256).",
                                  reason="pkce_challenge_malformed")
    return challenge


def _prompt(raw: str | None) -> tuple[str, ...]:
    values = tuple(dict.fromkeys((raw or "").split()))
    if "none" in values and len(values) > 1:
        raise InvalidRequestError("prompt=none cannot be combined with other values.",
                                  reason="prompt_none_combined")
    return tuple(v for v in values if v in KNOWN_PROMPTS)  # unknown values are ignored


def _max_age(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_AGE_MAX:
        raise InvalidRequestError("max_age must be a whole number of seconds.",
                                  reason="max_age_invalid")
    return int(raw)
