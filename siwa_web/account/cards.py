"""What the account pages show, loaded in Python: templates get plain cards and run no queries.

Only metadata ever leaves here (client, times, IP, device): no token, hash or secret is put on a
card, so none can end up in the HTML (DASH-12).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from flask import Flask
from flask import current_app
from sqlalchemy import Select
from sqlalchemy import Subquery
from sqlalchemy import and_
from sqlalchemy import case
from sqlalchemy import func
from sqlalchemy import literal
from sqlalchemy import not_
from sqlalchemy import select
from sqlalchemy import union_all
from sqlalchemy.orm import joinedload
from sqlalchemy.orm import selectinload

from ..infra.extensions import db
from ..models import AppleIdentity
from ..models import AuditEvent
from ..models import Client
from ..models import Consent
from ..models import TokenFamily
from ..models import User
from ..models import WebSession
from ..models.base import now_utc
from ..oauth.clients import NATIVE
from ..oauth.clients import WEB
from ..users.apple_access import REVOKED
from ..web import sessions
from .devices import Device
from .devices import describe

RENEWAL = "refresh"  # the audit event of a token renewal, summed up in the activity
RECENT_ACTIVITY = 6
ACTIVITY_PER_PAGE = 25
# Every list the dashboard shows is cut at this many rows (most recent first), so one account
# with thousands of app sessions costs the same few bounded queries as any other; the cards
# say how many more there are.
SESSIONS_SHOWN = 50
# Distinct (Apple ID, app) pairs or scopes read for one card: far more than any real account.
DISTINCT_SHOWN = 200
SCOPE_NAMES = {
    "openid": "Sign in",
    "profile": "Name",
    "email": "Email address",
    "offline_access": "Stay signed in",
}
EVENT_TITLES = {
    "web_login": "Signed in on the web",
    "web_logout": "Signed out on the web",
    "web_app_code": "Signed in to a web app",
    "consent_granted": "Allowed a web app",
    "consent_denied": "Refused a web app",
    "app_disconnected": "Disconnected a web app",
    "backchannel_logout_sent": "A web app was told you signed out",
    "backchannel_logout_failed": "A web app could not be told you signed out (retrying)",
    "identity_linked": "Linked an Apple Account",
    "identity_unlinked": "Removed an Apple Account",
    "session_revoked": "Signed out a web session",
    "sessions_revoked_others": "Signed out all other web sessions",
    "family_revoked": "Signed out an app session",
    "families_revoked_all": "Signed out of every app",
    "account_deleted": "Deleted the account",
    "native_exchange": "Signed in to an app",
    "refresh": "An app renewed its sign-in",
    "refresh_token_reuse_detected": "An old app token was used again, so that app session was "
                                    "signed out to be safe",
    "token_revoked": "An app signed out",
    "apple_consent_revoked": "Sign in with Apple was stopped in Apple Account settings",
    "apple_account_deleted": "Apple said this Apple Account was deleted",
    "apple_email_disabled": "Apple relay forwarding was turned off",
    "apple_email_enabled": "Apple relay forwarding was turned on",
    "account_deleted_in_app": "Deleted the account from an app",
    "apple_notification": "Apple sent an account notice",
    "apple_identity_transferred": "Your Apple Account moved with the app to its new Apple team",
    # what siwa-web's support did (`flask users ...`, siwa_web/ops/users_cli.py)
    "operator_find": "Support looked up your account",
    "operator_show": "Support looked at your account",
    "operator_sign_out": "Support signed you out everywhere",
    "operator_disable": "Support disabled your account",
    "operator_enable": "Support enabled your account again",
    "operator_delete": "Support deleted the account",
}
OPERATOR_SIGN_OUTS = {
    ("web_sessions",): "Support signed out your web sessions",
    ("app_sessions",): "Support signed you out of your apps",
}
BY_SUPPORT = Device("Support", None, "unknown")


@dataclass(frozen=True)
class ClientUse:
    """One client an Apple Account signed in through."""

    label: str
    client_id: str
    is_web: bool
    holds_token: bool  # we hold a valid Apple refresh token obtained by this client


@dataclass(frozen=True)
class IdentityCard:
    id: str
    sub: str
    short_sub: str
    email: str | None
    email_verified: bool
    is_private_email: bool
    created_at: datetime
    last_used_at: datetime
    clients: list[ClientUse]
    email_forwarding: bool | None = None  # Hide-My-Email forwarding as Apple last told us
    consent_revoked_at: datetime | None = None  # Apple stopped honouring our tokens then

    @property
    def holds_apple_token(self) -> bool:
        return any(c.holds_token for c in self.clients)


@dataclass(frozen=True)
class WebSessionCard:
    id: str
    device: Device
    ip: str | None
    created_at: datetime
    last_seen_at: datetime
    is_current: bool
    via: str | None  # short sub of the Apple Account it signed in with
    apps: tuple[str, ...] = ()  # web apps that signed in through this session


@dataclass(frozen=True)
class ConnectedAppCard:
    """A web app the person signed in to through siwa-web."""

    client_id: str
    name: str
    scopes: list[str]
    first_used: datetime
    last_used: datetime
    signed_in: int  # live sign-ins (refresh-token families) of it


@dataclass(frozen=True)
class AppSessionCard:
    id: str
    client_name: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime
    ip: str | None
    device: Device


@dataclass(frozen=True)
class ActivityItem:
    at: datetime
    title: str
    failed: bool
    reason: str | None
    client: str | None
    ip: str | None
    device: Device
    renewals: int = 0  # a summary line: this many token renewals, `at` is the last one


@dataclass(frozen=True)
class Overview:
    user: User
    identities: list[IdentityCard]
    web_sessions: list[WebSessionCard]
    app_sessions: list[AppSessionCard]
    connected_apps: list[ConnectedAppCard]
    activity: list[ActivityItem]
    more_activity: bool
    web_sessions_total: int = 0  # all live ones, `web_sessions` holds SESSIONS_SHOWN at most
    app_sessions_total: int = 0

    @property
    def more_web_sessions(self) -> int:
        return max(self.web_sessions_total - len(self.web_sessions), 0)

    @property
    def more_app_sessions(self) -> int:
        return max(self.app_sessions_total - len(self.app_sessions), 0)


@dataclass(frozen=True)
class ActivityPage:
    items: list[ActivityItem]
    page: int
    pages: int
    total: int

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


def short_sub(sub: str) -> str:
    """Return Apple's long `sub` cut to something a person can compare at a glance."""
    return sub if len(sub) <= 18 else f"{sub[:11]}…{sub[-4:]}"


def overview(user: User, current_session_id: str | None) -> Overview:
    """Load everything the dashboard shows for `user`."""
    identities = _identity_rows(user.id)
    activity = _activity_rows(user.id, 0, RECENT_ACTIVITY + 1)
    shown_web = web_sessions(user.id, current_session_id, identities)
    shown_apps = app_sessions(user.id)
    return Overview(
        user=user,
        identities=_identity_cards(user.id, identities),
        web_sessions=shown_web,
        app_sessions=shown_apps,
        connected_apps=connected_apps(user.id),
        activity=activity[:RECENT_ACTIVITY],
        more_activity=len(activity) > RECENT_ACTIVITY,
        web_sessions_total=(len(shown_web) if len(shown_web) < SESSIONS_SHOWN
                            else _count(_live_web_sessions(user.id))),
        app_sessions_total=(len(shown_apps) if len(shown_apps) < SESSIONS_SHOWN
                            else _count(_live_app_sessions(user.id))),
    )


def _count(stmt: Select) -> int:
    return db.session.scalar(select(func.count()).select_from(stmt.subquery())) or 0


def own_identity(user_id: str, identity_id: str) -> AppleIdentity | None:
    """Return the identity if it is this user's (None for anyone else's: a 404, not a 403)."""
    return db.session.execute(
        select(AppleIdentity).where(AppleIdentity.id == identity_id,
                                    AppleIdentity.user_id == user_id)
    ).scalar_one_or_none()


def own_session(user_id: str, session_id: str) -> WebSession | None:
    """Return the web session if it is this user's (None for anyone else's)."""
    return db.session.execute(
        select(WebSession).where(WebSession.id == session_id, WebSession.user_id == user_id)
    ).scalar_one_or_none()


def own_family(user_id: str, family_id: str) -> TokenFamily | None:
    """Return the app session (refresh-token family) if it is this user's."""
    return db.session.execute(
        select(TokenFamily).options(joinedload(TokenFamily.client))
        .where(TokenFamily.id == family_id, TokenFamily.user_id == user_id)
    ).scalar_one_or_none()


def identity_count(user_id: str) -> int:
    return db.session.scalar(
        select(func.count()).select_from(AppleIdentity).where(AppleIdentity.user_id == user_id)
    ) or 0


def identity_card(identity: AppleIdentity) -> IdentityCard:
    return _identity_cards(identity.user_id, [identity])[0]


def _identity_rows(user_id: str) -> list[AppleIdentity]:
    return list(db.session.scalars(
        select(AppleIdentity)
        .where(AppleIdentity.user_id == user_id)
        .options(selectinload(AppleIdentity.apple_tokens))
        .order_by(AppleIdentity.created_at)
    ))


def _identity_cards(user_id: str, identities: list[AppleIdentity]) -> list[IdentityCard]:
    """Cards with the clients each Apple Account signed in through: Apple tokens, apps, the web."""
    services_id = current_app.config["APPLE_SERVICES_ID"]
    apps = db.session.execute(
        select(TokenFamily.identity_id, Client.bundle_id, Client.name)
        .join(Client, Client.id == TokenFamily.client_id)
        .where(TokenFamily.user_id == user_id)
        .distinct()
        .limit(DISTINCT_SHOWN)
    ).all()
    on_web = set(db.session.scalars(
        select(WebSession.identity_id).where(WebSession.user_id == user_id).distinct()
        .limit(DISTINCT_SHOWN)
    ))
    names = _client_names([t.client_id for i in identities for t in i.apple_tokens])
    names.update({bundle: name for _, bundle, name in apps})
    cards = []
    for identity in identities:
        uses: dict[str, ClientUse] = {}
        held = {t.client_id for t in identity.apple_tokens
                if t.refresh_token_encrypted and t.invalidated_at is None}
        seen = [t.client_id for t in identity.apple_tokens]
        seen += [bundle for ident, bundle, _ in apps if ident == identity.id]
        if identity.id in on_web:
            seen.append(services_id)
        for client_id in seen:
            is_web = client_id == services_id
            label = "This website" if is_web else names.get(client_id, client_id)
            uses[client_id] = ClientUse(label, client_id, is_web, client_id in held)
        cards.append(IdentityCard(
            id=identity.id, sub=identity.sub, short_sub=short_sub(identity.sub),
            email=identity.email, email_verified=identity.email_verified,
            is_private_email=identity.is_private_email, created_at=identity.created_at,
            last_used_at=identity.last_used_at,
            clients=sorted(uses.values(), key=lambda c: (not c.is_web, c.label.lower())),
            email_forwarding=identity.email_forwarding,
            consent_revoked_at=max((t.invalidated_at for t in identity.apple_tokens
                                    if t.check_state == REVOKED and t.invalidated_at),
                                   default=None),
        ))
    return cards


def _client_names(ids: list[str]) -> dict[str, str]:
    """Map native clients' bundle ids (Apple's client ids) and our client ids to their names."""
    if not ids:
        return {}
    wanted = set(ids)
    rows = db.session.execute(
        select(Client.id, Client.bundle_id, Client.name)
        .where(Client.bundle_id.in_(wanted) | Client.id.in_(wanted))
    ).all()
    return {key: name for client_id, bundle, name in rows for key in (client_id, bundle)}


def web_sessions(user_id: str, current_session_id: str | None,
                 identities: list[AppleIdentity]) -> list[WebSessionCard]:
    """The user's live browser sessions, this one first, then most recently seen."""
    subs = {i.id: short_sub(i.sub) for i in identities}
    rows = db.session.scalars(
        _live_web_sessions(user_id).order_by(WebSession.last_seen_at.desc())
        .limit(SESSIONS_SHOWN)
    ).all()
    if current_session_id and all(row.id != current_session_id for row in rows):
        current = db.session.get(WebSession, current_session_id)
        if current is not None and current.user_id == user_id:
            rows = [current, *rows[:SESSIONS_SHOWN - 1]]
    live = [row for row in rows if sessions.is_alive(row)]
    apps = _apps_by_session([row.id for row in live])
    cards = [
        WebSessionCard(
            id=row.id, device=describe(row.user_agent), ip=row.ip, created_at=row.created_at,
            last_seen_at=row.last_seen_at, is_current=row.id == current_session_id,
            via=subs.get(row.identity_id) if row.identity_id else None,
            apps=tuple(apps.get(row.id, ())),
        )
        for row in live
    ]
    return sorted(cards, key=lambda c: not c.is_current)


def _live_web_sessions(user_id: str) -> Select:
    """The user's unrevoked web sessions (idle ones are dropped by `sessions.is_alive`)."""
    return select(WebSession).where(WebSession.user_id == user_id,
                                    WebSession.revoked_at.is_(None))


def _live_app_sessions(user_id: str) -> Select:
    """The user's live native-app refresh-token families."""
    now = now_utc()
    idle = timedelta(seconds=current_app.config["REFRESH_TOKEN_IDLE_TTL"])
    return (
        select(TokenFamily)
        .join(Client, Client.id == TokenFamily.client_id)
        .where(
            TokenFamily.user_id == user_id,
            Client.kind == NATIVE,  # web apps are listed under Connected apps
            TokenFamily.revoked_at.is_(None),
            TokenFamily.expires_at > now,
            TokenFamily.last_used_at > now - idle,
        )
    )


def app_sessions(user_id: str) -> list[AppSessionCard]:
    """The user's live refresh-token families (app sessions), the SESSIONS_SHOWN most recently
    used."""
    rows = db.session.scalars(
        _live_app_sessions(user_id)
        .options(joinedload(TokenFamily.client))
        .order_by(TokenFamily.last_used_at.desc())
        .limit(SESSIONS_SHOWN)
    ).all()
    return [
        AppSessionCard(
            id=row.id, client_name=row.client.name,
            scopes=[SCOPE_NAMES.get(s, s) for s in row.scope.split()],
            created_at=row.created_at, last_used_at=row.last_used_at, ip=row.ip,
            device=describe(row.user_agent),
        )
        for row in rows
    ]


def _apps_by_session(session_ids: list[str]) -> dict[str, list[str]]:
    """Names of the web apps each session signed in to, in the order they did."""
    if not session_ids:
        return {}
    rows = db.session.execute(
        select(TokenFamily.web_session_id, Client.name)
        .join(Client, Client.id == TokenFamily.client_id)
        .where(TokenFamily.web_session_id.in_(session_ids))
        .group_by(TokenFamily.web_session_id, Client.name)
        .order_by(func.min(TokenFamily.created_at))
        .limit(DISTINCT_SHOWN)
    ).all()
    found: dict[str, list[str]] = {}
    for session_id, name in rows:
        names = found.setdefault(session_id, [])
        if name not in names:
            names.append(name)
    return found


def connected_apps(user_id: str) -> list[ConnectedAppCard]:
    """Web apps the user allowed (consent) or is signed in to, most recently used first."""
    now = now_utc()
    live = and_(TokenFamily.revoked_at.is_(None), TokenFamily.expires_at > now)
    families = db.session.execute(
        select(TokenFamily.client_id, func.min(TokenFamily.created_at),
               func.max(TokenFamily.last_used_at),
               func.sum(case((live, 1), else_=0)))
        .join(Client, Client.id == TokenFamily.client_id)
        .where(TokenFamily.user_id == user_id, Client.kind == WEB)
        .group_by(TokenFamily.client_id)
    ).all()
    use = {cid: (first, last, int(n or 0)) for cid, first, last, n in families}
    granted = {row.client_id: row for row in db.session.scalars(
        select(Consent).where(Consent.user_id == user_id))}
    wanted = {cid for cid, (_, _, n) in use.items() if n} | set(granted)
    if not wanted:
        return []
    clients_by_id = {c.id: c for c in db.session.scalars(
        select(Client).where(Client.id.in_(wanted)))}
    cards = []
    for client_id in wanted:
        client, consent = clients_by_id.get(client_id), granted.get(client_id)
        if client is None:
            continue
        first, last, count = use.get(client_id, (None, None, 0))
        scope = consent.scope if consent else " ".join(sorted(_family_scopes(user_id, client_id)))
        firsts = [t for t in (first, consent.created_at if consent else None) if t]
        lasts = [t for t in (last, consent.updated_at if consent else None) if t]
        cards.append(ConnectedAppCard(
            client_id=client_id, name=client.name,
            scopes=[SCOPE_NAMES.get(s, s) for s in scope.split()],
            first_used=min(firsts), last_used=max(lasts), signed_in=count))
    return sorted(cards, key=lambda c: c.last_used, reverse=True)


def _family_scopes(user_id: str, client_id: str) -> set[str]:
    rows = db.session.scalars(select(TokenFamily.scope).where(
        TokenFamily.user_id == user_id, TokenFamily.client_id == client_id)
        .distinct().limit(DISTINCT_SHOWN)).all()
    return {s for scope in rows for s in scope.split()}


def activity_page(user_id: str, page: int) -> ActivityPage:
    """One page of the user's activity, newest first (renewals summarised, see `_timeline`)."""
    timeline = _timeline(user_id)
    total = db.session.scalar(select(func.count()).select_from(timeline)) or 0
    pages = max(1, -(-total // ACTIVITY_PER_PAGE))
    page = min(max(page, 1), pages)
    items = _activity_rows(user_id, (page - 1) * ACTIVITY_PER_PAGE, ACTIVITY_PER_PAGE)
    return ActivityPage(items=items, page=page, pages=pages, total=total)


def _timeline(user_id: str) -> Subquery:
    """The user's activity as (id, at, renewals) lines: one per event, except token renewals.

    An app renews its tokens every few minutes; one line each would bury the sign-ins and
    revocations a person looks for. Successful renewals are summed up per app session (token
    family) and UTC day instead, as the line of the day's last renewal. Refused renewals stay
    lines of their own. Both halves read only this user's rows (the user_id index), which
    `flask prune` bounds to AUDIT_RETENTION_DAYS.
    """
    mine = AuditEvent.user_id == user_id
    renewal = and_(AuditEvent.event == RENEWAL, AuditEvent.outcome == "success")
    single = select(AuditEvent.id.label("id"), AuditEvent.created_at.label("at"),
                    literal(0).label("renewals")).where(mine, not_(renewal))
    family = AuditEvent.details["family_id"].as_string()
    summed = (
        select(func.max(AuditEvent.id).label("id"), func.max(AuditEvent.created_at).label("at"),
               func.count().label("renewals"))
        .where(mine, renewal)
        .group_by(AuditEvent.client_id, family, func.date(AuditEvent.created_at))
    )
    return union_all(single, summed).subquery("timeline")


def _activity_rows(user_id: str, offset: int, limit: int) -> list[ActivityItem]:
    timeline = _timeline(user_id)
    lines = db.session.execute(
        select(timeline.c.id, timeline.c.renewals)
        .order_by(timeline.c.at.desc(), timeline.c.id.desc())
        .offset(offset)
        .limit(limit)
    ).all()
    by_id = {row.id: row for row in db.session.scalars(
        select(AuditEvent).where(AuditEvent.id.in_([line.id for line in lines])))}
    rows = [(by_id[line.id], line.renewals) for line in lines if line.id in by_id]
    names = _client_names([r.client_id for r, _ in rows if r.client_id])
    services_id = current_app.config["APPLE_SERVICES_ID"]
    items = []
    for row, renewals in rows:
        client = ("This website" if row.client_id == services_id
                  else names.get(row.client_id or "", row.client_id))
        items.append(ActivityItem(
            at=row.created_at,
            title=_renewals_title(client, renewals) if renewals else _title(row),
            failed=row.outcome != "success",
            reason=row.reason if row.outcome != "success" else None,
            client=client,
            ip=row.ip,
            device=BY_SUPPORT if row.event.startswith("operator_") else describe(row.user_agent),
            renewals=renewals,
        ))
    return items


def _renewals_title(client: str | None, renewals: int) -> str:
    where = f" on {client}" if client else ""
    return f"Kept signed in{where} — {renewals} renewal{'' if renewals == 1 else 's'}"


def _title(row: AuditEvent) -> str:
    purpose = (row.details or {}).get("purpose") if row.event == "web_login" else None
    if purpose == "reauth":
        return "Signed in again to confirm it was you"
    if purpose == "link":
        return "Tried to link an Apple Account"
    if row.event == "operator_sign_out":
        ended = tuple(k for k in ("web_sessions", "app_sessions") if k in (row.details or {}))
        if ended in OPERATOR_SIGN_OUTS:
            return OPERATOR_SIGN_OUTS[ended]
    return EVENT_TITLES.get(row.event, row.event.replace("_", " ").capitalize())


def ago(moment: datetime | None) -> str:
    """Return "just now", "5 minutes ago", "yesterday" or a date, for a UTC timestamp."""
    if moment is None:
        return "never"
    seconds = (now_utc() - moment).total_seconds()
    if seconds < 60:
        return "just now"
    for unit, size in (("minute", 60), ("hour", 3600), ("day", 86400)):
        nxt = {"minute": 3600, "hour": 86400, "day": 30 * 86400}[unit]
        if seconds < nxt:
            n = int(seconds // size)
            if unit == "day" and n == 1:
                return "yesterday"
            return f"{n} {unit}{'' if n == 1 else 's'} ago"
    return f"{moment.day} {moment:%b %Y}"


def utc(moment: datetime | None) -> str:
    """Return an exact, unambiguous timestamp for tooltips and the activity log."""
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else ""


def init_app(app: Flask) -> None:
    app.add_template_filter(ago, "ago")
    app.add_template_filter(utc, "utc")
