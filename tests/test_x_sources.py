"""The X sources against the fake X server on loopback (real HTTP, no mocks of httpx).

Each source runs as a task with a `WatchedContext` (`tests/sources_helpers.py`), a
`RecordingContext` that also wakes the test when a batch or a status arrives, so the tests wait for
events, not for fixed times. Delays are scaled down (backoff 50 ms, reconnect schedule x0.01,
keep-alives every 0.2 s, stall timeout 0.5 s).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from app import jsonio
from app.ingest.parse import parse_object
from app.sources.base import ChatTarget, SourceBatch
from app.sources.x_api import (
    EXPANSIONS,
    XApi,
    XApiError,
    XAuthError,
    XRateLimited,
    XRequestError,
    XServerError,
    chat_query,
    newest_id,
)
from app.sources.x_refresh import fetch_trends, lookup_posts
from app.sources.x_search import backfill, first_start_time, run_search
from app.sources.x_stream import rule_tag, run_stream, sync_rules
from tests.fakex import FakeX
from tests.sources_helpers import (
    FAST,
    WatchedContext,
    assert_backed_off_three_times,
    run_until,
    running,
)

QI_CHAT = Path(__file__).parent / "fixtures" / "qi-chat.jsonl"
HASHTAGS = ("#LeadingQI", "#QIHour")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_ctx(fake: FakeX, *, start: datetime | None = None) -> WatchedContext:
    start = start or fake.at(datetime(2023, 3, 28, 18, 0, tzinfo=UTC))
    # A one-day lookback, so that the archive's oldest posts fall outside it.
    chat = ChatTarget(
        "qi-test", HASHTAGS, start=start, end=start + timedelta(hours=1), lookback=timedelta(days=1)
    )
    return WatchedContext(chat=chat)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeX]:
    with FakeX() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeX) -> FakeX:
    """The module's fake X, reset to the qi-chat archive with nothing published."""
    server.reset(QI_CHAT_PAGES, keepalive_interval=0.2)
    return server


QI_CHAT_PAGES = [json.loads(line) for line in QI_CHAT.read_text().splitlines() if line]


@pytest.fixture
async def api(fake: FakeX) -> AsyncIterator[XApi]:
    async with XApi(fake.url, fake.token, timeout=5.0) as client:
        yield client


def non_retweets(fake: FakeX, ids: list[str] | None = None) -> set[str]:
    return {i for i in (fake.published if ids is None else ids) if not fake.is_retweet(i)}


def streamed(fake: FakeX, ids: list[str]) -> list[str]:
    """The posts the stream sends for the chat's rule: one retweet in the archive has none of
    the chat's hashtags (nor has its original)."""
    return [i for i in ids if fake.matches(i, chat_query(HASHTAGS))]


def created_at(fake: FakeX, post_id: str) -> datetime:
    return datetime.fromisoformat(fake.tweet(post_id)["created_at"].replace("Z", "+00:00"))


def searchable(fake: FakeX, ctx: WatchedContext, ids: list[str] | None = None) -> set[str]:
    """What a first search round can find: no retweets, nothing before a day before the chat
    (the archive has two posts earlier still)."""
    start = first_start_time(ctx.chat)
    return {i for i in non_retweets(fake, ids) if created_at(fake, i) >= start}


# -- the thin client -------------------------------------------------------------------------


def test_chat_query_ors_the_hashtags() -> None:
    assert chat_query(["#LeadingQI", "QIHour", "#leadingqi", " "]) == "#LeadingQI OR #QIHour"
    with pytest.raises(ValueError):
        chat_query([])
    assert newest_id("999", "1000", None) == "1000"  # integers, not strings


@pytest.mark.anyio
async def test_requests_ask_for_our_expansions_and_fields(fake: FakeX, api: XApi) -> None:
    fake.publish(20)
    page, body = await api.search_page(chat_query(HASHTAGS))
    assert jsonio.loads(body) == page  # the bytes the page was read from
    params = fake.requests("search")[0].params
    assert params["query"] == "#LeadingQI OR #QIHour"
    assert params["expansions"] == EXPANSIONS
    for name in ("created_at", "conversation_id", "public_metrics", "referenced_tweets"):
        assert name in params["tweet.fields"]
    assert "profile_image_url" in params["user.fields"]
    assert "options" in params["poll.fields"]
    assert params["max_results"] == "100"
    assert api.rate_limits["search"].remaining == 449
    assert page["meta"]["result_count"] == len(non_retweets(fake))


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "error"),
    [(500, XServerError), (503, XServerError), (403, XAuthError), (429, XRateLimited)],
)
async def test_errors_are_typed(
    fake: FakeX, api: XApi, status: int, error: type[XApiError]
) -> None:
    fake.fail_next("lookup", status, reset_in=30)
    with pytest.raises(error) as caught:
        await api.lookup(["1"])
    assert caught.value.status == status
    if isinstance(caught.value, XRateLimited):
        assert caught.value.reset_at is not None
        assert caught.value.reset_at > datetime.now(UTC) + timedelta(seconds=25)
    if status == 403:
        assert "Client Forbidden" in str(caught.value)


@pytest.mark.anyio
async def test_bad_request_and_bad_token_are_typed(fake: FakeX) -> None:
    async with XApi(fake.url, "wrong-token") as wrong:
        with pytest.raises(XAuthError, match=r"401.*Unauthorized"):
            await wrong.trends(23424975)
    async with XApi(fake.url, fake.token) as api:
        with pytest.raises(XRequestError, match="400"):
            await api.search_page("#QIHour", start_time=datetime.now(UTC) - timedelta(days=8))


# -- recent search ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_search_follows_pages_then_polls_from_since_id(fake: FakeX, api: XApi) -> None:
    ctx = make_ctx(fake)
    fake.publish(120)
    first_round = searchable(fake, ctx)
    assert first_round != non_retweets(fake)  # the two oldest are too old for the lookback

    async def everything_then_more() -> None:
        await ctx.wait_for(lambda: "newest_id" in ctx.position)
        fake.publish(100)
        await ctx.wait_for(lambda: set(ctx.collected()) == searchable(fake, ctx))
        fake.publish_all()

    async with anyio.create_task_group() as group:
        group.start_soon(everything_then_more)
        await run_until(
            ctx,
            run_search,
            lambda: set(ctx.collected()) == searchable(fake, ctx) and len(fake.published) == 343,
            api=api,
            interval=0.05,
            backoff=FAST,
            max_results=10,
        )

    requests = fake.requests("search")
    # Round 1: from a day before the chat, through every page (same start_time, next_token).
    assert "start_time" in requests[0].params and "since_id" not in requests[0].params
    pages_of_round_1 = -(-len(first_round) // 10)
    for request in requests[1:pages_of_round_1]:
        assert request.params["next_token"]
        assert request.params["start_time"] == requests[0].params["start_time"]
    # Later rounds: from the newest id of the rounds before, which only moves forward.
    later = requests[pages_of_round_1:]
    assert later[0].params["since_id"] == max(first_round, key=int)
    since = [int(r.params["since_id"]) for r in later]
    assert all("start_time" not in r.params for r in later) and since == sorted(since)
    # Every post once: nothing read twice, no retweets (search leaves them out).
    counts = Counter(ctx.collected())
    assert set(counts) == searchable(fake, ctx) and max(counts.values()) == 1
    # The round's position rides on its last page only.
    assert ctx.batches[0].position is None
    first_positioned = next(b for b in ctx.batches if b.position)
    assert first_positioned.position == {"newest_id": max(first_round, key=int)}
    assert ctx.position["newest_id"] == max(non_retweets(fake), key=int)
    assert sum(b.posts_read for b in ctx.batches) >= len(counts)
    assert any(s.state == "running" for s in ctx.statuses)
    # Each batch is one page, whole, with its bytes for a storage process to parse again.
    for batch in ctx.batches:
        assert batch.pages is not None and len(batch.pages) == 1
        assert parse_object(jsonio.loads(batch.pages[0])) == batch.parsed


@pytest.mark.anyio
async def test_search_resumes_from_the_stored_newest_id(fake: FakeX, api: XApi) -> None:
    ctx = make_ctx(fake)
    old = fake.publish(100)
    ctx.position = {"newest_id": max(non_retweets(fake), key=int)}
    new = fake.publish(50)
    await run_until(
        ctx,
        run_search,
        lambda: "newest_id" in ctx.position and ctx.batches != [],
        api=api,
        interval=0.05,
    )
    first = fake.requests("search")[0].params
    assert first["since_id"] == max(non_retweets(fake, old), key=int)
    assert "start_time" not in first
    assert set(ctx.collected()) == non_retweets(fake, new)


@pytest.mark.anyio
async def test_search_resumes_from_a_too_old_newest_id_by_time(fake: FakeX, api: XApi) -> None:
    fake.publish(100)
    ctx = make_ctx(fake)
    ctx.position = {"newest_id": fake.snowflake(datetime.now(UTC) - timedelta(days=8))}
    await run_until(
        ctx,
        run_search,
        lambda: len(fake.requests("search")) >= 3,
        api=api,
        interval=0.05,
        backoff=FAST,
    )
    refused, by_time, polled = fake.requests("search")[:3]
    assert refused.status == 400 and "since_id" in refused.params
    assert "start_time" in by_time.params and "since_id" not in by_time.params
    assert polled.params["since_id"] == max(searchable(fake, ctx), key=int)
    assert "since_id" in ctx.states("failing")[0].detail
    assert set(ctx.collected()) == searchable(fake, ctx)


@pytest.mark.anyio
async def test_an_error_in_the_pipeline_comes_out_as_itself(fake: FakeX, api: XApi) -> None:
    class Broken(WatchedContext):
        async def emit(self, batch: SourceBatch) -> None:
            raise RuntimeError("the queue is gone")

    fake.publish(30)
    ctx = Broken(chat=make_ctx(fake).chat)
    with pytest.raises(RuntimeError, match="the queue is gone"):
        await run_search(ctx, api, interval=0.05, stop=anyio.Event())


def test_first_round_starts_a_day_early_but_within_seven_days() -> None:
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)

    def target(start: datetime) -> ChatTarget:
        return ChatTarget("c", HASHTAGS, start, start + timedelta(hours=1), timedelta(days=1))

    assert first_start_time(target(now - timedelta(days=2)), now) == now - timedelta(days=3)
    assert first_start_time(target(now - timedelta(days=10)), now) == (
        now - timedelta(days=7) + timedelta(minutes=1)
    )
    # A chat tomorrow: from (almost) now; X refuses a start_time less than 10 s old.
    assert first_start_time(target(now + timedelta(days=2)), now) == now - timedelta(seconds=30)


@pytest.mark.anyio
async def test_search_of_an_old_chat_stays_inside_the_window(fake: FakeX, api: XApi) -> None:
    ctx = make_ctx(fake, start=datetime.now(UTC) - timedelta(days=10))
    fake.publish(30)
    await run_until(ctx, run_search, lambda: "newest_id" in ctx.position, api=api, interval=0.05)
    request = fake.requests("search")[0]
    assert request.status == 200
    start = datetime.fromisoformat(request.params["start_time"].replace("Z", "+00:00"))
    expected = datetime.now(UTC) - timedelta(days=7) + timedelta(minutes=1)
    assert abs((start - expected).total_seconds()) < 10


@pytest.mark.anyio
async def test_search_emits_a_post_repeated_across_pages(fake: FakeX, api: XApi) -> None:
    fake.search_duplicate_across_pages = True
    fake.publish(60)
    ctx = make_ctx(fake)
    newest = await backfill(
        ctx, api, None, source="x-search", position_key="newest_id", max_results=10
    )
    counts = Counter(ctx.collected())
    assert set(counts) == searchable(fake, ctx)
    assert newest == max(searchable(fake, ctx), key=int)
    # Emitted as X sent it (each page boundary repeats a post); the pipeline stores it once.
    pages = len(fake.requests("search"))
    assert pages > 1 and sorted(counts.values())[-(pages - 1) :] == [2] * (pages - 1)
    assert sum(counts.values()) == len(counts) + pages - 1
    assert ctx.batches[-1].position == {"newest_id": newest}


@pytest.mark.anyio
async def test_search_waits_for_a_429_until_the_reset(fake: FakeX, api: XApi) -> None:
    fake.publish(40)
    fake.fail_next("search", 429, reset_in=0.5)
    ctx = make_ctx(fake)
    await run_until(
        ctx, run_search, lambda: "newest_id" in ctx.position, api=api, interval=0.05, backoff=FAST
    )
    limited, retried = fake.requests("search")[:2]
    assert limited.status == 429 and limited.response_headers["x-rate-limit-remaining"] == "0"
    reset = int(limited.response_headers["x-rate-limit-reset"])
    assert retried.time >= reset - 0.02  # not a moment before X said
    waiting = ctx.states("waiting")
    assert len(waiting) == 1 and waiting[0].retry_at is not None
    assert abs(waiting[0].retry_at.timestamp() - reset) < 0.5
    assert "429" in waiting[0].detail
    assert set(ctx.collected()) == searchable(fake, ctx)


@pytest.mark.anyio
async def test_search_backs_off_on_503_and_recovers(fake: FakeX, api: XApi) -> None:
    fake.publish(40)
    fake.fail_next("search", 503, times=3)
    ctx = make_ctx(fake)
    await run_until(
        ctx, run_search, lambda: "newest_id" in ctx.position, api=api, interval=0.05, backoff=FAST
    )
    assert_backed_off_three_times(ctx, fake.requests("search"), "Service Unavailable")
    assert set(ctx.collected()) == searchable(fake, ctx)


@pytest.mark.anyio
async def test_search_retries_a_failed_page_with_its_token(fake: FakeX, api: XApi) -> None:
    fake.publish(120)
    fake.fail_next("search", 500, after=1)
    ctx = make_ctx(fake)
    await run_until(
        ctx,
        run_search,
        lambda: "newest_id" in ctx.position,
        api=api,
        interval=0.05,
        backoff=FAST,
        max_results=10,
    )
    _, failed, retried = fake.requests("search")[:3]
    assert failed.status == 500 and retried.status == 200
    assert failed.params["next_token"] == retried.params["next_token"]
    assert sum(1 for r in fake.requests("search") if "next_token" not in r.params) >= 1
    counts = Counter(ctx.collected())
    assert set(counts) == searchable(fake, ctx) and max(counts.values()) == 1


@pytest.mark.anyio
async def test_search_stops_with_the_reason_on_401(fake: FakeX) -> None:
    ctx = make_ctx(fake)
    async with XApi(fake.url, "revoked-token") as api:
        with anyio.fail_after(5):
            await run_search(ctx, api, interval=0.05, backoff=FAST)  # returns by itself
    last = ctx.statuses[-1]
    assert last.state == "stopped"
    assert "401" in last.detail and "Unauthorized" in last.detail
    assert len(fake.requests("search")) == 1 and ctx.batches == []


@pytest.mark.anyio
async def test_search_stops_with_the_reason_on_403(fake: FakeX, api: XApi) -> None:
    fake.fail_next("search", 403)
    ctx = make_ctx(fake)
    with anyio.fail_after(5):
        await run_search(ctx, api, interval=0.05, backoff=FAST)
    assert ctx.statuses[-1].state == "stopped"
    assert "Client Forbidden" in ctx.statuses[-1].detail


@pytest.mark.anyio
async def test_search_survives_a_hung_request_and_an_unreachable_x(fake: FakeX) -> None:
    fake.publish(30)
    fake.hang_next("search", 2.0)
    ctx = make_ctx(fake)
    async with XApi(fake.url, fake.token, timeout=0.3) as api:
        await run_until(
            ctx,
            run_search,
            lambda: "newest_id" in ctx.position,
            api=api,
            interval=0.05,
            backoff=FAST,
        )
    assert "ReadTimeout" in ctx.states("failing")[0].detail
    assert set(ctx.collected()) == searchable(fake, ctx)

    # Nothing listening at all: failing, with the reason, until stopped.
    with socket_closed_port() as url:
        ctx = make_ctx(fake)
        async with XApi(url, "token", timeout=0.5) as down:
            await run_until(
                ctx, run_search, lambda: len(ctx.states("failing")) >= 3, api=down, backoff=FAST
            )
    assert all("no answer from X" in s.detail for s in ctx.states("failing"))


class socket_closed_port:
    """A loopback URL where nothing listens (the port was bound, then released)."""

    def __enter__(self) -> str:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        return None


# -- filtered stream -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_sync_rules_adds_ours_deletes_our_stale_leaves_others(fake: FakeX, api: XApi) -> None:
    await api.add_rules(
        [("#Old", rule_tag("qi-test")), ("#x", rule_tag("other")), ("cats", "not-ours")]
    )
    before = {rule["value"]: rule["id"] for rule in await api.get_rules()}
    result = await sync_rules(api, "qi-test", HASHTAGS)
    assert result.added and result.deleted == (before["#Old"],)
    after = {rule["value"]: rule for rule in await api.get_rules()}
    assert set(after) == {"#x", "cats", "#LeadingQI OR #QIHour"}
    assert after["#LeadingQI OR #QIHour"]["tag"] == "tweetchat:qi-test"
    assert after["#LeadingQI OR #QIHour"]["id"] == result.rule_id
    posts_before = len([r for r in fake.requests("rules") if r.method == "POST"])
    again = await sync_rules(api, "qi-test", HASHTAGS)
    assert again.rule_id == result.rule_id and not again.added and again.deleted == ()
    assert len([r for r in fake.requests("rules") if r.method == "POST"]) == posts_before


async def stream_ctx_connected(fake: FakeX, ctx: WatchedContext, connections: int = 1) -> None:
    await fake.wait_until(lambda: fake.stream_connections >= connections and fake.open_streams > 0)
    await ctx.wait_for(lambda: any(s.state == "running" for s in ctx.statuses))


@pytest.mark.anyio
async def test_stream_emits_each_message_with_the_newest_id(fake: FakeX, api: XApi) -> None:
    ctx = make_ctx(fake)
    async with running(
        run_stream, ctx, api, keepalive_timeout=1.0, backoff_scale=0.01, catch_up=False
    ):
        await stream_ctx_connected(fake, ctx)
        published = streamed(fake, fake.publish(40))
        await ctx.wait_for(lambda: set(ctx.collected()) == set(published))
    assert ctx.collected() == published  # in order, once each, retweets included
    assert any(fake.is_retweet(i) for i in published)
    for batch in ctx.batches:
        post = batch.parsed.collected[0]
        assert post.raw == fake.tweet(post.id)  # exactly as published
        assert batch.source == "x-stream" and batch.requests == 0 and batch.posts_read >= 1
        # With the message's bytes, for a storage process to parse again.
        assert batch.pages is not None and len(batch.pages) == 1
        assert parse_object(jsonio.loads(batch.pages[0])) == batch.parsed
    positions = [b.position["stream_newest_id"] for b in ctx.batches if b.position]
    assert positions[-1] == max(published, key=int)
    assert fake.requests("search") == []  # a fresh start without catch-up reads nothing else
    rules = fake.requests("rules")
    assert [r.method for r in rules] == ["GET", "POST"]
    assert ctx.statuses[-1].state == "stopped"


@pytest.mark.anyio
async def test_stream_duplicates_and_out_of_order_posts(fake: FakeX, api: XApi) -> None:
    fake.stream_duplicates = True
    fake.stream_out_of_order = True
    ctx = make_ctx(fake)
    async with running(run_stream, ctx, api, keepalive_timeout=1.0, catch_up=False):
        await stream_ctx_connected(fake, ctx)
        published = streamed(fake, fake.publish(10))
        await ctx.wait_for(lambda: len(ctx.collected()) == 2 * len(published))
    collected = ctx.collected()
    assert Counter(collected) == Counter({i: 2 for i in published})  # emitted; stored once later
    assert collected[0] == max(published, key=int)  # the newest came first
    positions = [int(b.position["stream_newest_id"]) for b in ctx.batches if b.position]
    assert positions == [int(max(published, key=int))] * len(collected)  # never moves back


@pytest.mark.anyio
@pytest.mark.parametrize("search_has_retweets", [False, True])
async def test_stream_reconnects_after_a_drop_and_backfills_the_gap(
    fake: FakeX, search_has_retweets: bool
) -> None:
    fake.search_excludes_retweets = not search_has_retweets
    async with XApi(fake.url, fake.token) as api:
        fake.stream_drop_after(5)
        ctx = make_ctx(fake)
        async with running(
            run_stream,
            ctx,
            api,
            keepalive_timeout=1.0,
            backoff_scale=0.01,
            catch_up=False,
            search_backoff=FAST,
        ):
            await stream_ctx_connected(fake, ctx)
            burst = streamed(fake, fake.publish(40))  # 5 arrive, then X drops the connection
            await fake.wait_until(lambda: fake.stream_connections == 2 and fake.open_streams > 0)
            await ctx.wait_for(lambda: len(fake.requests("search")) >= 1)
            later = streamed(fake, fake.publish(20))  # on the new connection
            gap = set(burst[5:])
            expected = (
                set(burst[:5])
                | set(later)
                | (gap if search_has_retweets else non_retweets(fake, burst[5:]))
            )
            await ctx.wait_for(lambda: set(ctx.collected()) >= expected)
    search = fake.requests("search")
    assert search[0].params["since_id"] == max(burst[:5], key=int)
    collected = {post.id: post for b in ctx.batches for post in b.parsed.collected}
    assert set(collected) == expected
    for post_id, post in collected.items():
        assert post.raw == fake.tweet(post_id)
    if not search_has_retweets:
        # Since May 2026 search has no retweets: those of the gap are lost (counts come from
        # the originals' public_metrics), everything else is there.
        assert all(fake.is_retweet(i) for i in gap - set(collected))
    assert any("X closed the stream; reconnecting now" in s.detail for s in ctx.statuses)
    assert ctx.position["stream_newest_id"] == max(set(burst) | set(later), key=int)


@pytest.mark.anyio
async def test_stream_reconnects_after_silence(fake: FakeX, api: XApi) -> None:
    fake.stream_go_silent(after=2)
    ctx = make_ctx(fake)
    started = time.monotonic()
    async with running(
        run_stream,
        ctx,
        api,
        keepalive_timeout=0.5,
        backoff_scale=0.01,
        catch_up=False,
        search_backoff=FAST,
    ):
        await stream_ctx_connected(fake, ctx)
        published = streamed(
            fake, fake.publish(12)
        )  # 2 arrive, then nothing, not even a keep-alive
        await ctx.wait_for(lambda: set(ctx.collected()) >= non_retweets(fake) | set(published[:2]))
    assert fake.stream_connections == 2
    assert time.monotonic() - started >= 0.5
    stalled = [s for s in ctx.states("failing") if "keep-alive" in s.detail]
    assert stalled and "reconnecting now" in stalled[0].detail
    assert fake.requests("search")[0].params["since_id"] == max(published[:2], key=int)


@pytest.mark.anyio
async def test_stream_of_keepalives_only_stays_connected(fake: FakeX, api: XApi) -> None:
    fake.stream_keepalive_only()
    ctx = make_ctx(fake)
    stop = asyncio.Event()  # an asyncio event works as well as an anyio one
    async with anyio.create_task_group() as group:
        group.start_soon(
            lambda: run_stream(ctx, api, keepalive_timeout=0.5, stop=stop, catch_up=False)
        )
        await stream_ctx_connected(fake, ctx)
        fake.publish(5)
        # Keep-alives every 0.2 s for well over the 0.5 s timeout.
        await fake.wait_until(lambda: fake.keepalives_sent >= 4)
        stop.set()
    assert fake.stream_connections == 1
    assert ctx.batches == [] and ctx.states("failing") == []


@pytest.mark.anyio
async def test_stream_backs_off_as_x_documents(fake: FakeX, api: XApi) -> None:
    fake.fail_next("stream", 503, times=2)
    fake.fail_next("stream", 429, reset_in=60)
    ctx = make_ctx(fake)
    await run_until(
        ctx,
        run_stream,
        lambda: fake.open_streams == 1,
        api=api,
        keepalive_timeout=1.0,
        backoff_scale=0.01,
        catch_up=False,
    )
    delays = [s.detail.rsplit("reconnecting ", 1)[1] for s in ctx.statuses if s.retry_at]
    # HTTP errors: 5 s, then 10 s; 429: 60 s (all x0.01 here).
    assert delays == ["in 0.05 s", "in 0.1 s", "in 0.6 s"]
    assert ctx.states("waiting")[0].detail.startswith("X answered 429")
    assert "maximum allowed connection limit" in ctx.states("waiting")[0].detail
    times = [r.time for r in fake.requests("stream")]
    assert times[1] - times[0] >= 0.045 and times[2] - times[1] >= 0.095
    assert times[3] - times[2] >= 0.595


@pytest.mark.anyio
async def test_stream_network_errors_back_off_linearly(fake: FakeX) -> None:
    ctx = make_ctx(fake)
    with socket_closed_port() as url:
        async with XApi(url, "token", timeout=0.5) as down:
            await run_until(
                ctx,
                run_stream,
                lambda: len(ctx.states("failing")) >= 4,
                api=down,
                backoff_scale=0.01,
                sync=False,
            )
    delays = [s.detail.rsplit("reconnecting ", 1)[1] for s in ctx.states("failing")[:4]]
    assert delays == ["in 0.0025 s", "in 0.005 s", "in 0.0075 s", "in 0.01 s"]


@pytest.mark.anyio
async def test_stream_stops_with_the_reason_on_401(fake: FakeX) -> None:
    ctx = make_ctx(fake)
    async with XApi(fake.url, "wrong") as api:
        with anyio.fail_after(5):
            await run_stream(ctx, api, backoff_scale=0.01)
    assert ctx.statuses[-1].state == "stopped"
    assert "401" in ctx.statuses[-1].detail
    assert fake.requests("stream") == []  # the rules request already failed


@pytest.mark.anyio
async def test_stream_resume_backfills_from_the_stored_position(fake: FakeX, api: XApi) -> None:
    before = fake.publish(60)
    ctx = make_ctx(fake)
    ctx.position = {"stream_newest_id": before[29]}
    await run_until(
        ctx,
        run_stream,
        lambda: set(ctx.collected()) == non_retweets(fake, before[30:]),
        api=api,
        keepalive_timeout=1.0,
        catch_up=False,
        search_backoff=FAST,
    )
    assert fake.requests("search")[0].params["since_id"] == before[29]
    assert ctx.position["stream_newest_id"] == max(non_retweets(fake, before[30:]), key=int)


@pytest.mark.anyio
async def test_stream_first_connect_catches_up_through_search(fake: FakeX, api: XApi) -> None:
    before = fake.publish(60)
    ctx = make_ctx(fake)
    expected = searchable(fake, ctx, before)
    await run_until(
        ctx,
        run_stream,
        lambda: set(ctx.collected()) == expected,
        api=api,
        keepalive_timeout=1.0,
        search_backoff=FAST,
    )
    assert "start_time" in fake.requests("search")[0].params
    assert 0 < len(expected) < len(non_retweets(fake, before))


@pytest.mark.anyio
async def test_stream_ignores_other_rules_posts(server: FakeX) -> None:
    def tweet(post_id: str, text: str, tag: str) -> dict[str, Any]:
        return {
            "id": post_id,
            "author_id": "1",
            "created_at": "2026-01-01T10:00:00.000Z",
            "text": text,
            "entities": {"hashtags": [{"start": 0, "end": len(tag) + 1, "tag": tag}]},
        }

    page = {
        "data": [tweet("11", "#QIHour yes", "QIHour"), tweet("12", "#Cats meow", "Cats")],
        "includes": {"users": [{"id": "1", "username": "someone", "name": "Some One"}]},
    }
    fake = server
    fake.reset([page], keepalive_interval=0.2)
    async with XApi(fake.url, fake.token) as api:
        await api.add_rules([("#Cats", "another-app")])
        ctx = make_ctx(fake)
        async with running(run_stream, ctx, api, keepalive_timeout=1.0, catch_up=False):
            await stream_ctx_connected(fake, ctx)
            fake.publish_ids(["12", "11"])
            await ctx.wait_for(lambda: ctx.collected() == ["11"])
            await fake.wait_until(lambda: fake.messages_sent == 2)
    assert ctx.collected() == ["11"]
    assert ctx.batches[0].parsed.users[0].username == "someone"


# -- trends and lookup -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_trends_in_order_with_ranks(fake: FakeX, api: XApi) -> None:
    result = await fetch_trends(api, 23424975)
    assert result.ok and result.woeid == 23424975
    assert [(t.name, t.rank) for t in result.trends][:3] == [
        ("#SundayVibes", 1),
        ("Arsenal", 2),
        ("#QIHour", 3),
    ]
    assert result.rank_of("#qihour") == 3 and result.rank_of("LeadingQI") == 5
    assert result.trends[4].tweet_count is None and result.rank_of("#nothing") is None
    assert fake.requests("trends")[0].path == "/2/trends/by/woeid/23424975"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "words"), [(403, "Client Forbidden"), (429, "429"), (503, "503")]
)
async def test_trends_unavailable_with_the_reason(
    fake: FakeX, api: XApi, status: int, words: str
) -> None:
    if status == 403:
        fake.trends_status = 403  # a plan without trends
    else:
        fake.fail_next("trends", status)
    result = await fetch_trends(api, 23424975)
    assert not result.ok and result.trends == [] and result.status == status
    assert words in result.reason


@pytest.mark.anyio
async def test_lookup_returns_fresh_metrics_and_counts_unknown_ids(fake: FakeX, api: XApi) -> None:
    published = fake.publish_all()
    target = next(i for i in published if not fake.is_retweet(i))
    fake.set_metrics(target, retweet_count=999, like_count=50)
    ids = [*published[:250], target, "1234"]  # the repeated id is asked for once
    parsed = await lookup_posts(api, ids)
    by_id = {post.id: post for post in parsed.collected}
    assert by_id[target].retweet_count == 999 and by_id[target].like_count == 50
    assert set(by_id) == set(published[:250])
    assert parsed.api_errors == 1  # "1234": not found
    sizes = [len(r.params["ids"].split(",")) for r in fake.requests("lookup")]
    assert sizes == [100, 100, 51]
    polls = {poll.id: poll for poll in parsed.polls}
    assert sum(votes for _, _, votes in polls["1640777035026333696"].options) == 41
