"""Checking a request's JSON against the operation's input shape in botocore's model.

Required members, types, string lengths, enum values, patterns and number ranges are the
model's. A member the model does not know is ignored, as AWS ignores it (a newer CLI may
send one). The error is named as CodeDeploy names it, from the exceptions the operation
declares: a missing ``applicationName`` is ``ApplicationNameRequiredException``, a bad one
``InvalidApplicationNameException``; where the operation declares no such exception, the
protocol's generic ``ValidationException`` is used.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
from typing import Any, Dict, List, Optional

from botocore.model import OperationModel, Shape  # type: ignore[import-untyped]

from server.codedeploy_api.service_model import error_names
from server.errors import ApiError

# Members whose exceptions are not named after the member itself.
_EXCEPTION_STEMS = {
    "serviceRoleArn": "Role",
    "applicationNames": "ApplicationName",
    "newApplicationName": "ApplicationName",
    "deploymentGroupNames": "DeploymentGroupName",
    "currentDeploymentGroupName": "DeploymentGroupName",
    "newDeploymentGroupName": "DeploymentGroupName",
    "instanceNames": "InstanceName",
    "revisions": "Revision",
    "tags": "Tag",
    "tagFilters": "TagFilter",
    "onPremisesInstanceTagFilters": "Tag",
    "onPremisesTagSet": "OnPremisesTagCombination",
    "ec2TagFilters": "EC2Tag",
    "ec2TagSet": "EC2TagCombination",
    "minimumHealthyHosts": "MinimumHealthyHostValue",
    "deployed": "DeployedStateFilter",
    "s3Bucket": "BucketNameFilter",
    "s3KeyPrefix": "KeyPrefixFilter",
    "autoRollbackConfiguration": "AutoRollbackConfig",
    "alarmConfiguration": "AlarmConfig",
    "triggerConfigurations": "TriggerConfig",
    "trafficRoutingConfig": "TrafficRoutingConfiguration",
    "zonalConfig": "ZonalDeploymentConfiguration",
    "autoScalingGroups": "AutoScalingGroup",
    "blueGreenDeploymentConfiguration": "BlueGreenDeploymentConfiguration",
    "deploymentIds": "DeploymentId",
    "targetId": "DeploymentTargetId",
    "targetIds": "DeploymentTargetId",
    "instanceIds": "InstanceId",
    "includeOnlyStatuses": "DeploymentStatus",
    "createTimeRange": "TimeRange",
    "instanceStatusFilter": "InstanceStatus",
    "instanceTypeFilter": "InstanceType",
    "targetFilters": "TargetFilterName",
    "ignoreApplicationStopFailures": "IgnoreApplicationStopFailuresValue",
    "updateOutdatedInstancesOnly": "UpdateOutdatedInstancesOnlyValue",
    "overrideAlarmConfiguration": "AlarmConfig",
}
_MAX_DEPTH = 20


def exception_for(operation: OperationModel, member: str, *, missing: bool) -> str:
    """The exception CodeDeploy raises for a missing or invalid top-level ``member``."""
    declared = error_names(operation)
    stem = _EXCEPTION_STEMS.get(member, member[:1].upper() + member[1:])
    if missing and f"{stem}RequiredException" in declared:
        return f"{stem}RequiredException"
    for name in (f"Invalid{stem}Exception", "InvalidInputException"):
        if name in declared:
            return name
    return "ValidationException"


def invalid(operation: OperationModel, member: str, message: str) -> ApiError:
    return ApiError(exception_for(operation, member, missing=False), message)


def required(operation: OperationModel, member: str, message: str) -> ApiError:
    return ApiError(exception_for(operation, member, missing=True), message)


class _Problem(Exception):
    def __init__(self, path: List[str], message: str, missing: bool = False) -> None:
        super().__init__(message)
        self.path = path
        self.message = message
        self.missing = missing


def _where(path: List[str]) -> str:
    return ".".join(path) or "the request"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_string(shape: Shape, value: Any, path: List[str]) -> None:
    if not isinstance(value, str):
        raise _Problem(path, f"{_where(path)} must be a string, not {_shown(value)}")
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and len(value) < low:
        raise _Problem(path, f"{_where(path)} must be at least {low} characters long")
    if high is not None and len(value) > high:
        raise _Problem(path, f"{_where(path)} must be at most {high} characters long")
    if shape.enum and value not in shape.enum:
        raise _Problem(
            path, f"{_where(path)} {_shown(value)} must be one of {', '.join(shape.enum)}"
        )
    pattern = shape.metadata.get("pattern")
    if pattern and re.fullmatch(pattern, value) is None:
        raise _Problem(path, f"{_where(path)} {_shown(value)} does not match {pattern}")


def _check_number(shape: Shape, value: Any, path: List[str]) -> None:
    whole = shape.type_name in ("integer", "long")
    if isinstance(value, bool) or not isinstance(value, (int, float) if not whole else int):
        kind = "a whole number" if whole else "a number"
        raise _Problem(path, f"{_where(path)} must be {kind}, not {_shown(value)}")
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if (low is not None and value < low) or (high is not None and value > high):
        raise _Problem(path, f"{_where(path)} {value} is out of range")


def timestamp_seconds(value: Any) -> Optional[float]:
    """A request's timestamp (epoch seconds, or ISO 8601 text) as epoch seconds; None when
    it is neither."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
        return moment.timestamp()
    return None


def _check_timestamp(value: Any, path: List[str]) -> None:
    if timestamp_seconds(value) is None:
        raise _Problem(path, f"{_where(path)} must be a timestamp, not {_shown(value)}")


def _check_structure(shape: Shape, value: Any, path: List[str]) -> None:
    if not isinstance(value, dict):
        raise _Problem(path, f"{_where(path)} must be an object, not {_shown(value)}")
    for name in shape.required_members:
        if value.get(name) is None or value.get(name) == "":
            raise _Problem([*path, name], f"{_where([*path, name])} is required", True)
    for name, member in shape.members.items():
        if value.get(name) is not None:
            _check(member, value[name], [*path, name])


def _check(shape: Shape, value: Any, path: List[str]) -> None:
    if len(path) > _MAX_DEPTH:
        raise _Problem(path, "the request is nested too deeply")
    kind = shape.type_name
    if kind == "structure":
        _check_structure(shape, value, path)
    elif kind == "list":
        if not isinstance(value, list):
            raise _Problem(path, f"{_where(path)} must be a list, not {_shown(value)}")
        for index, item in enumerate(value):
            _check(shape.member, item, [*path, str(index)])
    elif kind == "map":
        if not isinstance(value, dict):
            raise _Problem(path, f"{_where(path)} must be an object, not {_shown(value)}")
        for key, item in value.items():
            _check(shape.value, item, [*path, str(key)])
    elif kind == "string":
        _check_string(shape, value, path)
    elif kind in ("integer", "long", "double", "float"):
        _check_number(shape, value, path)
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise _Problem(path, f"{_where(path)} must be true or false, not {_shown(value)}")
    elif kind == "timestamp":
        _check_timestamp(value, path)
    elif kind == "blob":
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise _Problem(path, f"{_where(path)} must be base64 text") from None


def validate_request(operation: OperationModel, document: Dict[str, Any]) -> Dict[str, Any]:
    """``document`` when it fits the operation's input shape; else the named error."""
    shape: Optional[Shape] = operation.input_shape
    if shape is None:
        return document
    try:
        _check_structure(shape, document, [])
    except _Problem as problem:
        member = problem.path[0] if problem.path else ""
        raise ApiError(
            exception_for(operation, member, missing=problem.missing)
            if member
            else "ValidationException",
            problem.message,
        ) from None
    return document
