"""Every audit and log event siwa-web writes, with the short stable code operators filter on.

An event name is what the code passes (`audit.record("web_login")`, `extra={"event": ...}`); the
code is what an operator greps for in the JSON log (`"code":"f"`) and what support reads in
`flask users show`. Codes never change meaning once released: a new event gets a new code.
docs/operations.md ("Event codes") lists the same table; tests/infra/test_event_codes.py keeps
the two, and every emit site in siwa_web, in step.
"""
from __future__ import annotations

from dataclasses import dataclass

ACTIVITY = "activity"  # the user's activity on the dashboard (and `flask users show`)
LOG = "log"  # the JSON log only
BOTH = "both"  # an audit row (dashboard activity) and, once committed, a JSON log line


@dataclass(frozen=True)
class Event:
    """One kind of event: its codes, what it means, its fields beyond the common ones."""

    code: str | None  # the outcome "success" (None: the event only ever fails)
    failure: str | None  # the outcome "failure" (None: the event never fails)
    meaning: str
    fields: str = ""
    shows: str = BOTH


EVENTS: dict[str, Event] = {
    # --- Sign-in and sign-out (audit) -------------------------------------------------------
    "web_login": Event("s", "f", "Signed in on the web with Apple / a browser sign-in failed",
                       "client_id, reason, details.purpose, details.ref"),
    "web_logout": Event("slo", None, "Signed out on the web (this site or a web app's logout)",
                        "client_id"),
    "identity_linked": Event("il", None, "Linked another Apple ID to the account", "client_id"),
    "identity_unlinked": Event("iu", None, "Removed an Apple ID from the account",
                               "details.identity"),
    "native_exchange": Event("sx", "fx", "An app exchanged Apple's code for our tokens "
                             "(RFC 8693) / the exchange was refused", "client_id, reason"),
    "refresh": Event("rt", "frt", "An app renewed its tokens with a refresh token / the "
                     "renewal was refused", "client_id, reason, details.family_id"),
    "refresh_token_reuse_detected": Event(None, "rtr", "A rotated refresh token came back: "
                                          "the whole app session was revoked",
                                          "client_id, details.family_id"),
    "token_revoked": Event("rv", "frv", "An app revoked a token (RFC 7009) / the revocation "
                           "was refused", "client_id, details.family_id"),
    "web_app_code": Event("sw", "fw", "A web app redeemed its authorization code / the code "
                          "was refused", "client_id, reason"),
    "authorization_code_replayed": Event(None, "fcr", "An authorization code was used twice: "
                                         "the tokens it gave were revoked", "client_id"),
    "consent_granted": Event("cg", None, "Allowed a web app (consent screen)", "client_id"),
    "consent_denied": Event(None, "cd", "Refused a web app (consent screen)", "client_id"),
    "app_disconnected": Event("ad", None, "Disconnected a web app from the dashboard",
                              "client_id"),
    # --- The dashboard -----------------------------------------------------------------------
    "session_revoked": Event("so", None, "Signed out one web session", "details.session"),
    "sessions_revoked_others": Event("soa", None, "Signed out every other web session",
                                     "details.count"),
    "family_revoked": Event("ao", None, "Signed out one app session", "client_id"),
    "families_revoked_all": Event("aoa", None, "Signed out of every app", "details.count"),
    "account_deleted": Event("del", None, "Deleted the account", "details"),
    "account_deleted_in_app": Event("dla", None, "Deleted the account from an app "
                                    "(DELETE /api/account)", "client_id, details.family"),
    # --- Apple and web apps told about changes (outboxes, notifications) --------------------
    "backchannel_logout_sent": Event("bl", None, "A web app was told of a sign-out "
                                     "(back-channel logout)", "client_id, details.attempts"),
    "backchannel_logout_failed": Event(None, "fbl", "A back-channel logout could not be "
                                       "delivered; it is retried", "client_id, reason"),
    "apple_revocation_sent": Event("ar", None, "Apple revoked our Apple tokens for a removed "
                                   "Apple ID", "details.attempts"),
    "apple_revocation_failed": Event(None, "far", "Apple's revocation endpoint failed; it is "
                                     "retried", "reason, details.next_attempt_at"),
    "apple_consent_revoked": Event("nc", None, "Apple: the user stopped using Sign in with "
                                   "Apple with this site", "details.identity"),
    "apple_account_deleted": Event("nd", None, "Apple: the Apple ID was deleted",
                                   "details.disabled"),
    "apple_email_disabled": Event("ned", None, "Apple: mail forwarding to the relay address "
                                  "was turned off"),
    "apple_email_enabled": Event("nee", None, "Apple: mail forwarding to the relay address "
                                 "was turned on"),
    "apple_identity_transferred": Event("nt", None, "The Apple ID moved with the app to another "
                                        "Apple developer team (`flask apple transfer`, or at "
                                        "sign-in)", "reason (how), details"),
    # --- Support (`flask users`) -------------------------------------------------------------
    "operator_find": Event("of", None, "Support looked a user up", "details.by, "
                           "details.operator"),
    "operator_show": Event("os", "fos", "Support opened a user's record", "details.operator"),
    "operator_sign_out": Event("oso", "foso", "Support signed a user out", "details.operator"),
    "operator_disable": Event("od", "fod", "Support disabled an account", "details.operator"),
    "operator_enable": Event("oe", "foe", "Support re-enabled an account", "details.operator"),
    "operator_delete": Event("odl", "fodl", "Support deleted an account", "details.operator"),
    # --- The JSON log only ---------------------------------------------------------------------
    "http_request": Event("req", None, "An access line of the development server",
                          "method, path, status", LOG),
    "server": Event("srv", None, "Any other line of the development server (start-up)",
                    "", LOG),
    "http_error": Event("he", None, "A browser was shown an HTTP error page (404, 405 …)",
                        "status, path", LOG),
    "crash": Event(None, "err", "An unexpected error; the page says \"Something went wrong\"",
                   "path, exc (traceback)", LOG),
    "database_unavailable": Event(None, "dbx", "The database did not answer during a request",
                                  "reason", LOG),
    "audit_write_failed": Event(None, "aux", "An audit row could not be written", "", LOG),
    "apple_invalid_client": Event(None, "acx", "Apple refused our client credentials "
                                  "(invalid_client): fix the Apple settings", "client_id", LOG),
    "apple_unavailable": Event(None, "apu", "A call to Apple failed (network, timeout, 5xx)",
                               "", LOG),
    "apple_rejected": Event(None, "apr", "Apple answered a call with an OAuth error", "", LOG),
    "apple_answer_unusable": Event(None, "apx", "Apple answered with something unusable", "",
                                   LOG),
    "apple_keys_unavailable": Event(None, "apk", "Apple's signing keys (JWKS) could not be "
                                    "fetched", "", LOG),
    "apple_revocation_undecryptable": Event(None, "ard", "A stored Apple token cannot be "
                                            "decrypted: check TOKEN_ENCRYPTION_KEYS", "", LOG),
    "apple_token_undecryptable": Event(None, "atd", "A stored Apple token cannot be decrypted "
                                       "for the daily check: check TOKEN_ENCRYPTION_KEYS", "",
                                       LOG),
    "apple_token_check_crash": Event(None, "atx", "Checking one stored Apple token failed "
                                     "unexpectedly (a bug); it is checked on the next run",
                                     "exc", LOG),
    "outbox_crash": Event(None, "obx", "An outbox row failed unexpectedly (a bug); it is "
                          "retried", "exc", LOG),
    "notification_refused": Event(None, "fn", "An Apple server notification failed "
                                  "verification", "reason", LOG),
    "notification_ignored": Event("ni", None, "An Apple server notification for an unknown "
                                  "Apple ID or of an unknown type", "reason", LOG),
    "authorization_refused": Event(None, "faz", "A web app's authorization request was "
                                   "answered with an error (sent back to the app)",
                                   "client_id, reason", LOG),
    "authorization_unanswerable": Event(None, "fau", "An authorization request could not be "
                                        "sent back to its app: an error page instead",
                                        "reason", LOG),
    "logout_refused": Event(None, "flo", "A web app's logout link was not valid", "reason",
                            LOG),
    "bearer_refused": Event(None, "fat", "An access token was refused by a Bearer API (DEBUG "
                            "level)", "reason", LOG),
    "liveness_signal_failed": Event(None, "lvs", "A revocation could not be signalled to the "
                                    "other processes at once (caches expire instead)", "", LOG),
    "liveness_watch_failed": Event(None, "lvw", "A process cannot watch for revocations; it "
                                   "retries", "", LOG),
    "readiness_lost": Event(None, "nrd", "/readyz turned 503: a dependency failed", "", LOG),
    "readiness_restored": Event("rdy", None, "/readyz answers 200 again", "", LOG),
    "ratelimit_store_failed": Event(None, "rlx", "The rate-limit store failed; the request "
                                    "was let through", "", LOG),
    "ratelimit_store_restored": Event("rlo", None, "The rate-limit store answers again; limits "
                                      "are counted again", "", LOG),
    "commit_answer_lost": Event(None, "cal", "A COMMIT's answer was lost but it was applied: "
                                "answered as a success", "reason", LOG),
    "commit_outcome_unknown": Event(None, "cou", "A COMMIT failed and the database could not "
                                    "be asked whether it was applied: answered 503, the work "
                                    "may be stored", "reason", LOG),
    "ratelimit_hooks": Event("rlh", None, "At start-up: which limits are checked before "
                             "every request", "", LOG),
    "sqlite_gate_busy": Event(None, "sqb", "SQLite's writer gate was busy too long", "", LOG),
    "apple_transfer": Event("atr", None, "A `flask apple transfer` run finished",
                            "done, skipped, refused, conflicts, total, stopped", LOG),
    "metrics_outbox_failed": Event(None, "mox", "/metrics could not read the outboxes' depth "
                                   "(siwa_outbox_stats_up 0); the scrape still answers", "", LOG),
    "emulator": Event(None, "emu", "The built-in Apple emulator could not do something "
                      "(development only)", "", LOG),
    "backchannel_delivery_crash": Event(None, "bcx", "Sending back-channel logouts failed "
                                        "unexpectedly; the outbox keeps the rows", "exc", LOG),
}


def code_for(event: str, outcome: str = "success") -> str:
    """Return the code of `event` with `outcome`; "?" for an event the table lacks.

    The log must never fail over a missing code; tests/infra/test_event_codes.py makes sure
    every event the code emits is in the table.
    """
    row = EVENTS.get(event)
    if row is None:
        return "?"
    code = row.failure if outcome == "failure" else row.code
    return code or row.failure or row.code or "?"
