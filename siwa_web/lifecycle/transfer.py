"""`flask apple transfer export|import|status`: keep every user through an Apple team transfer.

Apple scopes a user's `sub` to the developer team, so moving the app to another team changes
every user's `sub` (docs/apple-lifecycle.md, "Team transfer"). Before the move, `export` asks
Apple (with the old team's credentials) for a `transfer_sub` per stored identity; after it,
`import` (with the new team's credentials) trades each one for the user's new `sub` and
rewrites the identity. Both go row by row and commit each row, so they can be stopped and run
again: done rows are skipped. An Apple outage or `invalid_client` stops the run (nothing is
lost; run it again); a user Apple refuses (say, one who revoked access) is listed and skipped.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import click
from flask import Flask
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..apple.errors import AppleMisconfigured
from ..apple.errors import AppleRejected
from ..apple.errors import AppleUnavailable
from ..apple.migration import MigrationClient
from ..infra.apple_client import apple_client
from ..infra.cli_groups import add_apple_command
from ..infra.extensions import db
from ..models import AppleIdentity
from ..models.base import now_utc
from ..users import transfer as moves

log = logging.getLogger(__name__)
TEAM_ID = re.compile(r"[A-Z0-9]{10}")
BATCH = 100
PROGRESS_EVERY = 100

transfer_cli = AppGroup("transfer", help="Move users to a new Apple team's subs (TN3159): "
                                         "export before the transfer, import after it.")
json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print one JSON document instead of text.")
client_option = click.option(
    "--client-id", default=None,
    help="Apple client id to authenticate as (default: APPLE_SERVICES_ID).")


class Stopped(Exception):
    """The run cannot go on (Apple down, our credentials refused); done rows stay done."""


@dataclass
class Run:
    """What one export or import run did, for the summary and --json."""

    total: int
    done: int = 0
    skipped: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    stopped: str | None = None

    def as_json(self, **extra: Any) -> dict[str, Any]:
        return {**extra, "total": self.total, "done": self.done, "skipped": self.skipped,
                "failures": self.failures, "conflicts": self.conflicts,
                "stopped": self.stopped, "ok": self.ok}

    @property
    def ok(self) -> bool:
        return self.stopped is None and not self.failures and not self.conflicts


# --- export (old team) ---------------------------------------------------------------------------


def _to_export(target: str):
    """Identities without a transfer_sub for `target` yet (all of them on the first run)."""
    return or_(AppleIdentity.transfer_sub.is_(None), AppleIdentity.transfer_team.is_(None),
               AppleIdentity.transfer_team != target)


def export(migration: MigrationClient, target: str, progress: Progress) -> Run:
    """Fetch and store a transfer_sub for every identity that lacks one for `target`."""
    run = Run(total=_count(_to_export(target)))
    for identity in _rows(_to_export(target)):
        try:
            transfer_sub = _ask(lambda i=identity: migration.transfer_sub(i.sub, target))
        except AppleRejected as exc:
            run.failures.append(_failure(identity, exc))
            continue
        except Stopped as exc:
            run.stopped = str(exc)
            break
        identity.transfer_sub, identity.transfer_team = transfer_sub, target
        identity.transfer_exported_at, identity.transferred_at = now_utc(), None
        db.session.commit()
        run.done += 1
        progress.step(run.done + len(run.failures), run.total)
    return run


# --- import (new team) ---------------------------------------------------------------------------


def _to_import():
    return (AppleIdentity.transfer_sub.is_not(None)) & (AppleIdentity.transferred_at.is_(None))


def import_subs(migration: MigrationClient, progress: Progress, *, dry_run: bool) -> Run:
    """Trade each pending transfer_sub for the new sub and move the identity to it."""
    run = Run(total=_count(_to_import()))
    for identity in _rows(_to_import()):
        try:
            migrated = _ask(lambda i=identity: migration.exchange(i.transfer_sub or ""))
        except AppleRejected as exc:
            run.failures.append(_failure(identity, exc))
            continue
        except Stopped as exc:
            run.stopped = str(exc)
            break
        try:
            moved = moves.move_identity(identity, migrated.sub, via="import", email=migrated.email,
                                        is_private_email=migrated.is_private_email)
        except moves.SubTaken as exc:
            db.session.rollback()
            run.conflicts.append({"identity": identity.id, "user": identity.user_id,
                                  "other_user": exc.other_user_id})
            continue
        if dry_run:
            db.session.rollback()
        elif not _commit(run, identity):
            continue
        run.done += moved
        run.skipped += not moved
        progress.step(run.done + run.skipped + len(run.failures) + len(run.conflicts), run.total)
    return run


# --- shared --------------------------------------------------------------------------------------


def _count(where) -> int:
    return db.session.execute(select(func.count()).select_from(AppleIdentity).where(where)
                              ).scalar_one()


def _rows(where) -> Iterator[AppleIdentity]:
    """Matching identities in id order, a batch at a time (keyset: safe while rows change)."""
    after = ""
    while True:
        batch = db.session.execute(
            select(AppleIdentity).where(where, AppleIdentity.id > after)
            .order_by(AppleIdentity.id).limit(BATCH)
        ).scalars().all()
        if not batch:
            return
        for identity in batch:
            after = identity.id
            yield identity


def _commit(run: Run, identity: AppleIdentity) -> bool:
    """Commit one move; a sign-in that took the same sub a moment ago is a conflict, not a crash."""
    ids = {"identity": identity.id, "user": identity.user_id}
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        run.conflicts.append({**ids, "other_user": None})
        return False
    return True


def _ask(call):
    """Run one Apple call; what should stop the whole run becomes `Stopped`."""
    try:
        return call()
    except AppleMisconfigured as exc:
        raise Stopped("Apple said invalid_client: check APPLE_TEAM_ID, APPLE_KEY_ID, "
                      "APPLE_PRIVATE_KEY and the client id (run `flask apple doctor`)") from exc
    except AppleUnavailable as exc:
        raise Stopped(f"Apple unavailable ({exc}); run the command again to resume") from exc


def _failure(identity: AppleIdentity, exc: AppleRejected) -> dict[str, Any]:
    return {"identity": identity.id, "user": identity.user_id, "error": exc.error,
            "description": exc.description}


class Progress:
    """A progress line every PROGRESS_EVERY rows (text mode only)."""

    def __init__(self, verb: str, quiet: bool) -> None:
        self.verb, self.quiet = verb, quiet

    def step(self, n: int, total: int) -> None:
        if not self.quiet and n % PROGRESS_EVERY == 0:
            click.echo(f"{self.verb} {n} of {total}...")


def _migration(client_id: str | None) -> MigrationClient:
    return MigrationClient(apple_client(), client_id or current_app.config["APPLE_SERVICES_ID"])


def _report(run: Run, what: str, as_json: bool, **extra: Any) -> None:
    """Log and print the summary (or JSON); exit 1 unless everything went through."""
    log.info("apple transfer %s finished", what.lower(), extra={
        "event": "apple_transfer", "done": run.done, "skipped": run.skipped,
        "refused": len(run.failures), "conflicts": len(run.conflicts), "total": run.total,
        "stopped": run.stopped is not None})
    if as_json:
        click.echo(json.dumps(run.as_json(**extra), indent=2))
    else:
        click.echo(f"{what}: {run.done} done, {run.skipped} already done, "
                   f"{len(run.failures)} refused by Apple, {len(run.conflicts)} conflicts, "
                   f"of {run.total} pending.")
        for f in run.failures:
            click.echo(f"  refused: identity {f['identity']} (user {f['user']}): {f['error']}"
                       + (f" ({f['description']})" if f["description"] else ""), err=True)
        for c in run.conflicts:
            owner = f"user {c['other_user']}" if c["other_user"] else "another identity"
            click.echo(f"  conflict: identity {c['identity']} (user {c['user']}): its new sub "
                       f"belongs to {owner}; nothing changed", err=True)
        if run.stopped:
            click.echo(f"Stopped: {run.stopped}", err=True)
    if not run.ok:
        raise SystemExit(1)


@transfer_cli.command("export")
@click.option("--target-team", required=True, help="The team id the app moves to.")
@client_option
@json_option
def export_command(target_team: str, client_id: str | None, as_json: bool) -> None:
    """Before the transfer, with the current team's credentials: store a transfer_sub per user.

    Safe to run again: identities that have one for this target team are skipped.
    """
    if not TEAM_ID.fullmatch(target_team):
        raise click.BadParameter("a team id is 10 characters, A-Z and 0-9",
                                 param_hint="--target-team")
    if target_team == current_app.config["APPLE_TEAM_ID"]:
        raise click.BadParameter("that is the configured (current) team",
                                 param_hint="--target-team")
    run = export(_migration(client_id), target_team, Progress("Exported", as_json))
    _report(run, "Export", as_json, target_team=target_team)


@transfer_cli.command("import")
@click.option("--dry-run", is_flag=True, help="Ask Apple and report, but change nothing.")
@client_option
@json_option
def import_command(dry_run: bool, client_id: str | None, as_json: bool) -> None:
    """After the transfer, with the new team's credentials: move identities to their new subs.

    A new sub that already belongs to another user is reported and left alone (no merging).
    Safe to run again: moved identities are skipped.
    """
    run = import_subs(_migration(client_id), Progress("Imported", as_json), dry_run=dry_run)
    _report(run, "Import (dry run)" if dry_run else "Import", as_json, dry_run=dry_run)


@transfer_cli.command("status")
@json_option
def status_command(as_json: bool) -> None:
    """Count identities by transfer state: not exported, exported per team, moved.

    Reads only the database (SQLALCHEMY_DATABASE_URI); never calls Apple.
    """
    rows = db.session.execute(
        select(AppleIdentity.transfer_team, AppleIdentity.transferred_at.is_not(None),
               func.count())
        .group_by(AppleIdentity.transfer_team, AppleIdentity.transferred_at.is_not(None))
    ).all()
    counts: dict[str, dict[str, int]] = {}
    for team, moved, n in rows:
        entry = counts.setdefault(team or "", {"exported": 0, "moved": 0})
        entry["moved" if moved else "exported"] += n
    not_exported = counts.pop("", {"exported": 0, "moved": 0})["exported"]
    if as_json:
        click.echo(json.dumps({"not_exported": not_exported, "teams": counts}, indent=2))
        return
    click.echo(f"Not exported: {not_exported}")
    for team, entry in sorted(counts.items()):
        click.echo(f"Target team {team}: {entry['exported']} waiting for import, "
                   f"{entry['moved']} moved")


def init_app(app: Flask) -> None:
    """Add `flask apple transfer ...` (joining or creating the `apple` group)."""
    add_apple_command(app, transfer_cli)
