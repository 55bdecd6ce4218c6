"""The Bluesky source: parsing postViews, hashtag matching, and the source against the fake
Bluesky on loopback (real HTTP, no mocks of httpx).

As in `test_x_sources.py`, each source runs as a task with a `WatchedContext`
(`tests/sources_helpers.py`) that wakes the test on every batch and status, and delays are scaled
down (backoff 50 ms, polls every 50 ms).
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from app.ingest.parse import PostRecord
from app.sources.base import ChatTarget
from app.sources.bluesky import (
    OVERLAP,
    BlueskyAuthError,
    BlueskyClient,
    BlueskyRateLimited,
    BlueskyServerError,
    SearchPosition,
    bsky_time,
    chat_tags,
    matches_hashtags,
    parse_post_view,
    read_page,
    run_bluesky,
    sort_time,
    uri_did,
)
from tests import sources_helpers
from tests.fakebluesky import Account, FakeBluesky, PostFactory, sort_at
from tests.sources_helpers import FAST, WatchedContext, assert_backed_off_three_times

FIXTURE = Path(__file__).parent / "fixtures" / "bluesky" / "searchPosts_leadingqi.json"
HASHTAGS = ("#LeadingQI", "#QIHour")
START = datetime(2026, 3, 31, 18, 0, tzinfo=UTC)
LOOKBACK = timedelta(days=1)
PEOPLE = [Account(f"person{i}.bsky.social", f"Person {i}") for i in range(7)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_ctx(position: dict[str, Any] | None = None) -> WatchedContext:
    chat = ChatTarget("qi-bsky", HASHTAGS, START, START + timedelta(hours=1), LOOKBACK)
    return WatchedContext(chat=chat, position=copy.deepcopy(position or {}))


async def run_until(
    ctx: WatchedContext,
    client: BlueskyClient,
    condition: Callable[[], bool],
    *,
    timeout: float = 5.0,
    **kwargs: Any,
) -> None:
    """Run the source until `condition` holds, then stop it and wait for it to return."""
    kwargs.setdefault("interval", 0.05)
    kwargs.setdefault("backoff", FAST)
    await sources_helpers.run_until(
        ctx, run_bluesky, condition, timeout=timeout, client=client, **kwargs
    )


def chat_posts(n: int, start: datetime, *, step: timedelta = timedelta(seconds=20)) -> list[dict]:
    """`n` posts `step` apart: #LeadingQI, #QIHour, both, and now and then another chat's."""
    factory = PostFactory(start, step)
    posts = []
    for i in range(n):
        tags = ["#LeadingQI", "#QIHour", "#LeadingQI #QIHour", "#qihour", "#OtherChat"][i % 5]
        person = PEOPLE[i % len(PEOPLE)]
        posts.append(factory.post(person, f"A{i % 6 + 1} answer number {i} {tags}"))
    return posts


def ours(posts: list[dict], since: datetime | None = None) -> set[str]:
    """The posts of the chat (one of its hashtags), at or after `since`."""
    return {
        p["uri"]
        for p in posts
        if matches_hashtags(p, HASHTAGS) and (since is None or sort_at(p) >= since)
    }


@pytest.fixture(scope="module")
def server() -> Iterator[FakeBluesky]:
    with FakeBluesky() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeBluesky) -> FakeBluesky:
    server.reset()
    return server


@pytest.fixture
async def client(fake: FakeBluesky) -> AsyncIterator[BlueskyClient]:
    """A client with the account's handle and app password (used only if the public AppView
    refuses)."""
    async with BlueskyClient(
        fake.public_url, fake.pds_url, fake.identifier, fake.app_password, timeout=5.0
    ) as bsky:
        yield bsky


@pytest.fixture
async def anonymous(fake: FakeBluesky) -> AsyncIterator[BlueskyClient]:
    async with BlueskyClient(fake.public_url, fake.pds_url, timeout=5.0) as bsky:
        yield bsky


FIXTURE_PAGE = json.loads(FIXTURE.read_text(encoding="utf-8"))
POSTS = {p["uri"]: p for p in FIXTURE_PAGE["posts"]}


def find(handle: str, start: str) -> dict[str, Any]:
    """The fixture's post by this author whose text starts so."""
    [view] = [
        p
        for p in FIXTURE_PAGE["posts"]
        if p["author"]["handle"] == handle and p["record"]["text"].startswith(start)
    ]
    return view


WELCOME = find("warwickbschool.bsky.social", "Welcome")
Q2 = find("warwickbschool.bsky.social", "Q2.")
REPLY = find("priya-ward7.bsky.social", "A2 Because")
QUOTE = find("helenbevan.bsky.social", "A2 This")
REPLY_QUOTE = find("qi-lead.nhs.example", "A2 Agree")
DEEPER = find("helenbevan.bsky.social", "Spot on")
TEXT_ONLY = find("jo.bsky.social", "#leadingqi")
NOT_OURS = find("slides-bot.bsky.social", "Great thread")
DELETED_QUOTE = find("maria.bsky.social", "A2 what")
LINK = find("warwickbschool.bsky.social", "Slides")


def only(view: dict[str, Any]) -> PostRecord:
    parsed = parse_post_view(view)
    assert len(parsed.collected) == 1 and parsed.problems == []
    return parsed.collected[0]


# -- parsing ----------------------------------------------------------------------------------


def test_the_fixture_follows_the_lexicon() -> None:
    for view in POSTS.values():
        record = view["record"]
        assert record["$type"] == "app.bsky.feed.post"
        assert view["uri"].startswith(f"at://{view['author']['did']}/app.bsky.feed.post/")
        assert view["cid"].startswith("bafyrei") and len(view["cid"]) == 59
        text = record["text"].encode()
        for facet in record.get("facets", []):
            span = text[facet["index"]["byteStart"] : facet["index"]["byteEnd"]].decode()
            feature = facet["features"][0]
            if feature["$type"] == "app.bsky.richtext.facet#tag":
                assert span == "#" + feature["tag"]
            else:
                assert feature["$type"] == "app.bsky.richtext.facet#mention"
                assert span.startswith("@")


def test_an_original_post() -> None:
    parsed = parse_post_view(WELCOME)
    post = only(WELCOME)
    assert post.id == WELCOME["uri"] and post.network == "bluesky"
    assert post.author_id == WELCOME["author"]["did"]
    assert post.kind == "original" and post.text == WELCOME["record"]["text"]
    assert post.created_at == datetime(2026, 3, 31, 18, 0, 5, tzinfo=UTC)
    assert post.conversation_id == post.id and post.lang == "en"
    assert (post.in_reply_to_id, post.in_reply_to_user_id, post.quoted_id) == (None, None, None)
    assert (post.retweet_count, post.like_count, post.reply_count, post.quote_count) == (
        6,
        14,
        2,
        0,
    )
    assert post.impression_count is None and post.poll_id is None and post.retweeted_id is None
    assert post.raw == WELCOME and parsed.context == [] and parsed.polls == []
    [user] = parsed.users
    assert (user.id, user.username, user.name) == (
        WELCOME["author"]["did"],
        "warwickbschool.bsky.social",
        "Warwick Business School",
    )
    assert user.network == "bluesky" and user.profile_image_url == WELCOME["author"]["avatar"]
    # A link card is not a quote.
    assert only(LINK).kind == "original"


def test_a_reply_with_its_parent_and_root() -> None:
    post = only(REPLY)
    assert post.kind == "reply" and post.in_reply_to_id == Q2["uri"]
    assert post.in_reply_to_user_id == Q2["author"]["did"] == uri_did(Q2["uri"])
    assert post.conversation_id == Q2["uri"] and post.lang == "en-GB"
    deeper = only(DEEPER)
    assert deeper.kind == "reply" and deeper.in_reply_to_id == REPLY["uri"]
    assert deeper.in_reply_to_user_id == REPLY["author"]["did"]
    assert deeper.conversation_id == Q2["uri"]  # the thread's root, not the parent


def test_a_quote_carries_the_quoted_post_as_context() -> None:
    parsed = parse_post_view(QUOTE)
    post = parsed.collected[0]
    assert post.kind == "quote" and post.quoted_id == Q2["uri"]
    assert post.in_reply_to_id is None and post.conversation_id == post.id
    [quoted] = parsed.context
    assert quoted.id == Q2["uri"] and quoted.text == Q2["record"]["text"]
    assert quoted.author_id == Q2["author"]["did"] and quoted.network == "bluesky"
    assert quoted.created_at == datetime(2026, 3, 31, 18, 12, 10, tzinfo=UTC)
    assert (quoted.retweet_count, quoted.like_count, quoted.quote_count) == (12, 31, 4)
    assert {u.username for u in parsed.users} == {
        "helenbevan.bsky.social",
        "warwickbschool.bsky.social",
    }


def test_a_reply_that_quotes_is_a_quote() -> None:
    parsed = parse_post_view(REPLY_QUOTE)
    post = parsed.collected[0]
    assert post.kind == "quote" and post.quoted_id == QUOTE["uri"]
    assert post.in_reply_to_id == REPLY["uri"] and post.conversation_id == Q2["uri"]
    [quoted] = parsed.context  # recordWithMedia: the record under the images
    assert quoted.id == QUOTE["uri"] and quoted.kind == "quote" and quoted.quoted_id == Q2["uri"]
    assert {u.username for u in parsed.users} == {
        "qi-lead.nhs.example",
        "helenbevan.bsky.social",
    }
    # A quote of a deleted post: still a quote, with nothing to keep as context.
    gone = parse_post_view(DELETED_QUOTE)
    assert gone.collected[0].kind == "quote" and gone.collected[0].quoted_id is not None
    assert gone.context == []


def test_names_times_and_malformed_posts() -> None:
    jo = parse_post_view(TEXT_ONLY)
    assert jo.users[0].name == "jo.bsky.social" and jo.collected[0].lang is None
    # Dated in the future: sorted (and searched) by when it was indexed.
    future = copy.deepcopy(WELCOME)
    future["record"]["createdAt"] = "2026-04-02T00:00:00Z"
    assert sort_time(future) == datetime(2026, 3, 31, 18, 0, 5, 800000, tzinfo=UTC)
    assert only(future).created_at == datetime(2026, 4, 2, tzinfo=UTC)
    broken = copy.deepcopy(WELCOME)
    broken["record"]["createdAt"] = "yesterday"
    assert only(broken).created_at == datetime(2026, 3, 31, 18, 0, 5, 800000, tzinfo=UTC)
    page = {"posts": [{"uri": "https://not-at"}, {"uri": WELCOME["uri"]}, "junk", WELCOME]}
    parsed, _ = read_page(page, HASHTAGS, SearchPosition())
    assert [p.id for p in parsed.collected] == [WELCOME["uri"]]
    assert len(parsed.problems) == 3
    with pytest.raises(BlueskyServerError, match="posts"):
        read_page({"cursor": "1"}, HASHTAGS, SearchPosition())


# -- hashtags ---------------------------------------------------------------------------------


def test_hashtags_match_by_facet_tags_or_text_in_any_case() -> None:
    assert matches_hashtags(Q2, ["#leadingqi"])  # facet
    assert matches_hashtags(REPLY_QUOTE, ["#QIHOUR"])  # record.tags only
    assert "#" not in REPLY_QUOTE["record"]["text"]
    assert "facets" not in TEXT_ONLY["record"]
    assert matches_hashtags(TEXT_ONLY, ["LeadingQI"])  # text only, no facet
    assert not matches_hashtags(TEXT_ONLY, ["#QIHour"])
    # The word without `#`, and a longer tag, are not the chat's hashtag.
    assert not matches_hashtags(NOT_OURS, HASHTAGS)
    assert not matches_hashtags({"record": {"text": "#QIHours and x#QIHour"}}, ["#QIHour"])
    assert matches_hashtags({"record": {"text": "(#QIHour)"}}, ["#QIHour"])
    assert chat_tags(["#LeadingQI", "QIHour", "#leadingqi", " "]) == ("LeadingQI", "QIHour")
    with pytest.raises(ValueError):
        chat_tags(["#", ""])


def test_a_page_keeps_the_chats_posts_once() -> None:
    page = copy.deepcopy(FIXTURE_PAGE)
    position = SearchPosition()
    parsed, times = read_page(page, HASHTAGS, position)
    assert len(times) == len(page["posts"]) == 10
    assert {p.id for p in parsed.collected} == {v["uri"] for v in POSTS.values()} - {
        NOT_OURS["uri"]
    }
    # The quoted posts (Q2, helen's quote) are collected too: not context as well.
    assert parsed.context == []
    assert len({u.id for u in parsed.users}) == len(parsed.users)
    assert len({u.id for u in parsed.users}) == len(parsed.users)
    # Read again: every post was seen.
    again, _ = read_page(page, HASHTAGS, position)
    assert again.collected == [] and again.context == []


def test_position_round_trip() -> None:
    position = SearchPosition()
    base = datetime(2026, 3, 31, 18, 0, tzinfo=UTC)
    for i in range(5):
        position.add(f"at://did:plc:x/app.bsky.feed.post/{i}", base + timedelta(minutes=i))
    position.advance(OVERLAP)
    stored = position.as_position()
    assert stored["since"] == bsky_time(base + timedelta(minutes=4) - OVERLAP)
    assert stored["seen"] == [f"at://did:plc:x/app.bsky.feed.post/{i}" for i in (4, 3, 2)]
    again = SearchPosition.from_position(json.loads(json.dumps(stored)))
    assert again.as_position() == stored and "at://did:plc:x/app.bsky.feed.post/3" in again
    assert SearchPosition.from_position({"since": "garbage", "seen": "x"}).as_position() == {}
    # `since` never moves back.
    again.add("at://did:plc:x/app.bsky.feed.post/old", base)
    again.advance(OVERLAP)
    assert again.as_position()["since"] == stored["since"]


# -- the client -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_client_sends_the_documented_parameters(
    fake: FakeBluesky, anonymous: BlueskyClient
) -> None:
    posts = chat_posts(30, START)
    fake.publish(*posts)
    since, until = START + timedelta(minutes=2), START + timedelta(minutes=8)
    page = await anonymous.search_posts(
        "#QIHour", tags=["#QIHour"], since=since, until=until, limit=5, cursor="5"
    )
    request = fake.requests("search")[0]
    assert request.route == "public" and request.authorization is None
    assert request.params == {
        "q": "#QIHour",
        "tag": "QIHour",
        "sort": "latest",
        "limit": "5",
        "since": "2026-03-31T18:02:00.000Z",
        "until": "2026-03-31T18:08:00.000Z",
        "cursor": "5",
    }
    expected = sorted(
        (p for p in posts if "#qihour" in p["record"]["text"].lower()),
        key=sort_at,
        reverse=True,
    )
    expected = [p for p in expected if since <= sort_at(p) < until]
    assert [p["uri"] for p in page["posts"]] == [p["uri"] for p in expected[5:10]]
    assert page["cursor"] == "10" and page["hitsTotal"] == len(expected)
    rate = anonymous.rate_limits["searchPosts"]
    assert rate.limit == 3000 and rate.remaining == 2999 and rate.reset_at is not None
    # Two tags are ANDed: only posts with both.
    both = await anonymous.search_posts("#LeadingQI", tags=["LeadingQI", "QIHour"], limit=100)
    assert {p["uri"] for p in both["posts"]} == {
        p["uri"] for p in posts if "#LeadingQI #QIHour" in p["record"]["text"]
    }
    assert fake.requests("search")[1].tags == ["LeadingQI", "QIHour"]


@pytest.mark.anyio
async def test_the_client_errors_are_typed(fake: FakeBluesky, anonymous: BlueskyClient) -> None:
    fake.fail_next("search", 429, reset_in=30)
    with pytest.raises(BlueskyRateLimited) as limited:
        await anonymous.search_posts("#QIHour", tags=["QIHour"])
    assert limited.value.error == "RateLimitExceeded" and limited.value.reset_at is not None
    assert limited.value.reset_at > datetime.now(UTC) + timedelta(seconds=25)
    fake.fail_next("search", 502)
    with pytest.raises(BlueskyServerError, match="502 to searchPosts: UpstreamFailure"):
        await anonymous.search_posts("#QIHour")
    fake.refuse_public = 403
    with pytest.raises(BlueskyAuthError, match=r"403.*no Bluesky handle and app password"):
        await anonymous.search_posts("#QIHour")


# -- the source -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_first_round_reaches_back_and_merges_the_hashtags(
    fake: FakeBluesky, client: BlueskyClient
) -> None:
    # From two days before the chat: the first third is older than the day's lookback.
    posts = chat_posts(60, START - timedelta(days=2), step=timedelta(hours=1))
    posts += chat_posts(40, START + timedelta(minutes=1))
    fake.publish(*posts)
    since = START - LOOKBACK
    expected = ours(posts, since)
    ctx = make_ctx()

    def query_starts() -> list[int]:
        requests = fake.requests("search")
        return [i for i, r in enumerate(requests) if not {"cursor", "until"} & set(r.params)]

    await run_until(
        ctx,
        client,
        lambda: set(ctx.collected()) == expected and len(query_starts()) >= 3,
        limit=10,
    )
    requests = fake.requests("search")
    first = requests[0].params
    assert first["since"] == bsky_time(since) == "2026-03-30T18:00:00.000Z"
    assert (first["q"], requests[0].tags, first["sort"], first["limit"]) == (
        "#LeadingQI",
        ["LeadingQI"],
        "latest",
        "10",
    )
    # Both hashtags, one query each, every page of each (the same `since`, cursors).
    starts = query_starts()
    assert [requests[i].tags for i in starts[:3]] == [["LeadingQI"], ["QIHour"], ["LeadingQI"]]
    round_1, round_2 = requests[: starts[2]], requests[starts[2] :]
    assert all(r.params["since"] == first["since"] for r in round_1)
    assert {r.params.get("cursor") for r in round_1} >= {None, "10", "20"}
    # Posts with both hashtags come from both queries but are emitted once.
    counts = Counter(ctx.collected())
    assert set(counts) == expected and max(counts.values()) == 1
    assert not any(u in counts for u in ours(posts) - expected)  # older than the lookback
    for batch in ctx.batches:
        for post in batch.parsed.collected:
            assert post.network == "bluesky" and post.raw == fake.posts[post.id]
    # The round's position rides on its last batch only.
    positioned = [i for i, b in enumerate(ctx.batches) if b.position]
    assert positioned and ctx.batches[0].position is None
    newest = max(sort_at(fake.posts[u]) for u in expected)
    assert ctx.position["since"] == bsky_time(newest - OVERLAP)
    assert round_2[0].params["since"] == ctx.position["since"]
    newest_uri = max(expected, key=lambda u: sort_at(fake.posts[u]))
    assert ctx.position["seen"][0] == newest_uri
    running = ctx.states("running")
    assert running and f"through {fake.public_url}" in running[0].detail


@pytest.mark.anyio
async def test_polling_collects_new_and_late_posts_once(
    fake: FakeBluesky, client: BlueskyClient
) -> None:
    posts = chat_posts(50, START)
    fake.publish(*posts[:20])
    ctx = make_ctx()

    async def publish_more() -> None:
        await ctx.wait_for(lambda: set(ctx.collected()) == ours(posts[:20]))
        fake.publish(*posts[20:26], *posts[28:30])
        await ctx.wait_for(lambda: set(ctx.collected()) == ours(posts[:26] + posts[28:30]))
        # Indexed late: older than posts already read, but inside the overlap.
        fake.publish(*posts[26:28])
        await ctx.wait_for(lambda: set(ctx.collected()) == ours(posts[:30]))
        fake.publish(*posts[30:])

    async with anyio.create_task_group() as group:
        group.start_soon(publish_more)
        await run_until(ctx, client, lambda: set(ctx.collected()) == ours(posts), limit=10)
    counts = Counter(ctx.collected())
    assert set(counts) == ours(posts) and max(counts.values()) == 1
    # Every round after the first asks from the newest post seen minus the overlap.
    sinces = [r.params["since"] for r in fake.requests("search")]
    assert sinces == sorted(sinces) and len(set(sinces)) > 2


@pytest.mark.anyio
async def test_a_restart_resumes_without_doubles_or_loss(
    fake: FakeBluesky, client: BlueskyClient
) -> None:
    posts = chat_posts(60, START)
    before = posts[:26] + posts[27:30]
    fake.publish(*before)
    first = make_ctx()
    await run_until(first, client, lambda: set(first.collected()) == ours(before))
    stored = copy.deepcopy(first.position)
    assert set(stored) == {"since", "seen"} and stored["seen"]

    # While it was down: new posts, and one older than the newest seen, indexed late.
    late = posts[26]
    assert stored["since"] <= bsky_time(sort_at(late)) < bsky_time(sort_at(posts[28]))
    fake.publish(*posts[30:], late)
    calls_before = len(fake.requests("search"))
    second = make_ctx(stored)
    await run_until(second, client, lambda: set(second.collected()) == ours([late, *posts[30:]]))
    resumed = fake.requests("search")[calls_before]
    assert resumed.params["since"] == stored["since"]
    # Read again from `since`, but the posts already seen are not emitted again.
    assert set(resumed.returned) & set(stored["seen"])
    counts = Counter(first.collected() + second.collected())
    assert set(counts) == ours(posts) and max(counts.values()) == 1


@pytest.mark.anyio
async def test_duplicates_and_disorder_across_pages(
    fake: FakeBluesky, client: BlueskyClient
) -> None:
    fake.duplicate_across_pages = True
    fake.out_of_order_across_pages = True
    posts = chat_posts(80, START)
    fake.publish(*posts)
    ctx = make_ctx()
    await run_until(ctx, client, lambda: "since" in ctx.position, limit=10)
    returned = Counter(u for r in fake.requests("search") for u in r.returned)
    assert max(returned.values()) > 1  # the server did repeat posts
    counts = Counter(ctx.collected())
    assert set(counts) == ours(posts) and max(counts.values()) == 1
    newest = max(sort_at(fake.posts[u]) for u in ours(posts))
    assert ctx.position["since"] == bsky_time(newest - OVERLAP)


@pytest.mark.anyio
async def test_a_search_that_stops_paging_goes_on_below_the_oldest_post(
    fake: FakeBluesky, client: BlueskyClient
) -> None:
    fake.max_pages = 2
    posts = chat_posts(90, START)
    fake.publish(*posts)
    ctx = make_ctx()
    await run_until(ctx, client, lambda: "since" in ctx.position, limit=10)
    assert set(ctx.collected()) == ours(posts)
    assert any("until" in r.params for r in fake.requests("search"))


@pytest.mark.anyio
async def test_search_matches_words_loosely_and_the_source_drops_them(
    fake: FakeBluesky, client: BlueskyClient
) -> None:
    fake.ignore_tag_filter = True
    views = list(POSTS.values())
    fake.publish(*views)
    ctx = make_ctx()
    await run_until(ctx, client, lambda: "since" in ctx.position)
    assert any(NOT_OURS["uri"] in r.returned for r in fake.requests("search"))
    assert set(ctx.collected()) == {v["uri"] for v in views} - {NOT_OURS["uri"]}


@pytest.mark.anyio
async def test_a_429_waits_for_the_reset(fake: FakeBluesky, client: BlueskyClient) -> None:
    posts = chat_posts(20, START)
    fake.publish(*posts)
    fake.fail_next("search", 429, reset_in=0.5)
    ctx = make_ctx()
    await run_until(ctx, client, lambda: "since" in ctx.position)
    limited, retried = fake.requests("search")[:2]
    assert limited.status == 429 and limited.response_headers["RateLimit-Remaining"] == "0"
    reset = int(limited.response_headers["RateLimit-Reset"])
    assert retried.time >= reset - 0.02 and retried.params == limited.params
    [waiting] = ctx.states("waiting")
    assert waiting.retry_at is not None and abs(waiting.retry_at.timestamp() - reset) < 0.5
    assert "429" in waiting.detail and "RateLimitExceeded" in waiting.detail
    assert set(ctx.collected()) == ours(posts)


@pytest.mark.anyio
async def test_a_503_backs_off_then_succeeds(fake: FakeBluesky, client: BlueskyClient) -> None:
    posts = chat_posts(20, START)
    fake.publish(*posts)
    fake.fail_next("search", 503, times=3)
    ctx = make_ctx()
    await run_until(ctx, client, lambda: "since" in ctx.position)
    assert_backed_off_three_times(ctx, fake.requests("search"), "NotEnoughResources")
    assert set(ctx.collected()) == ours(posts)


@pytest.mark.anyio
async def test_an_unreachable_bluesky_is_failing_until_stopped(fake: FakeBluesky) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    ctx = make_ctx()
    async with BlueskyClient(url, url, timeout=0.5) as down:
        await run_until(ctx, down, lambda: len(ctx.states("failing")) >= 3)
    assert all("no answer from Bluesky" in s.detail for s in ctx.states("failing"))


@pytest.mark.anyio
async def test_a_refusing_public_endpoint_means_logging_in(
    fake: FakeBluesky, client: BlueskyClient
) -> None:
    fake.refuse_public = 403
    posts = chat_posts(30, START)
    fake.publish(*posts)
    ctx = make_ctx()
    await run_until(ctx, client, lambda: "since" in ctx.position, limit=10)
    refused = fake.requests("search", "public")
    assert len(refused) == 1 and refused[0].status == 403
    [login] = fake.requests("createSession")
    assert login.body == {"identifier": fake.identifier, "password": fake.app_password}
    through_pds = fake.requests("search", "pds")
    assert through_pds and all(r.status == 200 for r in through_pds)
    assert all(r.authorization and r.authorization.startswith("Bearer ey") for r in through_pds)
    assert through_pds[0].params == refused[0].params  # the same request, through the PDS
    assert set(ctx.collected()) == ours(posts)
    assert client.route == "pds" and client.handle == fake.identifier
    detail = ctx.states("running")[0].detail
    assert f"through {fake.pds_url} as {fake.identifier}" in detail
    assert "the public endpoint refused: Bluesky answered 403" in detail


@pytest.mark.anyio
async def test_a_refusing_public_endpoint_without_credentials_stops(
    fake: FakeBluesky, anonymous: BlueskyClient
) -> None:
    fake.refuse_public = 401
    fake.publish(*chat_posts(10, START))
    ctx = make_ctx()
    with anyio.fail_after(5):
        await run_bluesky(ctx, anonymous, interval=0.05, backoff=FAST)  # returns by itself
    last = ctx.statuses[-1]
    assert last.state == "stopped" and "401" in last.detail
    assert "no Bluesky handle and app password" in last.detail
    assert fake.requests("createSession") == [] and ctx.batches == []


async def collect_across_expiry(
    fake: FakeBluesky, client: BlueskyClient, n: int, *, refresh_too: bool = False
) -> WatchedContext:
    """Collect `n` posts through the PDS; once the first half is collected, the access token
    expires (and with `refresh_too` the refresh token), then the second half is published."""
    fake.refuse_public = 403
    posts = chat_posts(n, START)
    half = n // 2
    fake.publish(*posts[:half])
    ctx = make_ctx()

    async def expire_then_publish() -> None:
        await ctx.wait_for(lambda: set(ctx.collected()) == ours(posts[:half]))
        fake.expire_access_tokens()
        if refresh_too:
            fake.expire_refresh_tokens()
        fake.publish(*posts[half:])

    async with anyio.create_task_group() as group:
        group.start_soon(expire_then_publish)
        await run_until(ctx, client, lambda: set(ctx.collected()) == ours(posts))
    return ctx


@pytest.mark.anyio
async def test_an_expired_access_token_is_refreshed(
    fake: FakeBluesky, client: BlueskyClient
) -> None:
    ctx = await collect_across_expiry(fake, client, 40)
    expired = [r for r in fake.requests("search", "pds") if r.status == 400]
    assert expired, "the PDS answered ExpiredToken"
    [refresh] = fake.requests("refreshSession")
    [login] = fake.requests("createSession")
    assert refresh.status == 200 and refresh.authorization != expired[0].authorization
    after = fake.requests("search", "pds")[-1]
    assert after.status == 200 and after.authorization != expired[0].authorization
    assert ctx.states("stopped")[-1].detail == "stopped on request"
    assert login.status == 200


@pytest.mark.anyio
async def test_an_expired_refresh_token_means_logging_in_again(
    fake: FakeBluesky, client: BlueskyClient
) -> None:
    await collect_across_expiry(fake, client, 20, refresh_too=True)
    [refresh] = fake.requests("refreshSession")
    assert refresh.status == 400
    assert [r.status for r in fake.requests("createSession")] == [200, 200]


@pytest.mark.anyio
async def test_a_wrong_app_password_stops_with_the_reason(fake: FakeBluesky) -> None:
    fake.refuse_public = 403
    fake.publish(*chat_posts(10, START))
    ctx = make_ctx()
    async with BlueskyClient(
        fake.public_url, fake.pds_url, fake.identifier, "wrong-pass-word-here"
    ) as wrong:
        with anyio.fail_after(5):
            await run_bluesky(ctx, wrong, interval=0.05, backoff=FAST)
    last = ctx.statuses[-1]
    assert last.state == "stopped"
    assert "401 to createSession: AuthenticationRequired: Invalid identifier or password" in (
        last.detail
    )
    assert len(fake.requests("createSession")) == 1 and ctx.batches == []


@pytest.mark.anyio
async def test_a_rejected_query_stops_with_the_reason(
    fake: FakeBluesky, client: BlueskyClient
) -> None:
    fake.fail_next("search", 400)
    ctx = make_ctx()
    with anyio.fail_after(5):
        await run_bluesky(ctx, client, interval=0.05, backoff=FAST)
    assert ctx.statuses[-1].state == "stopped"
    assert "Bluesky rejected the search: Bluesky answered 400" in ctx.statuses[-1].detail


@pytest.mark.anyio
async def test_a_shared_http_client_is_left_open(fake: FakeBluesky) -> None:
    async with httpx.AsyncClient(timeout=5.0) as http:
        async with BlueskyClient(fake.public_url, fake.pds_url, http=http) as bsky:
            await bsky.search_posts("#QIHour", tags=["QIHour"])
        assert not http.is_closed
        response = await http.get(f"{fake.public_url}/xrpc/app.bsky.feed.searchPosts?q=x")
        assert response.status_code == 200


@pytest.mark.anyio
async def test_a_restart_with_nothing_new_emits_nothing(
    fake: FakeBluesky, client: BlueskyClient
) -> None:
    posts = chat_posts(30, START)
    fake.publish(*posts)
    first = make_ctx()
    await run_until(first, client, lambda: set(first.collected()) == ours(posts))
    calls = len(fake.requests("search"))
    second = make_ctx(first.position)
    await run_until(second, client, lambda: len(fake.requests("search")) >= calls + 6)
    resumed = fake.requests("search")[calls:]
    assert all(r.params["since"] == first.position["since"] for r in resumed)
    assert any(r.returned for r in resumed)  # the overlap is read again...
    assert second.batches == []  # ...and nothing is emitted
