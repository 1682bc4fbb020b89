"""Deeply nested JSON, anywhere it arrives, is a bad request (or a bad upstream answer), not a 500.

Python's json parser raises RecursionError, not ValueError, at about a thousand levels; before
siwa_web/apple/bounded_json.py that was a 500 with a traceback on POST /apple/notifications.
"""
from __future__ import annotations

import json
import logging
import time
import uuid

import pytest

from siwa_web.apple import bounded_json
from siwa_web.infra.extensions import db
from siwa_web.models import User
from support.apple import BUNDLE_ID
from support.apple import REMOVE
from support.tokens import exchange
from support.tokens import exchange_params
from support.tokens import post_token
from support.tokens import refresh_params
from support.tokens import rows_without_audit
from support.web import callback_form
from support.web import start_login

DEEP_ARRAY = "[" * 1000 + "]" * 1000
DEEP_OBJECT = '{"a":' * 1000 + "1" + "}" * 1000
JUST_TOO_DEEP = "[" * (bounded_json.MAX_DEPTH + 1) + "]" * (bounded_json.MAX_DEPTH + 1)
HOSTILE = {"array_1000": DEEP_ARRAY, "object_1000": DEEP_OBJECT, "max_plus_1": JUST_TOO_DEEP,
           "array_30k": "[" * 30_000 + "]" * 30_000}


# --- the parser -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", list(HOSTILE.values()), ids=list(HOSTILE))
def test_too_deep_is_a_value_error(text):
    with pytest.raises(ValueError):
        bounded_json.loads(text)
    with pytest.raises(ValueError):
        bounded_json.loads(text.encode("utf-16"))


@pytest.mark.parametrize("text, expected", [
    ("[" * bounded_json.MAX_DEPTH + "]" * bounded_json.MAX_DEPTH, bounded_json.MAX_DEPTH),
    ('{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', 1),
    ('["\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\\", []]', 2),
    ('"plain"', 0),
    ("{}", 1),
])
def test_depth_ignores_brackets_in_strings(text, expected):
    assert bounded_json.depth(text) == expected
    assert bounded_json.loads(text) == json.loads(text)


def test_bytes_in_every_json_encoding_parse_as_json_loads_does():
    document = {"name": {"firstName": "Zoë", "lastName": "\u5b5b"}, "list": [[1], [2]]}
    for encoding in ("utf-8", "utf-16", "utf-16-le", "utf-32"):
        assert bounded_json.loads(json.dumps(document).encode(encoding)) == document


# --- request bodies, at every endpoint that accepts JSON --------------------------------------


@pytest.mark.parametrize("body", list(HOSTILE.values()), ids=list(HOSTILE))
@pytest.mark.parametrize("path", ["/apple/notifications", "/oauth/token", "/oauth/revoke"])
def test_deep_json_body_is_400_and_stores_nothing(app, client, nothing_stored, path, body):
    response = client.post(path, data=body, content_type="application/json")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["error"] == "invalid_request"


@pytest.mark.parametrize("profile", [DEEP_ARRAY[:4000], '{"name":' + JUST_TOO_DEEP + "}"],
                         ids=["array", "name_too_deep"])
def test_deep_user_profile_is_400_before_apple_is_called(app, client, fake_apple, native_client,
                                                         profile):
    code = fake_apple.authorize(client_id=BUNDLE_ID).code
    before = rows_without_audit(app)
    response = post_token(client, exchange_params(native_client, code, user_profile=profile))
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
    assert fake_apple.token_requests == []  # the single-use code was not spent
    assert rows_without_audit(app) == before


def test_deep_json_in_a_json_token_request_with_a_refresh_token(app, client, native_session,
                                                                native_client):
    """Depth is judged before anything is read: a valid refresh token inside does not help."""
    params = refresh_params(native_client, native_session["refresh_token"])
    body = json.dumps(params)[:-1] + ', "x": ' + JUST_TOO_DEEP + "}"
    before = rows_without_audit(app)
    response = client.post("/oauth/token", data=body, content_type="application/json")
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"
    assert rows_without_audit(app) == before


def test_deep_user_field_in_the_browser_callback_is_ignored(app, client, fake_apple):
    """Apple's `user` form field is optional decoration: too deep, it is dropped, sign-in works."""
    start = start_login(client)
    form = callback_form(fake_apple, start, user='{"name":' + JUST_TOO_DEEP + "}")
    response = client.post("/auth/apple/callback", data=form)
    assert response.status_code == 303
    with app.app_context():
        [user] = db.session.execute(db.select(User)).scalars().all()
        assert user.first_name is None and user.last_name is None


# --- Apple's answers: a bad upstream answer, never a crash ------------------------------------


@pytest.mark.parametrize("answer", [DEEP_ARRAY, '{"id_token":' + JUST_TOO_DEEP + "}"],
                         ids=["array", "member"])
def test_deep_json_from_apples_token_endpoint_is_an_outage(app, client, fake_apple,
                                                          native_client, answer, caplog):
    code = fake_apple.authorize(client_id=BUNDLE_ID).code
    fake_apple.next_token_response(text=answer, headers={"Content-Type": "application/json"})
    before = rows_without_audit(app)
    with caplog.at_level(logging.WARNING):
        response = post_token(client, exchange_params(native_client, code))
    assert response.status_code == 503
    assert response.get_json()["error"] == "temporarily_unavailable"
    assert response.headers["Retry-After"]
    assert rows_without_audit(app) == before
    assert "Traceback" not in caplog.text


def test_deep_json_from_apples_keys_endpoint_is_an_outage(app, client, fake_apple,
                                                          native_client):
    fake_apple.outage("keys", status=200, text='{"keys":' + DEEP_ARRAY + "}",
                      headers={"Content-Type": "application/json"})
    before = rows_without_audit(app)
    response = exchange(client, fake_apple, native_client)
    assert response.status_code == 503
    assert response.get_json()["error"] == "temporarily_unavailable"
    assert rows_without_audit(app) == before


def test_deep_claims_in_a_signed_identity_token_are_invalid_grant(app, client, fake_apple,
                                                                 native_client):
    """Even under Apple's genuine signature, an absurd payload is a bad token (400)."""
    code = fake_apple.authorize(client_id=BUNDLE_ID).code
    claims = fake_apple.default_claims()
    claims["aud"] = BUNDLE_ID
    payload = (json.dumps(claims)[:-1] + ', "x": ' + JUST_TOO_DEEP + "}").encode()
    token = fake_apple.mint_id_token(payload=payload)
    fake_apple.next_token_response(json={"access_token": "a", "id_token": token})
    before = rows_without_audit(app)
    response = post_token(client, exchange_params(native_client, code))
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant"
    assert rows_without_audit(app) == before


def test_deep_events_in_a_signed_notification_are_400(app, client, fake_apple, nothing_stored):
    now = int(time.time())
    token = fake_apple.mint_id_token(
        aud=fake_apple.SERVICES_ID, iat=now, exp=now + 60, jti=uuid.uuid4().hex,
        events=DEEP_ARRAY, sub=REMOVE, email=REMOVE, email_verified=REMOVE,
        is_private_email=REMOVE, auth_time=REMOVE)
    response = client.post("/apple/notifications", json={"payload": token})
    assert response.status_code == 400
