"""The protocol core of siwa-web's own OAuth 2.0 / OpenID Connect token service, Flask-free.

* `server.AuthorizationServer` — grant dispatch, revocation, Bearer authentication
* `grants` — token exchange (native Sign in with Apple) and refresh_token, one file each
* `tokens` — our JWTs; `keys` — our signing keys; `refresh` — refresh-token families
* `clients`, `scopes`, `errors` — the registry, scope rules and protocol errors
* `profile` — who a token is about; `liveness` — the Bearer check's session cache
* `collaborators` — what the app hands the core: a database session, users, an audit log
"""
from .config import TokenSettings
from .server import AuthorizationServer
from .server import Principal

__all__ = ["AuthorizationServer", "Principal", "TokenSettings"]
