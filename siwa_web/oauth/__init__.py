"""siwa-web's own OAuth 2.0 / OpenID Connect token service, free of Flask request globals.

* `server.AuthorizationServer` — grant dispatch, revocation, Bearer authentication
* `grants` — token exchange (native Sign in with Apple) and refresh_token
* `tokens` — our JWTs; `keys` — our signing keys; `refresh` — refresh-token families
* `clients`, `scopes`, `errors` — the registry, scope rules and protocol errors
"""
from .config import TokenSettings
from .server import AuthorizationServer
from .server import Principal

__all__ = ["AuthorizationServer", "Principal", "TokenSettings"]
