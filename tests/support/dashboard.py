"""A signed-in browser and app sessions for the dashboard, deletion and outbox tests."""
from __future__ import annotations

import html as html_text
import re
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy import update

from siwa_web.infra.extensions import db
from siwa_web.models import AppleIdentity
from siwa_web.models import AppleToken
from siwa_web.models import AuditEvent
from siwa_web.models import Client
from siwa_web.models import TokenFamily
from siwa_web.models import WebSession
from siwa_web.models.base import now_utc
from siwa_web.oauth import clients
from siwa_web.users.accounts import cipher
from support.apple import BUNDLE_ID
from support.config import count_rows
from support.tokens import NativeClient
from support.tokens import exchange_params
from support.web import CALLBACK
from support.web import callback_form
from support.web import start_login

SAFARI_MAC = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
              "(KHTML, like Gecko) Version/17.4 Safari/605.1.15")
SAFARI_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
                 "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")
APP_UA = "Acme/2.1 CFNetwork/1494.0.7 Darwin/23.4.0"
SUB_A = "001111.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.0001"
SUB_A2 = "001111.a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2.0002"
SUB_B = "002222.bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.0001"




class Browser:
    """One browser (own cookie jar and user agent) driving the real sign-in flow."""

    def __init__(self, app, fake_apple, ua: str = SAFARI_MAC) -> None:
        self.app, self.fake_apple = app, fake_apple
        self.client = app.test_client()
        self.client.environ_base["HTTP_USER_AGENT"] = ua

    def sign_in(self, sub: str = SUB_A, **claims) -> Browser:
        resp = self._through_apple(start_login(self.client), sub, **claims)
        assert resp.status_code == 303 and resp.headers["Location"] == "/dashboard", resp.data[:300]
        return self

    def link(self, sub: str, **claims):
        """Link another Apple ID through the same Apple flow, as the dashboard's button does."""
        start = start_login(self.client, path="/auth/apple/link", method="post",
                            data={"csrf_token": self.csrf()})
        return self._through_apple(start, sub, **claims)

    def reauth(self, sub: str = SUB_A, next_url: str = "/dashboard/delete", **claims):
        start = start_login(self.client, path="/auth/apple/reauth", method="post",
                            data={"csrf_token": self.csrf(), "next": next_url})
        return self._through_apple(start, sub, **claims)

    def _through_apple(self, start, sub: str, **claims):
        return self.client.post(CALLBACK, data=callback_form(self.fake_apple, start, sub=sub,
                                                             **claims))

    def csrf(self, path: str = "/dashboard") -> str:
        html = self.client.get(path).get_data(as_text=True)
        match = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    def post(self, path: str, data: dict | None = None, **kwargs):
        """POST a dashboard form the way the page does, with this browser's CSRF token."""
        return self.client.post(path, data={"csrf_token": self.csrf(), **(data or {})}, **kwargs)

    def page(self, path: str = "/dashboard") -> str:
        resp = self.client.get(path)
        assert resp.status_code == 200, resp.status_code
        return resp.get_data(as_text=True)

    def is_signed_in(self) -> bool:
        resp = self.client.get("/dashboard")
        assert resp.status_code in (200, 302)
        if resp.status_code == 302:
            assert resp.headers["Location"].startswith("/auth/login")
        return resp.status_code == 200


def ensure_client(app, bundle_id: str = BUNDLE_ID, name: str = "Acme for iPhone") -> str:
    """Register a native client once; returns its client_id."""
    with app.app_context():
        found = db.session.scalar(select(Client.id).where(Client.bundle_id == bundle_id))
        if found:
            return found
        client = clients.create(db.session, name=name, bundle_id=bundle_id)
        db.session.commit()
        return client.id


def app_sign_in(app, fake_apple, sub: str = SUB_A, bundle_id: str = BUNDLE_ID,
                scope: str = "openid email offline_access") -> dict:
    """A native app's sign-in: Apple code → our tokens, through POST /oauth/token."""
    client_id = ensure_client(app, bundle_id)
    auth = fake_apple.authorize(client_id=bundle_id, sub=sub)
    params = exchange_params(NativeClient(client_id, bundle_id), auth.code, scope=scope)
    resp = app.test_client().post("/oauth/token", data=params, headers={"User-Agent": APP_UA})
    assert resp.status_code == 200, resp.get_json()
    return {**resp.get_json(), "client_id": client_id}


def refresh(app, tokens: dict):
    return app.test_client().post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
        "client_id": tokens["client_id"]})


def api_me(app, tokens: dict, path: str = "/api/me"):
    return app.test_client().get(path, headers={
        "Authorization": f"Bearer {tokens['access_token']}"})


def snapshot(app) -> dict:
    """Row counts plus every revocation mark: "nothing changed" means this is equal."""
    state = count_rows(app)
    state.pop("audit_events", None)
    with app.app_context():
        state["revoked_sessions"] = sorted(db.session.scalars(
            select(WebSession.id).where(WebSession.revoked_at.is_not(None))))
        state["revoked_families"] = sorted(db.session.scalars(
            select(TokenFamily.id).where(TokenFamily.revoked_at.is_not(None))))
    return state


def events(app, name: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)))


def one(app, model, *where):
    with app.app_context():
        return db.session.scalars(select(model).where(*where)).one()


def make_stale(app, seconds: int | None = None) -> None:
    """Age every session's sign-in past FRESH_LOGIN_MAX_AGE."""
    age = seconds or app.config["FRESH_LOGIN_MAX_AGE"] + 60
    with app.app_context():
        db.session.execute(update(WebSession).values(auth_time=now_utc() - timedelta(seconds=age)))
        db.session.commit()


def section(html: str, section_id: str) -> str:
    """The HTML of one dashboard card, by its id."""
    start = html.index(f'id="{section_id}"')
    return html[start:html.index("</section>", start)]


def flashes(browser: Browser, path: str) -> str:
    html = browser.client.get(path).get_data(as_text=True)
    return html_text.unescape(" ".join(re.findall(r'class="flash[^"]*"[^>]*>([^<]*)<', html)))


def apple_tokens(app, sub: str) -> set[tuple[str, str]]:
    """(client_id, plaintext refresh token) of every Apple token stored for an Apple ID."""
    with app.app_context():
        rows = db.session.scalars(select(AppleToken).join(AppleIdentity).where(
            AppleIdentity.sub == sub)).all()
        return {(r.client_id, cipher().decrypt(r.refresh_token_encrypted)) for r in rows}
