"""`flask apple validate-tokens`: the daily check of every stored Apple refresh token.

Apple asks servers to validate a stored refresh token (`grant_type=refresh_token` at
`/auth/token`) at most once a day, and answers `invalid_grant` once the person stopped using
Sign in with Apple for our apps — often without a notification reaching us. So once a day per
token, oldest check first:

* Apple answers tokens → the token is good; checked again one interval later.
* `invalid_grant` → the same outcome as a `consent-revoked` notification for that Apple ID
  (`users.apple_access.consent_withdrawn`): its web and app sessions end, back-channel logouts
  are queued, the stored tokens are marked dead, an audit event says why.
* A timeout, a 5xx or garbage → nothing changes; the token is due again on the next run.
* `invalid_client` → our credentials are wrong, not the person's: no user changes, one error
  names the settings to check, the run stops and the command exits non-zero.

Runs may overlap (cron): a token is claimed with a compare-and-set on `next_check_at` (a lease,
as the outboxes do) before Apple is called, so two runs never check one token at once. Apple
calls run on a few threads, paced to an overall rate with jitter (Apple may throttle); the
database is only touched from the calling thread.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

import click
from flask import Flask
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import select
from sqlalchemy import update

from ..apple import AppleClient
from ..apple.errors import AppleMisconfigured
from ..apple.errors import AppleRejected
from ..apple.errors import AppleUnavailable
from ..infra.apple_client import apple_client
from ..infra.cli_groups import add_apple_command
from ..infra.extensions import db
from ..models import AppleIdentity
from ..models import AppleToken
from ..models.base import now_utc
from ..users import apple_access
from ..users.accounts import cipher

log = logging.getLogger(__name__)
VALID, REVOKED = apple_access.VALID, apple_access.REVOKED
UNAVAILABLE, REJECTED, MISCONFIGURED = "unavailable", "rejected", "misconfigured"
SETTINGS_TO_CHECK = ("SIWA_APPLE_TEAM_ID, SIWA_APPLE_KEY_ID, SIWA_APPLE_PRIVATE_KEY (or "
                     "_PRIVATE_KEY_PATH) and the token's client id (SIWA_APPLE_SERVICES_ID or the "
                     "app's bundle id)")


@dataclass(frozen=True)
class Claimed:
    """A token this run holds the lease on; `sealed` is what was stored when it was claimed."""

    id: str
    identity_id: str
    client_id: str
    sealed: str
    was_due_at: datetime


@dataclass
class Report:
    """What one run did."""

    valid: int = 0
    revoked: int = 0
    unavailable: int = 0  # timeouts, 5xx, garbage: retried on the next run
    rejected: int = 0  # another Apple error, or a token we cannot decrypt: retried too
    skipped: int = 0  # claimed by a concurrent run
    misconfigured: bool = False
    batches: int = 0

    @property
    def checked(self) -> int:
        return self.valid + self.revoked + self.unavailable + self.rejected


@dataclass(frozen=True)
class Pace:
    """How hard to press Apple: threads, an overall rate and random jitter."""

    concurrency: int = 4
    rate: float = 5.0  # calls started per second at most
    jitter: float = 0.5  # extra random wait, as a share of 1/rate

    @classmethod
    def from_config(cls, config: dict) -> Pace:
        return cls(int(config["APPLE_TOKEN_CHECK_CONCURRENCY"]),
                   float(config["APPLE_TOKEN_CHECK_RATE"]),
                   float(config["APPLE_TOKEN_CHECK_JITTER"]))


class Pacer:
    """Hands out start times at least 1/rate apart (plus jitter), whichever thread asks."""

    def __init__(self, pace: Pace, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None):
        self.spacing = 1.0 / pace.rate
        self.jitter = pace.jitter
        self._sleep, self._clock, self._rng = sleep, clock, rng or random.Random()
        self._lock = threading.Lock()
        self._next = clock()

    def wait(self) -> None:
        with self._lock:
            start = max(self._next, self._clock())
            start += self._rng.uniform(0, self.spacing * self.jitter)
            self._next = start + self.spacing
        delay = start - self._clock()
        if delay > 0:
            self._sleep(delay)


def validate_due(*, limit: int, batch: int, pace: Pace,
                 echo: Callable[[str], None] = lambda line: None,
                 sleep: Callable[[float], None] = time.sleep) -> Report:
    """Check up to `limit` due tokens, `batch` at a time; one progress line per batch."""
    report = Report()
    client = apple_client()
    pacer = Pacer(pace, sleep=sleep)
    seen: set[str] = set()
    while report.checked + report.skipped < limit and not report.misconfigured:
        ids = _due_ids(min(batch, limit - report.checked - report.skipped), seen)
        if not ids:
            break
        seen.update(ids)
        claimed = _claim(ids)
        report.skipped += len(ids) - len(claimed)
        outcomes = _ask_apple(client, claimed, pace, pacer)
        for token, outcome in zip(claimed, outcomes, strict=True):
            _write_outcome(token, outcome, report)
        report.batches += 1
        echo(_progress(report, len(claimed)))
        if claimed and all(o == UNAVAILABLE for o in outcomes):
            log.warning("Apple unavailable for a whole batch; the rest waits for the next run",
                        extra={"event": "apple_unavailable"})
            break
    return report


def _due_ids(count: int, seen: set[str]) -> list[str]:
    """The ids of due tokens still held, oldest check first, not yet looked at in this run."""
    stmt = (select(AppleToken.id)
            .where(AppleToken.next_check_at <= now_utc(),
                   AppleToken.refresh_token_encrypted.is_not(None),
                   AppleToken.invalidated_at.is_(None))
            .order_by(AppleToken.next_check_at, AppleToken.id))
    if seen:
        stmt = stmt.where(AppleToken.id.not_in(seen))
    ids = list(db.session.scalars(stmt.limit(count)))
    db.session.commit()
    return ids


def _claim(ids: list[str]) -> list[Claimed]:
    """Take each still-due token by pushing `next_check_at` past the lease; skip lost races."""
    lease = now_utc() + timedelta(seconds=int(current_app.config["APPLE_TOKEN_CHECK_LEASE"]))
    won = []
    for token_id in ids:
        row = db.session.execute(
            select(AppleToken.id, AppleToken.identity_id, AppleToken.client_id,
                   AppleToken.refresh_token_encrypted, AppleToken.next_check_at)
            .where(AppleToken.id == token_id)
        ).one_or_none()
        if row is None or not row.refresh_token_encrypted or row.next_check_at > now_utc():
            continue
        taken = db.session.execute(
            update(AppleToken)
            .where(AppleToken.id == token_id, AppleToken.next_check_at == row.next_check_at,
                   AppleToken.refresh_token_encrypted == row.refresh_token_encrypted)
            .values(next_check_at=lease)
            .execution_options(synchronize_session=False)
        ).rowcount == 1
        db.session.commit()
        if taken:
            won.append(Claimed(row.id, row.identity_id, row.client_id,
                               row.refresh_token_encrypted, row.next_check_at))
    return won


def _ask_apple(client: AppleClient, claimed: list[Claimed], pace: Pace,
               pacer: Pacer) -> list[str]:
    """Refresh each claimed token at Apple on `pace.concurrency` threads; outcomes in order."""
    if not claimed:
        return []
    plain = [_decrypt(token) for token in claimed]

    def check(index: int) -> str:
        if plain[index] is None:
            return REJECTED
        pacer.wait()
        return _refresh(client, claimed[index].client_id, plain[index])

    with ThreadPoolExecutor(max_workers=max(1, pace.concurrency)) as pool:
        return list(pool.map(check, range(len(claimed))))


def _decrypt(token: Claimed) -> str | None:
    try:
        return cipher().decrypt(token.sealed)
    except ValueError:
        log.error("Apple token %s cannot be decrypted: check TOKEN_ENCRYPTION_KEYS", token.id,
                  extra={"event": "apple_token_undecryptable"})
        return None


def _refresh(client: AppleClient, client_id: str, refresh_token: str) -> str:
    """One call to Apple, mapped to an outcome (never raises: a thread must not lose a token)."""
    try:
        client.refresh(client_id=client_id, refresh_token=refresh_token)
    except AppleMisconfigured:
        return MISCONFIGURED
    except AppleRejected as exc:
        return REVOKED if exc.error == "invalid_grant" else REJECTED
    except AppleUnavailable:
        return UNAVAILABLE
    except Exception:  # noqa: BLE001 - a bug in one call must not strand the batch's leases
        log.exception("Apple token check failed unexpectedly",
                      extra={"event": "apple_token_check_crash"})
        return UNAVAILABLE
    return VALID


def _write_outcome(token: Claimed, outcome: str, report: Report) -> None:
    """Write one outcome in its own transaction."""
    if outcome == VALID:
        report.valid += 1
        _mark_valid(token)
    elif outcome == REVOKED:
        report.revoked += 1
        _withdraw(token)
    else:
        if outcome == MISCONFIGURED and not report.misconfigured:
            report.misconfigured = True
            log.error("Apple refused our client credentials (invalid_client) while checking "
                      "stored tokens; no user was changed. Check %s.", SETTINGS_TO_CHECK,
                      extra={"event": "apple_invalid_client",
                             "client_id": token.client_id})
        if outcome == UNAVAILABLE:
            report.unavailable += 1
        elif outcome == REJECTED:
            report.rejected += 1
        _release(token)
    db.session.commit()


def _still_ours(token: Claimed) -> list:
    """The row is unchanged since the claim: same stored token (a sign-in may have resealed)."""
    return [AppleToken.id == token.id, AppleToken.refresh_token_encrypted == token.sealed]


def _mark_valid(token: Claimed) -> None:
    now = now_utc()
    interval = timedelta(seconds=int(current_app.config["APPLE_TOKEN_CHECK_INTERVAL"]))
    db.session.execute(
        update(AppleToken).where(*_still_ours(token))
        .values(checked_at=now, check_state=VALID, next_check_at=now + interval)
        .execution_options(synchronize_session=False))


def _release(token: Claimed) -> None:
    """Give the lease back: the token is due again as it was, for the next run."""
    db.session.execute(
        update(AppleToken).where(*_still_ours(token))
        .values(next_check_at=token.was_due_at)
        .execution_options(synchronize_session=False))


def _withdraw(token: Claimed) -> None:
    """invalid_grant: end the Apple ID's access, unless a sign-in stored a new token meanwhile."""
    row = db.session.scalar(select(AppleToken).where(*_still_ours(token)).with_for_update())
    if row is None:
        return
    row.checked_at = now_utc()
    identity = db.session.get(AppleIdentity, token.identity_id)
    apple_access.consent_withdrawn(identity, via="daily_check", client_id=token.client_id)


def _progress(report: Report, claimed: int) -> str:
    return (f"batch {report.batches}: {claimed} checked; so far {report.valid} valid, "
            f"{report.revoked} revoked, {report.unavailable} unavailable, "
            f"{report.rejected} failed, {report.skipped} skipped (claimed by another run)")


@click.command("validate-tokens")
@with_appcontext
@click.option("--limit", default=10_000, show_default=True, type=click.IntRange(min=1),
              help="Most tokens to check in this run.")
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="Tokens per batch [default: APPLE_TOKEN_CHECK_BATCH].")
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="Apple calls in flight [default: APPLE_TOKEN_CHECK_CONCURRENCY].")
@click.option("--rate", type=click.FloatRange(min=0.01), default=None,
              help="Apple calls per second at most [default: APPLE_TOKEN_CHECK_RATE].")
def validate_tokens_command(limit: int, batch: int | None, concurrency: int | None,
                            rate: float | None) -> None:
    """Check stored Apple refresh tokens at Apple, each at most once a day (safe from cron).

    Exits 1 when Apple says invalid_client (our Apple settings are wrong; nobody is signed
    out). Timeouts and Apple errors leave the tokens due for the next run.

    Reads APPLE_TOKEN_CHECK_INTERVAL, APPLE_TOKEN_CHECK_BATCH, APPLE_TOKEN_CHECK_CONCURRENCY,
    APPLE_TOKEN_CHECK_RATE, APPLE_TOKEN_CHECK_JITTER and APPLE_TOKEN_CHECK_LEASE, the Apple
    settings (APPLE_TEAM_ID, APPLE_KEY_ID, the private key) and TOKEN_ENCRYPTION_KEYS.
    """
    cfg = current_app.config
    # Back-channel logouts for the sessions this ends go out in this process, after each commit:
    # a background thread would be cut short when the command exits (the outbox keeps the rows).
    cfg["BACKCHANNEL_LOGOUT_DELIVERY"] = "inline"
    pace = Pace.from_config(cfg)
    pace = Pace(concurrency or pace.concurrency, rate or pace.rate, pace.jitter)
    report = validate_due(limit=limit, batch=batch or int(cfg["APPLE_TOKEN_CHECK_BATCH"]),
                          pace=pace, echo=click.echo)
    click.echo(f"Apple token check: {report.checked} checked: {report.valid} valid, "
               f"{report.revoked} revoked (their sessions ended), {report.unavailable} "
               f"unavailable and {report.rejected} failed (due again next run), "
               f"{report.skipped} skipped (claimed by another run).")
    if report.misconfigured:
        click.echo(f"Apple said invalid_client: check {SETTINGS_TO_CHECK}.", err=True)
        raise SystemExit(1)


def init_app(app: Flask) -> None:
    """Add `flask apple validate-tokens`, joining the `apple` group or making it."""
    add_apple_command(app, validate_tokens_command)
