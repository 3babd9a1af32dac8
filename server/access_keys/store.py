"""Access keys in the database: issued, looked up, listed and revoked.

Two kinds. An *operator* key may call the CodeDeploy API (what ``aws deploy`` calls); a
*host* key belongs to one on-premises instance name and may call only the command service,
as that host. Each key has the shape of an AWS key pair (an id of 20 upper-case letters
and digits, a 40-character secret) so that every SigV4 client takes it. A revoked key
stays listed, marked revoked, and is never accepted again. The secret is returned once,
when the key is made, and otherwise only opened in memory to check a signature.
"""

from __future__ import annotations

import enum
import re
import secrets
import string
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from server.access_keys.master_key import MasterKey
from server.access_keys.sealing import open_secret, seal_secret
from server.database.schema import access_keys
from server.errors import ServerError

ACCESS_KEY_PREFIX = "CDSK"
_ID_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"
_NAME = re.compile(r"^[A-Za-z0-9+=,.@_-]{1,100}$")
_ACCESS_KEY_ID = re.compile(r"^[A-Z0-9]{16,32}$")


class AccessKeyError(ServerError):
    """An admin command on keys cannot be carried out."""


class KeyKind(str, enum.Enum):
    OPERATOR = "operator"
    HOST = "host"


@dataclass(frozen=True)
class AccessKey:
    """A key as listed: never its secret."""

    access_key_id: str
    kind: KeyKind
    name: str
    created_at: float
    revoked_at: Optional[float]


@dataclass(frozen=True)
class IssuedKey:
    """A key just made, with its secret, shown once to the operator who asked."""

    key: AccessKey
    secret_access_key: str = field(repr=False)


@dataclass(frozen=True)
class ActiveKey:
    """A key that may sign requests now, with its secret opened (kept out of any repr)."""

    key: AccessKey
    secret_access_key: str = field(repr=False)


def check_key_name(kind: KeyKind, name: str) -> str:
    """The name of an operator, or the instance name of a host: CodeDeploy's characters."""
    if not _NAME.match(name):
        what = "operator name" if kind is KeyKind.OPERATOR else "instance name"
        raise AccessKeyError(
            f"{what} {name[:120]!r} must be 1 to 100 letters, digits or +=,.@_- characters"
        )
    return name


def _row_to_key(row: sa.Row[tuple[object, ...]]) -> AccessKey:
    mapping = row._mapping
    return AccessKey(
        access_key_id=str(mapping["access_key_id"]),
        kind=KeyKind(mapping["kind"]),
        name=str(mapping["name"]),
        created_at=float(mapping["created_at"]),
        revoked_at=None if mapping["revoked_at"] is None else float(mapping["revoked_at"]),
    )


def issue_access_key(
    connection: Connection, master: MasterKey, kind: KeyKind, name: str, now: float
) -> IssuedKey:
    """Make a key of ``kind`` for ``name`` and store it with its secret sealed."""
    check_key_name(kind, name)
    access_key_id = ACCESS_KEY_PREFIX + "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))
    connection.execute(
        access_keys.insert().values(
            access_key_id=access_key_id,
            kind=kind.value,
            name=name,
            sealed_secret=seal_secret(master, access_key_id, secret),
            master_key_id=master.key_id,
            created_at=now,
            revoked_at=None,
        )
    )
    return IssuedKey(AccessKey(access_key_id, kind, name, now, None), secret)


def revoke_access_key(connection: Connection, access_key_id: str, now: float) -> AccessKey:
    """Revoke a key (once; revoking it again changes nothing); fails for an unknown id."""
    key = find_access_key(connection, access_key_id)
    if key is None:
        raise AccessKeyError(f"no access key {access_key_id[:40]!r} (see keys list)")
    if key.revoked_at is None:
        connection.execute(
            access_keys.update()
            .where(access_keys.c.access_key_id == key.access_key_id)
            .values(revoked_at=now)
        )
        key = AccessKey(key.access_key_id, key.kind, key.name, key.created_at, now)
    return key


def find_access_key(connection: Connection, access_key_id: str) -> Optional[AccessKey]:
    if not _ACCESS_KEY_ID.match(access_key_id):
        return None
    row = connection.execute(
        sa.select(access_keys).where(access_keys.c.access_key_id == access_key_id)
    ).first()
    return None if row is None else _row_to_key(row)


def list_access_keys(connection: Connection) -> List[AccessKey]:
    rows = connection.execute(
        sa.select(access_keys).order_by(access_keys.c.created_at, access_keys.c.access_key_id)
    )
    return [_row_to_key(row) for row in rows]


def revocations_state(connection: Connection) -> Tuple[int, Optional[float]]:
    """How many keys are revoked and when the latest was: changes with every revocation."""
    count, latest = connection.execute(
        sa.select(sa.func.count(), sa.func.max(access_keys.c.revoked_at)).where(
            access_keys.c.revoked_at.is_not(None)
        )
    ).one()
    return int(count), None if latest is None else float(latest)


def load_active_key(
    connection: Connection, master: MasterKey, access_key_id: str
) -> Optional[ActiveKey]:
    """The key with this id and its opened secret, or None when there is no such key or
    it is revoked."""
    if not _ACCESS_KEY_ID.match(access_key_id):
        return None
    row = connection.execute(
        sa.select(access_keys).where(
            access_keys.c.access_key_id == access_key_id, access_keys.c.revoked_at.is_(None)
        )
    ).first()
    if row is None:
        return None
    secret = open_secret(master, access_key_id, bytes(row._mapping["sealed_secret"]))
    return ActiveKey(_row_to_key(row), secret)
