"""The X recent-search source: poll `GET /2/tweets/search/recent` for a chat's hashtags.

Each round asks for what is newer than the last round (`since_id`), or the first time for what was
posted from a day before the chat (`start_time`), and follows `next_token` through every page.
Every page is emitted as a batch as soon as it arrives; the round's new `newest_id` (the first
page's `meta.newest_id`) rides on the round's LAST batch only, so the stored position moves only
once the whole round is committed: a crash mid-round re-reads the round, it never skips part of it.
Posts are never requested twice across rounds (X bills each post read).

Failures, each reported to the context: 429 waits until `x-rate-limit-reset` and retries the same
request; 5xx and network errors back off exponentially (1 s doubling to 60 s) and retry the same
request (a `next_token` does not expire, so a round resumes at the page that failed); 401/403 and
other 4xx stop the source with X's reason, because asking again cannot help.

`backfill` is one such round, used by the stream source to fill the gap after a reconnect.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from app.ingest.parse import Parsed, PayloadError, parse_object
from app.sources.base import ChatTarget, SourceBatch, SourceContext

# The `X as X` imports are re-exported: `x_stream` and the live hub import them from here.
from app.sources.http import Backoff as Backoff
from app.sources.http import Reporter as Reporter
from app.sources.http import RetryingCaller as RetryingCaller
from app.sources.http import StopEvent as StopEvent
from app.sources.http import run_source
from app.sources.http import run_until_stopped as run_until_stopped
from app.sources.x_api import (
    MAX_PAGE,
    XApi,
    XApiError,
    XAuthError,
    XRequestError,
    XServerError,
    chat_query,
    newest_id,
    x_time,
)

SOURCE = "x-search"
# Recent search reaches 7 days back; a minute's margin keeps a slow request inside the window.
SEARCH_WINDOW = timedelta(days=7) - timedelta(minutes=1)
# X refuses a start_time less than 10 s before the request.
MIN_START_AGE = timedelta(seconds=30)


def first_start_time(chat: ChatTarget, now: datetime | None = None) -> datetime:
    """Where the first round starts: `chat.lookback` before the chat, but inside recent search's
    7 days."""
    now = now or datetime.now(UTC)
    start = max(chat.start - chat.lookback, now - SEARCH_WINDOW)
    return min(start, now - MIN_START_AGE)


def _page_of(page: dict[str, Any]) -> tuple[Parsed, int, dict[str, Any]]:
    """The parsed page, the number of posts X counts as read in it, and its `meta`."""
    parsed = parse_object(page)
    data = page.get("data") or []
    includes = page.get("includes") if isinstance(page.get("includes"), dict) else {}
    assert isinstance(includes, dict)
    context = includes.get("tweets") or []
    read = (len(data) if isinstance(data, list) else 1) + (
        len(context) if isinstance(context, list) else 0
    )
    meta = page.get("meta") if isinstance(page.get("meta"), dict) else {}
    assert isinstance(meta, dict)
    return parsed, read, meta


async def search_round(
    ctx: SourceContext,
    api: XApi,
    caller: RetryingCaller,
    *,
    query: str,
    since_id: str | None,
    start_time: datetime | None,
    source: str,
    position_key: str,
    max_results: int = MAX_PAGE,
) -> tuple[str | None, bool]:
    """One polling round: every page newer than `since_id` (or from `start_time`), emitted.

    Returns the round's newest id (None if nothing matched), and whether X refused `since_id`
    as too old (the round then ran from `start_time`). The position `{position_key: newest}`
    goes on the last batch of the round only.
    """
    token: str | None = None
    round_newest: str | None = None
    since_refused = False

    async def fetch() -> tuple[Parsed, int, dict[str, Any], bytes]:
        page, body = await api.search_page(
            query,
            since_id=since_id,
            start_time=None if since_id else start_time,
            next_token=token,
            max_results=max_results,
        )
        try:
            return (*_page_of(page), body)
        except PayloadError as exc:
            # A page we cannot read is X's fault; asking again for it is the only way not to
            # lose its posts.
            raise XServerError(f"X sent a malformed search page: {exc}", endpoint="search") from exc

    while True:
        try:
            parsed, read, meta, body = await caller.call(fetch)
        except XRequestError as exc:
            if token is not None or since_id is None or "since_id" not in str(exc.body):
                raise
            # X refuses a since_id older than its 7 days of search (after a long outage): go
            # on from the oldest time search still covers. What came before is out of reach.
            since_id, start_time, since_refused = None, first_start_time(ctx.chat), True
            caller.report("failing", f"{exc.message}; searching from {x_time(start_time)}")
            continue
        if round_newest is None:
            value = meta.get("newest_id")
            round_newest = str(value) if value is not None and str(value).isdigit() else None
        next_token = meta.get("next_token")
        token = next_token if isinstance(next_token, str) and next_token else None
        last = token is None
        position = None
        if last and round_newest is not None:
            position = {position_key: newest_id(since_id, round_newest)}
        if parsed.collected or parsed.context or position is not None:
            # With the page's bytes: a storage process parses them again (app/live/storage.py).
            batch = SourceBatch(source, parsed, position=position, posts_read=read, pages=[body])
            await ctx.emit(batch)
        if last:
            return round_newest, since_refused


async def backfill(
    ctx: SourceContext,
    api: XApi,
    since_id: str | None,
    *,
    start_time: datetime | None = None,
    source: str = "x-stream",
    position_key: str = "stream_newest_id",
    backoff: Backoff | None = None,
    max_results: int = MAX_PAGE,
    report: Reporter | None = None,
) -> str | None:
    """One recent-search round after `since_id`: fills a stream's gap after a reconnect.

    Without `since_id` it starts at `start_time` (default: the chat's first search start).
    Batches are emitted under `source`, the last one carrying `{position_key: newest}`; states
    go to `report` (the stream's own reporter, so it knows the state) or a new one for `source`.
    Returns the newest id seen, or None if nothing matched. Raises XAuthError/XRequestError.
    """
    report = report or Reporter(ctx, source)
    caller = RetryingCaller(report, backoff or Backoff(), "backfilling the gap through search")
    if since_id is None and start_time is None:
        start_time = first_start_time(ctx.chat)
    newest, _ = await search_round(
        ctx,
        api,
        caller,
        query=chat_query(ctx.chat.hashtags),
        since_id=since_id,
        start_time=start_time,
        source=source,
        position_key=position_key,
        max_results=max_results,
    )
    return newest


async def run_search(
    ctx: SourceContext,
    api: XApi,
    *,
    interval: float = 15.0,
    stop: StopEvent | None = None,
    backoff: Backoff | None = None,
    max_results: int = MAX_PAGE,
) -> None:
    """Poll recent search for the chat until `stop` is set (or X refuses the token for good).

    Resumes from `ctx.position["newest_id"]` when there is one.
    """
    report = Reporter(ctx, SOURCE)
    query = chat_query(ctx.chat.hashtags)
    caller = RetryingCaller(report, backoff or Backoff(), f"polling {query} every {interval:g} s")
    report("starting", f"searching {query}")
    ended: list[str] = []

    async def poll() -> None:
        since_id = ctx.position.get("newest_id")
        since_id = str(since_id) if since_id else None
        while True:
            start_time = None if since_id else first_start_time(ctx.chat)
            try:
                newest, since_refused = await search_round(
                    ctx,
                    api,
                    caller,
                    query=query,
                    since_id=since_id,
                    start_time=start_time,
                    source=SOURCE,
                    position_key="newest_id",
                    max_results=max_results,
                )
            except XAuthError as exc:
                ended.append(f"X refused the credentials: {exc.message}")
                return
            except XApiError as exc:
                ended.append(f"X rejected the search: {exc.message}")
                return
            since_id = newest_id(None if since_refused else since_id, newest)
            await anyio.sleep(interval)

    await run_source(report, stop, poll, ended)
