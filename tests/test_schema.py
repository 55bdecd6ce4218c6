"""The Alembic migrations build, from empty, exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from app.db.engine import make_engine, upgrade
from app.db.models import Base


def test_migrations_match_models(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
        assert diff == []
        tables = set(inspect(conn).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables
    # Upgrading an up-to-date database is a no-op.
    upgrade(engine)
    engine.dispose()
