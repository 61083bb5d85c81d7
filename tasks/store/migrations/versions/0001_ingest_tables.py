"""The ingestion tables (the previous code's schema version 1): runs, the manifest of
ingested objects, feedback, queries, quarantine, validation results, training marks.

Revision ID: 0001
Revises:
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingest_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("report", sa.Text),
    )
    op.create_table(
        "ingest_objects",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uri", sa.String(1024), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("etag", sa.String(128), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger),
        sa.Column("lines", sa.Integer, nullable=False),
        sa.Column("accepted", sa.Integer, nullable=False),
        sa.Column("duplicates", sa.Integer, nullable=False),
        sa.Column("conflicts", sa.Integer, nullable=False),
        sa.Column("quarantined", sa.Integer, nullable=False),
        sa.Column("leaked", sa.Integer, nullable=False),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("ingest_runs.id")),
        sa.Column("ingested_at", sa.DateTime, nullable=False),
        sa.Column("changed_etag", sa.String(128)),
        sa.Column("changed_size", sa.BigInteger),
        sa.Column("changed_seen_at", sa.DateTime),
    )
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("object_id", sa.Integer, sa.ForeignKey("ingest_objects.id"), nullable=False),
        sa.Column("line_no", sa.Integer, nullable=False),
        sa.Column("claim", sa.Text, nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("user_label", sa.String(16), nullable=False),
        sa.Column("model", sa.Text),
        sa.Column("prediction", sa.Text),
        sa.Column("datetime", sa.DateTime, nullable=False),
        sa.Column("last_datetime", sa.DateTime, nullable=False),
        sa.Column("request_id", sa.String(128)),
        sa.Column("model_version", sa.String(128)),
        sa.Column("slot", sa.String(128)),
        sa.Column("pair_key", sa.String(32), nullable=False),
        sa.Column("votes", sa.Integer, nullable=False),
        sa.Column("leaked", sa.Boolean, nullable=False),
        sa.Column("conflict", sa.Boolean, nullable=False),
        sa.Column("ingested_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("pair_key", "user_label", name="uq_feedback_pair_label"),
    )
    op.create_index("ix_feedback_ingested_at", "feedback", ["ingested_at"])
    op.create_table(
        "queries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("object_id", sa.Integer, sa.ForeignKey("ingest_objects.id"), nullable=False),
        sa.Column("line_no", sa.Integer, nullable=False),
        sa.Column("request_id", sa.String(128)),
        sa.Column("dedupe_key", sa.String(160), nullable=False, unique=True),
        sa.Column("datetime", sa.DateTime, nullable=False),
        sa.Column("claim", sa.Text, nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("model_version", sa.String(128)),
        sa.Column("slot", sa.String(128)),
        sa.Column("prediction", sa.String(16), nullable=False),
        sa.Column("probabilities", sa.Text, nullable=False),
        sa.Column("latency_ms", sa.Float),
        sa.Column("ingested_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_queries_datetime", "queries", ["datetime"])
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("object_id", sa.Integer, sa.ForeignKey("ingest_objects.id"), nullable=False),
        sa.Column("uri", sa.String(1024), nullable=False),
        sa.Column("line_no", sa.Integer, nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("raw", sa.Text, nullable=False),
        sa.Column("ingested_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_quarantine_reason", "quarantine", ["reason"])
    op.create_table(
        "validation_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("object_id", sa.Integer, sa.ForeignKey("ingest_objects.id"), nullable=False),
        sa.Column("chunk", sa.Integer, nullable=False),
        sa.Column("suite", sa.String(64), nullable=False),
        sa.Column("suite_version", sa.Integer, nullable=False),
        sa.Column("success", sa.Boolean, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("unexpected_rows", sa.Integer, nullable=False),
        sa.Column("results", sa.Text, nullable=False),
        sa.Column("validated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "training_marks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("note", sa.Text),
    )


def downgrade() -> None:
    for name in (
        "training_marks",
        "validation_results",
        "quarantine",
        "queries",
        "feedback",
        "ingest_objects",
        "ingest_runs",
    ):
        op.drop_table(name)
