"""Which chats `tweetchat serve` follows, and what the panel sees when a source cannot run."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from tests.fakex import FakeX
from tests.helpers import HubServer, make_cli_runner

NOW = datetime.now(UTC).replace(microsecond=0)


def create(database_url: str, slug: str, start: datetime, source: str = "x-search") -> None:
    cli = make_cli_runner(database_url)
    result = cli(
        "chat", "create", slug, "--title", slug, "--hashtags", "#LeadingQI", "--host", "h",
        "--source", source, "--start", start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "--end", (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def test_open_chats_are_those_around_their_window(sqlite_url: str) -> None:
    create(sqlite_url, "soon", NOW + timedelta(minutes=10))  # starts in 10 min: followed
    create(sqlite_url, "later", NOW + timedelta(minutes=30))  # in 30 min: not yet
    create(sqlite_url, "now", NOW - timedelta(minutes=20))
    create(sqlite_url, "ended", NOW - timedelta(minutes=90))  # ended 30 min ago: still followed
    create(sqlite_url, "old", NOW - timedelta(hours=3))  # ended 2 h ago: no longer
    create(sqlite_url, "archive", NOW - timedelta(minutes=20), source="none")  # imports only
    with HubServer(Settings(database_url=sqlite_url)) as server:
        assert server.hub is not None
        assert sorted(server.hub.open_chats(NOW)) == ["ended", "now", "soon"]


def source_state(server: HubServer, slug: str) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        assert server.hub is not None
        await server.hub.follow(slug)
        runtime = await server.hub.runtime(slug)
        for _ in range(200):
            state = runtime.snapshot()["sources"].get("x-search", {})
            if state.get("state") == "stopped":
                return state
            await asyncio.sleep(0.02)
        return runtime.snapshot()["sources"]

    return server.call(read())


def test_without_a_token_the_source_says_so(sqlite_url: str) -> None:
    create(sqlite_url, "now", NOW - timedelta(minutes=20))
    with HubServer(Settings(database_url=sqlite_url)) as server:
        state = source_state(server, "now")
    assert state["state"] == "stopped"
    assert "TWEETCHAT_X_BEARER_TOKEN" in state["detail"]


def test_a_refused_token_stops_the_source_with_the_reason(
    sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    create(sqlite_url, "now", NOW - timedelta(minutes=20))
    with FakeX() as fake:
        settings = Settings(
            database_url=sqlite_url,
            x_api_url=fake.url,
            x_bearer_token="wrong-token",
            x_backoff_scale=0.01,
        )
        with HubServer(settings) as server:
            state = source_state(server, "now")
    assert state["state"] == "stopped"
    assert "401" in state["detail"] or "Unauthorized" in state["detail"]
    assert any("x-search: stopped" in r.getMessage() for r in caplog.records)
