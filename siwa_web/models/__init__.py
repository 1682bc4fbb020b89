"""The database tables, as plain SQLAlchemy models every package shares (Flask-free)."""
from .audit import AuditEvent
from .notification import NotificationEvent
from .oauth import AuthorizationCode
from .oauth import BackchannelLogout
from .oauth import Client
from .oauth import Consent
from .oauth import PendingAuthorization
from .oauth import RefreshToken
from .oauth import SigningKey
from .oauth import TokenFamily
from .session import LoginTransaction
from .session import WebSession
from .user import AppleIdentity
from .user import AppleRevocation
from .user import AppleToken
from .user import PendingProfile
from .user import User

__all__ = [
    "AppleIdentity",
    "AppleRevocation",
    "AppleToken",
    "AuditEvent",
    "AuthorizationCode",
    "BackchannelLogout",
    "Client",
    "Consent",
    "LoginTransaction",
    "NotificationEvent",
    "PendingAuthorization",
    "PendingProfile",
    "RefreshToken",
    "SigningKey",
    "TokenFamily",
    "User",
    "WebSession",
]
