"""On-premises instances: Register, Deregister, Get, BatchGet, List, and their tags.

An instance is registered under a name with exactly one IAM ARN (a user's, as printed by
``codedeploy-server keys create-host``, or a session's); the ARN is how the command
service recognises the host when its agent polls. A name may be registered again after
it was deregistered (its old tags are dropped). Tags select the hosts of deployment
groups; an instance has at most 10.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from server.access_keys.identities import partition_for
from server.codedeploy_api.context import (
    ApiContext,
    check_batch_size,
    checked_tag_filters,
    checked_tags,
    page_of_names,
)
from server.database.schema import instance_tags, on_premises_instances
from server.errors import ApiError
from server.group_hosts import tag_filter_matches

MAX_TAGS_PER_INSTANCE = 10
_INSTANCE_NAME = re.compile(r"^[A-Za-z0-9+=,.@_-]{1,100}$")
_IAM_USER_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:user/[\w+=,.@/-]{1,512}$")
_IAM_SESSION_ARN = re.compile(r"^arn:aws[a-z-]*:sts::\d{12}:assumed-role/[\w+=,.@/-]{1,512}$")


def _check_instance_name(name: str) -> str:
    if not _INSTANCE_NAME.match(name):
        raise ApiError(
            "InvalidInstanceNameException",
            f"The instance name {name[:120]!r} is not valid: 1 to 100 letters, digits or"
            " +=,.@_- characters.",
        )
    return name


def _registered_names(connection: Connection, names: List[str]) -> List[str]:
    rows = connection.execute(
        sa.select(on_premises_instances.c.name).where(
            on_premises_instances.c.name.in_(names),
            on_premises_instances.c.deregistered_at.is_(None),
        )
    )
    return [str(name) for (name,) in rows]


def _tags_by_instance(
    connection: Connection, names: Optional[List[str]]
) -> Dict[str, Dict[str, str]]:
    query = sa.select(instance_tags).order_by(instance_tags.c.key)
    if names is not None:
        query = query.where(instance_tags.c.instance_name.in_(names))
    tags: Dict[str, Dict[str, str]] = {}
    for row in connection.execute(query):
        tags.setdefault(row.instance_name, {})[row.key] = row.value
    return tags


def _info(row: sa.RowMapping, tags: Dict[str, str]) -> Dict[str, Any]:
    info: Dict[str, Any] = {
        "instanceName": row["name"],
        "instanceArn": row["instance_arn"],
        "registerTime": row["registered_at"],
        "tags": [{"Key": key, "Value": value} for key, value in tags.items()],
    }
    for column, key in (
        ("iam_user_arn", "iamUserArn"),
        ("iam_session_arn", "iamSessionArn"),
        ("deregistered_at", "deregisterTime"),
    ):
        if row[column] is not None:
            info[key] = row[column]
    return info


def _checked_arns(request: Dict[str, Any]) -> tuple[Optional[str], Optional[str]]:
    user, session = request.get("iamUserArn"), request.get("iamSessionArn")
    if user and session:
        raise ApiError(
            "MultipleIamArnsProvidedException", "Give either an IAM user ARN or a session ARN."
        )
    if not user and not session:
        raise ApiError("IamArnRequiredException", "An IAM user ARN or session ARN is required.")
    if user and not _IAM_USER_ARN.match(user):
        raise ApiError("InvalidIamUserArnException", f"The IAM user ARN {user[:200]} is not valid.")
    if session and not _IAM_SESSION_ARN.match(session):
        raise ApiError(
            "InvalidIamSessionArnException", f"The IAM session ARN {session[:200]} is not valid."
        )
    return user, session


def _check_arn_free(connection: Connection, column: sa.Column[Any], arn: str, kind: str) -> None:
    taken = connection.execute(
        sa.select(on_premises_instances.c.name).where(
            column == arn, on_premises_instances.c.deregistered_at.is_(None)
        )
    ).first()
    if taken is not None:
        raise ApiError(
            f"{kind}AlreadyRegisteredException",
            f"The ARN {arn} is already registered for instance {taken.name}.",
        )


def register_on_premises_instance(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    name = _check_instance_name(request["instanceName"])
    user, session = _checked_arns(request)
    existing = connection.execute(
        sa.select(on_premises_instances).where(on_premises_instances.c.name == name)
    ).first()
    if existing is not None and existing.deregistered_at is None:
        raise ApiError(
            "InstanceNameAlreadyRegisteredException",
            f"The on-premises instance name {name} is already registered.",
        )
    if user:
        _check_arn_free(connection, on_premises_instances.c.iam_user_arn, user, "IamUserArn")
    if session:
        _check_arn_free(
            connection, on_premises_instances.c.iam_session_arn, session, "IamSessionArn"
        )
    if existing is not None:
        connection.execute(
            on_premises_instances.delete().where(on_premises_instances.c.name == name)
        )
    config = context.config
    connection.execute(
        on_premises_instances.insert().values(
            name=name,
            iam_user_arn=user,
            iam_session_arn=session,
            instance_arn=f"arn:{partition_for(config.region)}:codedeploy:{config.region}:"
            f"{config.account_id}:instance/{name}",
            registered_at=context.now,
            deregistered_at=None,
        )
    )
    return {}


def deregister_on_premises_instance(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    name = _check_instance_name(request["instanceName"])
    connection.execute(
        on_premises_instances.update()
        .where(
            on_premises_instances.c.name == name, on_premises_instances.c.deregistered_at.is_(None)
        )
        .values(deregistered_at=context.now)
    )
    return {}


def get_on_premises_instance(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    name = _check_instance_name(request["instanceName"])
    row = connection.execute(
        sa.select(on_premises_instances).where(on_premises_instances.c.name == name)
    ).first()
    if row is None:
        raise ApiError(
            "InstanceNotRegisteredException", f"The on-premises instance {name} is not registered."
        )
    tags = _tags_by_instance(connection, [name]).get(name, {})
    return {"instanceInfo": _info(row._mapping, tags)}


def batch_get_on_premises_instances(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    names = [_check_instance_name(name) for name in request["instanceNames"]]
    check_batch_size(names, "instances")
    rows = connection.execute(
        sa.select(on_premises_instances)
        .where(on_premises_instances.c.name.in_(names))
        .order_by(on_premises_instances.c.name)
    ).all()
    tags = _tags_by_instance(connection, names)
    return {"instanceInfos": [_info(row._mapping, tags.get(row.name, {})) for row in rows]}


def list_on_premises_instances(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    query = sa.select(on_premises_instances.c.name).order_by(on_premises_instances.c.name)
    status = request.get("registrationStatus")
    if status == "Registered":
        query = query.where(on_premises_instances.c.deregistered_at.is_(None))
    elif status == "Deregistered":
        query = query.where(on_premises_instances.c.deregistered_at.is_not(None))
    names = [str(name) for (name,) in connection.execute(query)]
    filters = checked_tag_filters(request.get("tagFilters") or [], "InvalidTagFilterException")
    if filters:
        tags = _tags_by_instance(connection, None)
        names = [
            name
            for name in names
            if any(tag_filter_matches(f, tags.get(name, {})) for f in filters)
        ]
    page, token = page_of_names(names, request.get("nextToken"))
    return {"instanceNames": page, **({"nextToken": token} if token else {})}


def _checked_tag_request(
    connection: Connection, request: Dict[str, Any]
) -> tuple[List[str], List[Dict[str, str]]]:
    names = [_check_instance_name(name) for name in request["instanceNames"]]
    if not names:
        raise ApiError("InstanceNameRequiredException", "At least one instance name is required.")
    if len(names) > MAX_TAGS_PER_INSTANCE * 10:
        raise ApiError(
            "InstanceLimitExceededException", "Too many instances in one call (100 at most)."
        )
    tags = checked_tags(request["tags"], "InvalidTagException")
    if not tags:
        raise ApiError("TagRequiredException", "At least one tag is required.")
    registered = set(_registered_names(connection, names))
    missing = [name for name in names if name not in registered]
    if missing:
        raise ApiError(
            "InstanceNotRegisteredException",
            f"The on-premises instance {missing[0]} is not registered.",
        )
    return names, tags


def add_tags_to_on_premises_instances(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    names, tags = _checked_tag_request(connection, request)
    current = _tags_by_instance(connection, names)
    for name in names:
        merged = {**current.get(name, {}), **{tag["Key"]: tag["Value"] for tag in tags}}
        if len(merged) > MAX_TAGS_PER_INSTANCE:
            raise ApiError(
                "TagLimitExceededException",
                f"An on-premises instance has at most {MAX_TAGS_PER_INSTANCE} tags; {name} would have {len(merged)}.",
            )
        connection.execute(instance_tags.delete().where(instance_tags.c.instance_name == name))
        connection.execute(
            instance_tags.insert(),
            [{"instance_name": name, "key": key, "value": value} for key, value in merged.items()],
        )
    return {}


def remove_tags_from_on_premises_instances(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    names, tags = _checked_tag_request(connection, request)
    for tag in tags:
        condition = [instance_tags.c.instance_name.in_(names), instance_tags.c.key == tag["Key"]]
        if tag["Value"]:
            condition.append(instance_tags.c.value == tag["Value"])
        connection.execute(instance_tags.delete().where(*condition))
    return {}
