"""The one place the agent builds its botocore sessions and clients (the command service, S3).

Each client gets a private botocore session, so the environment and the shared AWS files
are read as by any SDK, except that credentials the agent resolved itself (the
on-premises ones) replace the session's credential chain when given. Each gets one
botocore configuration made from :class:`ClientSettings`: the proxy, the connect and read
timeouts, standard retries, the region, FIPS endpoints and the agent's User-Agent; the
caller adds only what its service needs. botocore directly: boto3 would add nothing but
its import time and memory.

Building a client parses its service model, tens of milliseconds, with the cyclic garbage
collector paused (the model's thousands of new dicts would otherwise set off collections
that find nothing: a third of the time) and with a loader that checks only the one
service's folder (botocore's own lists every service it knows, about 400 folders, to
check the name: another 20 ms). Building an S3 client thus costs about 40 ms; a long-running
agent keeps the clients it built in an :class:`S3Clients` it passes along (an object, not
module state), bounded so that settings that change cannot make it grow without end.
botocore clients are thread-safe: the part threads of a download, and later downloads,
share one.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Hashable, List, Optional, Tuple, TypeVar

import botocore.session  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.credentials import (  # type: ignore[import-untyped]
    CredentialResolver,
    Credentials,
)
from botocore.exceptions import DataNotFoundError  # type: ignore[import-untyped]
from botocore.loaders import Loader  # type: ignore[import-untyped]

from agent.aws_clients.client_settings import ClientSettings, S3ClientSettings
from agent.aws_clients.credentials import GivenCredentialsProvider
from agent.aws_clients.wire_log import WireLogSettings, WireLogWriter, attach_wire_log
from agent.garbage_collection import garbage_collector_paused

DEFAULT_MAX_CLIENTS = 4

Key = TypeVar("Key", bound=Hashable)


def new_botocore_session(credentials: Optional[Credentials] = None) -> botocore.session.Session:
    """A fresh botocore session; ``credentials`` (static or refreshable) replace its
    credential chain when given."""
    session = botocore.session.Session()
    if credentials is not None:
        session.register_component(
            "credential_provider",
            CredentialResolver(providers=[GivenCredentialsProvider(credentials)]),
        )
    return session


class _OneServiceLoader(Loader):  # type: ignore[misc]
    """botocore's data loader, on the same search paths, that knows one service only."""

    def __init__(self, service_name: str, search_paths: List[str]) -> None:
        super().__init__(extra_search_paths=search_paths, include_default_search_paths=False)
        self._service_name = service_name

    def list_available_services(self, type_name: str) -> List[str]:
        """The one service, if some folder of the search path has a ``type_name`` file
        for it: botocore's loader asks this before it loads any of a service's files."""
        try:
            self.list_api_versions(self._service_name, type_name)
        except DataNotFoundError:
            return []
        return [self._service_name]


def new_aws_client(
    service_name: str,
    settings: ClientSettings,
    *,
    credentials: Optional[Credentials] = None,
    model_path: Optional[Path] = None,
    wire_log: Optional[WireLogSettings] = None,
    **service_config: Any,
) -> Any:
    """A botocore client of ``service_name`` built with ``settings`` (reads the service
    model from disk); ``model_path`` is searched for models before botocore's own,
    ``service_config`` adds the service's own botocore options."""
    client, _ = new_aws_client_and_session(
        service_name,
        settings,
        credentials=credentials,
        model_path=model_path,
        wire_log=wire_log,
        **service_config,
    )
    return client


def new_aws_client_and_session(
    service_name: str,
    settings: ClientSettings,
    *,
    credentials: Optional[Credentials] = None,
    model_path: Optional[Path] = None,
    wire_log: Optional[WireLogSettings] = None,
    **service_config: Any,
) -> Tuple[Any, botocore.session.Session]:
    """:func:`new_aws_client`, and the session it was built in (whose credentials the
    client signs with)."""
    session = new_botocore_session(credentials)
    # botocore's loader sets its search path from the environment (AWS_DATA_PATH) and its
    # own data; ours follows the same path, after the agent's own models if given.
    search_paths = list(session.get_component("data_loader").search_paths)
    if model_path is not None:
        search_paths.insert(0, str(model_path))
    session.register_component("data_loader", _OneServiceLoader(service_name, search_paths))
    config = Config(
        region_name=settings.region,
        connect_timeout=settings.connect_timeout_seconds,
        read_timeout=settings.read_timeout_seconds,
        retries={"mode": "standard", "total_max_attempts": settings.max_attempts},
        proxies=settings.proxies,
        user_agent_extra=settings.user_agent,
        # A given endpoint is used as it is; AWS_USE_FIPS_ENDPOINT cannot change AWS's.
        use_fips_endpoint=settings.use_fips and settings.endpoint_url is None,
        **service_config,
    )
    with garbage_collector_paused():
        client = session.create_client(
            service_name,
            region_name=settings.region,
            endpoint_url=settings.endpoint_url,
            config=config,
        )
    if wire_log is not None:
        attach_wire_log(client, WireLogWriter(wire_log))
    return client, session


def new_s3_client(settings: S3ClientSettings) -> Any:
    """A botocore S3 client: the common settings, path-style addressing for a given
    endpoint, SigV4, a connection per part thread."""
    return new_aws_client(
        "s3",
        settings.client,
        credentials=settings.credentials,
        wire_log=settings.wire_log,
        signature_version="s3v4",
        s3={"addressing_style": "path"} if settings.path_style else None,
        max_pool_connections=settings.max_pool_connections,
    )


class S3Clients:
    """A thread-safe, bounded cache of S3 clients keyed by the settings they were built for."""

    def __init__(self, max_clients: int = DEFAULT_MAX_CLIENTS) -> None:
        if max_clients < 1:
            raise ValueError("an S3 client cache holds at least one client")
        self._max_clients = max_clients
        self._lock = threading.Lock()
        self._clients: OrderedDict[Hashable, Any] = OrderedDict()

    def client_for(self, settings: Key, build: Callable[[Key], Any]) -> Any:
        """The client built by ``build`` for settings equal to ``settings``, built now if
        there is none; the least recently used client is dropped beyond the bound."""
        # Built under the lock: two downloads starting together build one client, not two.
        with self._lock:
            client = self._clients.get(settings)
            if client is None:
                client = build(settings)
                self._clients[settings] = client
                while len(self._clients) > self._max_clients:
                    self._clients.popitem(last=False)
            else:
                self._clients.move_to_end(settings)
            return client


def s3_client_for(settings: S3ClientSettings, clients: Optional[S3Clients] = None) -> Any:
    """The S3 client for ``settings``: the one ``clients`` keeps for them (built on first
    use), or a new one when there is no cache (a one-shot program)."""
    if clients is None:
        return new_s3_client(settings)
    return clients.client_for(settings, new_s3_client)
