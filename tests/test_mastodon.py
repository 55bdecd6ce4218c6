"""The Mastodon source: HTML to text, statuses to records, and the source against fake servers.

Two fake Mastodon servers on loopback (real HTTP) hold the same hand-written chat
(`fixtures/mastodon/qi-chat.json`, as mastodon.social renders it): `social` is mastodon.social
itself, `foss` is fosstodon.org, which has its own local ids and handles for the same statuses.
Each source runs as a task with a context that wakes the test at every batch and status; delays
are scaled down (backoff 50 ms, heartbeats every 0.1 s, stall timeout 0.5 s).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from app.sources.base import ChatTarget, SourceBatch
from app.sources.html_text import html_to_text
from app.sources.mastodon import (
    POSITION_KEY,
    MastodonAuthError,
    MastodonClient,
    MastodonError,
    MastodonRateLimited,
    MastodonRequestError,
    MastodonServerError,
    StatusReader,
    account_handle,
    chat_tags,
    newest_local_id,
    parse_statuses,
    rewind_id,
    run_mastodon,
    status_text,
    tag_groups,
)
from tests import sources_helpers
from tests.fakemastodon import FakeMastodon, parse_time
from tests.sources_helpers import FAST, WatchedContext, assert_backed_off_three_times, running

QI_CHAT = Path(__file__).parent / "fixtures" / "mastodon" / "qi-chat.json"
STATUSES: list[dict[str, Any]] = json.loads(QI_CHAT.read_text(encoding="utf-8"))
HASHTAGS = ("#LeadingQI", "#QIHour")
CHAT_START = datetime(2023, 3, 28, 18, 0, tzinfo=UTC)
FLOOR = CHAT_START - timedelta(days=1)


def by_key(text: str) -> dict[str, Any]:
    """The fixture status whose text starts with `text` (reblogs: whose reblogged one does)."""
    for status in STATUSES:
        if html_to_text(status["content"]).startswith(text) and not status["reblog"]:
            return status
    raise KeyError(text)


WELCOME = by_key("Welcome to #QIHour")
POLL = by_key("Q1 Let's start")
Q2 = by_key("Q2 Why is it")
UNTAGGED_PARENT = by_key("Anyone else joining")
REPLY_TO_UNTAGGED = by_key("@ana yes!")
HELEN_A2 = by_key("@qihour A2 Because")
BRYAN_A2 = by_key("@helen so true")
REPLY_TO_DELETED = by_key("@helen A2 agreed")
QUOTE = by_key("A2 from the front")
HOSTILE = by_key("A2 when leaders say")
LINK = by_key("A2 this helped me")
CW = next(s for s in STATUSES if s["spoiler_text"])
OTHER_TAG = by_key("Not the chat")
LOWERCASE_TAG = by_key("#qihour A2")
REBLOG_OF_Q2 = next(s for s in STATUSES if s["reblog"] and s["reblog"]["uri"] == Q2["uri"])
TOO_OLD = by_key("Looking forward to")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_ctx(hashtags: tuple[str, ...] = HASHTAGS) -> WatchedContext:
    chat = ChatTarget(
        "qi-test",
        hashtags,
        start=CHAT_START,
        end=CHAT_START + timedelta(hours=1),
        lookback=timedelta(days=1),
    )
    return WatchedContext(chat=chat)


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[FakeMastodon, FakeMastodon]]:
    with (
        FakeMastodon(domain="mastodon.social") as social,
        FakeMastodon(domain="fosstodon.org") as foss,
    ):
        yield social, foss


@pytest.fixture
def social(servers: tuple[FakeMastodon, FakeMastodon]) -> FakeMastodon:
    """mastodon.social, reset to the chat with nothing published."""
    fake = servers[0]
    fake.reset(STATUSES, domain="mastodon.social", heartbeat_interval=0.1)
    return fake


@pytest.fixture
def foss(servers: tuple[FakeMastodon, FakeMastodon]) -> FakeMastodon:
    """fosstodon.org, the same chat as it sees it, nothing published."""
    fake = servers[1]
    fake.reset(STATUSES, domain="fosstodon.org", heartbeat_interval=0.1)
    return fake


@pytest.fixture
async def client(social: FakeMastodon) -> AsyncIterator[MastodonClient]:
    """An anonymous client of mastodon.social: the source polls."""
    async with MastodonClient(social.url, timeout=5.0) as mastodon:
        yield mastodon


def collectable(
    fake: FakeMastodon, ids: list[str] | None = None, *, first_round: bool = True
) -> set[str]:
    """The uris of the published statuses the source should collect: with one of the chat's
    hashtags, no reblogs (Mastodon's tag timelines have none), none before the lookback."""
    wanted = {tag.lstrip("#").casefold() for tag in HASHTAGS}
    found = set()
    for local in fake.published if ids is None else [int(i) for i in ids]:
        status = fake.statuses[local]
        if status["reblog"] or fake.tags_of(local).isdisjoint(wanted):
            continue
        if first_round and parse_time(status["created_at"]) < FLOOR:
            continue
        found.add(status["uri"])
    return found


async def run_until(
    ctx: WatchedContext,
    clients: MastodonClient | list[MastodonClient],
    condition: Callable[[], bool],
    *,
    timeout: float = 5.0,
    **kwargs: Any,
) -> None:
    """Run the source until `condition` holds, then stop it and wait for it to return."""
    kwargs.setdefault("backoff", FAST)
    kwargs.setdefault("interval", 0.05)
    await sources_helpers.run_until(
        ctx, run_mastodon, condition, timeout=timeout, clients=clients, **kwargs
    )


def newest_in_timeline(
    fake: FakeMastodon,
    ids: list[int] | None = None,
    tags: tuple[str, ...] = ("leadingqi", "qihour"),
) -> str:
    """The newest local id the tag timeline shows of these published statuses."""
    shown = [
        i
        for i in (fake.published if ids is None else ids)
        if not fake.statuses[i]["reblog"] and not fake.tags_of(i).isdisjoint(tags)
    ]
    return str(max(shown))


def has_position(ctx: WatchedContext, host: str, key: str = "leadingqi,qihour") -> bool:
    return key in ctx.position.get(POSITION_KEY, {}).get(host, {})


# -- HTML to text ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>One</p><p>Two<br>lines<br/>here</p>", "One\n\nTwo\nlines\nhere"),
        ("<p>a<br><br>b</p>", "a\n\nb"),
        (
            '<p><span class="h-card" translate="no"><a href="https://mastodon.social/@helen" '
            'class="u-url mention">@<span>helen</span></a></span> hi <a href="https://x/tags/'
            'qihour" class="mention hashtag" rel="tag">#<span>QIHour</span></a></p>',
            "@helen hi #QIHour",
        ),
        (
            '<p>See <a href="https://example.com/a/very/long/path"><span class="invisible">'
            'https://</span><span class="ellipsis">example.com/a/very/lo</span><span class="'
            'invisible">ng/path</span></a> now</p>',
            "See example.com/a/very/lo… now",
        ),
        (
            '<a href="https://x.org/"><span class="invisible">https://</span><span class="">x.org/</span><span class="invisible"></span></a>',
            "x.org/",
        ),
        (
            "<p>x &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;y&quot; &#39;z&#39;</p>",
            "x <script>alert(1)</script> & \"y\" 'z'",
        ),
        ("<p>a<script>alert('no')</script><style>p{display:none}</style>b</p>", "ab"),
        ("<p>a <SCRIPT type=x>document.write('<b>no</b>')</SCRIPT>b</p>", "a b"),
        ("<p>unclosed <b>bold <i>italic</p><p>next", "unclosed bold italic\n\nnext"),
        ("<p>stray</b></span></p> end", "stray\n\nend"),
        ('<p>cut <a href="https://x', "cut"),
        ("<p>x <!-- a comment --> y</p>", "x y"),
        ("<p>  lots   of\n  space  </p>", "lots of space"),
        ("<pre>  indented\n    code</pre><p>after</p>", "  indented\n    code\n\nafter"),
        ("<ul><li>one</li><li>two</li></ul>", "one\ntwo"),
        ("<p>x<template><p>hidden</p></template><svg><text>no</text></svg>y</p>", "xy"),
        (
            '<p class="quote-inline">RE: <a href="https://x/1">https://x/1</a></p><p>Mine</p>',
            "Mine",
        ),
        ("plain text, no markup", "plain text, no markup"),
        ("", ""),
    ],
)
def test_html_to_text(html: str, text: str) -> None:
    assert html_to_text(html) == text


def test_hostile_status_comes_out_as_plain_text() -> None:
    text = status_text(HOSTILE)
    assert text == "A2 when leaders say <script>alert('x')</script> & mean it. And it shows #QIHour"
    assert "steal" not in text and "display" not in text


# -- statuses to records ---------------------------------------------------------------------


def parsed_chat() -> dict[str, Any]:
    parsed = parse_statuses(STATUSES, "mastodon.social")
    assert parsed.problems == []
    return {post.id: post for post in parsed.collected}


def test_an_original_status() -> None:
    post = parsed_chat()[WELCOME["uri"]]
    assert post.id == "https://mastodon.social/users/qihour/statuses/" + WELCOME["id"]
    assert post.network == "mastodon" and post.kind == "original"
    assert post.author_id == "qihour@mastodon.social"  # a local acct gets the server's domain
    assert post.text == (
        "Welcome to #QIHour! Tonight: leaders who show the way, with @helen on the panel.\n\n"
        "Tag your answers A1, A2… and use #LeadingQI"
    )
    assert post.created_at == datetime(2023, 3, 28, 18, 0, 30, tzinfo=UTC)
    assert (post.retweet_count, post.like_count, post.reply_count, post.quote_count) == (
        11,
        20,
        2,
        0,
    )
    assert post.impression_count is None and post.conversation_id is None
    assert post.lang == "en" and post.raw == WELCOME
    assert post.in_reply_to_id is None and post.quoted_id is None and post.retweeted_id is None


def test_users_are_full_handles() -> None:
    parsed = parse_statuses(STATUSES, "mastodon.social")
    users = {user.id: user for user in parsed.users}
    assert set(users) == {
        "qihour@mastodon.social",
        "helen@mastodon.social",
        "bryan@fosstodon.org",
        "ana@social.coop",
        "li@mas.to",
        "sam@hachyderm.io",
    }
    helen = users["helen@mastodon.social"]
    assert helen.username == helen.id and helen.name == "Helen B." and helen.network == "mastodon"
    assert helen.followers_count == 5120 and helen.profile_image_url
    assert users["li@mas.to"].name == "li"  # no display name: the username
    assert account_handle({"acct": "Bob@Example.COM"}, "x.org") == "Bob@example.com"
    assert account_handle({"acct": "bob", "username": "bob"}, "Mastodon.Social") == (
        "bob@mastodon.social"
    )


def test_replies_resolve_to_the_parents_uri() -> None:
    posts = parsed_chat()
    reply = posts[BRYAN_A2["uri"]]
    assert reply.kind == "reply"
    assert reply.in_reply_to_id == HELEN_A2["uri"]  # not the local id
    assert reply.in_reply_to_user_id == "helen@mastodon.social"
    assert reply.text == "@helen so true.\nA2 visible leadership builds trust #QIHour"
    assert posts[HELEN_A2["uri"]].in_reply_to_id == Q2["uri"]
    # The deleted parent is nowhere: still a reply, its author known from the mentions.
    gone = posts[REPLY_TO_DELETED["uri"]]
    assert gone.kind == "reply" and gone.in_reply_to_id is None
    assert gone.in_reply_to_user_id == "helen@mastodon.social"


def test_a_reblog_is_a_retweet_with_the_original_as_context() -> None:
    parsed = parse_statuses([REBLOG_OF_Q2], "mastodon.social")
    [post] = parsed.collected
    assert post.kind == "retweet" and post.retweeted_id == Q2["uri"]
    assert post.id == REBLOG_OF_Q2["uri"] and post.id.endswith("/activity")
    assert post.author_id == "sam@hachyderm.io"
    assert post.text.startswith("RT @qihour@mastodon.social: Q2 Why is it important")
    [original] = parsed.context
    assert original.id == Q2["uri"] and original.kind == "original"
    assert original.retweet_count == 7 and original.author_id == "qihour@mastodon.social"
    assert {user.id for user in parsed.users} == {"sam@hachyderm.io", "qihour@mastodon.social"}


def test_a_quote_and_its_quoted_status() -> None:
    parsed = parse_statuses([QUOTE], "mastodon.social")
    [post] = parsed.collected
    assert post.kind == "quote" and post.quoted_id == Q2["uri"]
    assert post.text == "A2 from the front, and from behind when it matters #LeadingQI"
    assert [c.id for c in parsed.context] == [Q2["uri"]]
    # Only the quoted status's local id (a shallow quote): resolved from statuses seen.
    shallow = {**QUOTE, "quote": {"state": "accepted", "quoted_status_id": Q2["id"]}}
    posts = {p.id: p for p in parse_statuses([Q2, shallow], "mastodon.social").collected}
    assert posts[QUOTE["uri"]].kind == "quote" and posts[QUOTE["uri"]].quoted_id == Q2["uri"]
    # A reply that quotes is a quote.
    both = {**QUOTE, "in_reply_to_id": Q2["id"]}
    post = parse_statuses([Q2, both], "mastodon.social").collected[1]
    assert post.kind == "quote" and post.in_reply_to_id == Q2["uri"]


def test_a_poll() -> None:
    parsed = parse_statuses([POLL], "mastodon.social")
    [poll] = parsed.polls
    assert parsed.collected[0].poll_id == poll.id == POLL["uri"] + "#poll"
    assert poll.options == [(1, "The board", 9), (2, "Middle managers", 7), (3, "Everyone", 25)]
    assert poll.voting_status == "closed" and poll.network == "mastodon"
    assert poll.end_datetime == datetime(2023, 3, 28, 18, 35, 4, tzinfo=UTC)
    assert poll.duration_minutes == 30
    running = {
        **POLL,
        "poll": {
            **POLL["poll"],
            "expired": False,
            "options": [{"title": "A", "votes_count": None}],
        },
    }
    [open_poll] = parse_statuses([running], "mastodon.social").polls
    assert open_poll.voting_status == "open" and open_poll.options == [(1, "A", 0)]


def test_a_content_warning_comes_first() -> None:
    post = parsed_chat()[CW["uri"]]
    assert post.text.startswith("CW: NHS staffing, long-ish\n\nGrabbing a cuppa before #QIHour.")
    assert post.author_id == "bryan@fosstodon.org"


def test_links_read_as_mastodon_shows_them() -> None:
    post = parsed_chat()[LINK["uri"]]
    assert post.text == "A2 this helped me: england.nhs.uk/improvement-hub… #QIHour"


def test_a_malformed_status_is_a_problem_not_a_failure() -> None:
    broken = {**WELCOME, "uri": None}
    parsed = parse_statuses([broken, POLL, "nonsense"], "mastodon.social")
    assert [p.id for p in parsed.collected] == [POLL["uri"]]
    assert len(parsed.problems) == 2 and "has no uri" in parsed.problems[0]


@pytest.mark.anyio
async def test_an_unknown_parent_is_fetched_once() -> None:
    reader = StatusReader("mastodon.social")
    asked: list[str] = []

    async def fetch(local_id: str) -> dict[str, Any] | None:
        asked.append(local_id)
        return UNTAGGED_PARENT if local_id == UNTAGGED_PARENT["id"] else None

    statuses = [REPLY_TO_UNTAGGED, REPLY_TO_DELETED, {**REPLY_TO_DELETED, "id": "1", "uri": "u:1"}]
    for status in statuses:
        reader.remember(status)
    parsed, pending = reader.parse(statuses)
    extra = await reader.resolve(pending, fetch)
    posts = {p.id: p for p in parsed.collected}
    assert posts[REPLY_TO_UNTAGGED["uri"]].in_reply_to_id == UNTAGGED_PARENT["uri"]
    assert posts[REPLY_TO_UNTAGGED["uri"]].in_reply_to_user_id == "ana@social.coop"
    assert posts[REPLY_TO_DELETED["uri"]].in_reply_to_id is None
    assert [c.id for c in extra.context] == [UNTAGGED_PARENT["uri"]]
    assert extra.api_errors == 1  # the deleted parent, asked for once for both replies
    assert asked == [UNTAGGED_PARENT["id"], REPLY_TO_DELETED["in_reply_to_id"]]


def test_ids_tags_and_groups() -> None:
    assert newest_local_id("999", "1000", None) == "1000"  # numbers, not strings
    assert newest_local_id("9v5x7yQ2l0dK4X0EIq", "9v5x7yQ2l0dK4X0EIr") == "9v5x7yQ2l0dK4X0EIr"
    snowflake = str(1680026400000 << 16 | 1234)
    assert int(rewind_id(snowflake, 60)) >> 16 == 1680026400000 - 60_000
    assert rewind_id(snowflake, 0) == snowflake and rewind_id("12345", 60) == "12345"
    assert chat_tags(["#LeadingQI", "QIHour", "#leadingqi", " "]) == ("LeadingQI", "QIHour")
    groups = tag_groups(chat_tags(["#a", "#b", "#c", "#d", "#e", "#F"]))
    assert [g.tags for g in groups] == [("a", "b", "c", "d"), ("e", "F")]
    assert [g.key for g in groups] == ["a,b,c,d", "e,f"]
    with pytest.raises(ValueError):
        chat_tags(["#", ""])


# -- the client ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_client_pages_the_tag_timeline(social: FakeMastodon, client: MastodonClient) -> None:
    social.publish_all()
    await client.load_instance()
    assert client.domain == "mastodon.social" and client.streaming_url == social.url
    page = await client.tag_timeline("#QIHour", any_tags=["LeadingQI"], limit=5)
    request = social.requests("timeline")[0]
    assert request.path == "/api/v1/timelines/tag/QIHour"
    assert request.params["any[]"] == ["LeadingQI"] and request.params["limit"] == ["5"]
    assert "authorization" not in request.headers  # no token: anonymous
    ids = [s["id"] for s in page.statuses]
    assert len(ids) == 5 and ids == sorted(ids, key=int, reverse=True)
    assert page.next_max_id == ids[-1] and page.prev_min_id == ids[0]
    assert client.rate_limit is not None and client.rate_limit.limit == 300
    assert client.rate_limit.remaining == 298  # the instance and the timeline counted
    assert client.rate_limit.reset_at is not None
    assert client.rate_limit.reset_at > datetime.now(UTC) + timedelta(minutes=4)
    older = await client.tag_timeline(
        "QIHour", any_tags=["LeadingQI"], max_id=page.next_max_id, limit=5
    )
    assert max(int(s["id"]) for s in older.statuses) < int(ids[-1])


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "error", "words"),
    [
        (429, MastodonRateLimited, "Too many requests"),
        (503, MastodonServerError, "503 to timeline: Service Unavailable"),
        (500, MastodonServerError, "Internal Server Error"),
        (403, MastodonAuthError, "outside the authorized scopes"),
        (422, MastodonRequestError, "Validation failed"),
    ],
)
async def test_errors_are_typed(
    social: FakeMastodon,
    client: MastodonClient,
    status: int,
    error: type[MastodonError],
    words: str,
) -> None:
    social.fail_next("timeline", status, reset_in=30)
    with pytest.raises(error, match=words) as caught:
        await client.tag_timeline("QIHour")
    assert caught.value.status == status and social.url.split("//")[1] in str(caught.value)
    if isinstance(caught.value, MastodonRateLimited):
        assert caught.value.reset_at is not None
        assert caught.value.reset_at > datetime.now(UTC) + timedelta(seconds=25)
    with pytest.raises(MastodonRequestError, match="404 to status: Record not found"):
        await client.status("404")


# -- polling ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_first_round_reaches_back_to_the_lookback_then_polls_newer(
    social: FakeMastodon, client: MastodonClient
) -> None:
    social.publish(18)
    ctx = make_ctx()
    host = client.host

    async def more_later() -> None:
        await ctx.wait_for(lambda: has_position(ctx, host))
        social.publish_all()

    async with anyio.create_task_group() as group:
        group.start_soon(more_later)
        await run_until(
            ctx,
            client,
            lambda: (
                len(social.published) == len(social.statuses)
                and set(ctx.collected()) == collectable(social)
                and ctx.position[POSITION_KEY][host]["leadingqi,qihour"]
                == newest_in_timeline(social)
            ),
            limit=5,
            late_margin=0,
        )
    requests = social.requests("timeline")
    # Round 1: newest first, then backwards by the Link header's max_id down to the lookback.
    assert "max_id" not in requests[0].params and "min_id" not in requests[0].params
    first = list(itertools.takewhile(lambda r: "min_id" not in r.params, requests))
    assert all(r.param("max_id") for r in first[1:])
    max_ids = [int(r.param("max_id") or 0) for r in first[1:]]
    assert max_ids == sorted(max_ids, reverse=True)
    assert all(r.params["any[]"] == ["QIHour"] and r.path.endswith("/LeadingQI") for r in requests)
    # It stopped at the page holding the status older than the lookback: nothing older asked.
    assert TOO_OLD["uri"] not in ctx.collected()
    too_old = int(social.local_id(TOO_OLD["uri"]))
    assert int(first[-1].param("max_id") or 0) > too_old
    assert all(int(r.param("max_id") or 0) > too_old for r in first[1:])
    # Later rounds: forwards from the newest id (min_id), following rel="prev" to an empty page.
    later = requests[len(first) :]
    assert later[0].param("min_id") == newest_in_timeline(social, social.published[:18])
    # Every status once; replies resolved; the position on each round's last batch only.
    counts = Counter(ctx.collected())
    assert max(counts.values()) == 1
    assert ctx.batches[0].position is None
    newest = newest_in_timeline(social)
    assert ctx.position == {POSITION_KEY: {host: {"leadingqi,qihour": newest}}}
    records = ctx.records()
    assert records[BRYAN_A2["uri"]].in_reply_to_id == HELEN_A2["uri"]
    assert records[REPLY_TO_UNTAGGED["uri"]].in_reply_to_id == UNTAGGED_PARENT["uri"]
    assert records[REPLY_TO_DELETED["uri"]].in_reply_to_id is None
    # Parents never seen were fetched once each: the untagged one, and the deleted one (404).
    fetched = [r.path.rsplit("/", 1)[1] for r in social.requests("status")]
    assert sorted(fetched) == sorted([UNTAGGED_PARENT["id"], REPLY_TO_DELETED["in_reply_to_id"]])
    context = {post.id for batch in ctx.batches for post in batch.parsed.context}
    assert UNTAGGED_PARENT["uri"] in context and UNTAGGED_PARENT["uri"] not in counts
    assert sum(batch.parsed.api_errors for batch in ctx.batches) == 1
    assert all(
        post.network == "mastodon" for batch in ctx.batches for post in batch.parsed.collected
    )
    assert any(
        s.state == "running" and "polling #LeadingQI #QIHour" in s.detail for s in ctx.statuses
    )


@pytest.mark.anyio
async def test_two_servers_give_the_same_posts(social: FakeMastodon, foss: FakeMastodon) -> None:
    social.publish_all()
    foss.publish_all()
    assert social.local_id(Q2["uri"]) != foss.local_id(Q2["uri"])  # different local ids
    ctx = make_ctx()
    async with MastodonClient(social.url) as one, MastodonClient(foss.url) as two:
        await run_until(
            ctx,
            [one, two],
            lambda: has_position(ctx, one.host) and has_position(ctx, two.host),
        )
        hosts = (one.host, two.host)
    expected = collectable(social)
    assert set(ctx.collected()) == expected
    assert Counter(ctx.collected()) == Counter({uri: 2 for uri in expected})  # stored once later
    posts = [post for batch in ctx.batches for post in batch.parsed.collected]
    for uri in expected:
        first, second = (post for post in posts if post.id == uri)
        assert first.raw["id"] != second.raw["id"]  # read from both servers, each its local id
        same = ("author_id", "kind", "text", "in_reply_to_id", "in_reply_to_user_id", "quoted_id")
        assert [getattr(first, name) for name in same] == [getattr(second, name) for name in same]
    bryan = [post for post in posts if post.id == BRYAN_A2["uri"]]
    assert {post.author_id for post in bryan} == {"bryan@fosstodon.org"}  # local on fosstodon
    assert {post.raw["account"]["acct"] for post in bryan} == {"bryan", "bryan@fosstodon.org"}
    assert bryan[0].in_reply_to_id == HELEN_A2["uri"]
    assert set(ctx.position[POSITION_KEY]) == set(hosts)


@pytest.mark.anyio
async def test_resume_from_the_position_without_doubles(social: FakeMastodon) -> None:
    social.publish(16)
    ctx = make_ctx()
    async with MastodonClient(social.url) as client:
        await run_until(ctx, client, lambda: has_position(ctx, client.host), late_margin=0)
        before = set(ctx.collected())
        stored = dict(ctx.position)
        # The server goes on while we are down; a new process starts from the stored position.
        new = social.publish_all()
        again = make_ctx()
        again.position = stored
        requests_before = len(social.requests("timeline"))
        await run_until(
            again,
            client,
            lambda: set(again.collected()) == collectable(social, new),
            late_margin=0,
        )
    first = social.requests("timeline")[requests_before]
    assert first.param("min_id") == stored[POSITION_KEY][client.host]["leadingqi,qihour"]
    assert "max_id" not in first.params
    assert set(again.collected()).isdisjoint(before)
    assert before | set(again.collected()) == collectable(social)
    assert max(Counter(again.collected()).values()) == 1


@pytest.mark.anyio
@pytest.mark.parametrize(("margin", "found"), [(0.0, False), (3600.0, True)])
async def test_a_status_that_arrives_late_is_still_collected(
    social: FakeMastodon, margin: float, found: bool
) -> None:
    # Mastodon gives a status that reaches it late an id from its publication time: older than
    # ids already seen. The late margin re-reads those ids; without it the status is lost.
    late = social.local_id(LOWERCASE_TAG["uri"])
    social.publish_ids([i for i in social.chronological() if str(i) != late])
    ctx = make_ctx()
    async with (
        MastodonClient(social.url) as client,
        running(run_mastodon, ctx, client, interval=0.05, backoff=FAST, late_margin=margin),
    ):
        await ctx.wait_for(lambda: has_position(ctx, client.host))
        calls = len(social.requests("timeline"))
        social.publish_ids([late])
        assert int(late) < int(newest_in_timeline(social))
        await social.wait_until(lambda: len(social.requests("timeline")) >= calls + 4)
    assert (LOWERCASE_TAG["uri"] in ctx.collected()) is found
    assert max(Counter(ctx.collected()).values()) == 1  # the margin re-reads, never re-emits


@pytest.mark.anyio
async def test_statuses_without_the_chats_hashtags_are_ignored(
    social: FakeMastodon, client: MastodonClient
) -> None:
    social.serve_untagged = True  # a server that sends whatever it has
    social.timeline_includes_reblogs = True
    social.publish_all()
    ctx = make_ctx()
    await run_until(ctx, client, lambda: has_position(ctx, client.host))
    collected = set(ctx.collected())
    assert OTHER_TAG["uri"] not in collected  # #QIHourExtra is another hashtag
    assert UNTAGGED_PARENT["uri"] not in collected
    assert LOWERCASE_TAG["uri"] in collected  # #qihour is #QIHour
    assert REBLOG_OF_Q2["uri"] in collected  # a reblog matches by the reblogged status's tags
    assert ctx.records()[REBLOG_OF_Q2["uri"]].kind == "retweet"
    with_reblogs = collectable(social) | {
        s["uri"] for s in STATUSES if s["reblog"] and parse_time(s["created_at"]) >= FLOOR
    }
    assert collected == with_reblogs


@pytest.mark.anyio
async def test_more_than_four_hashtags_take_several_calls(
    social: FakeMastodon, client: MastodonClient
) -> None:
    social.publish_all()
    tags = ("#QIHour", "#a", "#b", "#c", "#LeadingQI")
    ctx = make_ctx(tags)
    await run_until(
        ctx,
        client,
        lambda: (
            has_position(ctx, client.host, "leadingqi")
            and has_position(ctx, client.host, "qihour,a,b,c")
        ),
    )
    calls = {
        (r.path.rsplit("/", 1)[1], tuple(r.params.get("any[]", [])))
        for r in social.requests("timeline")
    }
    assert calls == {("QIHour", ("a", "b", "c")), ("LeadingQI", ())}
    assert set(ctx.collected()) == collectable(social)


@pytest.mark.anyio
async def test_a_page_repeating_a_status_emits_it_once(
    social: FakeMastodon, client: MastodonClient
) -> None:
    social.page_overlap = True
    social.publish_all()
    ctx = make_ctx()
    await run_until(ctx, client, lambda: has_position(ctx, client.host), limit=4)
    assert set(ctx.collected()) == collectable(social)
    assert max(Counter(ctx.collected()).values()) == 1


@pytest.mark.anyio
async def test_a_429_waits_until_the_reset(social: FakeMastodon, client: MastodonClient) -> None:
    social.publish_all()
    social.fail_next("timeline", 429, reset_in=0.5)
    ctx = make_ctx()
    await run_until(ctx, client, lambda: has_position(ctx, client.host))
    limited, retried = social.requests("timeline")[:2]
    assert limited.status == 429 and limited.response_headers["X-RateLimit-Remaining"] == "0"
    reset = parse_time(limited.response_headers["X-RateLimit-Reset"]).timestamp()
    assert retried.time >= reset - 0.02  # not a moment before the server said
    [waiting] = [s for s in ctx.states("waiting") if "429" in s.detail]
    assert waiting.retry_at is not None and abs(waiting.retry_at.timestamp() - reset) < 0.3
    assert "429" in waiting.detail and "Too many requests" in waiting.detail
    assert set(ctx.collected()) == collectable(social)


@pytest.mark.anyio
async def test_a_503_backs_off_then_succeeds(social: FakeMastodon, client: MastodonClient) -> None:
    social.publish_all()
    social.fail_next("timeline", 503, times=3)
    ctx = make_ctx()
    await run_until(ctx, client, lambda: has_position(ctx, client.host))
    assert_backed_off_three_times(ctx, social.requests("timeline"), "Service Unavailable")
    assert set(ctx.collected()) == collectable(social)


@pytest.mark.anyio
async def test_a_parent_fetch_that_fails_for_a_while_is_retried(
    social: FakeMastodon, client: MastodonClient
) -> None:
    social.publish_all()
    social.fail_next("status", 502)
    ctx = make_ctx()
    await run_until(ctx, client, lambda: has_position(ctx, client.host))
    assert ctx.records()[REPLY_TO_UNTAGGED["uri"]].in_reply_to_id == UNTAGGED_PARENT["uri"]
    failed, retried = social.requests("status")[:2]
    assert failed.status == 502 and failed.path == retried.path and retried.status in (200, 404)
    assert ctx.states("failing") and "502" in ctx.states("failing")[0].detail


@pytest.mark.anyio
async def test_calls_slow_down_when_the_rate_limit_runs_low(social: FakeMastodon) -> None:
    social.limit = 8
    social.window_seconds = 1.0
    social.publish_all()
    ctx = make_ctx()
    async with MastodonClient(social.url) as client:
        await run_until(ctx, client, lambda: has_position(ctx, client.host), limit=4)
    slowing = [s for s in ctx.states("waiting") if "calls left" in s.detail]
    assert slowing and slowing[0].retry_at is not None
    assert all(r.status != 429 for r in social.requests())  # it never ran out
    assert set(ctx.collected()) == collectable(social)


@pytest.mark.anyio
@pytest.mark.parametrize("anonymous", [False, True])
async def test_a_refused_token_stops_with_the_reason(social: FakeMastodon, anonymous: bool) -> None:
    ctx = make_ctx()
    if anonymous:
        social.require_token = True
    async with MastodonClient(social.url, None if anonymous else "revoked-token") as client:
        with anyio.fail_after(5):
            await run_mastodon(ctx, client, interval=0.05, backoff=FAST, stream=False)
    last = ctx.statuses[-1]
    assert last.state == "stopped" and "401" in last.detail and client.host in last.detail
    reason = (
        "This API requires an authenticated user" if anonymous else "The access token is invalid"
    )
    assert reason in last.detail
    assert len(social.requests("timeline")) == 1 and ctx.batches == []


@pytest.mark.anyio
async def test_one_server_refusing_does_not_stop_the_others(
    social: FakeMastodon, foss: FakeMastodon
) -> None:
    social.publish_all()
    foss.publish_all()
    social.fail_next("timeline", 403)
    ctx = make_ctx()
    async with MastodonClient(social.url) as one, MastodonClient(foss.url) as two:
        await run_until(ctx, [one, two], lambda: has_position(ctx, two.host))
        assert any("still following the other servers" in s.detail for s in ctx.states("failing"))
        assert not has_position(ctx, one.host)
    assert set(ctx.collected()) == collectable(foss)


# -- streaming -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_stream_delivers_updates_between_heartbeats(social: FakeMastodon) -> None:
    before = social.publish(10)
    ctx = make_ctx()
    async with (
        MastodonClient(social.url, social.token) as client,
        running(run_mastodon, ctx, client, keepalive_timeout=0.5, backoff=FAST),
    ):
        await social.wait_until(lambda: social.open_streams == 2)
        await ctx.wait_for(lambda: set(ctx.collected()) == collectable(social, before))
        heartbeats = social.keepalives_sent
        # Heartbeats every 0.1 s on each stream, for well over the 0.5 s timeout.
        await social.wait_until(lambda: social.keepalives_sent >= heartbeats + 16)
        timeline_calls = len(social.requests("timeline"))
        streamed = social.publish(12)
        await ctx.wait_for(lambda: set(ctx.collected()) == collectable(social))
    # One stream per hashtag, authenticated, kept through the heartbeats (no reconnects).
    streams = social.requests("stream")
    assert sorted(r.param("tag") or "" for r in streams) == ["LeadingQI", "QIHour"]
    assert all(r.headers["authorization"] == "Bearer test-token" for r in streams)
    assert social.stream_connections == 2 and ctx.states("failing") == []
    # The new statuses came by the stream, not by polling; each emitted once although a status
    # with both hashtags comes on both streams.
    assert len(social.requests("timeline")) == timeline_calls
    assert max(Counter(ctx.collected()).values()) == 1
    assert collectable(social, streamed) <= set(ctx.collected())
    records = ctx.records()
    assert records[BRYAN_A2["uri"]].in_reply_to_id == HELEN_A2["uri"]
    stream_batches = [b for b in ctx.batches if b.requests == 0 and b.parsed.collected]
    assert stream_batches and all(len(b.parsed.collected) == 1 for b in stream_batches)
    assert ctx.position[POSITION_KEY][client.host]["leadingqi,qihour"] == newest_in_timeline(social)
    assert any("streaming #LeadingQI #QIHour" in s.detail for s in ctx.states("running"))


@pytest.mark.anyio
async def test_a_dropped_stream_reconnects_and_the_catch_up_fills_the_gap(
    social: FakeMastodon,
) -> None:
    social.publish(6)
    social.stream_drop_after(2)
    ctx = make_ctx(("#QIHour",))
    async with (
        MastodonClient(social.url, social.token) as client,
        running(run_mastodon, ctx, client, keepalive_timeout=1.0, backoff=FAST, late_margin=0),
    ):
        await social.wait_until(lambda: social.open_streams == 1)
        await ctx.wait_for(lambda: has_position(ctx, client.host, "qihour"))
        burst = social.publish(10)  # 2 arrive, then the server drops the stream
        await social.wait_until(lambda: social.stream_connections == 2 and social.open_streams == 1)
        await ctx.wait_for(lambda: set(ctx.collected()) >= qihour(social))
        later = social.publish_all()  # on the new connection
        await ctx.wait_for(lambda: set(ctx.collected()) == qihour(social))
    assert any(
        f"{client.host} closed the #QIHour stream; reconnecting now" in s.detail
        for s in ctx.statuses
    )
    # The catch-up after the reconnect asked from the newest status the stream had brought.
    streamed = [
        i for i in burst if "qihour" in social.tags_of(i) and not social.statuses[int(i)]["reblog"]
    ][:2]
    catch_up = [r for r in social.requests("timeline") if r.param("min_id")]
    assert catch_up[0].param("min_id") == max(streamed, key=int)
    assert max(Counter(ctx.collected()).values()) == 1
    assert later
    assert ctx.position[POSITION_KEY][client.host]["qihour"] == newest_in_timeline(
        social, tags=("qihour",)
    )


def qihour(fake: FakeMastodon, *, old_too: bool = False) -> set[str]:
    """What a #QIHour-only chat collects of the published statuses (`old_too`: those before
    the lookback as well, which a stream brings if the server publishes them late)."""
    return {
        fake.statuses[i]["uri"]
        for i in fake.published
        if "qihour" in fake.tags_of(i)
        and not fake.statuses[i]["reblog"]
        and (old_too or parse_time(fake.statuses[i]["created_at"]) >= FLOOR)
    }


@pytest.mark.anyio
async def test_a_silent_stream_is_reconnected(social: FakeMastodon) -> None:
    social.publish(4)
    social.stream_go_silent(after=1)
    ctx = make_ctx(("#QIHour",))
    async with (
        MastodonClient(social.url, social.token) as client,
        running(run_mastodon, ctx, client, keepalive_timeout=0.4, backoff=FAST),
    ):
        await social.wait_until(lambda: social.open_streams == 1)
        await ctx.wait_for(lambda: has_position(ctx, client.host, "qihour"))
        social.publish(8)  # one arrives, then nothing at all, not even a heartbeat
        await social.wait_until(lambda: social.stream_connections == 2)
        await ctx.wait_for(lambda: set(ctx.collected()) == qihour(social))
    stalled = [s for s in ctx.states("failing") if "not even a heartbeat" in s.detail]
    assert stalled and "reconnecting now" in stalled[0].detail


@pytest.mark.anyio
async def test_stream_duplicates_and_out_of_order_statuses(social: FakeMastodon) -> None:
    social.stream_duplicates = True
    social.stream_out_of_order = True
    ctx = make_ctx(("#QIHour",))
    async with (
        MastodonClient(social.url, social.token) as client,
        running(run_mastodon, ctx, client, keepalive_timeout=1.0, backoff=FAST),
    ):
        await social.wait_until(lambda: social.open_streams == 1)
        await social.wait_until(lambda: len(social.requests("timeline")) >= 1)
        social.publish_all()
        await ctx.wait_for(lambda: set(ctx.collected()) == qihour(social, old_too=True))
        await social.wait_until(
            lambda: social.messages_sent >= 2 * len(qihour(social, old_too=True))
        )
    assert max(Counter(ctx.collected()).values()) == 1
    positions = [
        int(b.position[POSITION_KEY][client.host]["qihour"]) for b in ctx.batches if b.position
    ]
    assert positions == sorted(positions)  # never moves back


@pytest.mark.anyio
async def test_a_stream_refused_stops_with_the_reason(social: FakeMastodon) -> None:
    ctx = make_ctx(("#QIHour",))
    async with MastodonClient(social.url, "wrong") as client:
        with anyio.fail_after(5):
            await run_mastodon(ctx, client, stream=True, backoff=FAST)
    assert ctx.statuses[-1].state == "stopped"
    assert (
        "401" in ctx.statuses[-1].detail
        and "The access token is invalid" in ctx.statuses[-1].detail
    )


@pytest.mark.anyio
async def test_streams_back_off_when_they_cannot_connect(social: FakeMastodon) -> None:
    social.publish(6)
    social.fail_next("stream", 503, times=2)
    ctx = make_ctx(("#QIHour",))
    async with MastodonClient(social.url, social.token) as client:
        await run_until(
            ctx,
            client,
            lambda: social.open_streams == 1 and has_position(ctx, client.host, "qihour"),
            backoff=FAST,
        )
    delays = [s.detail.rsplit("reconnecting ", 1)[1] for s in ctx.states("failing")]
    assert delays == ["in 0.05 s", "in 0.1 s"]
    assert all("503" in s.detail for s in ctx.states("failing"))


@pytest.mark.anyio
async def test_stream_edits_are_collected_again_and_deletes_ignored(social: FakeMastodon) -> None:
    social.publish(10)
    ctx = make_ctx(("#QIHour",))
    target = social.local_id(HELEN_A2["uri"])
    async with (
        MastodonClient(social.url, social.token) as client,
        running(run_mastodon, ctx, client, keepalive_timeout=1.0, backoff=FAST),
    ):
        await social.wait_until(lambda: social.open_streams == 1)
        await ctx.wait_for(lambda: HELEN_A2["uri"] in ctx.collected())
        batches = len(ctx.batches)
        social.delete(social.local_id(Q2["uri"]))
        social.edit(target, "<p>A2 Because people copy what they see (edited) #QIHour</p>")
        await ctx.wait_for(lambda: len(ctx.batches) > batches)
    [edited] = [post for batch in ctx.batches[batches:] for post in batch.parsed.collected]
    assert edited.id == HELEN_A2["uri"] and edited.text.endswith("(edited) #QIHour")
    assert edited.in_reply_to_id == Q2["uri"]  # known from before it was deleted


@pytest.mark.anyio
async def test_stream_resumes_from_the_stored_position(social: FakeMastodon) -> None:
    old = social.publish(12)
    stored = newest_in_timeline(social, [int(i) for i in old], tags=("qihour",))
    ctx = make_ctx(("#QIHour",))
    async with MastodonClient(social.url, social.token) as client:
        ctx.position = {POSITION_KEY: {client.host: {"qihour": stored}}, "other": 1}
        new = social.publish_all()
        await run_until(
            ctx,
            client,
            lambda: set(ctx.collected()) == qihour(social) - qihour_of(social, old),
            keepalive_timeout=1.0,
            late_margin=0,
        )
    catch_up = social.requests("timeline")[0]
    assert catch_up.param("min_id") == stored and "max_id" not in catch_up.params
    assert set(ctx.collected()) <= {social.uri(i) for i in new}
    assert ctx.position["other"] == 1  # the rest of the position is left alone


def qihour_of(fake: FakeMastodon, ids: list[str]) -> set[str]:
    return {fake.uri(i) for i in ids} & qihour(fake)


@pytest.mark.anyio
@pytest.mark.parametrize("streaming", [False, True])
async def test_an_error_in_the_pipeline_comes_out_as_itself(
    social: FakeMastodon, streaming: bool
) -> None:
    class Broken(WatchedContext):
        async def emit(self, batch: SourceBatch) -> None:
            raise RuntimeError("the queue is gone")

    social.publish_all()
    ctx = Broken(chat=make_ctx().chat)
    async with MastodonClient(social.url, social.token if streaming else None) as client:
        with pytest.raises(RuntimeError, match="the queue is gone"), anyio.fail_after(5):
            await run_mastodon(ctx, client, backoff=FAST, stop=anyio.Event())


@pytest.mark.anyio
async def test_a_stream_silent_while_another_moves_the_position_loses_nothing(
    social: FakeMastodon,
) -> None:
    """The #QIHour stream goes silent from the start; the #LeadingQI stream meanwhile moves the
    group's position past the #QIHour statuses the silent one missed. The catch-up round after
    the reconnect must read from the position as of the silent stream's last byte, not from the
    position now (no late margin here to cover the gap by chance)."""
    social.publish(2)
    social.stream_go_silent(after=0, tag="qihour")
    ctx = make_ctx(("#LeadingQI", "#QIHour"))
    async with (
        MastodonClient(social.url, social.token) as client,
        running(run_mastodon, ctx, client, keepalive_timeout=1.0, backoff=FAST, late_margin=0),
    ):
        await social.wait_until(lambda: social.open_streams == 2)
        await ctx.wait_for(lambda: has_position(ctx, client.host))
        await anyio.sleep(0.2)  # both streams caught up
        rounds = len(social.requests("timeline"))
        before = ctx.position[POSITION_KEY][client.host]["leadingqi,qihour"]
        social.publish_all()  # #LeadingQI's arrive; #QIHour's stream sends nothing at all
        await ctx.wait_for(
            lambda: ctx.position[POSITION_KEY][client.host]["leadingqi,qihour"] != before
        )
        await social.wait_until(lambda: social.stream_connections == 3)
        await ctx.wait_for(lambda: set(ctx.collected()) == collectable(social))
    assert max(Counter(ctx.collected()).values()) == 1
    catch_up = social.requests("timeline")[rounds]
    assert catch_up.param("min_id") == before
    assert any("#QIHour stream" in s.detail for s in ctx.states("failing"))
