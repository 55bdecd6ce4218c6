"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC, always returns tz-aware UTC datetimes (SQLite would drop the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: tweetchat stores UTC times only")
        value = value.astimezone(UTC)
        # SQLite keeps the text as given: store it naive so that string order is time order.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite" or not _default_sqlite_format(dialect):
            return super().bind_processor(dialect)

        # The text SQLite's DATETIME would make of process_bind_param's value, by isoformat
        # instead of its Python formatting: every post stores two or three times, and the two
        # steps were 7% of an ingest.
        def process(value: datetime | None) -> str | None:
            naive = self.process_bind_param(value, dialect)
            return None if naive is None else naive.isoformat(" ", "microseconds")

        return process

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLAlchemy's SQLite DATETIME text ("2023-03-28 18:00:00.000000"), which isoformat(" ",
# "microseconds") of a naive time gives too; tests/test_bulk.py checks that the two agree.
SQLITE_DATETIME_FORMAT = (
    "%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06d"
)


def _default_sqlite_format(dialect: Dialect) -> bool:
    impl = DateTime(timezone=True).dialect_impl(dialect)
    return getattr(impl, "_storage_format", None) == SQLITE_DATETIME_FORMAT
