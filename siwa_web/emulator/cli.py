"""`flask emulator run`: serve the emulator standalone, trusting this app's Apple settings."""
from __future__ import annotations

import dataclasses
import socket

import click
from flask import Flask
from flask import current_app
from flask.cli import AppGroup
from werkzeug.serving import run_simple

from .app import create_emulator_app
from .settings import settings_from_app
from .settings import state_file
from .store import KEEP_ON_RESET
from .store import StateFile

group = AppGroup("emulator", help="The offline Apple (appleid.apple.com) emulator.")


@group.command("run")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=5001, show_default=True, type=click.IntRange(1, 65535),
              help="Port to listen on (1-65535).")
def run(host: str, port: int) -> None:
    """Serve the emulator standalone; point SIWA_APPLE_BASE_URL at the printed URL.

    Development only. It trusts this app's Apple settings: APPLE_TEAM_ID, the public half of
    APPLE_PRIVATE_KEY under APPLE_KEY_ID, APPLE_SERVICES_ID with APPLE_REDIRECT_URI; as bundle
    ids, the registered native clients (SQLALCHEMY_DATABASE_URI) and EMULATOR_BUNDLE_IDS; it
    sends notifications to EMULATOR_NOTIFICATION_URL. Refused when ENV is production.
    """
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    if app.config.get("ENV") == "production":
        raise click.UsageError("the Apple emulator is for development only (ENV is production)")
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise click.BadParameter(f"{host!r} is not an address or host name this machine can "
                                 "resolve (e.g. 127.0.0.1)", param_hint="--host") from None
    base_url = f"http://{host}:{port}"
    settings = dataclasses.replace(settings_from_app(app), base_url=base_url)
    click.echo(f"Apple emulator (development only) on {base_url}")
    run_simple(host, port, create_emulator_app(settings), threaded=True)


@group.command("reset")
@click.option("--keys", is_flag=True, help="Also forget the signing keys (RPs refetch them).")
def reset(keys: bool) -> None:
    """Forget the emulator's users, consents and tokens kept in instance/ across restarts.

    A running emulator notices at its next request. siwa-web's accounts are not touched: a test
    user created afterwards gets a new Apple user id, and so a new siwa-web account.

    Reads EMULATOR_STATE_FILE (default instance/emulator-state.sqlite; empty: memory only).
    """
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    path = state_file(app)
    if path is None:
        click.echo("The emulator keeps its state in memory (EMULATOR_STATE_FILE is empty).")
        return
    if not path.exists():
        click.echo(f"Nothing to reset: {path} does not exist.")
        return
    store = StateFile(path)
    try:
        removed = store.clear(keep=() if keys else KEEP_ON_RESET)
    finally:
        store.close()
    click.echo(f"Emulator state reset: {removed} record(s) removed from {path}.")


def init_app(app: Flask) -> None:
    from .consent import withdraw_consent_command

    group.add_command(withdraw_consent_command)
    app.cli.add_command(group)
