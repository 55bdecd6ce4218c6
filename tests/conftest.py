"""Shared fixtures: a fresh real database for each test, on SQLite and on PostgreSQL.

`database_url` is parametrized over both back ends. The PostgreSQL cases need the server named by
`TWEETCHAT_TEST_POSTGRES_URL` (CI sets it); with it unset they are skipped with that reason, and
with it set but the server down they fail, so a broken CI database cannot pass silently.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from tests.helpers import CliRunnerFn, make_cli_runner

PG_ENV = "TWEETCHAT_TEST_POSTGRES_URL"
FIXTURES = Path(__file__).parent / "fixtures"


def _postgres_database(tmp_name: str) -> Iterator[str]:
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set: PostgreSQL tests skipped")
    url = make_url(base)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"tc_{tmp_name}_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of a fresh, empty database: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tweetchat.db'}"
    else:
        yield from _postgres_database("t")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database only (for what SQLite cannot do: several processes)."""
    yield from _postgres_database("pg")


REDIS_ENV = "TWEETCHAT_TEST_REDIS_URL"


@pytest.fixture
def redis_url() -> str:
    """The Redis server named by `TWEETCHAT_TEST_REDIS_URL` (CI sets it): unset, the test is
    skipped; set but down, it fails."""
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"{REDIS_ENV} is not set: the multi-process tests need Redis")
    import redis

    redis.Redis.from_url(url).ping()
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tweetchat.db'}"


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunnerFn:
    """Run `tweetchat ...` in-process against `database_url`; returns (exit code, output)."""
    monkeypatch.chdir(tmp_path)
    return make_cli_runner(database_url)


@pytest.fixture
def qi_sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on `database_url` holding the QI chat (slug "qi") of tests/fixtures/qi-chat.jsonl,
    nothing collected yet: for tests that drive a `ChatRuntime` themselves."""
    from app.db.engine import open_database
    from tests.test_live import create_chat  # imported late: test_live imports this module

    create_chat(make_cli_runner(database_url), "qi")
    engine, factory = open_database(database_url)
    yield factory
    engine.dispose()
