"""Write parsed records in batches: one executemany per table per batch, idempotent.

Re-receiving a post never duplicates it: posts, accounts, polls and chat membership are upserted
on their keys. Metrics and poll votes keep the largest value seen, so the stored figures do not
depend on the order in which copies of a post arrive.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, bindparam, case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.db.bulk import BulkInsert
from app.db.lookup import Lookup
from app.db.models import Account, ChatPost, Poll, PollOption, Post
from app.ingest.parse import (
    Parsed,
    PollRecord,
    PostRecord,
    UserRecord,
    account_network,
    post_network,
)
from app.ingest.tagger import NO_TAG, Tag
from app.people import persons_of

# A post's public metrics as stored: retweets, likes, replies, quotes, impressions.
Metrics = tuple[int, int, int, int, int | None]


@dataclass(slots=True)
class StoreResult:
    new_posts: list[PostRecord]  # posts not stored before (collected or context)
    newly_collected: list[PostRecord]  # posts this chat had not collected before
    # Every post of the batch: its metrics as stored now (each the largest of every copy seen).
    metrics: dict[str, Metrics]
    # The person of each newly collected post's author (`app.people`).
    persons: dict[str, str]


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


_ACCOUNT_FIELDS = ("id", "username", "name", "profile_image_url", "verified", "followers_count")

# What a batch looks up of the rows it is about to write, by bare ids.
_ACCOUNTS = Lookup(
    lambda ids: select(*(Account.__table__.c[name] for name in _ACCOUNT_FIELDS)).where(ids),
    Account.network,
    Account.id,
    account_network,
)
_POSTS = Lookup(
    lambda ids: select(
        Post.id,
        Post.retweet_count,
        Post.reply_count,
        Post.like_count,
        Post.quote_count,
        Post.impression_count,
        Post.poll_id,
    ).where(ids),
    Post.network,
    Post.id,
)
_MEMBERS = Lookup(
    lambda ids: select(ChatPost.post_id).where(ChatPost.chat_id == bindparam("lookup_chat"), ids),
    ChatPost.network,
    ChatPost.post_id,
)


def store_users(session: Session, users: Iterable[UserRecord]) -> None:
    """Upsert accounts: those not stored yet, and those whose details changed."""
    rows = {
        user.id: {
            "network": user.network,
            "id": user.id,
            "username": user.username,
            "name": user.name,
            "profile_image_url": user.profile_image_url,
            "verified": user.verified,
            "followers_count": user.followers_count,
        }
        for user in users
    }
    if not rows:
        return
    ids = sorted(rows)  # a fixed order avoids deadlocks between writers
    stored = {row[0]: tuple(row) for row in _ACCOUNTS.rows(session, ids)}
    # The same people post all through a chat: most batches bring no news of them.
    changed = [
        rows[user_id]
        for user_id in ids
        if stored.get(user_id) != tuple(rows[user_id][name] for name in _ACCOUNT_FIELDS)
    ]
    if not changed:
        return
    table = Account.__table__
    assert isinstance(table, Table)
    stmt = _insert(session, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["network", "id"],
        set_={name: stmt.excluded[name] for name in _ACCOUNT_FIELDS[1:]},
    )
    session.execute(stmt, changed)


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
            "network": poll.network,
            "id": poll.id,
            "voting_status": poll.voting_status,
            "end_datetime": poll.end_datetime,
            "duration_minutes": poll.duration_minutes,
        }
        for poll in by_id.values()
    ]
    stmt = _insert(session, poll_table)
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
    session.execute(stmt, poll_rows)
    option_rows = [
        {
            "network": poll.network,
            "poll_id": poll.id,
            "position": pos,
            "label": label,
            "votes": votes,
        }
        for poll in by_id.values()
        for pos, label, votes in poll.options
    ]
    if not option_rows:
        return
    ostmt = _insert(session, option_table)
    ostmt = ostmt.on_conflict_do_update(
        index_elements=["network", "poll_id", "position"],
        set_={
            "label": ostmt.excluded.label,
            "votes": _greatest(session, option_table.c.votes, ostmt.excluded.votes),
        },
    )
    session.execute(ostmt, option_rows)


def store_posts(
    session: Session, records: Iterable[PostRecord], now: datetime
) -> tuple[list[str], dict[str, Metrics]]:
    """Store posts: new ones whole; of those stored before, only metrics that grew and a poll
    first seen (a post in `includes` comes again with every reply and retweet of it). Returns
    the ids that were not stored before, and every post's metrics as now stored."""
    by_id = _dedupe_posts(records)
    if not by_id:
        return [], {}
    ids = sorted(by_id)  # a fixed order avoids deadlocks between writers
    stored: dict[str, tuple[Any, ...]] = {
        row[0]: tuple(row[1:]) for row in _POSTS.rows(session, ids)
    }
    table = Post.__table__
    assert isinstance(table, Table)
    new_records = [by_id[post_id] for post_id in ids if post_id not in stored]
    if new_records:
        insert = BulkInsert.cached(session, "posts", lambda: _posts_upsert(session), POST_COLUMNS)
        stamp, raw = insert.binder("created_at"), insert.binder("raw")
        seen_at = stamp(now)
        insert.execute(
            session,
            [
                (
                    r.network,
                    r.id,
                    r.author_id,
                    stamp(r.created_at),
                    r.text,
                    r.kind,
                    r.in_reply_to_id,
                    r.in_reply_to_user_id,
                    r.quoted_id,
                    r.retweeted_id,
                    r.conversation_id,
                    r.lang,
                    r.poll_id,
                    r.retweet_count,
                    r.reply_count,
                    r.like_count,
                    r.quote_count,
                    r.impression_count,
                    raw(r.raw),
                    seen_at,
                )
                for r in new_records
            ],
        )
    grown = [
        {
            "b_network": record.network,
            "b_id": post_id,
            "b_retweets": record.retweet_count,
            "b_replies": record.reply_count,
            "b_likes": record.like_count,
            "b_quotes": record.quote_count,
            "b_impressions": record.impression_count,
            "b_poll": record.poll_id,
        }
        for post_id in ids
        if post_id in stored and _grows(stored[post_id], record := by_id[post_id])
    ]
    if grown:
        # Values only ever grow, so what another writer stored meanwhile is kept too.
        session.connection().execute(
            update(table)
            .where(table.c.network == bindparam("b_network"), table.c.id == bindparam("b_id"))
            .values(
                retweet_count=_greatest(session, table.c.retweet_count, bindparam("b_retweets")),
                reply_count=_greatest(session, table.c.reply_count, bindparam("b_replies")),
                like_count=_greatest(session, table.c.like_count, bindparam("b_likes")),
                quote_count=_greatest(session, table.c.quote_count, bindparam("b_quotes")),
                impression_count=func.coalesce(
                    _greatest(session, table.c.impression_count, bindparam("b_impressions")),
                    bindparam("b_impressions"),
                    table.c.impression_count,
                ),
                poll_id=func.coalesce(table.c.poll_id, bindparam("b_poll")),
            ),
            grown,
        )
    metrics: dict[str, Metrics] = {}
    for post_id, record in by_id.items():
        mine: Metrics = (
            record.retweet_count,
            record.like_count,
            record.reply_count,
            record.quote_count,
            record.impression_count,
        )
        seen = stored.get(post_id)
        if seen is not None:  # (retweets, replies, likes, quotes, impressions, poll) stored
            mine = (
                max(mine[0], seen[0]),
                max(mine[1], seen[2]),
                max(mine[2], seen[1]),
                max(mine[3], seen[3]),
                max_impressions(seen[4], mine[4]),
            )
        metrics[post_id] = mine
    return [post_id for post_id in by_id if post_id not in stored], metrics


def max_impressions(old: int | None, new: int | None) -> int | None:
    """The store's coalesce(greatest(old, new), new, old): a missing value never erases one."""
    if old is None:
        return new
    return old if new is None else max(old, new)


def _posts_upsert(session: Session) -> Any:
    """INSERT of new posts; another writer (another chat's worker) may have stored one of them
    meanwhile: then each metric keeps the larger value."""
    table = Post.__table__
    assert isinstance(table, Table)
    stmt = _insert(session, table)
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
    return stmt


def _grows(stored: tuple[Any, ...], record: PostRecord) -> bool:
    """Whether a copy of a stored post changes it: a larger metric, or a poll not known."""
    retweets, replies, likes, quotes, impressions, poll_id = stored
    return (
        record.retweet_count > retweets
        or record.reply_count > replies
        or record.like_count > likes
        or record.quote_count > quotes
        or (
            record.impression_count is not None
            and (impressions is None or record.impression_count > impressions)
        )
        or (poll_id is None and record.poll_id is not None)
    )


# The order of the rows `store_posts` builds (one tuple per post: `app.db.bulk`).
POST_COLUMNS = (
    "network",
    "id",
    "author_id",
    "created_at",
    "text",
    "kind",
    "in_reply_to_id",
    "in_reply_to_user_id",
    "quoted_id",
    "retweeted_id",
    "conversation_id",
    "lang",
    "poll_id",
    "retweet_count",
    "reply_count",
    "like_count",
    "quote_count",
    "impression_count",
    "raw",
    "first_seen_at",
)
# In the table's order, `approved` included though it has a default: BulkInsert passes the rows
# to the driver as they are, where another order (or a column left to its default) costs a copy
# of every row (7% of the database thread's time at 100,000 posts).
CHAT_POST_COLUMNS = (
    "chat_id",
    "network",
    "post_id",
    "created_at",
    "author_id",
    "kind",
    "question",
    "tag_method",
    "manual",
    "handled",
    "hidden",
    "collected_at",
    "approved",
    "person",
)


def collect(
    session: Session,
    chat_id: int,
    records: Iterable[PostRecord],
    now: datetime,
    tags: Mapping[str, Tag] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """Make posts members of the chat, with their question tags in `tags` when known (a post
    not in it is untagged) and their author's person (`app.people`); returns the ids the chat
    had not collected before, and their authors' persons. Whether a post is a cross-post is
    decided after (`copy_of` is left empty: `app.ingest.crossposts`)."""
    tags = tags or {}
    by_id = {record.id: record for record in records}
    if not by_id:
        return [], {}
    ids = sorted(by_id)  # a fixed order avoids deadlocks between writers
    existing = {row[0] for row in _MEMBERS.rows(session, ids, lookup_chat=chat_id)}
    persons = persons_of(
        session, (by_id[post_id].author_id for post_id in ids if post_id not in existing)
    )
    new_ids = [post_id for post_id in ids if post_id not in existing]
    if new_ids:
        insert = BulkInsert.cached(
            session, "chat_posts", lambda: _members_insert(session), CHAT_POST_COLUMNS
        )
        stamp = insert.binder("created_at")
        collected_at = stamp(now)
        rows = []
        for post_id in new_ids:
            record = by_id[post_id]
            tag = tags.get(post_id, NO_TAG)
            rows.append(
                (
                    chat_id,
                    record.network,
                    post_id,
                    stamp(record.created_at),
                    record.author_id,
                    record.kind,
                    tag.question,
                    tag.method,
                    False,
                    False,
                    False,
                    collected_at,
                    False,
                    persons[record.author_id],
                )
            )
        insert.execute(session, rows)
    return [post_id for post_id in by_id if post_id not in existing], persons


def _members_insert(session: Session) -> Any:
    table = ChatPost.__table__
    assert isinstance(table, Table)
    return _insert(session, table).on_conflict_do_nothing(
        index_elements=["chat_id", "network", "post_id"]
    )


def save_tags(session: Session, chat_id: int, tags: Mapping[str, Tag]) -> None:
    """Store the question tags of posts the chat collected, in one executemany; a manual tag
    is the panel's and stays. Ids the chat has not collected change nothing."""
    if not tags:
        return
    session.flush()  # a manual mark set on a loaded row in this session must count
    table = ChatPost.__table__
    assert isinstance(table, Table)
    stmt = (
        update(table)
        .where(
            table.c.chat_id == chat_id,
            table.c.network == bindparam("b_network"),
            table.c.post_id == bindparam("b_post"),
            table.c.manual.is_(False),
        )
        .values(question=bindparam("b_question"), tag_method=bindparam("b_method"))
    )
    rows = [
        {
            "b_network": post_network(post_id),
            "b_post": post_id,
            "b_question": tag.question,
            "b_method": tag.method,
        }
        for post_id, tag in sorted(tags.items())  # a fixed order avoids deadlocks
    ]
    session.connection().execute(stmt, rows)


def store_parsed(
    session: Session, chat_id: int, parsed: Parsed, tags: Mapping[str, Tag] | None = None
) -> StoreResult:
    """Write one batch (the caller commits): users, polls, posts, then the chat's membership,
    newly collected posts with their tags in `tags` if given."""
    now = datetime.now(UTC)
    store_users(session, parsed.users)
    store_polls(session, parsed.polls)
    all_posts = _dedupe_posts([*parsed.context, *parsed.collected])
    stored, metrics = store_posts(session, all_posts.values(), now)
    new_ids = set(stored)
    collected = {record.id: all_posts[record.id] for record in parsed.collected}
    members, persons = collect(session, chat_id, collected.values(), now, tags)
    newly = set(members)
    return StoreResult(
        new_posts=[all_posts[post_id] for post_id in all_posts if post_id in new_ids],
        newly_collected=[collected[post_id] for post_id in collected if post_id in newly],
        metrics=metrics,
        persons=persons,
    )
