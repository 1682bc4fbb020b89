"""Who is calling the token and revocation endpoints: client authentication (RFC 6749 §2.3).

Native apps and public web apps (single-page apps) are public clients: they send `client_id`
alone and prove nothing (PKCE protects their codes; rotation their refresh tokens). A
confidential web app sends its secret, in an HTTP Basic header (`client_secret_basic`) or in
the body (`client_secret_post`) — never both, and a client without a secret never sends one.
Authorization headers of other schemes are not client authentication and are ignored.
"""
from __future__ import annotations

import base64
import binascii
from typing import NamedTuple
from urllib.parse import unquote_plus

from . import clients
from .collaborators import DbSession
from .errors import InvalidClientError
from .errors import InvalidRequestError
from .requests import TokenRequest

BASIC, POST, NONE = "client_secret_basic", "client_secret_post", "none"
METHODS = (BASIC, POST, NONE)
_MAX_HEADER = 1024


class Presented(NamedTuple):
    """The credentials a request carries, before anything is looked up."""

    client_id: str | None
    secret: str | None
    method: str


def presented(request: TokenRequest) -> Presented:
    """Read `client_id` and any secret. :raises InvalidRequestError, InvalidClientError:"""
    body_id, body_secret = request.client_id, request.get("client_secret")
    basic = basic_credentials(request.authorization)
    if basic is None:
        return Presented(body_id, body_secret, POST if body_secret is not None else NONE)
    if body_secret is not None:
        raise InvalidRequestError("Use one way to authenticate the client: the Basic header or "
                                  "client_secret in the body, not both.", reason="two_auth_methods")
    basic_id, basic_secret = basic
    if body_id is not None and body_id != basic_id:
        raise InvalidRequestError("client_id in the body differs from the Basic header's.",
                                  reason="client_id_conflict")
    return Presented(basic_id, basic_secret, BASIC)


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """`client_id:client_secret` of a Basic header, each form-urlencoded (RFC 6749 §2.3.1)."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        if len(header) > _MAX_HEADER:
            raise ValueError("too long")
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        raw_id, sep, raw_secret = decoded.partition(":")
        if not sep or not raw_id:
            raise ValueError("no colon")
        return unquote_plus(raw_id), unquote_plus(raw_secret)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidClientError(reason="basic_malformed") from exc


def check_secret(secret_hash: str | None, credentials: Presented) -> None:
    """The presented secret fits the client's: none for a public client, its own otherwise.

    :raises InvalidClientError:
    """
    if secret_hash is None:
        if credentials.secret is not None:
            raise InvalidClientError(
                "This client is public: send client_id alone, without a secret.",
                reason="secret_for_public_client")
        return
    if credentials.secret is None:
        raise InvalidClientError(reason="secret_missing")
    if not clients.secret_matches_hash(secret_hash, credentials.secret):
        raise InvalidClientError(reason="secret_wrong")


def authenticate(session: DbSession, credentials: Presented) -> clients.ActiveClient | None:
    """The enabled client the credentials prove, or None if no such client exists.

    :raises InvalidClientError: when the client exists but its secret does not fit.
    """
    client = clients.get_active(session, credentials.client_id)
    if client is not None:
        check_secret(client.secret_hash, credentials)
    return client
