"""`flask clients create|list|rotate-secret|disable|enable|delete` and `flask keys rotate|list`."""
from __future__ import annotations

import json
import shlex

import click
from flask import Flask
from flask import current_app
from flask.cli import AppGroup

from ..config import is_production
from ..infra.extensions import db
from ..models import Client
from ..oauth import clients as client_registry
from ..oauth import keys as key_store
from .extension import server

clients_cli = AppGroup("clients", help="""Manage the apps that get siwa-web's tokens.

Native apps (iOS) exchange Apple's authorization code at /oauth/token; web apps sign people in
through /oauth/authorize and redeem the code at /oauth/token.

Every command works on the database of SQLALCHEMY_DATABASE_URI (SIWA_SQLALCHEMY_DATABASE_URI),
read like every setting: defaults, then instance/config.py, then SIWA_* variables. `create` also
reads ENV (SIWA_ENV), APPLE_SERVICES_ID and ISSUER (DEFAULT_AUDIENCE). Changes apply to the next
request of every worker: clients are read from the database on each request, never cached.
""")
keys_cli = AppGroup("keys", help="""Manage the keys that sign our tokens (published at
/.well-known/jwks.json).

Reads SQLALCHEMY_DATABASE_URI, SIGNING_ALG (the algorithm of new keys) and TOKEN_ENCRYPTION_KEYS
(private keys are stored encrypted with them). Workers see a change within
SIGNING_KEY_CACHE_SECONDS.
""")


def _echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


@clients_cli.command("create")
@click.option("--type", "kind", type=click.Choice([client_registry.NATIVE, client_registry.WEB]),
              default=client_registry.NATIVE, show_default=True,
              help="native: an iOS app exchanging Apple codes; web: a web app signing people "
                   "in through /oauth/authorize.")
@click.option("--name", required=True, help="Display name, e.g. 'Example iOS'.")
@click.option("--bundle-id", help="Native apps: the app's bundle id (its Apple App ID).")
@click.option("--redirect-uri", "redirect_uris", multiple=True,
              help="Web apps: where codes may be sent (repeatable; exact match).")
@click.option("--post-logout-redirect-uri", "logout_uris", multiple=True,
              help="Web apps: where RP-initiated logout may return (repeatable; exact match).")
@click.option("--backchannel-logout-uri", help="Web apps: where logout tokens are posted.")
@click.option("--public", is_flag=True,
              help="Web apps: no secret (single-page apps); PKCE is then required.")
@click.option("--first-party", is_flag=True,
              help="Web apps: your own app; people are not asked for consent.")
@click.option("--audience", "audiences", multiple=True,
              help="An API the app may get tokens for (repeatable): an absolute URI such as "
                   "https://api.example.com; our own API (DEFAULT_AUDIENCE) always.")
@click.option("--scope", "api_scopes", multiple=True,
              help="An API scope the app may request (repeatable), e.g. read:things. The "
                   "OpenID scopes (openid profile email offline_access) are always allowed "
                   "and refused here.")
@click.option("--export", "as_exports", is_flag=True,
              help="Print `export CLIENT_ID=...` (and CLIENT_SECRET) for eval in a shell, "
                   "instead of JSON.")
def create_client(
    kind: str, name: str, bundle_id: str | None, redirect_uris: tuple[str, ...],
    logout_uris: tuple[str, ...], backchannel_logout_uri: str | None, public: bool,
    first_party: bool, audiences: tuple[str, ...], api_scopes: tuple[str, ...],
    as_exports: bool,
) -> None:
    """Register an app and print it as JSON.

    A native app needs --bundle-id: its App ID, unique without regard to case, and never the
    web sign-in's Services ID (APPLE_SERVICES_ID). A web app needs at least one --redirect-uri
    and, unless --public, gets a client secret: it is shown once, in this output, and stored
    only as a SHA-256 hash (if it is lost, use rotate-secret).

    Redirect, post-logout and back-channel logout URIs must be absolute https URLs with a host,
    without fragment, user information (@), wildcards, dot segments, spaces or control
    characters; requests must then present them exactly. Plain http is accepted only for
    localhost and loopback addresses, and only when ENV (SIWA_ENV) is not production.

    Audiences must be absolute URIs without a fragment (https://api.example.com,
    urn:example:api). --scope names API scopes; the OpenID scopes are always allowed.
    """
    web_only = {"--redirect-uri": redirect_uris, "--post-logout-redirect-uri": logout_uris,
                "--backchannel-logout-uri": backchannel_logout_uri, "--public": public,
                "--first-party": first_party}
    secret = None
    try:
        if kind == client_registry.NATIVE:
            given = [flag for flag, value in web_only.items() if value]
            if given:
                raise click.UsageError(f"{', '.join(given)}: only for --type web")
            if not bundle_id:
                raise click.UsageError("a native client needs --bundle-id")
            client = client_registry.create(
                db.session, name=name, bundle_id=bundle_id, audiences=audiences,
                api_scopes=api_scopes, web_services_id=current_app.config.get("APPLE_SERVICES_ID"),
            )
        else:
            if bundle_id:
                raise click.UsageError("--bundle-id: only for --type native")
            client, secret = client_registry.create_web(
                db.session, name=name, redirect_uris=redirect_uris,
                post_logout_redirect_uris=logout_uris,
                backchannel_logout_uri=backchannel_logout_uri, public=public,
                first_party=first_party, audiences=audiences, api_scopes=api_scopes,
                production=is_production(current_app))
    except client_registry.ClientError as exc:
        raise click.UsageError(str(exc)) from exc
    db.session.commit()
    if as_exports:
        found = {"CLIENT_ID": client.id, **({"CLIENT_SECRET": secret} if secret else {})}
        click.echo("export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in found.items()))
        return
    body = client_registry.as_dict(client)
    if secret is not None:
        body["client_secret"] = secret
    _echo_json(body)


@clients_cli.command("rotate-secret")
@click.argument("client_id")
def rotate_secret(client_id: str) -> None:
    """Give a confidential web app a new secret and print it once.

    The old secret stops working as soon as this command ends (there is no overlap): give the
    app its new secret at once. Public web apps and native apps have no secret and are refused.
    Reads only the database (SQLALCHEMY_DATABASE_URI).
    """
    try:
        secret = client_registry.rotate_secret(db.session, client_id)
    except client_registry.ClientError as exc:
        raise click.UsageError(str(exc)) from exc
    db.session.commit()
    _echo_json({"client_id": client_id, "client_secret": secret})


@clients_cli.command("list")
def list_clients() -> None:
    """Print every registered app, with its type, as a JSON list.

    Shows each app's settings, never a secret nor its hash. Reads only the database
    (SQLALCHEMY_DATABASE_URI).
    """
    _echo_json([client_registry.as_dict(c) for c in client_registry.all_clients(db.session)])


def _set_disabled(client_id: str, disabled: bool) -> None:
    try:
        client, changed = client_registry.set_disabled(db.session, client_id, disabled)
    except client_registry.ClientError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    body = client_registry.as_dict(client)
    body["changed"] = changed
    _echo_json(body)


@clients_cli.command("disable")
@click.argument("client_id")
def disable_client(client_id: str) -> None:
    """Stop an app from getting or using tokens, until `enable`; print it as JSON.

    Its token requests (exchange, code, refresh) are refused with 401 invalid_client, web apps'
    sign-in links with an error page, and the access tokens it holds with 401 invalid_token on
    siwa-web's API at once (other APIs accept them until they expire, ACCESS_TOKEN_TTL).
    Its sessions are kept: `enable` makes them work again. Reads only the database
    (SQLALCHEMY_DATABASE_URI).
    """
    _set_disabled(client_id, True)


@clients_cli.command("enable")
@click.argument("client_id")
def enable_client(client_id: str) -> None:
    """Let a disabled app get and use tokens again; print it as JSON.

    Its sessions that have not expired work again. Reads only the database
    (SQLALCHEMY_DATABASE_URI).
    """
    _set_disabled(client_id, False)


@clients_cli.command("delete")
@click.argument("client_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete_client(client_id: str, yes: bool) -> None:
    """Delete an app and sign its users out of it.

    Every session (token family) of the app ends at once, with its access and refresh tokens,
    and its pending codes and consents go too. Asks first unless --yes. Reads only the
    database (SQLALCHEMY_DATABASE_URI).
    """
    client = db.session.get(Client, client_id)
    if client is None:
        raise click.ClickException(f"no client with id {client_id} (flask clients list shows them)")
    if not yes:
        # A web app has no bundle id: name it by where it receives codes.
        where = client.bundle_id or ", ".join(client.redirect_uris or ())
        click.confirm(f"Delete {client.name} ({where}) and sign out all its users?", abort=True)
    db.session.delete(client)
    db.session.commit()
    click.echo(f"deleted {client_id}")


@keys_cli.command("rotate")
def rotate_keys() -> None:
    """Make a new key the signer; old keys stay published until their tokens have expired.

    The new key uses SIGNING_ALG; old keys are unpublished after the longest token lifetime
    (ACCESS_TOKEN_TTL, ID_TOKEN_TTL) plus a margin.
    """
    oauth_server = server()
    kid, retired = key_store.rotate(db.engine, oauth_server.settings)
    oauth_server.keys.invalidate()
    _echo_json({
        "signing_kid": kid,
        "retired": [{"kid": old, "unpublish_after": when.isoformat()} for old, when in retired],
    })


@keys_cli.command("list")
def list_keys() -> None:
    """Print every key with its status: signing, published (retired) or unpublished.

    Reads only the database (SQLALCHEMY_DATABASE_URI); never prints a private key.
    """
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
