"""The flags of ``codedeploy-local``, each declared once: its names, default and doc line.

The flags and defaults are the AWS developer utility's (docs/behaviour.md section 2), with
``--no-wait`` of our own. The parser's help and the flags' tables in the README and in
docs/behaviour.md (``python -m agent.config_reference``) are made from these declarations.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Optional, Tuple

from agent.configuration.keys import KeyOrigin
from agent.configuration.model import DEFAULT_CONFIG_FILE
from agent.local_deployment.request import (
    DEFAULT_DEPLOYMENT_GROUP_ID,
    DEFAULT_DEPLOYMENT_GROUP_NAME,
)


@dataclass(frozen=True)
class LocalFlag:
    """One flag: ``default`` is what the program gets when it is left out, ``shown_default``
    and ``doc`` what the docs say (one line of Markdown each)."""

    names: Tuple[str, ...]
    shown_default: str
    doc: str
    default: Optional[str] = None
    origin: KeyOrigin = KeyOrigin.AWS
    # A flag without a value (on when given).
    switch: bool = False

    def help_text(self) -> str:
        """The doc line for ``--help``: plain text (no Markdown), with the default."""
        text = f"{self.doc} (default: {self.shown_default})"
        return text.replace("`", "").replace("*", "").replace("%", "%%")


LOCAL_FLAGS: Tuple[LocalFlag, ...] = (
    LocalFlag(
        ("-l", "--bundle-location"),
        "the current folder",
        "a local folder or archive, `s3://bucket/key[?versionId=V&etag=E]`,"
        " `https://github.com/OWNER/REPO`, or"
        " `https://api.github.com/repos/OWNER/REPO/tarball/COMMIT` (`zipball` too);"
        " `http://` is refused",
    ),
    LocalFlag(
        ("-t", "--type"),
        "`directory`",
        "`tar`, `tgz`, `zip` or `directory`",
        default="directory",
    ),
    LocalFlag(
        ("-b", "--file-exists-behavior"),
        "`DISALLOW`",
        "what to do with a destination that exists and was not installed by this group's"
        " previous deployment; the appspec's `file_exists_behavior` wins",
        default="DISALLOW",
    ),
    LocalFlag(
        ("-g", "--deployment-group"),
        f"`{DEFAULT_DEPLOYMENT_GROUP_ID}`",
        "the deployment group *id*: the folder under the deployment root",
        default=DEFAULT_DEPLOYMENT_GROUP_ID,
    ),
    LocalFlag(
        ("-d", "--deployment-group-name"),
        f"`{DEFAULT_DEPLOYMENT_GROUP_NAME}`",
        "`DEPLOYMENT_GROUP_NAME` for the hooks",
        default=DEFAULT_DEPLOYMENT_GROUP_NAME,
    ),
    LocalFlag(
        ("-a", "--application-name"),
        "the bundle location",
        "`APPLICATION_NAME` for the hooks",
    ),
    LocalFlag(
        ("-e", "--events"),
        "all, in the standard order",
        "events to run, in the order written (an event named twice runs twice);"
        " `DownloadBundle` and `Install` always run: both in front when neither is named,"
        " `Install` right after a named `DownloadBundle`, `DownloadBundle` right before a"
        " named `Install`; only the written order is checked; custom events must be in the"
        " appspec",
    ),
    LocalFlag(
        ("-c", "--agent-configuration-file"),
        f"`{DEFAULT_CONFIG_FILE}`",
        "the agent configuration (the default may be absent: defaults apply)",
    ),
    LocalFlag(
        ("-A", "--appspec-filename"),
        "`appspec.yml`, then `appspec.yaml`",
        "the appspec's name in the revision",
        default="appspec.yml",
    ),
    LocalFlag(
        ("--no-wait",),
        "off",
        "when another deployment of the same group is running (another `codedeploy-local`,"
        " or the daemon), refuse at once with exit 2 instead of waiting for it",
        origin=KeyOrigin.OWN,
        switch=True,
    ),
)


def add_local_flags(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` every flag of :data:`LOCAL_FLAGS`."""
    for flag in LOCAL_FLAGS:
        if flag.switch:
            parser.add_argument(*flag.names, action="store_true", help=flag.help_text())
        else:
            parser.add_argument(*flag.names, default=flag.default, help=flag.help_text())
