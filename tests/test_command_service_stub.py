"""The test command service itself: its answers must not hide the agent's costs.

An answer whose headers and body leave in two TCP segments on a kept-alive connection
waits, with Nagle's algorithm on either end, for the client's delayed acknowledgement
(about 40 ms): every per-command figure of the daemon benchmark would carry it. The
segments are counted by the kernel, on the client's socket (``TCP_INFO``).
"""

from __future__ import annotations

import http.client
import json
import socket
import struct

from tests.support.command_service import CommandServiceStub

# struct tcp_info (linux/tcp.h): tcpi_data_segs_in, the segments that carried data.
_TCP_INFO_DATA_SEGS_IN = 152
_TCP_INFO_SIZE = 256
_AUTHORIZATION = (
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/codedeploy-commands/"
    "aws4_request, SignedHeaders=host;x-amz-date, Signature=0123456789abcdef"
)


def data_segments_received(connection: socket.socket) -> int:
    info = connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
    (count,) = struct.unpack_from("I", info, _TCP_INFO_DATA_SEGS_IN)
    return int(count)


def test_each_answer_on_a_kept_alive_connection_is_one_segment() -> None:
    with CommandServiceStub() as stub:
        stub.set_specification("d-SEGMENTS1", json.dumps({"padding": "x" * 2000}))
        host, port = stub.url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.connect()
        try:
            for operation, body in (
                ("PutHostCommandAcknowledgement", {"HostCommandIdentifier": "hc-1"}),
                ("GetDeploymentSpecification", {"DeploymentExecutionId": "d-SEGMENTS1"}),
                ("PutHostCommandComplete", {"HostCommandIdentifier": "hc-1"}),
            ):
                assert connection.sock is not None
                before = data_segments_received(connection.sock)
                connection.request(
                    "POST",
                    "/",
                    body=json.dumps(body).encode("utf-8"),
                    headers={
                        "Content-Type": "application/x-amz-json-1.1",
                        "X-Amz-Target": f"CodeDeployCommandService_v20141006.{operation}",
                        "X-Amz-Date": "20240101T000000Z",
                        "Authorization": _AUTHORIZATION,
                    },
                )
                answer = connection.getresponse()
                assert answer.status == 200, answer.read()
                assert not answer.will_close
                answer.read()
                assert data_segments_received(connection.sock) - before == 1, operation
        finally:
            connection.close()
