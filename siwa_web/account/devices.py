"""Human names for the devices behind user-agent strings ("Safari on iPhone", "Acme on iOS").

A user agent is attacker-controlled text: it is only ever shown escaped, cut to a sane length
first, and a string we cannot make sense of becomes "Unknown device" rather than a guess.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from user_agents import parse

UA_MAX = 512
# "Acme/3.1 CFNetwork/1494 Darwin/23.4" or "Acme/3.1 (com.example.acme; iOS 17.4)": native apps
_PRODUCT = re.compile(r"^([A-Za-z][A-Za-z0-9 ._-]{0,39})/[0-9A-Za-z._-]{1,20}")
_NOT_APPS = {"mozilla", "cfnetwork", "dalvik", "okhttp", "alamofire"}
_OS_NAMES = {
    "Mac OS X": "macOS",
    "Chrome OS": "ChromeOS",
    "Ubuntu": "Linux",
    "Fedora": "Linux",
}
_BROWSER_NAMES = {
    "Mobile Safari": "Safari",
    "Mobile Safari UI/WKWebView": "an in-app browser",
    "Chrome Mobile": "Chrome",
    "Chrome Mobile iOS": "Chrome",
    "Chrome Mobile WebView": "an in-app browser",
    "HeadlessChrome": "Headless Chrome",
    "Firefox Mobile": "Firefox",
    "Firefox iOS": "Firefox",
    "Edge Mobile": "Edge",
    "Samsung Internet": "Samsung Internet",
}


@dataclass(frozen=True)
class Device:
    """What we can tell about a device: a browser or app name, an OS, and a kind for the icon."""

    software: str | None  # "Safari 17", "Acme"
    os: str | None  # "macOS", "iOS"
    kind: str  # "computer", "phone", "tablet" or "unknown"

    @property
    def label(self) -> str:
        """Return a short phrase such as "Safari 17 on macOS" or "Unknown device"."""
        if self.software and self.os:
            return f"{self.software} on {self.os}"
        return self.software or (f"A device running {self.os}" if self.os else "Unknown device")


UNKNOWN = Device(None, None, "unknown")


@lru_cache(maxsize=1024)
def describe(user_agent: str | None) -> Device:
    """Return the `Device` behind a User-Agent header (never raises)."""
    if not user_agent:
        return UNKNOWN
    text = user_agent[:UA_MAX]
    try:
        ua = parse(text)
    except Exception:  # noqa: BLE001 - a hostile header must never break the page
        return UNKNOWN
    os_name = _os(ua.os.family)
    if ua.device.family in ("iPhone", "iPad"):
        os_name = ua.device.family  # "Safari on iPad" says more than "Safari on iOS"
    kind = ("phone" if ua.is_mobile else "tablet" if ua.is_tablet
            else "computer" if ua.is_pc else None)
    software = _browser(ua.browser.family, ua.browser.version)
    if software is None:
        software = _app_name(text)
    if kind is None:
        kind = "phone" if os_name in ("iOS", "Android") else "unknown"
    return Device(software, os_name, kind)


def _os(family: str) -> str | None:
    if not family or family == "Other":
        return None
    if family.startswith("Windows"):
        return "Windows"
    return _OS_NAMES.get(family, family)


def _browser(family: str, version: tuple) -> str | None:
    if not family or family == "Other":
        return None
    name = _BROWSER_NAMES.get(family, family)
    major = version[0] if version and isinstance(version[0], int) else None
    if name.startswith("an ") or major is None:
        return name
    return f"{name} {major}"


def _app_name(text: str) -> str | None:
    """Return the product token of a native app's user agent, if it names one."""
    match = _PRODUCT.match(text)
    if not match or match.group(1).lower() in _NOT_APPS:
        return None
    return match.group(1).strip()
