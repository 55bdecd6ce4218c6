"""A measurement of a design not adopted: the ingest split over two processes.

The runtime (`app.live.runtime.ChatRuntime`) parses, tags, stores and counts each batch in one
process, whose one GIL serializes it all (docs/benchmarks.md, sixth round). This script measures
how far a second process would lift the ingest rate, before anyone builds it into the product:

- the serving process decodes and parses each page (as a source does), tags the posts with the
  chat's tagger, sends the page bytes and the collected posts' tags to a storage process, and
  when the storage process answers, adds the cross-posts and counts the new posts in the live
  figures (the runtime's own `_apply`); it sends batch k+1 before counting batch k, so that
  both processes work at once;
- the storage process decodes and parses the pages again (handing it the parsed records costs
  more than parsing them: docs/benchmarks.md, sixth round), stores them with their tags
  (`store_parsed`, one transaction per merged batch, PostgreSQL's statistics kept as the
  runtime keeps them) and answers with the newly collected ids, their metrics and persons.

The storage process also saves the sources' positions and counts and the host's question
posts, in the same transaction. It leaves out what a real split would also have to do, a few
per cent of the write in the profiles: the copies and retags of posts collected before (a
second message), posts first met without their author, a failed or dead storage process.
In the same run and database server, for comparison: the runtime's own rate
(`benchmarks/ingest.py`'s measure) and the bare Core `executemany` ceiling.

    .venv/bin/python benchmarks/storage_split.py                       # 100,000 posts, SQLite
    .venv/bin/python benchmarks/storage_split.py --backends sqlite,postgresql
    .venv/bin/python benchmarks/storage_split.py --quick               # 2,000 posts, checked

Prints one JSON object on a line, then one line of plain text.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import pickle
import sys
import tempfile
import traceback
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app import jsonio
from app.db.engine import open_database
from app.db.models import Chat
from app.db.statistics import Statistics
from app.ingest.parse import Parsed, PostRecord, parse_object
from app.ingest.store import Metrics, store_parsed
from app.ingest.tagger import Tag, TagInput
from app.ingest.tagging import record_question_posts
from app.live.figures import PollState
from app.live.pubsub import Broadcast
from app.live.runtime import (
    MAX_MERGE,
    ChatRuntime,
    WriteResult,
    _live_post,
    _names,
    _source_row,
)
from app.process import tune_gc
from app.sources.base import SourceBatch
from benchmarks.common import (
    GC,
    SLUG,
    ChatGenerator,
    add_database_options,
    create_bench_chat,
    emit_result,
    fresh_database,
    machine,
    postgres_available,
    progress,
)
from benchmarks.ingest import (
    TARGET_RATIO,
    emit_pages,
    executemany_batches,
    executemany_rate,
    figures_match_store,
    page_batch,
    runtime_rate,
)

# What the storage process answers: newly collected ids, their metrics, their authors' persons.
# and the run of show's question texts if the message carried question posts.
Answer = tuple[list[str], dict[str, Metrics], dict[str, str], dict[int, str]]
# What the serving process sends: the chat, the page bytes, the collected posts' tags, the
# question posts if they changed, and each batch's source, position, posts read and requests.
Message = tuple[
    int,
    list[bytes],
    dict[str, tuple[Any, ...]],
    dict[int, tuple[str, datetime]] | None,
    list[tuple[str, dict[str, Any] | None, int, int]],
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=100_000, help="collected posts (100,000)")
    parser.add_argument("--authors", type=int, default=3000, help="distinct authors (3,000)")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--backends", default="sqlite", help="comma-separated: sqlite, postgresql")
    add_database_options(parser)
    parser.add_argument("--quick", action="store_true", help="a small run (2,000 posts), checked")
    args = parser.parse_args(argv)
    if args.quick:
        args.posts, args.authors = min(args.posts, 2000), min(args.authors, 300)
    return args


# -- the storage process -----------------------------------------------------------------------


def storage_process(url: str, conn: Connection) -> None:
    """Store what the serving process sends until it sends an empty message."""
    tune_gc()
    engine, sessions = open_database(url)
    statistics = Statistics()
    tags: dict[tuple[Any, ...], Tag] = {}
    conn.send_bytes(b"ready")  # imported and connected: the clock may start
    try:
        while message := conn.recv_bytes():
            job: Message = pickle.loads(message)
            chat_id, pages, wanted, question_posts, sources = job
            try:
                parsed = Parsed()
                for page in pages:
                    parsed.extend(parse_object(jsonio.loads(page)))
                chosen = {
                    post_id: tags.get(t) or tags.setdefault(t, Tag(*t))
                    for post_id, t in wanted.items()
                }
                with sessions.begin() as session:
                    stored = store_parsed(session, chat_id, parsed, chosen)
                    statistics.grew(session, len(stored.new_posts) + len(stored.newly_collected))
                    questions: dict[int, str] = {}
                    if question_posts is not None:
                        chat = session.get(Chat, chat_id)
                        assert chat is not None
                        record_question_posts(session, chat, question_posts)
                        questions = {q.number: q.text for q in chat.questions}
                    now = datetime.now(UTC)
                    for source, position, posts_read, requests in sources:
                        row = _source_row(session, chat_id, source)
                        if position:
                            row.position = {**row.position, **position}
                        row.posts_read += posts_read
                        row.requests += requests
                        row.updated_at = now
                newly = [record.id for record in stored.newly_collected]
                metrics = {i: stored.metrics[i] for i in newly}
                answer: Answer = (newly, metrics, stored.persons, questions)
                conn.send_bytes(pickle.dumps(("ok", answer), protocol=pickle.HIGHEST_PROTOCOL))
            except Exception:
                conn.send_bytes(pickle.dumps(("failed", traceback.format_exc())))
    finally:
        engine.dispose()


# -- the serving process -----------------------------------------------------------------------


@dataclass(slots=True)
class PageBatch(SourceBatch):
    """A source's batch with the bytes of the pages it was parsed from."""

    pages: list[bytes] = field(default_factory=list)


def with_bytes(line: bytes, page: dict[str, Any], parsed: Parsed) -> SourceBatch:
    """The search source's batch of one page, with the page's bytes."""
    batch = page_batch(line, page, parsed)
    return PageBatch(
        batch.source, batch.parsed, batch.position, batch.posts_read, batch.requests, [line]
    )


@dataclass(slots=True)
class Sent:
    batches: list[SourceBatch]
    parsed: Parsed
    names: dict[str, tuple[str, str]]
    changed: dict[str, Tag]


class SplitRuntime(ChatRuntime):
    """The runtime with its write handed to a storage process over `conn`."""

    conn: Connection

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        # One thread each way: a large send must not wait on the answer the other side is
        # blocked sending.
        sender, receiver = ThreadPoolExecutor(1), ThreadPoolExecutor(1)
        answers: asyncio.Queue[bytes] = asyncio.Queue()

        async def read() -> None:
            while True:
                await answers.put(await loop.run_in_executor(receiver, self.conn.recv_bytes))

        reader = asyncio.create_task(read())
        sent: deque[Sent] = deque()
        try:
            while True:
                # Count batch k once batch k+1 is with the storage process (or nothing waits).
                if sent and (self._queue.empty() or len(sent) > 1):
                    status, answer = pickle.loads(await answers.get())
                    if status != "ok":
                        raise RuntimeError(f"the storage process failed:\n{answer}")
                    self._counted(sent.popleft(), answer)
                    if not sent and self._queue.empty():
                        self._idle.set()
                    continue
                batches = [await self._queue.get()]
                while len(batches) < MAX_MERGE and not self._queue.empty():
                    batches.append(self._queue.get_nowait())
                message, pending = self._tagged(batches)
                sent.append(pending)
                await loop.run_in_executor(sender, self.conn.send_bytes, message)
        finally:
            reader.cancel()
            sender.shutdown(wait=False)
            receiver.shutdown(wait=False, cancel_futures=True)

    def _tagged(self, batches: list[SourceBatch]) -> tuple[bytes, Sent]:
        """Tag the batches (as `_write` does) and make the storage process's message."""
        tagger = self.tagger
        assert tagger is not None
        parsed = Parsed()
        pages: list[bytes] = []
        for batch in batches:
            parsed.extend(batch.parsed)
            assert isinstance(batch, PageBatch)
            pages.extend(batch.pages)
        names = {user.id: (user.username, user.name) for user in parsed.users}
        if any(r.author_id not in names for r in [*parsed.context, *parsed.collected]):
            with self.sessions() as session:  # the runtime would read on its database thread
                names = _names(session, parsed)
        questions_before = tagger.question_posts()
        known = tagger.tags()
        inputs = [
            TagInput.from_text(
                id=record.id,
                author=names.get(record.author_id, ("", ""))[0],
                created_at=record.created_at,
                kind=record.kind,
                in_reply_to_id=record.in_reply_to_id,
                quoted_id=record.quoted_id,
                text=record.text,
            )
            for record in {r.id: r for r in [*parsed.context, *parsed.collected]}.values()
            if record.id not in known
        ]
        changed = tagger.add(inputs)
        tags = {}
        for record in parsed.collected:
            tag = tagger.tag(record.id)
            tags[record.id] = (tag.question, tag.method)
        question_posts = tagger.question_posts()
        job: Message = (
            self.chat_id,
            pages,
            tags,
            question_posts if question_posts != questions_before else None,
            [(b.source, b.position, b.posts_read, b.requests) for b in batches],
        )
        message = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        return message, Sent(batches, parsed, names, changed)

    def _counted(self, sent: Sent, answer: Answer) -> None:
        """What `_write` does after the store, then `_apply`."""
        tagger = self.tagger
        assert tagger is not None
        newly_ids, metrics, persons, questions = answer
        newly = set(newly_ids)
        by_id: dict[str, PostRecord] = {record.id: record for record in sent.parsed.collected}
        records = [by_id[post_id] for post_id in newly_ids]
        copies = self._crossposts_add(records, persons)
        retagged = {
            pid: tag for pid, tag in sent.changed.items() if pid in self.collected or pid in newly
        }
        for pid in newly:
            retagged.setdefault(pid, tagger.tag(pid))
        self.collected.update(newly)
        result = WriteResult(
            [
                _live_post(
                    record,
                    sent.names,
                    retagged.get(record.id),
                    metrics.get(record.id),
                    person=persons[record.author_id],
                    copy_of=copies.get(record.id),
                )
                for record in records
            ],
            [
                (
                    r.id,
                    (
                        r.retweet_count,
                        r.like_count,
                        r.reply_count,
                        r.quote_count,
                        r.impression_count,
                    ),
                )
                for r in sent.parsed.collected
                if r.id not in newly
            ],
            retagged,
            [
                PollState(p.id, p.voting_status, tuple(p.options))
                for p in {p.id: p for p in sent.parsed.polls}.values()
            ],
            questions,
            copies={post_id: first for post_id, first in copies.items() if post_id not in newly},
        )
        self._apply(result, sent.batches)
        for batch in sent.batches:  # as the runtime's worker does once a batch is counted
            for record in batch.parsed.collected:
                self._received_at.pop(record.id, None)


async def _through_split(
    url: str, sessions: Any, lines: list[bytes], check: bool
) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    storage = context.Process(target=storage_process, args=(url, theirs), daemon=True)
    storage.start()
    runtime = SplitRuntime(slug=SLUG, sessions=sessions, broadcast=Broadcast())
    runtime.conn = ours
    await runtime.start()
    if ours.recv_bytes() != b"ready":
        raise SystemExit("the storage process did not start")
    try:
        with GC.measure():
            seconds = await emit_pages(runtime, lines, with_bytes)
        figures = runtime.figures
        assert figures is not None
        collected = len(figures)
        live_all = figures.figures("all")
    finally:
        await runtime.stop()
        ours.send_bytes(b"")
        storage.join(30)
        storage.kill()
    result: dict[str, Any] = {
        "seconds": round(seconds, 3),
        "collected": collected,
        "gc": GC.as_dict(),
    }
    if check:
        result["figures_match_store"] = figures_match_store(sessions, live_all)
    return result


def split_rate(db_factory: Any, lines: list[bytes], posts: int, check: bool) -> dict[str, Any]:
    with db_factory("split") as db:
        with db.sessions.begin() as session:
            create_bench_chat(session)
        result = asyncio.run(_through_split(db.url, db.sessions, lines, check))
    if result["collected"] != posts:
        raise SystemExit(f"the split collected {result['collected']} posts of {posts}")
    result["posts_per_s"] = round(posts / result["seconds"])
    progress(f"  {result['posts_per_s']:,} posts/s in {result['seconds']} s")
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    progress(f"generating {args.posts:,} posts in pages of 100")
    generator = ChatGenerator(seed=args.seed, authors=args.authors)
    lines = [
        json.dumps(page, separators=(",", ":")).encode() for page in generator.pages(args.posts)
    ]
    tune_gc()
    batches = executemany_batches(lines, MAX_MERGE)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tweetchat-bench-", dir=args.workdir) as tmp:
        for backend in backends:
            if backend == "postgresql" and (problem := postgres_available(args.postgres_url)):
                progress(f"PostgreSQL skipped: {problem}")
                results[backend] = {"skipped": problem}
                continue

            def factory(name: str, backend: str = backend) -> Any:
                return fresh_database(backend, Path(tmp), f"split_{name}", args.postgres_url)

            progress(f"{backend}: one process (the runtime)")
            one = runtime_rate(factory, lines, args.posts, args.quick)
            progress(f"{backend}: two processes (storage process)")
            two = split_rate(factory, lines, args.posts, args.quick)
            progress(f"{backend}: bare executemany")
            ceiling = executemany_rate(factory, batches, args.posts)
            results[backend] = {
                "one_process": one,
                "two_processes": two,
                "executemany": ceiling,
                "speedup": round(two["posts_per_s"] / one["posts_per_s"], 3),
                "ratio_one": round(one["posts_per_s"] / ceiling["posts_per_s"], 3),
                "ratio_two": round(two["posts_per_s"] / ceiling["posts_per_s"], 3),
            }
    result = {
        "benchmark": "storage_split",
        "posts": args.posts,
        "results": results,
        "ratio_target": TARGET_RATIO,
        "machine": machine(),
        "quick": args.quick,
    }
    parts = [
        f"{backend}: skipped"
        if "skipped" in entry
        else (
            f"{backend}: {entry['one_process']['posts_per_s']:,} posts/s in one process "
            f"(ratio {entry['ratio_one']}), {entry['two_processes']['posts_per_s']:,} in two "
            f"(ratio {entry['ratio_two']}, x{entry['speedup']})"
        )
        for backend, entry in results.items()
    ]
    emit_result(result, f"ingest split of {args.posts:,} posts: " + "; ".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
