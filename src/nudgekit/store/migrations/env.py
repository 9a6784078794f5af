"""Alembic environment: run with the connection nudgekit hands over (see store/migrate.py)."""

from alembic import context

from nudgekit.store.state import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
