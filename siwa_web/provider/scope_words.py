"""What each scope lets an app do, in the words the consent page uses."""
from __future__ import annotations

from ..oauth import clients
from ..oauth import scopes

WORDS = {
    scopes.OPENID: "Know that it is you, by an account id made for siwa-web",
    scopes.PROFILE: "See your name",
    scopes.EMAIL: "See your email address (or the private relay address you chose)",
    scopes.OFFLINE_ACCESS: "Stay signed in to it until you disconnect it, even when you are away",
}


def describe(requested: tuple[str, ...], client: clients.ActiveClient) -> list[str]:
    """One plain sentence per scope, in the order asked; API scopes name what they are."""
    return [WORDS.get(scope, f"Use “{scope}” on your behalf") for scope in requested]
