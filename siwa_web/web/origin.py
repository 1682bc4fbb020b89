"""Refusing state-changing requests that a browser says came from another site.

The dashboard and the consent page call it before acting; it backs up their CSRF tokens.
"""
from __future__ import annotations

from flask import abort
from flask import current_app
from flask import request


def refuse_cross_site_posts() -> None:
    """Refuse state-changing requests that a browser says came from another site (DASH-04).

    This backs up the CSRF token. Browsers that send Fetch Metadata are trusted only with
    `Sec-Fetch-Site: same-origin`; that is also how our own forms are recognised, whose
    `Origin` is "null" because every page is served with `Referrer-Policy: no-referrer`.
    Without Fetch Metadata, an `Origin` header, when sent, must be ours ("null" is not: a
    sandboxed frame on any site can send it).
    """
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        if fetch_site != "same-origin":
            abort(403)
        return
    origin = request.headers.get("Origin")
    if origin is not None and origin not in own_origins():
        abort(403)


def own_origins() -> set[str]:
    issuer = current_app.config["ISSUER"].split("/", 3)
    return {request.host_url.rstrip("/"), "/".join(issuer[:3])}
