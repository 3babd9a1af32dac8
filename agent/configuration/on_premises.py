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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import structlog

from agent.configuration.loader import load_symbol_keyed_mapping
from agent.configuration.model import ConfigError

log = structlog.get_logger(__name__)

IAM_USER = "iam-user"
IAM_SESSION = "iam-session"

_KNOWN_KEYS = frozenset(
    {
        "region",
        "iam_user_arn",
        "aws_access_key_id",
        "aws_secret_access_key",
        "iam_session_arn",
        "aws_credentials_file",
    }
)
_ARN = re.compile(r"^arn:[a-z0-9-]+:[a-z0-9-]+:[a-z0-9-]*:[0-9]*:\S+$")
_REGION = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)+$")


class OnPremisesConfigError(ConfigError):
    """The on-premises file, or the credentials file it names, is missing or invalid."""


@dataclass(frozen=True)
class OnPremisesConfig:
    """A validated on-premises file: an IAM user with keys, or an IAM session with a file."""

    source: Path
    region: str
    iam_user_arn: Optional[str] = None
    aws_access_key_id: Optional[str] = None
    aws_secret_access_key: Optional[str] = field(default=None, repr=False)
    iam_session_arn: Optional[str] = None
    aws_credentials_file: Optional[Path] = None

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
    for key in sorted(set(document) - _KNOWN_KEYS):
        log.warning("unknown on-premises key is ignored", file=str(source), key=key)

    arn_key = "iam_user_arn" if has_user else "iam_session_arn"
    needed = (
        ("aws_access_key_id", "aws_secret_access_key") if has_user else ("aws_credentials_file",)
    )
    values = {key: _text(document, key, source, arn_key) for key in ("region", arn_key, *needed)}
    if not _REGION.match(values["region"]):
        raise OnPremisesConfigError(
            f"on-premises file {source}: region {values['region'][:64]!r} is not a region name"
        )
    if not _ARN.match(values[arn_key]):
        raise OnPremisesConfigError(
            f"on-premises file {source}: {arn_key} {values[arn_key][:200]!r} is not an ARN"
        )
    if has_user:
        return OnPremisesConfig(
            source=source,
            region=values["region"],
            iam_user_arn=values["iam_user_arn"],
            aws_access_key_id=values["aws_access_key_id"],
            aws_secret_access_key=values["aws_secret_access_key"],
        )
    credentials_file = Path(values["aws_credentials_file"])
    # A NUL would only fail later, at each read, with an exception no one catches.
    if not credentials_file.is_absolute() or "\0" in values["aws_credentials_file"]:
        raise OnPremisesConfigError(
            f"on-premises file {source}: aws_credentials_file must be an absolute path,"
            f" not {values['aws_credentials_file'][:200]!r}"
        )
    return OnPremisesConfig(
        source=source,
        region=values["region"],
        iam_session_arn=values["iam_session_arn"],
        aws_credentials_file=credentials_file,
    )


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
