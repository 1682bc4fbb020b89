"""`/auth/authorize`: Apple's validation matrix, the sign-in and consent pages, delivery."""
from __future__ import annotations

import dataclasses
import json
import re

import pytest

from siwa_web.emulator import create_emulator_app
from support.emulator import BUNDLE_ID
from support.emulator import DEV_REDIRECT
from support.emulator import OTHER_REDIRECT
from support.emulator import WEB_ID
from support.emulator import WEB_REDIRECT
from support.emulator import Emu
from support.emulator import form_fields
from support.emulator import page_token
from support.emulator import response_params

SCOPE_MODE = "response_mode must be form_post when name or email scope is requested."


@pytest.mark.parametrize(
    ("response_type", "mode", "scope"),
    [
        ("code", "query", None),
        ("code", "fragment", None),
        ("code", "form_post", None),
        ("code", "form_post", "name email"),
        ("code id_token", "fragment", None),
        ("code id_token", "form_post", None),
        ("code id_token", "form_post", "name email"),
        ("id_token code", "form_post", "email"),
        ("code id_token", "form_post", "openid name"),
        ("code", None, None),
    ],
)
def test_accepted_combinations_show_the_sign_in_page(emu, response_type, mode, scope):
    resp = emu.authorize(response_type=response_type, response_mode=mode, scope=scope)
    assert resp.status_code == 200
    assert "Apple emulator — development only" in resp.get_data(as_text=True)
    assert page_token(resp.get_data(as_text=True))


@pytest.mark.parametrize(
    ("params", "error", "description"),
    [
        ({"response_type": "code", "response_mode": "query", "scope": "name"},
         "invalid_request", SCOPE_MODE),
        ({"response_type": "code", "response_mode": "fragment", "scope": "email"},
         "invalid_request", SCOPE_MODE),
        ({"response_type": "code id_token", "response_mode": "query", "scope": None},
         "invalid_request", "Invalid response mode"),
        ({"response_type": "code id_token", "response_mode": "query", "scope": "name email"},
         "invalid_request", SCOPE_MODE),
        ({"response_type": "code id_token", "response_mode": "fragment", "scope": "name"},
         "invalid_request", SCOPE_MODE),
        ({"response_type": "code", "response_mode": None, "scope": "name"},
         "invalid_request", SCOPE_MODE),
        ({"response_mode": "web_message"}, "invalid_request", "Invalid response mode"),
        ({"response_type": "id_token"}, "invalid_request", "Invalid response type"),
        ({"response_type": "token"}, "invalid_request", "Invalid response type"),
        ({"response_type": "code code"}, "invalid_request", "Invalid response type"),
        ({"response_type": "code  id_token"}, "invalid_request", "Invalid response type"),
        ({"response_type": None}, "invalid_request", "Invalid response type"),
        ({"scope": "name profile"}, "invalid_scope", None),
        ({"scope": "NAME"}, "invalid_scope", None),
        ({"client_id": None}, "invalid_request", "client_id is required."),
        ({"client_id": "com.unknown.web"}, "invalid_client", None),
        ({"client_id": "COM.EXAMPLE.WEB"}, "invalid_request",
         "Invalid client id or web redirect url."),
        ({"client_id": BUNDLE_ID}, "unauthorized_client", None),
        ({"redirect_uri": None}, "unauthorized_client", None),
        ({"redirect_uri": WEB_REDIRECT + "/"}, "unauthorized_client", None),
        ({"redirect_uri": "https://evil.example/auth/apple/callback"}, "unauthorized_client", None),
        ({"redirect_uri": OTHER_REDIRECT}, "unauthorized_client", None),
    ],
)
def test_rejections_are_400_json_and_never_redirected(emu, params, error, description):
    resp = emu.authorize(**params)
    assert resp.status_code == 400
    assert "Location" not in resp.headers
    assert resp.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Pragma"] == "no-cache"
    expected = {"error": error} | ({"error_description": description} if description else {})
    assert resp.get_json() == expected


@pytest.mark.parametrize("raw", ["code+id_token", "code%20id_token", "id_token+code"])
def test_response_type_separators(emu, raw):
    query = (f"client_id={WEB_ID}&redirect_uri={WEB_REDIRECT}&response_type={raw}"
             "&response_mode=form_post&scope=name+email")
    assert emu.client.get(f"/auth/authorize?{query}").status_code == 200


@pytest.mark.parametrize("name", ["client_id", "redirect_uri", "state", "scope", "nonce"])
def test_duplicated_parameter_is_invalid_request(emu, name):
    query = (f"client_id={WEB_ID}&redirect_uri={WEB_REDIRECT}&response_type=code"
             "&response_mode=form_post&state=s&scope=name&nonce=n")
    value = {"client_id": WEB_ID, "redirect_uri": WEB_REDIRECT}.get(name, "x")
    resp = emu.client.get(f"/auth/authorize?{query}&{name}={value}")
    assert resp.status_code == 400
    assert resp.get_json() == {"error": "invalid_request",
                               "error_description": f"Duplicate parameter: {name}"}


@pytest.mark.parametrize(
    "uri",
    [
        "http://rp.example.com/cb",
        "https://localhost/cb",
        "https://app.localhost/cb",
        "https://127.0.0.1/cb",
        "https://[::1]/cb",
        "https://10.0.0.7/cb",
        "https://rp.example.com/cb#frag",
        "https://intranet/cb",
    ],
)
def test_strict_mode_refuses_insecure_return_urls(settings, team_key, uri):
    strict = dataclasses.replace(settings, services={WEB_ID: [uri]}, allow_insecure_redirects=False)
    emu = Emu(create_emulator_app(strict).test_client(), team_key)
    resp = emu.authorize(redirect_uri=uri)
    assert resp.status_code == 400
    assert resp.get_json() == {"error": "invalid_request",
                               "error_description": "Invalid web redirect url."}


def test_dev_mode_accepts_localhost_return_url(emu):
    fields = emu.fields(redirect_uri=DEV_REDIRECT)
    assert set(fields) == {"code", "id_token", "state", "user"}


def test_strict_mode_accepts_a_proper_https_url(settings, team_key):
    strict = dataclasses.replace(settings, allow_insecure_redirects=False)
    emu = Emu(create_emulator_app(strict).test_client(), team_key)
    assert emu.authorize().status_code == 200


def test_form_post_page_carries_code_id_token_state_and_user(emu):
    resp = emu.sign_in(state="xyz", nonce="n-123")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert resp.headers["Cache-Control"] == "no-store"
    assert f'<form id="apple-response" method="post" action="{WEB_REDIRECT}">' in page
    fields = form_fields(page)
    assert fields["state"] == "xyz"
    assert fields["code"].startswith("c")
    assert json.loads(fields["user"]) == {"name": {"firstName": "Maria", "lastName": "Ruiz"},
                                          "email": "maria@example.com"}
    claims = emu.verify(fields["id_token"]).claims
    assert claims["nonce"] == "n-123"
    assert "name" not in claims and "firstName" not in json.dumps(claims)


def test_form_post_page_auto_submits_with_external_script_and_fallback_button(emu):
    page = emu.sign_in().get_data(as_text=True)
    assert '<script src="/static/autosubmit.js" defer></script>' in page
    assert "<script>" not in page
    assert '<button type="submit" class="primary">Continue</button>' in page
    js = emu.client.get("/static/autosubmit.js")
    assert js.status_code == 200 and b"apple-response" in js.data
    css = emu.client.get("/static/emulator.css")
    assert css.status_code == 200


@pytest.mark.parametrize("hostile", ['"><script>alert(1)</script>', "a&b=c", "é 🙂", "'\"<>"])
def test_state_is_escaped_on_the_page_and_round_trips(emu, hostile):
    resp = emu.sign_in(state=hostile)
    page = resp.get_data(as_text=True)
    assert "<script>alert" not in page
    assert form_fields(page)["state"] == hostile


@pytest.mark.parametrize("hostile", ['<img src=x onerror=alert(1)>', "Robert'); DROP--", "x" * 100])
def test_edited_hostile_name_goes_verbatim_into_user_only(emu, hostile):
    fields = emu.fields(edit={"first_name": hostile, "last_name": "Q"})
    assert json.loads(fields["user"])["name"] == {"firstName": hostile, "lastName": "Q"}
    assert hostile not in json.dumps(emu.verify(fields["id_token"]).claims)
    users = emu.admin("users", method="GET").get_json()["users"]
    assert users[0]["first_name"] == "Maria"  # Apple never learns the edited name


def test_user_only_on_first_authorization(emu):
    first = emu.fields()
    user_id = emu.admin("users", method="GET").get_json()["users"][0]["id"]
    again = emu.fields(account=user_id)
    assert "user" in first and "user" not in again
    assert set(again) == {"code", "id_token", "state"}
    assert emu.verify(again["id_token"]).claims["email"] == "maria@example.com"


def test_no_scopes_means_no_user_and_no_email_claims(emu):
    fields = emu.fields(scope=None)
    assert "user" not in fields
    claims = emu.verify(fields["id_token"]).claims
    assert not {"email", "email_verified", "is_private_email"} & set(claims)


def test_scope_subset_shapes_user_json(emu):
    fields = emu.fields(scope="email")
    assert json.loads(fields["user"]) == {"email": "maria@example.com"}


def test_hide_my_email_uses_a_stable_relay_address(emu):
    first = emu.fields(choice="hide")
    relay = json.loads(first["user"])["email"]
    assert relay.endswith("@privaterelay.appleid.com")
    user_id = emu.admin("users", method="GET").get_json()["users"][0]["id"]
    again = emu.fields(account=user_id, choice="share")  # the choice is fixed at first consent
    claims = emu.verify(again["id_token"]).claims
    assert claims["email"] == relay
    assert claims["is_private_email"] is True


def test_cancel_on_sign_in_page_delivers_user_cancelled(emu):
    page = emu.authorize(state="s-9").get_data(as_text=True)
    fields = form_fields(emu.submit(page, action="cancel").get_data(as_text=True))
    assert fields == {"error": "user_cancelled_authorize", "state": "s-9"}


def test_cancel_on_consent_page_delivers_user_cancelled_by_query(emu):
    page = emu.authorize(response_type="code", response_mode="query", scope=None,
                         state="q").get_data(as_text=True)
    resp = emu.submit(page, action="cancel")
    assert resp.status_code == 302
    assert response_params(resp) == {"error": "user_cancelled_authorize", "state": "q"}


def test_cancel_at_consent_step(emu):
    page = emu.authorize().get_data(as_text=True)
    consent = emu.submit(page, action="continue", account="new", email="a@b.example")
    assert b'name="email_choice"' in consent.data
    fields = form_fields(emu.submit(consent.get_data(as_text=True), action="cancel").get_data(
        as_text=True))
    assert fields == {"error": "user_cancelled_authorize", "state": "st-1"}
    assert emu.admin("users", method="GET").get_json()["users"][0]["authorization"]["status"] \
        == "none"


def test_query_and_fragment_delivery(emu):
    query = emu.sign_in(response_type="code", response_mode="query", scope=None, state="s1")
    assert query.status_code == 302
    assert query.headers["Location"].startswith(WEB_REDIRECT + "?code=c")
    assert response_params(query)["state"] == "s1"
    frag = emu.sign_in(response_type="code id_token", response_mode="fragment", scope=None)
    location = frag.headers["Location"]
    assert location.startswith(WEB_REDIRECT + "#")
    assert {"code", "id_token", "state"} == set(response_params(frag))


def test_page_token_cannot_be_replayed(emu):
    page = emu.authorize().get_data(as_text=True)
    ok = emu.submit(page, action="continue", account="new", email="a@b.example")
    replay = emu.submit(page, action="continue", account="new", email="a@b.example")
    assert ok.status_code == 200
    assert replay.status_code == 400
    assert "already submitted" in replay.get_data(as_text=True)
    assert len(emu.admin("users", method="GET").get_json()["users"]) == 1


@pytest.mark.parametrize("token", ["", "forged", "A" * 500])
def test_unknown_page_token_is_refused(emu, token):
    resp = emu.client.post("/auth/authorize", data={"page": token, "action": "continue",
                                                    "account": "new", "email": "a@b.example"})
    assert resp.status_code == 400
    assert emu.admin("users", method="GET").get_json()["users"] == []


@pytest.mark.parametrize(
    "form",
    [
        {"account": "new", "email": ""},
        {"account": "new", "email": "no-at-sign"},
        {"account": "new", "email": "a@b.example", "first_name": "x" * 101},
        {"account": "nobody"},
        {},
    ],
)
def test_bad_sign_in_choice_rerenders_with_an_error(emu, form):
    page = emu.authorize().get_data(as_text=True)
    resp = emu.submit(page, action="continue", **form)
    assert resp.status_code == 400
    assert 'role="alert"' in resp.get_data(as_text=True)
    assert page_token(resp.get_data(as_text=True)) != page_token(page)


def test_pages_send_a_strict_csp(emu):
    resp = emu.authorize()
    assert "script-src" not in resp.headers["Content-Security-Policy"]
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]


def test_next_login_script_completes_without_a_page(emu):
    user = emu.user()
    assert emu.admin("next-login", {"user_id": user["id"], "share_email": False,
                                    "edited_first_name": "Mia"}).status_code == 200
    fields = form_fields(emu.authorize().get_data(as_text=True))
    assert json.loads(fields["user"]) == {"name": {"firstName": "Mia", "lastName": "Ruiz"},
                                          "email": user["relay_email"]}
    assert b'name="page"' in emu.authorize().data  # the script was used once


def test_next_login_cancel(emu):
    emu.admin("next-login", {"cancel": True})
    fields = form_fields(emu.authorize(state="c").get_data(as_text=True))
    assert fields == {"error": "user_cancelled_authorize", "state": "c"}


def _checked(page: str) -> list[str]:
    """The values of the ticked account radio buttons on a sign-in page."""
    return re.findall(r'name="account" value="([^"]+)"\s+checked', page)


def test_a_known_user_is_preselected_on_a_fresh_page(emu):
    first = emu.user("first@example.com")
    emu.user("second@example.com")
    assert _checked(emu.authorize().get_data(as_text=True)) == [first["id"]]


def test_no_user_yet_preselects_the_new_user_form(emu):
    assert _checked(emu.authorize().get_data(as_text=True)) == ["new"]


def test_typing_a_new_user_wins_over_the_preselected_one(emu):
    """Without JavaScript the radio stays on the known user: the filled fields decide."""
    old = emu.user("old@example.com", "Old", "User")
    page = emu.authorize().get_data(as_text=True)
    assert _checked(page) == [old["id"]]
    resp = emu.submit(page, action="continue", account=old["id"], email="new@example.com",
                      first_name="New", last_name="Person")
    assert "Create your account" in resp.get_data(as_text=True)  # a first sign-in: consent
    assert "new@example.com" in resp.get_data(as_text=True)
    users = emu.admin("users", method="GET").get_json()["users"]
    assert sorted(u["email"] for u in users) == ["new@example.com", "old@example.com"]


@pytest.mark.parametrize("form", [
    {"email": "not-an-address"},
    {"first_name": "New", "email": ""},
])
def test_a_validation_error_keeps_the_new_user_choice(emu, form):
    old = emu.user("old@example.com")
    page = emu.authorize().get_data(as_text=True)
    resp = emu.submit(page, action="continue", account=old["id"], **form)
    again = resp.get_data(as_text=True)
    assert resp.status_code == 400 and 'role="alert"' in again
    assert _checked(again) == ["new"]  # not back to the first user
    assert len(emu.admin("users", method="GET").get_json()["users"]) == 1
    fixed = emu.submit(again, action="continue", account="new", email="fixed@example.com")
    assert "fixed@example.com" in fixed.get_data(as_text=True)


def test_a_known_user_chosen_explicitly_signs_in_as_that_user(emu):
    emu.user("first@example.com")
    second = emu.user("second@example.com")
    page = emu.authorize(scope=None, response_mode="form_post").get_data(as_text=True)
    resp = emu.submit(page, action="continue", account=second["id"])
    token = form_fields(resp.get_data(as_text=True))["id_token"]
    assert emu.verify(token).claims["sub"] == second["sub"]


def test_pages_name_the_app_not_the_client_id(settings, team_key):
    named = create_emulator_app(dataclasses.replace(settings, app_name="Ruiz & Co"))
    emu = Emu(named.test_client(), team_key)
    signin = emu.authorize().get_data(as_text=True)
    assert "Sign in to <strong>Ruiz &amp; Co</strong>" in signin
    consent = emu.submit(signin, action="continue", account="new", email="a@b.example")
    page = consent.get_data(as_text=True)
    assert re.search(r"<strong>Ruiz &amp; Co</strong> asks for your\s+email and name", page)
    assert WEB_ID not in signin and WEB_ID not in page


def test_app_name_comes_from_the_siwa_web_setting(app_config):
    from siwa_web import create_app
    from siwa_web.emulator import settings_from_app

    default = settings_from_app(create_app(app_config | {"APPLE_EMULATOR": True}))
    named = settings_from_app(create_app(app_config | {"APPLE_EMULATOR": True,
                                                       "EMULATOR_APP_NAME": "Acme"}))
    assert (default.app_name, named.app_name) == ("siwa-web", "Acme")
