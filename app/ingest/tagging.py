"""Keep a chat's stored question tags equal to what the tagger says of its posts.

The tagger (`app.ingest.tagger`) is pure; this module feeds it the chat's collected posts and the
context posts they lead to, writes back the tags that changed, and records the host's question
posts on the run of show.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from datetime import datetime

from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.orm import Session

from app.db.lookup import keyed
from app.db.models import Account, Chat, ChatPost, Post, Question
from app.ingest.crossposts import refresh_copies
from app.ingest.parse import post_network
from app.ingest.tagger import ChatPlan, Tag, Tagger, TagInput
from app.people import refresh_persons

_CHUNK = 1000


def chat_plan(chat: Chat) -> ChatPlan:
    return ChatPlan(
        hosts=frozenset(host.lower() for host in chat.hosts),
        planned={q.number: q.planned_at for q in chat.questions if q.planned},
        start=chat.start_at,
        end=chat.end_at,
    )


def _inputs(
    rows: Iterable[tuple[str, str | None, datetime, str, str | None, str | None, str]],
) -> list[TagInput]:
    return [
        TagInput.from_text(
            id=post_id,
            author=username or "",
            created_at=created_at,
            kind=kind,
            in_reply_to_id=in_reply_to_id,
            quoted_id=quoted_id,
            text=text,
        )
        for post_id, username, created_at, kind, in_reply_to_id, quoted_id, text in rows
    ]


def _post_columns() -> tuple[object, ...]:
    return (
        Post.id,
        Account.username,
        Post.created_at,
        Post.kind,
        Post.in_reply_to_id,
        Post.quoted_id,
        Post.text,
    )


def load_tagger(
    session: Session, chat: Chat
) -> tuple[Tagger, dict[str, tuple[int | None, str | None, bool]]]:
    """A tagger holding the chat's collected posts and the context posts they reference, and the
    stored tag of each collected post: {post id: (question, method, manual)}."""
    account_join = and_(Account.network == Post.network, Account.id == Post.author_id)
    rows = session.execute(
        select(*_post_columns(), ChatPost.question, ChatPost.tag_method, ChatPost.manual)  # type: ignore[call-overload]
        .join(ChatPost, and_(ChatPost.network == Post.network, ChatPost.post_id == Post.id))
        .outerjoin(Account, account_join)
        .where(ChatPost.chat_id == chat.id)
    ).all()
    stored = {row[0]: (row[7], row[8], bool(row[9])) for row in rows}
    inputs = _inputs(tuple(row[:7]) for row in rows)
    # Follow replies and quotes into context posts (and their parents) until nothing new is found.
    wanted = {ref for item in inputs for ref in (item.in_reply_to_id, item.quoted_id) if ref}
    inputs.extend(tag_inputs(session, wanted - stored.keys(), known=stored))
    tagger = Tagger(chat_plan(chat))
    tagger.add(inputs)
    for post_id, (question, _method, manual) in stored.items():
        if manual:
            tagger.set_manual(post_id, question)
    return tagger, stored


def tag_inputs(
    session: Session, ids: Iterable[str], known: Container[str] = frozenset()
) -> list[TagInput]:
    """The stored posts `ids` as tagger inputs, and the posts they reply to or quote (and theirs)
    that are stored and not in `known` (e.g. the tagger's own tags: a view, never copied, so
    that a batch costs the same in a chat of any size). Ids not stored anywhere are left out."""
    account_join = and_(Account.network == Post.network, Account.id == Post.author_id)
    seen: set[str] = set()
    wanted = set(ids)
    inputs: list[TagInput] = []
    while wanted:
        batch = sorted(wanted)
        seen.update(batch)
        wanted = set()
        for start in range(0, len(batch), _CHUNK):
            part = batch[start : start + _CHUNK]
            found = _inputs(
                tuple(row)
                for row in session.execute(
                    select(*_post_columns())  # type: ignore[call-overload]
                    .outerjoin(Account, account_join)
                    .where(keyed(session, Post.network, Post.id, part))
                ).all()
            )
            inputs.extend(found)
            wanted.update(
                ref
                for item in found
                for ref in (item.in_reply_to_id, item.quoted_id)
                if ref and ref not in seen and ref not in known
            )
    return inputs


def retag_chat(session: Session, chat: Chat) -> int:
    """Recompute every tag of the chat and store those that changed; returns how many changed.
    The chat's cross-posts are worked out again too (`app.ingest.crossposts`): an import and a
    reload of the run of show end here."""
    tagger, stored = load_tagger(session, chat)
    changes: list[dict[str, object]] = []
    for post_id, (question, method, manual) in stored.items():
        if manual:
            continue
        tag: Tag = tagger.tag(post_id)
        if (tag.question, tag.method) != (question, method):
            changes.append(
                {
                    "b_network": post_network(post_id),
                    "b_post": post_id,
                    "question": tag.question,
                    "tag_method": tag.method,
                }
            )
    if changes:
        stmt = (
            update(ChatPost)
            .where(
                ChatPost.chat_id == chat.id,
                ChatPost.network == bindparam("b_network"),
                ChatPost.post_id == bindparam("b_post"),
            )
            .values(question=bindparam("question"), tag_method=bindparam("tag_method"))
        )
        session.connection().execute(stmt, changes)
    record_question_posts(session, chat, tagger.question_posts())
    refresh_persons(session, chat.id)
    refresh_copies(session, chat)
    return len(changes)


def record_question_posts(
    session: Session, chat: Chat, posts: Mapping[int, tuple[str, datetime]]
) -> None:
    """Note each host question post on the run of show (`Tagger.question_posts()`: number ->
    post id and time; a plain mapping, so that a process without the tagger can write it); a
    question the organisers did not plan is added from the post, so that the figures list it."""
    by_number = {q.number: q for q in chat.questions}
    texts: dict[str, str] = {}
    if posts:
        ids = [post_id for post_id, _ in posts.values()]
        texts = dict(
            session.execute(
                select(Post.id, Post.text).where(keyed(session, Post.network, Post.id, ids))
            ).all()
        )
    for number, (post_id, posted_at) in sorted(posts.items()):
        question = by_number.get(number)
        if question is None:
            question = Question(number=number, text=texts.get(post_id, ""), planned=False)
            chat.questions.append(question)
            by_number[number] = question
        if not question.text:
            question.text = texts.get(post_id, "")
        question.post_id = post_id
        question.posted_at = posted_at
    # A question post that is no longer there (never happens with imports, but a manual re-tag
    # may) leaves the planned question without a post.
    for number, question in by_number.items():
        if number not in posts and question.post_id is not None:
            question.post_id = None
            question.posted_at = None
    session.flush()
