"""Apple's identity-token signing keys: RSA-2048, short kids, one current signer, rotatable."""
from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import RSAKey

KID_ALPHABET = string.ascii_letters + string.digits
KID_LENGTH = 7  # like Apple's "W6WcOKB" and "86D88Kf"
INITIAL_KEYS = 2


def new_kid() -> str:
    """A short random key id; RPs must select keys by kid, never by position."""
    return "".join(secrets.choice(KID_ALPHABET) for _ in range(KID_LENGTH))


@dataclass
class SigningKey:
    kid: str
    key: RSAKey


class KeyRing:
    """Published keys, oldest first; the newest one signs."""

    def __init__(self, count: int = INITIAL_KEYS) -> None:
        self.keys: list[SigningKey] = []
        for _ in range(max(1, count)):
            self.add()

    @classmethod
    def restore(cls, private_jwks: list[dict[str, Any]]) -> KeyRing:
        """The ring saved by `private_jwks()`, oldest first (the last one signs)."""
        ring = cls.__new__(cls)
        ring.keys = [SigningKey(k["kid"], RSAKey.import_key(k)) for k in private_jwks]
        return ring

    def private_jwks(self) -> list[dict[str, Any]]:
        """Every key with its private part, oldest first: only for the emulator's state file."""
        return [item.key.as_dict(private=True) for item in self.keys]

    @property
    def signer(self) -> SigningKey:
        return self.keys[-1]

    def add(self) -> SigningKey:
        """Generate a key and make it the signer (rotation step one)."""
        kid = new_kid()
        while any(k.kid == kid for k in self.keys):
            kid = new_kid()
        params = {"kid": kid, "use": "sig", "alg": "RS256"}
        key = SigningKey(kid, RSAKey.generate_key(2048, parameters=params))
        self.keys.append(key)
        return key

    def drop_oldest(self) -> str | None:
        """Unpublish the oldest key (rotation step two); the signer always stays."""
        if len(self.keys) < 2:
            return None
        return self.keys.pop(0).kid

    def jwks(self) -> dict[str, Any]:
        """The `/auth/keys` document: public parts only, in Apple's field order."""
        out = []
        for item in self.keys:
            pub = item.key.as_dict(private=False)
            out.append({"kty": "RSA", "kid": item.kid, "use": "sig", "alg": "RS256",
                        "n": pub["n"], "e": pub["e"]})
        return {"keys": out}
