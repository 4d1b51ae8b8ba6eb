"""Secrets kept at rest (step-up seeds), sealed with AES-GCM under `BILLING_SECRET_KEY`.

    sealed text = "v1." + URL-safe base64( nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes) )

AES-GCM with a 256-bit key (NIST SP 800-38D) through `cryptography`'s `AESGCM`, a fresh random
96-bit nonce per seal. The associated data is the owner's id, so a sealed value copied onto
another person's row does not open. A `Keyring` seals with the current key and opens with it or,
while `billing-bot keys rotate` runs, with the previous one (`BILLING_SECRET_KEY_PREVIOUS`).
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12  # the nonce length NIST SP 800-38D recommends for AES-GCM
VERSION = "v1."
KEY_HINT = "must be the base64 of 32 random bytes (make one with `openssl rand -base64 32`)"


class Unreadable(Exception):
    """A sealed value that no key of the ring opens (wrong key, or the value was changed)."""


def key_bytes(text: str) -> bytes:
    """A key as configured: base64 (standard or URL-safe, as Fernet writes it) of 32 bytes.
    Text is UTF-8 throughout (`str.encode`'s default).
    ValueError's message never quotes the value."""
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        # Padding may be left off (extra is read), and characters outside the alphabet, such as
        # spaces and line ends, are skipped; binascii.Error is a ValueError.
        try:
            raw = decode(text.encode() + b"==")
        except ValueError:
            continue
        if len(raw) == KEY_BYTES:
            return raw
    raise ValueError(KEY_HINT)


class Keyring:
    """Seals with `current`; opens with `current`, then `previous` (a rotation under way)."""

    def __init__(self, current: bytes, previous: bytes | None = None) -> None:
        self.current = AESGCM(current)
        self.keys = [self.current, *([AESGCM(previous)] if previous is not None else [])]

    def seal(self, plain: str, owner: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self.current.encrypt(nonce, plain.encode(), owner.encode())
        return VERSION + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, sealed: str, owner: str) -> str:
        if not sealed.startswith(VERSION):
            raise Unreadable("not a sealed value")
        try:
            raw = base64.urlsafe_b64decode(sealed.removeprefix(VERSION).encode())
        except ValueError:
            raise Unreadable("not a sealed value") from None
        nonce, body = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
        for key in self.keys:
            try:
                return key.decrypt(nonce, body, owner.encode()).decode()
            except (InvalidTag, ValueError):  # ValueError: too short to hold a nonce
                continue
        raise Unreadable("no configured key opens it")

    def reseal(self, sealed: str, owner: str) -> str:
        """Sealed again under the current key (a rotation)."""
        return self.seal(self.open(sealed, owner), owner)
