"""Web sign-in fixtures: a real-flow sign-in helper and live servers for browser tests."""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
from werkzeug.serving import make_server

from siwa_web import create_app
from siwa_web.infra.extensions import db
from support.browsers import unavailable

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def c_hash(code: str) -> str:
    """OIDC c_hash: base64url of the left half of SHA-256(code)."""
    digest = hashlib.sha256(code.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


@dataclass
class LoginStart:
    """What the browser carries to Apple: the authorize URL's state and nonce."""

    state: str
    nonce: str
    location: str


def start_login(client, next_url: str | None = None, path: str = "/auth/apple/login",
                method: str = "get", data: dict | None = None) -> LoginStart:
    """Begin a sign-in as a browser would and read state/nonce off Apple's authorize URL."""
    query = {"next": next_url} if next_url else None
    resp = getattr(client, method)(path, query_string=query, data=data)
    assert resp.status_code == 303, resp.data[:500]
    params = parse_qs(urlsplit(resp.headers["Location"]).query)
    return LoginStart(params["state"][0], params["nonce"][0], resp.headers["Location"])


CALLBACK = "/auth/apple/callback"


def callback_form(fake_apple, start: LoginStart, *, sub=None, user=None, **claims) -> dict:
    """What Apple's page POSTs to us after consent, for the transaction `start`."""
    auth = fake_apple.authorize(nonce=start.nonce, sub=sub,
                                redirect_uri="https://siwa.test/auth/apple/callback", **claims)
    form = {"code": auth.code, "id_token": auth.id_token, "state": start.state}
    if user is not None:
        form["user"] = user
    return form


def sign_in(client, fake_apple, *, sub=None, user=None, next_url=None, **claims):
    """Sign `client` in through the real flow (login → fake Apple → callback)."""
    start = start_login(client, next_url)
    return client.post(CALLBACK, data=callback_form(fake_apple, start, sub=sub, user=user,
                                                     **claims))


@pytest.fixture
def signed_in(client, fake_apple):
    """A test client signed in as a new user (Apple sub DEFAULT_SUB, name Maria Ruiz)."""
    import json

    user = json.dumps({"name": {"firstName": "Maria", "lastName": "Ruiz"}})
    resp = sign_in(client, fake_apple, user=user)
    assert resp.status_code == 303, resp.get_data(as_text=True)[:300]
    return client


# --- live servers for real-browser tests ------------------------------------------------------


def _not_yet(environ, start_response):  # pragma: no cover - replaced before serving
    start_response("503 Service Unavailable", [])
    return [b""]


class _Server(threading.Thread):
    """A threaded WSGI server on 127.0.0.1. Bound at once (port 0: the kernel picks a free
    one), so no other process can take the port between choosing it and serving on it; the
    app, which must know its own address, is plugged in afterwards."""

    def __init__(self, wsgi_app=None, port: int = 0, ssl_context=None) -> None:
        super().__init__(daemon=True)
        self.server = make_server("127.0.0.1", port, wsgi_app or _not_yet, threaded=True,
                                  ssl_context=ssl_context)
        self.port = self.server.server_port

    def serve(self, wsgi_app) -> None:
        self.server.app = wsgi_app
        self.start()

    def run(self) -> None:
        self.server.serve_forever()

    def stop(self) -> None:
        self.server.shutdown()


@dataclass
class LiveServer:
    """The app at http://localhost:<port> and the emulator at http://127.0.0.1:<port>."""

    app: object
    url: str
    emulator_url: str
    emulator: object


@contextmanager
def serve_live(app_config: dict, tls: tuple[str, str] | None = None) -> Iterator[LiveServer]:
    """Run the app and a standalone Apple emulator on two different sites (cross-site POST).

    With `tls` (certificate and key files for localhost) the app is served over https, as in
    production: its cookies are then `Secure` and named `__Host-siwa` / `__Secure-siwa-tx`.
    """
    from siwa_web.emulator import create_emulator_app
    from siwa_web.emulator import settings_from_app

    app_server, emu_server = _Server(ssl_context=tls), _Server()
    app_port, emu_port = app_server.port, emu_server.port
    config = dict(app_config)
    config.update(
        ISSUER=f"{'https' if tls else 'http'}://localhost:{app_port}",
        APPLE_BASE_URL=f"http://127.0.0.1:{emu_port}",
        APPLE_EMULATOR=True,
        SESSION_COOKIE_SECURE=None,
        SESSION_COOKIE_NAME=None,
        TESTING=False,
    )
    app = create_app(config)
    settings = dataclasses.replace(settings_from_app(app), base_url=config["APPLE_BASE_URL"])
    emulator = create_emulator_app(settings)
    app_server.serve(app)
    emu_server.serve(emulator)
    try:
        yield LiveServer(app, config["ISSUER"], config["APPLE_BASE_URL"], emulator)
    finally:
        for server in (app_server, emu_server):
            server.stop()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def live_server(app_config):
    """The app on http://localhost:<port>, the emulator on http://127.0.0.1:<port>."""
    with serve_live(app_config) as live:
        yield live


@pytest.fixture(scope="session")
def localhost_tls(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for localhost (certificate file, key file), made for the run."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "localhost.pem", folder / "localhost-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


def browser_sign_in(page, live: LiveServer, *, new_user: bool = True, first: str = "Maria",
                    last: str = "Ruiz", email: str = "maria@example.com",
                    hide_email: bool = True) -> None:
    """Our login page → the emulator's account (and, the first time, consent) page → back."""
    page.goto(f"{live.url}/auth/login")
    page.get_by_role("link", name="Sign in with Apple").click()
    page.wait_for_url(f"{live.emulator_url}/**")
    if new_user:
        page.get_by_label("New test user").check()
        page.get_by_label("First name").fill(first)
        page.get_by_label("Last name").fill(last)
        page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Continue").click()  # an existing user is preselected
    if new_user:
        if hide_email:
            page.get_by_label("Hide My Email").check()
        page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{live.url}/dashboard")


@pytest.fixture(scope="session")
def chromium():
    """A headless Debian Chromium driven by Playwright; skipped loudly where it is missing,
    and failing in CI (CI=true)."""
    if not Path(CHROMIUM).exists():
        unavailable(CHROMIUM)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def artifacts() -> Path:
    """Folder for screenshots kept after the run (git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def csrf_token(client, path: str = "/dashboard") -> str:
    """Read the CSRF token a page hands the browser (Flask-WTF stays on in tests)."""
    import re

    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)
