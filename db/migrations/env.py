"""Alembic environment for voltloop's schema.

Configured programmatically by ``voltloop.db.migrate`` (there is no alembic.ini):
the caller passes the open connection and the target metadata through
``config.attributes``. SQLite migrations use batch mode (table copy-and-move),
since SQLite's ALTER TABLE cannot change or drop most things.
"""

from __future__ import annotations

from alembic import context

config = context.config
target_metadata = config.attributes.get("target_metadata")


def run_migrations_offline() -> None:
    """Emit SQL for ``alembic upgrade --sql`` against the URL in the config."""
    url = config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=(url or "").startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "voltloop migrations run through voltloop.db.migrate (voltloop db init|upgrade), "
            "which passes the connection in config.attributes['connection']"
        )
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
