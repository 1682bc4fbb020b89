"""`flask clients create|list|delete` and `flask keys rotate|list`."""
from __future__ import annotations

import json

import click
from flask import Flask
from flask.cli import AppGroup

from ..infra.extensions import db
from ..models import Client
from ..oauth import clients as client_registry
from ..oauth import keys as key_store
from .extension import server

clients_cli = AppGroup("clients", help="Manage the native apps allowed to use /oauth/token.")
keys_cli = AppGroup("keys", help="Manage the keys that sign our tokens.")


def _echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


@clients_cli.command("create")
@click.option("--name", required=True, help="Display name, e.g. 'Example iOS'.")
@click.option("--bundle-id", required=True, help="The app's bundle id (its Apple App ID).")
@click.option("--audience", "audiences", multiple=True,
              help="An API the app may get tokens for (repeatable); our own API always.")
@click.option("--scope", "api_scopes", multiple=True,
              help="An API scope the app may request (repeatable), besides the OpenID ones.")
def create_client(
    name: str, bundle_id: str, audiences: tuple[str, ...], api_scopes: tuple[str, ...]
) -> None:
    """Register a native app and print it as JSON."""
    try:
        client = client_registry.create(
            db.session,
            name=name, bundle_id=bundle_id, audiences=audiences, api_scopes=api_scopes
        )
    except client_registry.ClientError as exc:
        raise click.UsageError(str(exc)) from exc
    db.session.commit()
    _echo_json(client_registry.as_dict(client))


@clients_cli.command("list")
def list_clients() -> None:
    """Print every registered app as a JSON list."""
    _echo_json([client_registry.as_dict(c) for c in client_registry.all_clients(db.session)])


@clients_cli.command("delete")
@click.argument("client_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete_client(client_id: str, yes: bool) -> None:
    """Delete an app; every session (refresh-token family) of it ends at once."""
    client = db.session.get(Client, client_id)
    if client is None:
        raise click.ClickException(f"no client with id {client_id}")
    if not yes:
        click.confirm(f"Delete {client.name} ({client.bundle_id}) and sign out all its users?",
                      abort=True)
    db.session.delete(client)
    db.session.commit()
    click.echo(f"deleted {client_id}")


@keys_cli.command("rotate")
def rotate_keys() -> None:
    """Make a new key the signer; old keys stay published until their tokens have expired."""
    oauth_server = server()
    kid, retired = key_store.rotate(db.engine, oauth_server.settings)
    oauth_server.keys.invalidate()
    _echo_json({
        "signing_kid": kid,
        "retired": [{"kid": old, "unpublish_after": when.isoformat()} for old, when in retired],
    })


@keys_cli.command("list")
def list_keys() -> None:
    """Print every key with its status: signing, published (retired) or unpublished."""
    rows = key_store.list_keys(db.session)
    _echo_json([{
        "kid": k.kid,
        "alg": k.alg,
        "status": key_store.status_of(k),
        "created_at": k.created_at.isoformat(),
        "retired_at": k.retired_at.isoformat() if k.retired_at else None,
        "unpublish_after": k.unpublish_after.isoformat() if k.unpublish_after else None,
    } for k in rows])


def init_app(app: Flask) -> None:
    app.cli.add_command(clients_cli)
    app.cli.add_command(keys_cli)
