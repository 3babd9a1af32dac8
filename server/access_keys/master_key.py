"""The master key that seals access-key secrets, kept in a file apart from the database.

SigV4 needs the secret itself on both sides, so the server cannot store a hash of it as
it would a password: it stores the secret encrypted (:mod:`server.access_keys.sealing`)
with this key. The key lives in its own file, outside the data folder (the configuration
refuses one inside it), so that a copy of the data folder or a database dump alone does
not reveal any secret. It is made at first use (32 random bytes, base64, mode 0600,
created exclusively so that two processes never make two keys) and never overwritten.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from server.errors import ServerError

MASTER_KEY_BYTES = 32


class MasterKeyError(ServerError):
    """The master key file cannot be made, read or trusted."""


@dataclass(frozen=True)
class MasterKey:
    """The key's bytes (never shown) and a short id stored beside each sealed secret."""

    key: bytes = field(repr=False)

    @property
    def key_id(self) -> str:
        return hashlib.sha256(b"codedeploy-server master key\0" + self.key).hexdigest()[:16]


def _create_master_key_on_disk(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    encoded = base64.b64encode(secrets.token_bytes(MASTER_KEY_BYTES)) + b"\n"
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process made it first: use theirs
    try:
        os.write(descriptor, encoded)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def load_or_create_master_key_on_disk(path: Path) -> MasterKey:
    """The master key in ``path``, made first when the file does not exist.

    Refused: a file that others than its owner may read or write, a file that is not
    a regular file, or one that does not hold the key.
    """
    try:
        if not path.exists():
            _create_master_key_on_disk(path)
        status = path.stat()
        if not stat.S_ISREG(status.st_mode):
            raise MasterKeyError(f"master key file {path} is not a regular file")
        if status.st_mode & 0o077:
            raise MasterKeyError(
                f"master key file {path} may be read or written by others than its owner"
                f" (mode {stat.S_IMODE(status.st_mode):04o}); make it 0600"
            )
        text = path.read_bytes()
    except OSError as error:
        raise MasterKeyError(
            f"master key file {path} cannot be used: {error.strerror or error}"
        ) from None
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != MASTER_KEY_BYTES:
        raise MasterKeyError(
            f"master key file {path} does not hold a master key ({MASTER_KEY_BYTES} bytes, base64)"
        )
    return MasterKey(key)
