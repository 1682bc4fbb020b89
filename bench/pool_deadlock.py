#!/usr/bin/env python3
"""Reproduce, in one process and a few seconds, the hang described in docs/performance.md §1.

16 refresh requests (one gunicorn worker's worth of threads in gunicorn.conf.py) run at once
while the signing-key cache is stale. Each request holds a pooled connection after its commit
(the expired client is reloaded) and then wants the key ring, whose reload checks out a second
connection while holding the ring's lock. With the default pool (5 + 10 overflow = 15) nobody
moves until the pool timeout: the requests take `--pool-timeout` seconds and some answer 503.
With a pool as large as the thread count they take milliseconds.

    .venv/bin/python bench/pool_deadlock.py                   # the production pool: hangs
    .venv/bin/python bench/pool_deadlock.py --pool-size 24    # no hang

The key reload is slowed down by 0.3 s (as a busy CPU or a slow database would) so the window
is hit every time. Exit status 1 when the hang was reproduced, 0 when it was not. Uses a
throw-away SQLite database (tables created from the models) and siwa-web's own functions to
seed the refresh tokens; nothing else is touched.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THREADS = 16


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pool-size", type=int, help="SQLAlchemy pool_size (default: siwa-web's)")
    p.add_argument("--pool-timeout", type=float, default=5.0,
                   help="seconds a thread waits for a connection (siwa-web: 30; default here 5)")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))

    from siwa_web import create_app
    from siwa_web.infra.extensions import db
    from siwa_web.models import User
    from siwa_web.oauth import clients
    from siwa_web.oauth import keys
    from siwa_web.oauth import refresh
    from siwa_web.tokens.extension import server

    engine_options = {"pool_pre_ping": True, "pool_timeout": args.pool_timeout}
    if args.pool_size:
        engine_options["pool_size"] = args.pool_size
    with tempfile.TemporaryDirectory(prefix="siwa-deadlock-") as tmp:
        app = create_app({
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp}/deadlock.sqlite",
            "SQLALCHEMY_ENGINE_OPTIONS": engine_options,
            "RATELIMIT_ENABLED": False,
        })
        with app.app_context():
            db.create_all()
            client = clients.create(
                db.session, name="Deadlock iOS", bundle_id="com.example.deadlock")
            settings = server().settings
            tokens = []
            for _ in range(THREADS):
                user = User()
                db.session.add(user)
                db.session.flush()
                family = refresh.start_family(
                    db.session, settings, user_id=user.id, client_id=client.id, identity_id=None,
                    scope="openid offline_access", audience=settings.default_audience,
                    offline=True, ip=None, user_agent=None)
                tokens.append(family.refresh_token)
            client_id = client.id
            db.session.commit()
            server().keys.signer()  # create the first signing key
            server().keys.invalidate()  # ... and make the cache stale

        slow = keys.KeyRing.reload

        def slow_reload(self, **kw):
            time.sleep(0.3)
            return slow(self, **kw)

        keys.KeyRing.reload = slow_reload
        results: list[tuple[int, float]] = []

        def refresh_once(token: str) -> None:
            started = time.monotonic()
            r = app.test_client().post("/oauth/token", data={
                "grant_type": "refresh_token", "refresh_token": token, "client_id": client_id})
            results.append((r.status_code, time.monotonic() - started))

        threads = [threading.Thread(target=refresh_once, args=(t,)) for t in tokens]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started

    statuses = sorted(s for s, _ in results)
    pool = args.pool_size or "default (5 + 10 overflow)"
    hung = elapsed >= args.pool_timeout * 0.9
    print(f"pool_size {pool}, {THREADS} concurrent refreshes: {elapsed:.2f} s in all, "
          f"slowest {max(d for _, d in results):.2f} s, statuses {statuses}")
    print("HANG reproduced: every request waited for the pool timeout" if hung
          else "no hang")
    return 1 if hung else 0


if __name__ == "__main__":
    sys.exit(main())
