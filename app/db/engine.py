"""The engine, sessions, and bringing a database's schema up to date with Alembic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

import migrations
from app import jsonio
from app.errors import StorageError

MIGRATIONS_DIR = Path(migrations.__file__).parent


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            folder = Path(database).expanduser().resolve().parent
            if not folder.is_dir():
                raise StorageError(f"Cannot open SQLite database {database}: no folder {folder}")
        kwargs["connect_args"] = {"timeout": 30}
    # Each stored post carries its raw payload in a JSON column: orjson encodes it several times
    # faster than the standard library (app/jsonio.py).
    engine = create_engine(
        parsed, json_serializer=jsonio.dumps, json_deserializer=jsonio.loads, **kwargs
    )
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the web server read while an import or a source writes; foreign keys are off by
    # default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (creates it on an empty database)."""
    try:
        command.upgrade(alembic_config(engine), "head")
    except Exception as exc:  # the driver's own error types vary by back end
        url = engine.url.render_as_string(hide_password=True)
        raise StorageError(f"Cannot open or upgrade the database {url}: {exc}") from exc


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def open_database(url: str) -> tuple[Engine, sessionmaker[Session]]:
    """An engine on `url` with its schema up to date, and a session factory on it."""
    engine = make_engine(url)
    try:
        upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine, session_factory(engine)
