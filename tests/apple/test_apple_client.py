"""AppleClient over HTTP: request shape, timeouts, no redirects or retries, error mapping, logs."""
from __future__ import annotations

import logging
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
import requests

from siwa_web.apple import AppleClient
from siwa_web.apple import AppleMisconfigured
from siwa_web.apple import AppleRejected
from siwa_web.apple import AppleSettings
from siwa_web.apple import AppleUnavailable
from siwa_web.apple import ClientSecretFactory
from siwa_web.apple import InvalidIdentityToken
from support.apple import BUNDLE_ID
from support.apple import KEY_ID
from support.apple import SERVICES_ID
from support.apple import TEAM_ID

REDIRECT_URI = "https://siwa.test/auth/apple/callback"


@pytest.fixture
def settings(apple_private_key_pem) -> AppleSettings:
    return AppleSettings("https://appleid.apple.com", TEAM_ID, KEY_ID, apple_private_key_pem,
                         connect_timeout=2.5, read_timeout=7.5, call_deadline=9.0)


@pytest.fixture
def apple(settings, clock) -> AppleClient:
    return AppleClient(settings, clock=clock)


def exchange(apple, code="c-test-code", **kwargs):
    return apple.exchange_code(client_id=SERVICES_ID, code=code, **kwargs)


# --- authorize URL -----------------------------------------------------------------------------
def test_authorize_url_has_apples_parameters(apple):
    url = apple.authorize_url(client_id=SERVICES_ID, redirect_uri=REDIRECT_URI, state="s t&x",
                              nonce="n")
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://appleid.apple.com/auth/authorize"
    assert "response_type=code%20id_token" in url and "scope=name%20email" in url
    assert parse_qs(parts.query) == {
        "client_id": [SERVICES_ID], "redirect_uri": [REDIRECT_URI], "state": ["s t&x"],
        "nonce": ["n"], "response_type": ["code id_token"], "response_mode": ["form_post"],
        "scope": ["name email"]}


def test_authorize_url_without_scope(apple):
    url = apple.authorize_url(client_id=SERVICES_ID, redirect_uri=REDIRECT_URI, state="s",
                              nonce="n", scope="", response_type="code", response_mode="query")
    query = parse_qs(urlsplit(url).query)
    assert "scope" not in query and query["response_mode"] == ["query"]


def test_endpoints_follow_base_url(apple_private_key_pem):
    s = AppleSettings("https://siwa.test/__apple/", TEAM_ID, KEY_ID, apple_private_key_pem)
    assert (s.authorize_url, s.token_url, s.revoke_url, s.keys_url) == (
        "https://siwa.test/__apple/auth/authorize", "https://siwa.test/__apple/auth/token",
        "https://siwa.test/__apple/auth/revoke", "https://siwa.test/__apple/auth/keys")


def test_settings_repr_hides_the_key(settings, apple_private_key_pem):
    assert apple_private_key_pem.splitlines()[1] not in repr(settings)


# --- code exchange: request shape ---------------------------------------------------------------
def test_exchange_posts_a_form_with_a_valid_client_secret(apple, fake_apple, requests_mock):
    tokens = exchange(apple, redirect_uri=REDIRECT_URI)
    form = fake_apple.token_requests[0]
    assert set(form) == {"client_id", "client_secret", "code", "grant_type", "redirect_uri"}
    assert form["grant_type"] == "authorization_code" and form["code"] == "c-test-code"
    assert form["redirect_uri"] == REDIRECT_URI
    assert fake_apple.verify_client_secret(form)["sub"] == SERVICES_ID
    req = requests_mock.last_request
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert req.timeout == (2.5, 7.5) and req.verify not in (False, None)  # TLS stays verified
    assert tokens.refresh_token and tokens.access_token and tokens.expires_in == 3600
    claims = apple.verify_id_token(tokens.id_token, audience=SERVICES_ID,
                                   access_token=tokens.access_token)
    assert claims.sub == fake_apple.sub_for_code("c-test-code")


def test_native_code_exchange_omits_redirect_uri_and_uses_the_bundle_secret(apple, fake_apple):
    tokens = apple.exchange_code(client_id=BUNDLE_ID, code="c-native")
    form = fake_apple.token_requests[0]
    assert "redirect_uri" not in form and form["client_id"] == BUNDLE_ID
    assert fake_apple.verify_client_secret(form)["sub"] == BUNDLE_ID
    assert apple.verify_id_token(tokens.id_token, audience=BUNDLE_ID).aud == BUNDLE_ID


def test_client_secrets_are_cached_across_calls(apple, fake_apple):
    exchange(apple, code="c-1")
    exchange(apple, code="c-2")
    first, second = fake_apple.token_requests
    assert first["client_secret"] == second["client_secret"]
    assert isinstance(apple.client_secrets, ClientSecretFactory)


def test_one_session_is_reused(settings, clock, fake_apple):
    session = requests.Session()
    apple = AppleClient(settings, session=session, clock=clock)
    assert apple.session is session
    exchange(apple)
    assert len(fake_apple.token_requests) == 1


def test_registered_code_returns_its_sub_and_claims(apple, fake_apple):
    auth = fake_apple.authorize(nonce="n1", sub="000001.abc.0001", redirect_uri=REDIRECT_URI,
                                email="maria@example.com", is_private_email=False)
    front = apple.verify_id_token(auth.id_token, audience=SERVICES_ID, nonce="n1", code=auth.code)
    tokens = exchange(apple, code=auth.code, redirect_uri=REDIRECT_URI)
    back = apple.verify_id_token(tokens.id_token, audience=SERVICES_ID,
                                 access_token=tokens.access_token, nonce="n1")
    assert front.sub == back.sub == "000001.abc.0001"
    assert back.email == "maria@example.com" and back.is_private_email is False


# --- Apple's own refusals (the fake's default behaviour) ----------------------------------------
def test_used_code_is_invalid_grant(apple, fake_apple):
    exchange(apple)
    with pytest.raises(AppleRejected) as info:
        exchange(apple)
    assert type(info.value) is AppleRejected
    assert info.value.error == "invalid_grant"
    assert info.value.description == "The code has already been used."


def test_code_for_another_client_or_redirect_is_invalid_grant(apple, fake_apple):
    native = fake_apple.authorize(client_id=BUNDLE_ID)
    with pytest.raises(AppleRejected, match="invalid_grant"):
        exchange(apple, code=native.code)
    web = fake_apple.authorize(redirect_uri=REDIRECT_URI)
    with pytest.raises(AppleRejected) as info:
        exchange(apple, code=web.code, redirect_uri="https://siwa.test/other")
    assert info.value.description.startswith("redirect_uri mismatch")


def test_broken_client_secret_is_misconfigured(settings, clock, fake_apple):
    other_team = AppleClient(
        AppleSettings(settings.base_url, "OTHERTEAM1", KEY_ID, settings.private_key_pem),
        clock=clock)
    with pytest.raises(AppleMisconfigured) as info:
        exchange(other_team)
    assert info.value.error == "invalid_client"
    assert fake_apple.client_secret_errors


# --- failure mapping ----------------------------------------------------------------------------
@pytest.mark.parametrize("reply,expected", [
    ({"status": 400, "json": {"error": "invalid_grant",
                              "error_description": "The code has expired or has been revoked."}},
     AppleRejected),
    ({"status": 400, "json": {"error": "invalid_request"}}, AppleRejected),
    ({"status": 400, "json": {"error": "unsupported_grant_type"}}, AppleRejected),
    ({"status": 400, "json": {"error": "invalid_client"}}, AppleMisconfigured),
    ({"status": 401, "json": {"error": "invalid_client"}}, AppleMisconfigured),
    ({"status": 400, "text": "<html>Bad Request</html>"}, AppleUnavailable),
    ({"status": 400, "json": {"no_error": "x"}}, AppleUnavailable),
    ({"status": 400, "json": {"error": 42}}, AppleUnavailable),
    ({"status": 400, "json": ["invalid_grant"]}, AppleUnavailable),
    ({"status": 500, "json": {"error": "server_error"}}, AppleUnavailable),
    ({"status": 500, "text": "Internal Server Error"}, AppleUnavailable),
    ({"status": 502, "text": ""}, AppleUnavailable),
    ({"status": 503, "text": "<html>Service Unavailable</html>"}, AppleUnavailable),
    ({"status": 404, "text": "Not Found"}, AppleUnavailable),
    ({"status": 429, "json": {"error": "slow_down"}}, AppleUnavailable),
    ({"status": 200, "text": "<html><body>Welcome</body></html>"}, AppleUnavailable),
    ({"status": 200, "text": '{"id_token": "a.b.c"'}, AppleUnavailable),
    ({"status": 200, "json": {"access_token": "a", "token_type": "Bearer"}}, AppleUnavailable),
    ({"status": 200, "json": {"id_token": ""}}, AppleUnavailable),
    ({"status": 200, "json": {"id_token": 123}}, AppleUnavailable),
    ({"status": 200, "json": ["id_token"]}, AppleUnavailable),
    ({"status": 201, "json": {"id_token": "a.b.c"}}, AppleUnavailable),
    ({"exc": requests.exceptions.ReadTimeout}, AppleUnavailable),
    ({"exc": requests.exceptions.ConnectTimeout}, AppleUnavailable),
    ({"exc": requests.exceptions.ConnectionError}, AppleUnavailable),
    ({"exc": requests.exceptions.SSLError}, AppleUnavailable),
    ({"exc": requests.exceptions.ChunkedEncodingError}, AppleUnavailable),
])
def test_token_failures_map_to_typed_errors_and_are_never_retried(apple, fake_apple, reply,
                                                                  expected):
    fake_apple.next_token_response(**reply)
    with pytest.raises(expected) as info:
        exchange(apple)
    assert type(info.value) is expected
    assert len(fake_apple.token_requests) == 1  # REL-06: sent once, never again


def test_rejection_carries_apples_error_and_description(apple, fake_apple):
    fake_apple.next_token_response(status=400, json={"error": "invalid_grant",
                                                     "error_description": "client_id mismatch."})
    with pytest.raises(AppleRejected) as info:
        exchange(apple)
    assert (info.value.error, info.value.description) == ("invalid_grant", "client_id mismatch.")


def test_hostile_error_text_is_cleaned(apple, fake_apple):
    fake_apple.next_token_response(status=400, json={"error": "invalid_grant\r\nX: y",
                                                     "error_description": "a\nb" + "z" * 500})
    with pytest.raises(AppleRejected) as info:
        exchange(apple)
    assert "\n" not in info.value.error and "\n" not in info.value.description
    assert len(info.value.description) <= 200


def test_redirects_are_not_followed(apple, fake_apple, requests_mock):
    evil = requests_mock.post("https://evil.example/steal", json={"id_token": "a.b.c"})
    fake_apple.next_token_response(status=307, headers={"Location": "https://evil.example/steal"})
    with pytest.raises(AppleUnavailable):
        exchange(apple)
    assert evil.call_count == 0 and len(fake_apple.token_requests) == 1


def test_a_token_answer_that_passes_the_client_still_needs_verification(apple, fake_apple):
    """The client only checks the shape; a forged id_token is caught by verify_id_token."""
    forged = fake_apple.mint_id_token(key=fake_apple.foreign_key)
    fake_apple.next_token_response(json={"id_token": forged, "access_token": "a"})
    tokens = exchange(apple)
    assert tokens.id_token == forged and tokens.refresh_token is None
    with pytest.raises(InvalidIdentityToken):
        apple.verify_id_token(tokens.id_token, audience=SERVICES_ID)


def test_odd_optional_fields_are_tolerated(apple, fake_apple):
    token = fake_apple.mint_id_token()
    fake_apple.next_token_response(json={"id_token": token, "access_token": 5,
                                         "refresh_token": "", "expires_in": "3600"})
    tokens = exchange(apple)
    assert (tokens.access_token, tokens.refresh_token, tokens.expires_in) == (None, None, None)


# --- refresh -------------------------------------------------------------------------------------
def test_refresh_returns_a_new_id_token_and_no_refresh_token(apple, fake_apple):
    first = exchange(apple)
    tokens = apple.refresh(client_id=SERVICES_ID, refresh_token=first.refresh_token)
    form = fake_apple.token_requests[-1]
    assert form["grant_type"] == "refresh_token" and form["refresh_token"] == first.refresh_token
    assert "code" not in form
    assert tokens.refresh_token is None
    claims = apple.verify_id_token(tokens.id_token, audience=SERVICES_ID,
                                   access_token=tokens.access_token)
    assert claims.sub == fake_apple.sub_for_code("c-test-code")


def test_refresh_of_a_revoked_token_is_invalid_grant(apple, fake_apple):
    first = exchange(apple)
    apple.revoke(client_id=SERVICES_ID, token=first.refresh_token)
    with pytest.raises(AppleRejected, match="invalid_grant"):
        apple.refresh(client_id=SERVICES_ID, refresh_token=first.refresh_token)


def test_refresh_of_a_registered_token(apple, fake_apple):
    fake_apple.register_refresh_token("r-seeded", sub="000002.def.0002")
    tokens = apple.refresh(client_id=SERVICES_ID, refresh_token="r-seeded")
    assert apple.verify_id_token(tokens.id_token, audience=SERVICES_ID).sub == "000002.def.0002"


def test_refresh_timeout_is_unavailable_and_single(apple, fake_apple):
    fake_apple.next_token_response(exc=requests.exceptions.ReadTimeout)
    with pytest.raises(AppleUnavailable):
        apple.refresh(client_id=SERVICES_ID, refresh_token="r-x")
    assert len(fake_apple.token_requests) == 1


# --- revoke --------------------------------------------------------------------------------------
def test_revoke_posts_the_documented_form(apple, fake_apple, requests_mock):
    assert apple.revoke(client_id=SERVICES_ID, token="r-abc") is None
    form = fake_apple.revoke_requests[0]
    assert set(form) == {"client_id", "client_secret", "token", "token_type_hint"}
    assert form["token_type_hint"] == "refresh_token" and form["token"] == "r-abc"
    assert fake_apple.verify_client_secret(form)["sub"] == SERVICES_ID
    assert requests_mock.last_request.timeout == (2.5, 7.5)
    assert fake_apple.revoked_tokens == ["r-abc"]


def test_revoke_access_token_hint(apple, fake_apple):
    apple.revoke(client_id=BUNDLE_ID, token="a-abc", token_type_hint="access_token")
    assert fake_apple.revoke_requests[0]["token_type_hint"] == "access_token"


@pytest.mark.parametrize("reply,expected", [
    ({"status": 200, "text": ""}, None),
    ({"status": 200, "json": {}}, None),
    ({"status": 400, "json": {"error": "invalid_client"}}, AppleMisconfigured),
    ({"status": 400, "json": {"error": "invalid_request"}}, AppleRejected),
    ({"status": 400, "text": "nope"}, AppleUnavailable),
    ({"status": 503, "text": "<html>"}, AppleUnavailable),
    ({"status": 500, "json": {"error": "server_error"}}, AppleUnavailable),
    ({"status": 302, "headers": {"Location": "https://evil.example/"}}, AppleUnavailable),
    ({"exc": requests.exceptions.ReadTimeout}, AppleUnavailable),
    ({"exc": requests.exceptions.ConnectTimeout}, AppleUnavailable),
])
def test_revoke_failures(apple, fake_apple, reply, expected):
    fake_apple.next_revoke_response(**reply)
    if expected is None:
        apple.revoke(client_id=SERVICES_ID, token="r-abc")
    else:
        with pytest.raises(expected):
            apple.revoke(client_id=SERVICES_ID, token="r-abc")
    assert len(fake_apple.revoke_requests) == 1


def test_revoke_outage_persists_until_restored(apple, fake_apple):
    fake_apple.outage("revoke")
    for _ in range(3):
        with pytest.raises(AppleUnavailable):
            apple.revoke(client_id=SERVICES_ID, token="r-abc")
    fake_apple.restore("revoke")
    apple.revoke(client_id=SERVICES_ID, token="r-abc")


# --- keys --------------------------------------------------------------------------------------
def test_verify_id_token_uses_one_cached_key_set(apple, fake_apple, requests_mock):
    for _ in range(5):
        apple.verify_id_token(fake_apple.mint_id_token(), audience=SERVICES_ID)
    assert fake_apple.jwks_calls == 1
    keys_request = [r for r in requests_mock.request_history if r.path == "/auth/keys"][0]
    assert keys_request.timeout == (2.5, 7.5)


# --- logs ---------------------------------------------------------------------------------------
def test_logs_name_apples_error_but_no_secret(apple, fake_apple, caplog, apple_private_key_pem):
    caplog.set_level(logging.DEBUG)
    secrets_seen: list[str] = []
    tokens = exchange(apple, redirect_uri=REDIRECT_URI)
    secrets_seen += ["c-test-code", tokens.id_token, tokens.access_token, tokens.refresh_token]
    apple.refresh(client_id=SERVICES_ID, refresh_token=tokens.refresh_token)
    fake_apple.next_token_response(status=400, json={"error": "invalid_grant",
                                                     "error_description": "The code has expired."})
    with pytest.raises(AppleRejected):
        exchange(apple, code="c-second-code")
    fake_apple.next_token_response(status=500, text="boom")
    with pytest.raises(AppleUnavailable):
        exchange(apple, code="c-third-code")
    fake_apple.next_token_response(exc=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(AppleUnavailable):
        exchange(apple, code="c-fourth-code")
    fake_apple.next_revoke_response(status=400, json={"error": "invalid_client"})
    with pytest.raises(AppleMisconfigured):
        apple.revoke(client_id=SERVICES_ID, token=tokens.refresh_token)
    secrets_seen += ["c-second-code", "c-third-code", "c-fourth-code"]
    secrets_seen += [f["client_secret"] for f in fake_apple.token_requests]
    secrets_seen += apple_private_key_pem.splitlines()[1:-1]
    text = caplog.text
    assert "invalid_grant" in text and "The code has expired." in text and "status=400" in text
    assert "status=500" in text and "ReadTimeout" in text and "invalid_client" in text
    for secret in secrets_seen:
        assert secret not in text
    assert "eyJ" not in text


@pytest.mark.parametrize("id_token", ["a.b", "a.b.c.d.e", "a b.c.d", "garbage", "e30.e30."])
def test_a_malformed_identity_token_is_a_bad_token_not_an_outage(apple, fake_apple, id_token):
    """Apple's answer carried a token: its shape is the verifier's verdict (400), not a 503."""
    fake_apple.next_token_response(json={"id_token": id_token, "access_token": "a"})
    tokens = exchange(apple)
    with pytest.raises(InvalidIdentityToken):
        apple.verify_id_token(tokens.id_token, audience=SERVICES_ID)


# --- the observer (how the app's metrics learn of each call) -----------------------------------
@pytest.mark.parametrize(("reply", "outcome"), [
    ({}, "success"),
    ({"status": 400, "json": {"error": "invalid_grant"}}, "rejected"),
    ({"status": 401, "json": {"error": "invalid_client"}}, "rejected"),
    ({"status": 429, "text": "slow down"}, "throttled"),
    ({"status": 503, "text": "<html>down</html>"}, "server_error"),
    ({"status": 302, "text": ""}, "unexpected_status"),
    ({"exc": requests.exceptions.ReadTimeout}, "timeout"),
    ({"exc": requests.exceptions.ConnectTimeout}, "timeout"),
    ({"exc": requests.exceptions.ConnectionError}, "connection_error"),
    ({"status": 400, "json": {"error": "x" * 300 + "<script>"}}, "rejected"),
])
def test_the_observer_hears_each_call_once_with_a_fixed_outcome_and_its_time(
        settings, clock, fake_apple, reply, outcome):
    heard = []
    apple = AppleClient(settings, clock=clock,
                        observer=lambda *call: heard.append(call))
    if reply:
        fake_apple.next_token_response(delay=0.05, **reply)
    try:
        exchange(apple, code=fake_apple.authorize().code)
    except (AppleUnavailable, AppleRejected, AppleMisconfigured):
        assert outcome != "success"
    assert [(endpoint, seen) for endpoint, seen, _ in heard
            if endpoint == "token"] == [("token", outcome)]
    seconds = next(s for endpoint, _, s in heard if endpoint == "token")
    assert seconds >= (0.05 if reply else 0) and seconds < 5


def test_the_observer_hears_keys_refresh_and_revoke_by_name(settings, clock, fake_apple):
    heard = []
    apple = AppleClient(settings, clock=clock, observer=lambda *call: heard.append(call[:2]))
    tokens = exchange(apple, code=fake_apple.authorize().code)
    apple.verify_id_token(tokens.id_token, audience=SERVICES_ID)
    apple.refresh(client_id=SERVICES_ID, refresh_token=tokens.refresh_token)
    apple.revoke(client_id=SERVICES_ID, token=tokens.refresh_token)
    assert heard == [("token", "success"), ("keys", "success"), ("refresh", "success"),
                     ("revoke", "success")]
