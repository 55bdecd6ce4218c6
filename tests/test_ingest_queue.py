"""The ingest queue between the sources and the chat's worker (app/live/runtime.py).

The filtered stream emits one post per batch, a search page a hundred: the queue is bounded and
merged by posts, so that a burst from the stream is written in a few large transactions (not one
per post, which halved the ingest rate: docs/benchmarks.md) and a source waits when the queue
holds QUEUE_POSTS posts, whatever their batches.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import ChatPost
from app.live import runtime as runtime_module
from app.live.pubsub import Broadcast
from app.live.runtime import ChatRuntime, WriteResult
from app.sources.base import SourceBatch
from app.sources.replay import load_timeline
from tests.test_live import QI


def test_a_burst_of_one_post_batches_is_written_in_large_transactions(
    qi_sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    timeline = load_timeline(QI)
    posts = timeline.posts  # 343
    monkeypatch.setattr(runtime_module, "MAX_MERGE", 200)

    async def scenario() -> list[int]:
        runtime = ChatRuntime(slug="qi", sessions=qi_sessions, broadcast=Broadcast())
        await runtime.start()
        writes: list[int] = []
        write = runtime._write
        release = threading.Event()

        def counted(batches: list[SourceBatch]) -> WriteResult:
            release.wait(10)  # the first write waits while the rest of the burst queues up
            writes.append(sum(len(b.parsed.collected) for b in batches))
            return write(batches)

        runtime._write = counted  # type: ignore[method-assign]
        try:
            for record in posts:  # as the filtered stream emits them: one post a batch
                await runtime.emit(SourceBatch("x-stream", timeline.batch_for([record])))
            release.set()
            await asyncio.wait_for(runtime.drained(), 60)
        finally:
            await runtime.stop()
        return writes

    writes = asyncio.run(scenario())
    assert sum(writes) == len(posts)
    # Two writes of at most MAX_MERGE posts, where a queue bounded by batches (100, merged 50 at
    # a time) wrote such a burst 50 posts a transaction.
    assert writes == [200, len(posts) - 200]
    with qi_sessions() as session:
        assert len(session.scalars(select(ChatPost.post_id)).all()) == len(posts)


def test_a_source_waits_while_the_queue_holds_queue_posts_posts(
    qi_sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    timeline = load_timeline(QI)
    monkeypatch.setattr(runtime_module, "QUEUE_POSTS", 50)

    async def scenario() -> tuple[int, int]:
        runtime = ChatRuntime(slug="qi", sessions=qi_sessions, broadcast=Broadcast())
        await runtime.start()
        release = threading.Event()
        write = runtime._write

        def held(batches: list[SourceBatch]) -> WriteResult:
            release.wait(10)
            return write(batches)

        runtime._write = held  # type: ignore[method-assign]
        emitted = 0

        async def source() -> None:
            nonlocal emitted
            for start in range(0, 200, 10):  # pages of 10 posts
                group = timeline.posts[start : start + 10]
                await runtime.emit(SourceBatch("x-search", timeline.batch_for(group)))
                emitted += len(group)

        task = asyncio.create_task(source())
        try:
            await asyncio.sleep(0.5)
            # The worker took the first 50 posts (five pages) and holds them; five more pages
            # fill the queue again, and the source waits.
            waiting = emitted
            release.set()
            await asyncio.wait_for(task, 30)
            await asyncio.wait_for(runtime.drained(), 30)
        finally:
            await runtime.stop()
        return waiting, emitted

    waiting, emitted = asyncio.run(scenario())
    assert waiting == 100 and emitted == 200
