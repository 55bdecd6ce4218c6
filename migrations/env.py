"""Alembic environment: runs on the engine that tweetchat hands over (never a URL from a file)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from app.db.models import Base

config = context.config
engine = config.attributes.get("engine")
if not isinstance(engine, Engine):
    raise RuntimeError("Run migrations through `tweetchat` (app.db.engine.upgrade), not alembic")

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
