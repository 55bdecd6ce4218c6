"""Write parsed records in batches: one statement per table per batch, idempotent.

Re-receiving a post never duplicates it: posts, accounts, polls and chat membership are upserted
on their keys. Metrics and poll votes keep the largest value seen, so the stored figures do not
depend on the order in which copies of a post arrive.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, case, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.db.models import Account, ChatPost, Poll, PollOption, Post
from app.ingest.parse import NETWORK, Parsed, PollRecord, PostRecord, UserRecord

# SQLite allows 32,766 bound parameters per statement; posts have 21 columns.
_CHUNK = 1000


@dataclass(slots=True)
class StoreResult:
    new_posts: list[PostRecord]  # posts not stored before (collected or context)
    newly_collected: list[PostRecord]  # posts this chat had not collected before


def _insert(session: Session, table: Table) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"unsupported database {dialect!r}: use SQLite or PostgreSQL")


def _greatest(session: Session, a: Any, b: Any) -> ColumnElement[Any]:
    if session.get_bind().dialect.name == "sqlite":
        return func.max(a, b)  # SQLite's two-argument max() is scalar
    return func.greatest(a, b)


def _chunks(
    rows: Sequence[dict[str, Any]], size: int = _CHUNK
) -> Iterable[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _dedupe_posts(records: Iterable[PostRecord]) -> dict[str, PostRecord]:
    """One record per id; of two copies keep the larger metrics (order must not matter)."""
    by_id: dict[str, PostRecord] = {}
    for record in records:
        seen = by_id.get(record.id)
        if seen is None:
            by_id[record.id] = record
            continue
        seen.retweet_count = max(seen.retweet_count, record.retweet_count)
        seen.reply_count = max(seen.reply_count, record.reply_count)
        seen.like_count = max(seen.like_count, record.like_count)
        seen.quote_count = max(seen.quote_count, record.quote_count)
        if record.impression_count is not None:
            seen.impression_count = max(seen.impression_count or 0, record.impression_count)
    return by_id


def store_users(session: Session, users: Iterable[UserRecord]) -> None:
    rows = {
        user.id: {
            "network": NETWORK,
            "id": user.id,
            "username": user.username,
            "name": user.name,
            "profile_image_url": user.profile_image_url,
            "verified": user.verified,
            "followers_count": user.followers_count,
        }
        for user in users
    }
    table = Account.__table__
    assert isinstance(table, Table)
    for chunk in _chunks(sorted(rows.values(), key=lambda row: row["id"])):
        stmt = _insert(session, table).values(list(chunk))
        stmt = stmt.on_conflict_do_update(
            index_elements=["network", "id"],
            set_={
                "username": stmt.excluded.username,
                "name": stmt.excluded.name,
                "profile_image_url": stmt.excluded.profile_image_url,
                "verified": stmt.excluded.verified,
                "followers_count": stmt.excluded.followers_count,
            },
        )
        session.execute(stmt)


def store_polls(session: Session, polls: Iterable[PollRecord]) -> None:
    by_id: dict[str, PollRecord] = {}
    for poll in polls:
        by_id[poll.id] = poll
    if not by_id:
        return
    poll_table = Poll.__table__
    option_table = PollOption.__table__
    assert isinstance(poll_table, Table) and isinstance(option_table, Table)
    poll_rows = [
        {
            "network": NETWORK,
            "id": poll.id,
            "voting_status": poll.voting_status,
            "end_datetime": poll.end_datetime,
            "duration_minutes": poll.duration_minutes,
        }
        for poll in by_id.values()
    ]
    stmt = _insert(session, poll_table).values(poll_rows)
    # A closed poll stays closed whatever copy arrives later.
    stmt = stmt.on_conflict_do_update(
        index_elements=["network", "id"],
        set_={
            "voting_status": case(
                (poll_table.c.voting_status == "closed", poll_table.c.voting_status),
                else_=func.coalesce(stmt.excluded.voting_status, poll_table.c.voting_status),
            ),
            "end_datetime": func.coalesce(stmt.excluded.end_datetime, poll_table.c.end_datetime),
            "duration_minutes": func.coalesce(
                stmt.excluded.duration_minutes, poll_table.c.duration_minutes
            ),
        },
    )
    session.execute(stmt)
    option_rows = [
        {"network": NETWORK, "poll_id": poll.id, "position": pos, "label": label, "votes": votes}
        for poll in by_id.values()
        for pos, label, votes in poll.options
    ]
    for chunk in _chunks(option_rows):
        ostmt = _insert(session, option_table).values(list(chunk))
        ostmt = ostmt.on_conflict_do_update(
            index_elements=["network", "poll_id", "position"],
            set_={
                "label": ostmt.excluded.label,
                "votes": _greatest(session, option_table.c.votes, ostmt.excluded.votes),
            },
        )
        session.execute(ostmt)


def store_posts(session: Session, records: Iterable[PostRecord], now: datetime) -> list[str]:
    """Upsert posts; returns the ids that were not stored before."""
    by_id = _dedupe_posts(records)
    if not by_id:
        return []
    ids = list(by_id)
    existing: set[str] = set()
    for start in range(0, len(ids), _CHUNK):
        part = ids[start : start + _CHUNK]
        existing.update(
            session.scalars(select(Post.id).where(Post.network == NETWORK, Post.id.in_(part)))
        )
    table = Post.__table__
    assert isinstance(table, Table)
    rows = [_post_row(record, now) for record in by_id.values()]
    rows.sort(key=lambda row: row["id"])  # a fixed order avoids deadlocks between writers
    for chunk in _chunks(rows, 500):
        stmt = _insert(session, table).values(list(chunk))
        excluded = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=["network", "id"],
            set_={
                "retweet_count": _greatest(session, table.c.retweet_count, excluded.retweet_count),
                "reply_count": _greatest(session, table.c.reply_count, excluded.reply_count),
                "like_count": _greatest(session, table.c.like_count, excluded.like_count),
                "quote_count": _greatest(session, table.c.quote_count, excluded.quote_count),
                "impression_count": func.coalesce(
                    _greatest(session, table.c.impression_count, excluded.impression_count),
                    excluded.impression_count,
                    table.c.impression_count,
                ),
                "poll_id": func.coalesce(table.c.poll_id, excluded.poll_id),
            },
        )
        session.execute(stmt)
    return [post_id for post_id in ids if post_id not in existing]


def _post_row(record: PostRecord, now: datetime) -> dict[str, Any]:
    return {
        "network": NETWORK,
        "id": record.id,
        "author_id": record.author_id,
        "created_at": record.created_at,
        "text": record.text,
        "kind": record.kind,
        "in_reply_to_id": record.in_reply_to_id,
        "in_reply_to_user_id": record.in_reply_to_user_id,
        "quoted_id": record.quoted_id,
        "retweeted_id": record.retweeted_id,
        "conversation_id": record.conversation_id,
        "lang": record.lang,
        "poll_id": record.poll_id,
        "retweet_count": record.retweet_count,
        "reply_count": record.reply_count,
        "like_count": record.like_count,
        "quote_count": record.quote_count,
        "impression_count": record.impression_count,
        "raw": record.raw,
        "first_seen_at": now,
    }


def collect(
    session: Session, chat_id: int, records: Iterable[PostRecord], now: datetime
) -> list[str]:
    """Make posts members of the chat; returns the ids the chat had not collected before."""
    by_id = {record.id: record for record in records}
    if not by_id:
        return []
    ids = list(by_id)
    existing: set[str] = set()
    for start in range(0, len(ids), _CHUNK):
        part = ids[start : start + _CHUNK]
        existing.update(
            session.scalars(
                select(ChatPost.post_id).where(
                    ChatPost.chat_id == chat_id,
                    ChatPost.network == NETWORK,
                    ChatPost.post_id.in_(part),
                )
            )
        )
    new_ids = [post_id for post_id in ids if post_id not in existing]
    rows = [
        {
            "chat_id": chat_id,
            "network": NETWORK,
            "post_id": post_id,
            "created_at": by_id[post_id].created_at,
            "author_id": by_id[post_id].author_id,
            "kind": by_id[post_id].kind,
            "question": None,
            "tag_method": None,
            "manual": False,
            "handled": False,
            "hidden": False,
            "collected_at": now,
        }
        for post_id in sorted(new_ids)
    ]
    table = ChatPost.__table__
    assert isinstance(table, Table)
    for chunk in _chunks(rows):
        stmt = _insert(session, table).values(list(chunk))
        session.execute(
            stmt.on_conflict_do_nothing(index_elements=["chat_id", "network", "post_id"])
        )
    return new_ids


def store_parsed(session: Session, chat_id: int, parsed: Parsed) -> StoreResult:
    """Write one batch (the caller commits): users, polls, posts, then the chat's membership."""
    now = datetime.now(UTC)
    store_users(session, parsed.users)
    store_polls(session, parsed.polls)
    all_posts = _dedupe_posts([*parsed.context, *parsed.collected])
    new_ids = set(store_posts(session, all_posts.values(), now))
    collected = {record.id: all_posts[record.id] for record in parsed.collected}
    newly = set(collect(session, chat_id, collected.values(), now))
    return StoreResult(
        new_posts=[all_posts[post_id] for post_id in all_posts if post_id in new_ids],
        newly_collected=[collected[post_id] for post_id in collected if post_id in newly],
    )
