"""Simulated agents for fleet_bench: many hosts in one process, each a long-poller with its
own host key and its own keep-alive connection, speaking the command service as the real
agent does (JSON 1.1, ``X-Amz-Target``, SigV4 for ``codedeploy-commands`` by the agent's
own signer, agent/aws_clients/sigv4.py, as its calls' first attempts are), but whose
hooks do nothing: every command is acknowledged, its specification fetched, and completed
Succeeded at once.

:func:`run_worker` is the body of one worker process: it runs its share of the hosts on
asyncio until the driver writes to its pipe, then sends back what it measured
(:class:`Sample` and :class:`Receipt` records stamped with the wall clock, which the driver
splits by deployment).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from agent.aws_clients.sigv4 import RequestSigner, SigningCredentials
from agent.errors import Diagnostics, ErrorCode

TARGET_PREFIX = "CodeDeployCommandService_v20141006."
SIGNING_NAME = "codedeploy-commands"
SUCCEEDED = {
    "Format": "JSON",
    "Payload": Diagnostics(ErrorCode.SUCCEEDED, "Succeeded").to_payload(),
}
NOOP = {"Format": "JSON", "Payload": json.dumps({"IsCommandNoop": False})}


@dataclass(frozen=True)
class SimulatedHost:
    """One host's identity: its instance name, IAM user ARN and key."""

    name: str
    arn: str
    access_key_id: str
    secret: str


@dataclass(frozen=True)
class Sample:
    """One command-service call: its operation, when it started (epoch) and its round trip."""

    operation: str
    started: float
    seconds: float


@dataclass(frozen=True)
class Receipt:
    """A command reaching a host (epoch), and when that host completed its previous one."""

    received: float
    previous_completed: Optional[float]


class HostConnection:
    """One keep-alive HTTP/1.1 connection to the server (the network)."""

    def __init__(self, url: str, region: str) -> None:
        parts = urlsplit(url)
        self.url = url
        self.netloc = parts.netloc
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.region = region
        self.signer = RequestSigner(region, SIGNING_NAME)
        self.reader: Optional[asyncio.StreamReader] = None
        self.writer: Optional[asyncio.StreamWriter] = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(*self.address)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def signed(self, host: SimulatedHost, operation: str, document: Dict[str, Any]) -> bytes:
        """The request's bytes, signed with the host's key."""
        body = json.dumps(document).encode()
        headers = self.signer.signed_headers(
            SigningCredentials(host.access_key_id, host.secret),
            {
                "content-type": "application/x-amz-json-1.1",
                "host": self.netloc,
                "x-amz-target": TARGET_PREFIX + operation,
            },
            body,
            time.time(),
        )
        lines = ["POST / HTTP/1.1", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def call(
        self, host: SimulatedHost, operation: str, document: Dict[str, Any]
    ) -> Dict[str, Any]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(self.signed(host, operation, document))
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        answer: Dict[str, Any] = json.loads(await self.reader.readexactly(length) or b"{}")
        if status != 200:
            raise RuntimeError(f"{operation}: HTTP {status}: {answer}")
        return answer


class HostLoop:
    """One simulated agent: poll, then acknowledge, fetch and complete what it is given."""

    def __init__(self, host: SimulatedHost, connection: HostConnection) -> None:
        self.host = host
        self.connection = connection
        self.samples: List[Sample] = []
        self.receipts: List[Receipt] = []
        self.polled = asyncio.Event()
        self.last_completed: Optional[float] = None

    async def timed(self, operation: str, document: Dict[str, Any]) -> Dict[str, Any]:
        started = time.time()
        answer = await self.connection.call(self.host, operation, document)
        self.samples.append(Sample(operation, started, time.time() - started))
        return answer

    async def run(self) -> None:
        await self.connection.open()
        while True:
            poll = self.connection.call(
                self.host, "PollHostCommand", {"HostIdentifier": self.host.arn}
            )
            self.polled.set()
            command = (await poll).get("HostCommand")
            if command:
                self.receipts.append(Receipt(time.time(), self.last_completed))
                await self.carry_out(command)

    async def carry_out(self, command: Dict[str, Any]) -> None:
        identifier = command["HostCommandIdentifier"]
        acknowledged = await self.timed(
            "PutHostCommandAcknowledgement",
            {"HostCommandIdentifier": identifier, "Diagnostics": NOOP},
        )
        if acknowledged.get("CommandStatus") not in ("InProgress", "Pending"):
            return
        await self.timed(
            "GetDeploymentSpecification",
            {
                "DeploymentExecutionId": command["DeploymentExecutionId"],
                "HostIdentifier": self.host.arn,
            },
        )
        await self.timed(
            "PutHostCommandComplete",
            {
                "HostCommandIdentifier": identifier,
                "CommandStatus": "Succeeded",
                "Diagnostics": SUCCEEDED,
            },
        )
        self.last_completed = time.time()


async def _run_hosts(
    hosts: List[SimulatedHost], url: str, region: str, pipe: Any
) -> Tuple[List[Sample], List[Receipt]]:
    loops = [HostLoop(host, HostConnection(url, region)) for host in hosts]
    tasks = [asyncio.ensure_future(loop.run()) for loop in loops]
    await asyncio.gather(*(loop.polled.wait() for loop in loops))
    pipe.send("ready")
    told = asyncio.Event()
    asyncio.get_running_loop().add_reader(pipe.fileno(), told.set)
    await told.wait()
    for task in tasks:
        task.cancel()
    failures = [task for task in tasks if task.done() and not task.cancelled() and task.exception()]
    for task in failures[:3]:
        print(f"a simulated host failed: {task.exception()}", flush=True)
    for loop in loops:
        loop.connection.close()
    samples = [sample for loop in loops for sample in loop.samples]
    return samples, [receipt for loop in loops for receipt in loop.receipts]


def run_worker(hosts: List[SimulatedHost], url: str, region: str, pipe: Any) -> None:
    """One worker process: run ``hosts`` until told to stop, then send the measurements."""
    samples, receipts = asyncio.run(_run_hosts(hosts, url, region, pipe))
    pipe.recv()  # the stop message, seen but not read by the event loop
    pipe.send((samples, receipts))
