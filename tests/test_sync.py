"""Two live servers on one PostgreSQL database and one Redis: what the panel does on one reaches a
browser of the other (manual tags, screen settings, sources' states), and a process that takes
over a chat first takes in the posts it was never told of."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from app.config import Settings
from app.ingest.parse import parse_object
from app.live.lease import LocalLeases, PostgresLeases, lock_key
from app.sources.base import SourceBatch, SourceStatus
from tests.conftest import FIXTURES
from tests.helpers import HubServer, make_cli_runner, recv_json
from tests.test_live import create_chat

QI = FIXTURES / "qi-chat.jsonl"
A3_CATH = "1640781969442299904"  # @CareHomeCath's answer to Q3

pytestmark = pytest.mark.postgres


async def next_matching(ws: Any, test: Any, timeout: float = 15) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            message = await recv_json(ws)
            if message["type"] == "update" and test(message):
                return dict(message)


def test_panel_changes_reach_the_other_process(
    pg_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cli = make_cli_runner(pg_url)
    create_chat(cli, "qi")
    assert cli("import", "qi", str(QI)).exit_code == 0
    token = cli("panel-token", "qi", "--name", "Helen").output.strip().splitlines()[-1]
    auth = {"Authorization": f"Bearer {token}"}
    settings = Settings(database_url=pg_url, redis_url=redis_url)
    with HubServer(settings) as a, HubServer(settings) as b:

        async def scenario() -> None:
            async with websockets.connect(f"ws://127.0.0.1:{b.port}/ws/chats/qi") as ws:
                snapshot = await recv_json(ws)
                q3 = snapshot["figures"]["questions"][2]["answers"]
                q5 = snapshot["figures"]["questions"][4]["answers"]
                async with httpx.AsyncClient(base_url=a.url, headers=auth) as client:
                    # A manual tag on A: B's figures move the answer from Q3 to Q5.
                    reply = await client.put(
                        f"/api/chats/qi/posts/{A3_CATH}/question", json={"question": 5}
                    )
                    assert reply.status_code == 200, reply.text
                    update = await next_matching(
                        ws, lambda m: any(r["id"] == A3_CATH for r in m["retagged"])
                    )
                    assert {"id": A3_CATH, "question": 5, "tag_method": "manual"} in update[
                        "retagged"
                    ]
                    # Its replies inherit the manual tag: they move with it.
                    moved = [r for r in update["retagged"] if r["question"] == 5]
                    assert len(moved) == 2  # the answer and @DrNicolaBurgess's reply to it
                    assert update["figures"]["questions"][2]["answers"] == q3 - 2
                    assert update["figures"]["questions"][4]["answers"] == q5 + 2
                    # The screen's settings.
                    reply = await client.put("/api/chats/qi/screen", json={"mode": "approval"})
                    assert reply.status_code == 200, reply.text
                    update = await next_matching(ws, lambda m: "screen" in m)
                    assert update["screen"]["mode"] == "approval"
                # A source's state, reported on A.
                assert a.hub is not None
                runtime = await asyncio.wrap_future(
                    asyncio.run_coroutine_threadsafe(a.hub.runtime("qi"), a.loop)  # type: ignore[arg-type]
                )
                a.loop.call_soon_threadsafe(  # type: ignore[union-attr]
                    runtime.report, SourceStatus("x-search", "failing", "X answered 503")
                )
                update = await next_matching(ws, lambda m: "x-search" in m["sources"])
                assert update["sources"]["x-search"]["state"] == "failing"
                assert update["sources"]["x-search"]["detail"] == "X answered 503"

        asyncio.run(scenario())

        async def snapshot(port: int) -> dict[str, Any]:
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws/chats/qi") as ws:
                return dict(await recv_json(ws))

        # A new page gets the same chat from either process.
        from_a, from_b = asyncio.run(snapshot(a.port)), asyncio.run(snapshot(b.port))
        for key in ("figures", "figures_all", "screen", "sources", "current_question"):
            assert from_a[key] == from_b[key], key


def test_a_new_collector_takes_in_what_it_was_not_told(
    pg_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The collector died after storing a batch and before announcing it: the posts are in the
    database but not in the other process's live state, until it takes the chat over."""
    monkeypatch.chdir(tmp_path)
    cli = make_cli_runner(pg_url)
    create_chat(cli, "qi")
    settings = Settings(database_url=pg_url, redis_url=redis_url)
    with HubServer(settings) as b:
        assert b.hub is not None
        runtime = b.call(b.hub.runtime("qi"))
        before = b.call(_figures(runtime))
        assert before["original_tweets"] == 0
        # Stored behind the process's back (as by a collector that died before announcing).
        assert cli("import", "qi", str(QI)).exit_code == 0
        assert b.call(_figures(runtime))["original_tweets"] == 0
        assert b.call(runtime.catch_up()) == 343
        after = b.call(_figures(runtime))
        stats = json.loads(cli("stats", "qi", "--json").output)
        for key in ("participants", "original_tweets", "retweets", "replies", "unanswered"):
            assert after[key] == stats[key], key
        assert [q["answers"] for q in after["questions"]] == [
            q["answers"] for q in stats["questions"]
        ]
        assert b.call(runtime.catch_up()) == 0  # nothing twice


def test_the_other_process_reports_when_a_post_entered_the_collector(
    pg_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An update's posts carry received_at, when the post entered the server: a page of the
    # process that did not collect it shows the collector's time, not when it heard of it.
    monkeypatch.chdir(tmp_path)
    create_chat(make_cli_runner(pg_url), "qi")
    settings = Settings(database_url=pg_url, redis_url=redis_url)
    page = {
        "data": [
            {"id": "9001", "text": "A1: late but here", "author_id": "77",
             "created_at": "2023-03-28T18:10:00.000Z"}
        ],
        "includes": {"users": [{"id": "77", "username": "latecomer", "name": "Late"}]},
    }  # fmt: skip
    with HubServer(settings) as a, HubServer(settings) as b:
        assert a.hub is not None and a.loop is not None
        collector = a.call(a.hub.runtime("qi"))

        async def posts_of(ws: Any) -> list[dict[str, Any]]:
            update = await next_matching(ws, lambda m: bool(m["posts"]))
            return list(update["posts"])

        async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], float]:
            async with (
                websockets.connect(f"ws://127.0.0.1:{a.port}/ws/chats/qi") as on_a,
                websockets.connect(f"ws://127.0.0.1:{b.port}/ws/chats/qi") as on_b,
            ):
                await recv_json(on_a), await recv_json(on_b)  # the snapshots
                began = time.time()
                batch = SourceBatch(source="x-search", parsed=parse_object(page))
                await asyncio.wrap_future(
                    asyncio.run_coroutine_threadsafe(collector.emit(batch), a.loop)  # type: ignore[arg-type]
                )
                return await posts_of(on_a), await posts_of(on_b), began

        seen_a, seen_b, began = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert [p["id"] for p in seen_a] == [p["id"] for p in seen_b] == ["9001"]
    assert began <= seen_a[0]["received_at"] == seen_b[0]["received_at"] < began + 5


async def _figures(runtime: Any) -> dict[str, Any]:
    return dict(runtime.figures.figures("chat"))


def test_one_lease_per_chat(pg_url: str) -> None:
    async def scenario() -> None:
        first, second = PostgresLeases(pg_url), PostgresLeases(pg_url)
        try:
            assert await first.acquire("qi")
            assert await first.acquire("qi")  # held already
            assert not await second.acquire("qi")
            assert await second.acquire("other")  # one lease per chat
            assert await first.alive()
            await first.close()  # as when the process dies: its connection goes
            # The server lets go of the lock when its backend for that connection has ended,
            # a moment after the client closed it; the hub retries every second.
            deadline = asyncio.get_running_loop().time() + 5
            while not await second.acquire("qi"):
                assert asyncio.get_running_loop().time() < deadline, "the lease was not freed"
                await asyncio.sleep(0.05)
            assert second.held() == {"qi", "other"}
        finally:
            await first.close()
            await second.close()

    asyncio.run(scenario())
    assert lock_key("qi") != lock_key("qi2")
    local = LocalLeases()
    assert asyncio.run(local.acquire("qi")) and asyncio.run(local.acquire("qi"))
