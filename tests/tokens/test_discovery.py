"""`/.well-known/openid-configuration` checked by Authlib's validators, every URL it lists
answering, and nothing claimed that siwa-web does not do."""
from __future__ import annotations

import re

import pytest
from authlib.oauth2 import rfc9207
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oidc.discovery import OpenIDProviderMetadata

from siwa_web import create_app
from siwa_web.infra.extensions import db
from support.config import ISSUER
from support.webapps import authorize_params
from support.webapps import pkce
from support.webapps import register

RS256_MISSING = '"RS256" MUST be included in "id_token_signing_alg_values_supported"'


def discovery(client) -> dict:
    response = client.get("/.well-known/openid-configuration")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


@pytest.fixture(params=["default", "RS256"])
def signing_alg(request, app_config) -> str:
    """The app as installed (SIGNING_ALG unset: ES256), or configured with SIGNING_ALG=RS256."""
    if request.param == "RS256":
        app_config["SIGNING_ALG"] = "RS256"
    return app_config.get("SIGNING_ALG", "ES256")


def test_it_advertises_the_configured_algorithm_alone(signing_alg, client):
    assert discovery(client)["id_token_signing_alg_values_supported"] == [signing_alg]


def test_the_oauth_metadata_validator_accepts_it(signing_alg, client):
    AuthorizationServerMetadata(discovery(client)).validate(
        metadata_classes=[rfc9207.AuthorizationServerMetadata])


def test_the_openid_validator_accepts_it_only_when_rs256_is_listed(signing_alg, client):
    """Authlib's OpenID validator insists on RS256 among the ID token algorithms, so it refuses
    the default (ES256 only) and accepts SIGNING_ALG=RS256."""
    metadata = OpenIDProviderMetadata(discovery(client))
    if signing_alg == "RS256":
        metadata.validate(metadata_classes=[rfc9207.AuthorizationServerMetadata])
    else:
        with pytest.raises(ValueError, match=re.escape(RS256_MISSING)):
            metadata.validate(metadata_classes=[rfc9207.AuthorizationServerMetadata])


def test_the_algorithm_is_all_that_differs_between_the_two(app, client, app_config):
    """So the RS256 document's clean validation speaks for every other member of the default's
    (Authlib stops at the first member it refuses)."""
    rs256 = create_app({**app_config, "SIGNING_ALG": "RS256"})
    try:
        other = discovery(rs256.test_client())
    finally:
        with rs256.app_context():
            db.engine.dispose()
    default = discovery(client)
    assert default.pop("id_token_signing_alg_values_supported") == ["ES256"]
    assert other.pop("id_token_signing_alg_values_supported") == ["RS256"]
    assert default == other


def test_every_url_is_under_the_issuer(client):
    doc = discovery(client)
    assert doc["issuer"] == ISSUER
    urls = {k: v for k, v in doc.items() if k.endswith(("_endpoint", "_uri"))}
    assert set(urls) == {"authorization_endpoint", "token_endpoint", "revocation_endpoint",
                         "userinfo_endpoint", "jwks_uri", "end_session_endpoint"}
    assert all(url.startswith(ISSUER + "/") for url in urls.values())


def _path(url: str) -> str:
    assert url.startswith(ISSUER)
    return url[len(ISSUER):]


def test_every_listed_endpoint_answers(client):
    doc = discovery(client)
    for method in ("get", "post"):  # both methods, no parameters: our HTML error page
        page = getattr(client, method)(_path(doc["authorization_endpoint"]))
        assert page.status_code == 400 and page.mimetype == "text/html"
        html = page.get_data(as_text=True)
        assert 'id="error-title"' in html and "Reference:" in html
    for endpoint in ("token_endpoint", "revocation_endpoint"):
        answer = client.post(_path(doc[endpoint]), data={"token": "x", "grant_type": "x"})
        assert answer.status_code in (400, 401) and answer.mimetype == "application/json"
        assert answer.get_json()["error"]
    userinfo = client.get(_path(doc["userinfo_endpoint"]))
    assert userinfo.status_code == 401
    assert userinfo.headers["WWW-Authenticate"].startswith("Bearer")
    jwks = client.get(_path(doc["jwks_uri"]))
    assert jwks.status_code == 200 and isinstance(jwks.get_json()["keys"], list)


def test_the_published_keys_are_of_the_advertised_algorithm(signing_alg, client, runner):
    assert runner.invoke(args=["keys", "rotate"]).exit_code == 0
    assert runner.invoke(args=["keys", "rotate"]).exit_code == 0
    doc = discovery(client)
    keys = client.get(_path(doc["jwks_uri"])).get_json()["keys"]
    assert len(keys) == 2 and len({k["kid"] for k in keys}) == 2
    assert {k["alg"] for k in keys} == set(doc["id_token_signing_alg_values_supported"])
    assert not any({"d", "p", "q", "k"} & set(k) for k in keys)  # public halves only


UNIMPLEMENTED = {
    "check_session_iframe", "frontchannel_logout_supported", "registration_endpoint",
    "introspection_endpoint", "device_authorization_endpoint",
    "pushed_authorization_request_endpoint", "request_object_signing_alg_values_supported",
    "userinfo_signing_alg_values_supported", "acr_values_supported",
}


def test_nothing_unimplemented_is_claimed(client):
    assert UNIMPLEMENTED.isdisjoint(discovery(client))


def test_logout_is_listed_and_its_endpoint_answers(client):
    doc = discovery(client)
    assert doc["backchannel_logout_supported"] is True
    assert doc["backchannel_logout_session_supported"] is True
    page = client.get(_path(doc["end_session_endpoint"]))
    assert page.status_code == 200 and "signed out" in page.get_data(as_text=True)


def test_what_would_default_to_supported_is_said_to_be_unsupported(client):
    doc = discovery(client)
    assert doc["request_uri_parameter_supported"] is False  # absent would mean true
    assert doc["request_parameter_supported"] is False
    assert doc["claims_parameter_supported"] is False


def test_every_listed_grant_type_reaches_a_grant(client):
    doc = discovery(client)
    for grant_type in doc["grant_types_supported"]:
        answer = client.post("/oauth/token", data={"grant_type": grant_type})
        assert answer.get_json()["error"] != "unsupported_grant_type", grant_type
    for grant_type in ("password", "client_credentials", "implicit"):
        answer = client.post("/oauth/token", data={"grant_type": grant_type})
        assert answer.get_json()["error"] == "unsupported_grant_type", grant_type


def test_every_listed_response_mode_is_answered_in(app, client):
    webapp = register(app)
    _, challenge = pkce()

    def ask(mode: str):
        return client.get("/oauth/authorize", query_string=authorize_params(
            webapp, challenge, prompt="none", response_mode=mode))

    modes = discovery(client)["response_modes_supported"]
    assert modes == ["query", "form_post"]
    by_query = ask("query")  # not signed in: login_required, in the mode asked for
    assert by_query.status_code == 303
    assert by_query.headers["Location"].startswith(webapp.redirect_uri + "?error=login_required")
    by_form = ask("form_post")
    html = by_form.get_data(as_text=True)
    assert by_form.status_code == 200
    assert f'method="post" action="{webapp.redirect_uri}"' in html
    assert 'name="error" value="login_required"' in html
    assert ask("fragment").status_code == 400  # not listed, not done


def test_the_flow_members_describe_the_code_flow_with_pkce(client):
    doc = discovery(client)
    assert "openid" in doc["scopes_supported"]
    assert doc["response_types_supported"] == ["code"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["subject_types_supported"] == ["public"]
    assert "none" not in doc["id_token_signing_alg_values_supported"]
