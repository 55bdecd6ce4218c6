"""The real server following a chat from the fake X API, faults included.

The fake serves the hand-made chat with its times shifted to now; the chat's window is shifted
the same way, so every figure must equal those of importing the archive as a file (window "all"
and window "chat" alike), and every WebSocket client must see every post once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from app.config import Settings
from tests.conftest import FIXTURES
from tests.fakex import FakeX
from tests.helpers import CliRunnerFn, HubServer, make_cli_runner, recv_json
from tests.test_live import PANEL

QI = FIXTURES / "qi-chat.jsonl"
START = datetime(2023, 3, 28, 18, 0, tzinfo=UTC)
END = datetime(2023, 3, 28, 19, 0, tzinfo=UTC)
QUERY = "#LeadingQI OR #QIHour"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeX]:
    with FakeX(posts=QI, keepalive_interval=0.2) as server:
        yield server


def create(cli: CliRunnerFn, slug: str, start: datetime, end: datetime, source: str) -> None:
    result = cli(
        "chat", "create", slug, "--title", "QI", "--hashtags", "#LeadingQI,#QIHour",
        "--host", "WarwickBSchool", "--panel", PANEL, "--source", source,
        "--start", start.strftime("%Y-%m-%dT%H:%M:%SZ"), "--end", end.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def chat_posts(fake: FakeX) -> set[str]:
    """The archive's posts that carry the chat's hashtags: what a live source can collect."""
    return {post_id for post_id in fake.posts if fake.matches(post_id, QUERY)}


def imported_figures(tmp_path: Path, keep: set[str]) -> dict[str, dict[str, Any]]:
    """The figures of importing the archive's pages holding only the posts in `keep`."""
    pages = [json.loads(line) for line in QI.read_text().splitlines()]
    for page in pages:
        page["data"] = [tweet for tweet in page["data"] if tweet["id"] in keep]
    path = tmp_path / "same-posts.jsonl"
    path.write_text("".join(json.dumps(page) + "\n" for page in pages))
    cli = make_cli_runner(f"sqlite:///{tmp_path / 'imported.db'}")
    create(cli, "qi", START, END, "none")
    assert cli("import", "qi", str(path)).exit_code == 0
    return {
        window: json.loads(cli("stats", "qi", "--window", window, "--json").output)
        for window in ("chat", "all")
    }


def comparable(figures: dict[str, Any]) -> dict[str, Any]:
    """Figures without what the shift of times changes: post times and the trends reading."""
    text = json.dumps({k: v for k, v in figures.items() if k not in ("trending", "chat")})
    return json.loads(text, object_hook=lambda o: {k: v for k, v in o.items() if k != "created_at"})


async def follow_all(
    url: str, total: int, timeout: float = 90, expected: set[str] | None = None
) -> list[str]:
    seen: list[str] = []
    try:
        async with asyncio.timeout(timeout), websockets.connect(url, max_size=2**24) as ws:
            message = await recv_json(ws)
            seen.extend(p["id"] for p in message["latest"])
            while len(set(seen)) < total:
                message = await recv_json(ws)
                seen.extend(p["id"] for p in message["posts"])
    except TimeoutError:
        raise AssertionError(
            f"saw {len(set(seen))} of {total} posts; missing {sorted((expected or set()) - set(seen))}"
        ) from None
    return seen


def run_chat(
    database_url: str,
    fake: FakeX,
    source: str,
    faults: Any,
    tmp_path: Path,
    storage_process: bool = False,
) -> tuple[list[list[str]], dict[str, Any], dict[str, Any]]:
    cli = make_cli_runner(database_url)
    create(cli, "live", fake.at(START), fake.at(END), source)
    settings = Settings(
        database_url=database_url,
        x_api_url=fake.url,
        x_bearer_token=fake.token,
        search_interval=0.2,
        refresh_interval=0.5,
        x_stream_keepalive_timeout=1.0,
        x_backoff_scale=0.02,
        storage_process=storage_process,
    )
    expected = chat_posts(fake)
    total = len(expected)
    order = fake.chronological()
    with HubServer(settings) as server:
        ws_url = server.url.replace("http://", "ws://") + "/ws/chats/live"

        async def scenario() -> list[list[str]]:
            readers = [
                asyncio.create_task(follow_all(ws_url, total, 60, expected)) for _ in range(2)
            ]
            await asyncio.sleep(0.3)
            assert server.hub is not None and server.loop is not None
            await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(server.hub.follow("live"), server.loop)
            )
            # Publish the chat in slices, as it happens, with the faults in between.
            for index, start in enumerate(range(0, total, 40)):
                faults(fake, index)
                fake.publish_ids(order[start : start + 40])
                await asyncio.sleep(0.15)
            return list(await asyncio.gather(*readers))

        seen = asyncio.run(scenario())
        with httpx.Client(base_url=server.url) as http:
            chat = http.get("/api/chats/live/stats?window=chat").json()
            everything = http.get("/api/chats/live/stats?window=all").json()
            sources = server.call(_sources(server))
    return seen, {"chat": chat, "all": everything}, sources


async def _sources(server: HubServer) -> dict[str, Any]:
    assert server.hub is not None
    runtime = await server.hub.runtime("live")
    await runtime.published()
    return runtime.snapshot()


def check(seen: list[list[str]], live: dict[str, Any], fake: FakeX, tmp_path: Path) -> None:
    keep = chat_posts(fake)
    assert 300 < len(keep) < len(fake.posts)  # one archived retweet lacks the chat's hashtags
    for ids in seen:
        assert len(ids) == len(set(ids)) and set(ids) == keep  # every post once, on every client
    expected = imported_figures(tmp_path, keep)
    for window in ("chat", "all"):
        got, want = comparable(live[window]), comparable(expected[window])
        for key in want:
            assert got[key] == want[key], (window, key)


# With a storage process, the search source's pages go to it as bytes (app/live/storage.py).
@pytest.mark.parametrize("storage_process", [False, True], ids=["one-process", "storage-process"])
def test_search_with_rate_limits_and_server_errors(
    database_url: str,
    fake: FakeX,
    tmp_path: Path,
    storage_process: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="app.live.storage")
    # Search that returns retweets (as before May 2026), so the figures can match the archive.
    fake.reset(QI, keepalive_interval=0.2, search_excludes_retweets=False)

    def faults(fake: FakeX, index: int) -> None:
        if index == 1:
            fake.fail_next("search", 429, reset_in=1)
        elif index == 3:
            fake.fail_next("search", 503, times=2)
        elif index == 5:
            fake.search_duplicate_across_pages = True

    seen, live, snapshot = run_chat(
        database_url, fake, "x-search", faults, tmp_path, storage_process
    )
    check(seen, live, fake, tmp_path)
    assert ("live: storage process" in caplog.text) == storage_process
    statuses = [r.status for r in fake.requests("search")]
    assert 429 in statuses and 503 in statuses
    # Every collected post was read (and counted in the spend) at least once.
    assert snapshot["spend"]["posts_read"] >= len(chat_posts(fake))
    assert snapshot["sources"]["x-search"]["state"] in ("running", "waiting")


# With a storage process, each stream message goes to it as bytes (a TV event's source).
@pytest.mark.parametrize("storage_process", [False, True], ids=["one-process", "storage-process"])
def test_stream_with_drops_silence_duplicates_and_disorder(
    database_url: str, fake: FakeX, tmp_path: Path, storage_process: bool
) -> None:
    fake.reset(QI, keepalive_interval=0.2, search_excludes_retweets=False)
    fake.stream_duplicates = True
    # Each connection takes the next script: dropped after 30 messages, then silent (not even a
    # keep-alive) after 25, then broken off mid-stream after 20, then a good one.
    fake.stream_drop_after(30)
    fake.stream_go_silent(after=25)
    fake.stream_drop_after(20, abort=True)

    def faults(fake: FakeX, index: int) -> None:
        if index == 4:
            fake.stream_out_of_order = True
        if index == 6:
            fake.fail_next("stream", 503)

    seen, live, snapshot = run_chat(
        database_url, fake, "x-stream", faults, tmp_path, storage_process
    )
    check(seen, live, fake, tmp_path)
    assert fake.stream_connections >= 3  # it reconnected after the drop and the silence
    assert snapshot["sources"]["x-stream"]["state"] in ("running", "waiting", "failing")


def test_trends_and_metrics_refresh(database_url: str, fake: FakeX, tmp_path: Path) -> None:
    fake.reset(
        QI,
        keepalive_interval=0.2,
        search_excludes_retweets=False,
        trends=[("#Other", 10), ("#QIHour", 5), ("#LeadingQI", None)],
    )
    _seen, live, _snapshot = run_chat(database_url, fake, "x-search", lambda f, i: None, tmp_path)
    assert live["chat"]["trending"] == [
        {"hashtag": "#LeadingQI", "rank": 3, "location": "United Kingdom"},
        {"hashtag": "#QIHour", "rank": 2, "location": "United Kingdom"},
    ]
    assert fake.requests("lookup")  # the top posts' metrics were refreshed
