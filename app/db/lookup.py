"""Conditions that pick rows by a list of keys, cheap on both databases.

Posts and accounts are keyed by (network, id). The ids of the three networks cannot collide
(`app.ingest.parse.post_network`), so callers pass bare ids and the network of each is read off
the id itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import String, and_, any_, literal, or_
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
