"""Load configuration in a visible order and refuse to start on a bad one."""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from limits import parse_many
from limits.strategies import STRATEGIES

from .infra.crypto import derive_fernet_key

APPLE_DEFAULT_BASE_URL = "https://appleid.apple.com"
EMULATOR_MOUNT = "/__apple"
EMULATOR_DEFAULTS = {
    "APPLE_TEAM_ID": "EMUTEAM001",
    "APPLE_KEY_ID": "EMUKEY0001",
    "APPLE_SERVICES_ID": "com.example.siwa.web",
}
APPLE_REQUIRED = ("APPLE_TEAM_ID", "APPLE_KEY_ID", "APPLE_SERVICES_ID")


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message names the key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"configuration error: SIWA_{key}: {problem}")
        self.key = key


def load(app: Flask, test_config: dict[str, Any] | None) -> None:
    """Apply defaults → instance/config.py → SIWA_* environment → test dict, then finish."""
    app.config.from_object("siwa_web.settings")
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env(prefix="SIWA")
    if test_config is not None:
        app.config.update(test_config)
    _finish(app)


def is_production(app: Flask) -> bool:
    return app.config.get("ENV") == "production"


def _finish(app: Flask) -> None:
    """Fill derived defaults and validate; production gets no generated secrets."""
    cfg = app.config
    instance = Path(app.instance_path)
    instance.mkdir(parents=True, exist_ok=True)
    _check_url(cfg, "ISSUER")
    cfg["ISSUER"] = cfg["ISSUER"].rstrip("/")
    https = cfg["ISSUER"].startswith("https://")
    if not cfg.get("SECRET_KEY"):
        if is_production(app):
            raise ConfigError("SECRET_KEY", "missing; set a long random value")
        cfg["SECRET_KEY"] = _instance_secret(instance / "secret_key")
    if not cfg.get("TOKEN_ENCRYPTION_KEYS"):
        if is_production(app):
            raise ConfigError(
                "TOKEN_ENCRYPTION_KEYS",
                'missing; set a JSON list of Fernet keys, e.g. ["<key>"] '
                "(python -c 'from cryptography.fernet import Fernet;print(Fernet.generate_key())')",
            )
        cfg["TOKEN_ENCRYPTION_KEYS"] = [derive_fernet_key(cfg["SECRET_KEY"], "apple-tokens")]
    elif isinstance(cfg["TOKEN_ENCRYPTION_KEYS"], str):
        cfg["TOKEN_ENCRYPTION_KEYS"] = [cfg["TOKEN_ENCRYPTION_KEYS"]]
    if not cfg.get("SQLALCHEMY_DATABASE_URI"):
        if is_production(app):
            raise ConfigError("SQLALCHEMY_DATABASE_URI", "missing; e.g. postgresql+psycopg://...")
        cfg["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{instance / 'siwa.sqlite'}"
    _check_numbers(cfg)
    _choose_log_format(app)
    _check_metrics_token(cfg)
    _check_rate_limits(cfg)
    _size_pool(cfg)
    _bound_connecting(cfg)
    _gate_sqlite(cfg)
    if cfg.get("SESSION_COOKIE_SECURE") is None:
        cfg["SESSION_COOKIE_SECURE"] = https
    if not cfg.get("SESSION_COOKIE_NAME"):
        secure = cfg["SESSION_COOKIE_SECURE"]
        cfg["SESSION_COOKIE_NAME"] = "__Host-siwa" if secure else "siwa_session"
    if not cfg.get("DEFAULT_AUDIENCE"):
        cfg["DEFAULT_AUDIENCE"] = cfg["ISSUER"] + "/api"
    if is_production(app) and not https:
        raise ConfigError("ISSUER", "must be an https:// URL in production")
    _configure_apple(app, instance)


# Numeric settings read when the app is built: (type, smallest allowed value).
NUMBERS: dict[str, tuple[type, float]] = {
    "DB_POOL_SIZE": (int, 1), "DB_MAX_OVERFLOW": (int, 0), "DB_PING_IDLE_SECONDS": (float, 0),
    "DB_CONNECT_TIMEOUT": (int, 2), "RATELIMIT_STORE_CONNECT_TIMEOUT": (float, 0.001),
    "RATELIMIT_STORE_TIMEOUT": (float, 0.001), "RATELIMIT_STORE_BREAKER_SECONDS": (float, 0),
    "APPLE_CONNECT_TIMEOUT": (float, 0.001), "APPLE_READ_TIMEOUT": (float, 0.001),
    "APPLE_HTTP_IDLE_SECONDS": (float, 0), "LIVENESS_CACHE_SECONDS": (float, 0),
    "APPLE_TOKEN_CHECK_INTERVAL": (int, 24 * 3600), "APPLE_TOKEN_CHECK_BATCH": (int, 1),
    "APPLE_TOKEN_CHECK_CONCURRENCY": (int, 1), "APPLE_TOKEN_CHECK_RATE": (float, 0.01),
    "APPLE_TOKEN_CHECK_JITTER": (float, 0), "APPLE_TOKEN_CHECK_LEASE": (int, 60),
    "ACCOUNT_DELETION_MAX_AUTH_AGE": (int, 0),
    "APPLE_CALL_DEADLINE": (float, 0.001), "APPLE_SIGN_IN_BUDGET": (float, 0.001),
    "METRICS_OUTBOX_CACHE_SECONDS": (float, 0),
}


def _check_numbers(cfg: dict) -> None:
    """Turn numeric settings (env values arrive as text) into numbers, or name the bad one."""
    for key, (kind, smallest) in NUMBERS.items():
        raw = cfg.get(key)
        try:
            if isinstance(raw, bool):
                raise ValueError
            value = kind(raw)
        except (TypeError, ValueError):
            raise ConfigError(key, f"must be a number, got {raw!r}") from None
        if value < smallest:
            raise ConfigError(key, f"must be at least {smallest:g}, got {raw!r}")
        cfg[key] = value
    if not isinstance(cfg.get("SQLITE_WRITER_GATE"), bool):
        raise ConfigError("SQLITE_WRITER_GATE", "must be true or false")


def _choose_log_format(app: Flask) -> None:
    """JSON lines for log shippers; readable text while developing, unless told otherwise."""
    fmt = app.config.get("LOG_FORMAT")
    if fmt is None:
        fmt = "json" if is_production(app) and not app.debug else "text"
    if fmt not in ("json", "text"):
        raise ConfigError("LOG_FORMAT", f'must be "json" or "text", got {fmt!r}')
    app.config["LOG_FORMAT"] = fmt


METRICS_TOKEN_MIN_LENGTH = 16


def _check_metrics_token(cfg: dict) -> None:
    """A scraper's token is a password: refuse one short enough to guess (never echo it)."""
    token = cfg.get("METRICS_TOKEN")
    if token in (None, ""):
        cfg["METRICS_TOKEN"] = None
        return
    if not isinstance(token, str) or len(token) < METRICS_TOKEN_MIN_LENGTH \
            or not token.isascii() or not token.isprintable() or " " in token:
        raise ConfigError("METRICS_TOKEN", f"must be at least {METRICS_TOKEN_MIN_LENGTH} "
                          "printable ASCII characters without spaces")


RATE_LIMITS = (
    "RATELIMIT_TOKEN_PER_IP", "RATELIMIT_TOKEN_PER_CLIENT", "RATELIMIT_LOGIN_PER_IP",
    "RATELIMIT_AUTHORIZE_PER_IP",
)


def _check_rate_limits(cfg: dict) -> None:
    """Refuse at start-up what would otherwise fail on the first limited request."""
    for key in RATE_LIMITS:
        try:
            parse_many(str(cfg.get(key)))
        except ValueError:
            problem = f'must be a limit like "60/minute", got {cfg.get(key)!r}'
            raise ConfigError(key, problem) from None
    strategy = cfg.get("RATELIMIT_STRATEGY") or "fixed-window"
    if strategy not in STRATEGIES:
        raise ConfigError("RATELIMIT_STRATEGY", f"must be one of {', '.join(sorted(STRATEGIES))}"
                          f", got {strategy!r}")
    uri = str(cfg.get("RATELIMIT_STORAGE_URI") or "memory://")
    in_process = uri.startswith(("memory:", "siwa-memory:"))
    if in_process and strategy != "fixed-window":
        raise ConfigError("RATELIMIT_STRATEGY", f"{strategy!r} needs a shared store such as "
                          "redis://; the memory:// store counts fixed windows only")


def _size_pool(cfg: dict) -> None:
    """Give file and server databases a pool as large as a worker's threads (not 5 + 10)."""
    uri = cfg["SQLALCHEMY_DATABASE_URI"]
    if uri in ("sqlite://", "sqlite:///:memory:") or ":memory:" in uri:
        return  # a single shared connection; pool sizes do not apply
    options = dict(cfg.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    options.setdefault("pool_size", int(cfg["DB_POOL_SIZE"]))
    options.setdefault("max_overflow", int(cfg["DB_MAX_OVERFLOW"]))
    cfg["SQLALCHEMY_ENGINE_OPTIONS"] = options


def _bound_connecting(cfg: dict) -> None:
    """PostgreSQL waits forever for a silent server by default; give up after the setting.

    A connect_timeout already in the engine options (or in the URL's query) is kept.
    """
    uri = cfg["SQLALCHEMY_DATABASE_URI"]
    if not uri.startswith("postgresql") or "connect_timeout=" in uri:
        return
    options = dict(cfg.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    connect_args = dict(options.get("connect_args") or {})
    connect_args.setdefault("connect_timeout", cfg["DB_CONNECT_TIMEOUT"])
    options["connect_args"] = connect_args
    cfg["SQLALCHEMY_ENGINE_OPTIONS"] = options


def _gate_sqlite(cfg: dict) -> None:
    """Queue a worker's SQLite writers on one lock (`infra/sqlite_gate.py`) unless turned off."""
    uri = cfg["SQLALCHEMY_DATABASE_URI"]
    if not uri.startswith("sqlite") or not cfg["SQLITE_WRITER_GATE"]:
        return
    from .infra.sqlite_gate import GatedConnection

    options = dict(cfg.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    connect_args = dict(options.get("connect_args") or {})
    connect_args.setdefault("factory", GatedConnection)
    options["connect_args"] = connect_args
    cfg["SQLALCHEMY_ENGINE_OPTIONS"] = options


def _configure_apple(app: Flask, instance: Path) -> None:
    """Use real Apple credentials if given; otherwise wire up the emulator (never in production)."""
    cfg = app.config
    if cfg.get("APPLE_PRIVATE_KEY_PATH") and not cfg.get("APPLE_PRIVATE_KEY"):
        path = Path(cfg["APPLE_PRIVATE_KEY_PATH"])
        path = path if path.is_absolute() else instance / path
        try:
            cfg["APPLE_PRIVATE_KEY"] = path.read_text()
        except OSError as exc:
            problem = f"cannot read {path}: {exc.strerror}"
            raise ConfigError("APPLE_PRIVATE_KEY_PATH", problem) from exc
    has_credentials = any(cfg.get(k) for k in (*APPLE_REQUIRED, "APPLE_PRIVATE_KEY"))
    emulator = cfg.get("APPLE_EMULATOR")
    # true/false (SIWA_APPLE_EMULATOR=true); 1/0 read as JSON numbers too. Any other text
    # ("off", "no") would otherwise count as true and start the emulator.
    if emulator is not None and (not isinstance(emulator, bool | int) or emulator not in (0, 1)):
        raise ConfigError("APPLE_EMULATOR", f"must be true or false, got {emulator!r}")
    if emulator is None:
        emulator = not has_credentials and not is_production(app)
    cfg["APPLE_EMULATOR"] = bool(emulator)
    if emulator and is_production(app):
        raise ConfigError("APPLE_EMULATOR", "the Apple emulator is for development only")
    if emulator:
        for key, value in EMULATOR_DEFAULTS.items():
            cfg[key] = cfg.get(key) or value
        if not cfg.get("APPLE_PRIVATE_KEY"):
            cfg["APPLE_PRIVATE_KEY"] = _instance_ec_key(instance / "emulator-apple-key.p8")
        if cfg.get("APPLE_BASE_URL") in (None, "", APPLE_DEFAULT_BASE_URL):
            cfg["APPLE_BASE_URL"] = cfg["ISSUER"] + EMULATOR_MOUNT
    for key in (*APPLE_REQUIRED, "APPLE_PRIVATE_KEY"):
        if not cfg.get(key):
            raise ConfigError(key, "missing (see README: Configuration)")
    _check_private_key(cfg["APPLE_PRIVATE_KEY"])
    _check_url(cfg, "APPLE_BASE_URL")
    cfg["APPLE_BASE_URL"] = cfg["APPLE_BASE_URL"].rstrip("/")
    if not cfg.get("APPLE_REDIRECT_URI"):
        cfg["APPLE_REDIRECT_URI"] = cfg["ISSUER"] + "/auth/apple/callback"
    _check_url(cfg, "APPLE_REDIRECT_URI")
    if isinstance(cfg.get("APPLE_ISSUERS"), str):
        cfg["APPLE_ISSUERS"] = [cfg["APPLE_ISSUERS"]]


def _check_url(cfg: dict, key: str) -> None:
    value = cfg.get(key)
    parts = urlsplit(value) if isinstance(value, str) else None
    if not parts or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(key, f"must be an absolute http(s) URL, got {value!r}")


def _check_private_key(pem: str) -> None:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        problem = "not a PEM private key (the .p8 file's text)"
        raise ConfigError("APPLE_PRIVATE_KEY", problem) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ConfigError("APPLE_PRIVATE_KEY", "must be an EC P-256 key, as Apple issues")


def _instance_secret(path: Path) -> str:
    """Read or create a development secret that survives restarts."""
    if not path.exists():
        _write_private(path, secrets.token_urlsafe(48))
    return path.read_text().strip()


def _instance_ec_key(path: Path) -> str:
    """Read or create the development .p8 key that the emulator trusts."""
    if not path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_private(path, pem.decode())
    return path.read_text()


def _write_private(path: Path, text: str) -> None:
    """Create `path` readable by us only; another worker that won the race wrote it already."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
