"""One chat live in this process: its bounded ingest queue, the worker that stores, tags and
counts each batch, and the coalesced updates it publishes.

Path of a post: source → `emit` (bounded queue; a source waits when it is full) → worker: store
the batch, tag it incrementally and save the sources' positions in one transaction (in a thread,
the database driver is blocking) → after the commit, update the live figures → the flusher
publishes an update at once, or `update_interval` after the previous one when changes come
faster (later when sending one to the pages takes long: `UpdatePace`), each carrying every
post collected since the previous one and a patch of the figures that changed
(`app.live.delta`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, sessionmaker

from app.chats import get_chat
from app.db.lookup import Lookup, keyed
from app.db.models import Account, Chat, ChatPost, Poll, Post, SourceState
from app.db.statistics import Statistics
from app.export import chat_info
from app.ingest.crossposts import CrossPosts, load_copies, save_copies
from app.ingest.parse import Parsed, PostRecord, account_network, post_network, time_order
from app.ingest.store import Metrics, save_tags
from app.ingest.tagger import Tag, Tagger, TagInput
from app.ingest.tagging import load_tagger, retag_chat, tag_inputs
from app.links import status_url_of
from app.live.delta import diff_state
from app.live.figures import LiveFigures, LivePost, PollState
from app.live.pubsub import Broadcast
from app.live.screen import QUEUE_SIZE, WALL_SIZE, ScreenSettings, ScreenState
from app.live.storage import (
    OK,
    SKIPPED,
    Job,
    SourceCounts,
    StorageGone,
    StorageProcess,
    Stored,
    encode,
    source_row,
    store_batch,
)
from app.live.sync import LocalSync, Sync
from app.outages import record_state
from app.panel import screen_settings, set_manual_tag, update_screen
from app.people import refresh_persons
from app.sources.base import ChatTarget, SourceBatch, SourceStatus
from app.stats import Window, chat_trending, iso_time, status_url_column

log = logging.getLogger(__name__)
T = TypeVar("T")

# Posts waiting for ingest before sources have to wait: a search page brings 100 at once, the
# filtered stream one at a time, so the queue is bounded by posts, not batches.
QUEUE_POSTS = 10_000
# Posts written in one transaction when batches queue up (a batch is never split): 50 search
# pages, or 5,000 posts of the stream, where counting batches merged 50 posts at most.
MAX_MERGE = 5_000
UPDATE_INTERVAL = 0.05  # least seconds between two updates (TWEETCHAT_UPDATE_INTERVAL)
IDLE_LOOK = 0.5  # the longest the flusher sleeps without a look (changes wake it at once)
# The least time from an update's start to the next one's, in units of the time it took to send
# it: the fan-out takes at most 2/3 of the event loop, whatever the number of pages.
FANOUT_SHARE_GAP = 1.5


@dataclass
class UpdatePace:
    """When the next update may go out.

    Leading edge: a change after a quiet spell goes out at once; while
    changes keep coming, one update every `interval` carries all of them. Or fewer: the
    broadcast writes an update to every socket that takes it before it returns, which takes
    tens of milliseconds for a thousand pages and hundreds for five thousand; the next update
    waits until the event loop has had half that time again for the rest (storing the posts
    that the next update will carry, the sources, the panel's requests). Without that, five
    thousand pages kept the loop so busy sending that the posts came in late (a replay of 46 s
    took 114 s) and the server used 2.8x the CPU for the same posts.
    """

    interval: float
    last: float = -math.inf  # when the last update began (loop time)
    ready: float = -math.inf  # the earliest the next may begin

    def due(self, now: float) -> bool:
        return now >= self.next_at()

    def next_at(self) -> float:
        """The earliest loop time the next update may begin."""
        return max(self.last + self.interval, self.ready)

    def sent(self, began: float, ended: float) -> None:
        self.last = began
        self.ready = began + FANOUT_SHARE_GAP * (ended - began)


LATEST = 50
# What a page shows of an unanswered post that can change while it waits.
QUEUE_SHOWN = ("claimed_by", "hidden", "pinned", "approved", "on_screen", "held", "question")


@dataclass(slots=True)
class WriteResult:
    new_posts: list[LivePost]
    seen_again: list[tuple[str, Metrics]]
    retagged: dict[str, Tag]
    polls: list[PollState]
    questions: dict[int, str]
    # The posts handed to the tagger (other processes re-read them to keep their tagger in step).
    inputs: list[str] = field(default_factory=list)
    # Posts collected before whose cross-post changed: {id: the post it copies, or None}.
    copies: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Tagged:
    """A batch handed to the tagger, before it is stored."""

    parsed: Parsed
    names: dict[str, tuple[str, str]]  # author id -> (username, name)
    inputs: list[str]  # the posts handed to the tagger
    changed: dict[str, Tag]  # the tags that changed
    asked: bool  # whether the host's question posts changed


@dataclass(frozen=True, slots=True)
class _Flight:
    """Batches sent to the storage process, not yet answered."""

    batches: list[SourceBatch]
    tagged: Tagged


@dataclass(slots=True)
class SourceView:
    state: str = "idle"
    detail: str = ""
    retry_at: str | None = None
    posts_read: int = 0
    requests: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "detail": self.detail,
            "retry_at": self.retry_at,
            "posts_read": self.posts_read,
            "requests": self.requests,
        }


@dataclass
class ChatRuntime:
    """The live state of one chat in this process."""

    slug: str
    sessions: sessionmaker[Session]
    broadcast: Broadcast
    # Other processes serving the same chat (Redis), told of every change once it is stored.
    sync: Sync = field(default_factory=LocalSync)
    price_per_post: float = 0.005
    lookback: timedelta = timedelta(hours=72)
    update_interval: float = UPDATE_INTERVAL
    # Store in a process of its own (TWEETCHAT_STORAGE_PROCESS, app/live/storage.py).
    storage_process: bool = False
    chat_id: int = 0
    target: ChatTarget | None = None
    info: dict[str, Any] = field(default_factory=dict)
    figures: LiveFigures | None = None
    tagger: Tagger | None = None
    crossposts: CrossPosts | None = None
    collected: set[str] = field(default_factory=set)
    poll_posts: set[str] = field(default_factory=set)  # collected non-retweets carrying a poll
    _nameless: set[str] = field(default_factory=set)  # posts the tagger holds without an author
    screen: ScreenState = field(default_factory=ScreenState)
    # Unanswered id → what the pages were last sent of it (claim, marks, on screen, tag).
    _queue_sent: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    sources: dict[str, SourceView] = field(default_factory=dict)
    trending: list[dict[str, Any]] = field(default_factory=list)
    trends_note: str = ""
    seq: int = 0
    _queue: asyncio.Queue[SourceBatch] = field(default_factory=asyncio.Queue)
    _queued_posts: int = 0  # in `_queue`, bounded by QUEUE_POSTS
    _room: asyncio.Event = field(default_factory=asyncio.Event)  # set when the queue shrinks
    _pending_posts: list[dict[str, Any]] = field(default_factory=list)
    # Collected post id → wall-clock time its batch was emitted, until the batch is applied.
    _received_at: dict[str, float] = field(default_factory=dict)
    _pending_tags: dict[str, Tag] = field(default_factory=dict)
    # Posts whose cross-posts' copies changed (their `also`), for the pages that show them.
    _pending_also: set[str] = field(default_factory=set)
    _pending_change: bool = False
    _wake: asyncio.Event = field(default_factory=asyncio.Event)  # set on a change
    # PostgreSQL's planner statistics, kept up as this chat's ingest grows the tables.
    _statistics: Statistics = field(default_factory=Statistics)
    # The figures as of the last update (`seq`): updates carry patches against it, and a
    # snapshot shows it (with the posts of the updates sent so far), so the two always agree.
    _sent_state: dict[str, Any] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _idle: asyncio.Event = field(default_factory=asyncio.Event)
    _inflight: asyncio.Future[WriteResult] | None = None
    _storage: StorageProcess | None = None
    _storage_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Bumped when the storage process failed: it skips the jobs of the generation before.
    _generation: int = 0
    # What batches counted changed of earlier posts, for the storage process's next job.
    _followup_copies: dict[str, str | None] = field(default_factory=dict)
    _followup_retags: dict[str, Tag] = field(default_factory=dict)
    # The authors of batches sent to the storage process (not readable until it answers).
    _flight_names: dict[str, tuple[str, str]] = field(default_factory=dict)
    _status_writes: set[asyncio.Future[None]] = field(default_factory=set)
    _sync_inbox: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    _announcing: set[asyncio.Task[None]] = field(default_factory=set)
    # One thread does all of this chat's database work, in order: a status reported after a
    # batch is written after it, and SQLite never sees two writers from one chat.
    _db: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="tweetchat-db")
    )

    @property
    def channel(self) -> str:
        return f"chat:{self.slug}"

    # -- start and stop ---------------------------------------------------------------------

    async def start(self) -> None:
        # Listen before reading the database: a change announced meanwhile is applied after the
        # load (applying a change twice is harmless), so none falls between the two.
        await self.sync.subscribe(self.slug, self._heard)
        await asyncio.get_running_loop().run_in_executor(self._db, self._load)
        self._sent_state = self._state()
        self._idle.set()
        self._tasks = [
            asyncio.create_task(self._worker(), name=f"ingest:{self.slug}"),
            asyncio.create_task(self._flusher(), name=f"flush:{self.slug}"),
            asyncio.create_task(self._sync_worker(), name=f"sync:{self.slug}"),
        ]

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.sync.unsubscribe(self.slug)
        for task in list(self._announcing):
            with contextlib.suppress(Exception):
                await task
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for pending in [self._inflight, *self._status_writes]:
            if pending is not None:
                with contextlib.suppress(Exception):
                    await pending
        if self._storage is not None:  # it stores the batches it was sent, then ends
            await asyncio.get_running_loop().run_in_executor(None, self._storage.close)
            self._storage = None
        self._db.shutdown(wait=True)

    def _load(self) -> None:
        with self.sessions.begin() as session:
            chat = get_chat(session, self.slug)
            # People and cross-posts as the links and the chat's posts make them (stored right if
            # a link made during a write, an interrupted import or a crash left them behind),
            # kept in step from here on.
            refresh_persons(session, chat.id)
            self.crossposts, wrong = load_copies(session, chat)
            save_copies(session, chat.id, wrong)
            self.chat_id = chat.id
            self.info = chat_info(chat)
            self.target = ChatTarget(
                slug=chat.slug,
                hashtags=tuple(chat.hashtags),
                start=chat.start_at,
                end=chat.end_at,
                lookback=self.lookback,
            )
            self.tagger, stored = load_tagger(session, chat)
            self.collected = set(stored)
            # Tags as the tagger has them (stored right if a storage process stopped before
            # storing the retags a batch made: app/live/storage.py).
            mistagged = {}
            for post_id, (question, method, manual) in stored.items():
                tag = self.tagger.tag(post_id)
                if not manual and (tag.question, tag.method) != (question, method):
                    mistagged[post_id] = tag
            if mistagged:
                log.warning(
                    "%s: %d stored tags differed from the tagger's", self.slug, len(mistagged)
                )
                save_tags(session, chat.id, mistagged)
            figures = LiveFigures(
                slug=chat.slug,
                start=chat.start_at,
                end=chat.end_at,
                hosts=chat.hosts,
                panel=chat.panel,
                questions={q.number: q.text for q in chat.questions},
            )
            for post in _live_posts(session, chat.id):
                figures.add(post)
                if post.poll_id and post.kind != "retweet":
                    self.poll_posts.add(post.id)
            for poll in _polls(session, chat.id):
                figures.set_poll(poll)
            self.figures = figures
            for state in session.scalars(select(SourceState).where(SourceState.chat_id == chat.id)):
                self.sources[state.source] = SourceView(
                    state=state.state,
                    detail=state.detail,
                    posts_read=state.posts_read,
                    requests=state.requests,
                )
            self.trending, self.trends_note = chat_trending(session, chat)
            self._load_screen(session, chat)

    def _load_screen(self, session: Session, chat: Chat) -> None:
        screen = ScreenState()
        screen.configure(ScreenSettings.from_dict(screen_settings(chat)))
        marks = session.execute(
            select(
                ChatPost.post_id,
                ChatPost.hidden,
                ChatPost.approved,
                ChatPost.claimed_by,
                ChatPost.pinned_at,
            ).where(
                ChatPost.chat_id == chat.id,
                or_(
                    ChatPost.hidden.is_(True),
                    ChatPost.approved.is_(True),
                    ChatPost.claimed_by.is_not(None),
                    ChatPost.pinned_at.is_not(None),
                ),
            )
        ).all()
        pins = []
        for post_id, hidden, approved, claimed_by, pinned_at in marks:
            if hidden:
                screen.hidden.add(post_id)
            if approved:
                screen.approved.add(post_id)
            if claimed_by:
                screen.claims[post_id] = claimed_by
            if pinned_at is not None:
                pins.append((pinned_at, post_id))
        screen.pinned = [post_id for _, post_id in sorted(pins, reverse=True)]
        assert self.figures is not None
        # The wall after a restart: the newest posts the screen allows, as they stood.
        recent = [p for p in self.figures.latest(WALL_SIZE * 4) if screen.allows(p)]
        if screen.settings.mode == "approval":
            recent = [p for p in recent if p["id"] in screen.approved]
        for post in reversed(recent[:WALL_SIZE]):
            screen.wall.append(post["id"])
        screen.take_changes()
        self.screen = screen
        self._queue_sent = {p["id"]: self._queue_key(p) for p in self.queue()}

    # -- sources ----------------------------------------------------------------------------

    def position(self, source: str) -> dict[str, Any]:
        with self.sessions() as session:
            state = session.get(SourceState, (self.chat_id, source))
            return dict(state.position) if state else {}

    async def emit(self, batch: SourceBatch) -> None:
        self._idle.clear()
        received = time.time()  # when these posts entered the server: the updates' received_at
        for record in batch.parsed.collected:
            self._received_at.setdefault(record.id, received)
        while self._queued_posts >= QUEUE_POSTS:
            self._room.clear()
            await self._room.wait()
        self._queued_posts += _weight(batch)
        self._queue.put_nowait(batch)

    def report(self, status: SourceStatus) -> None:
        view = self.sources.setdefault(status.source, SourceView())
        view.state = status.state
        view.detail = status.detail
        view.retry_at = iso_time(status.retry_at) if status.retry_at else None
        level = logging.WARNING if status.state in ("failing", "stopped") else logging.INFO
        log.log(level, "%s %s: %s %s", self.slug, status.source, status.state, status.detail)
        self._changed()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._save_status(status)
        else:  # never block the event loop on the database
            self._status_writes.add(loop.run_in_executor(self._db, self._save_status, status))
            self._status_writes = {f for f in self._status_writes if not f.done()}
            self._announce({"kind": "status", "source": status.source, **view.as_dict()})

    def _save_status(self, status: SourceStatus) -> None:
        now = datetime.now(UTC)
        with self.sessions.begin() as session:
            row = source_row(session, self.chat_id, status.source)
            row.state = status.state
            row.detail = status.detail
            row.updated_at = now
            record_state(session, self.chat_id, status.source, status.state, status.detail, now)

    async def drained(self) -> None:
        """Wait until every batch emitted so far is stored and counted."""
        while not (self._queue.empty() and self._idle.is_set()):
            await asyncio.sleep(0.01)

    async def published(self) -> None:
        """Wait until every batch emitted so far is stored, counted and sent to the pages (a
        snapshot shows the figures as of the last update)."""
        await self.drained()
        while self._pending_change or self.screen.wall_add or self.screen.wall_remove:
            await asyncio.sleep(0.01)

    # -- ingest -----------------------------------------------------------------------------

    def _merged_with_queued(self, first: SourceBatch) -> list[SourceBatch]:
        """`first` and the batches queued after it, up to about MAX_MERGE posts."""
        batches = [first]
        posts = _weight(first)
        while posts < MAX_MERGE and not self._queue.empty():
            batch = self._queue.get_nowait()
            batches.append(batch)
            posts += _weight(batch)
        self._queued_posts -= posts
        self._room.set()
        return batches

    async def _worker(self) -> None:
        if self.storage_process:
            await self._split_worker()
            return
        while True:
            batches = self._merged_with_queued(await self._queue.get())
            # The write runs in a thread that cannot be interrupted: keep hold of it so that
            # `stop` waits for it to commit before the engine is closed.
            self._inflight = asyncio.get_running_loop().run_in_executor(
                self._db, self._write, batches
            )
            try:
                result = await asyncio.shield(self._inflight)
            except Exception:
                # The batch stays unstored and its position unsaved: the source re-reads it after
                # a restart. The tagger may have taken posts the database has not: start again
                # from what the database holds, and keep serving the chat.
                log.exception("%s: could not store a batch of %d", self.slug, len(batches))
                await asyncio.get_running_loop().run_in_executor(self._db, self._load)
            else:
                self._apply(result, batches)
                self._announce_ingest(result, batches)
            self._forget(batches)
            if self._queue.empty():
                self._idle.set()

    # With a storage process (TWEETCHAT_STORAGE_PROCESS: app/live/storage.py): this process
    # tags and counts, the other stores, each batch in flight while the one before is counted.

    async def _split_worker(self) -> None:
        sent: deque[_Flight] = deque()
        while True:
            storage = self._storage
            try:
                # Count batch k once batch k+1 is with the storage process (or nothing waits).
                if sent and (self._queue.empty() or len(sent) > 1):
                    assert storage is not None  # it was sent what is in flight
                    status, answer = await storage.answer()
                    flight = sent.popleft()
                    if status == OK:
                        await self._counted(flight, answer)
                    else:
                        # The batch stays unstored, as in one process (`_worker`); the storage
                        # process skips the batches sent after it (they were tagged with it).
                        self._failed(flight.batches, f"the storage process {status}:\n{answer}")
                        await self._recover(storage, sent, await self._settle(storage, sent))
                        storage = self._storage  # another if it died meanwhile
                        assert storage is not None
                    if not sent and self._queue.empty():
                        if self._followup_copies or self._followup_retags:
                            await self._send(storage, sent, [])
                        else:
                            self._flight_names.clear()
                            self._idle.set()
                    continue
                batches = self._merged_with_queued(await self._queue.get())
                try:
                    await self._send(storage or await self.start_storage(), sent, batches)
                except StorageGone:
                    raise
                except Exception:
                    # Tagging or encoding it failed (say, the names could not be read): it is left
                    # out and the tagger, which may hold some of it, read again.
                    log.exception("%s: could not tag or send a batch", self.slug)
                    self._failed(batches, "see above")
                    storage = self._storage
                    again = [] if storage is None else await self._settle(storage, sent)
                    await self._recover(storage, sent, again)
                    if not sent and self._queue.empty():
                        self._idle.set()
            except StorageGone as exc:
                gone = self._storage
                assert gone is not None
                log.error("%s: %s; starting another", self.slug, exc)
                fresh = await self._restart_storage(gone)
                again = [flight.batches for flight in sent]
                sent.clear()
                await self._recover(fresh, sent, again)

    def _forget(self, batches: list[SourceBatch]) -> None:
        """The batches are counted or lost: their posts' arrival times are no longer needed."""
        for batch in batches:
            for record in batch.parsed.collected:
                self._received_at.pop(record.id, None)

    def _failed(self, batches: list[SourceBatch], why: str) -> None:
        log.error("%s: could not store a batch of %d (%s)", self.slug, len(batches), why)
        self._forget(batches)

    async def _settle(
        self, storage: StorageProcess, sent: deque[_Flight]
    ) -> list[list[SourceBatch]]:
        """Take the answers of the batches in flight without counting them (the reload that
        follows reads what they stored); the batches the storage process skipped, to send
        again. `sent` is emptied only once every answer is in (a death meanwhile sends them
        all again)."""
        again = []
        for flight in sent:
            status, answer = await storage.answer()
            if status == SKIPPED:
                again.append(flight.batches)
            elif status != OK:
                self._failed(flight.batches, f"the storage process {status}:\n{answer}")
        sent.clear()
        return again

    async def _recover(
        self,
        storage: StorageProcess | None,
        sent: deque[_Flight],
        again: list[list[SourceBatch]],
    ) -> None:
        """Start again from what the database holds, show the pages the posts stored that
        were not counted, and send `again` (tagged anew: the tagger is the database's now)."""
        loop = asyncio.get_running_loop()
        while True:
            self._generation += 1
            self._followup_copies, self._followup_retags = {}, {}
            self._flight_names.clear()
            known, wall = set(self.collected), list(self.screen.wall)
            await loop.run_in_executor(self._db, self._load)
            self._show_reloaded(known, wall)
            self._announce({"kind": "reload"})  # other processes: read the chat again
            try:
                for batches in again:
                    assert storage is not None
                    await self._send(storage, sent, batches)
                return
            except StorageGone as exc:
                assert storage is not None
                log.error("%s: %s; starting another", self.slug, exc)
                sent.clear()
                storage = await self._restart_storage(storage)

    def _show_reloaded(self, known: set[str], wall: list[str]) -> None:
        """After a reload: the posts it found stored that were not counted before (a batch
        stored just before its answer was lost) go to the pages as new posts."""
        self._reloaded(wall)  # the wall as the reload made it, then the new posts' way to it
        figures = self.figures
        assert figures is not None
        appeared = (figures.live_post(post_id) for post_id in self.collected - known)
        now = time.monotonic()
        for post in sorted((p for p in appeared if p is not None), key=time_order):
            if post.copy_of is not None or post.hidden:
                continue
            item = figures.post(post.id)
            if item is not None:
                item["received_at"] = self._received_at.pop(post.id, time.time())
                self._pending_posts.append(item)
                self.screen.arrive(item, now)
        self.screen.changed.add("queue")

    async def _send(
        self, storage: StorageProcess, sent: deque[_Flight], batches: list[SourceBatch]
    ) -> None:
        """Tag the batches and hand them to the storage process, with what the batches counted
        before changed of earlier posts."""
        loop = asyncio.get_running_loop()
        flight = _Flight(batches, await loop.run_in_executor(self._db, self._tag_batches, batches))
        tagger = self.tagger
        assert tagger is not None
        tags = {}
        for record in flight.tagged.parsed.collected:
            tag = tagger.tag(record.id)
            tags[record.id] = (tag.question, tag.method)
        pages = [page for batch in batches for page in batch.pages or ()]
        whole = all(batch.pages is not None for batch in batches)
        job = Job(
            generation=self._generation,
            chat_id=self.chat_id,
            pages=pages if whole else None,
            parsed=None if whole else flight.tagged.parsed,
            tags=tags,
            question_posts=tagger.question_posts() if flight.tagged.asked else None,
            sources=_source_counts(batches),
            copies=self._followup_copies,
            retags={p: (t.question, t.method) for p, t in self._followup_retags.items()},
        )
        message = encode(job)  # a job that cannot be sent fails here, before it is in flight
        self._followup_copies, self._followup_retags = {}, {}
        sent.append(flight)  # before sending: a dead storage process gets it sent again
        await storage.send(message)

    def _tag_batches(self, batches: list[SourceBatch]) -> Tagged:
        parsed = _merged(batches)
        # The authors of batches not stored yet are not in the database to read.
        with self.sessions() as session:
            names = _names(session, parsed, self._flight_names)
        self._flight_names.update((user.id, (user.username, user.name)) for user in parsed.users)
        return self._tag(parsed, names)

    async def _counted(self, flight: _Flight, stored: Stored) -> None:
        def result() -> WriteResult:
            by_id = {record.id: record for record in flight.tagged.parsed.collected}
            records = [by_id[post_id] for post_id in stored.newly]
            result, copies, retags = self._result(
                flight.tagged, records, stored.metrics, stored.persons, stored.questions
            )
            self.collected.update(stored.newly)
            # Stored with the next batch: the copies of every post (the store leaves them
            # empty) and the retags of posts collected before.
            self._followup_copies.update(copies)
            self._followup_retags.update(retags)
            return result

        written = await asyncio.get_running_loop().run_in_executor(self._db, result)
        if flight.batches:  # else it carried only what earlier batches changed
            self._apply(written, flight.batches)
            self._announce_ingest(written, flight.batches)
            self._forget(flight.batches)

    async def start_storage(self) -> StorageProcess:
        """The chat's storage process, started if it is not (at the first batch: a chat that is
        only watched needs none; a benchmark starts it before its clock)."""
        async with self._storage_lock:
            if self._storage is None:
                bind = self.sessions.kw["bind"]
                url = bind.url.render_as_string(hide_password=False)
                self._storage = await self._new_storage(url)
            return self._storage

    async def _restart_storage(self, storage: StorageProcess) -> StorageProcess:
        await asyncio.get_running_loop().run_in_executor(None, storage.close)
        self._storage = await self._new_storage(storage.url)
        return self._storage

    async def _new_storage(self, url: str) -> StorageProcess:
        loop = asyncio.get_running_loop()
        while True:
            fresh = StorageProcess(url, self.slug)
            try:
                await fresh.ready()
            except StorageGone as exc:
                log.error("%s: %s; trying again in a second", self.slug, exc)
                await loop.run_in_executor(None, fresh.close)
                await asyncio.sleep(1.0)
                continue
            return fresh

    def _write(self, batches: list[SourceBatch]) -> WriteResult:
        parsed = _merged(batches)
        with self.sessions.begin() as session:
            names = _names(session, parsed)
            tagged = self._tag(parsed, names)
            tagger = self.tagger
            assert tagger is not None
            # Tagged first, so that newly collected posts are stored with their tags.
            stored, questions = store_batch(
                session,
                self._statistics,
                self.chat_id,
                parsed,
                tagger.tags(),
                tagger.question_posts() if tagged.asked else None,
                _source_counts(batches),
            )
            # The store keeps the largest metrics of every copy seen, context copies included:
            # newly collected posts enter the live figures with those.
            metrics = {record.id: stored.metrics[record.id] for record in stored.newly_collected}
            result, copies, retags = self._result(
                tagged, stored.newly_collected, metrics, stored.persons, questions
            )
            save_copies(session, self.chat_id, copies)
            save_tags(session, self.chat_id, retags)
        # After the commit only: a failed write leaves the set as the database has it.
        self.collected.update(record.id for record in stored.newly_collected)
        return result

    def _tag(self, parsed: Parsed, names: dict[str, tuple[str, str]]) -> Tagged:
        """Hand the batch's posts the tagger does not hold yet to it."""
        tagger = self.tagger
        assert tagger is not None
        known = tagger.tags()
        inputs = []
        for record in {r.id: r for r in [*parsed.context, *parsed.collected]}.values():
            author = names.get(record.author_id, ("", ""))[0]
            # A post first met as context may have come without its author; whether it is a
            # host's (a question post) depends on it, so it is added again once known.
            if record.id in known and not (author and record.id in self._nameless):
                continue
            if author:
                self._nameless.discard(record.id)
            else:
                self._nameless.add(record.id)
            inputs.append(
                TagInput.from_text(
                    id=record.id,
                    author=author,
                    created_at=record.created_at,
                    kind=record.kind,
                    in_reply_to_id=record.in_reply_to_id,
                    quoted_id=record.quoted_id,
                    text=record.text,
                )
            )
        questions_before = tagger.question_posts()
        changed = tagger.add(inputs)
        asked = tagger.question_posts() != questions_before
        return Tagged(parsed, names, [i.id for i in inputs], changed, asked)

    def _result(
        self,
        tagged: Tagged,
        newly_collected: list[PostRecord],
        metrics: dict[str, Metrics],
        persons: dict[str, str],
        questions: dict[int, str] | None,
    ) -> tuple[WriteResult, dict[str, str | None], dict[str, Tag]]:
        """What the stored batch changes in the live figures, and what it changes of posts
        collected before: the copies to store (the new posts' included) and the retags."""
        tagger = self.tagger
        assert tagger is not None
        parsed, names = tagged.parsed, tagged.names
        newly = {record.id for record in newly_collected}
        copies = self._crossposts_add(newly_collected, persons)
        retagged = {
            pid: tag for pid, tag in tagged.changed.items() if pid in self.collected or pid in newly
        }
        # A post met as context before is tagged already: its tag did not change now, but
        # the chat has just collected it.
        for pid in newly:
            retagged.setdefault(pid, tagger.tag(pid))
        new_posts = [
            _live_post(
                record,
                names,
                retagged.get(record.id),
                metrics.get(record.id),
                person=persons[record.author_id],
                copy_of=copies.get(record.id),
            )
            for record in newly_collected
        ]
        seen_again = [
            (
                r.id,
                (r.retweet_count, r.like_count, r.reply_count, r.quote_count, r.impression_count),
            )
            for r in parsed.collected
            if r.id not in newly
        ]
        polls = [
            PollState(p.id, p.voting_status, tuple(p.options))
            for p in {p.id: p for p in parsed.polls}.values()
        ]
        result = WriteResult(
            new_posts,
            seen_again,
            retagged,
            polls,
            questions or {},
            tagged.inputs,
            {post_id: first for post_id, first in copies.items() if post_id not in newly},
        )
        return result, copies, {p: t for p, t in retagged.items() if p not in newly}

    def _crossposts_add(
        self, records: Iterable[PostRecord], persons: dict[str, str]
    ) -> dict[str, str | None]:
        """Newly collected posts to the chat's cross-posts; returns what changed."""
        crossposts = self.crossposts
        assert crossposts is not None
        ordered = sorted(records, key=time_order)
        return crossposts.add(
            crossposts.input(r.id, persons[r.author_id], r.created_at, r.kind, r.text)
            for r in ordered
        )

    def _apply(self, result: WriteResult, batches: list[SourceBatch]) -> None:
        figures = self.figures
        assert figures is not None
        for number, text in result.questions.items():
            figures.set_question(number, text)
        for poll in result.polls:
            figures.set_poll(poll)
        for post in result.new_posts:
            figures.add(post)
            if post.poll_id and post.kind != "retweet":
                self.poll_posts.add(post.id)
            if post.copy_of is not None:
                self._pending_also.add(post.copy_of)
        # Posts collected before that a new post made a copy (or no longer one).
        became_original = []
        for post_id, first in result.copies.items():
            before = figures.copy_of(post_id)
            figures.set_copy(post_id, first)
            self._pending_also.update(p for p in (before, first) if p is not None)
            if first is None:
                became_original.append(post_id)
            else:
                self.screen.held.pop(post_id, None)
                self.screen.hide_from_wall(post_id)
        for post_id, (retweets, likes, replies, quotes, impressions) in result.seen_again:
            figures.set_metrics(
                post_id,
                retweet_count=retweets,
                like_count=likes,
                reply_count=replies,
                quote_count=quotes,
                impression_count=impressions,
            )
        new_ids = {post.id for post in result.new_posts}
        for post_id, tag in result.retagged.items():
            if post_id not in new_ids:
                figures.set_tag(post_id, tag.question, tag.method)
                self._pending_tags[post_id] = tag
        for batch in batches:
            view = self.sources.setdefault(batch.source, SourceView())
            view.posts_read += batch.posts_read
            view.requests += batch.requests
        now = time.monotonic()
        shown = [p for p in result.new_posts if p.copy_of is None]
        shown += [p for p in (figures.live_post(i) for i in became_original) if p is not None]
        for post in sorted(shown, key=time_order):
            item = figures.post(post.id)
            if item is not None and not post.hidden:
                item["received_at"] = self._received_at.get(post.id, time.time())
                self._pending_posts.append(item)
                self.screen.arrive(item, now)
        self.screen.changed.add("queue")
        self._changed()

    # -- updates ----------------------------------------------------------------------------

    def _changed(self) -> None:
        """Something the pages show changed: the flusher sends it (at once after a quiet spell)."""
        self._pending_change = True
        self._wake.set()

    async def _flusher(self) -> None:
        loop = asyncio.get_running_loop()
        pace = UpdatePace(self.update_interval)
        wait = IDLE_LOOK
        while True:
            # Woken by a change (`_changed`), when the pace allows the update held back, when a
            # post held for the screen's delay falls due, or every IDLE_LOOK seconds regardless.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            self._wake.clear()
            wait = self._release_held()
            if not (self._pending_change or self.screen.wall_add or self.screen.wall_remove):
                continue
            now = loop.time()
            if pace.due(now):
                self.flush()
                pace.sent(now, loop.time())
            else:
                wait = min(wait, max(0.0, pace.next_at() - now))

    def _release_held(self) -> float:
        """Send the posts held for the screen's delay that fall due to the screen; returns the
        seconds until the next one does (at most IDLE_LOOK; posts held for approval wait for an
        action, which wakes the flusher)."""
        now = time.monotonic()
        due = self.screen.release_due(now)
        return max(0.0, min(IDLE_LOOK, due - now))

    def flush(self) -> None:
        self._pending_change = False
        posts, self._pending_posts = self._pending_posts, []
        tags, self._pending_tags = self._pending_tags, {}
        added, removed, changed = self.screen.take_changes()
        message: dict[str, Any] = {
            "type": "update",
            "seq": self.seq + 1,
            "posts": posts,
            "retagged": [
                {"id": pid, "question": tag.question, "tag_method": tag.method}
                for pid, tag in tags.items()
            ],
        }
        state = self._state()
        message["state"] = diff_state(self._sent_state, state)
        self._sent_state = state
        if added or removed:
            message["wall_add"] = self._posts(added)
            message["wall_remove"] = removed
        if "pinned" in changed:
            message["pinned"] = self._posts(self.screen.pinned)
        if "screen" in changed:
            message["screen"] = self.screen.settings.as_dict()
        if "hidden" in changed:
            message["hidden"] = sorted(self.screen.hidden)
        if "chat" in changed:
            message["chat"] = self.info
        also, self._pending_also = self._pending_also, set()
        if also:
            # A post's cross-posts changed: the pages showing it update its "also on" links.
            objects = (self.figures.post(post_id) if self.figures else None for post_id in also)
            message["also"] = [
                {"id": obj["id"], "also": obj["also"]} for obj in objects if obj is not None
            ]
        # A queued post's marks change with the actions, and its "on screen" with the wall.
        if "queue" in changed or "pinned" in changed or tags or added or removed:
            upsert, gone = self._queue_diff()
            if upsert or gone:
                message["queue_upsert"] = upsert
                message["queue_remove"] = gone
        self.seq += 1
        message["sent_at"] = time.time()  # made: from here on, the time is the fan-out's
        self.broadcast.publish(self.channel, message)

    # -- the screen and the panel ---------------------------------------------------------------

    def _posts(self, ids: list[str]) -> list[dict[str, Any]]:
        assert self.figures is not None
        found = (self.figures.post(post_id) for post_id in ids)
        return [post for post in found if post is not None]

    def panel_post(self, post: dict[str, Any]) -> dict[str, Any]:
        post_id = post["id"]
        return {
            **post,
            "claimed_by": self.screen.claims.get(post_id),
            "hidden": post_id in self.screen.hidden,
            "pinned": post_id in self.screen.pinned,
            "approved": post_id in self.screen.approved,
            "on_screen": post_id in self.screen.wall,
            "held": post_id in self.screen.held,
        }

    def queue(self) -> list[dict[str, Any]]:
        assert self.figures is not None
        return [self.panel_post(p) for p in self.figures.unanswered(limit=QUEUE_SIZE)]

    @staticmethod
    def _queue_key(post: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(post[k] for k in QUEUE_SHOWN)

    def _queue_diff(self) -> tuple[list[dict[str, Any]], list[str]]:
        current = self.queue()
        now = {p["id"]: self._queue_key(p) for p in current}
        upsert = [p for p in current if self._queue_sent.get(p["id"]) != now[p["id"]]]
        gone = [post_id for post_id in self._queue_sent if post_id not in now]
        self._queue_sent = now
        return upsert, gone

    async def run_db(self, work: Callable[[], T]) -> T:
        """Run `work` on this chat's database thread, after the writes queued before it."""
        result: T = await asyncio.get_running_loop().run_in_executor(self._db, work)
        return result

    async def post_action(
        self, post_id: str, action: Callable[[Session, Chat], ChatPost]
    ) -> dict[str, Any]:
        """Apply a panel action in the database, then to what the pages show."""

        def write() -> tuple[ChatPost | None, list[str]]:
            with self.sessions.begin() as session:
                action(session, get_chat(session, self.slug))
            return self._read_marks(post_id)

        row, pins = await self.run_db(write)
        assert row is not None
        post = self._apply_marks(post_id, row, pins)
        self._announce({"kind": "marks", "id": post_id})
        return self.panel_post(post) | {"handled": row.handled, "manual": row.manual}

    def _read_marks(self, post_id: str) -> tuple[ChatPost | None, list[str]]:
        with self.sessions() as session:
            row = session.get(ChatPost, (self.chat_id, post_network(post_id), post_id))
            pins = session.scalars(
                select(ChatPost.post_id)
                .where(ChatPost.chat_id == self.chat_id, ChatPost.pinned_at.is_not(None))
                .order_by(ChatPost.pinned_at.desc())
            ).all()
            if row is not None:
                session.expunge(row)
            return row, list(pins)

    def _apply_marks(self, post_id: str, row: ChatPost, pins: list[str]) -> dict[str, Any]:
        """What the pages show of a post's panel marks (claim, handled, hidden, approved, pins)."""
        figures = self.figures
        assert figures is not None
        post = figures.post(post_id)
        assert post is not None
        figures.set_handled(post_id, row.handled)
        self.screen.changed.add("queue")
        if row.hidden != (post_id in self.screen.hidden):
            figures.set_hidden(post_id, row.hidden)
            self.screen.hide(post_id, row.hidden)
        if row.approved != (post_id in self.screen.approved):
            self.screen.approve(post, row.approved)
        if self.screen.claims.get(post_id) != row.claimed_by:
            self.screen.claim(post_id, row.claimed_by)
        self.screen.set_pins([p for p in pins if p not in self.screen.hidden])
        self._changed()
        return post

    async def tag_action(
        self, post_id: str, question: int | None, *, manual: bool
    ) -> dict[str, Any]:
        """A manual tag (or its removal): the post and the replies that inherit it."""
        assert self.tagger is not None

        def write() -> dict[str, Tag]:
            assert self.tagger is not None
            with self.sessions.begin() as session:
                chat = get_chat(session, self.slug)
                set_manual_tag(session, chat, post_id, question, manual=manual)
                if manual:
                    changed = self.tagger.set_manual(post_id, question)
                else:
                    changed = self.tagger.clear_manual(post_id)
                changed = {pid: tag for pid, tag in changed.items() if pid in self.collected}
                save_tags(session, self.chat_id, changed)
                if not manual:
                    row = session.get(ChatPost, (self.chat_id, post_network(post_id), post_id))
                    assert row is not None
                    tag = self.tagger.tag(post_id)
                    row.question, row.tag_method = tag.question, tag.method
                    changed[post_id] = tag
                return changed

        changed = await self.run_db(write)
        self._apply_tags(changed)
        self._announce({"kind": "tag", "id": post_id, "question": question, "manual": manual})
        assert self.figures is not None
        post = self.figures.post(post_id)
        assert post is not None
        return self.panel_post(post) | {"manual": manual}

    def _retag_in_memory(self, post_id: str, question: int | None, manual: bool) -> dict[str, Tag]:
        """Another process's manual tag: the same change to this process's tagger."""
        assert self.tagger is not None
        if manual:
            changed = self.tagger.set_manual(post_id, question)
        else:
            changed = self.tagger.clear_manual(post_id)
            changed[post_id] = self.tagger.tag(post_id)
        return {pid: tag for pid, tag in changed.items() if pid in self.collected}

    def _apply_tags(self, changed: dict[str, Tag]) -> None:
        assert self.figures is not None
        for pid, tag in changed.items():
            self.figures.set_tag(pid, tag.question, tag.method)
            self._pending_tags[pid] = tag
        self.screen.changed.add("queue")
        self._changed()

    async def screen_action(self, changes: dict[str, Any]) -> dict[str, Any]:
        def write() -> dict[str, Any]:
            with self.sessions.begin() as session:
                return update_screen(session, get_chat(session, self.slug), changes)

        settings = await self.run_db(write)
        self._apply_screen(settings)
        self._announce({"kind": "screen"})
        return settings

    def _read_screen(self) -> dict[str, Any]:
        with self.sessions() as session:
            return screen_settings(get_chat(session, self.slug))

    def _apply_screen(self, settings: dict[str, Any]) -> None:
        self.screen.configure(ScreenSettings.from_dict(settings))
        for post in self._posts(list(self.screen.wall)):
            if not self.screen.allows(post):
                self.screen.hide_from_wall(post["id"])
        if settings["mode"] == "immediate":
            self.screen.release_all()
        self.info["screen"] = settings
        self._changed()

    async def reload(self) -> None:
        """Read the chat again after a change of its run of show or of its people (tags,
        people and cross-posts recomputed)."""

        def write() -> None:
            with self.sessions.begin() as session:
                retag_chat(session, get_chat(session, self.slug))
            self._load()

        wall = list(self.screen.wall)
        await self.run_db(write)
        self._reloaded(wall)
        self._announce({"kind": "reload"})

    def _reloaded(self, wall: list[str]) -> None:
        """After `_load`: open pages get the chat again, the wall's changes (a post that became
        a cross-post's copy leaves it) and the "also on" links of the posts it keeps."""
        now = list(self.screen.wall)
        self.screen.wall_remove.extend(post_id for post_id in wall if post_id not in now)
        self.screen.wall_add.extend(post_id for post_id in now if post_id not in wall)
        self._pending_also.update(post_id for post_id in now if post_id in wall)
        self._pending_also.update(self.screen.pinned)
        self.screen.changed.update(("chat", "pinned"))  # the run of show reaches open pages
        self._changed()

    def _state(self) -> dict[str, Any]:
        figures = self.figures
        assert figures is not None
        chat_figures = figures.figures("chat")
        chat_figures["trending"] = self.trending
        all_figures = figures.figures("all")
        all_figures["trending"] = self.trending
        return {
            "figures": chat_figures,
            "figures_all": all_figures,
            "per_minute": figures.per_minute(),
            "current_question": self.current_question(chat_figures["questions"]),
            "sources": {name: view.as_dict() for name, view in sorted(self.sources.items())},
            "spend": self.spend(),
            "trends_note": self.trends_note,
        }

    def snapshot(self) -> dict[str, Any]:
        figures = self.figures
        assert figures is not None
        queue = self.queue()
        # The new page has these; the others have what was sent. Whatever differs from both
        # (here: the new page's extra entries) is sent again with the next change.
        for post in queue:
            self._queue_sent.setdefault(post["id"], ())
        return {
            "type": "snapshot",
            "seq": self.seq,
            "chat": self.info,
            "latest": self._latest_sent(),
            **self._sent_state,
            "screen": self.screen.settings.as_dict(),
            # Hidden posts still count, so they can stand in the figures' top lists: the
            # screen leaves these out.
            "hidden": sorted(self.screen.hidden),
            "wall": list(reversed(self._posts(list(self.screen.wall)))),
            "pinned": self._posts(self.screen.pinned),
            "queue": queue,
        }

    def _latest_sent(self) -> list[dict[str, Any]]:
        """The newest posts, less those waiting for the next update (which carries them): a new
        page gets each post once."""
        assert self.figures is not None
        pending = {post["id"] for post in self._pending_posts}
        latest = self.figures.latest(LATEST + len(pending))
        return [post for post in latest if post["id"] not in pending][:LATEST]

    def current_question(self, questions: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The host's choice, or the last question started by the time of the newest post.

        `questions` is the chat window's figures' list (their texts include questions first
        seen as host posts); the caller has it already.
        """
        if self.tagger is None or self.figures is None:
            return None
        starts = self.tagger.question_starts()
        chosen = self.screen.settings.current_question
        if chosen is not None:
            since = iso_time(starts[chosen]) if chosen in starts else None
            text = self._question_text(chosen, questions)
            return {"number": chosen, "text": text, "since": since, "chosen": True}
        newest = self.figures.latest(1)
        if not newest:
            return None
        at = newest[0]["created_at"]
        started = [(iso_time(when), n) for n, when in starts.items() if iso_time(when) <= at]
        if not started:
            return None
        since, number = max(started)
        return {"number": number, "text": self._question_text(number, questions), "since": since}

    def _question_text(self, number: int, questions: list[dict[str, Any]]) -> str:
        for question in questions:
            if question["number"] == number and question["text"]:
                return str(question["text"])
        return next((q["text"] for q in self.info["questions"] if q["number"] == number), "")

    def spend(self) -> dict[str, Any]:
        read = sum(view.posts_read for name, view in self.sources.items() if name.startswith("x-"))
        return {"posts_read": read, "usd": round(read * self.price_per_post, 2)}

    def refresh_ids(self) -> list[str]:
        """The posts whose metrics rank the chat: its top tweets, each question's top answers,
        and the posts carrying its polls."""
        figures = self.figures
        if figures is None:
            return []
        ids: list[str] = []
        windows: tuple[Window, ...] = ("chat", "all")
        for window in windows:
            current = figures.figures(window)
            ids += [post["id"] for post in current["top_tweets"]]
            ids += [post["id"] for q in current["questions"] for post in q["top"]]
        ids += sorted(self.poll_posts)
        return list(dict.fromkeys(ids))[:100]

    def set_trends(
        self, trending: list[dict[str, Any]], note: str, *, announce: bool = True
    ) -> None:
        self.trending, self.trends_note = trending, note
        self._changed()
        if announce:
            self._announce({"kind": "trends", "trending": trending, "note": note})

    # -- other processes (app/live/sync.py) ---------------------------------------------------

    def _announce(self, message: dict[str, Any]) -> None:
        """Tell the other processes of a change already stored (never waits; Redis only)."""
        if not self.sync.shared:
            return
        try:
            task = asyncio.get_running_loop().create_task(self.sync.publish(self.slug, message))
        except RuntimeError:
            return  # no loop (a test driving the runtime by hand): nobody else to tell
        self._announcing.add(task)
        task.add_done_callback(self._announcing.discard)

    def _announce_ingest(self, result: WriteResult, batches: list[SourceBatch]) -> None:
        if not self.sync.shared:  # one process: no one to tell, nothing to build
            return
        counts: dict[str, list[int]] = {}
        for batch in batches:
            entry = counts.setdefault(batch.source, [0, 0])
            entry[0] += batch.posts_read
            entry[1] += batch.requests
        new = [post.id for post in result.new_posts]
        self._announce(
            {
                "kind": "ingest",
                "new": new,
                # When each new post entered this process: the other processes' updates carry
                # it as the post's received_at (null: not known here).
                "received_at": [self._received_at.get(post_id) for post_id in new],
                "inputs": result.inputs,
                "again": [post_id for post_id, _ in result.seen_again],
                "polls": [poll.id for poll in result.polls],
                "questions": bool(result.questions),
                "sources": counts,
            }
        )

    async def _heard(self, message: dict[str, Any]) -> None:
        self._sync_inbox.put_nowait(message)

    async def _sync_worker(self) -> None:
        while True:
            message = await self._sync_inbox.get()
            try:
                await self.apply_remote(message)
            except Exception:
                log.exception("%s: could not apply %s from another process", self.slug, message)

    async def apply_remote(self, message: dict[str, Any]) -> None:
        """Apply a change another process made and stored, reading what changed."""
        kind = message.get("kind")
        if kind == "ingest":
            result = await self.run_db(lambda: self._read_ingest(message))
            # The collecting process's received_at for its new posts (`_announce_ingest`).
            arrived = [
                (str(post_id), float(at))
                for post_id, at in zip(
                    message.get("new") or [], message.get("received_at") or [], strict=False
                )
                if isinstance(at, int | float) and str(post_id) not in self._received_at
            ]
            self._received_at.update(arrived)
            try:
                self._apply(result, [])
            finally:
                for post_id, _ in arrived:
                    self._received_at.pop(post_id, None)
            for source, (read, requests) in dict(message.get("sources") or {}).items():
                view = self.sources.setdefault(source, SourceView())
                view.posts_read += int(read)
                view.requests += int(requests)
        elif kind == "status":
            view = self.sources.setdefault(str(message["source"]), SourceView())
            view.state = str(message.get("state", view.state))
            view.detail = str(message.get("detail", ""))
            view.retry_at = message.get("retry_at")
            self._changed()
        elif kind == "marks":
            post_id = str(message["id"])
            row, pins = await self.run_db(lambda: self._read_marks(post_id))
            if row is not None and self.figures is not None and self.figures.post(post_id):
                self._apply_marks(post_id, row, pins)
        elif kind == "tag":
            post_id, question = str(message["id"]), message.get("question")
            manual = bool(message.get("manual"))
            changed = await self.run_db(lambda: self._retag_in_memory(post_id, question, manual))
            self._apply_tags(changed)
        elif kind == "screen":
            self._apply_screen(await self.run_db(self._read_screen))
        elif kind == "reload":
            wall = list(self.screen.wall)
            await self.run_db(self._load)
            self._reloaded(wall)
        elif kind == "trends":
            self.set_trends(
                list(message.get("trending") or []), str(message.get("note", "")), announce=False
            )

    async def catch_up(self) -> int:
        """Take in the collected posts the database has and this process has not heard of (the
        last batch of a collector that died before announcing it). Returns how many."""

        def missing() -> list[str]:
            with self.sessions() as session:
                stored = session.scalars(
                    select(ChatPost.post_id).where(ChatPost.chat_id == self.chat_id)
                ).all()
            return [post_id for post_id in stored if post_id not in self.collected]

        ids = await self.run_db(missing)
        if ids:
            await self.apply_remote({"kind": "ingest", "new": ids, "questions": True})
        return len(ids)

    def _read_ingest(self, message: dict[str, Any]) -> WriteResult:
        """Another process stored a batch: the same change to this process's state."""
        assert self.tagger is not None
        new_ids = [str(i) for i in message.get("new") or []]
        newly = [post_id for post_id in new_ids if post_id not in self.collected]
        with self.sessions() as session:
            wanted = {str(i) for i in message.get("inputs") or []} | set(newly)
            changed = self.tagger.add(tag_inputs(session, wanted, known=self.tagger.tags()))
            retagged = {
                pid: tag for pid, tag in changed.items() if pid in self.collected or pid in newly
            }
            for post_id in newly:
                retagged.setdefault(post_id, self.tagger.tag(post_id))
            new_posts = list(_live_posts(session, self.chat_id, newly)) if newly else []
            # The same cross-posts as the process that stored them decided.
            assert self.crossposts is not None
            copies = self.crossposts.add(
                self.crossposts.input(p.id, p.person, p.created_at, p.kind, p.text)
                for p in sorted(new_posts, key=time_order)
            )
            again = [str(i) for i in message.get("again") or []]
            metrics = _stored_metrics(session, set(again))
            poll_ids = {str(i) for i in message.get("polls") or []}
            polls = [p for p in _polls(session, self.chat_id) if p.id in poll_ids]
            questions: dict[int, str] = {}
            if message.get("questions"):
                chat = get_chat(session, self.slug)
                questions = {q.number: q.text for q in chat.questions}
        self.collected.update(newly)
        fresh = {post.id for post in new_posts}
        for post in new_posts:
            post.copy_of = self.crossposts.copy_of(post.id)
        return WriteResult(
            new_posts,
            [(post_id, metrics[post_id]) for post_id in again if post_id in metrics],
            retagged,
            polls,
            questions,
            copies={pid: first for pid, first in copies.items() if pid not in fresh},
        )


def _weight(batch: SourceBatch) -> int:
    """What a batch counts for in the ingest queue: its collected posts (at least 1; the posts
    they quote or answer come with them)."""
    return max(1, len(batch.parsed.collected))


def _merged(batches: list[SourceBatch]) -> Parsed:
    parsed = Parsed()
    for batch in batches:
        parsed.extend(batch.parsed)
    return parsed


def _source_counts(batches: list[SourceBatch]) -> list[SourceCounts]:
    return [(b.source, b.position, b.posts_read, b.requests) for b in batches]


def _names(
    session: Session, parsed: Parsed, known: Mapping[str, tuple[str, str]] | None = None
) -> dict[str, tuple[str, str]]:
    """The username and name of the batch's authors: its own users, else `known`, else the
    stored accounts."""
    names = {user.id: (user.username, user.name) for user in parsed.users}
    missing = {r.author_id for r in [*parsed.collected, *parsed.context]} - set(names)
    if missing and known:
        names.update((author, known[author]) for author in missing if author in known)
        missing -= set(names)
    if missing:
        rows = session.execute(
            select(Account.id, Account.username, Account.name).where(
                keyed(session, Account.network, Account.id, sorted(missing), account_network)
            )
        ).all()
        names.update({row[0]: (row[1], row[2]) for row in rows})
    return names


_METRICS = Lookup(
    lambda ids: select(
        Post.id,
        Post.retweet_count,
        Post.like_count,
        Post.reply_count,
        Post.quote_count,
        Post.impression_count,
    ).where(ids),
    Post.network,
    Post.id,
)


def _stored_metrics(session: Session, ids: set[str]) -> dict[str, Metrics]:
    return {row[0]: tuple(row[1:]) for row in _METRICS.rows(session, sorted(ids))}


def _live_post(
    record: PostRecord,
    names: dict[str, tuple[str, str]],
    tag: Tag | None,
    metrics: Metrics | None = None,
    *,
    person: str = "",
    copy_of: str | None = None,
) -> LivePost:
    username, name = names.get(record.author_id, ("", ""))
    retweets, likes, replies, quotes, impressions = metrics or (
        record.retweet_count,
        record.like_count,
        record.reply_count,
        record.quote_count,
        record.impression_count,
    )
    return LivePost(
        id=record.id,
        author_id=record.author_id,
        username=username,
        name=name,
        created_at=record.created_at,
        kind=record.kind,
        text=record.text,
        in_reply_to_id=record.in_reply_to_id,
        quoted_id=record.quoted_id,
        retweeted_id=record.retweeted_id,
        poll_id=record.poll_id,
        retweet_count=retweets,
        like_count=likes,
        reply_count=replies,
        quote_count=quotes,
        impression_count=impressions,
        question=tag.question if tag else None,
        tag_method=tag.method if tag else None,
        network=record.network,
        status_url=status_url_of(record.network, record.raw),
        person=person or record.author_id,
        copy_of=copy_of,
    )


def _live_posts(session: Session, chat_id: int, ids: list[str] | None = None) -> Iterable[LivePost]:
    """The chat's collected posts (or those of `ids`) as the live figures hold them."""
    # Columns, not entities: a chat of a million posts loads without its raw JSON and without
    # two ORM objects per post.
    query = (
        select(
            Post.id,
            Post.author_id,
            Account.username,
            Account.name,
            Post.created_at,
            Post.kind,
            Post.text,
            Post.in_reply_to_id,
            Post.quoted_id,
            Post.retweeted_id,
            Post.poll_id,
            Post.retweet_count,
            Post.like_count,
            Post.reply_count,
            Post.quote_count,
            Post.impression_count,
            ChatPost.question,
            ChatPost.tag_method,
            ChatPost.handled,
            ChatPost.hidden,
            Post.network,
            status_url_column(),
            ChatPost.person,
            ChatPost.copy_of,
        )
        .select_from(ChatPost)
        .join(Post, and_(Post.network == ChatPost.network, Post.id == ChatPost.post_id))
        .outerjoin(Account, and_(Account.network == Post.network, Account.id == Post.author_id))
        .where(ChatPost.chat_id == chat_id)
    )
    if ids is not None:
        for start in range(0, len(ids), 1000):
            yield from _live_posts_of(
                session,
                query.where(
                    keyed(session, ChatPost.network, ChatPost.post_id, ids[start : start + 1000])
                ),
            )
        return
    yield from _live_posts_of(session, query)


def _live_posts_of(session: Session, query: Any) -> Iterable[LivePost]:
    for (
        post_id,
        author_id,
        username,
        name,
        created_at,
        kind,
        text,
        in_reply_to_id,
        quoted_id,
        retweeted_id,
        poll_id,
        retweets,
        likes,
        replies,
        quotes,
        impressions,
        question,
        tag_method,
        handled,
        hidden,
        network,
        status_url,
        person,
        copy_of,
    ) in session.execute(query.execution_options(yield_per=2000)):
        yield LivePost(
            id=post_id,
            author_id=author_id,
            username=username or "",
            name=name or "",
            created_at=created_at,
            kind=kind,
            text=text,
            in_reply_to_id=in_reply_to_id,
            quoted_id=quoted_id,
            retweeted_id=retweeted_id,
            poll_id=poll_id,
            retweet_count=retweets,
            like_count=likes,
            reply_count=replies,
            quote_count=quotes,
            impression_count=impressions,
            question=question,
            tag_method=tag_method,
            handled=handled,
            hidden=hidden,
            network=network,
            status_url=status_url,
            person=person,
            copy_of=copy_of,
        )


def _polls(session: Session, chat_id: int) -> Iterable[PollState]:
    poll_ids = (
        select(Post.poll_id)
        .join(ChatPost, and_(ChatPost.network == Post.network, ChatPost.post_id == Post.id))
        .where(ChatPost.chat_id == chat_id, Post.poll_id.is_not(None))
    )
    for poll in session.scalars(select(Poll).where(Poll.id.in_(poll_ids))):
        yield PollState(
            poll.id,
            poll.voting_status,
            tuple((o.position, o.label, o.votes) for o in poll.options),
        )
