"""The query and feedback log-line contract: field names, limits and format version.

One definition for the three parties that must agree on it: the serving writer
(:mod:`citeops.serving.logwriter`, :mod:`citeops.serving.schemas`), the ingestion reader
(:mod:`citeops.tasks.ingest.parse`) and the curated store's columns
(:mod:`citeops.tasks.store.schema`). A line is one JSON object; readers ignore fields they
do not know, so adding an optional field is compatible, while renaming or removing one, or
making one required, is a new :data:`FORMAT_VERSION`.

This module imports nothing of ours: serving and every stage may depend on it.
"""

from __future__ import annotations

# Lines without a version field are version 1, the format written so far.
FORMAT_VERSION = 1

QUERIES = "queries"
FEEDBACK = "feedback"
STREAMS = (QUERIES, FEEDBACK)

# When the line was written (ISO 8601); the writer partitions parts by its UTC date.
DATETIME = "datetime"

# Short identifiers: request_id, model_version, slot, arm, client_id, source. Longer values
# are quarantined (``text_too_long``), so the API refuses them up front.
MAX_META_CHARS = 128
META_FIELDS = ("request_id", "model_version", "slot", "arm", "client_id", "source")

# Which model of an online phase answered (A/B), and where the line came from.
ARMS = ("champion", "challenger")
SOURCES = ("api", "app")

# The AI4citations feedback format plus provenance.
FEEDBACK_REQUIRED = ("claim", "evidence", "user_label", DATETIME)
FEEDBACK_OPTIONAL = ("model", "prediction", "feedback_id", *META_FIELDS)

QUERY_REQUIRED = ("request_id", DATETIME, "claim", "evidence", "prediction", "probabilities")
QUERY_OPTIONAL = ("model_version", "slot", "arm", "client_id", "source", "latency_ms")
# Shadow mode: the challenger's label for the same request, and its model version.
SHADOW_FIELDS = ("shadow_prediction", "shadow_model_version")

FIELDS = {
    FEEDBACK: FEEDBACK_REQUIRED + FEEDBACK_OPTIONAL,
    QUERIES: QUERY_REQUIRED + QUERY_OPTIONAL + SHADOW_FIELDS,
}
