"""Alembic's environment for the curated store, run by :func:`citeops.tasks.store.schema.upgrade`.

The caller passes the connection (``config.attributes["connection"]``), already in a
transaction that holds the migration lock, so every revision of one upgrade commits
together. SQLite gets batch mode (``render_as_batch``): it alters a table by copying it.
"""

from __future__ import annotations

from alembic import context

from citeops.tasks.store.schema import LEGACY_VERSION_TABLE, VERSION_TABLE, metadata


def _include(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Leave the previous code's version table out of comparisons (autogenerate)."""
    return not (type_ == "table" and name == LEGACY_VERSION_TABLE)


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None or context.is_offline_mode():
        raise RuntimeError(
            "run the store's migrations through citeops.tasks.store.schema.upgrade "
            "(or pass a connection in alembic_config(conn))"
        )
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
        include_object=_include,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
