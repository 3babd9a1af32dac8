"""The CodeDeploy API operations this server answers, and how one is carried out.

Each operation is a handler and whether it changes state: a changing one runs in a write
transaction, the others in a read transaction, always in the calling worker thread (the
HTTP layer never calls this on its event loop). Operations of the model that are not
listed here are answered with ``UnknownOperationException``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict

from sqlalchemy.engine import Connection

from server.codedeploy_api import (
    applications,
    deployment_configs,
    deployment_groups,
    deployment_instances,
    deployments,
    onpremises_instances,
    revisions,
)
from server.codedeploy_api.context import ApiContext, Handler
from server.database.engine import Database
from server.host_wakeups import announce_in_transaction


@dataclass(frozen=True)
class Operation:
    handler: Handler
    writes: bool


def _operations() -> Dict[str, Operation]:
    table = {
        "CreateApplication": (applications.create_application, True),
        "GetApplication": (applications.get_application, False),
        "ListApplications": (applications.list_applications, False),
        "BatchGetApplications": (applications.batch_get_applications, False),
        "UpdateApplication": (applications.update_application, True),
        "DeleteApplication": (applications.delete_application, True),
        "CreateDeploymentGroup": (deployment_groups.create_deployment_group, True),
        "GetDeploymentGroup": (deployment_groups.get_deployment_group, False),
        "ListDeploymentGroups": (deployment_groups.list_deployment_groups, False),
        "BatchGetDeploymentGroups": (deployment_groups.batch_get_deployment_groups, False),
        "UpdateDeploymentGroup": (deployment_groups.update_deployment_group, True),
        "DeleteDeploymentGroup": (deployment_groups.delete_deployment_group, True),
        "RegisterOnPremisesInstance": (onpremises_instances.register_on_premises_instance, True),
        "DeregisterOnPremisesInstance": (
            onpremises_instances.deregister_on_premises_instance,
            True,
        ),
        "GetOnPremisesInstance": (onpremises_instances.get_on_premises_instance, False),
        "BatchGetOnPremisesInstances": (
            onpremises_instances.batch_get_on_premises_instances,
            False,
        ),
        "ListOnPremisesInstances": (onpremises_instances.list_on_premises_instances, False),
        "AddTagsToOnPremisesInstances": (
            onpremises_instances.add_tags_to_on_premises_instances,
            True,
        ),
        "RemoveTagsFromOnPremisesInstances": (
            onpremises_instances.remove_tags_from_on_premises_instances,
            True,
        ),
        "RegisterApplicationRevision": (revisions.register_application_revision, True),
        "GetApplicationRevision": (revisions.get_application_revision, False),
        "ListApplicationRevisions": (revisions.list_application_revisions, False),
        "BatchGetApplicationRevisions": (revisions.batch_get_application_revisions, False),
        "CreateDeploymentConfig": (deployment_configs.create_deployment_config, True),
        "GetDeploymentConfig": (deployment_configs.get_deployment_config, False),
        "ListDeploymentConfigs": (deployment_configs.list_deployment_configs, False),
        "DeleteDeploymentConfig": (deployment_configs.delete_deployment_config, True),
        "CreateDeployment": (deployments.create_deployment, True),
        "GetDeployment": (deployments.get_deployment, False),
        "ListDeployments": (deployments.list_deployments, False),
        "BatchGetDeployments": (deployments.batch_get_deployments, False),
        "StopDeployment": (deployments.stop_deployment, True),
        "ListDeploymentInstances": (deployment_instances.list_deployment_instances, False),
        "GetDeploymentInstance": (deployment_instances.get_deployment_instance, False),
        "BatchGetDeploymentInstances": (
            deployment_instances.batch_get_deployment_instances,
            False,
        ),
        "ListDeploymentTargets": (deployment_instances.list_deployment_targets, False),
        "GetDeploymentTarget": (deployment_instances.get_deployment_target, False),
        "BatchGetDeploymentTargets": (deployment_instances.batch_get_deployment_targets, False),
    }
    return {name: Operation(handler, writes) for name, (handler, writes) in table.items()}


OPERATIONS: Dict[str, Operation] = _operations()


def run_operation_in_database(
    database: Database, operation: Operation, context: ApiContext, request: Dict[str, Any]
) -> Dict[str, Any]:
    """Carry out one operation in one transaction (blocks on the database). The hosts it
    gave commands to are in ``context.woken`` once it returns."""
    if not operation.writes:
        with database.read() as connection:
            return operation.handler(connection, context, request)

    def attempt(connection: Connection) -> Dict[str, Any]:
        context.woken.clear()
        response = operation.handler(connection, context, request)
        announce_in_transaction(connection, context.woken)
        return response

    return database.write_retrying(attempt)
