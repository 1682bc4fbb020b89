"""Floor endpoints for bench/tokens.py: the least work each hot path could possibly do.

Served by gunicorn with the same settings as siwa-web (`gunicorn -c gunicorn.conf.py
'floors:create_app()'`), on the same database, measured in the same run, so that
"real ÷ floor" shows what siwa-web's own code costs on top of the unavoidable part.

  GET  /hello    a bare Flask JSON response (the framework floor)
  GET  /sign     + one ES256 access token signed (key parsed once, at start-up)
  GET  /verify   + one ES256 Bearer token verified (signature, typ, iss, aud, exp)
  GET  /verify_lookup  /verify + one primary-key SELECT of the token's family (`sid`): the
                 least a Bearer check that sees revocations at once (decision D5) can do
  POST /refresh  the minimal refresh grant: SHA-256 of the presented token, indexed SELECT by
                 hash, UPDATE of that row, INSERT of its successor, COMMIT, one ES256 signature

Same libraries as siwa-web (Flask, SQLAlchemy ORM, joserfc) and the same SQLite pragmas
(WAL, synchronous=NORMAL, busy_timeout), but none of its checks, joins, audit rows or second
token. Configuration comes from the environment (set by bench/tokens.py):

  BENCH_DB_URL          SQLAlchemy URL of the benchmark database
  BENCH_FLOOR_KEY_PEM   PEM of the ES256 private key (the verify floor's tokens are signed with it)
  BENCH_ISSUER          `iss` of floor tokens
  BENCH_AUDIENCE        `aud` of floor tokens
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import time
import uuid

from flask import Flask
from flask import jsonify
from flask import request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey
from sqlalchemy import DateTime
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import create_engine
from sqlalchemy import event
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import Session
from sqlalchemy.orm import mapped_column

from siwa_web.infra.sqlite_gate import GatedConnection

KID = "bench-floor"
TOKEN_TTL = 600
REFRESH_TTL = dt.timedelta(days=30)


class Base(DeclarativeBase):
    pass


class FloorRefreshToken(Base):
    """The refresh floor's table: what a refresh grant must touch, nothing more."""

    __tablename__ = "bench_floor_refresh_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family: Mapped[str] = mapped_column(String(36))
    user_id: Mapped[str] = mapped_column(String(36))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class FloorFamily(Base):
    """The verify_lookup floor's table: one row per session, looked up by primary key."""

    __tablename__ = "bench_floor_families"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


FLOOR_FAMILY = "floor-family"


def make_engine(url: str) -> Engine:
    """An engine tuned exactly like siwa-web's (siwa_web/__init__.py `_tune_sqlite`).

    On SQLite that includes siwa-web's writer gate (`siwa_web.infra.sqlite_gate`): it decides who
    writes next and does no work, so floor and app are scheduled alike and differ in work only
    (with SQLite's busy handler the floor itself starved writers into wrk timeouts).
    """
    is_sqlite = url.startswith("sqlite")
    engine = create_engine(url, connect_args={"factory": GatedConnection} if is_sqlite else {})
    if is_sqlite:

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    return engine


def token_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def create_table(engine: Engine) -> None:
    """Create the floor tables and the one family the verify_lookup floor's token names."""
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        if session.get(FloorFamily, FLOOR_FAMILY) is None:
            far = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
            session.add(FloorFamily(id=FLOOR_FAMILY, expires_at=far))
            session.commit()


def seed_refresh_tokens(engine: Engine, count: int) -> list[str]:
    """Insert `count` fresh refresh tokens (one family each) and return their values."""
    now = dt.datetime.now(dt.UTC)
    values = [secrets.token_urlsafe(32) for _ in range(count)]
    with Session(engine) as session:
        session.add_all(
            FloorRefreshToken(token_hash=token_hash(v), family=str(uuid.uuid4()),
                              user_id=str(uuid.uuid4()), expires_at=now + REFRESH_TTL)
            for v in values
        )
        session.commit()
    return values


def sign_floor_token(key: ECKey, issuer: str, audience: str, *, sub: str, family: str,
                     ttl: int = TOKEN_TTL) -> str:
    """An access token shaped like siwa-web's (RFC 9068 claims, `typ: at+jwt`)."""
    now = int(time.time())
    claims = {
        "iss": issuer, "sub": sub, "aud": audience, "exp": now + ttl, "iat": now,
        "jti": str(uuid.uuid4()), "client_id": "cli_bench", "scope": "openid profile email",
        "auth_time": now, "sid": family,
    }
    header = {"alg": "ES256", "typ": "at+jwt", "kid": KID}
    return jwt.encode(header, claims, key, algorithms=["ES256"])


def create_app() -> Flask:
    """The floor app; everything expensive (key parsing, engine) happens once, here."""
    key = ECKey.import_key(os.environ["BENCH_FLOOR_KEY_PEM"])
    public = ECKey.import_key(key.as_dict(private=False))
    issuer = os.environ.get("BENCH_ISSUER", "https://bench.invalid")
    audience = os.environ.get("BENCH_AUDIENCE", issuer + "/api")
    engine = make_engine(os.environ["BENCH_DB_URL"])
    claims_registry = jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": issuer}, aud={"essential": True, "value": audience},
        exp={"essential": True}, sub={"essential": True},
    )
    app = Flask("floors")

    def issue(sub: str, family: str) -> dict:
        return {"access_token": sign_floor_token(key, issuer, audience, sub=sub, family=family),
                "token_type": "Bearer", "expires_in": TOKEN_TTL}

    @app.get("/hello")
    def hello():
        return jsonify(ok=True)

    @app.get("/sign")
    def sign():
        return jsonify(issue("floor-user", "floor-family"))

    def bearer_claims() -> dict | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return None
        try:
            token = jwt.decode(header[7:], public, algorithms=["ES256"])
            if token.header.get("typ") != "at+jwt":
                raise ValueError("typ")
            claims_registry.validate(token.claims)
        except (JoseError, ValueError):
            return None
        return token.claims

    @app.get("/verify")
    def verify():
        claims = bearer_claims()
        if claims is None:
            return jsonify(error="invalid_token"), 401
        return jsonify(sub=claims["sub"], scope=claims.get("scope"))

    @app.get("/verify_lookup")
    def verify_lookup():
        claims = bearer_claims()
        if claims is None:
            return jsonify(error="invalid_token"), 401
        with Session(engine) as session:
            row = session.execute(
                select(FloorFamily.revoked_at, FloorFamily.expires_at)
                .where(FloorFamily.id == claims.get("sid"))
            ).first()
        if row is None or row.revoked_at is not None:
            return jsonify(error="invalid_token"), 401
        expires = row.expires_at
        if expires.tzinfo is None:  # SQLite hands back naive UTC
            expires = expires.replace(tzinfo=dt.UTC)
        if expires <= dt.datetime.now(dt.UTC):
            return jsonify(error="invalid_token"), 401
        return jsonify(sub=claims["sub"], scope=claims.get("scope"))

    @app.post("/refresh")
    def refresh():
        presented = request.form.get("refresh_token", "")
        now = dt.datetime.now(dt.UTC)
        successor = secrets.token_urlsafe(32)
        with Session(engine) as session:
            row = session.execute(
                select(FloorRefreshToken)
                .where(FloorRefreshToken.token_hash == token_hash(presented))
            ).scalar_one_or_none()
            if row is None:
                return jsonify(error="invalid_grant"), 400
            row.used_at = now
            session.add(FloorRefreshToken(token_hash=token_hash(successor), family=row.family,
                                          user_id=row.user_id, expires_at=now + REFRESH_TTL))
            sub, family = row.user_id, row.family
            session.commit()
        response = jsonify({**issue(sub, family), "refresh_token": successor})
        response.headers["Cache-Control"] = "no-store"
        return response

    return app
