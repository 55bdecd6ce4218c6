"""The tables: series, chats and their questions, accounts, posts, each chat's collected posts
with their question tags, and polls.

Posts and accounts are keyed by (network, id) so that a post is stored once whatever the number of
times it is received, and so that Mastodon and Bluesky can sit beside X later. A post belongs to a
chat when the chat *collected* it (a `ChatPost` row); posts that arrived only as context (the
replied-to, quoted or retweeted post in `includes`) are stored without one and counted nowhere.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from app.db.types import UTCDateTime

# Named constraints so that Alembic migrations are the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Ids of posts, polls and accounts: X's are digits, Mastodon's the status's `https://` uri (or
# `user@domain` for an account), Bluesky's an `at://` uri or a DID.
ID_LENGTH = 512
HANDLE_LENGTH = 320  # a Mastodon handle: user@domain
SOURCE_LENGTH = 100  # "x-search", or a network's source on one server ("mastodon:fosstodon.org")

POST_KINDS = ("original", "reply", "quote", "retweet")
TAG_METHODS = ("prefix", "suffix", "reply", "quote", "window", "manual")
SOURCES = ("x-search", "x-stream", "none")  # a chat's X source (Chat.source)


def _author_of(context: Any) -> Any:
    """A chat post's default person: its author (an account linked later is put right by
    `app.people.refresh_persons`)."""
    return context.get_current_parameters()["author_id"]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class Series(Base):
    __tablename__ = "series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(300), default="")

    chats: Mapped[list[Chat]] = relationship(back_populates="series")


class Chat(Base):
    __tablename__ = "chats"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    # Stored as given ("#LeadingQI"); matched case-insensitively.
    hashtags: Mapped[list[str]] = mapped_column(JSON)
    hosts: Mapped[list[str]] = mapped_column(JSON)
    panel: Mapped[list[str]] = mapped_column(JSON)
    start_at: Mapped[datetime]
    end_at: Mapped[datetime]
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # The X source (x-search, x-stream or none); Mastodon and Bluesky are followed beside it.
    source: Mapped[str] = mapped_column(String(16), default="none")
    # Host names of the Mastodon servers whose hashtag timelines the chat follows, lower-cased.
    mastodon_servers: Mapped[list[str]] = mapped_column(
        JSON, default=list, server_default=text("'[]'")
    )
    # Whether the chat follows Bluesky's search too.
    bluesky: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    series_id: Mapped[int | None] = mapped_column(ForeignKey("series.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]
    # The big screen: shown without a credential?, how posts reach it, what never does.
    screen_public: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    screen_mode: Mapped[str] = mapped_column(
        String(16), default="immediate", server_default="immediate"
    )
    screen_delay: Mapped[int] = mapped_column(Integer, default=30, server_default="30")
    blocked_words: Mapped[list[str]] = mapped_column(
        JSON, default=list, server_default=text("'[]'")
    )
    blocked_accounts: Mapped[list[str]] = mapped_column(
        JSON, default=list, server_default=text("'[]'")
    )
    # The host's choice of current question (None: the latest question post decides).
    current_question: Mapped[int | None] = mapped_column(Integer)

    series: Mapped[Series | None] = relationship(back_populates="chats")
    questions: Mapped[list[Question]] = relationship(
        back_populates="chat", order_by="Question.number", cascade="all, delete-orphan"
    )


class Question(Base):
    __tablename__ = "questions"
    __table_args__ = (UniqueConstraint("chat_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"))
    number: Mapped[int]
    text: Mapped[str] = mapped_column(Text, default="")
    planned_at: Mapped[datetime | None]
    # True for the run of show given by the organisers; False for a question first seen as a host
    # post (the tagger's valid numbers depend on which is which).
    planned: Mapped[bool] = mapped_column(Boolean, default=True)
    post_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    posted_at: Mapped[datetime | None]

    chat: Mapped[Chat] = relationship(back_populates="questions")


class Account(Base):
    __tablename__ = "accounts"

    network: Mapped[str] = mapped_column(String(16), primary_key=True)
    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    username: Mapped[str] = mapped_column(String(HANDLE_LENGTH), index=True)
    name: Mapped[str] = mapped_column(String(300), default="")
    profile_image_url: Mapped[str | None] = mapped_column(String(500))
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    followers_count: Mapped[int | None] = mapped_column(Integer)


class LinkedAccount(Base):
    """An account linked with others of the same person (on other networks, or the same): all of
    a person's accounts share one `person` key, the id of the first of them by (network, id).
    Accounts never linked are not here: their person is their own id."""

    __tablename__ = "linked_accounts"

    network: Mapped[str] = mapped_column(String(16), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    person: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    linked_at: Mapped[datetime]


class Post(Base):
    __tablename__ = "posts"
    __table_args__ = (
        Index("ix_posts_in_reply_to", "network", "in_reply_to_id"),
        Index("ix_posts_quoted", "network", "quoted_id"),
        Index("ix_posts_retweeted", "network", "retweeted_id"),
    )

    network: Mapped[str] = mapped_column(String(16), primary_key=True)
    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    author_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    created_at: Mapped[datetime]
    text: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))
    in_reply_to_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    in_reply_to_user_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    quoted_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    retweeted_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    conversation_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    lang: Mapped[str | None] = mapped_column(String(16))
    poll_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    # Latest public_metrics; kept as the largest value seen so that arrival order never matters.
    retweet_count: Mapped[int] = mapped_column(Integer, default=0)
    reply_count: Mapped[int] = mapped_column(Integer, default=0)
    like_count: Mapped[int] = mapped_column(Integer, default=0)
    quote_count: Mapped[int] = mapped_column(Integer, default=0)
    impression_count: Mapped[int | None] = mapped_column(BigInteger)
    raw: Mapped[dict[str, Any]] = mapped_column(JSON)
    first_seen_at: Mapped[datetime]


class ChatPost(Base):
    """A post the chat collected, with its question tag and the panel's marks.

    created_at, author_id and kind are copies of the post's (they never change) so that the
    figures are counted from this table alone.
    """

    __tablename__ = "chat_posts"
    __table_args__ = (
        ForeignKeyConstraint(["network", "post_id"], ["posts.network", "posts.id"]),
        Index("ix_chat_posts_chat_created", "chat_id", "created_at"),
        Index("ix_chat_posts_chat_question", "chat_id", "question"),
        Index("ix_chat_posts_chat_copy_of", "chat_id", "copy_of"),
        Index("ix_chat_posts_author", "network", "author_id"),
    )

    chat_id: Mapped[int] = mapped_column(
        ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True
    )
    network: Mapped[str] = mapped_column(String(16), primary_key=True)
    post_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    created_at: Mapped[datetime]
    author_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    kind: Mapped[str] = mapped_column(String(16))
    question: Mapped[int | None] = mapped_column(Integer)
    tag_method: Mapped[str | None] = mapped_column(String(16))
    manual: Mapped[bool] = mapped_column(Boolean, default=False)
    handled: Mapped[bool] = mapped_column(Boolean, default=False)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    collected_at: Mapped[datetime]
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    pinned_at: Mapped[datetime | None]
    approved: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # Who the author is: their account id, or the key of the accounts linked with it
    # (`LinkedAccount.person`); participants are counted by it. A row written without it (a bulk
    # insert of its own) takes its author's id.
    person: Mapped[str] = mapped_column(String(ID_LENGTH), default=_author_of)
    # A cross-post: the id of the chat's post this one repeats (the same person's same text on
    # another network within a few minutes, app/ingest/crossposts.py). Counted nowhere.
    copy_of: Mapped[str | None] = mapped_column(String(ID_LENGTH))


class Poll(Base):
    __tablename__ = "polls"

    network: Mapped[str] = mapped_column(String(16), primary_key=True)
    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    voting_status: Mapped[str | None] = mapped_column(String(16))
    end_datetime: Mapped[datetime | None]
    duration_minutes: Mapped[int | None] = mapped_column(Integer)

    options: Mapped[list[PollOption]] = relationship(
        order_by="PollOption.position", cascade="all, delete-orphan"
    )


class PollOption(Base):
    __tablename__ = "poll_options"
    __table_args__ = (
        ForeignKeyConstraint(
            ["network", "poll_id"], ["polls.network", "polls.id"], ondelete="CASCADE"
        ),
    )

    network: Mapped[str] = mapped_column(String(16), primary_key=True)
    poll_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(100))
    votes: Mapped[int] = mapped_column(Integer, default=0)


class SourceState(Base):
    """Where a chat's source stands: its position (to resume without losing or doubling a post),
    its state for the panel, and what it has read (X charges per post read)."""

    __tablename__ = "source_states"

    chat_id: Mapped[int] = mapped_column(
        ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True
    )
    source: Mapped[str] = mapped_column(String(SOURCE_LENGTH), primary_key=True)
    position: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default="idle")
    detail: Mapped[str] = mapped_column(Text, default="")
    posts_read: Mapped[int] = mapped_column(Integer, default=0)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime]


class TrendSnapshot(Base):
    """One reading of the trends of a location, or why there was none."""

    __tablename__ = "trend_snapshots"
    __table_args__ = (Index("ix_trend_snapshots_chat_taken", "chat_id", "taken_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"))
    taken_at: Mapped[datetime]
    woeid: Mapped[int] = mapped_column(Integer)
    location: Mapped[str] = mapped_column(String(100))
    available: Mapped[bool] = mapped_column(Boolean)
    detail: Mapped[str] = mapped_column(Text, default="")
    # [{"name": "#QIHour", "tweet_count": 1234 | None}, ...] in rank order.
    trends: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class PanelToken(Base):
    """A panel member's credential for one chat; only its SHA-256 is stored."""

    __tablename__ = "panel_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]


class SourceOutage(Base):
    """A stretch of time a live source could not collect: from its first `waiting` or `failing`
    report to the next `running` (or `stopped`) one; `ended_at` is None while it lasts.

    Only the sources that collect posts have outages (trends and metric refreshes lose none).
    `state` and `detail` are those of the report that began it, as the source gave them.
    """

    __tablename__ = "source_outages"
    __table_args__ = (Index("ix_source_outages_chat_started", "chat_id", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(SOURCE_LENGTH))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    state: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="")
