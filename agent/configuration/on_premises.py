"""The on-premises identity file (``codedeploy.onpremises.yml``) and the credentials it names.

A host outside EC2 names its identity there: ``region`` and either an IAM user
(``iam_user_arn`` with static keys in the file) or an IAM session (``iam_session_arn``
with a shared-credentials file that a rotation job rewrites). The ARN is the host
identifier. Session credentials are read again whenever that file changes, so a rotation
needs no agent restart. Keys are written as plain YAML keys or as the AWS agent's
``:symbol`` keys. Key values never reach a log line, an error message or a ``repr``.
"""

from __future__ import annotations

import configparser
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import structlog
from botocore.credentials import (  # type: ignore[import-untyped, unused-ignore]
    CredentialProvider,
    Credentials,
    ReadOnlyCredentials,
)

from agent.configuration.keys import ConfigKey, declared_keys, required_setting, setting
from agent.configuration.loader import load_symbol_keyed_mapping
from agent.configuration.model import ConfigError

log = structlog.get_logger(__name__)

IAM_USER = "iam-user"
IAM_SESSION = "iam-session"

# How botocore names where credentials came from (``Credentials.method``).
IAM_USER_METHOD = "codedeploy-onpremises-iam-user"
CREDENTIALS_FILE_METHOD = "codedeploy-onpremises-credentials-file"
CREDENTIALS_PROFILE = "default"

_ARN = re.compile(r"^arn:[a-z0-9-]+:[a-z0-9-]+:[a-z0-9-]*:[0-9]*:\S+$")
_REGION = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)+$")


class OnPremisesConfigError(ConfigError):
    """The on-premises file, or the credentials file it names, is missing or invalid."""


def _as_region(key: str, text: str) -> str:
    if not _REGION.match(text):
        raise ConfigError(f"{key} {text[:64]!r} is not a region name")
    return text


def _as_arn(key: str, text: str) -> str:
    if not _ARN.match(text):
        raise ConfigError(f"{key} {text[:200]!r} is not an ARN")
    return text


def _as_given(key: str, text: str) -> str:
    return text


def _as_absolute_path(key: str, text: str) -> Path:
    # A NUL would only fail later, at each read, with an exception no one catches.
    if not Path(text).is_absolute() or "\0" in text:
        raise ConfigError(f"{key} must be an absolute path, not {text[:200]!r}")
    return Path(text)


@dataclass(frozen=True)
class OnPremisesConfig:
    """A validated on-premises file: an IAM user with keys, or an IAM session with a file.

    Each key of the file is declared here once (see :mod:`agent.configuration.keys`).
    """

    source: Path
    region: str = required_setting(_as_region, "the region the host is registered in")
    iam_user_arn: Optional[str] = setting(
        None,
        _as_arn,
        "the IAM user the host is registered with; the ARN is the host's identifier",
        shown_default="this or `iam_session_arn`",
    )
    aws_access_key_id: Optional[str] = setting(
        None, _as_given, "the IAM user's access key", needed_with="iam_user_arn"
    )
    aws_secret_access_key: Optional[str] = setting(
        None,
        _as_given,
        "the IAM user's secret key (never logged)",
        needed_with="iam_user_arn",
        secret=True,
    )
    iam_session_arn: Optional[str] = setting(
        None,
        _as_arn,
        "the IAM session the host is registered with; the ARN is the host's identifier",
        shown_default="this or `iam_user_arn`",
    )
    aws_credentials_file: Optional[Path] = setting(
        None,
        _as_absolute_path,
        "the shared-credentials file of the session, whose `[default]` profile is read again"
        " whenever the file changes",
        needed_with="iam_session_arn",
    )

    @property
    def kind(self) -> str:
        """``iam-user`` or ``iam-session``."""
        return IAM_USER if self.iam_user_arn is not None else IAM_SESSION

    @property
    def host_identifier(self) -> str:
        return str(self.iam_user_arn or self.iam_session_arn)

    @property
    def credential_source(self) -> str:
        """Where the credentials come from, in words fit for a log line."""
        if self.kind == IAM_USER:
            return f"IAM user keys in {self.source}"
        return f"IAM session credentials file {self.aws_credentials_file}"


ON_PREMISES_KEYS: Tuple[ConfigKey, ...] = declared_keys(OnPremisesConfig)


def read_on_premises_config(path: Path) -> OnPremisesConfig:
    """Read and validate the on-premises file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OnPremisesConfigError(f"on-premises file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else "not UTF-8"
        raise OnPremisesConfigError(f"on-premises file {path} cannot be read: {reason}") from None
    return parse_on_premises_config(text, source=path)


def parse_on_premises_config(text: str, *, source: Path) -> OnPremisesConfig:
    """Validate the YAML text of an on-premises file; ``source`` names it in errors."""
    document = _load_mapping(text, source)
    has_user = "iam_user_arn" in document
    has_session = "iam_session_arn" in document
    if has_user and has_session:
        raise OnPremisesConfigError(
            f"on-premises file {source} names both iam_user_arn and iam_session_arn; keep one"
        )
    if not has_user and not has_session:
        raise OnPremisesConfigError(
            f"on-premises file {source} names neither iam_user_arn nor iam_session_arn"
        )
    known = {key.name for key in ON_PREMISES_KEYS}
    for unknown in sorted(set(document) - known):
        log.warning("unknown on-premises key is ignored", file=str(source), key=unknown)

    arn_key = "iam_user_arn" if has_user else "iam_session_arn"
    needed = [
        key for key in ON_PREMISES_KEYS if key.required or arn_key in (key.name, key.needed_with)
    ]
    texts = {key.name: _text(document, key.name, source, arn_key) for key in needed}
    values: Dict[str, Any] = {}
    for key in needed:
        try:
            values[key.name] = key.convert(key.name, texts[key.name])
        except ConfigError as error:
            raise OnPremisesConfigError(f"on-premises file {source}: {error.message}") from None
    return OnPremisesConfig(source=source, **values)


def _load_mapping(text: str, source: Path) -> Dict[str, Any]:
    return load_symbol_keyed_mapping(
        text, f"on-premises file {source}", OnPremisesConfigError, allow_empty=False
    )


def _text(document: Dict[str, Any], key: str, source: Path, arn_key: str) -> str:
    value = document.get(key)
    if value is not None and not isinstance(value, str):
        # The value is not quoted here: it may be a secret that YAML read as a number.
        raise OnPremisesConfigError(
            f"on-premises file {source}: {key} must be text (quote it in the file)"
        )
    if value is None or not value.strip():
        needed_by = "" if key in ("region", arn_key) else f", which {arn_key} needs"
        raise OnPremisesConfigError(f"on-premises file {source} lacks {key}{needed_by}")
    return value.strip()


def read_credentials_file(path: Path) -> ReadOnlyCredentials:
    """The ``default`` profile of a shared-credentials file (keys and session token)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OnPremisesConfigError(f"credentials file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else "not UTF-8"
        raise OnPremisesConfigError(f"credentials file {path} cannot be read: {reason}") from None
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


class OnPremisesCredentialProvider(CredentialProvider):  # type: ignore[misc, unused-ignore]
    """A botocore credential provider for the on-premises host.

    Put it in a botocore session before any client is made, so that the session's
    clients sign with it and nothing else::

        session.register_component(
            "credential_provider", CredentialResolver([OnPremisesCredentialProvider(config)])
        )
    """

    METHOD = "codedeploy-onpremises"
    CANONICAL_NAME = "custom-codedeploy-onpremises"

    def __init__(self, on_premises: OnPremisesConfig) -> None:
        super().__init__()
        self.on_premises = on_premises

    def load(self) -> Credentials:
        return credentials_for(self.on_premises)
