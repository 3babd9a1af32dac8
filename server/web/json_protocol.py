"""One API request, from the bytes that arrived to the JSON answered, off the event loop.

The order is AWS's: the signature first (no anonymous access; an unknown key, a wrong or
expired signature or a revoked key is refused before anything else is looked at), then
which API and operation ``X-Amz-Target`` names and whether this kind of key may call it,
then the JSON body, its shape, and the operation itself in one transaction. Every refusal
is an :class:`~server.errors.ApiError` rendered as HTTP 400 with ``__type`` and
``message``; only a fault of the server's own (a bug, a database that cannot be reached)
is a 5xx, which clients retry.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Set, Tuple, Union

import structlog
from botocore.model import ServiceModel  # type: ignore[import-untyped]
from sqlalchemy.exc import OperationalError

from server.access_keys.identities import key_arn
from server.access_keys.store import ActiveKey
from server.codedeploy_api.context import ApiContext
from server.codedeploy_api.operations import OPERATIONS, run_operation_in_database
from server.codedeploy_api.validation import validate_request
from server.command_service import (
    COMMAND_OPERATIONS,
    CommandRequest,
    HostPoll,
    SignedSpecifications,
    answer_command_request,
)
from server.configuration import ServerConfig
from server.database.engine import Database
from server.errors import ApiError
from server.host_instances import HostInstances
from server.host_wakeups import HostWakeups
from server.request_auth.policy import SIGNING_SERVICES, Api, authorise, split_target
from server.request_auth.sigv4 import (
    INVALID_SIGNATURE,
    ReceivedRequest,
    SigningKeys,
    check_claim_scope,
    parse_authorization,
    verify_signature,
)

log = structlog.get_logger(__name__)

JSON_CONTENT_TYPE = "application/x-amz-json-1.1"


@dataclass(frozen=True)
class ApiServices:
    """What answering a request needs, made once at start-up: the CodeDeploy API's model
    and the command service's, the signed specifications, and the hosts' waiting polls."""

    config: ServerConfig
    database: Database
    model: ServiceModel
    find_key: Callable[[str], Optional[ActiveKey]]
    command_model: ServiceModel
    specifications: SignedSpecifications
    wakeups: HostWakeups = field(default_factory=HostWakeups)
    signing_keys: SigningKeys = field(default_factory=SigningKeys)
    instances: HostInstances = field(default_factory=HostInstances)
    clock: Callable[[], float] = time.time


@dataclass(frozen=True)
class Outcome:
    """An answer; ``poll`` is set for a PollHostCommand the HTTP layer answers itself."""

    status: int
    document: Dict[str, Any]
    operation: str = ""
    caller: str = ""
    error: str = ""
    poll: Optional[HostPoll] = None


def _authenticate(services: ApiServices, request: ReceivedRequest) -> Tuple[ActiveKey, str]:
    """The key that signed the request, and the signing service it scoped."""
    header = request.headers.get("authorization")
    if not header:
        raise ApiError("MissingAuthenticationTokenException", "Missing Authentication Token")
    claim = parse_authorization(header)
    if claim.service not in SIGNING_SERVICES:
        raise ApiError(
            INVALID_SIGNATURE,
            f"Credential should be scoped to correct service: '{claim.service[:40]}' is not served here.",
        )
    check_claim_scope(claim, services.config.region, claim.service)
    if "x-amz-security-token" in request.headers:
        raise ApiError(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    key = services.find_key(claim.access_key_id)
    if key is None:
        raise ApiError(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    verify_signature(
        request,
        claim,
        key.secret_access_key,
        services.clock(),
        services.config.clock_skew_seconds,
        services.signing_keys,
    )
    return key, claim.service


def _parse_body(body: bytes) -> Dict[str, Any]:
    if not body.strip():
        return {}

    def refuse_constant(name: str) -> None:
        raise ValueError(name)

    try:
        document = json.loads(body.decode("utf-8"), parse_constant=refuse_constant)
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise ApiError("SerializationException", "The request body is not valid JSON.") from None
    if not isinstance(document, dict):
        raise ApiError("SerializationException", "The request body must be a JSON object.")
    return document


def _answer_codedeploy(
    services: ApiServices, operation_name: str, caller_arn: str, body: Dict[str, Any]
) -> Tuple[Dict[str, Any], Set[str]]:
    operation = OPERATIONS[operation_name]
    model = services.model.operation_model(operation_name)
    document = validate_request(model, body)
    context = ApiContext(services.config, model, caller_arn, services.clock())
    return run_operation_in_database(services.database, operation, context, document), context.woken


def _answer(
    services: ApiServices, request: ReceivedRequest, caller: list[str]
) -> Tuple[str, Union[Dict[str, Any], HostPoll]]:
    key, signing_service = _authenticate(services, request)
    caller.append(key.key.access_key_id)
    target, operation_name = split_target(request.headers.get("x-amz-target"))
    if target is None or target.signing_service != signing_service:
        raise ApiError("UnknownOperationException", "")
    caller_arn = key_arn(services.config, key.key)
    authorise(target, operation_name, key.key.kind, caller_arn)
    served = OPERATIONS if target.api is Api.CODEDEPLOY else COMMAND_OPERATIONS
    if operation_name not in served:
        raise ApiError("UnknownOperationException", "")
    body = _parse_body(request.body)
    if target.api is Api.CODEDEPLOY:
        response, woken = _answer_codedeploy(services, operation_name, caller_arn, body)
    else:
        command = CommandRequest(
            services.database,
            services.specifications,
            caller_arn,
            services.clock(),
            body,
            instances=services.instances,
        )
        answer = answer_command_request(services.command_model, operation_name, command)
        if isinstance(answer, HostPoll):
            return operation_name, answer
        response, woken = answer, command.woken
    services.wakeups.wake(woken)
    return operation_name, response


def answer_api_request(services: ApiServices, request: ReceivedRequest) -> Outcome:
    """Answer one POST (blocks on the database: call it from a worker thread)."""
    caller: list[str] = []
    operation = (request.headers.get("x-amz-target") or "").rpartition(".")[2][:64]
    try:
        operation, response = _answer(services, request, caller)
        if isinstance(response, HostPoll):
            return Outcome(200, {}, operation, "".join(caller), poll=response)
        return Outcome(200, response, operation, "".join(caller))
    except Exception as error:
        return failure_outcome(error, operation, "".join(caller))


def failure_outcome(error: Exception, operation: str, caller: str) -> Outcome:
    """The answer to a request that raised: its refusal, or a 5xx for the server's fault."""
    if isinstance(error, ApiError):
        return Outcome(error.status, error.to_document(), operation, caller, error.code)
    if isinstance(error, OperationalError):
        log.error(
            "database unavailable",
            operation=operation,
            reason=" ".join(str(error.orig).split())[:300],
        )
        unavailable = ApiError("ServiceUnavailableException", "The database is unavailable.")
        return Outcome(503, unavailable.to_document(), operation, caller, unavailable.code)
    log.error("internal error", operation=operation, exc_info=error)
    failure = ApiError("InternalFailure", "The server failed to answer; see its log.")
    return Outcome(500, failure.to_document(), operation, caller, failure.code)
