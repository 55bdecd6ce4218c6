"""Conditions that pick rows by a list of keys, cheap on both databases.

Posts and accounts are keyed by (network, id). The ids of the three networks cannot collide
(`app.ingest.parse.post_network`), so callers pass bare ids and the network of each is read off
the id itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import String, and_, any_, bindparam, literal, or_
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.ingest.parse import post_network

# Ids per lookup (SQLite allows 32,766 parameters a statement).
CHUNK = 1000


def one_of(session: Session, column: Any, ids: Sequence[str]) -> ColumnElement[bool]:
    """`column IN ids`. On PostgreSQL one array parameter (`= ANY(...)`) rather than one per
    id: a short statement that psycopg converts once and the server plans once, and that the
    planner answers from the index even without statistics."""
    condition: ColumnElement[bool]
    if session.get_bind().dialect.name == "postgresql":
        condition = column == any_(literal(list(ids), postgresql.ARRAY(String)))
    else:
        condition = column.in_(ids)
    return condition


def keyed(
    session: Session,
    network_column: Any,
    id_column: Any,
    ids: Iterable[str],
    network_of: Callable[[str], str] = post_network,
) -> ColumnElement[bool]:
    """`(network, id) IN ...` for bare ids: one `network = n AND id IN (...)` per network, so
    the primary key's index serves each part."""
    groups: dict[str, list[str]] = {}
    for item in ids:
        groups.setdefault(network_of(item), []).append(item)
    if not groups:
        return and_(id_column.in_([]))
    parts = [
        and_(network_column == network, one_of(session, id_column, members))
        for network, members in sorted(groups.items())
    ]
    return parts[0] if len(parts) == 1 else or_(*parts)


def chunks(ids: Sequence[str], size: int = CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


class Lookup:
    """A SELECT of rows by bare ids that is built once and run with parameters:
    `network = :lookup_network AND id IN :lookup_ids` (`= ANY(:lookup_ids)` on PostgreSQL),
    once per network and chunk of ids.

    The ingest looks rows up this way several times for every batch; building the condition
    each time (`keyed`) cost about 0.5 ms a lookup, a good part of a one-post write."""

    def __init__(
        self,
        build: Callable[[ColumnElement[bool]], Any],  # a Select
        network_column: Any,
        id_column: Any,
        network_of: Callable[[str], str] = post_network,
    ) -> None:
        self._build = build
        self._network_column = network_column
        self._id_column = id_column
        self._network_of = network_of
        self._statements: dict[str, Any] = {}  # by dialect name

    def _statement(self, dialect: str) -> Any:
        found = self._statements.get(dialect)
        if found is None:
            ids: ColumnElement[bool]
            if dialect == "postgresql":
                ids = self._id_column == any_(
                    bindparam("lookup_ids", type_=postgresql.ARRAY(String))
                )
            else:
                ids = self._id_column.in_(bindparam("lookup_ids", expanding=True))
            condition = and_(self._network_column == bindparam("lookup_network"), ids)
            found = self._statements[dialect] = self._build(condition)
        return found

    def rows(self, session: Session, ids: Iterable[str], **params: Any) -> Iterator[Any]:
        """The rows of these ids (any other parameters of the statement in `params`)."""
        statement = self._statement(session.get_bind().dialect.name)
        groups: dict[str, list[str]] = {}
        for item in ids:
            groups.setdefault(self._network_of(item), []).append(item)
        for network, members in sorted(groups.items()):
            for part in chunks(members):
                values = {"lookup_network": network, "lookup_ids": list(part), **params}
                yield from session.execute(statement, values)
