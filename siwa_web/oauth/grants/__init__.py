"""Grant types of the token endpoint, one class each, registered by `grant_type`."""
from .authorization_code import AuthorizationCodeGrant
from .base import BaseGrant
from .refresh_token import RefreshTokenGrant
from .token_exchange import TokenExchangeGrant

__all__ = ["AuthorizationCodeGrant", "BaseGrant", "RefreshTokenGrant", "TokenExchangeGrant"]
