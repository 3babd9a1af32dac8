"""Application revisions: Register (what ``aws deploy push`` calls), Get, List, BatchGet.

A revision is where a bundle lives: an S3 object (bucket, key, bundle type ``tar``,
``tgz`` or ``zip``, and optionally its version and ETag) or a GitHub commit
(``owner/repository`` and a 40-hex-digit commit id). Registering the same location again
keeps the first registration time and takes the new description. Inline ``String`` and
``AppSpecContent`` revisions serve Lambda and ECS deployments and are refused.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Dict, List, Optional

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from server.codedeploy_api.applications import application_row
from server.codedeploy_api.context import (
    PAGE_SIZE,
    ApiContext,
    check_batch_size,
    decode_page_token,
    encode_page_token,
    new_id,
)
from server.database.schema import application_revisions, deployments
from server.errors import ApiError

DESCRIPTION_MAX = 4096
_BUNDLE_TYPES = ("tar", "tgz", "zip")
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")
_COMMIT = re.compile(r"^[0-9a-fA-F]{40}$")
_SORT_COLUMNS = {
    "registerTime": application_revisions.c.registered_at,
    "firstUsedTime": application_revisions.c.first_used_at,
    "lastUsedTime": application_revisions.c.last_used_at,
}


def _invalid(message: str) -> ApiError:
    return ApiError("InvalidRevisionException", message)


def canonical_location(revision: Dict[str, Any]) -> Dict[str, Any]:
    """The location as stored and shown: only the members of its type, checked."""
    kind = revision.get("revisionType")
    if kind == "S3":
        s3 = revision.get("s3Location") or {}
        if not s3.get("bucket") or not s3.get("key"):
            raise _invalid("An S3 revision needs s3Location with its bucket and key.")
        if s3.get("bundleType") not in _BUNDLE_TYPES:
            raise _invalid("An S3 revision's bundleType must be tar, tgz or zip.")
        keep = ("bucket", "key", "bundleType", "version", "eTag")
        return {"revisionType": "S3", "s3Location": {k: s3[k] for k in keep if s3.get(k)}}
    if kind == "GitHub":
        github = revision.get("gitHubLocation") or {}
        if not _REPOSITORY.match(github.get("repository") or ""):
            raise _invalid("A GitHub revision's repository must be OWNER/REPOSITORY.")
        if not _COMMIT.match(github.get("commitId") or ""):
            raise _invalid("A GitHub revision's commitId must be a 40-hexadecimal-digit commit.")
        location = {"repository": github["repository"], "commitId": github["commitId"]}
        return {"revisionType": "GitHub", "gitHubLocation": location}
    raise _invalid(
        f"Revision type {str(kind)[:40]} is not served here: use S3 or GitHub"
        " (String and AppSpecContent revisions are for Lambda and ECS)."
    )


def location_hash(location: Dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(location, sort_keys=True).encode()).hexdigest()


def _revision_row(
    connection: Connection, application_id: str, location: Dict[str, Any]
) -> Optional[sa.RowMapping]:
    row = connection.execute(
        sa.select(application_revisions).where(
            application_revisions.c.application_id == application_id,
            application_revisions.c.location_hash == location_hash(location),
        )
    ).first()
    return None if row is None else row._mapping


def _generic_info(connection: Connection, row: sa.RowMapping) -> Dict[str, Any]:
    groups = connection.execute(
        sa.select(deployments.c.deployment_group_name)
        .where(deployments.c.revision_id == row["id"])
        .distinct()
        .order_by(deployments.c.deployment_group_name)
    )
    info: Dict[str, Any] = {
        "registerTime": row["registered_at"],
        "deploymentGroups": [str(name) for (name,) in groups],
    }
    for column, key in (
        ("description", "description"),
        ("first_used_at", "firstUsedTime"),
        ("last_used_at", "lastUsedTime"),
    ):
        if row[column] is not None:
            info[key] = row[column]
    return info


def registered_revision_id(
    connection: Connection,
    application_id: str,
    location: Dict[str, Any],
    now: float,
    description: Optional[str] = None,
) -> str:
    """The id of the application's revision at ``location``, registered now if it was not
    (a deployment of a revision never registered registers it, as CodeDeploy does)."""
    existing = _revision_row(connection, application_id, location)
    if existing is not None:
        if description is not None:
            connection.execute(
                application_revisions.update()
                .where(application_revisions.c.id == existing["id"])
                .values(description=description)
            )
        return str(existing["id"])
    s3 = location.get("s3Location") or {}
    identifier = new_id()
    connection.execute(
        application_revisions.insert().values(
            id=identifier,
            application_id=application_id,
            location_hash=location_hash(location),
            revision_type=location["revisionType"],
            location=location,
            s3_bucket=s3.get("bucket"),
            s3_key=s3.get("key"),
            description=description,
            registered_at=now,
        )
    )
    return identifier


def check_description(description: Optional[str]) -> None:
    if description is not None and len(description) > DESCRIPTION_MAX:
        raise ApiError(
            "DescriptionTooLongException", f"The description is longer than {DESCRIPTION_MAX}."
        )


def register_application_revision(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    application = application_row(connection, request["applicationName"])
    location = canonical_location(request["revision"])
    description = request.get("description")
    check_description(description)
    registered_revision_id(connection, application["id"], location, context.now, description)
    return {}


def get_application_revision(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    application = application_row(connection, request["applicationName"])
    location = canonical_location(request["revision"])
    row = _revision_row(connection, application["id"], location)
    if row is None:
        raise ApiError(
            "RevisionDoesNotExistException",
            f"No application revision found for revision {json.dumps(location)[:300]}",
        )
    return {
        "applicationName": application["name"],
        "revision": row["location"],
        "revisionInfo": _generic_info(connection, row),
    }


def batch_get_application_revisions(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    application = application_row(connection, request["applicationName"])
    revisions: List[Dict[str, Any]] = request["revisions"]
    check_batch_size(revisions, "revisions")
    found = []
    for revision in revisions:
        row = _revision_row(connection, application["id"], canonical_location(revision))
        if row is not None:
            found.append(
                {
                    "revisionLocation": row["location"],
                    "genericRevisionInfo": _generic_info(connection, row),
                }
            )
    return {"applicationName": application["name"], "revisions": found}


def list_application_revisions(
    connection: Connection, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    application = application_row(connection, request["applicationName"])
    query = sa.select(application_revisions.c.location).where(
        application_revisions.c.application_id == application["id"]
    )
    bucket, prefix = request.get("s3Bucket"), request.get("s3KeyPrefix")
    if prefix and not bucket:
        raise ApiError("BucketNameFilterRequiredException", "A key prefix filter needs s3Bucket.")
    if bucket:
        query = query.where(application_revisions.c.s3_bucket == bucket)
    if prefix:
        query = query.where(application_revisions.c.s3_key.startswith(prefix, autoescape=True))
    deployed = request.get("deployed", "ignore")
    if deployed == "include":
        query = query.where(application_revisions.c.first_used_at.is_not(None))
    elif deployed == "exclude":
        query = query.where(application_revisions.c.first_used_at.is_(None))
    column = _SORT_COLUMNS[request.get("sortBy", "registerTime")]
    order = column.desc() if request.get("sortOrder") == "descending" else column.asc()
    offset = decode_page_token(request.get("nextToken"), "offset") or 0
    if not isinstance(offset, int) or offset < 0:
        raise ApiError("InvalidNextTokenException", "The next token is not valid.")
    rows = connection.execute(
        query.order_by(order, application_revisions.c.id).offset(offset).limit(PAGE_SIZE + 1)
    ).all()
    response: Dict[str, Any] = {"revisions": [row.location for row in rows[:PAGE_SIZE]]}
    if len(rows) > PAGE_SIZE:
        response["nextToken"] = encode_page_token({"offset": offset + PAGE_SIZE})
    return response
