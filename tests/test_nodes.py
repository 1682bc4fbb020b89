"""Two siwa-web nodes, separate gunicorn processes on separate ports, behind one load balancer.

What one process cannot show: that everything one node does is seen by the other within the
documented bounds — revocations, sign-ins, signing keys, rate limits and deletions. The nodes
share one PostgreSQL database, one Redis rate-limit store and the same secrets, and Apple is the
emulator running as its own process (tests/support/nodes.py); the balancer has no sticky
sessions, and each test chooses which node gets the next connection.

PostgreSQL only, and never on SQLite: SQLite is one machine's file, so nodes on several machines
cannot share it (and its liveness signal is a file, not LISTEN/NOTIFY). Without PostgreSQL or
Redis the module is skipped with that reason, and fails in CI (CI=true), which starts both.
Slow: four processes start (some 10 to 20 s), then each test takes a second or two.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import time

import jwt as pyjwt
import pytest
import requests

from support.browser_http import HttpBrowser
from support.browser_http import sign_in_with_apple
from support.config import PG_SERVER_URL
from support.config import REDIS_URL
from support.nodes import cluster

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

BUNDLE_ID = "com.example.nodes"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
APPLE_CODE = "http://auth0.com/oauth/token-type/apple-authz-code"
KEY_CACHE_SECONDS = 2
LOGIN_LIMIT = 6
SETTINGS = {
    "SIWA_SIGNING_KEY_CACHE_SECONDS": str(KEY_CACHE_SECONDS),
    "SIWA_RATELIMIT_LOGIN_PER_IP": f"{LOGIN_LIMIT}/minute",
    "SIWA_TRUST_PROXY_HOPS": "1",  # the balancer is one proxy in front of the nodes
}



def _missing() -> str | None:
    if PG_SERVER_URL is None:
        return ("needs PostgreSQL: nodes share one database, which SQLite (one machine's file) "
                "cannot be; set SIWA_TEST_DATABASE_URL or run PostgreSQL on 127.0.0.1:5432")
    if REDIS_URL is None:
        return "needs Redis, the nodes' shared rate-limit store (set SIWA_TEST_REDIS_URL)"
    return None


@pytest.fixture(scope="module")
def nodes(request, tmp_path_factory):
    reason = _missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"two-node tests cannot run in CI: {reason}")
        pytest.skip(reason)
    database_url = request.getfixturevalue("postgres_database")  # the suite's, migrated
    with cluster(database_url, REDIS_URL, tmp_path_factory.mktemp("nodes"),
                 **SETTINGS) as found:
        created = json.loads(found.flask("clients", "create", "--name", "Nodes iOS",
                                         "--bundle-id", BUNDLE_ID))
        found.client_id = created["client_id"]
        yield found
        # a node that logged a traceback failed somewhere, whatever the answers said
        assert "Traceback" not in found.logs(), found.logs()


# --- what a native app and a browser do ----------------------------------------------------------


def native_sign_in(nodes, node: str, **who) -> dict:
    """Sign in with Apple on the "device" (the emulator), then exchange the code at `node`."""
    raw_nonce = secrets.token_urlsafe(24)
    apple = {"bundle_id": BUNDLE_ID, "nonce": hashlib.sha256(raw_nonce.encode()).hexdigest(),
             **(who or {"email": "ada@example.com", "first_name": "Ada", "last_name": "Byron"})}
    credential = requests.post(f"{nodes.emulator_url}/__emulator/native/authorize", json=apple,
                               timeout=10)
    assert credential.status_code == 200, credential.text
    answer = requests.post(f"{nodes.nodes[node].url}/oauth/token", timeout=10, data={
        "grant_type": TOKEN_EXCHANGE, "subject_token": credential.json()["authorizationCode"],
        "subject_token_type": APPLE_CODE, "client_id": nodes.client_id,
        "scope": "openid profile email offline_access", "nonce": raw_nonce})
    assert answer.status_code == 200, answer.text
    return answer.json()


def refresh(nodes, node: str, refresh_token: str) -> requests.Response:
    return requests.post(f"{nodes.nodes[node].url}/oauth/token", timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": refresh_token,
        "client_id": nodes.client_id})


def me(nodes, node: str, access_token: str) -> int:
    return requests.get(f"{nodes.nodes[node].url}/api/me", timeout=10,
                        headers={"Authorization": f"Bearer {access_token}"}).status_code


def until(check, within: float, step: float = 0.05) -> float:
    """Ask `check()` until it is true; fails if an attempt begun `within` seconds or more after
    the start is still false. A request's own time (a loaded machine) does not count against
    the bound: only when it was sent. Returns when the successful attempt began."""
    started = time.monotonic()
    while True:
        attempt = time.monotonic() - started
        if check():
            return attempt
        if attempt >= within:
            raise AssertionError(f"still not so {attempt:.2f} s after (bound: {within} s)")
        time.sleep(step)


def new_browser(nodes) -> HttpBrowser:
    browser = HttpBrowser()
    nodes.browsers.append(browser)
    return browser


# --- the tests --------------------------------------------------------------------------------


def test_both_nodes_are_ready_on_the_shared_database_and_redis(nodes):
    for node in nodes.nodes.values():
        body = requests.get(node.url + "/readyz", timeout=10).json()
        assert body["status"] == "ready", body
        assert {"database", "signing_keys", "redis"} <= set(body["checks"]), body
        assert requests.get(node.url + "/healthz", timeout=10).status_code == 200


def test_a_family_revoked_through_a_is_refused_by_b_within_a_second(nodes):
    tokens = native_sign_in(nodes, "a")
    rotated = refresh(nodes, "b", tokens["refresh_token"])  # B honours what A issued
    assert rotated.status_code == 200, rotated.text
    rotated = rotated.json()
    assert me(nodes, "b", rotated["access_token"]) == 200  # B's liveness cache now holds it

    revoked = requests.post(f"{nodes.nodes['a'].url}/oauth/revoke", timeout=10, data={
        "token": rotated["refresh_token"], "token_type_hint": "refresh_token",
        "client_id": nodes.client_id})
    assert revoked.status_code == 200, revoked.text
    # B's cached answer is younger than LIVENESS_CACHE_SECONDS (30 s): only A's signal ends it
    until(lambda: me(nodes, "b", rotated["access_token"]) == 401, within=1.0)
    answer = refresh(nodes, "b", rotated["refresh_token"])
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"
    assert me(nodes, "a", rotated["access_token"]) == 401


def test_a_browser_sign_in_started_on_a_completes_on_b(nodes):
    browser = new_browser(nodes)
    public = nodes.public_url
    nodes.route_to("a")
    mark = nodes.mark()
    page = browser.goto(f"{public}/auth/login")
    page = browser.click(page, "Sign in with Apple")  # A writes the sign-in transaction
    assert page.url.startswith(nodes.emulator_url), (page.url, page.text[:300])

    nodes.route_to("b")  # Apple's form_post, and everything after it, reaches B
    form = page.form().check("New test user").fill("First name", "Grace").fill(
        "Last name", "Hopper").fill("Email", "grace@example.com")
    page = browser.submit(form, "Continue")
    page = browser.submit(page.form().check("Share My Email"), "Continue")
    assert page.url == f"{public}/dashboard", (page.url, page.status, page.text[:300])
    assert "Grace Hopper" in page.text

    on_a, on_b = (nodes.served(n, mark) for n in ("a", "b"))
    assert any(line.startswith("GET /auth/apple/login") for line in on_a), on_a
    assert any(line.startswith("POST /auth/apple/callback") for line in on_b), on_b
    assert not any("/auth/apple/callback" in line for line in on_a), on_a
    # no sticky sessions needed: the session the callback on B opened is good on A
    nodes.route_to("a")
    mark = nodes.mark()
    page = browser.goto(f"{public}/dashboard")
    assert page.url == f"{public}/dashboard" and "Grace Hopper" in page.text
    assert nodes.served("a", mark) and not nodes.served("b", mark)


def test_a_key_rotated_on_a_signs_on_b_within_the_key_cache_time(nodes):
    tokens = native_sign_in(nodes, "b", email="kim@example.com", first_name="Kim",
                            last_name="Lee")
    old_kid = pyjwt.get_unverified_header(tokens["access_token"])["kid"]
    rotated = json.loads(nodes.flask("keys", "rotate"))  # the operator, on node A's machine
    new_kid = rotated["signing_kid"]
    assert new_kid != old_kid and old_kid in [r["kid"] for r in rotated["retired"]]

    current = {"refresh_token": tokens["refresh_token"]}

    def b_signs_with_the_new_key() -> bool:
        answer = refresh(nodes, "b", current["refresh_token"])
        assert answer.status_code == 200, answer.text
        current.update(answer.json())
        return pyjwt.get_unverified_header(current["access_token"])["kid"] == new_kid

    until(b_signs_with_the_new_key, within=KEY_CACHE_SECONDS, step=0.2)
    # what B signed verifies with the keys A publishes, as any resource server checks it
    jwks = pyjwt.PyJWKClient(f"{nodes.nodes['a'].url}/.well-known/jwks.json")
    key = jwks.get_signing_key_from_jwt(current["access_token"])
    claims = pyjwt.decode(current["access_token"], key, algorithms=["ES256", "RS256"],
                          audience=f"{nodes.public_url}/api", issuer=nodes.public_url)
    assert claims["sub"]
    published = {k["kid"] for k in requests.get(
        f"{nodes.nodes['b'].url}/.well-known/jwks.json", timeout=10).json()["keys"]}
    assert {old_kid, new_kid} <= published  # tokens signed before the rotation still verify


def test_rate_limit_hits_on_a_count_on_b(nodes):
    import redis

    client_ip = f"203.0.113.{secrets.randbelow(250) + 1}"

    def login(node: str, ip: str = client_ip) -> int:
        return requests.get(f"{nodes.nodes[node].url}/auth/apple/login", timeout=10,
                            allow_redirects=False,
                            headers={"X-Forwarded-For": ip}).status_code

    statuses = [login("a" if i % 2 == 0 else "b") for i in range(LOGIN_LIMIT)]
    assert statuses == [303] * LOGIN_LIMIT  # three on each node: six for the client
    assert login("b") == 429 and login("a") == 429  # each node alone has seen three
    assert login("b", ip="198.51.100.7") == 303  # counted per client address (TRUST_PROXY_HOPS)
    store = redis.Redis.from_url(nodes.redis_url)
    assert any(client_ip.encode() in key
               for key in store.scan_iter(match=f"*{nodes.redis_prefix}*"))
    store.close()


def test_a_deletion_on_a_ends_the_sessions_on_b(nodes):
    public = nodes.public_url
    nodes.route_to("b")
    laptop, phone = new_browser(nodes), new_browser(nodes)
    who = {"first_name": "Alan", "last_name": "Turing", "email": "alan@example.com"}
    page = sign_in_with_apple(laptop, laptop.goto(f"{public}/auth/login"), **who)
    assert page.url == f"{public}/dashboard", (page.url, page.text[:300])
    page = sign_in_with_apple(phone, phone.goto(f"{public}/auth/login"), new_user=False, **who)
    assert page.url == f"{public}/dashboard", (page.url, page.text[:300])
    users = requests.get(f"{nodes.emulator_url}/__emulator/users", timeout=10).json()["users"]
    [apple_user] = [u for u in users if u["email"] == who["email"]]
    tokens = native_sign_in(nodes, "b", user_id=apple_user["id"])
    assert me(nodes, "b", tokens["access_token"]) == 200

    nodes.route_to("a")
    mark = nodes.mark()
    page = laptop.goto(f"{public}/dashboard/delete")
    form = page.form(action="/dashboard/delete").check("confirm")
    page = laptop.submit(form, "Delete my account")
    assert page.url == f"{public}/auth/login" and "deleted" in page.text, page.text[:300]
    assert any(line.startswith("POST /dashboard/delete")
               for line in nodes.served("a", mark))

    nodes.route_to("b")
    until(lambda: me(nodes, "b", tokens["access_token"]) == 401, within=1.0)
    answer = refresh(nodes, "b", tokens["refresh_token"])
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"
    mark = nodes.mark()
    page = phone.goto(f"{public}/dashboard")  # the other browser's cookie, at B
    assert page.url.startswith(f"{public}/auth/login"), (page.url, page.text[:300])
    assert nodes.served("b", mark) and not nodes.served("a", mark)
