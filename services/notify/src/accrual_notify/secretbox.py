"""Webhook signing secrets at rest: encrypted with the key from ``SECRETS_KEY``.

Fernet (AES-128-CBC with an HMAC-SHA256, from ``cryptography``) authenticates what it
decrypts, so a wrong key is told apart from a good one instead of yielding garbage that
would sign every webhook wrongly. ``MultiFernet`` takes several keys: the first encrypts,
every one decrypts, so an operator rotates by putting the new key first and keeping the
old one until every row is re-encrypted (notify re-encrypts them at start).

Rows written before encryption at rest hold the secret itself (``whsec_…``; a Fernet token
always starts with ``gAAAAA``); they are read as they are and encrypted when notify starts.
"""

from __future__ import annotations

from collections.abc import Sequence

from accrual_platform.settings import ConfigError
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from accrual_notify.domain.signing import SECRET_PREFIX

GENERATE_HINT = ("generate one with: python -c 'from cryptography.fernet import Fernet; "
                 "print(Fernet.generate_key().decode())'")


class WrongSecretsKey(ConfigError):
    """A stored secret does not open with any key of SECRETS_KEY."""


class SecretBox:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ConfigError(f"SECRETS_KEY is not set: the key that encrypts webhook signing "
                              f"secrets at rest; {GENERATE_HINT}")
        try:
            fernets = [Fernet(key.encode()) for key in keys]
        except ValueError:  # binascii.Error is one too
            raise ConfigError(f"SECRETS_KEY must be 32 url-safe base64-encoded bytes (several "
                              f"comma-separated to rotate: the first encrypts); {GENERATE_HINT}"
                              ) from None
        self._primary = fernets[0]
        self._fernet = MultiFernet(fernets)

    @staticmethod
    def is_plain(stored: str) -> bool:
        return stored.startswith(SECRET_PREFIX)

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, stored: str) -> str:
        if self.is_plain(stored):
            return stored
        try:
            return self._fernet.decrypt(stored.encode()).decode()
        except InvalidToken:
            raise WrongSecretsKey(
                "SECRETS_KEY does not decrypt the stored webhook signing secrets: it is not the "
                "key they were encrypted with (to change keys, list the new one first and keep "
                "the old one after it: SECRETS_KEY=new,old)") from None

    def needs_reseal(self, stored: str) -> bool:
        """Whether the stored value is plain text or under another key than the first one;
        raises WrongSecretsKey when no key opens it."""
        if self.is_plain(stored):
            return True
        try:
            self._primary.decrypt(stored.encode())
            return False
        except InvalidToken:
            self.open(stored)
            return True

    def reseal(self, stored: str) -> str:
        """The stored value encrypted with the first key."""
        return self.seal(self.open(stored))
