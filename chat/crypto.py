"""Encryption of what yiweb must keep secret at rest: the API keys people save.

The only importer of `cryptography`. Fernet (AES-128-CBC with an HMAC-SHA256, a timestamp
and a version, as one URL-safe token) through MultiFernet, so the encryption key can be
rotated: settings.ENCRYPTION_KEYS lists the keys newest first; the first encrypts, every
one decrypts, and `secret_reencrypt` (run over every stored key by `manage.py
keys_reencrypt`) moves a token to the first key. With no ENCRYPTION_KEYS, development
derives a key from SECRET_KEY and says so once (yiweb/settings.py: production makes one
beside a SQLite database or refuses to start).
"""

from __future__ import annotations

import base64
import functools
import logging

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)


class SecretUnreadable(Exception):
    """A stored token that none of the configured keys opens (the key it was made with is
    gone from ENCRYPTION_KEYS, or the row was altered)."""


def _derived_key() -> bytes:
    # HKDF, not the secret key itself: the Fernet key must not double as the session
    # signing key, and a salt of its own keeps it apart from any other derivation.
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"yiweb api keys", info=b"fernet").derive(
        settings.SECRET_KEY.encode()
    )
    return base64.urlsafe_b64encode(derived)


@functools.cache
def _fernet() -> MultiFernet:
    keys = list(settings.ENCRYPTION_KEYS)
    if not keys:
        logger.warning(
            "ENCRYPTION_KEYS is not set: saved API keys are encrypted with a key derived from SECRET_KEY "
            "(development only; set ENCRYPTION_KEYS in production)."
        )
        keys = [_derived_key()]
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except (ValueError, TypeError):
        raise ImproperlyConfigured(
            "ENCRYPTION_KEYS holds a value that is not a Fernet key (32 bytes, URL-safe base64: 44 characters)."
        ) from None


def encryption_keys_changed() -> None:
    """Forget the keys read from settings (tests change them)."""
    _fernet.cache_clear()


def encryption_check() -> None:
    """Raise ImproperlyConfigured now if ENCRYPTION_KEYS is unusable (at start, not at the first save)."""
    _fernet()


def secret_encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode("ascii")


def secret_decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeError):
        raise SecretUnreadable("none of the configured ENCRYPTION_KEYS opens this stored key") from None


def secret_reencrypt(token: str) -> str:
    """`token` encrypted under the first key (unchanged in meaning; a new token)."""
    try:
        return _fernet().rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError):
        raise SecretUnreadable("none of the configured ENCRYPTION_KEYS opens this stored key") from None
