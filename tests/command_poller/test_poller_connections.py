"""The daemon keeps its connection to the command service: a whole deployment, its polls,
specifications, acknowledgements and completions, goes over one (a new connection per call
would add a handshake, and with TLS a key exchange, to each)."""

from __future__ import annotations

from pathlib import Path

from agent.command_poller.loop import PollLoop
from tests.command_poller.poller_helpers import (
    Host,
    client_for,
    completion_of,
    make_revision,
    queue_deployment,
    spec_json,
    wait_until,
)
from tests.support_command_service import CommandServiceStub
from tests.support_signing import SigningKit


def test_a_deployment_goes_over_one_connection(
    stub: CommandServiceStub, kit: SigningKit, tmp_path: Path
) -> None:
    host = Host(tmp_path)
    revision = make_revision(host.base / "revision", host.trace, host.destination)
    ids = queue_deployment(stub, "d-CONNECT01", kit.sign(spec_json("d-CONNECT01", revision)))
    loop = PollLoop(client_for(stub), host.settings(kit), wait_between_runs=0.01)
    loop.start()
    try:
        assert wait_until(lambda: len(stub.completions()) == len(ids))
    finally:
        assert loop.wait_stopped(30)
    assert all(completion_of(stub, i)[0]["CommandStatus"] == "Succeeded" for i in ids)
    assert len(stub.requests) >= 4 * len(ids)
    assert stub.connections_accepted == 1
