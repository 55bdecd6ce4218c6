"""What the benchmarks share: a deterministic generator of X API v2 archives that look like a real
chat, the benchmark chat, fresh databases to run in, and how results are printed.

`ChatGenerator` writes X API v2 response pages (`data`, `includes.users`, `includes.tweets`,
`includes.polls`, `meta`) for a chat with the shape of a real one: about 45% retweets of popular
posts, 20% replies (threads, panel replies to answers, a few replies to posts outside the chat),
5% quotes (of question posts and answers), the rest original posts; answers carry question
markers ("A2 ...", "... #BenchChat A2"); the host posts Q1..Q6 at their times; a few thousand
authors, some far more active than others. The same seed gives the same archive, byte for byte.

Benchmarks import this module as `benchmarks.common` (the repository root on `sys.path`) or as
`common` (run from this folder); it imports nothing from its siblings.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import threading
import time
import uuid
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from app.chats import QuestionPlan, create_chat
from app.db.engine import open_database
from app.db.models import Account, ChatPost, Post
from app.ingest.parse import NETWORK, PostRecord, UserRecord

# -- the benchmark chat ----------------------------------------------------------------------------

SLUG = "bench"
TITLE = "Benchmark chat"
HASHTAGS = ("#BenchChat", "#BenchHour")
HOST = "BenchHost"
HOST_ID = "900000001"
PANEL = ("PanelAda", "PanelBea", "PanelCy", "PanelDee")
PANEL_IDS = ("900000002", "900000003", "900000004", "900000005")
CHAT_START = datetime(2024, 3, 26, 19, 0, tzinfo=UTC)
CHAT_END = CHAT_START + timedelta(hours=1)
# The run of show: (minutes after the start, question). The host posts each as "Qn. text".
QUESTIONS: tuple[tuple[int, str], ...] = (
    (2, "Let's start with a poll! Is this your first #BenchChat?"),
    (10, "What does good leadership look like on a busy ward?"),
    (20, "What stops improvement ideas from spreading?"),
    (30, "How do you make time for reflection in your team?"),
    (40, "Which measures tell you a change is working?"),
    (50, "What one thing will you do differently next week?"),
)

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
POSTGRES_ENV = "TWEETCHAT_TEST_POSTGRES_URL"

_TWITTER_EPOCH_MS = 1288834974657
_VOCABULARY = (
    "leaders team patients staff change quality improvement time listen support culture data "
    "learning safety trust ward huddle coaching feedback voice kindness measure flow waste "
    "values honest curious together small steps everyone matters energy front line joy"
)
_WORDS = tuple(_VOCABULARY.split())
_SOURCES = ("Twitter for iPhone", "Twitter for Android", "Twitter Web App")


def default_postgres_url() -> str:
    return os.environ.get(POSTGRES_ENV) or DEFAULT_POSTGRES_URL


def add_database_options(parser: argparse.ArgumentParser) -> None:
    """`--postgres-url` and `--workdir`: where a benchmark makes its fresh databases."""
    parser.add_argument(
        "--postgres-url",
        default=default_postgres_url(),
        help="server to create bench_* databases on (default: $TWEETCHAT_TEST_POSTGRES_URL "
        "or postgresql://postgres@127.0.0.1:5432/postgres)",
    )
    parser.add_argument("--workdir", type=Path, help="where the SQLite files go (a temp folder)")


def create_bench_chat(session: Session, slug: str = SLUG) -> int:
    """Create the benchmark chat with its run of show; returns its id."""
    chat = create_chat(
        session,
        slug=slug,
        title=TITLE,
        hashtags=list(HASHTAGS),
        hosts=[HOST],
        panel=list(PANEL),
        start=CHAT_START,
        end=CHAT_END,
        questions=[
            QuestionPlan(n, text, CHAT_START + timedelta(minutes=minute))
            for n, (minute, text) in enumerate(QUESTIONS, start=1)
        ],
    )
    return chat.id


# -- the archive generator -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mix:
    """Shares of each kind among collected posts (originals take the rest)."""

    retweet: float = 0.45
    reply: float = 0.20
    quote: float = 0.05


@dataclass(slots=True)
class _User:
    id: str
    username: str
    name: str
    followers: int

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "name": self.name,
            "profile_image_url": "https://pbs.twimg.com/profile_images/0/avatar_normal.jpg",
            "verified": False,
            "public_metrics": {
                "followers_count": self.followers,
                "following_count": self.followers // 2 + 10,
                "tweet_count": self.followers * 3 + 5,
                "listed_count": self.followers // 100,
            },
        }


@dataclass
class ChatGenerator:
    """A deterministic stream of a chat's posts, as X API v2 response pages.

    Successive calls continue the same chat: later posts retweet, reply to and quote earlier
    ones, so a benchmark can preload a chat and then add more posts that belong to it.
    """

    seed: int = 6
    authors: int = 3000
    mix: Mix = field(default_factory=Mix)
    # How many recent posts retweets, replies and quotes pick from.
    pool_size: int = 2000

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        rng = self._rng
        self._host = _User(HOST_ID, HOST, "Bench Host", 25_000)
        self._panel = [
            _User(pid, name, f"Panel {name[5:]}", 5_000 + i)
            for i, (pid, name) in enumerate(zip(PANEL_IDS, PANEL, strict=True))
        ]
        self._members = [
            _User(
                str(1_000_000_000 + i * 7919),
                f"member{i:05d}",
                f"Member {i}",
                rng.randint(10, 9000),
            )
            for i in range(self.authors)
        ]
        # Some people post far more than others (roughly Zipf).
        weights = [1.0 / (i + 1) ** 0.8 for i in range(self.authors)]
        total = 0.0
        self._cum: list[float] = []
        for w in weights:
            total += w
            self._cum.append(total)
        self._outsiders = [
            _User(str(2_000_000_000 + i * 104729), f"outsider{i:03d}", f"Outsider {i}", 100 + i)
            for i in range(200)
        ]
        self._seq = 0
        self._pool: deque[dict[str, Any]] = deque(maxlen=self.pool_size)  # non-retweets
        self._popular: deque[dict[str, Any]] = deque(maxlen=64)  # what gets retweeted
        self._questions: dict[int, dict[str, Any]] = {}  # number -> the host's question post
        self._users: dict[str, _User] = {u.id: u for u in [self._host, *self._panel]}
        self._users.update({u.id: u for u in self._members})
        self._users.update({u.id: u for u in self._outsiders})
        self._poll: dict[str, Any] | None = None
        # Post id -> the post it retweets, replies to or quotes, until its page is made.
        self._refs: dict[str, dict[str, Any]] = {}
        self._starts = [CHAT_START + timedelta(minutes=minute) for minute, _ in QUESTIONS]
        self.generated = 0

    # -- public -----------------------------------------------------------------------------

    def pages(
        self,
        count: int,
        start: datetime = CHAT_START - timedelta(minutes=30),
        end: datetime = CHAT_END + timedelta(minutes=30),
        per_page: int = 100,
    ) -> Iterator[dict[str, Any]]:
        """`count` collected posts spread over [start, end) in time order, as response pages of
        `per_page` posts each (the last may be shorter). The host's question posts fall at their
        times and are part of the count."""
        page: list[dict[str, Any]] = []
        for tweet in self.tweets(count, start, end):
            page.append(tweet)
            if len(page) == per_page:
                yield self._page(page)
                page = []
        if page:
            yield self._page(page)

    def tweets(self, count: int, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
        """`count` tweet objects in time order (no includes): what `pages` pages."""
        rng = self._rng
        span = (end - start).total_seconds()
        step = span / max(count, 1)
        due = [
            (CHAT_START + timedelta(minutes=minute), n)
            for n, (minute, _) in enumerate(QUESTIONS, start=1)
            if n not in self._questions and start <= CHAT_START + timedelta(minutes=minute) < end
        ]
        for i in range(count):
            at = start + timedelta(seconds=step * i + rng.random() * step * 0.9)
            if due and due[0][0] <= at:
                _, number = due.pop(0)
                yield self._question(number, at)
            else:
                yield self._tweet(at)
            self.generated += 1

    def users(self) -> list[UserRecord]:
        """Every account the generator may use, as parsed records (for bulk loading)."""
        return [
            UserRecord(u.id, u.username, u.name, None, False, u.followers)
            for u in self._users.values()
        ]

    # -- posts ------------------------------------------------------------------------------

    def _id(self, at: datetime) -> str:
        self._seq += 1
        ms = int(at.timestamp() * 1000)
        return str(((ms - _TWITTER_EPOCH_MS) << 22) | (self._seq & 0x3FFFFF))

    def _member(self) -> _User:
        index = bisect_left(self._cum, self._rng.random() * self._cum[-1])
        return self._members[min(index, self.authors - 1)]

    def _sentence(self, words: int) -> str:
        return " ".join(self._rng.choices(_WORDS, k=words))

    def _current_question(self, at: datetime) -> int | None:
        if at >= CHAT_END:
            return None
        return bisect_right(self._starts, at) or None

    def _base(self, post_id: str, author: _User, at: datetime, text: str) -> dict[str, Any]:
        rng = self._rng
        tags = [
            {"start": pos, "end": pos + len(tag), "tag": tag[1:]}
            for tag in HASHTAGS
            if (pos := text.find(tag)) >= 0
        ]
        retweets = int(rng.paretovariate(1.6)) - 1 if rng.random() < 0.4 else 0
        likes = int(rng.paretovariate(1.3)) - 1 if rng.random() < 0.7 else 0
        return {
            "author_id": author.id,
            "conversation_id": post_id,
            "created_at": f"{at.isoformat(timespec='milliseconds')[:23]}Z",
            "edit_history_tweet_ids": [post_id],
            "entities": {"hashtags": tags},
            "id": post_id,
            "lang": "en",
            "possibly_sensitive": False,
            "public_metrics": {
                "retweet_count": min(retweets, 500),
                "reply_count": rng.randint(0, 3),
                "like_count": min(likes, 2000),
                "quote_count": 1 if rng.random() < 0.05 else 0,
                "impression_count": rng.randint(20, 4000),
            },
            "reply_settings": "everyone",
            "source": rng.choice(_SOURCES),
            "text": text,
        }

    def _question(self, number: int, at: datetime) -> dict[str, Any]:
        text = f"Q{number}. {QUESTIONS[number - 1][1]} {' '.join(HASHTAGS)}"
        post_id = self._id(at)
        tweet = self._base(post_id, self._host, at, text)
        tweet["public_metrics"]["retweet_count"] = 40 + number
        tweet["public_metrics"]["like_count"] = 80 + number
        if number == 1:
            poll_id = str(int(post_id) - 1)
            tweet["attachments"] = {"poll_ids": [poll_id]}
            self._poll = {
                "id": poll_id,
                "options": [
                    {"position": 1, "label": "Yes, my first", "votes": 120},
                    {"position": 2, "label": "No, I'm a regular", "votes": 310},
                ],
                "voting_status": "open",
                "duration_minutes": 30,
                "end_datetime": (at + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            }
        self._questions[number] = tweet
        self._pool.append(tweet)
        self._popular.append(tweet)
        return tweet

    def _tweet(self, at: datetime) -> dict[str, Any]:
        rng = self._rng
        roll = rng.random()
        if roll < self.mix.retweet and self._popular:
            return self._retweet(at)
        roll -= self.mix.retweet
        if roll < self.mix.reply and self._pool:
            return self._reply(at)
        roll -= self.mix.reply
        if roll < self.mix.quote and self._pool:
            return self._quote(at)
        return self._original(at)

    def _answer_text(self, at: datetime) -> str:
        rng = self._rng
        tags = " ".join(HASHTAGS) if rng.random() < 0.7 else HASHTAGS[0]
        question = self._current_question(at)
        sentence = self._sentence(rng.randint(6, 22)).capitalize()
        if question is None or rng.random() < 0.25:
            return f"{sentence} {tags}"
        # Now and then an answer to the question before.
        if question > 1 and rng.random() < 0.1:
            question -= 1
        if rng.random() < 0.8:
            return f"A{question} {sentence} {tags}"
        return f"{sentence} {tags} A{question}"

    def _original(self, at: datetime) -> dict[str, Any]:
        author = self._member()
        post_id = self._id(at)
        tweet = self._base(post_id, author, at, self._answer_text(at))
        self._pool.append(tweet)
        if tweet["public_metrics"]["retweet_count"] >= 3:
            self._popular.append(tweet)
        return tweet

    def _retweet(self, at: datetime) -> dict[str, Any]:
        rng = self._rng
        original = rng.choice(self._popular)
        original["public_metrics"]["retweet_count"] += 1  # copies show the count as it grows
        author = self._member()
        post_id = self._id(at)
        source = self._users[original["author_id"]]
        tweet = self._base(post_id, author, at, f"RT @{source.username}: {original['text']}"[:140])
        metrics = tweet["public_metrics"]
        metrics.update(
            retweet_count=original["public_metrics"]["retweet_count"],
            like_count=0,
            reply_count=0,
            quote_count=0,
            impression_count=0,
        )
        tweet["referenced_tweets"] = [{"type": "retweeted", "id": original["id"]}]
        tweet["entities"]["mentions"] = [
            {
                "start": 3,
                "end": 4 + len(source.username),
                "username": source.username,
                "id": source.id,
            }
        ]
        if "attachments" in original:
            tweet["attachments"] = original["attachments"]
        self._refs[post_id] = original
        return tweet

    def _reply(self, at: datetime) -> dict[str, Any]:
        rng = self._rng
        outside = rng.random() < 0.03
        parent = self._outside_post(at) if outside else rng.choice(self._pool)
        parent["public_metrics"]["reply_count"] += 1
        staff = rng.random() < 0.08 and not outside
        author = rng.choice(self._panel) if staff else self._member()
        parent_user = self._users[parent["author_id"]]
        if staff:
            text = f"@{parent_user.username} {self._sentence(rng.randint(4, 14))} {HASHTAGS[0]}"
        else:
            text = f"@{parent_user.username} {self._answer_text(at)}"
        post_id = self._id(at)
        tweet = self._base(post_id, author, at, text)
        tweet["conversation_id"] = parent["conversation_id"]
        tweet["in_reply_to_user_id"] = parent_user.id
        tweet["referenced_tweets"] = [{"type": "replied_to", "id": parent["id"]}]
        tweet["entities"]["mentions"] = [
            {
                "start": 0,
                "end": 1 + len(parent_user.username),
                "username": parent_user.username,
                "id": parent_user.id,
            }
        ]
        self._refs[post_id] = parent
        self._pool.append(tweet)
        return tweet

    def _quote(self, at: datetime) -> dict[str, Any]:
        rng = self._rng
        if self._questions and rng.random() < 0.5:
            quoted = self._questions[max(self._questions)]
            text = f"{self._sentence(rng.randint(5, 16)).capitalize()} {' '.join(HASHTAGS)}"
        else:
            quoted = rng.choice(self._pool)
            text = self._answer_text(at)
        quoted["public_metrics"]["quote_count"] += 1
        post_id = self._id(at)
        tweet = self._base(post_id, self._member(), at, f"{text} https://t.co/{post_id[-10:]}")
        tweet["referenced_tweets"] = [{"type": "quoted", "id": quoted["id"]}]
        self._refs[post_id] = quoted
        self._pool.append(tweet)
        return tweet

    def _outside_post(self, at: datetime) -> dict[str, Any]:
        author = self._rng.choice(self._outsiders)
        earlier = at - timedelta(hours=self._rng.randint(1, 48))
        return self._base(self._id(earlier), author, earlier, self._sentence(12))

    # -- pages ------------------------------------------------------------------------------

    def _page(self, tweets: list[dict[str, Any]]) -> dict[str, Any]:
        users: dict[str, _User] = {}
        context: dict[str, dict[str, Any]] = {}
        polls: dict[str, dict[str, Any]] = {}
        data = []
        for tweet in tweets:
            ref = self._refs.pop(tweet["id"], None)
            data.append(_snapshot(tweet))
            users[tweet["author_id"]] = self._users[tweet["author_id"]]
            if ref is not None:  # what X puts in includes.tweets for it
                context[ref["id"]] = _snapshot(ref)
                users[ref["author_id"]] = self._users[ref["author_id"]]
            if "in_reply_to_user_id" in tweet:
                users[tweet["in_reply_to_user_id"]] = self._users[tweet["in_reply_to_user_id"]]
            if "attachments" in tweet and self._poll is not None:
                polls[self._poll["id"]] = self._poll
        includes: dict[str, Any] = {"users": [u.as_json() for u in users.values()]}
        if context:
            includes["tweets"] = list(context.values())
        if polls:
            includes["polls"] = list(polls.values())
        ids = [t["id"] for t in data]
        return {
            "data": data,
            "includes": includes,
            "meta": {
                "newest_id": max(ids, key=int),
                "oldest_id": min(ids, key=int),
                "result_count": len(data),
            },
        }


def _snapshot(tweet: dict[str, Any]) -> dict[str, Any]:
    """A tweet as it stands now: its metrics go on growing in the generator."""
    return {**tweet, "public_metrics": dict(tweet["public_metrics"])}


def write_archive(path: Path, pages: Iterable[dict[str, Any]]) -> int:
    """Write pages as JSON lines (a twarc2-style archive); returns the posts written."""
    posts = 0
    with path.open("w", encoding="utf-8") as handle:
        for page in pages:
            handle.write(json.dumps(page, separators=(",", ":")))
            handle.write("\n")
            posts += len(page.get("data") or ())
    return posts


def mix_of(pages: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The archive's make-up, to print beside the figures."""
    kinds = {"original": 0, "retweet": 0, "reply": 0, "quote": 0}
    authors: set[str] = set()
    context = 0
    markers = 0
    for page in pages:
        context += len(page.get("includes", {}).get("tweets", ()))
        for tweet in page["data"]:
            authors.add(tweet["author_id"])
            refs = {r["type"] for r in tweet.get("referenced_tweets", ())}
            kind = (
                "retweet"
                if "retweeted" in refs
                else "quote"
                if "quoted" in refs
                else "reply"
                if "replied_to" in refs
                else "original"
            )
            kinds[kind] += 1
            if kind != "retweet" and _has_marker(tweet["text"]):
                markers += 1
    total = sum(kinds.values()) or 1
    return {
        "posts": sum(kinds.values()),
        "pages": len(pages),
        "shares": {kind: round(n / total, 3) for kind, n in kinds.items()},
        "with_question_marker": round(markers / total, 3),
        "authors": len(authors),
        "includes_tweets": context,
    }


def _has_marker(text: str) -> bool:
    words = text.split()
    return any(
        w[:1] in ("A", "Q") and w[1:].rstrip(".").isdigit() for w in (words[:2] + words[-1:])
    )


# -- rows for bulk loading -------------------------------------------------------------------------


def post_row(record: PostRecord, now: datetime) -> dict[str, Any]:
    """A `posts` row as the store writes it."""
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


def chat_post_row(
    chat_id: int,
    record: PostRecord,
    now: datetime,
    question: int | None = None,
    method: str | None = None,
) -> dict[str, Any]:
    """A `chat_posts` row as the store writes it (tags as the tagger gives them)."""
    return {
        "chat_id": chat_id,
        "network": NETWORK,
        "post_id": record.id,
        "created_at": record.created_at,
        "author_id": record.author_id,
        "kind": record.kind,
        "question": question,
        "tag_method": method,
        "manual": False,
        "handled": False,
        "hidden": False,
        "collected_at": now,
    }


def account_row(user: UserRecord) -> dict[str, Any]:
    return {
        "network": NETWORK,
        "id": user.id,
        "username": user.username,
        "name": user.name,
        "profile_image_url": user.profile_image_url,
        "verified": user.verified,
        "followers_count": user.followers_count,
    }


def table(model: Any) -> Table:
    found = model.__table__
    assert isinstance(found, Table)
    return found


POSTS, CHAT_POSTS, ACCOUNTS = table(Post), table(ChatPost), table(Account)


# -- databases -------------------------------------------------------------------------------------


@dataclass
class Database:
    """A fresh database with the schema, and what it takes to open it."""

    backend: str  # sqlite | postgresql
    url: str
    engine: Engine
    sessions: sessionmaker[Session]


@contextmanager
def fresh_database(backend: str, workdir: Path, name: str, postgres_url: str) -> Iterator[Database]:
    """A new SQLite file in `workdir`, or a new PostgreSQL database `bench_<name>_<random>` on
    the server of `postgres_url`, dropped afterwards."""
    if backend == "sqlite":
        path = workdir / f"{name}.db"
        for leftover in workdir.glob(f"{name}.db*"):
            leftover.unlink()
        url = f"sqlite:///{path}"
        engine, sessions = open_database(url)
        try:
            yield Database(backend, url, engine, sessions)
        finally:
            engine.dispose()
            for leftover in workdir.glob(f"{name}.db*"):
                leftover.unlink()
        return
    if backend != "postgresql":
        raise ValueError(f"unknown backend {backend!r}: sqlite or postgresql")
    base = make_url(postgres_url)
    if base.drivername in ("postgresql", "postgres"):
        base = base.set(drivername="postgresql+psycopg")
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    db_name = f"bench_{name}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db_name}"'))
    url = base.set(database=db_name).render_as_string(hide_password=False)
    try:
        engine, sessions = open_database(url)
        try:
            yield Database(backend, url, engine, sessions)
        finally:
            engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": db_name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db_name}"'))
        admin.dispose()


class AutoAnalyze:
    """What autovacuum's ANALYZE does under PostgreSQL's default settings, for a server that runs
    without it (CI's configuration turns autovacuum off): every `naptime` seconds, analyze each
    table changed by more than 50 rows + 10% of its size since it was last analyzed.

    Without statistics the planner takes `chat_id = ? AND post_id IN (...)` for a scan of the
    whole chat, and ingest slows down as the chat grows. Does nothing on SQLite or when the
    server's own autovacuum is on.
    """

    def __init__(self, db: Database, naptime: float = 60.0) -> None:
        self.db = db
        self.naptime = naptime
        self.analyzed: list[str] = []
        self.active = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> AutoAnalyze:
        if self.db.backend == "postgresql":
            with self.db.engine.connect() as conn:
                self.active = conn.execute(text("SHOW autovacuum")).scalar() == "off"
        if self.active:
            self._thread = threading.Thread(target=self._run, name="bench-autoanalyze")
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def analyze_now(self) -> None:
        """Analyze every table that the rule says is due (or all of them after a bulk load)."""
        if self.db.backend != "postgresql":
            return
        with self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            due = conn.execute(
                text(
                    "SELECT s.relname FROM pg_stat_user_tables s "
                    "JOIN pg_class c ON c.oid = s.relid "
                    "WHERE s.n_mod_since_analyze > 50 + 0.1 * greatest(c.reltuples, 0)"
                )
            ).scalars()
            for name in list(due):
                conn.execute(text(f'ANALYZE "{name}"'))
                self.analyzed.append(name)

    def _run(self) -> None:
        while not self._stop.wait(self.naptime):
            self.analyze_now()

    def as_dict(self) -> dict[str, Any]:
        return {"emulated": self.active, "naptime_s": self.naptime, "analyzes": len(self.analyzed)}


def postgres_available(url: str) -> str | None:
    """None if the server answers, else why not."""
    base = make_url(url)
    if base.drivername in ("postgresql", "postgres"):
        base = base.set(drivername="postgresql+psycopg")
    engine = create_engine(base, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error: report and skip
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        engine.dispose()
    return None


# -- timing and output -----------------------------------------------------------------------------


def timed(work: Callable[[], Any]) -> float:
    began = time.perf_counter()
    work()
    return time.perf_counter() - began


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


class GcClock:
    """Time spent in the garbage collector while it is `running` (a gc callback)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self.by_generation = [0.0, 0.0, 0.0]
        self._began = 0.0
        self.running = False
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        elif self.running:
            took = time.perf_counter() - self._began
            self.seconds += took
            self.collections[info["generation"]] += 1
            self.by_generation[info["generation"]] += took

    @contextmanager
    def measure(self) -> Iterator[GcClock]:
        self.seconds, self.collections, self.running = 0.0, [0, 0, 0], True
        self.by_generation = [0.0, 0.0, 0.0]
        try:
            yield self
        finally:
            self.running = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 3),
            "collections": list(self.collections),
            "seconds_by_generation": [round(s, 3) for s in self.by_generation],
        }


GC = GcClock()


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def progress(message: str) -> None:
    """Progress goes to stderr: stdout holds only the JSON line and the summary line."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def emit_result(result: dict[str, Any], summary: str) -> None:
    print(json.dumps(result, sort_keys=False), flush=True)
    print(summary, flush=True)
