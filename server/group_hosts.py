"""Which registered on-premises instances a deployment group deploys to.

A group selects hosts by tags, as CodeDeploy does: ``onPremisesInstanceTagFilters`` (an
instance matches when any one filter matches its tags) or ``onPremisesTagSet`` (it
matches when, in every list of the set, some filter matches). A group with neither has
no hosts. Deregistered instances are never selected. The CodeDeploy API (listing
instances by tag) and the orchestration (taking a group's hosts) share these rules.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from server.database.schema import instance_tags, on_premises_instances


def tag_filter_matches(tag_filter: Dict[str, str], tags: Dict[str, str]) -> bool:
    kind, key, value = tag_filter["Type"], tag_filter["Key"], tag_filter["Value"]
    if kind == "KEY_ONLY":
        return key in tags
    if kind == "VALUE_ONLY":
        return value in tags.values()
    return tags.get(key) == value


def _matches(
    tags: Dict[str, str], filters: Sequence[Dict[str, str]], tag_set: Sequence[Sequence[Any]]
) -> bool:
    if filters:
        return any(tag_filter_matches(f, tags) for f in filters)
    if tag_set:
        return all(any(tag_filter_matches(f, tags) for f in group) for group in tag_set)
    return False


def group_instance_names(
    connection: Connection,
    filters: Sequence[Dict[str, str]],
    tag_set: Sequence[Sequence[Any]],
) -> List[str]:
    """The registered instances the group's tag filters or tag set select, by name."""
    if not filters and not tag_set:
        return []
    query = (
        sa.select(on_premises_instances.c.name, instance_tags.c.key, instance_tags.c.value)
        .join(instance_tags, instance_tags.c.instance_name == on_premises_instances.c.name)
        .where(on_premises_instances.c.deregistered_at.is_(None))
    )
    tags: Dict[str, Dict[str, str]] = {}
    for name, key, value in connection.execute(query):
        tags.setdefault(name, {})[key] = value
    return sorted(name for name, found in tags.items() if _matches(found, filters, tag_set))
