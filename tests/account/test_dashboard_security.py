"""Dashboard actions under attack: other users' ids, CSRF, cross-site posts, races (DASH-*)."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func
from sqlalchemy import select

from siwa_web.infra.extensions import db
from siwa_web.models import AppleIdentity
from siwa_web.models import TokenFamily
from siwa_web.models import User
from siwa_web.models import WebSession
from support.dashboard import SAFARI_IPHONE
from support.dashboard import SUB_A
from support.dashboard import SUB_A2
from support.dashboard import SUB_B
from support.dashboard import Browser
from support.dashboard import app_sign_in
from support.dashboard import events
from support.dashboard import one
from support.dashboard import snapshot


@pytest.fixture
def two_users(app, fake_apple):
    """Alice (two Apple IDs, a web and an app session) and Bob (the same), ids by name."""
    alice = Browser(app, fake_apple).sign_in(SUB_A)
    assert alice.link(SUB_A2).status_code == 303
    app_sign_in(app, fake_apple, SUB_A)
    bob = Browser(app, fake_apple, SAFARI_IPHONE).sign_in(SUB_B)
    assert bob.link("002222.b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2.0002").status_code == 303
    app_sign_in(app, fake_apple, SUB_B)
    with app.app_context():
        bob_id = db.session.scalar(select(AppleIdentity.user_id).where(AppleIdentity.sub == SUB_B))
        ids = {
            "session": db.session.scalar(select(WebSession.id).where(WebSession.user_id == bob_id)),
            "family": db.session.scalar(
                select(TokenFamily.id).where(TokenFamily.user_id == bob_id)),
            "identity": db.session.scalar(select(AppleIdentity.id).where(
                AppleIdentity.user_id == bob_id, AppleIdentity.sub == SUB_B)),
        }
    return alice, bob, ids


IDOR_POSTS = [
    "/dashboard/sessions/{session}/revoke",
    "/dashboard/apps/{family}/revoke",
    "/dashboard/identities/{identity}/unlink",
]


@pytest.mark.parametrize("path", IDOR_POSTS)
def test_acting_on_another_users_id_is_404_and_changes_nothing(app, two_users, path):
    """DASH-02: 404, not 403, so ids of other accounts cannot even be confirmed to exist."""
    alice, bob, ids = two_users
    before = snapshot(app)
    resp = alice.post(path.format(**ids))
    assert resp.status_code == 404
    assert snapshot(app) == before
    assert bob.is_signed_in()
    assert events(app, "session_revoked") == events(app, "family_revoked") == []
    assert events(app, "identity_unlinked") == []


@pytest.mark.parametrize("path", IDOR_POSTS)
def test_unknown_ids_are_404(app, fake_apple, path):
    me = Browser(app, fake_apple).sign_in()
    before = snapshot(app)
    ids = {"session": "nope", "family": "0" * 36, "identity": "../../etc"}
    assert me.post(path.format(**ids)).status_code == 404
    assert snapshot(app) == before


def test_confirm_page_of_another_users_identity_is_404(app, two_users):
    alice, _, ids = two_users
    assert alice.client.get(f"/dashboard/identities/{ids['identity']}/unlink").status_code == 404


def own_targets(app) -> dict[str, str]:
    """Alice's own ids (the first user), for requests that would succeed but for CSRF."""
    with app.app_context():
        alice = db.session.scalar(select(AppleIdentity.user_id).where(AppleIdentity.sub == SUB_A))
        return {
            "session": db.session.scalars(select(WebSession.id).where(
                WebSession.user_id == alice)).all()[-1],
            "family": db.session.scalar(select(TokenFamily.id).where(
                TokenFamily.user_id == alice)),
            "identity": db.session.scalar(select(AppleIdentity.id).where(
                AppleIdentity.sub == SUB_A2)),
        }


ALL_POSTS = [
    ("/dashboard/sessions/{session}/revoke", {}),
    ("/dashboard/sessions/revoke-others", {}),
    ("/dashboard/apps/{family}/revoke", {}),
    ("/dashboard/apps/revoke-all", {}),
    ("/dashboard/identities/{identity}/unlink", {}),
    ("/dashboard/delete", {"confirm": "yes"}),
]


@pytest.mark.parametrize("path, form", ALL_POSTS)
@pytest.mark.parametrize("token", ["missing", "garbage", "other_users"])
def test_csrf_token_missing_or_foreign_is_400_and_changes_nothing(app, two_users, path, form,
                                                                   token):
    """DASH-03, with CSRFProtect on as in production."""
    assert app.config.get("WTF_CSRF_ENABLED", True)
    alice, bob, _ = two_users
    Browser(app, alice.fake_apple, SAFARI_IPHONE).sign_in(SUB_A)  # a session to revoke
    url = path.format(**own_targets(app))
    data = dict(form)
    if token == "garbage":
        data["csrf_token"] = "IjAwMDAi.AAAAAA.forged"
    elif token == "other_users":
        data["csrf_token"] = bob.csrf()
    before = snapshot(app)
    resp = alice.client.post(url, data=data)
    assert resp.status_code == 400
    assert "CSRF" in resp.get_data(as_text=True)
    assert snapshot(app) == before
    assert alice.is_signed_in()


@pytest.mark.parametrize("path, form", ALL_POSTS)
@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},  # a sandboxed frame on any site
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site", "Origin": "https://sub.siwa.test"},
    {"Origin": "http://localhost", "Sec-Fetch-Site": "cross-site"},
])
def test_cross_site_posts_are_refused_even_with_a_token(app, two_users, path, form, headers):
    """DASH-04: a browser that says the form came from another site is refused (403), NC."""
    alice, _, _ = two_users
    url = path.format(**own_targets(app))
    token = alice.csrf()
    before = snapshot(app)
    resp = alice.client.post(url, data={"csrf_token": token, **form}, headers=headers)
    assert resp.status_code == 403
    assert snapshot(app) == before


@pytest.mark.parametrize("headers", [
    {"Origin": "http://localhost"},
    {"Origin": "https://siwa.test"},  # ISSUER, behind a proxy
    {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"},
    {"Origin": "null", "Sec-Fetch-Site": "same-origin"},  # Chromium under no-referrer
])
def test_same_origin_posts_are_accepted(app, fake_apple, headers):
    me = Browser(app, fake_apple).sign_in()
    resp = me.post("/dashboard/sessions/revoke-others", headers=headers)
    assert resp.status_code == 303


def test_logout_is_post_only(app, fake_apple):
    """DASH-13."""
    me = Browser(app, fake_apple).sign_in()
    assert me.client.get("/auth/logout").status_code == 405
    assert me.is_signed_in()


def test_actions_are_post_only(app, fake_apple):
    me = Browser(app, fake_apple).sign_in()
    session_id = one(app, WebSession).id
    for path in (f"/dashboard/sessions/{session_id}/revoke", "/dashboard/sessions/revoke-others",
                 "/dashboard/apps/revoke-all"):
        assert me.client.get(path).status_code == 405
    assert me.is_signed_in()


# --- concurrency: a user never ends up with no way to sign in ---------------------------------


def _race(app, cookie_client, urls: list[str], token: str) -> list[int]:
    """POST each url at the same moment from its own client sharing one browser session."""
    cookie = cookie_client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    barrier = threading.Barrier(len(urls))
    results: list[int] = [0] * len(urls)

    def post(i: int, url: str) -> None:
        client = app.test_client()
        client.set_cookie(cookie.key, cookie.value, domain="localhost")
        barrier.wait()
        results[i] = client.post(url, data={"csrf_token": token}).status_code

    threads = [threading.Thread(target=post, args=(i, u)) for i, u in enumerate(urls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_unlinks_never_leave_zero_identities(app, fake_apple):
    """DASH-06: two unlinks racing for the last two identities: exactly one wins, every round."""
    me = Browser(app, fake_apple).sign_in(SUB_A)
    user_id = one(app, User).id
    token = me.csrf()
    for n in range(12):
        with app.app_context():
            db.session.add(AppleIdentity(user_id=user_id, sub=f"009999.{n:032x}.0001",
                                         issuer="https://appleid.apple.com"))
            db.session.commit()
            ids = db.session.scalars(select(AppleIdentity.id).where(
                AppleIdentity.user_id == user_id)).all()
        assert len(ids) == 2
        statuses = _race(app, me.client, [f"/dashboard/identities/{i}/unlink" for i in ids], token)
        assert sorted(statuses) == [303, 409], statuses
        with app.app_context():
            left = db.session.scalar(select(func.count()).select_from(AppleIdentity).where(
                AppleIdentity.user_id == user_id))
        assert left == 1
    assert len(events(app, "identity_unlinked")) == 12
    assert me.is_signed_in()


@pytest.mark.parametrize("path", ["/dashboard/sessions/revoke-others", "/auth/logout"])
def test_forms_work_over_https_where_browsers_send_no_referer(app, fake_apple, path):
    """Every page is served with `Referrer-Policy: no-referrer`, so a browser's form POST has no
    `Referer`; over https, Flask-WTF's strict referrer check (on by default) refused every form
    with 400 "The referrer header is missing". The token and Fetch Metadata are the checks."""
    laptop = Browser(app, fake_apple).sign_in(SUB_A)
    phone = Browser(app, fake_apple, SAFARI_IPHONE).sign_in(SUB_A)
    token = laptop.csrf()
    resp = laptop.client.post(path, data={"csrf_token": token}, base_url="https://localhost",
                              headers={"Sec-Fetch-Site": "same-origin", "Origin": "null"})
    assert resp.status_code == 303, resp.get_data(as_text=True)[:300]
    with app.app_context():
        revoked = db.session.scalars(select(WebSession).where(
            WebSession.revoked_at.is_not(None))).all()
    assert len(revoked) == 1
    assert ("iPhone" in revoked[0].user_agent) == (path != "/auth/logout")
    assert phone.client.get("/dashboard").status_code == (302 if path != "/auth/logout" else 200)


def test_a_forged_token_over_https_is_still_refused(app, fake_apple):
    laptop = Browser(app, fake_apple).sign_in(SUB_A)
    before = snapshot(app)
    resp = laptop.client.post("/dashboard/sessions/revoke-others", data={"csrf_token": "forged"},
                              base_url="https://localhost",
                              headers={"Sec-Fetch-Site": "same-origin", "Origin": "null"})
    assert resp.status_code == 400
    assert snapshot(app) == before
