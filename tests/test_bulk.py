"""`app.db.bulk.BulkInsert`: rows handed to the driver as tuples are stored exactly as
`session.execute` stores the same rows (times, JSON, defaults), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import DateTime, Table, insert, select
from sqlalchemy.dialects import sqlite

from app.db.bulk import BulkInsert
from app.db.engine import open_database
from app.db.models import ChatPost, Post
from app.db.types import UTCDateTime
from app.ingest.store import (
    CHAT_POST_COLUMNS,
    POST_COLUMNS,
    _insert,
    _members_insert,
    _posts_upsert,
)

AT = datetime(2023, 3, 28, 18, 0, 0, tzinfo=UTC)


def _post(post_id: str, created_at: datetime, raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "network": "x",
        "id": post_id,
        "author_id": "42",
        "created_at": created_at,
        "text": "A1: <b>not markup</b> & \u00e9t\u00e9 \U0001f600",
        "kind": "reply",
        "in_reply_to_id": "1",
        "retweet_count": 3,
        "reply_count": 0,
        "like_count": 7,
        "quote_count": 0,
        "impression_count": None,
        "raw": raw,
        "first_seen_at": created_at + timedelta(seconds=1),
    }


def test_bulk_rows_read_back_as_executed_rows(database_url: str) -> None:
    engine, sessions = open_database(database_url)
    table = Post.__table__
    assert isinstance(table, Table)
    # A time given in another zone, microseconds, a time with none, nested JSON and a big int.
    cases: list[tuple[datetime, dict[str, Any]]] = [
        (AT.astimezone(timezone(timedelta(hours=-5))), {"a": [1, {"b": None}], "n": 2**60}),
        (AT + timedelta(microseconds=123456), {"text": "caf\u00e9 \U0001f600"}),
        (AT + timedelta(hours=1), {}),
    ]
    try:
        columns = tuple(_post("0", AT, {}))[::-1]  # not the table's order: it reorders
        with sessions.begin() as session:
            bulk = BulkInsert(session, _insert(session, table), columns)
            stamp, raw = bulk.binder("created_at"), bulk.binder("raw")
            rows = []
            for number, (at, payload) in enumerate(cases):
                row = _post(f"bulk{number}", at, payload)
                row["created_at"], row["first_seen_at"] = stamp(at), stamp(row["first_seen_at"])
                row["raw"] = raw(payload)
                rows.append(tuple(row[name] for name in columns))
            bulk.execute(session, rows)
            session.execute(
                insert(table),
                [_post(f"orm{number}", at, payload) for number, (at, payload) in enumerate(cases)],
            )
        with sessions() as session:
            stored = {
                post.id: post for post in session.scalars(select(Post).order_by(Post.created_at))
            }
        names = [name for name in columns if name != "id"]
        for number in range(len(cases)):
            by_bulk, by_orm = stored[f"bulk{number}"], stored[f"orm{number}"]
            assert {n: getattr(by_bulk, n) for n in names} == {n: getattr(by_orm, n) for n in names}
        assert stored["bulk0"].created_at == AT  # the same instant, read back in UTC
        assert stored["bulk1"].created_at.microsecond == 123456
        assert stored["bulk0"].raw["n"] == 2**60
        # Time order in SQL is time order: the bulk rows sort among the others by their times.
        with sessions() as session:
            order = session.scalars(select(Post.id).order_by(Post.created_at, Post.id)).all()
        assert order == ["bulk0", "orm0", "bulk1", "orm1", "bulk2", "orm2"]
    finally:
        engine.dispose()


def test_bulk_refuses_a_column_left_to_a_computed_default(database_url: str) -> None:
    engine, sessions = open_database(database_url)
    table = ChatPost.__table__
    assert isinstance(table, Table)
    try:
        with sessions.begin() as session, pytest.raises(ValueError, match="parameter 'person'"):
            BulkInsert(session, _insert(session, table), ("chat_id", "network", "post_id"))
    finally:
        engine.dispose()


@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    offset_minutes=st.integers(-23 * 60, 23 * 60),
)
def test_sqlite_times_are_the_text_sqlalchemy_makes(moment: datetime, offset_minutes: int) -> None:
    # UTCDateTime makes SQLite's text in one step (app/db/types.py): it must be the text
    # SQLAlchemy's DATETIME makes of the UTC time, or stored times would stop sorting together.
    dialect = sqlite.dialect()
    column = UTCDateTime()
    fused = column.bind_processor(dialect)
    assert fused is not None
    two_steps = DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)
    assert two_steps is not None
    given_as = moment.astimezone(timezone(timedelta(minutes=offset_minutes)))
    assert fused(given_as) == two_steps(column.process_bind_param(given_as, dialect))
    assert fused(None) is None
    with pytest.raises(ValueError, match="naive datetime"):
        fused(moment.replace(tzinfo=None))


def test_the_stores_rows_reach_the_driver_as_built(database_url: str) -> None:
    # The rows of the two tables that take one row per post are built in the statement's
    # order with every parameter: copying each row to reorder or complete it was a tenth of
    # the database thread's time in an ingest (app/ingest/store.py, CHAT_POST_COLUMNS).
    engine, sessions = open_database(database_url)
    try:
        with sessions() as session:
            for name, build, columns in (
                ("posts", lambda: _posts_upsert(session), POST_COLUMNS),
                ("chat_posts", lambda: _members_insert(session), CHAT_POST_COLUMNS),
            ):
                bulk = BulkInsert.cached(session, name, build, columns)
                assert (bulk._reorder, bulk._extra) == (None, ()), name
    finally:
        engine.dispose()
