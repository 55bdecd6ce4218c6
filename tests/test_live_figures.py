"""The live figures (`app.live.figures.LiveFigures`) against the reference, `app.stats.chat_stats`.

The main test is a property test: random small chats are written with the real store to a real
SQLite file and counted by `chat_stats`, and the same posts are fed to `LiveFigures` in a random
order, with metric updates, re-tags, panel marks and polls interleaved; both must give exactly the
same figures, for both windows. Posts are on the three networks; one person has linked accounts
on each (linked before or after the posts are stored) and cross-posts the same words: the
reference decides copies in the database (`app.ingest.crossposts.refresh_copies`), the live side
incrementally in arrival order (`CrossPosts`), as the runtime does. Focused tests then pin the cases that matter most on the day, and
one checks that adding a post does not scan the chat.
"""

from __future__ import annotations

import random
import sys
import tempfile
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import methodcaller
from types import FrameType
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import and_, select, update

from app.chats import QuestionPlan, create_chat, get_chat
from app.db.engine import open_database
from app.db.models import ChatPost
from app.ingest.crossposts import CrossPosts, refresh_copies
from app.ingest.parse import (
    Parsed,
    PollRecord,
    PostRecord,
    UserRecord,
    account_network,
    post_network,
)
from app.ingest.store import store_parsed
from app.live.figures import LiveFigures, LivePost, PollState
from app.people import link
from app.stats import (
    answers_filter,
    chat_stats,
    post_object,
    posts_query,
    unanswered_query,
    with_also,
)

START = datetime(2023, 3, 28, 18, 0, tzinfo=UTC)
END = START + timedelta(hours=1)
SLUG = "live-test"
HOSTS = ["HostAcct"]
PANEL = ["PanelA", "panelb", "mod@m.example"]
QUESTIONS = {1: "What is quality?", 2: "Who leads it?", 3: "What next?"}
# Authors: the host and the panel spelt in other cases than the chat's, participants, and one
# author the pages never described (no user record: username "").
USERS: dict[str, tuple[str, str] | None] = {
    "1": ("hostacct", "The Host"),
    "2": ("PANELA", "Panel A"),
    "3": ("PanelB", "Panel B"),
    "10": ("alice", "Alice"),
    "11": ("bob", "Bob"),
    "12": ("carol", ""),
    "99": None,
    # Alice on Mastodon and Bluesky, linked with her X account "10"; Bob on Mastodon, not linked.
    "alice@m.example": ("alice@m.example", "Alice M"),
    "did:plc:alice": ("alice.bsky.social", "Alice B"),
    "bob@m.example": ("bob@m.example", "Bob M"),
    "mod@m.example": ("mod@m.example", "Mod M"),  # on the panel
}
ALICE = ["10", "alice@m.example", "did:plc:alice"]
LINKS = ["x:alice", "alice@m.example", "alice.bsky.social"]
PERSONS = {account: "alice" for account in ALICE}
AUTHORS = ["1", "2", "3", "10", "10", "11", "11", "12", "99", *ALICE, *ALICE, "bob@m.example"]
STAFF_AUTHORS = ["1", "2", "3", "mod@m.example", "mod@m.example"]
PARTICIPANTS = ["10", "11", "12", "99", *ALICE, *ALICE, *ALICE, "bob@m.example"]
# Texts that normalize alike (links, mentions and the chat's hashtag out, case folded), so that
# cross-posts are frequent; None: a text of the post's own.
TEXTS = [
    None,
    "A1 great point #LiveTest",
    "a1 GREAT point https://t.co/abc",
    "A1 great point #livetest example.com/pa…",
    "@bob thanks",
    "Thanks @bob@m.example",
    "#LiveTest",  # nothing left: never a copy
]
CROSS_TEXTS = [text for text in TEXTS[1:4] if text]
ECHO_DELAYS = [
    timedelta(0),
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=5, seconds=1),
]
NETWORK_IDS = {
    "x": "{}",
    "mastodon": "https://m.example/users/p/statuses/{}",
    "bluesky": "at://did:plc:p/app.bsky.feed.post/{}",
}
# Few distinct times so that ties are frequent; both window edges; sub-second times.
TIMES = [
    START - timedelta(minutes=10),
    START - timedelta(seconds=1),
    START,
    START + timedelta(seconds=30),
    START + timedelta(minutes=5),
    START + timedelta(minutes=5, microseconds=500_000),
    START + timedelta(minutes=59, seconds=59),
    END,
    END + timedelta(minutes=3),
]
TAGS: list[tuple[int | None, str | None]] = [
    (None, None),
    (1, "prefix"),
    (1, "reply"),
    (2, "suffix"),
    (3, "window"),
    (4, "quote"),  # a question the run of show does not have
    (0, "manual"),  # stats lists only non-zero unplanned numbers
    (None, "manual"),
]
JITTER = st.sampled_from([timedelta(0), timedelta(0), timedelta(seconds=17), timedelta(seconds=41)])
POLL_LABELS = ["Yes", "No", "Maybe", "Later"]


# -- the random chats -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Metrics:
    retweet_count: int
    like_count: int
    reply_count: int
    quote_count: int
    impression_count: int | None


@dataclass
class PostSpec:
    id: str
    author_id: str
    kind: str
    created_at: datetime
    in_reply_to_id: str | None
    quoted_id: str | None
    retweeted_id: str | None
    poll_id: str | None
    # Every copy of the post received; each is either collected or context only.
    copies: list[tuple[Metrics, bool]]
    # Successive tags, handled and hidden marks; the last of each is the final state.
    tags: list[tuple[int | None, str | None]] = field(default_factory=list)
    handled: list[bool] = field(default_factory=list)
    hidden: list[bool] = field(default_factory=list)
    text: str | None = None

    @property
    def collected(self) -> bool:
        return any(collected for _, collected in self.copies)


@dataclass
class ChatSpec:
    posts: list[PostSpec]
    polls: dict[str, list[PollState]]  # poll id -> the copies received, in store order
    rng: random.Random
    link_first: bool = False  # Alice's accounts linked before her posts are stored, or after


metrics_st = st.builds(
    Metrics,
    st.sampled_from([0, 0, 0, 1, 2]),  # low, so that collected retweets often outnumber it
    st.integers(0, 3),
    st.integers(0, 2),
    st.integers(0, 2),
    st.one_of(st.none(), st.integers(0, 5)),
)


@st.composite
def chats(draw: st.DrawFn) -> ChatSpec:
    numbers = draw(st.lists(st.integers(1, 300), min_size=4, max_size=30, unique=True))
    ids = [str(n) for n in numbers]  # "9" sorts after "10": ids compare as strings
    # Replies, quotes and retweets point at other posts (a few of them often, so that collected
    # retweets outnumber the metrics and staff replies meet answers), or at posts never seen.
    targets = st.sampled_from([*ids[:3], *ids[:3], *ids, "4000", "5000"])
    posts = []
    for index, post_id in enumerate(ids):
        if index < 3:  # the posts often pointed at: mostly answers by participants
            kind = draw(st.sampled_from(["original", "original", "reply", "quote"]))
            authors = PARTICIPANTS
        else:
            kind = draw(st.sampled_from(["original", "reply", "quote", "retweet", "retweet"]))
            # Replies come from the host and panel as often as not, to answer answers.
            authors = STAFF_AUTHORS if kind == "reply" and draw(st.booleans()) else AUTHORS
        reply_to = quoted = retweeted = None
        if kind == "reply" or (kind == "quote" and draw(st.booleans())):
            reply_to = draw(targets)
        if kind == "quote":
            quoted = draw(targets)
        if kind == "retweet":
            retweeted = draw(st.sampled_from([*ids[:3] * 4, *ids, "5000"]))
        # The final tag: mostly one of the run of show's questions.
        final_tag = draw(st.sampled_from([*TAGS[1:5], *TAGS[1:5], *TAGS]))
        copies = draw(st.lists(st.tuples(metrics_st, st.booleans()), min_size=1, max_size=3))
        if draw(st.integers(0, 5)) > 0 and not any(c for _, c in copies):
            copies[0] = (copies[0][0], True)  # most posts are collected
        posts.append(
            PostSpec(
                id=post_id,
                author_id=draw(st.sampled_from(authors)),
                kind=kind,
                # Some seconds later now and then, so that not every time ties.
                created_at=draw(st.sampled_from(TIMES)) + draw(JITTER),
                in_reply_to_id=reply_to,
                quoted_id=quoted,
                retweeted_id=retweeted,
                poll_id=draw(st.sampled_from([None, None, "p1", "p2", "p3"])),
                copies=copies,
                tags=[*draw(st.lists(st.sampled_from(TAGS), min_size=1, max_size=3)), final_tag],
                handled=draw(
                    st.lists(st.sampled_from([False, False, True]), min_size=1, max_size=2)
                ),
                hidden=draw(st.lists(st.booleans(), min_size=1, max_size=2)),
                text=draw(st.sampled_from(TEXTS)),
            )
        )
    # Alice cross-posts: some of her posts again from another of her accounts, in other words
    # that normalize alike, a little later (at the edge of the five minutes too).
    for spec in [p for p in posts if p.author_id in ALICE and p.kind != "retweet"]:
        if not draw(st.booleans()):
            continue
        spec.text = spec.text or CROSS_TEXTS[0]
        posts.append(
            PostSpec(
                id=str(1000 + len(posts)),
                author_id=draw(st.sampled_from([a for a in ALICE if a != spec.author_id])),
                kind=draw(st.sampled_from(["original", "reply"])),
                created_at=spec.created_at + draw(st.sampled_from(ECHO_DELAYS)),
                in_reply_to_id=draw(targets),
                quoted_id=None,
                retweeted_id=None,
                poll_id=None,
                copies=[(draw(metrics_st), True)],
                tags=[draw(st.sampled_from(TAGS)), spec.tags[-1]],
                handled=[False],
                hidden=[draw(st.booleans())],
                text=draw(st.sampled_from(CROSS_TEXTS)) if spec.text in CROSS_TEXTS else spec.text,
            )
        )
    # A post is on its author's network (its id says which), and so are the posts it replies
    # to, quotes or retweets: a number pointing at a post of another network names a post of
    # this one never seen.
    for spec in posts:
        form = NETWORK_IDS[account_network(spec.author_id)]
        spec.id = form.format(spec.id)
        spec.in_reply_to_id = form.format(spec.in_reply_to_id) if spec.in_reply_to_id else None
        spec.quoted_id = form.format(spec.quoted_id) if spec.quoted_id else None
        spec.retweeted_id = form.format(spec.retweeted_id) if spec.retweeted_id else None
    polls: dict[str, list[PollState]] = {}
    for poll_id in ("p1", "p2"):  # p3 is carried by posts but its poll object never arrives
        states = []
        for _ in range(draw(st.integers(1, 3))):
            size = draw(st.integers(2, 4))
            votes = draw(st.lists(st.integers(0, 20), min_size=size, max_size=size))
            states.append(
                PollState(
                    id=poll_id,
                    voting_status=draw(st.sampled_from([None, "open", "closed"])),
                    options=tuple(
                        (position, POLL_LABELS[position - 1], n)
                        for position, n in enumerate(votes, start=1)
                    ),
                )
            )
        polls[poll_id] = states
    return ChatSpec(posts, polls, draw(st.randoms(use_true_random=False)), draw(st.booleans()))


# -- the reference: the real store on a real SQLite file, counted by chat_stats --------------------


def _text(spec: PostSpec) -> str:
    return spec.text or f"post {spec.id} <b>by</b> {spec.author_id}"


def _record(spec: PostSpec, metrics: Metrics) -> PostRecord:
    return PostRecord(
        network=post_network(spec.id),
        id=spec.id,
        author_id=spec.author_id,
        created_at=spec.created_at,
        text=_text(spec),
        kind=spec.kind,
        in_reply_to_id=spec.in_reply_to_id,
        in_reply_to_user_id=None,
        quoted_id=spec.quoted_id,
        retweeted_id=spec.retweeted_id,
        conversation_id=None,
        lang="en",
        poll_id=spec.poll_id,
        retweet_count=metrics.retweet_count,
        reply_count=metrics.reply_count,
        like_count=metrics.like_count,
        quote_count=metrics.quote_count,
        impression_count=metrics.impression_count,
        raw={"id": spec.id},
    )


@dataclass
class Reference:
    stats: dict[str, dict[str, Any]]
    latest: list[dict[str, Any]]
    unanswered: dict[int | None, list[dict[str, Any]]]
    posts: dict[str, dict[str, Any]]
    copies: dict[str, str]  # copy -> the post it repeats


def reference(chat_spec: ChatSpec) -> Reference:
    """Store the chat's final state with the real store and read it the way the product does."""
    with tempfile.TemporaryDirectory() as folder:
        engine, sessions = open_database(f"sqlite:///{folder}/x.db")
        try:
            with sessions() as session:
                chat = create_chat(
                    session,
                    slug=SLUG,
                    title="Live test",
                    hashtags=["#LiveTest"],
                    hosts=HOSTS,
                    panel=PANEL,
                    start=START,
                    end=END,
                    questions=[QuestionPlan(n, text) for n, text in QUESTIONS.items()],
                )
                chat_id = chat.id
                users = [
                    UserRecord(id=uid, username=user[0], name=user[1], network=account_network(uid))
                    for uid, user in USERS.items()
                    if user is not None
                ]
                if chat_spec.link_first:
                    store_parsed(session, chat_id, Parsed(users=users))
                    link(session, LINKS)
                    session.commit()
                rounds = max(
                    max(len(p.copies) for p in chat_spec.posts),
                    max(len(states) for states in chat_spec.polls.values()),
                )
                # One batch per round of copies, as successive pages would bring them.
                for n in range(rounds):
                    parsed = Parsed(users=users if n == 0 else [])
                    for spec in chat_spec.posts:
                        if n < len(spec.copies):
                            metrics, collected = spec.copies[n]
                            target = parsed.collected if collected else parsed.context
                            target.append(_record(spec, metrics))
                    for states in chat_spec.polls.values():
                        if n < len(states):
                            state = states[n]
                            parsed.polls.append(
                                PollRecord(state.id, list(state.options), state.voting_status)
                            )
                    store_parsed(session, chat_id, parsed)
                    session.commit()
                # Tags and panel marks are inputs here: set them as the tagger and panel would.
                for spec in chat_spec.posts:
                    if spec.collected:
                        question, method = spec.tags[-1]
                        session.execute(
                            update(ChatPost)
                            .where(ChatPost.chat_id == chat_id, ChatPost.post_id == spec.id)
                            .values(
                                question=question,
                                tag_method=method,
                                handled=spec.handled[-1],
                                hidden=spec.hidden[-1],
                            )
                        )
                session.commit()
                if chat_spec.link_first:  # as an import ends
                    refresh_copies(session, get_chat(session, SLUG))
                else:  # linked once the posts are in: the chats' copies worked out again
                    alice = any(p.collected and p.author_id in ALICE for p in chat_spec.posts)
                    assert link(session, LINKS).chats == ([SLUG] if alice else [])
                session.commit()
            with sessions() as session:
                chat = get_chat(session, SLUG)
                stats = {window: chat_stats(session, chat, window) for window in ("chat", "all")}
                query, _ = posts_query(chat)
                newest = (ChatPost.created_at.desc(), ChatPost.post_id.desc())
                latest = [
                    post_object(*row)
                    for row in session.execute(
                        query.where(
                            ChatPost.chat_id == chat.id,
                            ChatPost.hidden.is_(False),
                            ChatPost.copy_of.is_(None),
                        )
                        .order_by(*newest)
                        .limit(1000)
                    )
                ]
                with_also(session, chat.id, latest)
                posts = {
                    row[1].id: post_object(*row)
                    for row in session.execute(query.where(ChatPost.chat_id == chat.id))
                }
                with_also(session, chat.id, list(posts.values()))
                copies: dict[str, str] = {
                    post_id: first or ""
                    for post_id, first in session.execute(
                        select(ChatPost.post_id, ChatPost.copy_of).where(
                            ChatPost.chat_id == chat.id, ChatPost.copy_of.is_not(None)
                        )
                    )
                }
                # As the unanswered endpoint lists them.
                unanswered: dict[int | None, list[dict[str, Any]]] = {}
                for question in (None, 0, 1, 2, 3, 4):
                    where = ChatPost.chat_id == chat.id
                    if question is not None:
                        where = and_(where, ChatPost.question == question)
                    answers, staff = answers_filter(session, chat, where)
                    rows = session.execute(
                        query.where(unanswered_query(chat, answers, staff))
                        .order_by(*newest)
                        .limit(1000)
                    )
                    unanswered[question] = with_also(
                        session, chat.id, [post_object(*row) for row in rows]
                    )
                return Reference(stats, latest, unanswered, posts, copies)
        finally:
            engine.dispose()


# -- the live side: the same chat as a random sequence of calls ----------------------------------

Call = Callable[[LiveFigures], object]


def _live_post(spec: PostSpec, metrics: Metrics) -> LivePost:
    user = USERS[spec.author_id]
    question, method = spec.tags[0]
    return LivePost(
        id=spec.id,
        network=post_network(spec.id),
        person=PERSONS.get(spec.author_id, spec.author_id),
        author_id=spec.author_id,
        username=user[0] if user else "",
        name=user[1] if user else "",
        created_at=spec.created_at,
        kind=spec.kind,
        text=_text(spec),
        in_reply_to_id=spec.in_reply_to_id,
        quoted_id=spec.quoted_id,
        retweeted_id=spec.retweeted_id,
        poll_id=spec.poll_id,
        retweet_count=metrics.retweet_count,
        like_count=metrics.like_count,
        reply_count=metrics.reply_count,
        quote_count=metrics.quote_count,
        impression_count=metrics.impression_count,
        question=question,
        tag_method=method,
        handled=spec.handled[0],
        hidden=spec.hidden[0],
    )


def _set_metrics(post_id: str, m: Metrics) -> Call:
    return lambda live: live.set_metrics(
        post_id,
        retweet_count=m.retweet_count,
        like_count=m.like_count,
        reply_count=m.reply_count,
        quote_count=m.quote_count,
        impression_count=m.impression_count,
    )


def interleave(rng: random.Random, chains: list[list[Call]]) -> Iterator[Call]:
    """A uniformly random merge of the chains, each chain's calls staying in their order."""
    chains = [list(reversed(chain)) for chain in chains if chain]
    while chains:
        weights = [len(chain) for chain in chains]
        chain = rng.choices(chains, weights)[0]
        yield chain.pop()
        if not chain:
            chains.remove(chain)


def _collect(post: LivePost, crossposts: CrossPosts) -> Call:
    """The runtime's way with a newly collected post: its cross-posts decided first, then the
    post added with its own, then the posts it changed."""

    def call(live: LiveFigures) -> None:
        changed = crossposts.add(
            [crossposts.input(post.id, post.person, post.created_at, post.kind, post.text)]
        )
        post.copy_of = crossposts.copy_of(post.id)
        live.add(post)
        for post_id, first in changed.items():
            if post_id != post.id:
                live.set_copy(post_id, first)

    return call


def live_calls(chat_spec: ChatSpec) -> Iterator[Call]:
    rng = chat_spec.rng
    crossposts = CrossPosts(["#LiveTest"])
    chains: list[list[Call]] = []
    for spec in chat_spec.posts:
        copies = [metrics for metrics, _ in spec.copies]
        if spec.collected:
            first = rng.randrange(len(copies))  # the copy that arrives as the new post
            marks: list[list[Call]] = [
                [methodcaller("set_tag", spec.id, *tag) for tag in spec.tags[1:]],
                [methodcaller("set_handled", spec.id, mark) for mark in spec.handled[1:]],
                [methodcaller("set_hidden", spec.id, mark) for mark in spec.hidden[1:]],
            ]
            post = _live_post(spec, copies.pop(first))
            # Panel marks and re-tags only after the post is there; in any order between them.
            chains.append([_collect(post, crossposts), *interleave(rng, marks)])
        # Other copies' metrics, for collected and context-only posts alike, at any time.
        chains.extend([_set_metrics(spec.id, m)] for m in copies)
    for states in chat_spec.polls.values():
        chains.extend([methodcaller("set_poll", state)] for state in states)
    chains.append([methodcaller("set_question", 1, QUESTIONS[1])])
    return interleave(rng, chains)


def new_live(questions: dict[int, str] | None = None) -> LiveFigures:
    return LiveFigures(
        slug=SLUG,
        start=START,
        end=END,
        hosts=HOSTS,
        panel=PANEL,
        questions=questions if questions is not None else QUESTIONS,
    )


def expected_per_minute(chat_spec: ChatSpec, copies: Container[str]) -> list[dict[str, Any]]:
    rows = []
    for minute in range(60):
        at = START + timedelta(minutes=minute)
        posts = [
            p
            for p in chat_spec.posts
            if p.collected and p.id not in copies and at <= p.created_at < at + timedelta(minutes=1)
        ]
        retweets = sum(p.kind == "retweet" for p in posts)
        rows.append(
            {
                "minute": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "originals": len(posts) - retweets,
                "retweets": retweets,
            }
        )
    return rows


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(chats())
def test_live_figures_equal_chat_stats_whatever_the_order(chat_spec: ChatSpec) -> None:
    expected = reference(chat_spec)
    event("cross-posts" if expected.copies else "no cross-post")
    live = new_live({**QUESTIONS, 1: ""})  # question 1's text arrives later, as a host post
    for call in live_calls(chat_spec):
        call(live)

    for window in ("chat", "all"):
        assert live.figures(window) == expected.stats[window], window
    assert live.latest(1000) == expected.latest
    for question, posts in expected.unanswered.items():
        assert live.unanswered(question, limit=1000) == posts, question
    assert len(live) == len(expected.posts)
    for spec in chat_spec.posts:
        assert live.post(spec.id) == expected.posts.get(spec.id)
    assert live.per_minute() == expected_per_minute(chat_spec, expected.copies)
    for post_id, first in expected.copies.items():
        assert live.copy_of(post_id) == first


# -- focused cases --------------------------------------------------------------------------------

_ids = iter(range(10_000, 10**9))


def make_post(
    *,
    author: str = "10",
    kind: str = "original",
    at: datetime = START + timedelta(minutes=10),
    question: int | None = None,
    post_id: str | None = None,
    **fields: Any,
) -> LivePost:
    user = USERS[author]
    values: dict[str, Any] = {
        "id": post_id or str(next(_ids)),
        "author_id": author,
        "username": user[0] if user else "",
        "name": user[1] if user else "",
        "created_at": at,
        "kind": kind,
        "text": "hello",
        "in_reply_to_id": None,
        "quoted_id": None,
        "retweeted_id": None,
        "poll_id": None,
        "retweet_count": 0,
        "like_count": 0,
        "reply_count": 0,
        "quote_count": 0,
        "impression_count": None,
        "question": question,
        "tag_method": "prefix" if question is not None else None,
    }
    values.update(fields)
    return LivePost(**values)


def question_row(live: LiveFigures, number: int) -> dict[str, Any]:
    rows = [q for q in live.figures("chat")["questions"] if q["number"] == number]
    return rows[0] if rows else {"answers": 0, "participants": 0, "top": []}


def test_a_retag_moves_an_answer_between_questions() -> None:
    live = new_live()
    first = make_post(author="10", question=1, post_id="201", like_count=5)
    second = make_post(author="10", question=1, post_id="202")
    other = make_post(author="11", question=2, post_id="203")
    for post in (first, second, other):
        assert live.add(post)
    assert question_row(live, 1)["answers"] == 2
    assert question_row(live, 1)["participants"] == 1

    live.set_tag("201", 2, "manual")
    q1, q2 = question_row(live, 1), question_row(live, 2)
    assert (q1["answers"], q1["participants"]) == (1, 1)  # alice still answers Q1 with 202
    assert [p["id"] for p in q1["top"]] == ["202"]
    assert (q2["answers"], q2["participants"]) == (2, 2)
    assert [p["id"] for p in q2["top"]] == ["201", "203"]  # 5 likes first
    assert q2["top"][0]["tag_method"] == "manual"

    live.set_tag("202", None, "manual")
    assert question_row(live, 1) == {
        "number": 1,
        "text": QUESTIONS[1],
        "answers": 0,
        "participants": 0,
        "top": [],
    }
    assert live.figures("chat")["unanswered"] == 2
    assert live.figures("chat")["original_tweets"] == 3  # re-tags never change the counts


def test_a_staff_reply_arriving_before_its_answer_answers_it() -> None:
    answers = [make_post(question=1, post_id=str(300 + n)) for n in range(3)]
    staff_reply = make_post(author="3", kind="reply", in_reply_to_id="300", post_id="310")
    other_reply = make_post(author="11", kind="reply", in_reply_to_id="301", post_id="311")
    # Outside the chat window: still answers 302 (replies count in any window).
    late_host_reply = make_post(
        author="1", kind="reply", in_reply_to_id="302", post_id="312", at=END + timedelta(hours=1)
    )
    replies = [staff_reply, other_reply, late_host_reply]

    replies_first, answers_first = new_live(), new_live()
    for post in [*replies, *answers]:
        replies_first.add(post)
    for post in [*answers, *replies]:
        answers_first.add(post)
    for live in (replies_first, answers_first):
        assert live.figures("chat")["unanswered"] == 1
        assert [p["id"] for p in live.unanswered()] == ["301"]
        assert live.unanswered(question=2) == []
    assert replies_first.figures("chat") == answers_first.figures("chat")
    assert replies_first.figures("all") == answers_first.figures("all")


def test_handled_and_staff_answers_are_not_unanswered() -> None:
    live = new_live()
    live.add(make_post(question=1, post_id="401"))
    live.add(make_post(author="2", question=1, post_id="402"))  # a panel member's answer
    live.add(make_post(author="1", question=1, post_id="403"))  # the host's: not an answer
    assert question_row(live, 1)["answers"] == 2
    assert [p["id"] for p in live.unanswered()] == ["401"]
    live.set_handled("401", True)
    assert live.unanswered() == []
    assert live.figures("chat")["unanswered"] == 0
    live.set_handled("401", False)
    assert live.figures("chat")["unanswered"] == 1


def test_a_retweet_arriving_before_its_original_raises_its_retweets() -> None:
    live = new_live()
    for n in range(3):
        live.add(make_post(kind="retweet", retweeted_id="500", author=str(10 + n)))
    live.add(make_post(author="12", post_id="501", retweet_count=2, like_count=9))
    live.add(make_post(post_id="500", retweet_count=1))
    top = live.figures("chat")["top_tweets"]
    assert [(p["id"], p["retweets"]) for p in top] == [("500", 3), ("501", 2)]
    assert live.figures("chat")["retweets"] == 3

    live.set_metrics(
        "500", retweet_count=5, like_count=0, reply_count=0, quote_count=0, impression_count=7
    )
    live.set_metrics(  # an older copy: metrics keep the largest value seen
        "500", retweet_count=1, like_count=0, reply_count=0, quote_count=0, impression_count=None
    )
    post = live.post("500")
    assert post is not None
    assert (post["retweets"], post["impressions"]) == (5, 7)


def test_metrics_of_a_post_not_collected_yet_are_kept() -> None:
    live = new_live()
    live.set_metrics(
        "600", retweet_count=4, like_count=8, reply_count=1, quote_count=2, impression_count=50
    )
    assert live.post("600") is None
    assert live.add(make_post(post_id="600", like_count=3))
    assert not live.add(make_post(post_id="600", like_count=30))  # already there: no change
    post = live.post("600")
    assert post is not None
    assert (post["retweets"], post["likes"], post["impressions"]) == (4, 8, 50)
    assert len(live) == 1


def test_hidden_posts_leave_the_wall_but_still_count() -> None:
    live = new_live()
    live.add(make_post(post_id="701", question=1, at=START + timedelta(minutes=1)))
    live.add(make_post(post_id="702", at=START + timedelta(minutes=2)))
    live.add(make_post(post_id="703", at=START + timedelta(minutes=2)))
    before = live.figures("chat")
    assert [p["id"] for p in live.latest()] == ["703", "702", "701"]
    assert [p["id"] for p in live.latest(2)] == ["703", "702"]

    live.set_hidden("701", True)
    live.set_hidden("701", True)  # twice: no harm
    assert [p["id"] for p in live.latest()] == ["703", "702"]
    assert live.figures("chat") == before
    assert [p["id"] for p in live.unanswered()] == ["701"]

    live.set_hidden("701", False)
    assert [p["id"] for p in live.latest()] == ["703", "702", "701"]


def test_per_minute_has_every_minute_of_the_window() -> None:
    live = LiveFigures(
        slug=SLUG,
        start=START,
        end=START + timedelta(minutes=4),
        hosts=HOSTS,
        panel=PANEL,
        questions={},
    )
    live.add(make_post(at=START + timedelta(minutes=1, seconds=30)))
    live.add(make_post(kind="reply", at=START + timedelta(minutes=1, seconds=59)))
    live.add(make_post(kind="retweet", at=START + timedelta(minutes=3, seconds=1)))
    live.add(make_post(at=START - timedelta(seconds=1)))  # before the window
    live.add(make_post(at=START + timedelta(minutes=4)))  # the end is exclusive
    assert live.per_minute() == [
        {"minute": "2023-03-28T18:00:00Z", "originals": 0, "retweets": 0},
        {"minute": "2023-03-28T18:01:00Z", "originals": 2, "retweets": 0},
        {"minute": "2023-03-28T18:02:00Z", "originals": 0, "retweets": 0},
        {"minute": "2023-03-28T18:03:00Z", "originals": 0, "retweets": 1},
    ]


def test_polls_keep_their_largest_votes_and_stay_closed() -> None:
    live = new_live()
    live.add(make_post(post_id="801", poll_id="p9", at=START + timedelta(minutes=5)))
    live.add(make_post(post_id="802", poll_id="p8", at=START + timedelta(minutes=7)))
    live.add(make_post(kind="retweet", poll_id="p8", at=START + timedelta(minutes=1)))
    live.set_poll(PollState("p9", "closed", ((1, "Yes", 17), (2, "No", 3))))
    live.set_poll(PollState("p9", "open", ((1, "Yes", 10), (2, "No", 5))))
    assert live.figures("chat")["polls"] == [  # p8's poll object never arrived
        {
            "id": "p9",
            "voting_status": "closed",
            "options": [
                {"label": "Yes", "votes": 17, "share": 0.7727},
                {"label": "No", "votes": 5, "share": 0.2273},
            ],
            "total": 22,
        }
    ]
    live.set_poll(PollState("p8", None, ((1, "A", 0), (2, "B", 0))))
    polls = live.figures("chat")["polls"]
    assert [p["id"] for p in polls] == ["p8", "p9"]  # p8 was carried first, by the retweet
    assert polls[0]["options"][0] == {"label": "A", "votes": 0, "share": 0.0}


def test_unknown_posts_and_windows_are_refused() -> None:
    live = new_live()
    with pytest.raises(KeyError, match="post 9"):
        live.set_tag("9", 1, "manual")
    with pytest.raises(KeyError, match="post 9"):
        live.set_handled("9", True)
    with pytest.raises(KeyError, match="post 9"):
        live.set_hidden("9", True)
    with pytest.raises(ValueError, match="week"):
        live.figures("week")  # type: ignore[arg-type]


# -- adding a post does not scan the chat -----------------------------------------------------------


def big_chat(size: int) -> LiveFigures:
    """A chat of `size` posts: answers to three questions, retweets of one popular post, and
    host and panel replies; built the same way whatever the size."""
    live = new_live()
    live.add(make_post(post_id="1000", author="1", question=1, retweet_count=3))
    for n in range(1, size):
        at = START + timedelta(seconds=n * 3600 / size)
        post_id = str(1000 + n)
        if n % 4 == 0:
            post = make_post(post_id=post_id, kind="retweet", retweeted_id="1000", at=at)
        elif n % 10 == 1:
            parent = str(1000 + n - 8)
            post = make_post(
                post_id=post_id, author="2", kind="reply", in_reply_to_id=parent, at=at
            )
        else:
            post = make_post(
                post_id=post_id,
                author=str(10 + n % 3),
                question=1 + n % 3,
                like_count=n % 7,
                retweet_count=n % 5,
                at=at,
            )
        live.add(post)
    return live


def batch(live: LiveFigures) -> None:
    """100 changes like those of a busy minute, touching the chat's biggest structures: a retweet
    of the most retweeted post, answers to the busiest questions, staff replies, re-tags."""
    base = 10**8
    at = START + timedelta(minutes=30, microseconds=1)
    for n in range(20):
        live.add(make_post(post_id=str(base + n), kind="retweet", retweeted_id="1000", at=at))
        live.add(make_post(post_id=str(base + 100 + n), question=2, like_count=n, at=at))
        live.add(
            make_post(
                post_id=str(base + 200 + n),
                author="3",
                kind="reply",
                at=at,
                in_reply_to_id=str(base + 100 + n),
            )
        )
        live.set_tag(str(base + 100 + n), 3, "manual")
        live.set_metrics(
            str(base + 100 + n),
            retweet_count=n,
            like_count=n + 1,
            reply_count=1,
            quote_count=0,
            impression_count=10,
        )


def lines_run(action: Callable[[], None]) -> int:
    """The number of Python lines `action` executes: a scan of the chat would run thousands."""
    count = 0

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return tracer

    sys.settrace(tracer)
    try:
        action()
    finally:
        sys.settrace(None)
    return count


def test_adding_a_post_costs_the_same_on_a_big_chat() -> None:
    small, big = big_chat(1_000), big_chat(200_000)
    assert len(big) == 200_000
    small_lines = lines_run(lambda: batch(small))
    big_lines = lines_run(lambda: batch(big))
    # The sorted containers' bookkeeping grows with log n; a scan would multiply it by ~200.
    assert big_lines < 1.5 * small_lines, (small_lines, big_lines)
    # Reading the figures and the wall after the batch costs their sizes, not the chat's.
    small_lines = lines_run(lambda: read_all(small))
    big_lines = lines_run(lambda: read_all(big))
    assert big_lines < 1.5 * small_lines, (small_lines, big_lines)


def read_all(live: LiveFigures) -> None:
    for window in ("chat", "all"):
        figures = live.figures(window)
        assert len(figures["top_tweets"]) == 10
        assert all(len(q["top"]) == 3 for q in figures["questions"])
    assert len(live.latest(50)) == 50
    assert len(live.unanswered(limit=50)) == 50
