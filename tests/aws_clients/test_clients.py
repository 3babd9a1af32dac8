"""The one builder of the agent's AWS clients: the command service client and the S3 client
made from one configuration reach their servers on 127.0.0.1 through the same proxy, with
the same User-Agent naming the agent; the daemon's S3 client cache stays bounded."""

from __future__ import annotations

from pathlib import Path
from typing import List

from agent import __version__
from agent.aws_clients.client_settings import ClientSettings, S3ClientSettings
from agent.aws_clients.clients import S3Clients, new_s3_client
from agent.aws_clients.command_service import CommandServiceSettings, new_command_service_client
from agent.configuration.model import AgentConfig
from agent.deployment_specification.model import BundleType, S3Revision
from agent.revision.fetchers.s3 import download_s3_bundle_to_disk
from agent.revision.fetchers.settings import FetchSettings
from tests.support.command_service import CommandServiceStub
from tests.support.http_proxy import ForwardingProxy, without_feature_ids
from tests.support.s3_servers import REGION, TEST_CREDENTIALS, StubObject, stub_s3_server

HOST = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"
AGENT_TOKEN = f"codedeploy-agent-py/{__version__}"


def test_both_clients_of_one_configuration_use_its_proxy_and_the_agent_user_agent(
    tmp_path: Path,
) -> None:
    served = StubObject("bucket", "app.tgz", b"bundle bytes " * 50)
    with CommandServiceStub() as service, stub_s3_server(served) as s3, ForwardingProxy() as proxy:
        config = AgentConfig(
            deploy_control_endpoint=service.url, s3_endpoint_override=s3, proxy_uri=proxy.url
        )
        command_service = new_command_service_client(
            CommandServiceSettings.from_config(config, REGION), TEST_CREDENTIALS
        )
        fetch = FetchSettings.from_config(config, region=REGION, credentials=TEST_CREDENTIALS)

        service.queue_command(HOST, "DownloadBundle", "d-CLIENTS01")
        assert command_service.poll_host_command(HOST) is not None
        revision = S3Revision("bucket", "app.tgz", BundleType.TGZ)
        download_s3_bundle_to_disk(revision, tmp_path / "bundle.tar", fetch)

    assert (tmp_path / "bundle.tar").read_bytes() == served.data
    # Every request of both clients went through the configured proxy ...
    assert [(method, url) for method, url, _ in proxy.seen] == [
        ("POST", f"{service.url}/"),
        ("HEAD", f"{s3}/bucket/app.tgz"),
        ("GET", f"{s3}/bucket/app.tgz"),
    ]
    # ... and reached its server with one and the same User-Agent, naming this agent (but
    # for the features botocore saw a request use, its own business).
    agents = {user_agent for *_, user_agent in proxy.seen}
    agents |= {request.headers["user-agent"] for request in service.requests}
    agents |= {headers["User-Agent"] for *_, headers in served.requests}
    agents = {without_feature_ids(user_agent) for user_agent in agents}
    assert len(agents) == 1, agents
    [user_agent] = agents
    assert user_agent.startswith("Botocore/")
    assert user_agent.endswith(f" {AGENT_TOKEN}")


def test_both_clients_get_the_same_timeouts_retry_mode_and_proxy() -> None:
    proxy = "http://proxy.example.internal:3128"
    config = AgentConfig(proxy_uri=proxy, s3_endpoint_override="http://127.0.0.1:9")
    command_service = new_command_service_client(
        CommandServiceSettings.from_config(config, REGION), TEST_CREDENTIALS
    ).boto_client.meta.config
    s3 = new_s3_client(
        FetchSettings.from_config(config, region=REGION).s3_client_settings
    ).meta.config
    for built in (command_service, s3):
        assert built.proxies == {"http": proxy, "https": proxy}
        assert built.connect_timeout == 10.0
        assert built.retries["mode"] == "standard"
        assert built.user_agent_extra == AGENT_TOKEN
        assert built.region_name == REGION
    # The long poll waits longer for an answer than a download does for its next bytes.
    assert (command_service.read_timeout, s3.read_timeout) == (80.0, 60.0)
    assert s3.s3 == {"addressing_style": "path"}


def test_the_client_cache_is_bounded() -> None:
    clients = S3Clients(max_clients=2)
    built: List[S3ClientSettings] = []

    def build(settings: S3ClientSettings) -> object:
        built.append(settings)
        return object()

    first, second, third = (S3ClientSettings(ClientSettings(max_attempts=n)) for n in (1, 2, 3))
    kept = clients.client_for(first, build)
    clients.client_for(second, build)
    assert clients.client_for(S3ClientSettings(ClientSettings(max_attempts=1)), build) is kept
    clients.client_for(third, build)  # drops the least recently used: second
    assert clients.client_for(first, build) is kept
    clients.client_for(second, build)
    assert built == [first, second, third, second]
