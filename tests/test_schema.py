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


def test_upgrading_a_database_with_data_keeps_it(database_url: str) -> None:
    """A database made by the first release, with a chat in it, upgrades to the newest schema."""
    from alembic import command
    from sqlalchemy import text

    from app.db.engine import alembic_config

    engine = make_engine(database_url)
    command.upgrade(alembic_config(engine), "0001")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO chats (slug, title, hashtags, hosts, panel, start_at, end_at, timezone,"
                " source, created_at) VALUES ('old', 'Old', '[\"#a\"]', '[\"h\"]', '[]',"
                " '2023-03-28 18:00:00', '2023-03-28 19:00:00', 'UTC', 'none', '2023-03-01 00:00:00')"
            )
        )
    upgrade(engine)
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT slug, screen_public, screen_mode, screen_delay, blocked_words FROM chats")
        ).one()
    assert row[0] == "old" and bool(row[1]) is True and row[2:4] == ("immediate", 30)
    assert row[4] in ([], "[]")
    engine.dispose()
