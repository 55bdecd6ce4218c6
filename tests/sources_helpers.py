"""Helpers shared by the tests of the live sources (X, Mastodon, Bluesky) against their fakes.

Each source runs as a task with a `WatchedContext`, a `RecordingContext` that also wakes the test
when a batch or a status arrives, so the tests wait for events, not for fixed times; `FAST` scales
the retry delays down. Through the real hub (`tests.helpers.HubServer`), `eventually` waits on the
server's loop for what its runtime shows, and `network_settings` points a server at the fake
Mastodon and Bluesky.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import pytest

from app.config import Settings, host_key
from app.ingest.parse import PostRecord
from app.sources.base import RecordingContext, SourceBatch, SourceStatus
from app.sources.http import Backoff
from tests.fakeserver import RecordedRequest

FAST = Backoff(base=0.05, cap=0.4, reset_margin=0.0)


@dataclass
class WatchedContext(RecordingContext):
    """A RecordingContext the test can wait on: every emit and report wakes `wait_for`."""

    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def emit(self, batch: SourceBatch) -> None:
        await super().emit(batch)
        self.changed.set()

    def report(self, status: SourceStatus) -> None:
        super().report(status)
        self.changed.set()

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until `condition()` holds: checked at every batch and status, and every 50 ms
        for conditions on the fake server's side."""
        with anyio.fail_after(timeout):
            while not condition():
                self.changed.clear()
                with anyio.move_on_after(0.05):
                    await self.changed.wait()

    def collected(self) -> list[str]:
        return [post.id for batch in self.batches for post in batch.parsed.collected]

    def records(self) -> dict[str, PostRecord]:
        return {post.id: post for batch in self.batches for post in batch.parsed.collected}

    def states(self, state: str) -> list[SourceStatus]:
        return [status for status in self.statuses if status.state == state]


@asynccontextmanager
async def running(
    source: Callable[..., Coroutine[Any, Any, None]], *args: Any, **kwargs: Any
) -> AsyncIterator[None]:
    """Run `source(*args, stop=..., **kwargs)` as a task while the block runs; when it ends,
    stop the source and wait for it to return."""
    stop = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(partial(source, *args, stop=stop, **kwargs))
        yield
        stop.set()


async def run_until(
    ctx: WatchedContext,
    source: Callable[..., Coroutine[Any, Any, None]],
    condition: Callable[[], bool],
    *,
    timeout: float = 5.0,
    **kwargs: Any,
) -> None:
    """Run `source(ctx, **kwargs)` until `condition` holds, then stop it and wait for it to
    return."""
    async with running(source, ctx, **kwargs):
        await ctx.wait_for(condition, timeout)
    assert ctx.statuses[-1].state == "stopped"


def assert_backed_off_three_times(
    ctx: WatchedContext, requests: Sequence[RecordedRequest], reason: str
) -> None:
    """The source met three 503s (saying `reason`), retried after FAST's 0.05, 0.1 and 0.2 s
    (`requests`: the failed ones, then the retry that worked), and then ran on."""
    failing = ctx.states("failing")
    assert [s.detail.rsplit("retrying in ", 1)[1] for s in failing] == ["0.05 s", "0.1 s", "0.2 s"]
    assert all("503" in s.detail and reason in s.detail for s in failing)
    times = [r.time for r in requests[:4]]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] >= 0.045 and gaps[1] >= 0.095 and gaps[2] >= 0.195
    assert ctx.statuses[ctx.statuses.index(failing[-1]) + 1].state == "running"


async def eventually(
    condition: Callable[[], bool], what: Callable[[], str], timeout: float = 15.0
) -> None:
    """Wait until `condition()` holds, checking every 20 ms; on timeout fail with `what()`."""
    try:
        with anyio.fail_after(timeout):
            while not condition():
                await anyio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not within {timeout:g} s: {what()}") from None


def network_settings(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    *,
    mastodon: dict[str, str],
    bluesky: tuple[str, str],
    mastodon_tokens: dict[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Settings for a server that follows chats on fake networks, read from the environment as
    in production: `mastodon` maps each server's host to its fake's URL
    (TWEETCHAT_MASTODON_URL_<HOST>), `mastodon_tokens` gives user tokens
    (TWEETCHAT_MASTODON_TOKEN_<HOST>), `bluesky` the fake's public and PDS URLs. No X bearer
    token; the sources poll every 0.2 s and retry quickly."""
    monkeypatch.delenv("TWEETCHAT_X_BEARER_TOKEN", raising=False)
    for host, url in mastodon.items():
        monkeypatch.setenv(f"TWEETCHAT_MASTODON_URL_{host_key(host)}", url)
    for host, token in (mastodon_tokens or {}).items():
        monkeypatch.setenv(f"TWEETCHAT_MASTODON_TOKEN_{host_key(host)}", token)
    monkeypatch.setenv("TWEETCHAT_BLUESKY_URL", bluesky[0])
    monkeypatch.setenv("TWEETCHAT_BLUESKY_PDS_URL", bluesky[1])
    values: dict[str, Any] = {
        "database_url": database_url,
        "search_interval": 0.2,
        "mastodon_keepalive_timeout": 1.0,
        "network_backoff_scale": 0.05,
        **overrides,
    }
    return Settings(**values)
