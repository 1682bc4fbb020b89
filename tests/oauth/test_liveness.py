"""The Bearer liveness cache: revocations reach every process at once; traffic keeps it warm.

A second `create_app` on the same database stands in for another gunicorn worker: it has its
own cache and hears of changes only through the signal (a file beside SQLite, NOTIFY on
PostgreSQL).
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from siwa_web import create_app
from siwa_web.infra.extensions import db
from siwa_web.models import TokenFamily
from siwa_web.models import User
from siwa_web.oauth.liveness import FileSignal
from siwa_web.oauth.liveness import LivenessCache
from siwa_web.oauth.liveness import PostgresSignal
from siwa_web.tokens.extension import server
from support.tokens import bearer
from support.tokens import post_token
from support.tokens import refresh_params


class Signal:
    """A signal under the test's control."""

    def __init__(self) -> None:
        self.value: object = 0
        self.bumps = 0

    def version(self):
        return self.value

    def bump(self) -> None:
        self.bumps += 1


class Loader:
    def __init__(self, row="row") -> None:
        self.row, self.calls = row, 0

    def __call__(self):
        self.calls += 1
        return self.row


# --- the cache ------------------------------------------------------------------------------


def test_rows_are_reused_while_the_version_holds():
    cache, load = LivenessCache(Signal(), ttl=30), Loader()
    assert [cache.lookup("f1", load) for _ in range(3)] == ["row"] * 3
    assert load.calls == 1


def test_a_new_version_forces_a_fresh_read():
    signal = Signal()
    cache, load = LivenessCache(signal, ttl=30), Loader()
    cache.lookup("f1", load)
    signal.value = 1
    cache.lookup("f1", load)
    assert load.calls == 2


def test_a_local_change_is_seen_before_any_signal_arrives():
    signal = Signal()
    cache, load = LivenessCache(signal, ttl=30), Loader()
    cache.lookup("f1", load)
    cache.changed()
    assert signal.bumps == 1
    cache.lookup("f1", load)
    assert load.calls == 2


def test_a_read_that_raced_a_change_is_not_kept():
    """The row was read before a revocation committed and the news arrived meanwhile."""
    signal = Signal()
    cache = LivenessCache(signal, ttl=30)

    def stale_read():
        signal.value = 1  # the revocation is signalled while this read is in flight
        return "alive"

    assert cache.lookup("f1", stale_read) == "alive"
    load = Loader("revoked")
    assert cache.lookup("f1", load) == "revoked"
    assert load.calls == 1


def test_entries_expire(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("siwa_web.oauth.liveness.time.monotonic", lambda: clock[0])
    cache, load = LivenessCache(Signal(), ttl=5), Loader()
    cache.lookup("f1", load)
    clock[0] += 4.9
    cache.lookup("f1", load)
    assert load.calls == 1
    clock[0] += 0.2
    cache.lookup("f1", load)
    assert load.calls == 2


@pytest.mark.parametrize("ttl, version", [(0, 0), (30, None)])
def test_no_cache_when_disabled_or_deaf(ttl, version):
    signal = Signal()
    signal.value = version
    cache, load = LivenessCache(signal, ttl=ttl), Loader()
    for _ in range(3):
        cache.lookup("f1", load)
    assert load.calls == 3


def test_unknown_families_are_not_cached():
    cache, load = LivenessCache(Signal(), ttl=30), Loader(None)
    cache.lookup("nope", load)
    cache.lookup("nope", load)
    assert load.calls == 2


def test_the_cache_is_bounded():
    cache = LivenessCache(Signal(), ttl=30, max_entries=10)
    for i in range(25):
        cache.lookup(f"f{i}", Loader())
    assert len(cache._entries) <= 10


# --- the signals ----------------------------------------------------------------------------


def test_file_signal_every_bump_is_a_new_version(tmp_path):
    signal = FileSignal(str(tmp_path / "db.sqlite-liveness"))
    seen = {signal.version()}
    for _ in range(5):  # faster than the file system's clock tick
        signal.bump()
        seen.add(signal.version())
    assert len(seen) == 6


def test_file_signal_is_heard_by_another_process(tmp_path):
    path = str(tmp_path / "db.sqlite-liveness")
    reader = FileSignal(path)
    before = reader.version()
    script = ("import sys; from siwa_web.oauth.liveness import FileSignal; "
              "FileSignal(sys.argv[1]).bump()")
    done = subprocess.run(  # a real second process bumps; the reader's mapping sees it at once
        [sys.executable, "-c", script, path], capture_output=True, text=True, timeout=60,
        cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert reader.version() != before


def test_file_signal_costs_no_system_call_per_lookup(tmp_path, monkeypatch):
    signal = FileSignal(str(tmp_path / "db.sqlite-liveness"))
    before = signal.version()  # maps the file
    calls: list[str] = []

    def spy(name):
        real = getattr(os, name)

        def call(*args, **kwargs):
            calls.append(name)
            return real(*args, **kwargs)
        return call

    with monkeypatch.context() as m:  # `os` is shared with pytest: patched only for the loop
        for name in ("stat", "fstat", "open", "pread", "read"):
            m.setattr(os, name, spy(name))
        seen = [signal.version() for _ in range(100)]
    assert seen == [before] * 100
    assert calls == []


def test_concurrent_bumps_are_all_counted(tmp_path):
    path = str(tmp_path / "db.sqlite-liveness")
    writers = [FileSignal(path) for _ in range(8)]  # separate descriptors, like processes

    def bump_many(signal: FileSignal) -> None:
        for _ in range(50):
            signal.bump()

    threads = [threading.Thread(target=bump_many, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(path, "rb") as f:
        assert int.from_bytes(f.read(FileSignal.SIZE), "little") == 8 * 50


def test_file_signal_notices_a_replaced_file_within_a_second(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("siwa_web.oauth.liveness.time.monotonic", lambda: clock[0])
    path = tmp_path / "db.sqlite-liveness"
    signal = FileSignal(str(path))
    first = signal.version()
    path.unlink()  # an operator tidied the directory; new processes write to a new file
    FileSignal(str(path)).bump()
    assert signal.version() == first  # still the old mapping...
    clock[0] += FileSignal.RECHECK_SECONDS
    assert signal.version() not in (first, None)  # ...until the next look at the path
    seen = signal.version()
    FileSignal(str(path)).bump()
    assert signal.version() != seen  # and later changes arrive through the new file


def test_file_signal_reads_an_older_signal_file(tmp_path):
    path = tmp_path / "db.sqlite-liveness"
    path.write_bytes(b"..")  # shorter than a counter: left by an older release
    signal = FileSignal(str(path))
    before = signal.version()
    assert before is not None
    signal.bump()
    assert signal.version() != before


def test_file_signal_that_cannot_be_read_turns_the_cache_off(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    signal = FileSignal(str(blocker / "liveness"))  # a path below a regular file
    assert signal.version() is None
    signal.bump()  # logged, not raised


def test_postgres_signal_without_a_server_turns_the_cache_off():
    signal = PostgresSignal("postgresql://nobody@127.0.0.1:1/none", notify=lambda: None)
    cache, load = LivenessCache(signal, ttl=30), Loader()
    for _ in range(3):
        cache.lookup("f1", load)
    assert load.calls == 3


# --- through the app: another process hears of it -----------------------------------------


@pytest.fixture
def other_worker(app_config):
    """A second app on the same database: another gunicorn worker with its own cache."""
    other = create_app(dict(app_config))
    yield other
    with other.app_context():
        db.session.remove()
        db.engine.dispose()


def _status_soon(client, token: str, expected: int, within: float = 3.0) -> int:
    """The /api/me status once it is `expected`, or the last one after `within` seconds.

    Changes reach another process through PostgreSQL's NOTIFY, delivered a moment after the
    commit; through the SQLite file they arrive before the revoking request returns.
    """
    deadline = time.monotonic() + within
    while True:
        status = client.get("/api/me", headers=bearer(token)).status_code
        if status == expected or time.monotonic() > deadline:
            return status
        time.sleep(0.02)


def _warm(other_worker, token: str) -> None:
    """Make the other worker cache the session as alive (waiting for its listener first)."""
    client = other_worker.test_client()
    deadline = time.monotonic() + 5
    with other_worker.app_context():
        cache = server().liveness
        while cache._version() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert cache._version() is not None, "the other worker never started listening"
    assert client.get("/api/me", headers=bearer(token)).status_code == 200
    assert client.get("/api/me", headers=bearer(token)).status_code == 200


def test_cache_is_on_by_default(app):
    with app.app_context():
        assert server().liveness.enabled


def test_revocation_reaches_another_worker(client, native_client, native_session, other_worker):
    token = native_session["access_token"]
    _warm(other_worker, token)
    revoke = client.post("/oauth/revoke", data={"token": native_session["refresh_token"],
                                                "client_id": native_client.client_id})
    assert revoke.status_code == 200
    assert _status_soon(other_worker.test_client(), token, 401) == 401


def test_disabling_a_user_reaches_another_worker(app, native_session, other_worker):
    token = native_session["access_token"]
    _warm(other_worker, token)
    with app.app_context():
        family = db.session.get(TokenFamily, native_session_family(token))
        db.session.get(User, family.user_id).disabled_at = family.created_at
        db.session.commit()
    assert _status_soon(other_worker.test_client(), token, 401) == 401


def test_hand_written_sql_through_the_app_counts_as_a_change(app, native_session, other_worker):
    token = native_session["access_token"]
    _warm(other_worker, token)
    with app.app_context():
        db.session.execute(db.text("UPDATE token_families SET revoked_at = created_at"))
        db.session.commit()
    assert _status_soon(other_worker.test_client(), token, 401) == 401


def test_profile_changes_reach_another_worker(app, native_session, other_worker):
    token = native_session["access_token"]
    _warm(other_worker, token)
    with app.app_context():
        family = db.session.get(TokenFamily, native_session_family(token))
        db.session.get(User, family.user_id).email = "new@privaterelay.appleid.com"
        db.session.commit()
    deadline = time.monotonic() + 3
    while True:
        body = other_worker.test_client().get("/api/me", headers=bearer(token)).get_json()
        if body.get("email") == "new@privaterelay.appleid.com" or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert body["email"] == "new@privaterelay.appleid.com"


def test_refreshing_does_not_flush_the_caches(app, client, native_client, native_session):
    """A refresh writes the family's last-used time; that must not count as a change."""
    with app.app_context():
        cache = server().liveness
        before = cache.signal.version(), cache._local
    response = post_token(client, refresh_params(native_client, native_session["refresh_token"]))
    assert response.status_code == 200
    with app.app_context():
        assert (cache.signal.version(), cache._local) == before


def native_session_family(access_token: str) -> str:
    import jwt as pyjwt

    return pyjwt.decode(access_token, options={"verify_signature": False})["sid"]
