"""What the orchestration needs beyond the first schema: a deployment's stop request, the
order its hosts are taken in, and when each host command last showed a sign of life (what
its timeout counts from), with the indexes the orchestration's queries use.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployments") as table:
        table.add_column(sa.Column("stop_requested_at", sa.Double, nullable=True))
    with op.batch_alter_table("deployment_targets") as table:
        table.add_column(sa.Column("position", sa.Integer, nullable=True))
    with op.batch_alter_table("host_commands") as table:
        table.add_column(sa.Column("last_activity_at", sa.Double, nullable=True))
    op.create_index(
        "ix_host_commands_status_activity", "host_commands", ["status", "last_activity_at"]
    )
    op.create_index(
        "ix_host_commands_deployment_status", "host_commands", ["deployment_id", "status"]
    )
    op.create_index("ix_deployment_targets_instance", "deployment_targets", ["instance_name"])


def downgrade() -> None:
    op.drop_index("ix_deployment_targets_instance", "deployment_targets")
    op.drop_index("ix_host_commands_deployment_status", "host_commands")
    op.drop_index("ix_host_commands_status_activity", "host_commands")
    with op.batch_alter_table("host_commands") as table:
        table.drop_column("last_activity_at")
    with op.batch_alter_table("deployment_targets") as table:
        table.drop_column("position")
    with op.batch_alter_table("deployments") as table:
        table.drop_column("stop_requested_at")
