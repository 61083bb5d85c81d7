"""Feedback and query log ingestion: list new log objects, parse and validate each line,
store the good ones in the curated store and quarantine the rest, every line accounted for.

``tasks.ingest.pipeline.ingest`` is the entry point; the Prefect flow ``ingest-feedback``
(flows/ingest.py) and ``citeops ingest`` both run it.
"""
