"""The AWS credentials the agent signs with when it does not leave them to botocore's chain.

An on-premises host's credentials (docs/behaviour.md section 3): an IAM user's fixed keys
from the on-premises file, or an IAM session's keys and token from the shared-credentials
file it names, which a rotation job rewrites and which is read again whenever it changes,
so a rotation needs no restart. The file itself is configuration
(:mod:`agent.configuration.on_premises`); turning it into botocore credentials is client
code, here. Whatever the credentials, one provider hands them to a client's session, so
refreshable ones keep refreshing. Key values never reach a log line, an error message or
a ``repr``.
"""

from __future__ import annotations

import configparser
import os
import threading
from pathlib import Path
from typing import Dict, Optional, Tuple

import structlog
from botocore.credentials import (  # type: ignore[import-untyped, unused-ignore]
    Credentials,
    ReadOnlyCredentials,
)

from agent.configuration.on_premises import (
    OnPremisesConfig,
    OnPremisesConfigError,
    read_text_from_disk,
)

log = structlog.get_logger(__name__)

# How botocore names where credentials came from (``Credentials.method``).
IAM_USER_METHOD = "codedeploy-onpremises-iam-user"
CREDENTIALS_FILE_METHOD = "codedeploy-onpremises-credentials-file"
CREDENTIALS_PROFILE = "default"


class GivenCredentialsProvider:
    """A credential provider for botocore's resolver that hands out the caller's credentials.

    Passing the object itself (rather than its keys) keeps refreshable credentials
    refreshing.
    """

    METHOD = "codedeploy-agent"
    CANONICAL_NAME = "codedeploy-agent"

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    def load(self) -> Credentials:
        return self._credentials


def read_credentials_file(path: Path) -> ReadOnlyCredentials:
    """The ``default`` profile of a shared-credentials file (keys and session token)."""
    text = read_text_from_disk(path, "credentials file")
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as error:
        # configparser quotes the offending line, which may hold a key: give only where.
        line = getattr(error, "lineno", None)
        where = f" (line {line})" if line else ""
        raise OnPremisesConfigError(
            f"credentials file {path} is not in the shared credentials format{where}"
        ) from None
    if not parser.has_section(CREDENTIALS_PROFILE):
        raise OnPremisesConfigError(
            f"credentials file {path} has no [{CREDENTIALS_PROFILE}] profile"
        )
    profile = parser[CREDENTIALS_PROFILE]
    found: Dict[str, str] = {}
    for key in ("aws_access_key_id", "aws_secret_access_key"):
        value = profile.get(key, "").strip()
        if not value:
            raise OnPremisesConfigError(
                f"credentials file {path} has no {key} in profile [{CREDENTIALS_PROFILE}]"
            )
        found[key] = value
    # aws_security_token is the older name the SDKs still read.
    token = (profile.get("aws_session_token") or profile.get("aws_security_token") or "").strip()
    return ReadOnlyCredentials(
        found["aws_access_key_id"], found["aws_secret_access_key"], token or None, None
    )


_FileStamp = Tuple[int, int, int]


class ReloadingFileCredentials(Credentials):  # type: ignore[misc, unused-ignore]
    """botocore credentials that read a shared-credentials file again whenever it changes.

    botocore takes the keys through :meth:`get_frozen_credentials` each time it signs a
    request; that is where the file's identity, size and modification time are compared
    with those of the last read. A file that has become unreadable or malformed is an
    error there (the request is not sent), and the next request tries the file again.
    """

    def __init__(self, path: Path) -> None:
        # The parent's __init__ stores fixed keys as attributes; here they are properties
        # backed by the file, so only what the parent keeps besides them is set.
        self.method = CREDENTIALS_FILE_METHOD
        self.path = path
        self._lock = threading.Lock()
        self._stamp, self._current = self._read_file()

    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        with self._lock:
            stamp = self._stamp_of_file()
            if stamp != self._stamp:
                self._stamp, self._current = self._read_file()
                log.info("on-premises credentials file changed; read it again", file=str(self.path))
            return self._current

    @property
    def access_key(self) -> str:
        return str(self.get_frozen_credentials().access_key)

    @property
    def secret_key(self) -> str:
        return str(self.get_frozen_credentials().secret_key)

    @property
    def token(self) -> Optional[str]:
        token = self.get_frozen_credentials().token
        return None if token is None else str(token)

    @property
    def account_id(self) -> Optional[str]:
        return None

    def __repr__(self) -> str:
        return f"ReloadingFileCredentials({str(self.path)!r})"

    def _read_file(self) -> Tuple[_FileStamp, ReadOnlyCredentials]:
        # The stamp is taken before the read, so a change during the read is seen next time.
        stamp = self._stamp_of_file()
        return stamp, read_credentials_file(self.path)

    def _stamp_of_file(self) -> _FileStamp:
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            raise OnPremisesConfigError(f"credentials file {self.path} does not exist") from None
        except OSError as error:
            raise OnPremisesConfigError(
                f"credentials file {self.path} cannot be read: {error.strerror}"
            ) from None
        return (status.st_ino, status.st_size, status.st_mtime_ns)


def credentials_for(on_premises: OnPremisesConfig) -> Credentials:
    """botocore credentials for the on-premises host; reads the credentials file if named.

    An IAM user gets fixed keys from the on-premises file; an IAM session gets
    :class:`ReloadingFileCredentials` over its credentials file.
    """
    if on_premises.aws_credentials_file is not None:
        credentials = ReloadingFileCredentials(on_premises.aws_credentials_file)
    else:
        credentials = Credentials(
            on_premises.aws_access_key_id,
            on_premises.aws_secret_access_key,
            None,
            method=IAM_USER_METHOD,
        )
    log.info(
        "using on-premises AWS access keys",
        identity=on_premises.host_identifier,
        source=on_premises.credential_source,
    )
    return credentials
