"""The server's tables, as SQLAlchemy Core metadata (what queries are written against).

The migrations in ``migrations/versions/`` create exactly this (a test compares them on
SQLite and PostgreSQL). Times are epoch seconds (a double), as the CodeDeploy API shows
them. What the service only stores and shows back (a group's alarm or trigger settings)
is kept as JSON; what it selects on is a column. Deletions cascade from an application
to its groups and revisions; deployments keep the names they were made with.

The deployment tables are used by the orchestration (:mod:`server.deployment_engine`):
deployments, their targets (one per host) and lifecycle events, and the commands handed
to hosts. A host command is queued, handed out (``handed_out_at``), acknowledged, then
completed, each step a transaction; ``last_activity_at`` is what its timeout counts from.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

NAME = 100  # CodeDeploy's names (applications, groups, configurations, instances)
ARN = 2048

access_keys = sa.Table(
    "access_keys",
    metadata,
    sa.Column("access_key_id", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # operator | host
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("sealed_secret", sa.LargeBinary, nullable=False),
    sa.Column("master_key_id", sa.String(32), nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("revoked_at", sa.Double, nullable=True),
)

applications = sa.Table(
    "applications",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(NAME), nullable=False, unique=True),
    sa.Column("compute_platform", sa.String(16), nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
)

deployment_configs = sa.Table(
    "deployment_configs",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(NAME), nullable=False, unique=True),
    sa.Column("compute_platform", sa.String(16), nullable=False),
    sa.Column("minimum_healthy_type", sa.String(32), nullable=True),
    sa.Column("minimum_healthy_value", sa.Integer, nullable=True),
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
)

deployment_groups = sa.Table(
    "deployment_groups",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column(
        "application_id",
        sa.String(36),
        sa.ForeignKey("applications.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("name", sa.String(NAME), nullable=False),
    sa.Column("deployment_config_name", sa.String(NAME), nullable=False),
    sa.Column("service_role_arn", sa.String(ARN), nullable=False),
    sa.Column("on_premises_tag_filters", sa.JSON, nullable=False),
    sa.Column("on_premises_tag_set", sa.JSON, nullable=False),
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("target_revision_id", sa.String(36), nullable=True),
    sa.Column("last_successful_deployment_id", sa.String(16), nullable=True),
    sa.Column("last_attempted_deployment_id", sa.String(16), nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.UniqueConstraint("application_id", "name"),
)

on_premises_instances = sa.Table(
    "on_premises_instances",
    metadata,
    sa.Column("name", sa.String(NAME), primary_key=True),
    sa.Column("iam_user_arn", sa.String(ARN), nullable=True),
    sa.Column("iam_session_arn", sa.String(ARN), nullable=True),
    sa.Column("instance_arn", sa.String(ARN), nullable=False),
    sa.Column("registered_at", sa.Double, nullable=False),
    sa.Column("deregistered_at", sa.Double, nullable=True),
    # Every command service request finds the caller's instance by its key's ARN.
    sa.Index("ix_on_premises_instances_user_arn", "iam_user_arn"),
    sa.Index("ix_on_premises_instances_session_arn", "iam_session_arn"),
)

instance_tags = sa.Table(
    "instance_tags",
    metadata,
    sa.Column(
        "instance_name",
        sa.String(NAME),
        sa.ForeignKey("on_premises_instances.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
)

application_revisions = sa.Table(
    "application_revisions",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column(
        "application_id",
        sa.String(36),
        sa.ForeignKey("applications.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # The SHA-256 of the location's canonical JSON: one row per distinct revision.
    sa.Column("location_hash", sa.String(64), nullable=False),
    sa.Column("revision_type", sa.String(16), nullable=False),
    sa.Column("location", sa.JSON, nullable=False),
    sa.Column("s3_bucket", sa.String(255), nullable=True),
    sa.Column("s3_key", sa.Text, nullable=True),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("registered_at", sa.Double, nullable=False),
    sa.Column("first_used_at", sa.Double, nullable=True),
    sa.Column("last_used_at", sa.Double, nullable=True),
    sa.UniqueConstraint("application_id", "location_hash"),
)

deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),  # d-XXXXXXXXX
    sa.Column("application_name", sa.String(NAME), nullable=False),
    sa.Column("deployment_group_name", sa.String(NAME), nullable=False),
    sa.Column("deployment_group_id", sa.String(36), nullable=False),
    sa.Column("revision_id", sa.String(36), nullable=True),
    sa.Column("location", sa.JSON, nullable=False),
    sa.Column("deployment_config_name", sa.String(NAME), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("creator", sa.String(32), nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("error_information", sa.JSON, nullable=True),
    sa.Column("rollback_info", sa.JSON, nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("started_at", sa.Double, nullable=True),
    sa.Column("completed_at", sa.Double, nullable=True),
    # When StopDeployment was asked (None: not asked): no host gets another command.
    sa.Column("stop_requested_at", sa.Double, nullable=True),
    sa.Index("ix_deployments_group_created", "deployment_group_id", "created_at"),
    sa.Index("ix_deployments_status", "status"),
)

deployment_targets = sa.Table(
    "deployment_targets",
    metadata,
    sa.Column(
        "deployment_id",
        sa.String(16),
        sa.ForeignKey("deployments.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("instance_name", sa.String(NAME), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("batch", sa.Integer, nullable=True),
    sa.Column("updated_at", sa.Double, nullable=False),
    # The host's place in the order the deployment takes its hosts in.
    sa.Column("position", sa.Integer, nullable=True),
    sa.Index("ix_deployment_targets_instance", "instance_name"),
)

lifecycle_events = sa.Table(
    "lifecycle_events",
    metadata,
    sa.Column("deployment_id", sa.String(16), primary_key=True),
    sa.Column("instance_name", sa.String(NAME), primary_key=True),
    sa.Column("event_name", sa.String(64), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", sa.Double, nullable=True),
    sa.Column("ended_at", sa.Double, nullable=True),
    sa.Column("diagnostics", sa.JSON, nullable=True),
    sa.ForeignKeyConstraint(
        ["deployment_id", "instance_name"],
        ["deployment_targets.deployment_id", "deployment_targets.instance_name"],
        ondelete="CASCADE",
    ),
)

host_commands = sa.Table(
    "host_commands",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),  # HostCommandIdentifier
    sa.Column("deployment_id", sa.String(16), nullable=False),
    sa.Column("instance_name", sa.String(NAME), nullable=False),
    sa.Column("command_name", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # Pending .. Succeeded/Failed
    sa.Column("nonce", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("handed_out_at", sa.Double, nullable=True),
    sa.Column("acknowledged_at", sa.Double, nullable=True),
    sa.Column("completed_at", sa.Double, nullable=True),
    sa.Column("diagnostics", sa.JSON, nullable=True),
    # The last sign of life (queued, handed out, acknowledged, updated): the timeout's start.
    sa.Column("last_activity_at", sa.Double, nullable=True),
    sa.ForeignKeyConstraint(
        ["deployment_id", "instance_name"],
        ["deployment_targets.deployment_id", "deployment_targets.instance_name"],
        ondelete="CASCADE",
    ),
    sa.Index("ix_host_commands_instance_status", "instance_name", "status"),
    sa.Index("ix_host_commands_status_activity", "status", "last_activity_at"),
    sa.Index("ix_host_commands_deployment_status", "deployment_id", "status"),
)
