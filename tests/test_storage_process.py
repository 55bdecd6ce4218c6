"""TWEETCHAT_STORAGE_PROCESS: a chat's posts stored by a process of their own (app/live/storage.py).

With the setting, the live figures, what every client sees and what is stored must be what one
process gives; a storage process that dies mid-chat loses and doubles nothing; a batch it cannot
store is left out (as in one process) while the batches sent after it are stored.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.chats import get_chat
from app.config import Settings
from app.db.models import ChatPost, SourceState
from app.ingest.parse import PostRecord
from app.live.pubsub import Broadcast
from app.live.runtime import ChatRuntime
from app.live.storage import FAILED, OK, SKIPPED, Job, StorageGone, StorageProcess, encode
from app.sources.base import SourceBatch
from app.sources.replay import Timeline, load_timeline
from app.stats import chat_stats
from tests.helpers import HubServer, make_cli_runner
from tests.test_live import QI, create_chat, follow

TOTAL = 343  # posts in the QI fixture


def groups(timeline: Timeline, size: int) -> list[list[PostRecord]]:
    posts = timeline.posts
    return [posts[i : i + size] for i in range(0, len(posts), size)]


def batch(timeline: Timeline, group: list[PostRecord], **kwargs: Any) -> SourceBatch:
    position = kwargs.pop("position", {"replayed_id": group[-1].id})
    return SourceBatch("replay", timeline.batch_for(group), position=position, requests=0, **kwargs)


class Recording(Broadcast):
    """The pages' channel: keeps the ids of the posts each update carries."""

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[str] = []

    def publish(self, channel: str, message: dict[str, Any]) -> None:
        self.posts.extend(post["id"] for post in message.get("posts", ()))
        super().publish(channel, message)


def stored_ids(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        return list(session.scalars(select(ChatPost.post_id)))


def assert_figures_are_the_stored_ones(runtime: ChatRuntime) -> None:
    figures = runtime.figures
    assert figures is not None
    with runtime.sessions() as session:
        stored = chat_stats(session, get_chat(session, "qi"), "all")
    live = figures.figures("all")
    assert {**live, "trending": stored["trending"]} == stored


def run_with_storage(
    sessions: sessionmaker[Session], script: Callable[[ChatRuntime], Awaitable[None]]
) -> tuple[ChatRuntime, Recording]:
    """Run `script` on the QI chat's runtime with a storage process, until every batch it
    emitted is stored, counted and sent to the pages."""
    pages = Recording()

    async def scenario() -> ChatRuntime:
        runtime = ChatRuntime(slug="qi", sessions=sessions, broadcast=pages, storage_process=True)
        await runtime.start()
        try:
            await script(runtime)
            await asyncio.wait_for(runtime.published(), 120)
            return runtime
        finally:
            await runtime.stop()

    return asyncio.run(scenario()), pages


def assert_stored_counted_and_shown_once(
    runtime: ChatRuntime, pages: Recording, expected: set[str]
) -> None:
    """Each expected post stored once, in the live figures as app.stats counts them, and sent to
    the pages once."""
    ids = stored_ids(runtime.sessions)
    assert len(ids) == len(set(ids)) and set(ids) == expected
    assert runtime.collected == expected
    assert_figures_are_the_stored_ones(runtime)
    assert sorted(pages.posts) == sorted(ids)


def test_a_replay_stored_by_a_storage_process_reaches_every_client_with_the_import_figures(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    create_chat(make_cli_runner(database_url), "qi")
    timeline = load_timeline(QI)
    settings = Settings(database_url=database_url, storage_process=True)
    with HubServer(settings) as server:
        ws_url = server.url.replace("http://", "ws://") + "/ws/chats/qi"

        async def scenario() -> tuple[list[str], dict[str, Any]]:
            reader = asyncio.create_task(follow(ws_url, TOTAL))
            await asyncio.sleep(0.3)
            assert server.hub is not None
            await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(
                    server.hub.start_replay("qi", timeline, speed=1e6, max_gap=0.002),
                    server.loop,  # type: ignore[arg-type]
                )
            )
            return await reader

        seen, last = asyncio.run(scenario())
        with httpx.Client(base_url=server.url) as http:
            stats_all = http.get("/api/chats/qi/stats?window=all").json()
    assert len(seen) == len(set(seen)) == TOTAL
    assert last["figures_all"] == stats_all
    cli = make_cli_runner(f"sqlite:///{tmp_path / 'imported.db'}")
    create_chat(cli, "qi")
    assert cli("import", "qi", str(QI)).exit_code == 0
    assert stats_all == json.loads(cli("stats", "qi", "--window", "all", "--json").output)
    assert last["current_question"]["number"] == 6


def test_a_storage_process_killed_mid_chat_is_replaced_without_losing_or_doubling_a_post(
    qi_sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    timeline = load_timeline(QI)
    parts = groups(timeline, 4)
    pids: list[int | None] = []

    async def script(runtime: ChatRuntime) -> None:
        storage = await runtime.start_storage()
        third = len(parts) // 3
        for group in parts[:third]:
            await runtime.emit(batch(timeline, group))
        while not runtime.collected:  # the first answers are in: the rest are in flight
            await asyncio.sleep(0.001)
        storage.kill()
        for group in parts[third:]:
            await runtime.emit(batch(timeline, group))
        await asyncio.wait_for(runtime.drained(), 120)
        assert runtime._storage is not None
        pids.extend([storage.pid, runtime._storage.pid])

    runtime, pages = run_with_storage(qi_sessions, script)
    assert pids[0] != pids[1]  # another storage process took over
    assert "is gone" in caplog.text
    # Every post stored, counted and shown once, those of a batch stored just before the death
    # included.
    assert_stored_counted_and_shown_once(runtime, pages, {r.id for r in timeline.posts})
    with qi_sessions() as session:
        state = session.get(SourceState, (runtime.chat_id, "replay"))
        assert state is not None
        assert state.position["replayed_id"] == timeline.posts[-1].id


def test_a_batch_stored_whose_answer_died_with_the_storage_process_is_counted_and_shown_once(
    qi_sessions: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The storage process commits a batch and dies before its answer is read: the serving
    process finds the batch stored when it reloads, counts it once and sends its posts to the
    pages once; the batches after it go to the new storage process."""
    timeline = load_timeline(QI)
    answer = StorageProcess.answer
    answered = 0

    async def lost_third(self: StorageProcess) -> tuple[str, Any]:
        nonlocal answered
        status, value = await answer(self)
        answered += 1
        if answered == 3:
            assert status == OK  # stored
            self.kill()
            raise StorageGone("killed by the test, its answer unread")
        return status, value

    monkeypatch.setattr(StorageProcess, "answer", lost_third)

    async def script(runtime: ChatRuntime) -> None:
        await runtime.start_storage()
        for group in groups(timeline, 20):
            await runtime.emit(batch(timeline, group))
            await asyncio.sleep(0.05)

    runtime, pages = run_with_storage(qi_sessions, script)
    assert answered > 3, answered
    assert "killed by the test" in caplog.text
    assert_stored_counted_and_shown_once(runtime, pages, {r.id for r in timeline.posts})


def test_a_batch_the_storage_process_cannot_store_is_left_out_and_the_chat_goes_on(
    qi_sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    timeline = load_timeline(QI)
    parts = groups(timeline, 10)
    before, poison, after = parts[:10], parts[10], parts[11:]

    async def script(runtime: ChatRuntime) -> None:
        for group in before:
            await runtime.emit(batch(timeline, group))
        await asyncio.wait_for(runtime.drained(), 60)
        # A position the database cannot hold (a set is not JSON): the write fails.
        await runtime.emit(batch(timeline, poison, position={"bad": {1, 2}}))
        while not runtime._queue.empty():  # taken alone, not merged with the next ones
            await asyncio.sleep(0.001)
        for group in after:
            await runtime.emit(batch(timeline, group))

    runtime, pages = run_with_storage(qi_sessions, script)
    assert "could not store a batch of 1" in caplog.text
    left_out = {record.id for record in poison}
    assert_stored_counted_and_shown_once(runtime, pages, {r.id for r in timeline.posts} - left_out)


def test_a_batch_that_cannot_be_sent_to_the_storage_process_is_left_out_and_the_chat_goes_on(
    qi_sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    """A batch the serving process fails on (here: it cannot be pickled) is left out as a
    failed write is; the tagger, which took its posts, is read again from the database."""
    timeline = load_timeline(QI)
    parts = groups(timeline, 10)

    async def script(runtime: ChatRuntime) -> None:
        for group in parts[:5]:
            await runtime.emit(batch(timeline, group))
        await asyncio.wait_for(runtime.drained(), 60)
        await runtime.emit(batch(timeline, parts[5], position={"bad": lambda: 0}))
        await asyncio.wait_for(runtime.drained(), 60)
        for group in parts[6:]:
            await runtime.emit(batch(timeline, group))

    runtime, pages = run_with_storage(qi_sessions, script)
    assert "could not tag or send a batch" in caplog.text
    left_out = {record.id for record in parts[5]}
    assert_stored_counted_and_shown_once(runtime, pages, {r.id for r in timeline.posts} - left_out)


def test_after_a_failed_job_the_storage_process_skips_its_generation_and_stores_the_next(
    qi_sessions: sessionmaker[Session], database_url: str
) -> None:
    """The protocol itself: jobs tagged after a failed one are skipped until the serving process
    has reloaded and sends the next generation."""
    timeline = load_timeline(QI)
    first, second, third = groups(timeline, 5)[:3]
    with qi_sessions() as session:
        chat_id = get_chat(session, "qi").id

    def job(generation: int, group: list[PostRecord], position: dict[str, Any]) -> Job:
        return Job(
            generation=generation,
            chat_id=chat_id,
            pages=None,
            parsed=timeline.batch_for(group),
            tags={record.id: (None, None) for record in group},
            question_posts=None,
            sources=[("replay", position, 0, 0)],
            copies={},
            retags={},
        )

    async def scenario() -> list[tuple[str, Any]]:
        storage = StorageProcess(database_url, "qi")
        try:
            await storage.ready()
            await storage.send(encode(job(0, first, {"bad": {1}})))
            await storage.send(encode(job(0, second, {"n": 2})))
            await storage.send(encode(job(1, third, {"n": 3})))
            return [await storage.answer() for _ in range(3)]
        finally:
            await asyncio.get_running_loop().run_in_executor(None, storage.close)

    answers = asyncio.run(scenario())
    assert [status for status, _ in answers] == [FAILED, SKIPPED, OK]
    assert "TypeError" in answers[0][1]  # the storage process's traceback, for the log
    stored = answers[2][1]
    assert set(stored.newly) == {record.id for record in third}
    assert set(stored_ids(qi_sessions)) == {record.id for record in third}
    with qi_sessions() as session:
        count = session.scalar(select(func.count()).select_from(SourceState))
        state = session.get(SourceState, (chat_id, "replay"))
    assert count == 1 and state is not None and state.position == {"n": 3}
