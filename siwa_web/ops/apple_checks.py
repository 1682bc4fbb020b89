"""What `flask apple doctor` checks: Apple settings, reachability, credentials, the clock.

Each check returns a `Check` that says what it found and, for a problem, how to fix it. The
local checks read the configuration only; the remote ones call Apple through the same HTTP
session (and so the same proxy and CA settings) as sign-in does. The credentials probe sends
a code that cannot exist: Apple checks the client secret before the code, so `invalid_grant`
means our credentials were accepted and `invalid_client` means they were not.
"""
from __future__ import annotations

import ipaddress
import re
import secrets
import time
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import asdict
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..apple.client_secret import ClientSecretFactory
from ..apple.settings import AppleSettings

APPLE_ID = re.compile(r"[A-Z0-9]{10}")  # Team IDs and Key IDs alike
CLIENT_ID = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")  # reverse-DNS: com.example.web
MAX_SKEW = 30  # seconds; client secrets are backdated 60 s and tokens get 60 s of leeway
PORTAL = "developer.apple.com/account, Certificates, Identifiers & Profiles"
INVALID_CLIENT_CAUSES = (
    "APPLE_KEY_ID is the id of another key (or of a key of another team); "
    "APPLE_TEAM_ID is not the team that owns the key and the client id; the key was revoked "
    "in the portal (make a new one); the client id is unknown to Apple or spelled differently "
    "(a bundle id where a Services ID belongs, or the reverse)")


@dataclass(frozen=True)
class Check:
    """One finding: `ok`, what was found, and for a problem how to fix it."""

    name: str
    ok: bool
    message: str
    fix: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def ok(name: str, message: str) -> Check:
    return Check(name, True, message)


def problem(name: str, message: str, fix: str) -> Check:
    return Check(name, False, message, fix)


# --- local checks --------------------------------------------------------------------------------


def private_key(pem: str | None) -> Check:
    """The .p8 text must be an EC P-256 private key, as Apple issues them."""
    fix = ("Set APPLE_PRIVATE_KEY to the full text of the .p8 file (from -----BEGIN PRIVATE "
           "KEY----- to the END line), or APPLE_PRIVATE_KEY_PATH to the file; Apple lets you "
           f"download it once ({PORTAL}, Keys): if it is lost, make a new key.")
    try:
        key = serialization.load_pem_private_key((pem or "").encode(), password=None)
    except (ValueError, TypeError):
        return problem("private_key", "APPLE_PRIVATE_KEY is not a PEM private key", fix)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        return problem("private_key", "APPLE_PRIVATE_KEY is not an EC P-256 key", fix)
    return ok("private_key", "APPLE_PRIVATE_KEY is an EC P-256 private key")


def apple_id(name: str, key: str, value: str | None, label: str, where: str) -> Check:
    """Team IDs and Key IDs are 10 characters, A-Z and 0-9."""
    if isinstance(value, str) and APPLE_ID.fullmatch(value):
        return ok(name, f"{key} {value} has the shape of an Apple {label}")
    return problem(name, f"{key} {_show(value)} is not 10 characters of A-Z and 0-9",
                   f"Copy the {label} from {where} into {key}.")


def services_id(value: str | None, team_id: str | None, bundle_ids: list[str]) -> Check:
    """The web client id is a Services ID: not a native app's bundle id, not an App ID prefix."""
    fix = (f"Set APPLE_SERVICES_ID to the identifier of the Services ID ({PORTAL}, "
           "Identifiers, Services IDs), which holds the website's domain and return URL.")
    if not isinstance(value, str) or not CLIENT_ID.fullmatch(value):
        return problem("services_id", f"APPLE_SERVICES_ID {_show(value)} is not a reverse-DNS "
                       "identifier such as com.example.web", fix)
    if team_id and value.startswith(team_id + "."):
        return problem("services_id", f"APPLE_SERVICES_ID {value} starts with the Team ID: "
                       "that is an App ID prefix, not part of the identifier", fix)
    if value in bundle_ids:
        return problem("services_id", f"APPLE_SERVICES_ID {value} is the bundle id of a "
                       "registered native client: web sign-in needs the Services ID", fix)
    return ok("services_id", f"APPLE_SERVICES_ID {value} is not a native client's bundle id")


def native_clients(bundle_ids: list[str], services: str | None) -> Check:
    """The reverse: no native client may be registered with the Services ID as bundle id."""
    if services in bundle_ids:
        return problem("native_clients", f"a native client is registered with bundle id "
                       f"{services}, the Services ID: Apple issues its codes to the app's "
                       "bundle id", "Fix the client with `flask clients` (its bundle id is "
                       "the app's Bundle Identifier in Xcode), or remove it.")
    bad = [b for b in bundle_ids if not CLIENT_ID.fullmatch(b)]
    if bad:
        return problem("native_clients", f"bundle id {_show(bad[0])} of a native client is "
                       "not a reverse-DNS identifier", "Register the app's Bundle Identifier.")
    return ok("native_clients", f"{len(bundle_ids)} native client(s), none using the "
              "Services ID")


def redirect_uri(uri: str | None, issuer: str) -> Check:
    """Apple wants https on a domain name; ours must come back to this deployment."""
    fix = (f"Set APPLE_REDIRECT_URI to {issuer}/auth/apple/callback (or leave it unset) and "
           "register exactly that as a Return URL of the Services ID.")
    if not issuer.startswith("https://"):
        fix = ("Serve siwa-web over https on its domain name and set ISSUER to that https URL; "
               "then leave APPLE_REDIRECT_URI unset (<ISSUER>/auth/apple/callback) and "
               "register that as a Return URL of the Services ID.")
    parts = urlsplit(uri or "")
    if parts.scheme != "https":
        return problem("redirect_uri", f"APPLE_REDIRECT_URI {_show(uri)} is not https "
                       "(Apple accepts only https return URLs)", fix)
    host = parts.hostname or ""
    if host == "localhost" or _is_ip(host) or parts.fragment:
        return problem("redirect_uri", f"APPLE_REDIRECT_URI {uri} uses localhost, an IP "
                       "address or a #fragment, which Apple refuses", fix)
    if not (uri or "").startswith(issuer.rstrip("/") + "/"):
        return problem("redirect_uri", f"APPLE_REDIRECT_URI {uri} is not under ISSUER "
                       f"{issuer}: the sign-in would come back to another site", fix)
    return ok("redirect_uri", f"APPLE_REDIRECT_URI {uri} is https and under ISSUER")


# --- remote checks -------------------------------------------------------------------------------


@dataclass
class Answer:
    """Apple's answer to one call, or why there was none."""

    status: int | None = None
    body: Any = None
    date: float | None = None  # Apple's Date header, as a timestamp
    failure: str | None = None


def call(session: requests.Session, method: str, url: str, settings: AppleSettings,
         **kwargs: Any) -> Answer:
    try:
        resp = session.request(method, url, timeout=settings.timeout, allow_redirects=False,
                               headers={"Accept": "application/json"}, **kwargs)
    except requests.RequestException as exc:
        return Answer(failure=type(exc).__name__)
    try:
        body = resp.json()
    except (ValueError, RecursionError):
        body = None
    return Answer(resp.status_code, body, _date(resp.headers.get("Date")))


def keys_endpoint(session: requests.Session, settings: AppleSettings) -> tuple[Check, Answer]:
    """Apple's public keys must be reachable the way sign-in reaches them."""
    route = _route(session, settings.keys_url)
    answer = call(session, "GET", settings.keys_url, settings)
    fix = ("Allow outbound HTTPS to appleid.apple.com; behind a proxy, set HTTPS_PROXY (and "
           "NO_PROXY for local services) in the environment of siwa-web's processes, then "
           "restart them (the proxy is read at start-up).")
    if answer.failure:
        return problem("keys_endpoint", f"GET {settings.keys_url} {route} failed: "
                       f"{answer.failure}", fix), answer
    keys = answer.body.get("keys") if isinstance(answer.body, dict) else None
    if answer.status != 200 or not isinstance(keys, list) or not keys:
        return problem("keys_endpoint", f"GET {settings.keys_url} {route} answered "
                       f"{answer.status} without a key set", fix), answer
    return ok("keys_endpoint", f"Apple's keys endpoint was reached {route}: {len(keys)} "
              "key(s)"), answer


def credentials(session: requests.Session, settings: AppleSettings, client_id: str,
                secrets_for: ClientSecretFactory, redirect: str | None) -> tuple[Check, Answer]:
    """Probe /auth/token with a code that cannot exist: which error comes back says it all."""
    name = f"credentials:{client_id}"
    form = {"client_id": client_id, "client_secret": secrets_for.get(client_id),
            "grant_type": "authorization_code", "code": "siwa-doctor-" + secrets.token_hex(8)}
    if redirect:
        form["redirect_uri"] = redirect
    answer = call(session, "POST", settings.token_url, settings, data=form)
    error = answer.body.get("error") if isinstance(answer.body, dict) else None
    if answer.failure or (answer.status or 0) >= 500 or not isinstance(error, str):
        what = answer.failure or f"status {answer.status} without an OAuth error"
        return problem(name, f"the probe of {settings.token_url} failed: {what}",
                       "Apple may be down, or something between us answers instead of it; "
                       "see the keys_endpoint check and try again."), answer
    if error == "invalid_grant":
        return ok(name, f"Apple accepted the client secret for {client_id} (team "
                  f"{settings.team_id}, key {settings.key_id})"), answer
    if error == "invalid_client":
        return problem(name, f"Apple refused the client secret for {client_id} "
                       "(invalid_client)", f"Likely causes: {INVALID_CLIENT_CAUSES}."), answer
    return problem(name, f"Apple answered {error[:60]!r} to the probe for {client_id}",
                   "Unexpected: run the doctor again, and compare the settings with the "
                   "portal."), answer


def clock(answers: list[Answer], now: Callable[[], float] = time.time) -> Check:
    """Compare our clock with the Date of Apple's answers (one-second resolution)."""
    dated = [a.date for a in answers if a.date is not None]
    if not dated:
        return ok("clock", "Apple's answers carried no Date header: clock skew not measured")
    skew = now() - dated[-1]
    if abs(skew) > MAX_SKEW:
        side = "ahead of" if skew > 0 else "behind"
        return problem("clock", f"this machine's clock is {abs(skew):.0f} s {side} Apple's",
                       "Synchronise the clock (NTP: chrony or systemd-timesyncd). Client "
                       "secrets and identity tokens allow only 60 s of difference.")
    return ok("clock", f"this machine's clock is within {MAX_SKEW} s of Apple's "
              f"({skew:+.0f} s)")


def run(config: Mapping[str, Any], settings: AppleSettings, session: requests.Session,
        bundle_ids: list[str], now: Callable[[], float] = time.time) -> list[Check]:
    """Every check, local ones first; the remote ones only with a usable key."""
    team, services = config.get("APPLE_TEAM_ID"), config.get("APPLE_SERVICES_ID")
    checks = [
        private_key(config.get("APPLE_PRIVATE_KEY")),
        apple_id("team_id", "APPLE_TEAM_ID", team, "Team ID",
                 "developer.apple.com/account, Membership details"),
        apple_id("key_id", "APPLE_KEY_ID", config.get("APPLE_KEY_ID"), "Key ID",
                 f"{PORTAL}, Keys, your Sign in with Apple key"),
        services_id(services, team, bundle_ids),
        native_clients(bundle_ids, services),
        redirect_uri(config.get("APPLE_REDIRECT_URI"), config["ISSUER"]),
    ]
    keys_check, keys_answer = keys_endpoint(session, settings)
    checks.append(keys_check)
    answers = [keys_answer]
    if checks[0].ok and services:
        factory = ClientSecretFactory(settings.team_id or "", settings.key_id or "",
                                      settings.private_key_pem, clock=now)
        probes = [(services, config.get("APPLE_REDIRECT_URI"))]
        probes += [(b, None) for b in bundle_ids if b != services]
        for client_id, redirect in probes:
            check, answer = credentials(session, settings, client_id, factory, redirect)
            checks.append(check)
            answers.append(answer)
    checks.append(clock(answers, now))
    return checks


def _route(session: requests.Session, url: str) -> str:
    """"directly" or "through proxy http://host:port" (never the proxy's credentials)."""
    proxy = session.proxies.get(urlsplit(url).scheme) or session.proxies.get("all")
    if not proxy:
        return "directly"
    parts = urlsplit(proxy)
    port = f":{parts.port}" if parts.port else ""
    return f"through proxy {parts.scheme}://{parts.hostname}{port}"


def _date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _show(value: object) -> str:
    """A setting's value for a message: printable, short, quoted."""
    text = "" if value is None else str(value)
    return repr("".join(ch if ch.isprintable() else "?" for ch in text[:80]))
