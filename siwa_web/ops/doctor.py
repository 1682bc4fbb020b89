"""`flask apple doctor`: check the Apple settings and say, for each problem, how to fix it.

The first step of troubleshooting (docs/apple-lifecycle.md, "`flask apple doctor`"): it
exits 1 when anything is wrong, so it also fits a deployment pipeline; `--json` prints one
document for machines. Nothing secret is printed: no key, no client secret, no proxy password.
"""
from __future__ import annotations

import json

import click
from flask import Flask
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from ..infra.apple_client import apple_client
from ..infra.cli_groups import add_apple_command
from ..infra.extensions import db
from ..models import Client
from . import apple_checks
from .apple_checks import Check


def registered_bundle_ids() -> list[str]:
    """Bundle ids of the registered native clients (none if the database is not migrated)."""
    try:
        rows = db.session.execute(
            select(Client.bundle_id).where(Client.bundle_id.is_not(None)).order_by(Client.id)
        ).scalars().all()
    except SQLAlchemyError:
        db.session.rollback()
        return []
    return list(rows)


def _print(checks: list[Check]) -> None:
    cfg = current_app.config
    click.echo(f"Apple settings of {cfg['ISSUER']}: team {cfg['APPLE_TEAM_ID']}, key "
               f"{cfg['APPLE_KEY_ID']}, Services ID {cfg['APPLE_SERVICES_ID']}, Apple at "
               f"{cfg['APPLE_BASE_URL']}")
    if cfg.get("APPLE_EMULATOR"):
        click.echo("(APPLE_EMULATOR is on: the remote checks talk to the emulator)")
    for check in checks:
        click.echo(f"  {'ok' if check.ok else 'PROBLEM':8} {check.name}: {check.message}")
        if check.fix:
            click.echo(f"  {'':8} fix: {check.fix}")
    problems = sum(not c.ok for c in checks)
    click.echo(f"{problems} problem(s) found." if problems else "No problems found.")


@click.command("doctor")
@with_appcontext
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
def doctor_command(as_json: bool) -> None:
    """Check the Apple settings, Apple's reachability, our credentials and the clock.

    Exits 1 if any check found a problem. Reads ISSUER, APPLE_BASE_URL, APPLE_TEAM_ID,
    APPLE_KEY_ID, APPLE_PRIVATE_KEY (or APPLE_PRIVATE_KEY_PATH), APPLE_SERVICES_ID,
    APPLE_REDIRECT_URI, HTTPS_PROXY / NO_PROXY, and the native clients' bundle ids
    (SQLALCHEMY_DATABASE_URI).
    """
    apple = apple_client()
    checks = apple_checks.run(current_app.config, apple.settings, apple.session,
                              registered_bundle_ids())
    problems = sum(not c.ok for c in checks)
    if as_json:
        click.echo(json.dumps({"ok": not problems, "problems": problems,
                               "checks": [c.as_json() for c in checks]}, indent=2))
    else:
        _print(checks)
    if problems:
        raise SystemExit(1)


def init_app(app: Flask) -> None:
    """Add `flask apple doctor` (joining or creating the `apple` group)."""
    add_apple_command(app, doctor_command)
