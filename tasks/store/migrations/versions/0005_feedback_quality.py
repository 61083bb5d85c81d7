"""Feedback quality: flags, reasons and the scoring model's probabilities on feedback rows;
clients let back in after an exclusion.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(
            sa.Column("flagged", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("flag_reason", sa.String(64)))
        batch.add_column(sa.Column("label_quality", sa.Float))
        batch.add_column(sa.Column("label_probs", sa.Text))
        batch.add_column(sa.Column("scored_by", sa.String(128)))
        batch.add_column(sa.Column("scored_at", sa.DateTime))
    with op.batch_alter_table("excluded_clients") as batch:
        batch.add_column(sa.Column("readmitted_at", sa.DateTime))


def downgrade() -> None:
    with op.batch_alter_table("excluded_clients") as batch:
        batch.drop_column("readmitted_at")
    with op.batch_alter_table("feedback") as batch:
        for name in ("scored_at", "scored_by", "label_probs", "label_quality", "flag_reason"):
            batch.drop_column(name)
        batch.drop_column("flagged")
