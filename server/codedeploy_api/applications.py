"""Applications: Create, Get, List, BatchGet, Update (rename) and Delete.

Only the ``Server`` compute platform (EC2/on-premises hosts running the agent) is served;
Lambda and ECS applications are refused with CodeDeploy's
``InvalidComputePlatformException`` rather than stored and never deployable. Deleting an
application deletes its deployment groups and registered revisions, as AWS does;
deleting one that does not exist succeeds, as it does with AWS.
"""

from __future__ import annotations

from typing import Any, Dict, List

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from server.codedeploy_api.context import (
    ApiContext,
    check_batch_size,
    checked_tags,
    new_id,
    page_of_names,
)
from server.database.schema import applications
from server.errors import ApiError

SERVER_PLATFORM = "Server"


def application_row(connection: Connection, name: str) -> sa.RowMapping:
    """The application named ``name``; ``ApplicationDoesNotExistException`` when none."""
    row = connection.execute(sa.select(applications).where(applications.c.name == name)).first()
    if row is None:
        raise ApiError("ApplicationDoesNotExistException", f"No application found for name: {name}")
    return row._mapping


def check_server_platform(platform: str) -> None:
    if platform != SERVER_PLATFORM:
        raise ApiError(
            "InvalidComputePlatformException",
            f"The compute platform {platform} is not served here: only Server"
            " (on-premises hosts running the agent).",
        )


def _already_exists(name: str) -> ApiError:
    return ApiError(
        "ApplicationAlreadyExistsException",
        f"The application {name} already exists with the IAM user or AWS account.",
    )


def _info(row: sa.RowMapping) -> Dict[str, Any]:
    return {
        "applicationId": row["id"],
        "applicationName": row["name"],
        "createTime": row["created_at"],
        "linkedToGitHub": False,
        "computePlatform": row["compute_platform"],
    }


def create_application(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    name = request["applicationName"]
    platform = request.get("computePlatform", SERVER_PLATFORM)
    check_server_platform(platform)
    tags = checked_tags(request.get("tags") or [], "InvalidTagsToAddException")
    identifier = new_id()
    try:
        with connection.begin_nested():
            connection.execute(
                applications.insert().values(
                    id=identifier,
                    name=name,
                    compute_platform=platform,
                    tags=tags,
                    created_at=context.now,
                )
            )
    except IntegrityError:
        raise _already_exists(name) from None
    return {"applicationId": identifier}


def get_application(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    return {"application": _info(application_row(connection, request["applicationName"]))}


def list_applications(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    names = connection.execute(sa.select(applications.c.name).order_by(applications.c.name))
    page, token = page_of_names([str(name) for (name,) in names], request.get("nextToken"))
    return {"applications": page, **({"nextToken": token} if token else {})}


def batch_get_applications(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    names: List[str] = request["applicationNames"]
    check_batch_size(names, "applications")
    return {"applicationsInfo": [_info(application_row(connection, name)) for name in names]}


def update_application(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    name = request.get("applicationName")
    if not name:
        raise ApiError("ApplicationNameRequiredException", "The application name is required.")
    row = application_row(connection, name)
    new_name = request.get("newApplicationName")
    if new_name and new_name != name:
        try:
            with connection.begin_nested():
                connection.execute(
                    applications.update()
                    .where(applications.c.id == row["id"])
                    .values(name=new_name)
                )
        except IntegrityError:
            raise _already_exists(new_name) from None
    return {}


def delete_application(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    connection.execute(
        applications.delete().where(applications.c.name == request["applicationName"])
    )
    return {}
