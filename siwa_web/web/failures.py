"""Every way Apple's callback can fail, as one table: what the browser is shown, logged, audited.

Each row names the exceptions it answers and everything a user or operator sees of that
failure; `views.callback` catches exactly `KNOWN` and renders the row `failure_for` picks.
An exception the table does not name is a bug, not a failure: it propagates to the generic
crash page. `reason` goes to the log line and the audit record only, never to the page.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import OperationalError

from ..apple.errors import AppleMisconfigured
from ..apple.errors import AppleRejected
from ..apple.errors import AppleUnavailable
from ..apple.errors import InvalidIdentityToken
from ..users.accounts import AccountDisabled
from ..users.accounts import IdentityTaken
from .error_pages import ALREADY_SIGNED_IN
from .error_pages import START_AGAIN
from .login_tx import StateError
from .signin import SubjectMismatch
from .signin import WrongAccount

WAIT_A_MINUTE = "Wait a minute, then start again."
# A browser that is still signed in (a replayed callback, a failed link) has nothing to start
# again: the page says ALREADY_SIGNED_IN beside its "Back to your account" button.


class IncompleteAnswer(Exception):
    """Apple's form_post lacks a well-formed `code` or the `id_token`."""


@dataclass(frozen=True)
class Failure:
    """One kind of failed callback and everything it produces.

    `reason` and `alert_args` may be functions of the exception, for the parts that name it.
    `alert` is a %-style line logged at ERROR before the page, for failures an operator must
    fix, as the event `alert_event` (models/events.py); `retry_after` (seconds) is sent as
    Retry-After. `outcome` names the row in the metrics (`siwa_web_sign_ins_total`): fixed,
    unlike `reason`, which may carry Apple's error code. `signed_in_action` replaces `action`
    for a browser that is signed in (default: "start again" becomes "you are already signed in").
    """

    catches: tuple[type[Exception], ...]
    status: int
    title: str
    message: str
    reason: str | Callable[[Exception], str]
    outcome: str
    action: str = START_AGAIN
    retry_after: int | None = None
    alert: str | None = None
    alert_args: Callable[[Exception], tuple] = lambda exc: ()
    alert_event: str | None = None
    signed_in_action: str | None = None

    def action_for(self, signed_in: bool) -> str:
        """The advice that fits the browser: a signed-in one is not sent to the sign-in page."""
        if not signed_in:
            return self.action
        if self.signed_in_action is not None:
            return self.signed_in_action
        return ALREADY_SIGNED_IN if self.action == START_AGAIN else self.action

    def reason_for(self, exc: Exception) -> str:
        return self.reason(exc) if callable(self.reason) else self.reason

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


_UNVERIFIED = ("Apple's answer could not be verified",
               "The identity token did not pass our checks. Nothing was changed.")

FAILURES: tuple[Failure, ...] = (
    Failure((StateError,), 400, "This sign-in attempt is no longer valid",
            "It may have expired, been used already, or been started in another browser. "
            "Nothing was changed.",
            reason=lambda exc: exc.reason, outcome="invalid_state"),
    Failure((IncompleteAnswer,), 400, "Apple's answer was incomplete",
            "The sign-in code or identity token was missing. Nothing was changed.",
            reason="missing code or id_token", outcome="incomplete_answer"),
    Failure((AppleUnavailable,), 503, "Apple is not answering right now",
            "We could not reach Apple to finish signing you in. Nothing was changed.",
            reason="apple unavailable", outcome="apple_unavailable", action=WAIT_A_MINUTE,
            retry_after=30),
    Failure((AppleMisconfigured,), 500, "Sign in with Apple is misconfigured",
            "Apple did not accept this site's credentials. Nothing was changed.",
            reason="apple invalid_client", outcome="apple_misconfigured",
            action="Please tell the site operator.",
            alert="Apple rejected our client credentials (invalid_client): check "
                  "SIWA_APPLE_TEAM_ID, SIWA_APPLE_KEY_ID, the private key and "
                  "SIWA_APPLE_SERVICES_ID",
            alert_event="apple_invalid_client"),
    Failure((AppleRejected,), 400, "Apple did not accept this sign-in",
            "The sign-in code was expired or already used. Nothing was changed.",
            reason=lambda exc: f"apple {exc.error}", outcome="apple_rejected"),
    Failure((InvalidIdentityToken,), 400, *_UNVERIFIED, reason=lambda exc: exc.reason,
            outcome="invalid_id_token"),
    Failure((SubjectMismatch,), 400, *_UNVERIFIED, reason="front/back subject mismatch",
            outcome="subject_mismatch"),
    Failure((IdentityTaken,), 409, "That Apple Account belongs to another account",
            "It is already linked to a different siwa-web account, so it was not linked to "
            "this one.",
            reason="identity taken", outcome="identity_taken",
            action="Sign in with that Apple Account to manage the other account."),
    Failure((WrongAccount,), 403, "That Apple Account is not linked to this account",
            "Please confirm with an Apple Account linked to the account you are signed in to.",
            reason="reauth with a foreign Apple Account", outcome="wrong_account",
            signed_in_action="Go back to your account and confirm with an Apple Account that "
                             "is linked to it."),
    Failure((OperationalError,), 503, "We could not finish signing you in",
            "Our database did not answer. Nothing was changed.",
            reason="database unavailable", outcome="database_unavailable", action=WAIT_A_MINUTE,
            retry_after=30,
            alert="database unavailable during sign-in: %s",
            alert_args=lambda exc: (type(exc.orig).__name__,),
            alert_event="database_unavailable"),
    Failure((AccountDisabled,), 403, "This account is disabled",
            "Signing in to it is not possible while it is disabled. Nothing was changed.",
            reason="account disabled", outcome="account_disabled",
            action="If you think this is a mistake, contact the site's support."),
)

_BY_TYPE: dict[type[Exception], Failure] = {t: f for f in FAILURES for t in f.catches}
if len(_BY_TYPE) != sum(len(f.catches) for f in FAILURES):
    raise RuntimeError("an exception type appears in two rows of FAILURES")

KNOWN: tuple[type[Exception], ...] = tuple(_BY_TYPE)
"""Every exception the table answers: the callback catches these and nothing broader."""


def failure_for(exc: Exception) -> Failure | None:
    """The row for `exc`'s most specific type in the table (a subclass beats its base)."""
    for cls in type(exc).__mro__:
        if cls in _BY_TYPE:
            return _BY_TYPE[cls]
    return None
