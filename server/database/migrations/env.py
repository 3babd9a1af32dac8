"""Alembic's environment: migrations always run on the connection the server hands over
(``config.attributes["connection"]``), inside the transaction it holds, so that the whole
upgrade commits or nothing does, and concurrent starts wait for each other."""

from __future__ import annotations

from alembic import context

from server.database.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
