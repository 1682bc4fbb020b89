"""What a browser is told for each HTTP error: what happened, what to do, how long to wait.

Werkzeug's own wording ("Method Not Allowed", "30 per 1 minute") means nothing to a person, so
every status a browser can reach has a row here; `errors.init_app` renders the row for the
request with the reference and the Retry-After it needs. JSON endpoints never come here.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from ..infra.extensions import limiter

CALLBACK_PATH = "/auth/apple/callback"
START_AGAIN = "Start again from the sign-in page."
ALREADY_SIGNED_IN = "You are already signed in: go back to your account."
GO_BACK = "Go back, reload the page and try again."


@dataclass(frozen=True)
class ErrorPage:
    """One page: `signed_in_action`, when set, is the advice for a browser that is signed in."""

    title: str
    message: str
    action: str
    signed_in_action: str | None = None

    def action_for(self, signed_in: bool) -> str:
        return self.signed_in_action if signed_in and self.signed_in_action else self.action


PAGES: dict[int, ErrorPage] = {
    400: ErrorPage("This request could not be used",
                   "Something in it was missing or malformed. Nothing was changed.", GO_BACK),
    403: ErrorPage("This request was refused",
                   "It did not come from one of siwa-web's own pages, so it was not carried out. "
                   "Nothing was changed.", GO_BACK),
    404: ErrorPage("Page not found",
                   "There is nothing at this address. The link may be old or mistyped.",
                   "Check the address, or start from the sign-in page.",
                   "Check the address, or go back to your account."),
    405: ErrorPage("This page cannot be opened like this",
                   "This address only accepts forms sent by siwa-web's own pages; opening it "
                   "from a bookmark or the address bar does nothing. Nothing was changed.",
                   START_AGAIN, ALREADY_SIGNED_IN),
    413: ErrorPage("That was more than siwa-web accepts",
                   "The request was too large to handle. Nothing was changed.",
                   "Go back and try again with less."),
    429: ErrorPage("Too many attempts",
                   "This network sent more requests than siwa-web accepts in a short time. "
                   "Nothing was changed.", "Wait a minute, then try again."),
    500: ErrorPage("Something went wrong",
                   "An unexpected error stopped this request. Nothing was changed.",
                   "Try again in a moment."),
    503: ErrorPage("siwa-web cannot answer right now",
                   "A service it needs is not available. Nothing was changed.",
                   "Wait a minute, then try again."),
}
CALLBACK_BY_HAND = ErrorPage(
    "This address only receives Apple's answer",
    "Apple sends the result of a sign-in here; opening it from a bookmark or the address bar "
    "does nothing. Nothing was changed.", START_AGAIN, ALREADY_SIGNED_IN)
CSRF_FAILED = ErrorPage(
    "This form has expired",
    "For your safety it was not accepted: it was open for too long, or it was sent from "
    "another site or an old tab (its CSRF token did not match). Nothing was changed.", GO_BACK)


def page_for(exc: HTTPException, path: str) -> ErrorPage:
    """The row for this error; an unlisted status still gets a page in siwa-web's words."""
    if isinstance(exc, CSRFError):
        return CSRF_FAILED
    if exc.code == 405 and path == CALLBACK_PATH:
        return CALLBACK_BY_HAND
    found = PAGES.get(exc.code or 500)
    if found is not None:
        return found
    server_side = (exc.code or 500) >= 500
    return PAGES[500] if server_side else ErrorPage(
        "This request could not be completed", "Nothing was changed.", GO_BACK)


def retry_after(exc: HTTPException) -> int | None:
    """Seconds to wait: the rate limit's window end for a 429, else what the error carries."""
    if exc.code == 429:
        current = limiter.current_limit
        if current is not None:
            return max(1, int(current.reset_at - time.time()))  # as Flask-Limiter counts
        return 60
    seconds = getattr(exc, "retry_after", None)
    if isinstance(seconds, int | float):
        return max(1, math.ceil(seconds))
    return None


def wait_advice(seconds: int) -> str:
    """"Wait about 40 seconds" / "about 3 minutes", then try again."""
    if seconds < 90:
        amount = f"{seconds} second{'s' if seconds != 1 else ''}"
    else:
        minutes = round(seconds / 60)
        amount = f"{minutes} minutes"
    return f"Wait about {amount}, then try again."
