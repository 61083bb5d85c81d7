"""Who sent each feedback row's lines, and excluded clients (the previous code's schema
version 3).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback_clients",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pair_key", sa.String(32), nullable=False),
        sa.Column("user_label", sa.String(16), nullable=False),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("votes", sa.Integer, nullable=False),
        sa.Column("first_datetime", sa.DateTime, nullable=False),
        sa.Column("last_datetime", sa.DateTime, nullable=False),
        sa.UniqueConstraint("pair_key", "user_label", "client_id", name="uq_feedback_clients"),
    )
    op.create_index("ix_feedback_clients_client", "feedback_clients", ["client_id"])
    op.create_table(
        "excluded_clients",
        sa.Column("client_id", sa.String(128), primary_key=True),
        sa.Column("excluded_at", sa.DateTime, nullable=False),
        sa.Column("lines", sa.Integer, nullable=False),
        sa.Column("note", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("excluded_clients")
    op.drop_table("feedback_clients")
