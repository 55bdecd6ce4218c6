"""Each live source's outages are recorded, so that the report can say where collection had gaps.

The reports go through the real `ChatRuntime.report` (written on the chat's database thread),
and through a live follow of the fake X API answering 503s; on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.chats import get_chat
from app.config import Settings
from app.db.engine import open_database
from app.db.models import Chat, SourceOutage
from app.live.pubsub import Broadcast
from app.live.runtime import ChatRuntime
from app.outages import chat_outages
from app.sources.base import SourceStatus, State
from tests.conftest import FIXTURES
from tests.fakex import FakeX
from tests.helpers import HubServer, make_cli_runner
from tests.test_hub import create
from tests.test_live import create_chat

Report = tuple[str, State, str]


def outages_after(database_url: str, reports: list[Report]) -> list[dict[str, Any]]:
    """The chat's outages after `reports` (source, state, detail) went to its runtime in turn."""
    create_chat(make_cli_runner(database_url), "qi")
    engine, sessions = open_database(database_url)
    try:

        async def scenario() -> None:
            runtime = ChatRuntime(slug="qi", sessions=sessions, broadcast=Broadcast())
            await runtime.start()
            try:
                for source, state, detail in reports:
                    runtime.report(SourceStatus(source, state, detail))
                    await runtime.run_db(lambda: None)  # written: the next one is later
                    await asyncio.sleep(0.01)
            finally:
                await runtime.stop()

        asyncio.run(scenario())
        with sessions() as session:
            return chat_outages(session, get_chat(session, "qi"))
    finally:
        engine.dispose()


def test_failing_then_running_is_one_closed_outage(database_url: str) -> None:
    outages = outages_after(
        database_url,
        [
            ("x-search", "starting", "searching #LeadingQI OR #QIHour"),
            ("x-search", "running", "searching"),
            ("x-search", "failing", "HTTP 503; retrying in 1 s"),
            ("x-search", "running", "searching"),
            ("x-search", "running", "searching"),
        ],
    )
    assert len(outages) == 1
    outage = outages[0]
    assert outage["source"] == "x-search"
    assert outage["state"] == "failing"
    assert outage["detail"] == "HTTP 503; retrying in 1 s"
    started, ended = outage["started_at"], outage["ended_at"]
    assert isinstance(started, datetime) and started.tzinfo is not None
    assert isinstance(ended, datetime) and ended > started
    assert outage["seconds"] == (ended - started).total_seconds() > 0


def test_waiting_then_failing_is_one_outage_with_its_first_state(database_url: str) -> None:
    outages = outages_after(
        database_url,
        [
            ("x-stream", "running", "streaming"),
            ("x-stream", "waiting", "rate limit; resets 19:15"),
            ("x-stream", "failing", "HTTP 503; reconnecting in 5 s"),
            ("x-stream", "waiting", "rate limit; resets 19:20"),
            ("x-stream", "running", "connected"),
            # A second outage, ended by the source stopping.
            ("x-stream", "failing", "X closed the stream; reconnecting now"),
            ("x-stream", "stopped", "stopped on request"),
        ],
    )
    assert [(o["source"], o["state"], o["detail"]) for o in outages] == [
        ("x-stream", "waiting", "rate limit; resets 19:15"),
        ("x-stream", "failing", "X closed the stream; reconnecting now"),
    ]
    assert all(o["ended_at"] is not None and o["seconds"] > 0 for o in outages)
    assert outages[0]["ended_at"] <= outages[1]["started_at"]  # oldest first


def test_sources_that_collect_no_posts_record_no_outage(database_url: str) -> None:
    outages = outages_after(
        database_url,
        [
            ("x-trends", "failing", "HTTP 403"),
            ("x-lookup", "waiting", "rate limit"),
            ("x-lookup", "running", "refreshed 10 posts"),
        ],
    )
    assert outages == []


def test_an_outage_lasts_until_the_source_runs_again(database_url: str) -> None:
    """Still open while it lasts (a restart's `starting` does not end it)."""
    outages = outages_after(
        database_url,
        [
            ("replay", "failing", "could not read the archive"),
            ("replay", "starting", "replaying"),
            ("x-search", "failing", "HTTP 500"),
        ],
    )
    assert [(o["source"], o["ended_at"], o["seconds"]) for o in outages] == [
        ("replay", None, None),
        ("x-search", None, None),
    ]


def test_outages_go_with_their_chat(database_url: str) -> None:
    outages_after(database_url, [("x-search", "failing", "HTTP 503")])
    engine, sessions = open_database(database_url)
    try:
        with sessions.begin() as session:
            session.delete(session.scalars(select(Chat)).one())
        with sessions() as session:
            assert session.scalars(select(SourceOutage)).all() == []
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def fake() -> Any:
    with FakeX(posts=FIXTURES / "qi-chat.jsonl", keepalive_interval=0.2) as server:
        yield server


def test_a_live_search_answered_503_records_the_outage_until_it_runs(
    database_url: str, fake: FakeX, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    fake.reset(FIXTURES / "qi-chat.jsonl", keepalive_interval=0.2)
    fake.trends_status = 403  # the trends failing too: no outage, no post lost
    fake.publish(20)
    create(database_url, "live", datetime.now(UTC) - timedelta(minutes=20))
    fake.fail_next("search", 503, times=2)
    settings = Settings(
        database_url=database_url,
        x_api_url=fake.url,
        x_bearer_token=fake.token,
        search_interval=0.2,
        refresh_interval=0.5,
        x_backoff_scale=0.02,
    )
    with HubServer(settings) as server:

        async def follow() -> list[dict[str, Any]]:
            assert server.hub is not None
            await server.hub.follow("live")
            runtime = await server.hub.runtime("live")

            def read() -> list[dict[str, Any]]:
                with runtime.sessions() as session:
                    return chat_outages(session, get_chat(session, "live"))

            for _ in range(500):
                outages = await runtime.run_db(read)
                if outages and outages[0]["ended_at"] is not None:
                    break
                await asyncio.sleep(0.02)
            server.hub.unfollow("live")
            return outages

        outages = server.call(follow())
    assert 503 in [r.status for r in fake.requests("search")]
    assert len(outages) == 1  # both 503s: one outage
    (outage,) = outages
    assert (outage["source"], outage["state"]) == ("x-search", "failing")
    assert "503" in outage["detail"]
    assert outage["ended_at"] is not None and outage["seconds"] > 0


def test_mastodon_and_bluesky_outages_are_recorded_apart(database_url: str) -> None:
    outages = outages_after(
        database_url,
        [
            ("mastodon", "running", "following #LeadingQI on mastodon.social"),
            ("bluesky", "running", "polling #LeadingQI every 15 s"),
            ("mastodon", "waiting", "mastodon.social: rate limited; waiting until 18:20"),
            ("bluesky", "failing", "Bluesky answered 502; retrying in 2 s"),
            ("bluesky", "running", "polling #LeadingQI every 15 s"),
        ],
    )
    by_source = {outage["source"]: outage for outage in outages}
    assert set(by_source) == {"mastodon", "bluesky"}
    assert by_source["mastodon"]["ended_at"] is None  # still waiting
    assert by_source["bluesky"]["state"] == "failing" and by_source["bluesky"]["ended_at"]
