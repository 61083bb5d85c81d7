"""Retraining decisions of the trigger, beside the promotion records.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retrain_decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("decided_at", sa.DateTime, nullable=False),
        sa.Column("retrain", sa.Boolean, nullable=False),
        sa.Column("causes", sa.Text, nullable=False),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("inputs", sa.Text, nullable=False),
        sa.Column("deployment", sa.Text),
        sa.Column("mlflow_run_id", sa.String(64)),
    )
    op.create_index("ix_retrain_decisions_decided", "retrain_decisions", ["decided_at"])


def downgrade() -> None:
    op.drop_table("retrain_decisions")
