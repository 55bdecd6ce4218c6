"""Many rows in one INSERT, handed straight to the driver's `executemany`.

`session.execute(insert, [dict, ...])` runs SQLAlchemy's per-row work for every row: it builds
each row's parameters from the compiled statement and runs each value through its type's bind
processor. For the two tables that take one row per post (`posts`, `chat_posts`) that work
took more time than SQLite's own (`docs/benchmarks.md`). `BulkInsert` compiles the statement
once, with positional parameters, and passes tuples to the DBAPI cursor as they are: callers
build them in the column order they declare, with values already in the driver's form
(`BulkInsert.binder` gives the type's own bind processor for a column that needs one, such as
datetimes on SQLite or JSON, so what is stored is what `session.execute` would store).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any
from weakref import WeakKeyDictionary, ref

from sqlalchemy import Connection, Dialect, Table
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert


def _positional(dialect: Dialect) -> Dialect:
    """The dialect with positional parameters (`?` for sqlite3, `%s` for psycopg)."""
    if dialect.positional:
        return dialect
    return type(dialect)(paramstyle="format")  # type: ignore[call-arg]


class BulkInsert:
    """One INSERT (with any ON CONFLICT clause) of rows that hold `columns` in that order."""

    def __init__(self, session: Session, stmt: Insert, columns: Sequence[str]) -> None:
        dialect = session.get_bind().dialect
        # Weakly: `_COMPILED` keeps statements per dialect and must not keep the dialect alive.
        self._dialect = ref(dialect)
        table = stmt.table
        assert isinstance(table, Table)
        self.table = table
        self.columns = tuple(columns)
        compiled = stmt.compile(dialect=_positional(dialect), column_keys=list(columns))
        order = list(compiled.positiontup or ())
        # Columns left out that have a constant Python-side default (as `session.execute`
        # fills them in); any other parameter of the statement is a mistake of the caller's.
        names = list(self.columns)
        self._extra: tuple[Any, ...] = ()
        for name in order:
            if name in names:
                continue
            default = table.c[name].default if name in table.c else None
            if default is None or not default.is_scalar:
                raise ValueError(f"BulkInsert: no value for parameter {name!r}")
            self._extra += (default.arg,)
            names.append(name)
        if sorted(names) != sorted(order):
            raise ValueError(f"BulkInsert: the statement takes {order}, not {self.columns}")
        permutation = [names.index(name) for name in order]
        # The compiled statement takes the table's column order.
        self._reorder = None if permutation == list(range(len(order))) else itemgetter(*permutation)
        self.sql = compiled.string

    @classmethod
    def cached(
        cls, session: Session, name: str, build: Callable[[], Insert], columns: Sequence[str]
    ) -> BulkInsert:
        """The statement `build()` gives, compiled once per engine (by `name`): compiling took
        2 ms, most of a one-post write of a live chat."""
        dialect = session.get_bind().dialect
        kept = _COMPILED.setdefault(dialect, {})
        found = kept.get(name)
        if found is None or found.columns != tuple(columns):
            found = kept[name] = cls(session, build(), columns)
        return found

    def binder(self, column: str) -> Callable[[Any], Any]:
        """The column type's bind processor for this database (the identity if it has none)."""
        # Not kept: a TypeDecorator's processor holds the dialect (SQLAlchemy caches the
        # type's dialect implementation, weakly, so asking again is cheap).
        dialect = self._dialect()
        assert dialect is not None, "the engine of this statement is gone"
        process = self.table.c[column].type.dialect_impl(dialect).bind_processor(dialect)
        return process if process is not None else _same

    def execute(self, target: Session | Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        extra, reorder = self._extra, self._reorder
        if extra:
            rows = [row + extra for row in rows]
        if reorder is not None:
            rows = list(map(reorder, rows))
        connection = target.connection() if isinstance(target, Session) else target
        connection.exec_driver_sql(self.sql, list(rows))


def _same(value: Any) -> Any:
    return value


# Per engine (its dialect, which holds the engine's JSON serializer): name -> statement.
_COMPILED: WeakKeyDictionary[Dialect, dict[str, BulkInsert]] = WeakKeyDictionary()
