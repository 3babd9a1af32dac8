"""Sealing an access key's secret with the master key (AES-256-GCM).

Each secret gets a fresh 96-bit nonce, stored in front of the ciphertext; the access key
id is the associated data, so a sealed secret copied onto another key's row does not
open. A wrong master key, or a row altered by hand, fails to open with a clear error
rather than yielding a wrong secret.
"""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from server.access_keys.master_key import MasterKey
from server.errors import ServerError

NONCE_BYTES = 12


class SealingError(ServerError):
    """A sealed secret does not open with this master key."""


def seal_secret(master: MasterKey, access_key_id: str, secret: str) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = AESGCM(master.key).encrypt(nonce, secret.encode("utf-8"), access_key_id.encode())
    return nonce + sealed


def open_secret(master: MasterKey, access_key_id: str, sealed: bytes) -> str:
    nonce, ciphertext = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
    try:
        return AESGCM(master.key).decrypt(nonce, ciphertext, access_key_id.encode()).decode()
    except (InvalidTag, ValueError, UnicodeDecodeError):
        raise SealingError(
            f"the secret of access key {access_key_id} does not open with this master key"
        ) from None
