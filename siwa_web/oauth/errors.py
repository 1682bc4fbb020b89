"""OAuth 2.0 protocol errors as declarative classes; one handler renders them all.

Each class *is* its response: `status_code`, `get_body()` and `get_headers()`. The public
`description` is always one of our own fixed strings (RFC 6749 §5.2 characters only, never
request input); the internal `reason` is for logs and audit events and is never serialised.
"""
from __future__ import annotations

import re

from ..infra.security_headers import NO_STORE

# RFC 6749 §5.2: error_description is %x20-21 / %x23-5B / %x5D-7E (printable ASCII but `"` and `\`).
_SAFE_DESCRIPTION = re.compile(r'^[\x20\x21\x23-\x5b\x5d-\x7e]*$')
# An HTTP auth-scheme is a token (here at most 32 characters).
_AUTH_SCHEME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}$")
REALM = "siwa-web"  # of every challenge we send, Basic (token endpoints) and Bearer (our APIs)


def is_safe_description(text: object, limit: int = 200) -> bool:
    """Return True if `text` may be sent as an RFC 6749 error_description."""
    return isinstance(text, str) and 0 < len(text) <= limit and bool(_SAFE_DESCRIPTION.match(text))


class OAuth2Error(Exception):
    """Base of every protocol error: RFC 6749 §5.2 JSON, never cached.

    https://datatracker.ietf.org/doc/html/rfc6749#section-5.2
    """

    error: str = "invalid_request"
    description: str = "The request is invalid."
    status_code: int = 400

    def __init__(self, description: str | None = None, *, reason: str | None = None) -> None:
        if description is not None:
            if not is_safe_description(description):
                raise ValueError("error_description must use RFC 6749 characters only")
            self.description = description
        self.reason = reason or self.error
        super().__init__(f"{self.error}: {self.reason}")

    def get_body(self) -> dict[str, str]:
        body = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return body

    def get_headers(self) -> list[tuple[str, str]]:
        return list(NO_STORE)


class InvalidRequestError(OAuth2Error):
    """The request is missing a parameter, repeats one, or is otherwise malformed.

    https://datatracker.ietf.org/doc/html/rfc6749#section-5.2
    """

    error = "invalid_request"


class InvalidClientError(OAuth2Error):
    """Client authentication failed: unknown, missing or disabled client_id.

    Answered with 401, so with the `WWW-Authenticate` challenge every 401 must carry: in the
    scheme of the request's Authorization header when it sent one (the endpoint's view calls
    `use_scheme_of`), else Basic, the scheme web clients will use.
    https://datatracker.ietf.org/doc/html/rfc6749#section-5.2
    """

    error = "invalid_client"
    description = "Unknown or disabled client."
    status_code = 401
    scheme = "Basic"

    def use_scheme_of(self, authorization: str | None) -> None:
        """Challenge in the auth-scheme of this Authorization header value (Basic if none)."""
        words = (authorization or "").split(None, 1)
        scheme = words[0] if words else ""
        if _AUTH_SCHEME.match(scheme) and scheme.lower() != "basic":
            self.scheme = scheme
        else:
            self.scheme = "Basic"

    def get_headers(self) -> list[tuple[str, str]]:
        return [*super().get_headers(), ("WWW-Authenticate", f'{self.scheme} realm="{REALM}"')]


class InvalidGrantError(OAuth2Error):
    """The grant (Apple code or refresh token) is invalid, expired, revoked or not this client's.

    https://datatracker.ietf.org/doc/html/rfc6749#section-5.2
    """

    error = "invalid_grant"
    description = "The grant is invalid, expired or revoked."


class UnauthorizedClientError(OAuth2Error):
    """The client may not use this grant type.

    https://datatracker.ietf.org/doc/html/rfc6749#section-5.2
    """

    error = "unauthorized_client"
    description = "This client may not use this grant type."


class UnsupportedGrantTypeError(OAuth2Error):
    """The grant type is not supported.

    https://datatracker.ietf.org/doc/html/rfc6749#section-5.2
    """

    error = "unsupported_grant_type"
    description = "Unsupported grant_type."


class InvalidScopeError(OAuth2Error):
    """The scope is unknown, malformed or exceeds what was granted.

    https://datatracker.ietf.org/doc/html/rfc6749#section-5.2
    """

    error = "invalid_scope"
    description = "The requested scope is invalid or not allowed for this client."


class InvalidTargetError(OAuth2Error):
    """The requested audience is unknown or not allowed for this client.

    https://datatracker.ietf.org/doc/html/rfc8693#section-2.2.2 (registered by RFC 8707)
    """

    error = "invalid_target"
    description = "The requested audience is not allowed for this client."


class UnsupportedTokenTypeError(OAuth2Error):
    """The server cannot revoke this kind of token.

    https://datatracker.ietf.org/doc/html/rfc7009#section-2.2.1
    """

    error = "unsupported_token_type"
    description = "This token type cannot be revoked."


class ServerError(OAuth2Error):
    """Our own configuration is broken; retrying will not help (decision D11)."""

    error = "server_error"
    description = "The server cannot complete this request. Please contact support."
    status_code = 500


class TemporarilyUnavailableError(OAuth2Error):
    """An upstream (Apple, the database) failed; retry later (decision D11)."""

    error = "temporarily_unavailable"
    description = "The service is temporarily unavailable. Retry later."
    status_code = 503
    retry_after = 5

    def get_headers(self) -> list[tuple[str, str]]:
        return [*super().get_headers(), ("Retry-After", str(self.retry_after))]


class TooManyRequestsError(OAuth2Error):
    """A rate limit was hit (the code Auth0 uses for its 429s)."""

    error = "too_many_requests"
    description = "Too many requests. Retry later."
    status_code = 429

    def __init__(self, retry_after: int = 60, **kwargs) -> None:
        super().__init__(**kwargs)
        self.retry_after = max(1, int(retry_after))

    def get_headers(self) -> list[tuple[str, str]]:
        return [*super().get_headers(), ("Retry-After", str(self.retry_after))]


# --- Resource server errors (RFC 6750 §3) -------------------------------------------------------


class BearerError(OAuth2Error):
    """Base of protected-resource errors: the challenge goes in `WWW-Authenticate`.

    https://datatracker.ietf.org/doc/html/rfc6750#section-3
    """

    scope: str | None = None

    def get_headers(self) -> list[tuple[str, str]]:
        parts = [f'realm="{REALM}"']
        if self.error:
            parts.append(f'error="{self.error}"')
            if self.description:
                parts.append(f'error_description="{self.description}"')
        if self.scope:
            parts.append(f'scope="{self.scope}"')
        return [*super().get_headers(), ("WWW-Authenticate", "Bearer " + ", ".join(parts))]


class MissingTokenError(BearerError):
    """No credentials at all: 401 with a bare challenge and no error code (RFC 6750 §3.1)."""

    error = ""
    description = ""
    status_code = 401

    def get_body(self) -> dict[str, str]:
        return {"error_description": "A Bearer access token is required."}


class InvalidTokenError(BearerError):
    """The access token is malformed, expired, revoked or not for this API (RFC 6750 §3.1).

    The description says which, so an integrator knows whether to refresh, to ask for another
    audience or to sign in again; it names only the token's own state, never another user's.
    """

    error = "invalid_token"
    description = "The access token is not valid."
    status_code = 401
    DESCRIPTIONS = {
        "aud_mismatch": "The access token is for another audience.",
        "expired": "The access token has expired.",
        "family_expired": "The app session of this access token has ended.",
        "family_revoked": "The access token was revoked.",
        "family_unknown": "The access token was revoked.",
        "user_disabled": "The account of this access token is disabled.",
        "issued_in_future": "The access token is not valid yet.",
        "typ_not_at_jwt": "The token is not an access token.",
    }

    def __init__(self, description: str | None = None, *, reason: str | None = None) -> None:
        super().__init__(description or self.DESCRIPTIONS.get(reason or ""), reason=reason)


class InvalidBearerRequestError(BearerError):
    """Credentials sent in more than one way, or otherwise malformed (RFC 6750 §3.1)."""

    error = "invalid_request"
    description = "Send the access token in the Authorization header only."
    status_code = 400


class InsufficientScopeError(BearerError):
    """The token is valid but lacks a scope this resource needs (RFC 6750 §3.1)."""

    error = "insufficient_scope"
    description = "The access token does not carry the required scope."
    status_code = 403

    def __init__(self, scope: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scope = scope


class InsufficientUserAuthenticationError(BearerError):
    """The token is valid but the sign-in behind it is too old for this action (RFC 9470 §3).

    The challenge carries `max_age`: the app signs the person in again (a new `auth_time`)
    and retries with the new access token.
    https://datatracker.ietf.org/doc/html/rfc9470#section-3
    """

    error = "insufficient_user_authentication"
    description = "A more recent sign-in is required. Sign in again and retry."
    status_code = 401

    def __init__(self, max_age: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_age = max(0, int(max_age))

    def get_headers(self) -> list[tuple[str, str]]:
        headers = super().get_headers()
        return [(name, f'{value}, max_age="{self.max_age}"' if name == "WWW-Authenticate"
                 else value) for name, value in headers]

    def get_body(self) -> dict[str, str]:
        return {**super().get_body(), "max_age": str(self.max_age)}


# --- authorization endpoint: sent to the app's redirect URI, never as JSON ----------------------


class UnsupportedResponseTypeError(OAuth2Error):
    """The authorization server does not support this response_type (only `code`).

    https://datatracker.ietf.org/doc/html/rfc6749#section-4.1.2.1
    """

    error = "unsupported_response_type"
    description = "Only response_type=code is supported."


class AccessDeniedError(OAuth2Error):
    """The person (or siwa-web on their behalf) refused the request.

    https://datatracker.ietf.org/doc/html/rfc6749#section-4.1.2.1
    """

    error = "access_denied"
    description = "The request was denied."


class LoginRequiredError(OAuth2Error):
    """prompt=none, but the person must sign in first.

    https://openid.net/specs/openid-connect-core-1_0.html#AuthError
    """

    error = "login_required"
    description = "Signing in is required."


class ConsentRequiredError(OAuth2Error):
    """prompt=none, but the person has not allowed this app what it asks for.

    https://openid.net/specs/openid-connect-core-1_0.html#AuthError
    """

    error = "consent_required"
    description = "The person has not allowed this app what it asks for."


class InteractionRequiredError(OAuth2Error):
    """prompt=none, but another page (e.g. choosing an account) would be needed.

    https://openid.net/specs/openid-connect-core-1_0.html#AuthError
    """

    error = "interaction_required"
    description = "The request needs the person's interaction."


class RequestNotSupportedError(OAuth2Error):
    """Request objects (`request`) are not supported.

    https://openid.net/specs/openid-connect-core-1_0.html#AuthError
    """

    error = "request_not_supported"
    description = "Request objects are not supported."


class RequestUriNotSupportedError(OAuth2Error):
    """`request_uri` is not supported.

    https://openid.net/specs/openid-connect-core-1_0.html#AuthError
    """

    error = "request_uri_not_supported"
    description = "request_uri is not supported."
