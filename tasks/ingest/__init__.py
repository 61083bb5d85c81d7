"""Feedback and query log ingestion: list new log objects, parse and validate each line,
store the good ones in the curated store and quarantine the rest, every line accounted for.

Modules by concept: ``sources`` (listing and streaming log objects), ``parse`` (one line
at a time), ``validate`` (Great Expectations suites), ``dedupe`` (duplicate and conflict
rules), ``plan`` (what is new or changed), ``read`` (an object as prepared chunks;
``prefetch`` does it in a reader child process), ``commit`` (one object in one
transaction), ``report`` (what a run did), ``pipeline`` (the run: :func:`.pipeline.ingest`
and its per-object step :func:`.pipeline.ingest_object`) and ``steps`` (their Prefect
tasks). ``citeops ingest`` runs :func:`.pipeline.ingest`; the ``ingest-feedback`` flow
(flows/ingest.py) wires the tasks of ``steps`` around the same functions.
"""
