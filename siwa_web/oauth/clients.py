"""The client registry: native apps (Apple code exchange) and web apps (authorization code flow)."""
from __future__ import annotations

import hmac
import re
import threading
import time
from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import urlsplit

from sqlalchemy import bindparam
from sqlalchemy import func
from sqlalchemy import select

from ..infra.crypto import new_token
from ..infra.crypto import token_hash
from ..models import Client
from ..models.base import now_utc
from . import redirect_uris as redirect_uris_
from . import scopes
from .collaborators import DbSession

CLIENT_ID_PREFIX = "cli_"
MAX_CLIENT_ID_LENGTH = 64
# Apple bundle ids: reverse-DNS of letters, digits, hyphens and dots.
_BUNDLE_ID = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+\Z")  # \Z: `$` passes a final "\n"
_AUDIENCE = re.compile(r"^[\x21-\x7e]{1,255}\Z")
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*\Z")  # RFC 3986 §3.1


class ClientError(ValueError):
    """A client definition is invalid; the message says which part."""


NATIVE, WEB = "native", "web"
# 256 random bits: SHA-256 suffices at rest (nothing to brute-force); compared in constant time.
SECRET_BYTES = 32


class ActiveClient(NamedTuple):
    """What a grant or the authorization endpoint needs of an enabled client."""

    id: str
    name: str
    bundle_id: str | None
    audiences: list[str]
    scopes: list[str]
    kind: str = NATIVE
    secret_hash: str | None = None
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    backchannel_logout_uri: str | None = None
    first_party: bool = False

    @property
    def is_web(self) -> bool:
        return self.kind == WEB

    @property
    def is_public(self) -> bool:
        """No secret: a native app, or a web app that cannot keep one (a single-page app)."""
        return self.secret_hash is None


# Read on every token request: one Core query, no ORM identity map or unit of work.
_CLIENTS = Client.__table__
_ACTIVE = select(
    _CLIENTS.c.id, _CLIENTS.c.name, _CLIENTS.c.bundle_id, _CLIENTS.c.audiences, _CLIENTS.c.scopes,
    _CLIENTS.c.kind, _CLIENTS.c.secret_hash, _CLIENTS.c.redirect_uris,
    _CLIENTS.c.post_logout_redirect_uris, _CLIENTS.c.backchannel_logout_uri,
    _CLIENTS.c.first_party,
).where(_CLIENTS.c.id == bindparam("client_id"), _CLIENTS.c.disabled_at.is_(None))


def get_active(session: DbSession, client_id: str | None) -> ActiveClient | None:
    """Return the enabled client with this id, or None (also for absurd ids: no lookup then)."""
    if not client_id or len(client_id) > MAX_CLIENT_ID_LENGTH or not client_id.isprintable():
        return None
    row = session.connection().execute(_ACTIVE, {"client_id": client_id}).first()
    if row is None:
        return None
    return ActiveClient(
        row.id, row.name, row.bundle_id, row.audiences or [], row.scopes or [], row.kind,
        row.secret_hash, tuple(row.redirect_uris or ()), tuple(row.post_logout_redirect_uris or ()),
        row.backchannel_logout_uri, bool(row.first_party))


class ClientCache:
    """Enabled clients by id, each kept for `seconds` in this process.

    The authorization endpoint reads the same, rarely changing client row for every single-sign-on
    answer; reading it once per `seconds` per worker saves a query on each (issue an
    authorization code is a statement and a commit besides). A change to a client — disabled,
    a redirect URI removed — reaches the authorization endpoint within `seconds`; nothing that
    was issued meanwhile outlives it, because redeeming a code reads the client again (enabled,
    secret) in the same query as the code. Unknown ids are never kept, so made-up ids cannot
    grow the cache; `MAX_ENTRIES` bounds it anyway. `seconds <= 0` turns it off.
    """

    MAX_ENTRIES = 1024

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._entries: dict[str, tuple[float, ActiveClient]] = {}
        self._lock = threading.Lock()

    def get(self, session: DbSession, client_id: str | None) -> ActiveClient | None:
        """The enabled client with this id (from the cache while fresh), or None."""
        if self.seconds <= 0 or not client_id:
            return get_active(session, client_id)
        now = self._clock()
        entry = self._entries.get(client_id)
        if entry is not None and entry[0] > now:
            return entry[1]
        client = get_active(session, client_id)
        with self._lock:
            if client is None:
                self._entries.pop(client_id, None)
            else:
                if len(self._entries) >= self.MAX_ENTRIES:
                    self._entries.clear()
                self._entries[client_id] = (now + self.seconds, client)
        return client

    def forget(self, client_id: str | None = None) -> None:
        """Drop one client (or all): this process changed it and must not answer from before."""
        with self._lock:
            if client_id is None:
                self._entries.clear()
            else:
                self._entries.pop(client_id, None)


def allowed_audiences(client: ActiveClient, default_audience: str) -> frozenset[str]:
    """Our own API is open to every client; other APIs only to clients that list them."""
    return frozenset(client.audiences or ()) | {default_audience}


def create(
    session: DbSession, *, name: str, bundle_id: str, audiences: list[str] | tuple[str, ...] = (),
    api_scopes: list[str] | tuple[str, ...] = (), web_services_id: str | None = None,
) -> Client:
    """Validate and add a client (the caller commits). :raises ClientError:

    `web_services_id` is the web sign-in's Services ID (APPLE_SERVICES_ID): Apple tells bundle
    ids and Services IDs apart by nothing but their registration, so a native client with that
    id would make the token endpoint accept codes minted for the web sign-in. Bundle ids are
    compared without regard to case, as Apple treats them: `com.Example.app` and
    `com.example.app` name one App ID.
    """
    name = _check_name(name)
    if len(bundle_id) > 255 or not _BUNDLE_ID.match(bundle_id):
        raise ClientError("bundle id must look like com.example.app")
    if web_services_id and bundle_id.lower() == web_services_id.lower():
        raise ClientError(f"bundle id {bundle_id} is the web sign-in's Services ID "
                          "(APPLE_SERVICES_ID); a native client needs its app's own bundle id")
    _check_audiences_and_scopes(audiences, api_scopes)
    taken = session.execute(select(Client.id, Client.bundle_id).where(
        func.lower(Client.bundle_id) == bundle_id.lower())).first()
    if taken:
        same = "" if taken.bundle_id == bundle_id else f" (as {taken.bundle_id}: case differs)"
        raise ClientError(f"a client with bundle id {bundle_id} already exists{same}: "
                          f"{taken.id}")
    client = Client(
        id=CLIENT_ID_PREFIX + new_token(18),
        name=name,
        bundle_id=bundle_id,
        audiences=list(dict.fromkeys(audiences)),
        scopes=[s for s in dict.fromkeys(api_scopes) if s not in scopes.STANDARD_SCOPES],
    )
    session.add(client)
    return client


def set_disabled(session: DbSession, client_id: str, disabled: bool) -> tuple[Client, bool]:
    """Disable or re-enable a client (the caller commits); returns it and whether it changed.

    A disabled client keeps its sessions, but none of them works: its grants get
    `invalid_client` and its access tokens `invalid_token` until it is enabled again.
    :raises ClientError: for an unknown client id.
    """
    client = session.get(Client, client_id)
    if client is None:
        raise ClientError(f"no client with id {client_id} (flask clients list shows them)")
    changed = (client.disabled_at is None) == disabled
    if changed:
        client.disabled_at = now_utc() if disabled else None
    return client, changed


def all_clients(session: DbSession) -> list[Client]:
    return list(session.execute(select(Client).order_by(Client.created_at)).scalars())


def bundle_ids(session: DbSession) -> list[str]:
    """Bundle ids of enabled clients (the emulator accepts codes for these)."""
    return list(session.execute(
        select(Client.bundle_id).where(Client.disabled_at.is_(None))
    ).scalars())


def as_dict(client: Client) -> dict:
    """The client as `flask clients` prints it (never the secret or its hash)."""
    body = {
        "client_id": client.id,
        "type": client.kind,
        "name": client.name,
        "bundle_id": client.bundle_id,
        "audiences": list(client.audiences or []),
        "scopes": list(client.scopes or []),
        "created_at": client.created_at.isoformat() if client.created_at else None,
        "disabled": client.disabled_at is not None,
    }
    if client.kind == WEB:
        del body["bundle_id"]
        body.update({
            "public": client.secret_hash is None,
            "token_endpoint_auth_method": (
                "none" if client.secret_hash is None else "client_secret_basic"),
            "first_party": bool(client.first_party),
            "redirect_uris": list(client.redirect_uris or []),
            "post_logout_redirect_uris": list(client.post_logout_redirect_uris or []),
            "backchannel_logout_uri": client.backchannel_logout_uri,
        })
    return body


# --- web clients ---------------------------------------------------------------------------------


def create_web(
    session: DbSession, *, name: str, redirect_uris: list[str] | tuple[str, ...],
    post_logout_redirect_uris: list[str] | tuple[str, ...] = (),
    backchannel_logout_uri: str | None = None, public: bool = False, first_party: bool = False,
    audiences: list[str] | tuple[str, ...] = (), api_scopes: list[str] | tuple[str, ...] = (),
    production: bool = True,
) -> tuple[Client, str | None]:
    """Validate and add a web client (the caller commits); returns it and, for a confidential
    client, its secret — shown once, stored only as a hash. :raises ClientError:"""
    name = _check_name(name)
    if not redirect_uris:
        raise ClientError("a web client needs at least one --redirect-uri")
    try:
        uris = [redirect_uris_.check_registrable(u, production=production) for u in redirect_uris]
        logout_uris = [
            redirect_uris_.check_registrable(u, production=production,
                                             what="post-logout redirect URI")
            for u in post_logout_redirect_uris]
        if backchannel_logout_uri is not None:
            redirect_uris_.check_registrable(backchannel_logout_uri, production=production,
                                             what="back-channel logout URI")
    except redirect_uris_.RedirectUriError as exc:
        raise ClientError(str(exc)) from exc
    _check_audiences_and_scopes(audiences, api_scopes)
    secret = None if public else new_token(SECRET_BYTES)
    client = Client(
        id=CLIENT_ID_PREFIX + new_token(18), name=name, kind=WEB, bundle_id=None,
        secret_hash=None if secret is None else token_hash(secret),
        redirect_uris=list(dict.fromkeys(uris)),
        post_logout_redirect_uris=list(dict.fromkeys(logout_uris)),
        backchannel_logout_uri=backchannel_logout_uri, first_party=first_party,
        audiences=list(dict.fromkeys(audiences)),
        scopes=[s for s in dict.fromkeys(api_scopes) if s not in scopes.STANDARD_SCOPES],
    )
    session.add(client)
    return client, secret


def rotate_secret(session: DbSession, client_id: str) -> str:
    """Give a confidential web client a new secret (the old one stops working at commit).

    :raises ClientError: for an unknown, native or public client.
    """
    client = session.get(Client, client_id)
    if client is None:
        raise ClientError(f"no client with id {client_id}")
    if client.kind != WEB:
        raise ClientError(f"{client_id} is a native app: it has no secret to rotate")
    if client.secret_hash is None:
        raise ClientError(f"{client_id} is a public client: it has no secret to rotate")
    secret = new_token(SECRET_BYTES)
    client.secret_hash = token_hash(secret)
    client.secret_rotated_at = now_utc()
    return secret


def secret_matches_hash(secret_hash: str | None, presented: str) -> bool:
    """Constant-time comparison of the presented secret's hash with the stored one."""
    if secret_hash is None or not presented or len(presented) > 512:
        return False
    return hmac.compare_digest(token_hash(presented), secret_hash)


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 100 or not name.isprintable():
        raise ClientError("name must be 1-100 printable characters")
    return name


def _check_audiences_and_scopes(audiences, api_scopes) -> None:
    for audience in audiences:
        _check_audience(audience)
    for scope in api_scopes:
        if not scopes.is_scope_token(scope):
            raise ClientError(f"scope {scope!r} is not a valid scope token")
        if scope in scopes.STANDARD_SCOPES:
            raise ClientError(
                f"scope {scope!r} is an OpenID scope, which every client may request already "
                f"({' '.join(scopes.STANDARD_SCOPES)}); --scope names API scopes only, such as "
                "read:things")


def _check_audience(audience: str) -> None:
    """An API identifier, as RFC 9068 `aud` and RFC 8707 resource indicators are: an absolute
    URI (a scheme, and a host for http and https) without a fragment, e.g.
    https://api.example.com or urn:example:api."""
    problem = None
    if not _AUDIENCE.match(audience) or audience.startswith(CLIENT_ID_PREFIX):
        problem = "printable characters without spaces, at most 255"
    else:
        parts = urlsplit(audience)
        if not _URI_SCHEME.match(parts.scheme) or not (parts.netloc or parts.path):
            problem = "an absolute URI with a scheme"
        elif parts.scheme.lower() in ("http", "https") and not parts.hostname:
            problem = "an http(s) URL with a host"
        elif parts.fragment or "#" in audience:
            problem = "a URI without a fragment (#)"
    if problem:
        raise ClientError(f"audience {audience!r} must be an API identifier: {problem}, "
                          "e.g. https://api.example.com or urn:example:api")
