"""A stand-in for the CodeDeploy command service, for tests: JSON 1.1 over HTTP on loopback.

It speaks both target prefixes (``CodeDeployCommandService_v20141006`` and the secure
``CodeDeployCommandService``), insists on a SigV4 ``Authorization`` header scoped to the
matching service name (the signature itself is not checked), hands out queued commands per
host, serves deployment specifications the test provides, records every request, and can
be told to fail a given operation: HTTP 500, throttling, a connection reset, or a hang.
With ``tls`` (a certificate and its key) it serves HTTPS instead.
Also here: the host identity the tests' agents poll as, a real client of the stub, and
the reading of what a host sent (completions, acknowledgements), which works as well on
the in-process fake of ``fake_command_service.py``.
"""

from __future__ import annotations

import contextlib
import enum
import json
import socket
import ssl
import struct
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Deque, Dict, Iterable, List, Optional, Protocol, Sequence, Set, Tuple

from botocore.credentials import Credentials  # type: ignore[import-untyped]

from agent.aws_clients.command_service import (
    BotocoreCommandServiceClient,
    CommandServiceSettings,
    new_command_service_client,
)
from tests.support.traced_revisions import SERVICE_ORDER

HOST = "arn:aws:iam::123456789012:user/test-host"
REGION = "us-east-1"

TARGET_PREFIXES = {
    "CodeDeployCommandService_v20141006": "codedeploy-commands",
    "CodeDeployCommandService": "codedeploy-commands-secure",
}
OPERATIONS = (
    "PollHostCommand",
    "GetDeploymentSpecification",
    "PutHostCommandAcknowledgement",
    "PutHostCommandComplete",
    "PostHostCommandUpdate",
)


class Fault(enum.Enum):
    SERVER_ERROR = "server-error"  # HTTP 500 ServerException
    THROTTLING = "throttling"  # HTTP 400 ThrottlingException
    RESET = "reset"  # the connection is reset without an answer
    HANG = "hang"  # no answer until the stub's hang time is over (or it stops)


@dataclass(frozen=True)
class RecordedRequest:
    operation: str
    target: str
    signing_service: str
    body: Dict[str, Any]
    headers: Dict[str, str]  # lower-case names
    fault: Optional[Fault] = None

    @property
    def secure(self) -> bool:
        return self.target.startswith("CodeDeployCommandService.")


@dataclass
class _State:
    commands: Dict[str, Deque[Dict[str, Any]]] = field(default_factory=dict)
    specifications: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    faults: Dict[str, List[Fault]] = field(default_factory=dict)
    requests: List[RecordedRequest] = field(default_factory=list)
    connections: Set[socket.socket] = field(default_factory=set)
    connections_accepted: int = 0


class CommandServiceStub:
    """The command service for one test: ``with CommandServiceStub() as service: ...``.

    ``ack_status`` / ``update_status`` are what acknowledgements and updates answer (None:
    no status); ``poll_wait`` makes an empty poll wait that long for a command, like the
    real long poll; a hung request waits ``hang_seconds`` (or until the stub stops).
    """

    def __init__(
        self,
        *,
        ack_status: Optional[str] = "InProgress",
        update_status: Optional[str] = "InProgress",
        poll_wait: float = 0.0,
        hang_seconds: float = 30.0,
        tls: Optional[Tuple[Path, Path]] = None,
    ) -> None:
        self.ack_status = ack_status
        self.update_status = update_status
        self.poll_wait = poll_wait
        self.hang_seconds = hang_seconds
        self._state = _State()
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self._scheme = "https"
        self._thread: Optional[threading.Thread] = None

    # -- life cycle -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self._server.server_port}"

    def start(self) -> CommandServiceStub:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="command-service-stub",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        self._server.shutdown()
        self.close_connections()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def close_connections(self) -> None:
        """Close every connection a client keeps open, as a server ends idle ones."""
        with self._changed:
            connections = list(self._state.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> CommandServiceStub:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- what the test sets up --------------------------------------------------------

    def queue_command(
        self,
        host_identifier: str,
        command_name: Optional[str],
        deployment_execution_id: str = "d-EXAMPLE111",
        *,
        host_command_identifier: Optional[str] = None,
        nonce: Optional[int] = 1,
        answer_host_identifier: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Queue a command for ``host_identifier``; returns the HostCommand it will answer.

        ``answer_host_identifier`` puts another host in the answer (a misrouted command);
        a ``command_name`` of None leaves CommandName out.
        """
        command: Dict[str, Any] = {
            "HostCommandIdentifier": host_command_identifier or f"hc-{uuid.uuid4()}",
            "HostIdentifier": answer_host_identifier or host_identifier,
            "DeploymentExecutionId": deployment_execution_id,
        }
        if command_name is not None:
            command["CommandName"] = command_name
        if nonce is not None:
            command["Nonce"] = nonce
        with self._changed:
            queue = self._state.commands.setdefault(host_identifier, deque())
            queue.append(command)
            self._changed.notify_all()
        return dict(command)

    def set_specification(
        self,
        deployment_execution_id: str,
        payload: str,
        envelope_format: str = "TEXT/JSON",
        *,
        deployment_system: str = "CodeDeploy",
    ) -> None:
        with self._changed:
            self._state.specifications[deployment_execution_id] = {
                "DeploymentSystem": deployment_system,
                "DeploymentSpecification": {
                    "GenericEnvelope": {"Format": envelope_format, "Payload": payload}
                },
            }

    def inject_fault(self, operation: str, fault: Fault, times: int = 1) -> None:
        """The next ``times`` requests of ``operation`` meet ``fault``."""
        assert operation in OPERATIONS, operation
        with self._changed:
            self._state.faults.setdefault(operation, []).extend([fault] * times)

    # -- what the test checks ---------------------------------------------------------

    @property
    def requests(self) -> List[RecordedRequest]:
        with self._changed:
            return list(self._state.requests)

    def requests_for(self, operation: str) -> List[RecordedRequest]:
        return [request for request in self.requests if request.operation == operation]

    @property
    def connections_accepted(self) -> int:
        """How many connections clients opened to the stub so far."""
        with self._changed:
            return self._state.connections_accepted

    def completions(self) -> List[Dict[str, Any]]:
        """Bodies of the PutHostCommandComplete requests that were answered."""
        return [
            request.body
            for request in self.requests_for("PutHostCommandComplete")
            if request.fault is None
        ]

    # -- serving ----------------------------------------------------------------------

    def _next_fault(self, operation: str) -> Optional[Fault]:
        with self._changed:
            pending = self._state.faults.get(operation)
            return pending.pop(0) if pending else None

    def _record(self, request: RecordedRequest) -> None:
        with self._changed:
            self._state.requests.append(request)

    def _track(self, connection: socket.socket, alive: bool) -> None:
        with self._changed:
            if alive:
                self._state.connections.add(connection)
                self._state.connections_accepted += 1
            else:
                self._state.connections.discard(connection)

    def _hang(self) -> None:
        self._stopping.wait(self.hang_seconds)

    def _answer(self, operation: str, body: Dict[str, Any]) -> Tuple[int, Dict[str, Any]]:
        if operation == "PollHostCommand":
            return 200, self._poll(body)
        if operation == "GetDeploymentSpecification":
            with self._changed:
                found = self._state.specifications.get(str(body.get("DeploymentExecutionId")))
            if found is None:
                return 400, _error("ClientException", "unknown deployment execution")
            return 200, found
        if operation == "PutHostCommandAcknowledgement":
            return 200, {"CommandStatus": self.ack_status} if self.ack_status else {}
        if operation == "PostHostCommandUpdate":
            return 200, {"CommandStatus": self.update_status} if self.update_status else {}
        return 200, {}  # PutHostCommandComplete

    def _poll(self, body: Dict[str, Any]) -> Dict[str, Any]:
        host = str(body.get("HostIdentifier"))
        with self._changed:
            self._changed.wait_for(
                lambda: bool(self._state.commands.get(host)) or self._stopping.is_set(),
                timeout=self.poll_wait,
            )
            queue = self._state.commands.get(host)
            if queue:
                return {"HostCommand": queue.popleft()}
        return {}


def _error(error_type: str, message: str) -> Dict[str, Any]:
    return {"__type": error_type, "message": message}


def _signing_service(authorization: str) -> Optional[str]:
    """The service of a SigV4 credential scope, or None when the header is not SigV4."""
    if not authorization.startswith("AWS4-HMAC-SHA256 "):
        return None
    fields = dict(
        part.strip().split("=", 1)
        for part in authorization[len("AWS4-HMAC-SHA256 ") :].split(",")
        if "=" in part
    )
    scope = fields.get("Credential", "").split("/")
    if len(scope) != 5 or scope[4] != "aws4_request" or not fields.get("Signature"):
        return None
    return scope[3]


def _handler_for(stub: CommandServiceStub) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body leave in one write (the handler's output is buffered and sent
        # when the answer is complete): as two segments on a kept-alive connection, the
        # second would wait for the client's delayed ACK where Nagle's algorithm is on
        # (about 40 ms per call), which no real endpoint adds.
        wbufsize = 64 * 1024
        disable_nagle_algorithm = True

        def setup(self) -> None:
            super().setup()
            stub._track(self.connection, True)

        def finish(self) -> None:
            stub._track(self.connection, False)
            # A connection reset on purpose cannot be flushed and closed cleanly.
            with contextlib.suppress(OSError, ValueError):
                super().finish()

        def log_message(self, *_: Any) -> None:
            pass

        def _send(self, status: int, document: Dict[str, Any]) -> None:
            data = json.dumps(document).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            headers = {name.lower(): value for name, value in self.headers.items()}
            target = headers.get("x-amz-target", "")
            prefix, _, operation = target.partition(".")
            try:
                body = json.loads(raw.decode("utf-8") or "{}")
            except ValueError:
                self._send(400, _error("SerializationException", "body is not JSON"))
                return
            service = _signing_service(headers.get("authorization", ""))
            expected = TARGET_PREFIXES.get(prefix)
            if expected is None or operation not in OPERATIONS:
                self._send(400, _error("UnknownOperationException", f"unknown target {target}"))
                return
            if self.path != "/" or not headers.get("content-type", "").startswith(
                "application/x-amz-json-1.1"
            ):
                self._send(400, _error("SerializationException", "not a JSON 1.1 request"))
                return
            if service != expected or "x-amz-date" not in headers:
                self._send(
                    403,
                    _error("IncompleteSignatureException", f"expected SigV4 for {expected}"),
                )
                return
            fault = stub._next_fault(operation)
            stub._record(RecordedRequest(operation, target, service, body, headers, fault))
            if fault is Fault.SERVER_ERROR:
                self._send(500, _error("ServerException", "injected server error"))
            elif fault is Fault.THROTTLING:
                self._send(400, _error("ThrottlingException", "Rate exceeded"))
            elif fault is Fault.RESET:
                # SO_LINGER with a zero timeout turns close() into a TCP reset.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
                self.connection.close()
            elif fault is Fault.HANG:
                stub._hang()
                self.close_connection = True
            else:
                status, document = stub._answer(operation, body)
                self._send(status, document)

    return Handler


# -- a host's side of the conversation ----------------------------------------------------


class SentRequest(Protocol):
    """A request as the stub or the in-process fake recorded it."""

    @property
    def operation(self) -> str: ...

    @property
    def body(self) -> Dict[str, Any]: ...

    @property
    def fault(self) -> Optional[Fault]: ...


class RecordsRequests(Protocol):
    """What a test reads back from the stub or the in-process fake alike."""

    def requests_for(self, operation: str) -> Sequence[SentRequest]: ...

    def completions(self) -> List[Dict[str, Any]]: ...


class QueuesCommands(Protocol):
    """What a test sets up on the stub or the in-process fake alike."""

    def set_specification(
        self, deployment_execution_id: str, payload: str, envelope_format: str = ...
    ) -> None: ...

    def queue_command(
        self, host_identifier: str, command_name: Optional[str], deployment_execution_id: str = ...
    ) -> Dict[str, Any]: ...


def queue_deployment(
    service: QueuesCommands,
    deployment_id: str,
    payload: str,
    envelope_format: str = "PKCS7/JSON",
    commands: Iterable[str] = SERVICE_ORDER,
    host: str = HOST,
) -> List[str]:
    """Serve the specification and queue the commands for ``host``; returns their host
    command ids."""
    service.set_specification(deployment_id, payload, envelope_format)
    return [
        service.queue_command(host, name, deployment_id)["HostCommandIdentifier"]
        for name in commands
    ]


def client_for(
    stub: CommandServiceStub, *, read_timeout: float = 2.0
) -> BotocoreCommandServiceClient:
    """The agent's real client of ``stub`` (botocore, SigV4, one attempt per call)."""
    settings = CommandServiceSettings(
        region=REGION, endpoint_url=stub.url, read_timeout=read_timeout, max_attempts=1
    )
    return new_command_service_client(settings, Credentials("AKIDEXAMPLE", "not-a-secret"))


def completion_of(
    service: RecordsRequests, host_command_identifier: str
) -> List[Dict[str, object]]:
    """The completions sent for one command, with the diagnostics payload decoded."""
    found: List[Dict[str, object]] = []
    for body in service.completions():
        if body["HostCommandIdentifier"] == host_command_identifier:
            decoded = dict(body)
            decoded["payload"] = json.loads(body["Diagnostics"]["Payload"])
            found.append(decoded)
    return found


def acknowledgements_of(service: RecordsRequests, host_command_identifier: str) -> List[bool]:
    """The IsCommandNoop flag of each acknowledgement of one command."""
    return [
        bool(json.loads(request.body["Diagnostics"]["Payload"])["IsCommandNoop"])
        for request in service.requests_for("PutHostCommandAcknowledgement")
        if request.body["HostCommandIdentifier"] == host_command_identifier
        and request.fault is None
    ]
