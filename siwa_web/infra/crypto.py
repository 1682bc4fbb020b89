"""Hashing of our tokens and encryption of Apple's, in one place."""
from __future__ import annotations

import base64
import hashlib
import secrets

from cryptography.fernet import Fernet
from cryptography.fernet import InvalidToken
from cryptography.fernet import MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def new_token(nbytes: int = 32) -> str:
    """Return a random URL-safe token with `nbytes` of entropy."""
    return secrets.token_urlsafe(nbytes)


def token_hash(token: str) -> str:
    """Return the SHA-256 hex digest we store and look tokens up by (no timing oracle)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def fingerprint(value: str) -> str:
    """Return a short, non-reversible tag that may appear in logs instead of a secret."""
    return token_hash(value)[:8]


def derive_fernet_key(secret: str, purpose: str) -> str:
    """Derive a Fernet key from SECRET_KEY when no dedicated key is configured (development)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode())
    return base64.urlsafe_b64encode(hkdf.derive(secret.encode())).decode()


class TokenCipher:
    """Encrypt secrets at rest; the first key encrypts, every key decrypts (rotation)."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is required")
        self._fernet = MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in keys])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        """Return the plaintext; raises ValueError if no key opens it."""
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("ciphertext cannot be decrypted with the configured keys") from exc
