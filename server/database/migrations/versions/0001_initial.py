"""The first schema: access keys, applications, deployment configurations and groups,
on-premises instances and their tags, revisions, and the deployment tables.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _cascade(column: str, target: str, length: int) -> sa.Column[str]:
    return sa.Column(
        column, sa.String(length), sa.ForeignKey(target, ondelete="CASCADE"), nullable=False
    )


def upgrade() -> None:
    _access_keys_and_applications()
    _instances()
    _deployment_tables()
    _command_tables()


def _access_keys_and_applications() -> None:
    op.create_table(
        "access_keys",
        sa.Column("access_key_id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("sealed_secret", sa.LargeBinary, nullable=False),
        sa.Column("master_key_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("revoked_at", sa.Double, nullable=True),
    )
    op.create_table(
        "applications",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("compute_platform", sa.String(16), nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
    )
    op.create_table(
        "deployment_configs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("compute_platform", sa.String(16), nullable=False),
        sa.Column("minimum_healthy_type", sa.String(32), nullable=True),
        sa.Column("minimum_healthy_value", sa.Integer, nullable=True),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
    )
    op.create_table(
        "deployment_groups",
        sa.Column("id", sa.String(36), primary_key=True),
        _cascade("application_id", "applications.id", 36),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("deployment_config_name", sa.String(100), nullable=False),
        sa.Column("service_role_arn", sa.String(2048), nullable=False),
        sa.Column("on_premises_tag_filters", sa.JSON, nullable=False),
        sa.Column("on_premises_tag_set", sa.JSON, nullable=False),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("target_revision_id", sa.String(36), nullable=True),
        sa.Column("last_successful_deployment_id", sa.String(16), nullable=True),
        sa.Column("last_attempted_deployment_id", sa.String(16), nullable=True),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.UniqueConstraint("application_id", "name"),
    )


def _instances() -> None:
    op.create_table(
        "on_premises_instances",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("iam_user_arn", sa.String(2048), nullable=True),
        sa.Column("iam_session_arn", sa.String(2048), nullable=True),
        sa.Column("instance_arn", sa.String(2048), nullable=False),
        sa.Column("registered_at", sa.Double, nullable=False),
        sa.Column("deregistered_at", sa.Double, nullable=True),
    )
    op.create_table(
        "instance_tags",
        sa.Column(
            "instance_name",
            sa.String(100),
            sa.ForeignKey("on_premises_instances.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", sa.String(256), nullable=False),
    )
    op.create_table(
        "application_revisions",
        sa.Column("id", sa.String(36), primary_key=True),
        _cascade("application_id", "applications.id", 36),
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


def _deployment_tables() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("application_name", sa.String(100), nullable=False),
        sa.Column("deployment_group_name", sa.String(100), nullable=False),
        sa.Column("deployment_group_id", sa.String(36), nullable=False),
        sa.Column("revision_id", sa.String(36), nullable=True),
        sa.Column("location", sa.JSON, nullable=False),
        sa.Column("deployment_config_name", sa.String(100), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("creator", sa.String(32), nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("error_information", sa.JSON, nullable=True),
        sa.Column("rollback_info", sa.JSON, nullable=True),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("started_at", sa.Double, nullable=True),
        sa.Column("completed_at", sa.Double, nullable=True),
    )
    op.create_index(
        "ix_deployments_group_created", "deployments", ["deployment_group_id", "created_at"]
    )
    op.create_index("ix_deployments_status", "deployments", ["status"])
    op.create_table(
        "deployment_targets",
        _cascade("deployment_id", "deployments.id", 16),
        sa.Column("instance_name", sa.String(100)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("batch", sa.Integer, nullable=True),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("deployment_id", "instance_name"),
    )


_TARGET = (
    ["deployment_id", "instance_name"],
    ["deployment_targets.deployment_id", "deployment_targets.instance_name"],
)


def _command_tables() -> None:
    op.create_table(
        "lifecycle_events",
        sa.Column("deployment_id", sa.String(16)),
        sa.Column("instance_name", sa.String(100)),
        sa.Column("event_name", sa.String(64)),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.Double, nullable=True),
        sa.Column("ended_at", sa.Double, nullable=True),
        sa.Column("diagnostics", sa.JSON, nullable=True),
        sa.PrimaryKeyConstraint("deployment_id", "instance_name", "event_name"),
        sa.ForeignKeyConstraint(*_TARGET, ondelete="CASCADE"),
    )
    op.create_table(
        "host_commands",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("deployment_id", sa.String(16), nullable=False),
        sa.Column("instance_name", sa.String(100), nullable=False),
        sa.Column("command_name", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("nonce", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("handed_out_at", sa.Double, nullable=True),
        sa.Column("acknowledged_at", sa.Double, nullable=True),
        sa.Column("completed_at", sa.Double, nullable=True),
        sa.Column("diagnostics", sa.JSON, nullable=True),
        sa.ForeignKeyConstraint(*_TARGET, ondelete="CASCADE"),
    )
    op.create_index(
        "ix_host_commands_instance_status", "host_commands", ["instance_name", "status"]
    )


def downgrade() -> None:
    for table in (
        "host_commands",
        "lifecycle_events",
        "deployment_targets",
        "deployments",
        "application_revisions",
        "instance_tags",
        "on_premises_instances",
        "deployment_groups",
        "deployment_configs",
        "applications",
        "access_keys",
    ):
        op.drop_table(table)
