"""The daemon keeps its connection to the command service: a whole deployment, its polls,
specifications, acknowledgements and completions, goes over one (a new connection per call
would add a handshake, and with TLS a key exchange, to each)."""

from __future__ import annotations

from pathlib import Path

from tests.support.command_service import CommandServiceStub, completion_of, queue_deployment
from tests.support.poller_host import Host, run_loop_until_completed
from tests.support.signing import SigningKit
from tests.support.traced_revisions import make_revision, spec_json


def test_a_deployment_goes_over_one_connection(
    stub: CommandServiceStub, kit: SigningKit, tmp_path: Path
) -> None:
    host = Host(tmp_path)
    revision = make_revision(host.base / "revision", host.trace, host.destination)
    ids = queue_deployment(stub, "d-CONNECT01", kit.sign(spec_json("d-CONNECT01", revision)))
    run_loop_until_completed(stub, host.settings(kit), len(ids))
    assert all(completion_of(stub, i)[0]["CommandStatus"] == "Succeeded" for i in ids)
    assert len(stub.requests) >= 4 * len(ids)
    assert stub.connections_accepted == 1
