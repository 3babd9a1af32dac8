"""The on-premises identity file (``codedeploy.onpremises.yml``), parsed once into a frozen model.

A host outside EC2 names its identity there: ``region`` and either an IAM user
(``iam_user_arn`` with static keys in the file) or an IAM session (``iam_session_arn``
with a shared-credentials file that a rotation job rewrites). The ARN is the host
identifier. Keys are written as plain YAML keys or as the AWS agent's ``:symbol`` keys.
The botocore credentials made from this file, the session's re-read on rotation
included, are AWS client code: :mod:`agent.aws_clients.credentials`. Key values never
reach a log line, an error message or a ``repr``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import structlog

from agent.configuration.keys import ConfigKey, declared_keys, required_setting, setting
from agent.configuration.loader import load_symbol_keyed_mapping
from agent.configuration.model import ConfigError

log = structlog.get_logger(__name__)

IAM_USER = "iam-user"
IAM_SESSION = "iam-session"

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
    return parse_on_premises_config(read_text_from_disk(path, "on-premises file"), source=path)


def read_text_from_disk(path: Path, what: str) -> str:
    """The UTF-8 text of the on-premises file or of the credentials file it names
    (``what``); one line naming the file when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OnPremisesConfigError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else "not UTF-8"
        raise OnPremisesConfigError(f"{what} {path} cannot be read: {reason}") from None


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
