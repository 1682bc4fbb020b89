"""Native clients: the registry of apps allowed to exchange Apple codes for our tokens."""
from __future__ import annotations

import re
from typing import NamedTuple

from sqlalchemy import bindparam
from sqlalchemy import select

from ..infra.crypto import new_token
from ..models import Client
from . import scopes
from .collaborators import DbSession

CLIENT_ID_PREFIX = "cli_"
MAX_CLIENT_ID_LENGTH = 64
# Apple bundle ids: reverse-DNS of letters, digits, hyphens and dots.
_BUNDLE_ID = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_AUDIENCE = re.compile(r"^[\x21-\x7e]{1,255}$")


class ClientError(ValueError):
    """A client definition is invalid; the message says which part."""


class ActiveClient(NamedTuple):
    """What a grant needs of an enabled client."""

    id: str
    name: str
    bundle_id: str
    audiences: list[str]
    scopes: list[str]


# Read on every token request: one Core query, no ORM identity map or unit of work.
_CLIENTS = Client.__table__
_ACTIVE = select(
    _CLIENTS.c.id, _CLIENTS.c.name, _CLIENTS.c.bundle_id, _CLIENTS.c.audiences, _CLIENTS.c.scopes,
).where(_CLIENTS.c.id == bindparam("client_id"), _CLIENTS.c.disabled_at.is_(None))


def get_active(session: DbSession, client_id: str | None) -> ActiveClient | None:
    """Return the enabled client with this id, or None (also for absurd ids: no lookup then)."""
    if not client_id or len(client_id) > MAX_CLIENT_ID_LENGTH or not client_id.isprintable():
        return None
    row = session.connection().execute(_ACTIVE, {"client_id": client_id}).first()
    if row is None:
        return None
    return ActiveClient(row.id, row.name, row.bundle_id, row.audiences or [], row.scopes or [])


def allowed_audiences(client: ActiveClient, default_audience: str) -> frozenset[str]:
    """Our own API is open to every client; other APIs only to clients that list them."""
    return frozenset(client.audiences or ()) | {default_audience}


def create(
    session: DbSession, *, name: str, bundle_id: str, audiences: list[str] | tuple[str, ...] = (),
    api_scopes: list[str] | tuple[str, ...] = (),
) -> Client:
    """Validate and add a client (the caller commits). :raises ClientError:"""
    name = name.strip()
    if not name or len(name) > 100 or not name.isprintable():
        raise ClientError("name must be 1-100 printable characters")
    if len(bundle_id) > 255 or not _BUNDLE_ID.match(bundle_id):
        raise ClientError("bundle id must look like com.example.app")
    for audience in audiences:
        if not _AUDIENCE.match(audience) or audience.startswith(CLIENT_ID_PREFIX):
            raise ClientError(f"audience {audience!r} must be an API identifier such as a URL")
    for scope in api_scopes:
        if not scopes.is_scope_token(scope):
            raise ClientError(f"scope {scope!r} is not a valid scope token")
    if session.execute(select(Client.id).where(Client.bundle_id == bundle_id)).first():
        raise ClientError(f"a client with bundle id {bundle_id} already exists")
    client = Client(
        id=CLIENT_ID_PREFIX + new_token(18),
        name=name,
        bundle_id=bundle_id,
        audiences=list(dict.fromkeys(audiences)),
        scopes=[s for s in dict.fromkeys(api_scopes) if s not in scopes.STANDARD_SCOPES],
    )
    session.add(client)
    return client


def all_clients(session: DbSession) -> list[Client]:
    return list(session.execute(select(Client).order_by(Client.created_at)).scalars())


def bundle_ids(session: DbSession) -> list[str]:
    """Bundle ids of enabled clients (the emulator accepts codes for these)."""
    return list(session.execute(
        select(Client.bundle_id).where(Client.disabled_at.is_(None))
    ).scalars())


def as_dict(client: Client) -> dict:
    return {
        "client_id": client.id,
        "name": client.name,
        "bundle_id": client.bundle_id,
        "audiences": list(client.audiences or []),
        "scopes": list(client.scopes or []),
        "created_at": client.created_at.isoformat() if client.created_at else None,
        "disabled": client.disabled_at is not None,
    }
