"""A chat's figures, counted in the database exactly as PRODUCT.md defines them.

This is the figures' reference implementation: `tweetchat stats`, the stats endpoint and the
exports all read it. (Live figures during a chat are kept incrementally elsewhere and must agree.)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    distinct,
    exists,
    func,
    literal,
    select,
)
from sqlalchemy.orm import Session, aliased

from app.db.models import Account, Chat, ChatPost, Poll, PollOption, Post, TrendSnapshot
from app.errors import InvalidInput
from app.ingest.parse import id_order, post_network
from app.links import post_url, status_url_of

Window = Literal["chat", "all"]
WINDOWS: tuple[Window, ...] = ("chat", "all")
TOP_TWEETS = 10
TOP_ANSWERS = 3


def check_window(value: str) -> Window:
    if value not in WINDOWS:
        raise InvalidInput(f"unknown window {value!r}; use 'chat' (the chat hour) or 'all'")
    return value


def _in_window(chat: Chat, window: Window) -> ColumnElement[bool]:
    condition = ChatPost.chat_id == chat.id
    if window == "chat":
        condition = and_(
            condition, ChatPost.created_at >= chat.start_at, ChatPost.created_at < chat.end_at
        )
    return condition


def counted(where: ColumnElement[bool]) -> ColumnElement[bool]:
    """The posts of `where` that count: all but cross-posts' copies (app/ingest/crossposts.py)."""
    return and_(where, ChatPost.copy_of.is_(None))


def account_ids(session: Session, usernames: list[str]) -> list[str]:
    if not usernames:
        return []
    lowered = [name.lower() for name in usernames]
    return list(
        session.scalars(select(Account.id).where(func.lower(Account.username).in_(lowered)))
    )


def collected_retweets(chat: Chat) -> Any:
    """Subquery: for each post, how many retweets of it the chat collected."""
    rt_post = aliased(Post)
    return (
        select(rt_post.retweeted_id.label("rid"), func.count().label("n"))
        .select_from(ChatPost)
        .join(rt_post, and_(rt_post.network == ChatPost.network, rt_post.id == ChatPost.post_id))
        .where(ChatPost.chat_id == chat.id, ChatPost.kind == "retweet")
        .group_by(rt_post.retweeted_id)
        .subquery("collected_rts")
    )


def effective_retweets(rts: Any) -> ColumnElement[int]:
    """A post's retweets: the larger of its public metric and the retweets collected."""
    collected = func.coalesce(rts.c.n, 0)
    return case((collected > Post.retweet_count, collected), else_=Post.retweet_count)


def posts_query(chat: Chat) -> tuple[Select[ChatPost, Post, str, str, int], ColumnElement[int]]:
    """The chat's collected posts joined with their post and author, and their retweets."""
    rts = collected_retweets(chat)
    retweets = effective_retweets(rts).label("retweets")
    query = (
        select(ChatPost, Post, Account.username, Account.name, retweets)
        .join(Post, and_(Post.network == ChatPost.network, Post.id == ChatPost.post_id))
        .outerjoin(Account, and_(Account.network == Post.network, Account.id == Post.author_id))
        .outerjoin(rts, rts.c.rid == Post.id)
    )
    return query, retweets


def post_object(
    chat_post: ChatPost,
    post: Post,
    username: str | None,
    name: str | None,
    retweets: int,
    also: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """A post as every view shows it. `also`: its cross-posts' copies (`with_also` fills it)."""
    return {
        "id": post.id,
        "network": post.network,
        "username": username or "",
        "name": name or "",
        "text": post.text,
        "created_at": iso_time(post.created_at),
        "kind": post.kind,
        "question": chat_post.question,
        "tag_method": chat_post.tag_method,
        "retweets": int(retweets),
        "likes": post.like_count,
        "replies": post.reply_count,
        "quotes": post.quote_count,
        "impressions": post.impression_count or 0,
        "url": post_url(post.network, post.id, username, status_url_of(post.network, post.raw)),
        "also": also or [],
    }


def status_url_column() -> ColumnElement[str | None]:
    """A Mastodon status's own page, read out of its stored payload (only theirs: an X post's
    payload is not parsed for it)."""
    return case((Post.network == "mastodon", Post.raw["url"].as_string()), else_=None)


def copies_of(session: Session, chat_id: int, ids: list[str]) -> dict[str, list[dict[str, str]]]:
    """The copies of each of these posts of the chat (its cross-posts on other networks), as
    post objects list them under `also`: oldest first."""
    found: dict[str, list[tuple[datetime, tuple[int, str], dict[str, str]]]] = {}
    wanted = sorted(set(ids))
    for start in range(0, len(wanted), 1000):
        rows = session.execute(
            select(
                ChatPost.copy_of,
                Post.network,
                Post.id,
                Post.created_at,
                Account.username,
                status_url_column(),
            )
            .join(Post, and_(Post.network == ChatPost.network, Post.id == ChatPost.post_id))
            .outerjoin(Account, and_(Account.network == Post.network, Account.id == Post.author_id))
            .where(ChatPost.chat_id == chat_id, ChatPost.copy_of.in_(wanted[start : start + 1000]))
        )
        for first, network, post_id, created_at, username, status_url in rows:
            assert first is not None
            found.setdefault(first, []).append(
                (
                    created_at,
                    id_order(post_id),
                    also_entry(network, post_id, post_url(network, post_id, username, status_url)),
                )
            )
    return {first: [entry for *_, entry in sorted(items)] for first, items in found.items()}


def also_entry(network: str, post_id: str, url: str) -> dict[str, str]:
    return {"network": network, "id": post_id, "url": url}


def with_also(
    session: Session, chat_id: int, objects: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Fill the `also` of these post objects (in place) with their copies; returns them."""
    if objects:
        copies = copies_of(session, chat_id, [obj["id"] for obj in objects])
        for obj in objects:
            obj["also"] = copies.get(obj["id"], [])
    return objects


def iso_time(value: datetime) -> str:
    """`2023-03-28T18:00:30Z` (the value is UTC, aware or naive; seconds only). `isoformat`
    rather than `strftime`: a third of the time, and every post the live updates carry has one."""
    return value.isoformat(timespec="seconds")[:19] + "Z"


def chat_stats(session: Session, chat: Chat, window: Window = "chat") -> dict[str, Any]:
    window = check_window(window)
    where = _in_window(chat, window)
    kinds = dict(
        session.execute(
            select(ChatPost.kind, func.count()).where(counted(where)).group_by(ChatPost.kind)
        ).all()
    )
    # People, not accounts: linked accounts count once (app/people.py).
    participants = session.scalar(
        select(func.count(distinct(ChatPost.person))).where(counted(where))
    )
    answers_where, staff_ids = answers_filter(session, chat, where)

    per_question = {
        number: (count, people)
        for number, count, people in session.execute(
            select(ChatPost.question, func.count(), func.count(distinct(ChatPost.person)))
            .where(answers_where)
            .group_by(ChatPost.question)
        )
    }
    base, retweets = posts_query(chat)
    ranking = (retweets.desc(), Post.like_count.desc(), Post.created_at, Post.id)

    numbers = sorted({q.number for q in chat.questions} | {n for n in per_question if n})
    texts = {q.number: q.text for q in chat.questions}
    questions: list[dict[str, Any]] = []
    for number in numbers:
        top_rows = session.execute(
            base.where(answers_where, ChatPost.question == number)
            .order_by(*ranking)
            .limit(TOP_ANSWERS)
        )
        answers, people = per_question.get(number, (0, 0))
        questions.append(
            {
                "number": number,
                "text": texts.get(number, ""),
                "answers": answers,
                "participants": people,
                "top": [post_object(*row) for row in top_rows],
            }
        )

    top_rows = session.execute(
        base.where(counted(where), ChatPost.kind != "retweet").order_by(*ranking).limit(TOP_TWEETS)
    )
    top_tweets = [post_object(*row) for row in top_rows]
    with_also(session, chat.id, [*top_tweets, *(post for q in questions for post in q["top"])])

    return {
        "chat": chat.slug,
        "window": window,
        "participants": participants or 0,
        "original_tweets": sum(n for kind, n in kinds.items() if kind != "retweet"),
        "retweets": kinds.get("retweet", 0),
        "replies": kinds.get("reply", 0),
        "quotes": kinds.get("quote", 0),
        "questions": questions,
        "top_tweets": top_tweets,
        "polls": chat_polls(session, chat, where),
        "unanswered": unanswered_count(session, chat, answers_where, staff_ids),
        "trending": chat_trending(session, chat)[0],
    }


def trending_of(snapshot: TrendSnapshot, hashtags: list[str]) -> tuple[list[dict[str, Any]], str]:
    """The chat's hashtags' ranks in one trends reading, and a note when none is trending."""
    if not snapshot.available:
        return [], f"trends unavailable: {snapshot.detail}"
    ranks = {
        str(t.get("name", "")).lstrip("#").casefold(): int(t.get("rank") or i)
        for i, t in enumerate(snapshot.trends, start=1)
    }
    trending = [
        {"hashtag": tag, "rank": ranks[tag.lstrip("#").casefold()], "location": snapshot.location}
        for tag in hashtags
        if tag.lstrip("#").casefold() in ranks
    ]
    return trending, "" if trending else f"not trending in {snapshot.location}"


def chat_trending(session: Session, chat: Chat) -> tuple[list[dict[str, Any]], str]:
    """`trending` from the chat's latest trends reading ([] and a note when there is none)."""
    latest = session.scalar(
        select(TrendSnapshot)
        .where(TrendSnapshot.chat_id == chat.id)
        .order_by(TrendSnapshot.taken_at.desc(), TrendSnapshot.id.desc())
        .limit(1)
    )
    if latest is None:
        return [], ""  # no trends source (an import, a replay): nothing to say
    return trending_of(latest, chat.hashtags)


def answers_filter(
    session: Session, chat: Chat, where: ColumnElement[bool]
) -> tuple[ColumnElement[bool], list[str]]:
    """The answers among `where` (tagged non-retweets by anyone but a host, cross-posts' copies
    left out), and the account ids of the hosts and panel."""
    host_ids = account_ids(session, chat.hosts)
    condition = and_(counted(where), ChatPost.question.is_not(None), ChatPost.kind != "retweet")
    if host_ids:
        condition = and_(condition, ChatPost.author_id.not_in(host_ids))
    return condition, host_ids + account_ids(session, chat.panel)


def unanswered_query(chat: Chat, answers_where: ColumnElement[bool], staff_ids: list[str]) -> Any:
    """Answers by neither host nor panel, with no collected reply from them (to the answer or to
    one of its cross-posts' copies), not handled."""
    copy = aliased(ChatPost)
    condition = and_(answers_where, ChatPost.handled.is_(False))
    if staff_ids:
        answered = _staff_replied(chat, staff_ids, ChatPost.network, ChatPost.post_id)
        # A reply to a copy (the same answer on another network) answers it too: from the
        # answer to its copies through ix_chat_posts_chat_copy_of, then as above.
        answered_copy = exists(
            select(literal(1))
            .select_from(copy)
            .where(
                copy.chat_id == chat.id,
                copy.copy_of == ChatPost.post_id,
                _staff_replied(chat, staff_ids, copy.network, copy.post_id),
            )
        )
        condition = and_(condition, ChatPost.author_id.not_in(staff_ids), ~answered, ~answered_copy)
    return condition


def _staff_replied(
    chat: Chat, staff_ids: list[str], network: Any, post_id: Any
) -> ColumnElement[bool]:
    """Whether the chat collected a reply by a host or panel member to the post (network,
    post_id). Driven from the post: its replies through ix_posts_in_reply_to, then each reply's
    membership by primary key (scanning the chat's members per post was O(n^2) on SQLite)."""
    reply = aliased(Post)
    reply_member = aliased(ChatPost)
    return exists(
        select(literal(1))
        .select_from(reply)
        .join(
            reply_member,
            and_(
                reply_member.chat_id == chat.id,
                reply_member.network == reply.network,
                reply_member.post_id == reply.id,
            ),
        )
        .where(
            reply.network == network,
            reply.in_reply_to_id == post_id,
            reply.author_id.in_(staff_ids),
        )
    )


def unanswered_count(
    session: Session, chat: Chat, answers_where: ColumnElement[bool], staff_ids: list[str]
) -> int:
    condition = unanswered_query(chat, answers_where, staff_ids)
    return session.scalar(select(func.count()).select_from(ChatPost).where(condition)) or 0


def chat_polls(session: Session, chat: Chat, where: ColumnElement[bool]) -> list[dict[str, Any]]:
    """Polls attached to the posts collected in the window (a retweet of a poll carries it too)."""
    first_seen = (
        select(Post.poll_id, func.min(Post.created_at).label("at"))
        .join(ChatPost, and_(ChatPost.network == Post.network, ChatPost.post_id == Post.id))
        .where(where, Post.poll_id.is_not(None))
        .group_by(Post.poll_id)
    )
    polls = []
    # By the first time each was posted, then by id (as the live figures order them): SQL's
    # ORDER BY leaves equal times in whatever order the plan gives.
    for poll_id, _at in sorted(session.execute(first_seen), key=lambda row: (row[1], row[0])):
        poll = session.get(Poll, (post_network(poll_id or ""), poll_id))
        if poll is None:
            continue  # the page did not include the poll object
        options: list[PollOption] = list(poll.options)
        total = sum(option.votes for option in options)
        polls.append(
            {
                "id": poll.id,
                "voting_status": poll.voting_status,
                "options": [
                    {
                        "label": option.label,
                        "votes": option.votes,
                        "share": round(option.votes / total, 4) if total else 0.0,
                    }
                    for option in options
                ],
                "total": total,
            }
        )
    return polls
