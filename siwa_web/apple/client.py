"""Talk to Apple over HTTP: authorize URL, code exchange, refresh, revoke, identity tokens."""
from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote
from urllib.parse import urlencode

import requests

from . import bounded_json
from . import http
from .claims import AppleClaims
from .claims import AppleTokens
from .client_secret import ClientSecretFactory
from .errors import AppleMisconfigured
from .errors import AppleRejected
from .errors import AppleUnavailable
from .id_token import verify_identity_token
from .jwks import AppleKeySet
from .settings import AppleSettings

log = logging.getLogger("siwa_web.apple")
_UNSAFE = re.compile(r"[^\x20-\x7e]")
MAX_ERROR_TEXT = 200

#: Told of every call to Apple: (endpoint, outcome, seconds). Endpoints: token (code exchange),
#: refresh, revoke, keys. Outcomes: success (200), rejected (400/401), throttled (429),
#: server_error (5xx), unexpected_status, timeout, connection_error. The app passes its metrics
#: recorder here (infra/apple_client.py), so this Flask-free core imports no metrics code.
Observer = Callable[[str, str, float], None]


def _ignore(_endpoint: str, _outcome: str, _seconds: float) -> None:
    pass


class AppleClient:
    """One Apple team: a shared HTTP session, client secrets and Apple's key set.

    Every call is sent once: Apple codes are single use, so a retry after the request left
    could turn a timeout into invalid_grant (REL-06).
    """

    def __init__(self, settings: AppleSettings, session: requests.Session | None = None,
                 clock: Callable[[], float] = time.time, observer: Observer | None = None) -> None:
        self.settings = settings
        self.observer = observer or _ignore
        self.session = session or http.session(settings.http_idle_seconds,
                                               base_url=settings.base_url)
        self._clock = clock
        self.client_secrets = ClientSecretFactory(
            settings.team_id, settings.key_id, settings.private_key_pem, clock=clock)
        self.keys = AppleKeySet(self._fetch_jwks, max_age=settings.jwks_max_age,
                                refetch_cooldown=settings.jwks_refetch_cooldown, clock=clock)

    def authorize_url(self, *, client_id: str, redirect_uri: str, state: str, nonce: str,
                      scope: str = "name email", response_type: str = "code id_token",
                      response_mode: str = "form_post") -> str:
        """Where to send the browser; scopes require form_post, so that is the default."""
        params = {"client_id": client_id, "redirect_uri": redirect_uri,
                  "response_type": response_type, "response_mode": response_mode,
                  "state": state, "nonce": nonce}
        if scope:
            params["scope"] = scope
        return f"{self.settings.authorize_url}?{urlencode(params, quote_via=quote)}"

    def exchange_code(self, *, client_id: str, code: str,
                      redirect_uri: str | None = None) -> AppleTokens:
        """Redeem an authorization code; omit redirect_uri for codes from native apps."""
        form = {"client_id": client_id, "client_secret": self.client_secrets.get(client_id),
                "code": code, "grant_type": "authorization_code"}
        if redirect_uri is not None:
            form["redirect_uri"] = redirect_uri
        return _tokens(self._post("token", self.settings.token_url, form))

    def refresh(self, *, client_id: str, refresh_token: str) -> AppleTokens:
        """Validate a stored Apple refresh token (Apple asks for at most once a day)."""
        form = {"client_id": client_id, "client_secret": self.client_secrets.get(client_id),
                "grant_type": "refresh_token", "refresh_token": refresh_token}
        return _tokens(self._post("refresh", self.settings.token_url, form))

    def revoke(self, *, client_id: str, token: str,
               token_type_hint: str = "refresh_token") -> None:
        """Revoke a refresh or access token at Apple (account deletion, unlink)."""
        form = {"client_id": client_id, "client_secret": self.client_secrets.get(client_id),
                "token": token, "token_type_hint": token_type_hint}
        self._post("revoke", self.settings.revoke_url, form)

    def verify_id_token(self, token: str, *, audience: str, nonce: str | None = None,
                        nonce_mode: str = "exact", code: str | None = None,
                        access_token: str | None = None) -> AppleClaims:
        """Verify with Apple's cached keys and this team's issuer/leeway/age settings."""
        s = self.settings
        return verify_identity_token(
            token, self.keys, audience=audience, issuers=s.issuers, leeway=s.leeway,
            max_age=s.id_token_max_age, nonce=nonce, nonce_mode=nonce_mode, code=code,
            access_token=access_token, clock=self._clock)

    @contextlib.contextmanager
    def budget(self) -> Iterator[None]:
        """Bound every Apple call inside, together, to `settings.budget` seconds (one sign-in)."""
        with http.budget(self.settings.budget):
            yield

    def _post(self, what: str, url: str, form: dict[str, str]) -> dict[str, Any]:
        return _answer(what, self._send(what, "POST", url, data=form))

    def _send(self, what: str, method: str, url: str, **kwargs: Any) -> requests.Response:
        """One request, sent once and ended by its deadline (or the budget's) however slowly
        Apple answers; the observer learns how it went and how long it took.

        :raises AppleUnavailable: no time left, a timeout, a refused or cut connection.
        """
        s = self.settings
        try:
            seconds = http.call_seconds(s.call_deadline)
        except http.DeadlinePassed as exc:
            log.warning("Apple %s call not made: the time allowed for Apple is spent", what,
                        extra={"event": "apple_unavailable"})
            self.observer(what, "timeout", 0.0)
            raise AppleUnavailable(f"Apple {what} call not made: no time left") from exc
        timeout = (min(s.connect_timeout, seconds), min(s.read_timeout, seconds))
        started = time.monotonic()
        outcome = "connection_error"
        try:
            with http.deadline(seconds):
                resp = self.session.request(method, url, timeout=timeout, allow_redirects=False,
                                            headers={"Accept": "application/json"}, **kwargs)
        except requests.RequestException as exc:
            if isinstance(exc, requests.Timeout):
                outcome = "timeout"
            spent = time.monotonic() - started
            log.warning("Apple %s call failed after %.1f s: %s", what, spent, type(exc).__name__,
                        extra={"event": "apple_unavailable"})
            raise AppleUnavailable(f"Apple {what} call failed: {type(exc).__name__}") from exc
        else:
            outcome = _outcome(resp.status_code)
            return resp
        finally:
            self.observer(what, outcome, time.monotonic() - started)

    def _fetch_jwks(self) -> dict[str, Any]:
        resp = self._send("keys", "GET", self.settings.keys_url)
        if resp.status_code != 200:
            raise AppleUnavailable(f"Apple keys call answered {resp.status_code}")
        body = _json(resp)
        if body is None:
            raise AppleUnavailable("Apple keys call answered non-JSON")
        return body


def _outcome(status: int) -> str:
    """An HTTP status as one of the observer's few outcomes (Apple's error text is not one)."""
    if status == 200:
        return "success"
    if status in (400, 401):
        return "rejected"
    if status == 429:
        return "throttled"
    return "server_error" if status >= 500 else "unexpected_status"


def _answer(what: str, resp: requests.Response) -> dict[str, Any]:
    """Map Apple's answer: 200 JSON passes, 400 OAuth errors are typed, the rest is an outage."""
    body = _json(resp)
    if resp.status_code == 200 and (body is not None or what == "revoke"):
        return body or {}
    error = body.get("error") if body is not None else None
    if resp.status_code in (400, 401) and isinstance(error, str) and error:
        error = _clean(error)
        description = body.get("error_description") if body is not None else None
        description = _clean(description) if isinstance(description, str) else None
        log.warning("Apple %s call rejected: status=%s error=%s error_description=%s",
                    what, resp.status_code, error, description,
                    extra={"event": "apple_rejected"})
        if error == "invalid_client":
            raise AppleMisconfigured(error, description)
        raise AppleRejected(error, description)
    log.warning("Apple %s call answered status=%s with %s", what, resp.status_code,
                "JSON" if body is not None else "a non-JSON body",
                extra={"event": "apple_answer_unusable"})
    raise AppleUnavailable(f"Apple {what} call answered {resp.status_code}")


def _tokens(body: dict[str, Any]) -> AppleTokens:
    """A token answer must carry an id_token string; without one Apple answered garbage (503).

    Its shape is not judged here: a malformed or forged token (alg none, an empty signature,
    garbage segments) is the verifier's to refuse as an invalid token (400 invalid_grant), not
    an outage to retry.
    """
    id_token = body.get("id_token")
    if not isinstance(id_token, str) or not id_token:
        log.warning("Apple token call answered 200 without a usable id_token",
                    extra={"event": "apple_answer_unusable"})
        raise AppleUnavailable("Apple answered without a usable id_token")
    expires_in = body.get("expires_in")
    return AppleTokens(
        id_token=id_token,
        access_token=_str_or_none(body.get("access_token")),
        refresh_token=_str_or_none(body.get("refresh_token")),
        expires_in=expires_in if isinstance(expires_in, int) and not isinstance(expires_in, bool)
        else None,
    )


def _json(resp: requests.Response) -> dict[str, Any] | None:
    try:
        body = bounded_json.loads(resp.content)
    except ValueError:  # not JSON, a bad encoding, or absurd nesting: a bad upstream answer
        return None
    return body if isinstance(body, dict) else None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _clean(text: str) -> str:
    """Apple's error text is logged and shown: printable ASCII only, bounded length."""
    return _UNSAFE.sub("?", text)[:MAX_ERROR_TEXT]
