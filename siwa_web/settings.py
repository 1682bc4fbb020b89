"""Defaults for every configuration key; instance/config.py and SIWA_* variables override them.

Each key is documented in README.md ("Configuration"). Secrets have no default here: in
development they are generated into instance/, in production their absence stops start-up.
"""

# --- Deployment -------------------------------------------------------------------------------
ENV = "development"  # "production" refuses the emulator and requires every Apple setting
SECRET_KEY = None  # generated into instance/secret_key in development
SECRET_KEY_FALLBACKS: list[str] = []
TOKEN_ENCRYPTION_KEYS: list[str] = []  # Fernet keys for Apple refresh tokens; first encrypts
SQLALCHEMY_DATABASE_URI = None  # default: sqlite:///<instance>/siwa.sqlite
SQLALCHEMY_ENGINE_OPTIONS: dict = {}
# PostgreSQL: give up opening a connection after this many seconds (libpq's connect_timeout;
# at least 2), so a database that does not answer ends a request in a 503 within the bound.
DB_CONNECT_TIMEOUT = 5
DB_PING_IDLE_SECONDS = 5.0  # ping a pooled connection before use only if idle this long (pool_ping)
# Connections per worker process: at least its threads (gunicorn.conf.py: 16) plus one for the
# signing-key reload; workers x (size + overflow) must stay under PostgreSQL's max_connections.
DB_POOL_SIZE = 16
DB_MAX_OVERFLOW = 8
SQLITE_WRITER_GATE = True  # a worker's threads take turns at SQLite's write lock (sqlite_gate)
ISSUER = "http://localhost:5000"  # our public base URL; `iss` of our tokens
# Browser pages only on ISSUER's host (cookies set on another name miss Apple's callback):
# development redirects GET/HEAD there, production answers 421 naming the host. JSON is exempt.
ENFORCE_ISSUER_HOST = True
TRUST_PROXY_HOPS = 0  # number of reverse proxies whose X-Forwarded-* headers we trust
MAX_CONTENT_LENGTH = 64 * 1024
LOG_LEVEL = "INFO"
# "json" (one JSON object a line) or "text" (short readable lines); None: text in development
# (ENV "development" or FLASK_DEBUG), json otherwise. See docs/operations.md ("Logging").
LOG_FORMAT = None

# --- Apple ------------------------------------------------------------------------------------
APPLE_BASE_URL = "https://appleid.apple.com"
APPLE_ISSUERS = ["https://appleid.apple.com", "https://account.apple.com"]
APPLE_TEAM_ID = None
APPLE_KEY_ID = None
APPLE_PRIVATE_KEY = None  # PEM text of the .p8 key
APPLE_PRIVATE_KEY_PATH = None  # or a path to the .p8 file (relative paths: instance/)
APPLE_SERVICES_ID = None  # the web client id (Services ID)
APPLE_REDIRECT_URI = None  # default: <ISSUER>/auth/apple/callback
APPLE_EMULATOR = None  # None = on when no Apple credentials are configured (development only)
APPLE_CONNECT_TIMEOUT = 3.0
APPLE_READ_TIMEOUT = 8.0  # per socket read; a trickling answer is ended by the deadline below
APPLE_CALL_DEADLINE = 6.0  # seconds one call to Apple may take in all, however it trickles
# Seconds all Apple calls of one sign-in (native exchange, browser callback) may take together;
# then it is answered 503 (docs/operations.md, "Failure bounds").
APPLE_SIGN_IN_BUDGET = 9.0
APPLE_HTTP_IDLE_SECONDS = 1.5  # a pooled connection to Apple idle this long is not reused
APPLE_JWKS_MAX_AGE = 24 * 3600  # serve cached Apple keys at most this long
APPLE_JWKS_REFETCH_COOLDOWN = 30  # seconds between refetches on an unknown kid
APPLE_TOKEN_LEEWAY = 60
APPLE_ID_TOKEN_MAX_AGE = 24 * 3600 + 60  # reject identity tokens issued longer ago
EMULATOR_BUNDLE_IDS: list[str] = []  # extra native bundle ids the emulator accepts
EMULATOR_NOTIFICATION_URL = None  # default: <ISSUER>/apple/notifications
EMULATOR_APP_NAME = "siwa-web"  # the app name the emulator's pages show, as Apple shows yours
EMULATOR_STATE_FILE = None  # None: instance/emulator-state.sqlite; "": in memory only

# --- Web sign-in ------------------------------------------------------------------------------
LOGIN_TRANSACTION_TTL = 600
SESSION_IDLE_TIMEOUT = 14 * 24 * 3600
SESSION_ABSOLUTE_TIMEOUT = 30 * 24 * 3600
SESSION_TOUCH_INTERVAL = 60  # write last_seen at most this often
FRESH_LOGIN_MAX_AGE = 300  # account deletion needs a sign-in at most this old

# --- Apple revocation outbox (account deletion, unlink) -------------------------------------
APPLE_REVOCATION_BACKOFF_BASE = 60  # seconds before the first retry; doubles each time
APPLE_REVOCATION_BACKOFF_MAX = 6 * 3600  # never wait longer than this between attempts
APPLE_REVOCATION_ALERT_ATTEMPTS = 8  # `flask apple retry-revocations` exits 1 from here on
APPLE_REVOCATION_LEASE = 300  # a claimed row is not picked again for this long

# --- Daily check of stored Apple refresh tokens (`flask apple validate-tokens`) ---------------
APPLE_TOKEN_CHECK_INTERVAL = 24 * 3600  # check each token at most this often (Apple: once a day)
APPLE_TOKEN_CHECK_BATCH = 50  # tokens claimed (and reported) at a time
APPLE_TOKEN_CHECK_CONCURRENCY = 4  # Apple calls in flight at once
APPLE_TOKEN_CHECK_RATE = 5.0  # Apple calls started per second at most, across those threads
APPLE_TOKEN_CHECK_JITTER = 0.5  # random extra pause before each call, as a share of 1/RATE
APPLE_TOKEN_CHECK_LEASE = 600  # a claimed token is not picked by another run for this long

# --- Deleting an account from an app (`DELETE /api/account`) ---------------------------------
ACCOUNT_DELETION_MAX_AUTH_AGE = 300  # the access token's auth_time may be at most this old
SESSION_COOKIE_NAME = None  # default: __Host-siwa when ISSUER is https, else siwa_session
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = None  # default: True when ISSUER is https
PERMANENT_SESSION_LIFETIME = SESSION_ABSOLUTE_TIMEOUT
# The cookie lives exactly as long as the session may (the row enforces idle and absolute limits),
# so re-signing it on every response to push its expiry along would buy nothing.
SESSION_REFRESH_EACH_REQUEST = False
WTF_CSRF_TIME_LIMIT = None  # CSRF tokens live as long as the session
# Flask-WTF's https-only check wants a same-origin Referer, which no browser sends us: every page
# is served with `Referrer-Policy: no-referrer`, so it refused every form over https. The token,
# plus Fetch Metadata / Origin on the dashboard and consent pages (web/origin.py), do that job.
WTF_CSRF_SSL_STRICT = False

# --- Our token service ------------------------------------------------------------------------
ACCESS_TOKEN_TTL = 600
ID_TOKEN_TTL = 3600
REFRESH_TOKEN_IDLE_TTL = 30 * 24 * 3600
REFRESH_TOKEN_ABSOLUTE_TTL = 90 * 24 * 3600
REFRESH_TOKEN_GRACE_SECONDS = 10
# How long a process may reuse what it read about an access token's session (revocations are
# still seen at once: every committed revocation is signalled to every process); 0 = no cache.
LIVENESS_CACHE_SECONDS = 30
DEFAULT_AUDIENCE = None  # default: <ISSUER>/api
SIGNING_ALG = "ES256"  # after changing it, run `flask keys rotate`
SIGNING_KEY_CACHE_SECONDS = 5  # each worker re-reads the published key list at most this often
# memory:// counts per process (siwa_web/infra/ratelimit_store.py); Redis shares one count
RATELIMIT_STORAGE_URI = "memory://"
# A failing limiter store (Redis down, say) is logged
# and the request proceeds: rate limiting protects sign-in, it must not take it down.
RATELIMIT_SWALLOW_ERRORS = True
# A Redis store (redis://, rediss://, redis+unix://) is asked with these bounds, never twice, and
# after a failure not at all for RATELIMIT_STORE_BREAKER_SECONDS: limits then let requests
# through (infra/ratelimit_guard.py; docs/operations.md, "Failure bounds").
RATELIMIT_STORE_CONNECT_TIMEOUT = 0.25  # seconds
RATELIMIT_STORE_TIMEOUT = 0.25  # seconds per command
RATELIMIT_STORE_BREAKER_SECONDS = 30.0
RATELIMIT_TOKEN_PER_IP = "60/minute"
RATELIMIT_TOKEN_PER_CLIENT = "600/minute"
RATELIMIT_LOGIN_PER_IP = "30/minute"  # starting a sign-in writes a row: keep bots from piling up
# Web apps' authorization requests (single sign-on answers them without Apple, so more).
RATELIMIT_AUTHORIZE_PER_IP = "120/minute"
AUTHORIZATION_CODE_TTL = 60  # seconds an authorization code may wait for its app
CLIENT_CACHE_SECONDS = 5  # the authorization endpoint's per-worker copy of each client (0: off)

# --- Operations (siwa_web/ops) ----------------------------------------------------------------
HEALTH_CHECK_TIMEOUT = 2.0  # /readyz answers 503 when a dependency is silent this long (seconds)
# GET /metrics (Prometheus) answers only a scraper presenting this as a Bearer token; unset, the
# endpoint does not exist (404) and nothing is counted. At least 16 characters.
METRICS_TOKEN = None
METRICS_OUTBOX_CACHE_SECONDS = 5.0  # each worker reads the outbox gauges at most this often

# --- Retention (`flask prune`) ----------------------------------------------------------------
PRUNE_AFTER_DAYS = 30  # dead sessions, token families and notifications are kept this long
AUDIT_RETENTION_DAYS = 365
# Prune deletes in batches of this many rows, each its own short transaction, so a table of
# millions of dead rows never holds locks (or one huge WAL burst) while refreshes run. At 5,000
# keys a batch, PostgreSQL scanned all 250,000 token families per DELETE instead of probing
# their keys (docs/performance.md, section 11); at 1,000 it probes them.
PRUNE_BATCH_SIZE = 1000
PRUNE_PAUSE_SECONDS = 0.0  # sleep between batches, to leave the database to live traffic
# ... plus this many times as long as the batch took: at 1.0 a prune keeps the database busy at
# most half of its run, so live requests share the machine with it, not queue behind it.
PRUNE_SLEEP_RATIO = 1.0
