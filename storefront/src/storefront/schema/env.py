"""Alembic's entry point: migrations run on the connection ``storefront.migrate``
hands over, against every table the shop's database holds."""

from __future__ import annotations

from alembic import context

from storefront.migrate import target_metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=target_metadata(),
    # SQLite changes a table by copying it; batch mode writes that for us.
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
