"""The command service API the agents speak (docs/behaviour.md section 5): PollHostCommand,
GetDeploymentSpecification, PutHostCommandAcknowledgement, PutHostCommandComplete and
PostHostCommandUpdate, in the wire format of the models the agent ships.

Each request is checked against that model, then against who signed it: a host key acts
only as its own host. The ``HostIdentifier`` a host sends must be its key's ARN, and the
command or deployment it names must be its own instance's (the on-premises instance
registered with that ARN); anything else is ``AccessDeniedException``. A poll returns a
:class:`HostPoll` that the HTTP layer answers, waiting for a command when there is none
yet (:mod:`server.web.app`). Deployment specifications are always ``PKCS7/JSON`` signed by
the server's signer, never unsigned.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Set, Tuple, Union

import sqlalchemy as sa
from botocore.loaders import create_loader  # type: ignore[import-untyped]
from botocore.model import ServiceModel  # type: ignore[import-untyped]
from sqlalchemy.engine import Connection

from agent.aws_clients.command_service import DEPLOYMENT_SYSTEM, MODEL_DATA_PATH, SERVICE_NAME
from server.codedeploy_api.validation import validate_request
from server.database.compiled import CompiledStatement
from server.database.engine import Database
from server.database.schema import deployment_targets, deployments
from server.deployment_engine import IN_PLACE_COMMANDS
from server.errors import ApiError
from server.host_command_flow import (
    HOST_INSTANCE_NAMES,
    LockedDeployment,
    NeedsExclusiveLock,
    acknowledge_command,
    command_owner,
    complete_command,
    diagnostics_from_envelope,
    hand_out_command,
    instance_for_host,
    lock_deployment_of_command,
    touch_command,
)
from server.host_instances import HostInstances
from server.host_wakeups import announce_in_transaction
from server.signer.signing import DeploymentSigner

CLIENT_ERROR = "ClientException"
_CACHED_SPECIFICATIONS = 256
# Built once and run compiled (every command asks: server/database/compiled.py says why).
_DEPLOYMENT_ROW = CompiledStatement(
    sa.select(deployments).where(deployments.c.id == sa.bindparam("deployment"))
)
# The caller's target in the deployment: its instance found from its ARN (``arn``).
_CALLERS_TARGET = CompiledStatement(
    sa.select(deployment_targets.c.status).where(
        deployment_targets.c.deployment_id == sa.bindparam("deployment"),
        deployment_targets.c.instance_name.in_(HOST_INSTANCE_NAMES),
    )
)


def load_command_service_model() -> ServiceModel:
    """The model the agent's client is built from (read from the agent's package)."""
    loader = create_loader()
    loader.search_paths.insert(0, str(MODEL_DATA_PATH))
    return ServiceModel(
        loader.load_service_model(SERVICE_NAME, "service-2"), service_name=SERVICE_NAME
    )


@dataclass(frozen=True)
class HostPoll:
    """A PollHostCommand to answer: the host's instance (None when no instance is
    registered with its ARN: it waits, and gets nothing) and when the poll began."""

    host_identifier: str
    instance: Optional[str]
    started: float


class SignedSpecifications:
    """Each deployment's signed specification, made once (a deployment never changes what
    its hosts are told) and kept for the latest deployments; thread-safe."""

    def __init__(self, signer: DeploymentSigner) -> None:
        self.signer = signer
        self._signed: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def cached(self, deployment_id: str) -> Optional[str]:
        """The deployment's signed specification when it is kept, else None."""
        with self._lock:
            if deployment_id in self._signed:
                self._signed.move_to_end(deployment_id)
                return self._signed[deployment_id]
        return None

    def get(self, deployment_id: str, make_json: Callable[[], str]) -> str:
        signed = self.cached(deployment_id)
        if signed is not None:
            return signed
        signed = self.signer.sign(make_json())
        with self._lock:
            self._signed[deployment_id] = signed
            while len(self._signed) > _CACHED_SPECIFICATIONS:
                self._signed.popitem(last=False)
        return signed


@dataclass(frozen=True)
class CommandRequest:
    """One command service call: who made it, when, and what it carries. ``woken`` collects
    the hosts that got a new command: the caller wakes their polls."""

    database: Database
    specifications: SignedSpecifications
    caller_arn: str
    now: float
    document: Dict[str, Any]
    woken: Set[str] = field(default_factory=set)
    instances: HostInstances = field(default_factory=HostInstances)


def _denied(caller_arn: str, what: str) -> ApiError:
    return ApiError(
        "AccessDeniedException",
        f"User: {caller_arn} is not authorized to {what}: a host key acts only as its own host.",
    )


def _own_host(request: CommandRequest) -> None:
    host = request.document.get("HostIdentifier")
    if host != request.caller_arn:
        raise _denied(request.caller_arn, f"act as host {str(host)[:200]}")


def _caller_instance(connection: Connection, request: CommandRequest) -> Optional[str]:
    return instance_for_host(connection, request.caller_arn)


def _own_command(connection: Connection, request: CommandRequest) -> Tuple[str, str]:
    """The id of the command the request names, once it is the caller's own, and the id of
    its deployment."""
    command_id = str(request.document.get("HostCommandIdentifier"))
    owner = command_owner(connection, command_id, request.caller_arn)
    if owner is None:
        raise ApiError(CLIENT_ERROR, f"There is no host command {command_id[:100]}.")
    deployment_id, owned = owner
    if not owned:
        raise _denied(request.caller_arn, f"use host command {command_id[:100]}")
    return command_id, deployment_id


def _own_locked_command(
    connection: Connection, request: CommandRequest, shared: bool
) -> Tuple[str, LockedDeployment]:
    """The id of the command the request names, once it is the caller's own, and its
    deployment's row, locked for this transaction (``shared``: against changes only)."""
    command_id = str(request.document.get("HostCommandIdentifier"))
    found = lock_deployment_of_command(connection, command_id, request.caller_arn, shared=shared)
    if found is None:
        raise ApiError(CLIENT_ERROR, f"There is no host command {command_id[:100]}.")
    if not found.owned:
        raise _denied(request.caller_arn, f"use host command {command_id[:100]}")
    return command_id, found


def _write_shared_first(
    request: CommandRequest, work: Callable[[Connection, Set[str], bool], Any], shared: bool
) -> Any:
    """``work`` in a write transaction holding its deployment's row shared when ``shared``
    (on PostgreSQL: the hosts of one deployment acknowledge and complete side by side),
    run again with the row locked exclusively when it turns out to need that."""
    if shared and request.database.dialect == "postgresql":
        try:
            return _write(request, lambda connection, woken: work(connection, woken, True))
        except NeedsExclusiveLock:
            pass
    return _write(request, lambda connection, woken: work(connection, woken, False))


def _write(request: CommandRequest, work: Callable[[Connection, Set[str]], Any]) -> Any:
    """Run ``work`` in one write transaction (retried when PostgreSQL picks it as a
    deadlock's victim); announce the hosts it gave commands to."""

    def attempt(connection: Connection) -> Any:
        woken: Set[str] = set()
        result = work(connection, woken)
        announce_in_transaction(connection, woken)
        return result, woken

    result, woken = request.database.write_retrying(attempt)
    request.woken.update(woken)
    return result


def poll_host_command(request: CommandRequest) -> HostPoll:
    _own_host(request)

    def read() -> Optional[str]:
        with request.database.read() as connection:
            return _caller_instance(connection, request)

    instance = request.instances.get(request.caller_arn, read)
    return HostPoll(request.caller_arn, instance, request.now)


def hand_out_to_poll(database: Database, poll: HostPoll, now: float) -> Optional[Dict[str, Any]]:
    """The PollHostCommand answer when the host has a command now, else None."""
    if poll.instance is None:
        return None
    # Straight to a write: a read first (to spare a write when there is nothing) cost a
    # transaction more on almost every poll that mattered, those that find a command.
    with database.write() as connection:
        command = hand_out_command(connection, poll.instance, poll.started, now)
    if command is None:
        return None
    return {
        "HostCommand": {
            "HostCommandIdentifier": command["id"],
            "HostIdentifier": poll.host_identifier,
            "DeploymentExecutionId": command["deployment_id"],
            "CommandName": command["command_name"],
            "Nonce": command["nonce"],
        }
    }


def _revision(location: Dict[str, Any]) -> Dict[str, Any]:
    if location["revisionType"] == "GitHub":
        github = location["gitHubLocation"]
        account, _, repository = github["repository"].partition("/")
        return {
            "RevisionType": "GitHub",
            "GitHubRevision": {
                "Account": account,
                "Repository": repository,
                "CommitId": github["commitId"],
            },
        }
    s3 = location["s3Location"]
    revision = {"Bucket": s3["bucket"], "Key": s3["key"], "BundleType": s3["bundleType"]}
    for member, name in (("version", "Version"), ("eTag", "ETag")):
        if s3.get(member):
            revision[name] = s3[member]
    return {"RevisionType": "S3", "S3Revision": revision}


def specification_json(deployment: Any) -> str:
    """The deployment specification the agent parses (docs/behaviour.md section 6)."""
    settings = deployment["settings"]
    document = {
        "DeploymentId": deployment["id"],
        "DeploymentGroupId": deployment["deployment_group_id"],
        "DeploymentGroupName": deployment["deployment_group_name"],
        "ApplicationName": deployment["application_name"],
        "DeploymentCreator": deployment["creator"],
        "DeploymentType": "IN_PLACE",
        "AgentActionOverrides": {
            "AgentOverrides": {"FileExistsBehavior": settings.get("fileExistsBehavior", "DISALLOW")}
        },
        "AllPossibleLifecycleEvents": list(IN_PLACE_COMMANDS),
        "Revision": _revision(deployment["location"]),
    }
    return json.dumps(document, sort_keys=True)


def get_deployment_specification(request: CommandRequest) -> Dict[str, Any]:
    _own_host(request)
    deployment_id = str(request.document.get("DeploymentExecutionId"))
    signed = request.specifications.cached(deployment_id)
    with request.database.read() as connection:
        target = _CALLERS_TARGET.first(
            connection, {"deployment": deployment_id, "arn": request.caller_arn}
        )
        # The deployment's row only when it is needed: to make its specification, or to
        # tell a deployment that does not exist from one that is not the caller's.
        deployment = (
            None
            if target is not None and signed is not None
            else _DEPLOYMENT_ROW.first(connection, {"deployment": deployment_id})
        )
    if signed is None or target is None:
        if deployment is None:
            raise ApiError(CLIENT_ERROR, f"There is no deployment {deployment_id[:100]}.")
        if target is None:
            raise _denied(request.caller_arn, f"read deployment {deployment_id}")
        row = deployment
        signed = request.specifications.get(deployment_id, lambda: specification_json(row))
    return {
        "DeploymentSystem": DEPLOYMENT_SYSTEM,
        "DeploymentSpecification": {
            "GenericEnvelope": {
                "Format": request.specifications.signer.envelope_format,
                "Payload": signed,
            }
        },
    }


def put_host_command_acknowledgement(request: CommandRequest) -> Dict[str, Any]:
    def work(connection: Connection, woken: Set[str], shared: bool) -> str:
        command_id, deployment = _own_locked_command(connection, request, shared)
        return acknowledge_command(connection, command_id, request.now, woken, locked=deployment)

    return {"CommandStatus": _write_shared_first(request, work, shared=True)}


def put_host_command_complete(request: CommandRequest) -> Dict[str, Any]:
    status = request.document.get("CommandStatus")
    if status not in ("Succeeded", "Failed"):
        raise ApiError(CLIENT_ERROR, "A command completes as Succeeded or Failed.")
    diagnostics = diagnostics_from_envelope(request.document.get("Diagnostics"))

    def work(connection: Connection, woken: Set[str], shared: bool) -> None:
        command_id, deployment = _own_locked_command(connection, request, shared)
        complete_command(
            connection, command_id, str(status), diagnostics, request.now, woken, locked=deployment
        )

    # A completion that ends its host changes the deployment: exclusive from the start.
    _write_shared_first(request, work, shared=status == "Succeeded")
    return {}


def post_host_command_update(request: CommandRequest) -> Dict[str, Any]:
    def work(connection: Connection, woken: Set[str]) -> str:
        return touch_command(connection, _own_command(connection, request)[0], request.now)

    return {"CommandStatus": _write(request, work)}


COMMAND_OPERATIONS: Dict[str, Callable[[CommandRequest], Union[Dict[str, Any], HostPoll]]] = {
    "PollHostCommand": poll_host_command,
    "GetDeploymentSpecification": get_deployment_specification,
    "PutHostCommandAcknowledgement": put_host_command_acknowledgement,
    "PutHostCommandComplete": put_host_command_complete,
    "PostHostCommandUpdate": post_host_command_update,
}


def answer_command_request(
    model: ServiceModel, operation: str, request: CommandRequest
) -> Union[Dict[str, Any], HostPoll]:
    """Carry out one command service operation (blocks on the database)."""
    handler = COMMAND_OPERATIONS.get(operation)
    if handler is None:
        raise ApiError("UnknownOperationException", "")
    try:
        validate_request(model.operation_model(operation), request.document)
    except ApiError as error:
        raise ApiError(CLIENT_ERROR, error.message) from None
    return handler(request)
