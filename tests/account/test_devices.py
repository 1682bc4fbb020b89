"""Device names on the dashboard, from user agents (hostile ones included)."""
from __future__ import annotations

import pytest

from siwa_web.account.devices import describe

MAC = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
       "Version/17.4 Safari/605.1.15")
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")
IPAD = ("Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Mobile/15E148 Safari/604.1")
EDGE = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0 Safari/537.36 Edg/124.0")
ANDROID = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/124.0.0.0 Mobile Safari/537.36")


@pytest.mark.parametrize("ua, label, kind", [
    (MAC, "Safari 17 on macOS", "computer"),
    (IPHONE, "Safari 17 on iPhone", "phone"),
    (IPAD, "Safari 17 on iPad", "tablet"),
    (EDGE, "Edge 124 on Windows", "computer"),
    (ANDROID, "Chrome 124 on Android", "phone"),
    ("Acme/3.1 (com.example.acme; build:42; iOS 17.4.1) Alamofire/5.9", "Acme on iOS", "phone"),
    ("Acme/2.1 CFNetwork/1494.0.7 Darwin/23.4.0", "Acme 2 on iOS", "phone"),
    ("curl/8.5.0", "curl 8", "unknown"),
    ("", "Unknown device", "unknown"),
    (None, "Unknown device", "unknown"),
    ("\x00\x1b[31m" * 300, "Unknown device", "unknown"),
    ("Mozilla/5.0 " + "(" * 5000, "Unknown device", "unknown"),
])
def test_describe(ua, label, kind):
    device = describe(ua)
    assert (device.label, device.kind) == (label, kind)
