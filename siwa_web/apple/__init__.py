"""Apple's REST API client, Flask-free: client secrets, code exchange, keys, identity tokens."""
from __future__ import annotations

from .claims import AppleClaims
from .claims import AppleTokens
from .client import AppleClient
from .client_secret import ClientSecretFactory
from .errors import AppleError
from .errors import AppleMisconfigured
from .errors import AppleRejected
from .errors import AppleUnavailable
from .errors import InvalidIdentityToken
from .id_token import verify_apple_jws
from .id_token import verify_identity_token
from .jwks import AppleKeySet
from .settings import AppleSettings

__all__ = [
    "AppleClaims",
    "AppleClient",
    "AppleError",
    "AppleKeySet",
    "AppleMisconfigured",
    "AppleRejected",
    "AppleSettings",
    "AppleTokens",
    "AppleUnavailable",
    "ClientSecretFactory",
    "InvalidIdentityToken",
    "verify_apple_jws",
    "verify_identity_token",
]
