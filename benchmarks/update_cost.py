"""The cost of adding 1,000 posts to a chat that already holds 1,000, 100,000 or 1,000,000.

Each chat is built fast: a generated archive (`benchmarks/common.py`) is parsed and tagged in
memory and its rows bulk-inserted with `executemany` (accounts, posts, chat_posts with their
tags, the host's question posts on the run of show). Then a `ChatRuntime` starts, which loads the
chat into its live state: that is setup, reported as "runtime start seconds". The measure is the
live path: the next 1,000 posts of the same chat (replies, retweets and quotes of what it holds)
as 10 X API v2 pages, decoded, parsed and emitted into the runtime, until `drained()` and one
update built after it. Every chat is built and started before the first add; then the adds go
round the chats in turn (after a warm-up round), so that other work on the machine weighs on every
size alike, and each size's median is reported.

    .venv/bin/python benchmarks/update_cost.py                  # 1,000 / 100,000 / 1,000,000
    .venv/bin/python benchmarks/update_cost.py --backends sqlite,postgresql --sizes 1000,100000
    .venv/bin/python benchmarks/update_cost.py --quick          # the smoke test's small run

Prints one JSON object on a line, then one line of plain text.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.chats import get_chat
from app.ingest.parse import PostRecord, parse_object
from app.ingest.tagger import Tagger, TagInput
from app.ingest.tagging import chat_plan, record_question_posts
from app.live.pubsub import Broadcast
from app.live.runtime import ChatRuntime
from benchmarks.common import (
    ACCOUNTS,
    CHAT_POSTS,
    CHAT_START,
    GC,
    POSTS,
    SLUG,
    AutoAnalyze,
    ChatGenerator,
    Database,
    account_row,
    add_database_options,
    chat_post_row,
    create_bench_chat,
    emit_result,
    fresh_database,
    machine,
    median,
    post_row,
    postgres_available,
    progress,
)
from benchmarks.ingest import emit_pages

TARGET_RATIO = 1.5
# The preloaded posts fill the time from an hour before the chat to 54 minutes into it (all six
# questions asked); each added 1,000 come in the next 20 seconds, as in a busy live chat.
PRELOAD_START = CHAT_START - timedelta(hours=1)
PRELOAD_END = CHAT_START + timedelta(minutes=54)
ADD_SPAN = timedelta(seconds=20)
CHUNK = 50_000  # posts generated, parsed and inserted at a time while building a chat


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", help="posts the chat holds before, a comma list (1000,100000,1000000)"
    )
    parser.add_argument("--add", type=int, default=1000, help="posts added each time (1,000)")
    parser.add_argument("--repeats", type=int, default=9, help="measured adds per size (9)")
    parser.add_argument("--warmup", type=int, default=1, help="adds before measuring (1)")
    parser.add_argument("--per-page", type=int, default=100)
    parser.add_argument("--authors", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--backends", default="sqlite", help="comma-separated: sqlite, postgresql")
    add_database_options(parser)
    parser.add_argument("--quick", action="store_true", help="a small run (1,000 and 5,000)")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = args.sizes or "1000,5000"
        args.add, args.repeats, args.authors = min(args.add, 200), min(args.repeats, 2), 300
    args.sizes = args.sizes or "1000,100000,1000000"
    args.size_list = [int(s) for s in args.sizes.split(",") if s.strip()]
    return args


# -- building a chat fast ----------------------------------------------------------------------


def bulk_load(db: Database, generator: ChatGenerator, size: int, per_page: int) -> dict[str, Any]:
    """Insert a chat of `size` posts directly; returns what it took."""
    began = time.perf_counter()
    with db.sessions.begin() as session:
        chat_id = create_bench_chat(session)
        plan = chat_plan(get_chat(session, SLUG))
    now = datetime.now(UTC)
    users = generator.users()
    names = {user.id: user.username for user in users}
    with db.engine.begin() as conn:
        conn.execute(ACCOUNTS.insert(), [account_row(user) for user in users])
    tagger = Tagger(plan)
    stored: set[str] = set()
    # (id, created_at, author, kind) of each collected post: its chat_posts row is written at the
    # end, once every post is in the tagger (a question post re-tags the posts before it).
    collected: list[PostRecord] = []
    span = (PRELOAD_END - PRELOAD_START) / max(size, 1)
    done = 0
    while done < size:
        count = min(CHUNK, size - done)
        start = PRELOAD_START + span * done
        rows: list[dict[str, Any]] = []
        inputs: list[TagInput] = []
        for page in generator.pages(count, start, start + span * count, per_page):
            parsed = parse_object(page)
            for record in [*parsed.context, *parsed.collected]:
                if record.id in stored:
                    continue
                stored.add(record.id)
                rows.append(post_row(record, now))
                inputs.append(
                    TagInput.from_text(
                        id=record.id,
                        author=names.get(record.author_id, ""),
                        created_at=record.created_at,
                        kind=record.kind,
                        in_reply_to_id=record.in_reply_to_id,
                        quoted_id=record.quoted_id,
                        text=record.text,
                    )
                )
            for record in parsed.collected:
                record.raw = {}  # kept for its chat_posts row only
            collected.extend(parsed.collected)
        tagger.add(inputs)
        with db.engine.begin() as conn:
            conn.execute(POSTS.insert(), rows)
        done += count
        progress(f"  {done:,} of {size:,} posts inserted")
    chat_rows = []
    for record in collected:
        tag = tagger.tag(record.id)
        chat_rows.append(chat_post_row(chat_id, record, now, tag.question, tag.method))
    with db.engine.begin() as conn:
        for start_row in range(0, len(chat_rows), CHUNK):
            conn.execute(CHAT_POSTS.insert(), chat_rows[start_row : start_row + CHUNK])
    with db.sessions.begin() as session:
        record_question_posts(session, get_chat(session, SLUG), tagger.question_posts())
    return {
        "posts_rows": len(stored),
        "chat_posts_rows": len(chat_rows),
        "bulk_load_seconds": round(time.perf_counter() - began, 2),
    }


# -- the measure -------------------------------------------------------------------------------


@dataclass
class Chat:
    """One chat of the run: its database, its generator (to continue it) and its runtime."""

    size: int
    db: Database
    generator: ChatGenerator
    runtime: ChatRuntime
    built: dict[str, Any]
    start_seconds: float
    adds: list[dict[str, Any]] = field(default_factory=list)


async def start_chat(db: Database, args: argparse.Namespace, size: int) -> Chat:
    generator = ChatGenerator(seed=args.seed, authors=args.authors)
    progress(f"{db.backend}: building a chat of {size:,} posts")
    built = bulk_load(db, generator, size, args.per_page)
    AutoAnalyze(db).analyze_now()  # what autovacuum does soon after a bulk load
    gc.collect()
    runtime = ChatRuntime(slug=SLUG, sessions=db.sessions, broadcast=Broadcast())
    began = time.perf_counter()
    await runtime.start()
    start_seconds = time.perf_counter() - began
    assert runtime.figures is not None
    progress(f"{db.backend}: runtime started in {start_seconds:.1f} s holding {size:,}")
    if len(runtime.figures) != size:
        raise SystemExit(f"the runtime holds {len(runtime.figures)} posts, not {size}")
    return Chat(size, db, generator, runtime, built, start_seconds)


async def add_to(chat: Chat, args: argparse.Namespace, run: int) -> None:
    """Add the chat's next `args.add` posts through its runtime; record the time it took."""
    figures = chat.runtime.figures
    assert figures is not None
    at = PRELOAD_END + ADD_SPAN * run
    pages = chat.generator.pages(args.add, at, at + ADD_SPAN, args.per_page)
    lines = [json.dumps(page, separators=(",", ":")).encode() for page in pages]
    before = len(figures)
    with GC.measure():
        seconds = await emit_pages(chat.runtime, lines)
    if len(figures) != before + args.add:
        raise SystemExit(f"an add took {len(figures) - before} posts of {args.add}")
    chat.adds.append({"posts_before": before, "seconds": round(seconds, 4), "gc": GC.as_dict()})


def chat_result(chat: Chat, warmup: int, add: int) -> dict[str, Any]:
    measured = [a["seconds"] for a in chat.adds[warmup:]]
    return {
        "posts": chat.size,
        **chat.built,
        "runtime_start_seconds": round(chat.start_seconds, 2),
        "add_seconds_median": round(median(measured), 4),
        "add_seconds_min": round(min(measured), 4),
        "add_seconds_max": round(max(measured), 4),
        "add_posts_per_s": round(add / median(measured)),
        "adds": chat.adds,
    }


async def measure_backend(
    backend: str, args: argparse.Namespace, workdir: Path
) -> list[dict[str, Any]]:
    """Every size's chat is built and started first; then the adds go round the chats in turn,
    so that whatever else the machine is doing weighs on every size alike."""
    with contextlib.ExitStack() as stack:
        chats: list[Chat] = []
        try:
            for size in args.size_list:
                db = stack.enter_context(
                    fresh_database(backend, workdir, f"update_{size}", args.postgres_url)
                )
                chats.append(await start_chat(db, args, size))
            with contextlib.ExitStack() as analyzers:
                for chat in chats:
                    analyzers.enter_context(AutoAnalyze(chat.db))
                for run in range(args.warmup + args.repeats):
                    for chat in chats:
                        await add_to(chat, args, run)
                    progress(f"{backend}: round {run + 1} of {args.warmup + args.repeats} done")
        finally:
            for chat in chats:
                await chat.runtime.stop()
        return [chat_result(chat, args.warmup, args.add) for chat in chats]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tweetchat-bench-", dir=args.workdir) as tmp:
        for backend in backends:
            if backend == "postgresql":
                problem = postgres_available(args.postgres_url)
                if problem:
                    progress(f"PostgreSQL skipped: {problem}")
                    results[backend] = {"skipped": problem}
                    continue
            sizes = asyncio.run(measure_backend(backend, args, Path(tmp)))
            gc.collect()
            entry: dict[str, Any] = {"sizes": sizes}
            smallest, largest = sizes[0], sizes[-1]
            entry["ratio_largest_to_smallest"] = round(
                largest["add_seconds_median"] / smallest["add_seconds_median"], 3
            )
            results[backend] = entry
    targets: dict[str, Any] = {"ratio_max": TARGET_RATIO}
    for backend, entry in results.items():
        if "ratio_largest_to_smallest" in entry:
            targets[f"{backend}_ratio_met"] = entry["ratio_largest_to_smallest"] <= TARGET_RATIO
    result = {
        "benchmark": "update_cost",
        "add": args.add,
        "per_page": args.per_page,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "results": results,
        "targets": targets,
        "machine": machine(),
        "quick": args.quick,
    }
    parts = []
    for backend, entry in results.items():
        if "skipped" in entry:
            parts.append(f"{backend}: skipped")
            continue
        each = ", ".join(
            f"{s['posts']:,}: {s['add_seconds_median'] * 1000:.0f} ms "
            f"(start {s['runtime_start_seconds']:.1f} s)"
            for s in entry["sizes"]
        )
        parts.append(f"{backend}: {each}; largest/smallest {entry['ratio_largest_to_smallest']}")
    summary = f"adding {args.add:,} posts (median of {args.repeats}): " + "; ".join(parts)
    emit_result(result, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
