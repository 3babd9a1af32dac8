"""Indexes on the on-premises instances' IAM ARNs: every command service request finds the
caller's instance by the ARN its key belongs to, which without them read every instance
of the fleet.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_on_premises_instances_user_arn", "on_premises_instances", ["iam_user_arn"])
    op.create_index(
        "ix_on_premises_instances_session_arn", "on_premises_instances", ["iam_session_arn"]
    )


def downgrade() -> None:
    op.drop_index("ix_on_premises_instances_session_arn", "on_premises_instances")
    op.drop_index("ix_on_premises_instances_user_arn", "on_premises_instances")
