"""The real AWS CLI (``awscli`` from PyPI, this venv's ``aws``) pointed at a server.

:class:`AwsCli` runs it with a HOME of its own (its own config and credentials files),
``--endpoint-url`` and ``AWS_EC2_METADATA_DISABLED``, as an operator would drive AWS.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import botocore.session

from tests.support.server import VENV_BIN, server_environment

AWS_PROGRAM = str(VENV_BIN / "aws")


@dataclass
class AwsCli:
    """The AWS CLI with its own HOME and credentials, pointed at a server."""

    home: Path
    endpoint_url: str
    credentials: Dict[str, str] = field(default_factory=dict)
    region: str = "us-east-1"

    def __post_init__(self) -> None:
        aws = self.home / ".aws"
        aws.mkdir(parents=True, exist_ok=True)
        (aws / "config").write_text(
            f"[default]\nregion = {self.region}\noutput = json\n"
            "[profile unvalidated]\nparameter_validation = false\n"
            f"region = {self.region}\noutput = json\n",
            encoding="utf-8",
        )
        self.use(self.credentials)

    def use(self, credentials: Dict[str, str]) -> None:
        """Write these credentials as the default and the ``unvalidated`` profile's."""
        self.credentials = credentials
        text = "".join(
            f"[{profile}]\naws_access_key_id = {credentials.get('AccessKeyId', '')}\n"
            f"aws_secret_access_key = {credentials.get('SecretAccessKey', '')}\n"
            for profile in ("default", "unvalidated")
        )
        (self.home / ".aws" / "credentials").write_text(text, encoding="utf-8")

    def run(
        self,
        *arguments: str,
        profile: Optional[str] = None,
        extra_environ: Optional[Dict[str, str]] = None,
    ) -> subprocess.CompletedProcess[str]:
        environ = {
            **server_environment(),
            "HOME": str(self.home),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_MAX_ATTEMPTS": "1",
            **(extra_environ or {}),
        }
        command = [AWS_PROGRAM, "--endpoint-url", self.endpoint_url, *arguments]
        if profile:
            command += ["--profile", profile]
        return subprocess.run(
            command, capture_output=True, text=True, env=environ, timeout=120, check=False
        )

    def ok(self, *arguments: str) -> Dict[str, object]:
        """Run a command that must succeed; its JSON output ({} when it printed nothing)."""
        completed = self.run(*arguments)
        assert completed.returncode == 0, completed.stderr
        return json.loads(completed.stdout) if completed.stdout.strip() else {}

    def codedeploy_client(self) -> Any:
        """botocore's CodeDeploy client with the same endpoint and keys (the CLI's own
        library, in this process: for set-up steps, where a CLI run costs a second)."""
        return botocore.session.Session().create_client(
            "codedeploy",
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.credentials["AccessKeyId"],
            aws_secret_access_key=self.credentials["SecretAccessKey"],
        )

    def error(self, *arguments: str, profile: Optional[str] = None) -> str:
        """Run a command that must fail; the error line the CLI printed."""
        completed = self.run(*arguments, profile=profile)
        assert completed.returncode != 0, completed.stdout
        return completed.stderr.strip()
