"""Promotion records and named locks (the previous code's schema version 2).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "promotions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("version", sa.String(32)),
        sa.Column("previous_version", sa.String(32)),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("trigger", sa.Text),
        sa.Column("gate", sa.Text),
        sa.Column("bake", sa.Text),
        sa.Column("data", sa.Text),
        sa.Column("detail", sa.Text),
        sa.Column("cost_usd", sa.Float),
        sa.Column("flow_run_id", sa.String(64)),
        sa.Column("mlflow_run_ids", sa.Text),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
    )
    op.create_index("ix_promotions_started", "promotions", ["started_at"])
    op.create_table(
        "locks",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(256), nullable=False),
        sa.Column("acquired_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("locks")
    op.drop_table("promotions")
