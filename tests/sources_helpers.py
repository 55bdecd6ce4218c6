"""Helpers shared by the tests of the live sources (X, Mastodon, Bluesky) against their fakes.

Each source runs as a task with a `WatchedContext`, a `RecordingContext` that also wakes the test
when a batch or a status arrives, so the tests wait for events, not for fixed times; `FAST` scales
the retry delays down.
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
