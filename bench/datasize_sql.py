"""Production-sized data for bench/datasize.py, made by set-based SQL (PostgreSQL only).

Every row comes from `INSERT ... SELECT ... FROM generate_series(...)`: no Python loop, so a
million refresh tokens take seconds, not an hour. Ids are `md5(seed)::uuid`, so the shapes
are reproducible and rows can refer to each other by recomputing the id.

Shapes (n = --users, F = tokens / 4 families):
- n users, each with one Apple identity (private-relay email), created over ~2 years;
- F app sessions (token families), spread round-robin over the users (2-3 each) and over the
  native clients; 20 % expired more than 30 days ago, 20 % revoked more than 30 days ago
  (both: what `flask prune` removes), 10 % expired recently (kept), the rest live;
- 4 refresh tokens per family, a rotation chain: the first three used (rotated), the fourth
  unused in live families;
- audit events over 600 days, mostly "refresh", across every user and the usual event types;
- delivered back-channel logouts (the outbox keeps them PRUNE_AFTER_DAYS) and a few pending.
"""
from __future__ import annotations

import time
from typing import Any

EVENTS = ("refresh", "refresh", "refresh", "refresh", "native_exchange", "web_login",
          "web_app_code", "token_revoked", "web_logout", "consent_granted")


def _steps(users: int, tokens: int, events: int, clients: list[str],
           web_client: str | None, outbox: int) -> list[tuple[str, str, dict[str, Any]]]:
    families = tokens // 4
    ids = "ARRAY[" + ",".join(f"'{c}'" for c in clients) + "]"
    return [
        ("users", """
INSERT INTO users (id, first_name, last_name, email, email_verified, is_private_email,
                   email_deliverable, created_at)
SELECT md5('u' || g)::uuid::text, 'Data', 'User ' || g, 'u' || g || '@privaterelay.appleid.com',
       true, true, true, now() - (g % 700) * interval '1 day'
FROM generate_series(1, %(users)s) g""", {"users": users}),
        ("apple_identities", """
INSERT INTO apple_identities (id, user_id, sub, issuer, email, email_verified, is_private_email,
                              created_at, last_used_at)
SELECT md5('i' || g)::uuid::text, md5('u' || g)::uuid::text,
       '000' || lpad((g % 1000)::text, 3, '0') || '.' || md5('s' || g) || '.'
           || lpad((g % 9999)::text, 4, '0'),
       'https://appleid.apple.com', 'u' || g || '@privaterelay.appleid.com', true, true,
       now() - (g % 700) * interval '1 day', now() - (g % 60) * interval '1 day'
FROM generate_series(1, %(users)s) g""", {"users": users}),
        ("token_families", f"""
INSERT INTO token_families (id, user_id, client_id, identity_id, scope, audience, created_at,
                            last_used_at, expires_at, ip, user_agent, revoked_at,
                            revoked_reason, auth_time)
SELECT md5('f' || f)::uuid::text, md5('u' || u)::uuid::text, ({ids})[1 + f % {len(clients)}],
       md5('i' || u)::uuid::text, 'openid profile email offline_access',
       'https://siwa-bench.invalid/api', created, created + interval '1 hour',
       CASE f % 10 WHEN 0 THEN now() - (31 + f % 150) * interval '1 day'
                   WHEN 1 THEN now() - (31 + f % 150) * interval '1 day'
                   WHEN 4 THEN now() - (1 + f % 25) * interval '1 day'
                   ELSE now() + (1 + f % 170) * interval '1 day' END,
       '192.0.2.' || (f % 250), 'MyApp/1.0 CFNetwork/1494 Darwin/23.4.0',
       CASE WHEN f % 10 IN (2, 3) THEN now() - (31 + f % 150) * interval '1 day' END,
       CASE WHEN f % 10 IN (2, 3) THEN 'user_signed_out' END, created
FROM (SELECT f, 1 + (f - 1) % %(users)s AS u,
             now() - (f % 200) * interval '1 day' - (f % 86400) * interval '1 second' AS created
      FROM generate_series(1, %(families)s) f) s""", {"users": users, "families": families}),
        ("refresh_tokens", """
INSERT INTO refresh_tokens (id, family_id, parent_id, token_hash, scope, created_at,
                            idle_expires_at, used_at)
SELECT md5('r' || t)::uuid::text, md5('f' || ((t - 1) / 4 + 1))::uuid::text,
       CASE WHEN (t - 1) % 4 > 0 THEN md5('r' || (t - 1))::uuid::text END,
       encode(sha256(('datasize-rt-' || t)::bytea), 'hex'),
       'openid profile email offline_access',
       now() - (t % 200) * interval '1 day',
       now() - (t % 200) * interval '1 day' + interval '30 days',
       CASE WHEN (t - 1) % 4 < 3 THEN now() - (t % 200) * interval '1 day' + interval '1 hour' END
FROM generate_series(1, %(tokens)s) t""", {"tokens": families * 4}),
        ("audit_events", f"""
INSERT INTO audit_events (created_at, user_id, event, outcome, reason, client_id, ip, user_agent,
                          details)
SELECT now() - (g % 600) * interval '1 day' - (g % 86400) * interval '1 second',
       md5('u' || (1 + g % %(users)s))::uuid::text,
       (ARRAY{list(EVENTS)!r})[1 + g % {len(EVENTS)}],
       CASE WHEN g % 50 = 0 THEN 'failure' ELSE 'success' END,
       CASE WHEN g % 50 = 0 THEN 'invalid_grant' END,
       ({ids})[1 + g % {len(clients)}], '192.0.2.' || (g % 250),
       'MyApp/1.0 CFNetwork/1494 Darwin/23.4.0', '{{}}'
FROM generate_series(1, %(events)s) g""", {"users": users, "events": events}),
        ("backchannel_logouts", """
INSERT INTO backchannel_logouts (id, client_id, user_id, sid, attempts, next_attempt_at,
                                 created_at, sent_at)
SELECT md5('b' || g)::uuid::text, %(web)s, md5('u' || (1 + g % %(users)s))::uuid::text,
       md5('w' || g)::uuid::text, 1, now() - (g % 90) * interval '1 day',
       now() - (g % 90) * interval '1 day',
       CASE WHEN g % 1000 <> 0 THEN now() - (g % 90) * interval '1 day' END
FROM generate_series(1, %(outbox)s) g""", {"web": web_client, "users": users, "outbox": outbox}),
    ]


def generate(url: str, *, users: int, tokens: int, events: int, clients: list[str],
             web_client: str | None, outbox: int = 50_000,
             log: Any = print) -> dict[str, float]:
    """Fill an empty, migrated database; returns seconds per table (and for ANALYZE)."""
    import psycopg

    took: dict[str, float] = {}
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"),
                         autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")  # the columns hold naive UTC
        for table, sql, params in _steps(users, tokens, events, clients, web_client, outbox):
            if table == "backchannel_logouts" and not web_client:
                continue
            started = time.monotonic()
            sql = sql.replace(" % ", " %% ")  # SQL's modulo, not a placeholder
            rows = conn.execute(sql, params).rowcount
            took[table] = round(time.monotonic() - started, 1)
            log(f"  generated {rows:,} {table} in {took[table]} s")
        started = time.monotonic()
        conn.execute("VACUUM ANALYZE")
        took["vacuum_analyze"] = round(time.monotonic() - started, 1)
        log(f"  VACUUM ANALYZE in {took['vacuum_analyze']} s")
    return took


def heavy_user(url: str, user_id: str, client_id: str, *, families: int = 1000,
               events: int = 10_000) -> None:
    """Give `user_id` `families` live app sessions and `events` audit events (the dashboard's
    worst case); set-based like the rest."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"),
                         autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute("""
INSERT INTO token_families (id, user_id, client_id, scope, audience, created_at, last_used_at,
                            expires_at, ip, user_agent)
SELECT gen_random_uuid()::text, %(u)s, %(c)s, 'openid profile email offline_access',
       'https://siwa-bench.invalid/api', now() - g * interval '1 minute',
       now() - g * interval '1 second', now() + interval '100 days', '192.0.2.7',
       'MyApp/1.0 CFNetwork/1494 Darwin/23.4.0'
FROM generate_series(1, %(n)s) g""", {"u": user_id, "c": client_id, "n": families})
        conn.execute("""
INSERT INTO audit_events (created_at, user_id, event, outcome, client_id, ip, user_agent, details)
SELECT now() - g * interval '1 minute', %(u)s, 'refresh', 'success', %(c)s, '192.0.2.7',
       'MyApp/1.0 CFNetwork/1494 Darwin/23.4.0', '{}'
FROM generate_series(1, %(n)s) g""", {"u": user_id, "c": client_id, "n": events})
        conn.execute("ANALYZE token_families, audit_events")
