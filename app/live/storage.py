"""A chat's ingest writes in a process of their own (`TWEETCHAT_STORAGE_PROCESS=true`).

In one process, parsing, tagging, storing and counting a batch all run under one GIL, on one
core: the store is about half of it (docs/benchmarks.md, sixth to eighth rounds). With this
setting each chat's runtime starts a storage process at its first batch and hands it every
batch: the serving process tags the posts (its tagger is the chat's), sends the posts with their
tags, and when the storage process answers with what it stored, adds the cross-posts and counts
the new posts in the live figures. It sends the next batch before counting the last, so both
cores work at once.

What the storage process does with one `Job`, in one transaction (as `ChatRuntime._write` does
in one process): the copies and retags of posts collected before that earlier batches made
(`Job.copies`, `Job.retags`), then the posts (`store_parsed`, with their tags), the host's
question posts on the run of show, and the sources' positions and counts. It answers with the
posts the chat had not collected before, their metrics and their authors' persons.

After a failed job the storage process skips every job of the same generation (they were
tagged after the failed one) and answers `SKIPPED` until the serving process, having reloaded
the chat from the database, sends jobs of the next generation. A storage process that dies is
started again, and the batches it had not answered are tagged and sent again: a batch
committed just before it died is then found stored, and the reload has counted it.

Messages are pickled tuples over a `multiprocessing` pipe (the records as they are, or the
bytes of the pages they were parsed from when a source keeps them: parsing them again costs no
more than unpickling the records).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import pickle
import traceback
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

from sqlalchemy.orm import Session

from app import jsonio
from app.db.engine import make_engine, session_factory
from app.db.models import Chat, SourceState
from app.db.statistics import Statistics
from app.ingest.crossposts import save_copies
from app.ingest.parse import Parsed, parse_object
from app.ingest.store import Metrics, StoreResult, save_tags, store_parsed
from app.ingest.tagger import Method, Tag
from app.ingest.tagging import record_question_posts
from app.process import tune_gc

log = logging.getLogger(__name__)

READY = b"ready"
STOP = b""
START_TIMEOUT = 60.0  # seconds a new storage process may take to import and connect
STOP_TIMEOUT = 30.0  # seconds it may take to finish the jobs sent before it is told to stop

# Answers: ("ok", Stored) / ("failed", traceback text) / ("skipped", None).
OK, FAILED, SKIPPED = "ok", "failed", "skipped"

# A batch's sources: (name, position to merge or None, posts read, requests).
SourceCounts = tuple[str, dict[str, Any] | None, int, int]
TagTuple = tuple[int | None, Method | None]


@dataclass(frozen=True, slots=True)
class Job:
    generation: int
    chat_id: int
    # The posts: the bytes of the X API pages they were parsed from, or the records.
    pages: list[bytes] | None
    parsed: Parsed | None
    tags: dict[str, TagTuple]  # the collected posts' question tags
    question_posts: dict[int, tuple[str, datetime]] | None  # when they changed
    sources: list[SourceCounts]
    # Of posts collected before, what earlier batches changed: the post each copies (None:
    # none) and their new tags.
    copies: dict[str, str | None]
    retags: dict[str, TagTuple]


@dataclass(frozen=True, slots=True)
class Stored:
    newly: list[str]  # collected posts the chat had not collected before, in the batch's order
    metrics: dict[str, Metrics]  # theirs, the largest of every copy stored
    persons: dict[str, str]  # their authors' persons
    questions: dict[int, str] | None  # the run of show's questions if the job changed them


def save_sources(
    session: Session, chat_id: int, sources: list[SourceCounts], now: datetime
) -> None:
    """Merge the batches' positions into the stored ones and add their counts."""
    for source, position, posts_read, requests in sources:
        row = source_row(session, chat_id, source)
        if position:
            row.position = {**row.position, **position}
        row.posts_read += posts_read
        row.requests += requests
        row.updated_at = now


def source_row(session: Session, chat_id: int, source: str) -> SourceState:
    row = session.get(SourceState, (chat_id, source))
    if row is None:
        row = SourceState(
            chat_id=chat_id,
            source=source,
            position={},
            state="running",
            detail="",
            posts_read=0,
            requests=0,
            updated_at=datetime.now(UTC),
        )
        session.add(row)
    return row


def run_job(
    session: Session, statistics: Statistics, job: Job, tags: dict[TagTuple, Tag]
) -> Stored:
    """Write one job (the caller commits). `tags` shares the Tag objects between jobs."""

    def tag(value: TagTuple) -> Tag:
        found = tags.get(value)
        if found is None:
            found = tags[value] = Tag(value[0], value[1])
        return found

    save_copies(session, job.chat_id, job.copies)
    save_tags(session, job.chat_id, {post_id: tag(t) for post_id, t in job.retags.items()})
    if job.pages is not None:
        parsed = Parsed()
        for page in job.pages:
            parsed.extend(parse_object(jsonio.loads(page)))
    else:
        parsed = job.parsed or Parsed()
    chosen = {post_id: tag(t) for post_id, t in job.tags.items()}
    stored, questions = store_batch(
        session, statistics, job.chat_id, parsed, chosen, job.question_posts, job.sources
    )
    newly = [record.id for record in stored.newly_collected]
    return Stored(newly, {i: stored.metrics[i] for i in newly}, stored.persons, questions)


def store_batch(
    session: Session,
    statistics: Statistics,
    chat_id: int,
    parsed: Parsed,
    tags: Mapping[str, Tag],
    question_posts: Mapping[int, tuple[str, datetime]] | None,
    sources: list[SourceCounts],
) -> tuple[StoreResult, dict[int, str] | None]:
    """A batch's write, in one process or in the storage process (the caller commits): the
    posts with their tags, PostgreSQL's statistics kept up, the host's question posts if they
    changed, the sources' positions and counts. Returns what was stored and, if the question
    posts changed, the run of show's questions."""
    stored = store_parsed(session, chat_id, parsed, tags)
    statistics.grew(session, len(stored.new_posts) + len(stored.newly_collected))
    questions = None
    if question_posts is not None:
        chat = session.get(Chat, chat_id)
        assert chat is not None
        record_question_posts(session, chat, question_posts)
        questions = {q.number: q.text for q in chat.questions}
    save_sources(session, chat_id, sources, datetime.now(UTC))
    return stored, questions


def serve(url: str, conn: Connection) -> None:
    """The storage process: run the jobs `conn` brings, in order, until told to stop."""
    tune_gc()
    engine = make_engine(url)  # the serving process has brought the schema up to date
    sessions = session_factory(engine)
    statistics = Statistics()
    tags: dict[TagTuple, Tag] = {}
    skipping = -1  # the generation whose jobs are skipped after one of them failed
    conn.send_bytes(READY)
    try:
        while message := conn.recv_bytes():
            job: Job = pickle.loads(message)
            if job.generation <= skipping:
                answer: tuple[str, Any] = (SKIPPED, None)
            else:
                try:
                    with sessions.begin() as session:
                        answer = (OK, run_job(session, statistics, job, tags))
                except Exception:
                    skipping = job.generation
                    answer = (FAILED, traceback.format_exc())
            conn.send_bytes(pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))
    except (EOFError, OSError, KeyboardInterrupt):
        pass  # the serving process is gone
    finally:
        engine.dispose()


def encode(job: Job) -> bytes:
    return pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)


class StorageGone(Exception):
    """The storage process died (or never started)."""


class StorageProcess:
    """The serving side of one storage process: send jobs, read answers, in order."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        context = multiprocessing.get_context("spawn")  # no copy of this process's threads
        self._conn, theirs = context.Pipe()
        self.process = context.Process(
            target=serve, args=(url, theirs), name=f"tweetchat-storage:{name}", daemon=True
        )
        self.process.start()
        theirs.close()  # else its death would not end our reads
        # One thread each way: a large job must not wait on an answer the other side is
        # blocked sending.
        self._sender = ThreadPoolExecutor(1, thread_name_prefix="tweetchat-storage-send")
        self._receiver = ThreadPoolExecutor(1, thread_name_prefix="tweetchat-storage-read")
        self._answers: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid

    async def ready(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            ready = await asyncio.wait_for(
                loop.run_in_executor(self._receiver, self._conn.recv_bytes), START_TIMEOUT
            )
        except (EOFError, OSError, TimeoutError) as exc:
            raise StorageGone(f"the storage process of {self.name} did not start: {exc!r}") from exc
        if ready != READY:
            raise StorageGone(f"the storage process of {self.name} said {ready[:40]!r}")
        log.info("%s: storage process %s started", self.name, self.pid)
        # Answers are read as they come, whatever this process awaits: a storage process
        # blocked sending an answer would not read the job being sent to it.
        self._reader = asyncio.create_task(self._read(), name=f"storage-read:{self.name}")

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                message = await loop.run_in_executor(self._receiver, self._conn.recv_bytes)
                self._answers.put_nowait(message)
        except (EOFError, OSError):
            self._answers.put_nowait(None)

    async def send(self, message: bytes) -> None:
        """Send a job `encode` made."""
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._sender, self._conn.send_bytes, message
            )
        except (OSError, ValueError) as exc:
            raise StorageGone(f"the storage process of {self.name} is gone: {exc!r}") from exc

    async def answer(self) -> tuple[str, Any]:
        message = await self._answers.get()
        if message is None:
            self._answers.put_nowait(None)  # and for every later question
            code = self.process.exitcode
            raise StorageGone(f"the storage process of {self.name} is gone (exit code {code})")
        answer: tuple[str, Any] = pickle.loads(message)
        return answer

    def close(self) -> None:
        """Let the process finish the jobs sent so far, then end it (blocking: call it in a
        thread)."""
        if self.process.is_alive():
            with contextlib.suppress(Exception):  # a dead process needs no telling
                self._sender.submit(self._conn.send_bytes, STOP).result(STOP_TIMEOUT)
            self.process.join(STOP_TIMEOUT)
        if self.process.is_alive():
            log.warning("%s: storage process %s did not stop: killed", self.name, self.pid)
            self.process.kill()
            self.process.join(5)
        if self._reader is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed: it is done
                self._reader.get_loop().call_soon_threadsafe(self._reader.cancel)
        self._conn.close()
        self._sender.shutdown(wait=False, cancel_futures=True)
        self._receiver.shutdown(wait=False, cancel_futures=True)

    def kill(self) -> None:
        """End the process at once (tests)."""
        if self.pid is not None:
            os.kill(self.pid, 9)
