"""`flask emulator run`: serve the emulator standalone, trusting this app's Apple settings."""
from __future__ import annotations

import dataclasses

import click
from flask import Flask
from flask import current_app
from flask.cli import AppGroup
from werkzeug.serving import run_simple

from .app import create_emulator_app
from .settings import settings_from_app

group = AppGroup("emulator", help="The offline Apple (appleid.apple.com) emulator.")


@group.command("run")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=5001, show_default=True, type=int, help="Port to listen on.")
def run(host: str, port: int) -> None:
    """Serve the emulator; point SIWA_APPLE_BASE_URL at the printed URL."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    base_url = f"http://{host}:{port}"
    settings = dataclasses.replace(settings_from_app(app), base_url=base_url)
    click.echo(f"Apple emulator (development only) on {base_url}")
    run_simple(host, port, create_emulator_app(settings), threaded=True)


def init_app(app: Flask) -> None:
    app.cli.add_command(group)
