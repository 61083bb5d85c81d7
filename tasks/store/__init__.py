"""The curated store: feedback examples, production queries, quarantine, the manifest of
ingested objects and validation results, behind SQLAlchemy (SQLite or PostgreSQL).

Readers in other stages use :mod:`tasks.store.queries`; the schema and its migrations live
in :mod:`tasks.store.schema`.
"""
