"""The botocore session each AWS client of the agent (the command service, S3) is built on.

A private session per client, so the environment and the shared AWS files are read as by
any SDK, with one exception: credentials the agent resolved itself (the on-premises
profile, an instance role) replace the session's credential chain when given.
"""

from __future__ import annotations

from typing import Optional

import botocore.session  # type: ignore[import-untyped]
from botocore.credentials import (  # type: ignore[import-untyped]
    CredentialResolver,
    Credentials,
)


class _GivenCredentials:
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


def new_botocore_session(credentials: Optional[Credentials] = None) -> botocore.session.Session:
    """A fresh botocore session; ``credentials`` (static or refreshable) replace its
    credential chain when given."""
    session = botocore.session.Session()
    if credentials is not None:
        session.register_component(
            "credential_provider", CredentialResolver(providers=[_GivenCredentials(credentials)])
        )
    return session
