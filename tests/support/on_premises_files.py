"""On-premises files and shared-credentials files for the tests, and the secrets they hold.

The secrets are recognisable, so a test can show that none of them reaches a log line,
an error message or a ``repr``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List, MutableMapping

USER_ARN = "arn:aws:iam::123456789012:user/codedeploy-host"
SESSION_ARN = "arn:aws:sts::123456789012:assumed-role/CodeDeployHost/host-17"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_SECRET = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"
SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLE-session-token-value"
ROTATED_SECRET = "rotatedSECRETrotatedSECRETrotatedSECRET0"
ROTATED_TOKEN = "FwoGZXIvYXdzROTATED-session-token-value"
ALL_SECRETS = (SECRET, SESSION_SECRET, SESSION_TOKEN, ROTATED_SECRET, ROTATED_TOKEN)

USER_FILE = f"""\
---
:region: eu-west-1
:iam_user_arn: {USER_ARN}
:aws_access_key_id: AKIAIOSFODNN7EXAMPLE
:aws_secret_access_key: {SECRET}
"""


def session_file(credentials_file: Path) -> str:
    return (
        f"region: us-gov-west-1\niam_session_arn: {SESSION_ARN}\n"
        f"aws_credentials_file: {credentials_file}\n"
    )


def write_credentials(
    path: Path, access_key: str, secret: str, token: str, *, bump_mtime: bool = False
) -> None:
    previous = path.stat().st_mtime_ns if path.exists() else None
    path.write_text(
        "[default]\n"
        f"aws_access_key_id = {access_key}\n"
        f"aws_secret_access_key = {secret}\n"
        f"aws_session_token = {token}\n",
        encoding="utf-8",
    )
    if bump_mtime and previous is not None:
        # A rotation within the file system's time granularity must still be seen.
        later = previous + 2_000_000_000
        os.utime(path, ns=(later, later))


def no_secret_in(text: str) -> bool:
    return not any(secret in text for secret in ALL_SECRETS)


def logged_text(logs: List[MutableMapping[str, Any]]) -> str:
    return "\n".join(repr(entry) for entry in logs)
