"""Command groups that several packages add to (`flask apple ...`), made on first use."""
from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

APPLE_HELP = "Talk to Apple's Sign in with Apple REST API."


def add_apple_command(app: Flask, command: click.Command) -> None:
    """Put `command` in `flask apple`, whichever package's `init_app` runs first."""
    group = app.cli.commands.get("apple")
    if not isinstance(group, click.Group):
        group = AppGroup("apple", help=APPLE_HELP)
        app.cli.add_command(group)
    group.add_command(command)
