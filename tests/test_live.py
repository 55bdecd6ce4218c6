"""The live pipeline end to end: a replayed chat on the real server, followed over WebSockets.

Every client must see every collected post exactly once (in its snapshot or in an update), the
figures at the end must equal those of importing the same file, and a client that never reads
must not hold the others back.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from app.config import Settings
from app.ingest.parse import parse_object
from app.live.delta import PageState
from app.sources.base import SourceBatch
from app.sources.replay import load_timeline
from tests.conftest import FIXTURES
from tests.helpers import CliRunnerFn, HubServer, make_cli_runner, recv_json

QI = FIXTURES / "qi-chat.jsonl"
PANEL = "HelenBevan,DrNicolaBurgess,KPOteam_SASH,jimmy_parvin,Sutcliffe1987"


def create_chat(cli: CliRunnerFn, slug: str) -> None:
    result = cli(
        "chat", "create", slug, "--title", "QI", "--hashtags", "#LeadingQI,#QIHour",
        "--host", "WarwickBSchool", "--panel", PANEL,
        "--start", "2023-03-28T18:00:00Z", "--end", "2023-03-28T19:00:00Z",
    )  # fmt: skip
    assert result.exit_code == 0, result.output


@pytest.fixture
def server(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[HubServer]:
    monkeypatch.chdir(tmp_path)
    create_chat(make_cli_runner(database_url), "qi")
    settings = Settings(database_url=database_url, ws_queue_size=16, ws_send_timeout=2.0)
    with HubServer(settings) as live:
        yield live


async def follow(
    url: str, until_posts: int, timeout: float = 60
) -> tuple[list[str], dict[str, Any]]:
    """Connect, collect post ids from the snapshot and updates until `until_posts` ids were seen
    and the figures count them all; returns (ids in order seen, last message)."""
    seen: list[str] = []
    last: dict[str, Any] = {}
    async with asyncio.timeout(timeout), websockets.connect(url, max_size=2**24) as ws:
        snapshot = await recv_json(ws)
        assert snapshot["type"] == "snapshot"
        seen.extend(p["id"] for p in snapshot["latest"])
        last = snapshot
        while True:
            figures = last["figures_all"]
            if (
                len(set(seen)) >= until_posts
                and figures["original_tweets"] + figures["retweets"] >= until_posts
            ):
                return seen, last
            message = await recv_json(ws)
            assert message["type"] == "update"
            assert message["seq"] > last["seq"]
            seen.extend(p["id"] for p in message["posts"])
            last = message


def test_replay_reaches_every_client_once_with_the_import_figures(
    server: HubServer, database_url: str, tmp_path: Path
) -> None:
    timeline = load_timeline(QI)
    total = len(timeline.posts)
    assert total == 343
    ws_url = server.url.replace("http://", "ws://") + "/ws/chats/qi"

    async def scenario() -> list[tuple[list[str], dict[str, Any]]]:
        # A client that connects and never reads: it must not slow the others down.
        stalled = await websockets.connect(ws_url, max_queue=1, max_size=2**24)
        readers = [asyncio.create_task(follow(ws_url, total)) for _ in range(3)]
        await asyncio.sleep(0.3)  # the readers have their snapshots before the first post
        assert server.hub is not None
        await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(
                server.hub.start_replay("qi", timeline, speed=1e6, max_gap=0.002),
                server.loop,  # type: ignore[arg-type]
            )
        )
        results = await asyncio.gather(*readers)
        await stalled.close()
        return results

    results = asyncio.run(scenario())
    for seen, _last in results:
        assert len(seen) == len(set(seen)) == total  # every post, once
        assert set(seen) == {p.id for p in timeline.posts}
    # The live figures equal the database's figures, which equal an import of the same file.
    last = results[0][1]
    with httpx.Client(base_url=server.url) as http:
        stats_chat = http.get("/api/chats/qi/stats?window=chat").json()
        stats_all = http.get("/api/chats/qi/stats?window=all").json()
    assert last["figures"] == stats_chat
    assert last["figures_all"] == stats_all
    cli = make_cli_runner(f"sqlite:///{tmp_path / 'imported.db'}")
    create_chat(cli, "qi")
    assert cli("import", "qi", str(QI)).exit_code == 0
    imported = json.loads(cli("stats", "qi", "--window", "all", "--json").output)
    assert stats_all == imported
    assert last["current_question"]["number"] == 6
    assert last["sources"]["replay"]["state"] in ("running", "stopped")


def test_unknown_chat_is_refused_with_policy_close(server: HubServer) -> None:
    async def scenario() -> int | None:
        async with websockets.connect(
            server.url.replace("http://", "ws://") + "/ws/chats/nope"
        ) as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            return ws.close_code

    assert asyncio.run(scenario()) == 1008


def test_bad_payload_closes_with_1003_and_ping_is_answered(server: HubServer) -> None:
    async def scenario() -> tuple[dict[str, Any], int | None]:
        async with websockets.connect(
            server.url.replace("http://", "ws://") + "/ws/chats/qi"
        ) as ws:
            await recv_json(ws)
            await ws.send(json.dumps({"type": "ping"}))
            pong = await recv_json(ws)
            await ws.send("not json")
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await ws.recv()
            return pong, ws.close_code

    pong, code = asyncio.run(scenario())
    assert pong == {"type": "pong"}
    assert code == 1003


def test_replay_resumes_without_doubling(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stop the server in the middle of a replay, start it again: every post once."""
    monkeypatch.chdir(tmp_path)
    cli = make_cli_runner(database_url)
    create_chat(cli, "qi")
    timeline = load_timeline(QI)
    settings = Settings(database_url=database_url)
    with HubServer(settings) as first:
        assert first.hub is not None
        first.call(first.hub.start_replay("qi", timeline, speed=1e6, max_gap=0.002))

        async def wait_some() -> None:
            assert first.hub is not None
            runtime = await first.hub.runtime("qi")
            while len(runtime.collected) < 100:
                await asyncio.sleep(0.005)

        first.call(wait_some())
    with HubServer(settings) as second:
        assert second.hub is not None
        task = second.call(second.hub.start_replay("qi", timeline, speed=1e6, max_gap=0.002))

        async def finish() -> int:
            assert second.hub is not None
            await task
            runtime = await second.hub.runtime("qi")
            await runtime.drained()
            return len(runtime.collected)

        collected_live = second.call(finish())
    stats = json.loads(cli("stats", "qi", "--window", "all", "--json").output)
    assert (collected_live, stats["original_tweets"] + stats["retweets"]) == (343, 343)
    stats = json.loads(cli("stats", "qi", "--window", "all", "--json").output)
    assert stats["original_tweets"] + stats["retweets"] == 343


def test_live_metrics_keep_the_largest_copy_seen(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A post first met as context with more retweets than its later collected copy: the live
    figures must rank it as the database does (largest copy)."""
    from app.ingest.parse import parse_object
    from app.sources.base import SourceBatch

    monkeypatch.chdir(tmp_path)
    create_chat(make_cli_runner(sqlite_url), "qi")
    users = [
        {"id": "1", "username": "amy", "name": "Amy"},
        {"id": "2", "username": "bo", "name": "Bo"},
    ]
    original: dict[str, Any] = {
        "id": "1640777000000000001", "author_id": "1", "created_at": "2023-03-28T18:10:00.000Z",
        "text": "A2: leaders go first #LeadingQI",
        "public_metrics": {"retweet_count": 250, "reply_count": 0, "like_count": 9, "quote_count": 0},
    }  # fmt: skip
    quote = {
        "id": "1640777000000000002", "author_id": "2", "created_at": "2023-03-28T18:11:00.000Z",
        "text": "So true #LeadingQI", "referenced_tweets": [{"type": "quoted", "id": original["id"]}],
    }  # fmt: skip
    older_copy = {
        **original,
        "public_metrics": {**original["public_metrics"], "retweet_count": 240},
    }
    first = parse_object({"data": [quote], "includes": {"users": users, "tweets": [original]}})
    later = parse_object({"data": [older_copy], "includes": {"users": users}})

    with HubServer(Settings(database_url=sqlite_url)) as server:
        assert server.hub is not None
        hub = server.hub

        async def feed() -> dict[str, Any]:
            runtime = await hub.runtime("qi")
            await runtime.emit(SourceBatch("replay", first))
            await runtime.drained()  # two separate writes, as two responses minutes apart
            await runtime.emit(SourceBatch("replay", later))
            await runtime.published()
            return runtime.snapshot()

        snapshot = server.call(feed())
        with httpx.Client(base_url=server.url) as http:
            stored = http.get("/api/chats/qi/stats?window=all").json()
    top = {t["id"]: t["retweets"] for t in snapshot["figures_all"]["top_tweets"]}
    assert top[original["id"]] == 250
    assert snapshot["figures_all"] == stored


def test_an_update_after_one_answer_is_a_small_patch_to_the_same_figures(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cli = make_cli_runner(sqlite_url)
    create_chat(cli, "qi")
    assert cli("import", "qi", str(QI)).exit_code == 0
    answer = parse_object(
        {
            "data": [
                {
                    "id": "1640790000000000001",
                    "author_id": "7001",
                    "created_at": "2023-03-28T18:20:00.000Z",
                    "text": "A2 Listening first, then acting #LeadingQI #QIHour",
                    "public_metrics": {
                        "retweet_count": 0,
                        "reply_count": 0,
                        "like_count": 1,
                        "quote_count": 0,
                    },
                }
            ],
            "includes": {"users": [{"id": "7001", "username": "newcomer", "name": "New"}]},
        }
    )
    with HubServer(Settings(database_url=sqlite_url)) as server:
        ws_url = server.url.replace("http://", "ws://") + "/ws/chats/qi"

        async def feed() -> None:
            assert server.hub is not None
            runtime = await server.hub.runtime("qi")
            await runtime.emit(SourceBatch("replay", answer))
            await runtime.published()

        async def scenario() -> tuple[str, str, dict[str, Any]]:
            page = PageState()
            async with websockets.connect(ws_url, max_size=2**24) as ws:
                snapshot = await ws.recv()
                page.take(json.loads(snapshot))
                await asyncio.wrap_future(
                    asyncio.run_coroutine_threadsafe(feed(), server.loop)  # type: ignore[arg-type]
                )
                update = await ws.recv()
                return str(snapshot), str(update), page.take(json.loads(update))

        snapshot, update, seen = asyncio.run(scenario())
        with httpx.Client(base_url=server.url) as http:
            stats_chat = http.get("/api/chats/qi/stats?window=chat").json()
            stats_all = http.get("/api/chats/qi/stats?window=all").json()
    assert [p["id"] for p in seen["posts"]] == ["1640790000000000001"]
    # The page's figures are the API's, though the update carried a fraction of them.
    assert seen["figures"] == stats_chat
    assert seen["figures_all"] == stats_all
    assert (
        stats_chat["questions"][1]["answers"]
        == json.loads(snapshot)["figures"]["questions"][1]["answers"] + 1
    )
    assert len(update) * 8 < len(snapshot), (len(update), len(snapshot))
