"""Posts per second through parse, tag, store and live update, on SQLite and PostgreSQL.

A generated archive of X API v2 response pages (`benchmarks/common.py`) goes the way a live source
sends it: each page is decoded and parsed (`parse_object`), emitted as a `SourceBatch` into a
`ChatRuntime`, which stores and tags it (`_write`) and updates the live figures (`_apply`); the
clock runs from the first page's decoding until `drained()` and one update built after it. Beside
it, in the same run and database server: a bare `executemany` of the same `posts` and
`chat_posts` rows (SQLAlchemy Core, one transaction per 5,000 posts, the runtime's largest merged
write), the ceiling the issue set; the same rows as ready tuples through the DBAPI cursor's
`executemany` (no SQLAlchemy per-row work at all: the store writes its big tables that way since
`app/db/bulk.py`), the higher ceiling; and `tweetchat import` (`import_files`) of the same
archive as a file.

    .venv/bin/python benchmarks/ingest.py                 # 200,000 posts, SQLite and PostgreSQL
    .venv/bin/python benchmarks/ingest.py --quick         # 2,000 posts, for the smoke test

Prints one JSON object on a line, then one line of plain text.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app import jsonio
from app.chats import get_chat
from app.db.bulk import BulkInsert
from app.ingest.importer import import_files
from app.ingest.parse import Parsed, PostRecord, parse_object
from app.ingest.store import CHAT_POST_COLUMNS, POST_COLUMNS
from app.live.pubsub import Broadcast
from app.live.runtime import MAX_MERGE, ChatRuntime
from app.process import tune_gc
from app.sources.base import SourceBatch
from app.stats import chat_stats
from benchmarks.common import (
    CHAT_POSTS,
    GC,
    POSTS,
    SLUG,
    AutoAnalyze,
    ChatGenerator,
    Database,
    add_database_options,
    chat_post_row,
    create_bench_chat,
    emit_result,
    fresh_database,
    machine,
    mix_of,
    post_row,
    postgres_available,
    progress,
)

TARGET_POSTS_PER_S = 10_000
TARGET_RATIO = 0.5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=200_000, help="collected posts (200,000)")
    parser.add_argument("--per-page", type=int, default=100, help="posts per page (100)")
    parser.add_argument("--authors", type=int, default=3000, help="distinct authors (3,000)")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument(
        "--backends", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql"
    )
    add_database_options(parser)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each measure (median)")
    parser.add_argument("--no-import", action="store_true", help="skip `tweetchat import`")
    parser.add_argument(
        "--check",
        action=argparse.BooleanOptionalAction,
        help="compare the live figures with app.stats' (default: with --quick only; it adds "
        "a full count of the chat to the run)",
    )
    parser.add_argument("--quick", action="store_true", help="a small run (2,000 posts)")
    args = parser.parse_args(argv)
    if args.quick:
        args.posts, args.authors = min(args.posts, 2000), min(args.authors, 300)
    if args.check is None:
        args.check = args.quick
    return args


# -- the runtime path --------------------------------------------------------------------------


def page_batch(line: bytes, page: dict[str, Any], parsed: Parsed) -> SourceBatch:
    """The batch a search source emits for one page."""
    return SourceBatch(
        source="x-search",
        parsed=parsed,
        position={"newest_id": page["meta"]["newest_id"]},
        posts_read=len(parsed.collected) + len(parsed.context),
        requests=1,
        pages=[line],
    )


async def emit_pages(
    runtime: ChatRuntime,
    lines: list[bytes],
    make_batch: Callable[[bytes, dict[str, Any], Parsed], SourceBatch] = page_batch,
) -> float:
    """Decode, parse and emit each page as a live source does, until the runtime has stored,
    tagged and counted them all and built the update that follows; returns the seconds."""
    began = time.perf_counter()
    for line in lines:
        page = jsonio.loads(line)
        await runtime.emit(make_batch(line, page, parse_object(page)))
    await runtime.drained()
    runtime.flush()  # the update the pages would get now
    return time.perf_counter() - began


async def _through_runtime(
    db: Database, lines: list[bytes], check: bool, storage_process: bool
) -> dict[str, Any]:
    with db.sessions.begin() as session:
        create_bench_chat(session)
    runtime = ChatRuntime(
        slug=SLUG, sessions=db.sessions, broadcast=Broadcast(), storage_process=storage_process
    )
    await runtime.start()
    if storage_process:  # started and connected before the clock, as in a chat under way
        await runtime.start_storage()
    try:
        gc.collect()
        with GC.measure():
            seconds = await emit_pages(runtime, lines)
        figures = runtime.figures
        assert figures is not None
        collected = len(figures)
        live_all = figures.figures("all")
    finally:
        await runtime.stop()
    result: dict[str, Any] = {
        "seconds": round(seconds, 3),
        "collected": collected,
        "gc": GC.as_dict(),  # collections during the run, included in its seconds
    }
    if check:
        result["figures_match_store"] = figures_match_store(db.sessions, live_all)
    return result


def figures_match_store(sessions: Any, live_all: dict[str, Any]) -> bool:
    """Whether the live figures (window "all") are what `app.stats` counts of the stored chat
    (trending aside: the live figures leave it to the trends refresh)."""
    with sessions() as session:
        stored = chat_stats(session, get_chat(session, SLUG), "all")
    return {**live_all, "trending": stored["trending"]} == stored


def runtime_rate(
    db_factory: Any, lines: list[bytes], posts: int, check: bool, storage_process: bool = False
) -> dict[str, Any]:
    name = "storage" if storage_process else "runtime"
    with db_factory(name) as db, AutoAnalyze(db) as autovacuum:
        result = asyncio.run(_through_runtime(db, lines, check, storage_process))
    if result["collected"] != posts:
        raise SystemExit(f"the runtime collected {result['collected']} posts of {posts}")
    result["posts_per_s"] = round(posts / result["seconds"])
    if autovacuum.active:
        result["autoanalyze"] = autovacuum.as_dict()
    progress(f"  {result['posts_per_s']:,} posts/s in {result['seconds']} s")
    return result


# -- the ceiling: bare executemany -------------------------------------------------------------


def executemany_batches(
    lines: list[bytes], batch_pages: int
) -> list[tuple[list[PostRecord], list[PostRecord]]]:
    """Per transaction: the posts rows to insert (each post once in the whole run: later copies
    would conflict) and the collected posts."""
    batches = []
    seen: set[str] = set()
    for start in range(0, len(lines), batch_pages):
        posts: list[PostRecord] = []
        collected: list[PostRecord] = []
        for line in lines[start : start + batch_pages]:
            parsed = parse_object(jsonio.loads(line))
            for record in [*parsed.collected, *parsed.context]:
                if record.id not in seen:
                    seen.add(record.id)
                    posts.append(record)
            collected.extend(parsed.collected)
        batches.append((posts, collected))
    return batches


def executemany_rate(
    db_factory: Any, batches: list[tuple[list[PostRecord], list[PostRecord]]], posts: int
) -> dict[str, Any]:
    with db_factory("executemany") as db:
        with db.sessions.begin() as session:
            chat_id = create_bench_chat(session)
        now = datetime.now(UTC)
        rows = [
            (
                [post_row(record, now) for record in batch_posts],
                [chat_post_row(chat_id, record, now) for record in collected],
            )
            for batch_posts, collected in batches
        ]
        began = time.perf_counter()
        for post_rows, chat_rows in rows:
            with db.engine.begin() as conn:
                conn.execute(POSTS.insert(), post_rows)
                conn.execute(CHAT_POSTS.insert(), chat_rows)
        seconds = time.perf_counter() - began
    stored = sum(len(p) for p, _ in rows)
    progress(f"  {round(posts / seconds):,} posts/s in {seconds:.3f} s")
    return {
        "seconds": round(seconds, 3),
        "posts_rows": stored,
        "chat_posts_rows": sum(len(c) for _, c in rows),
        "posts_per_s": round(posts / seconds),
    }


def driver_rows(
    db: Database, chat_id: int, batches: list[tuple[list[PostRecord], list[PostRecord]]]
) -> tuple[BulkInsert, BulkInsert, list[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]]:
    """The same rows as tuples in the driver's own form (times and JSON encoded by the column
    types), with the two plain INSERTs that take them."""
    now = datetime.now(UTC)
    with db.sessions() as session:
        posts = BulkInsert(session, POSTS.insert(), POST_COLUMNS)
        members = BulkInsert(session, CHAT_POSTS.insert(), CHAT_POST_COLUMNS)
        binders = {
            (insert, name): insert.binder(name)
            for insert, columns in ((posts, POST_COLUMNS), (members, CHAT_POST_COLUMNS))
            for name in columns
        }
    rows = []
    for batch_posts, collected in batches:
        post_rows = []
        for record in batch_posts:
            row = post_row(record, now)
            post_rows.append(tuple(binders[posts, name](row[name]) for name in POST_COLUMNS))
        chat_rows = []
        for record in collected:
            row = {
                **chat_post_row(chat_id, record, now),
                "approved": False,
                "person": record.author_id,
            }
            chat_rows.append(tuple(binders[members, name](row[name]) for name in CHAT_POST_COLUMNS))
        rows.append((post_rows, chat_rows))
    return posts, members, rows


def driver_rate(
    db_factory: Any, batches: list[tuple[list[PostRecord], list[PostRecord]]], posts: int
) -> dict[str, Any]:
    """The ceiling with nothing of SQLAlchemy's per-row work: the DBAPI cursor's executemany
    of ready tuples (what `app.db.bulk` hands it), one transaction per batch."""
    with db_factory("driver") as db:
        with db.sessions.begin() as session:
            chat_id = create_bench_chat(session)
        posts_insert, members_insert, rows = driver_rows(db, chat_id, batches)
        began = time.perf_counter()
        for post_rows, chat_rows in rows:
            with db.engine.begin() as conn:
                posts_insert.execute(conn, post_rows)
                members_insert.execute(conn, chat_rows)
        seconds = time.perf_counter() - began
    progress(f"  {round(posts / seconds):,} posts/s in {seconds:.3f} s")
    return {"seconds": round(seconds, 3), "posts_per_s": round(posts / seconds)}


# -- tweetchat import --------------------------------------------------------------------------


def import_rate(db_factory: Any, archive: Path, posts: int) -> dict[str, Any]:
    with db_factory("import") as db:
        with db.sessions.begin() as session:
            create_bench_chat(session)
        with AutoAnalyze(db) as autovacuum:
            began = time.perf_counter()
            report = import_files(db.sessions, slug=SLUG, paths=[archive])
            seconds = time.perf_counter() - began
    if report.newly_collected != posts:
        raise SystemExit(f"the import collected {report.newly_collected} posts of {posts}")
    progress(f"  {round(posts / seconds):,} posts/s in {seconds:.3f} s")
    result: dict[str, Any] = {"seconds": round(seconds, 3), "posts_per_s": round(posts / seconds)}
    if autovacuum.active:
        result["autoanalyze"] = autovacuum.as_dict()
    return result


# -- the run -----------------------------------------------------------------------------------


def measure(values: list[dict[str, Any]]) -> dict[str, Any]:
    """The median run of several (by rate), with every rate seen."""
    ordered = sorted(values, key=lambda v: v["posts_per_s"])
    chosen = dict(ordered[len(ordered) // 2])
    if len(values) > 1:
        chosen["runs_posts_per_s"] = [v["posts_per_s"] for v in values]
    return chosen


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    with tempfile.TemporaryDirectory(prefix="tweetchat-bench-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        progress(f"generating {args.posts:,} posts in pages of {args.per_page}")
        generator = ChatGenerator(seed=args.seed, authors=args.authors)
        pages = list(generator.pages(args.posts, per_page=args.per_page))
        mix = mix_of(pages)
        lines = [json.dumps(page, separators=(",", ":")).encode() for page in pages]
        del pages
        # The process as `tweetchat serve` sets it up (app/process.py), for every measure.
        tune_gc()
        archive = workdir / "archive.jsonl"
        archive.write_bytes(b"\n".join(lines) + b"\n")
        archive_mb = round(archive.stat().st_size / 1e6, 1)

        progress("parse only (decode + parse_object)")
        began = time.perf_counter()
        for line in lines:
            parse_object(jsonio.loads(line))
        parse_seconds = time.perf_counter() - began
        # The runtime's largest transaction: MAX_MERGE posts.
        batches = executemany_batches(lines, max(1, MAX_MERGE // args.per_page))

        results: dict[str, Any] = {}
        for backend in backends:
            if backend == "postgresql":
                problem = postgres_available(args.postgres_url)
                if problem:
                    progress(f"PostgreSQL skipped: {problem}")
                    results[backend] = {"skipped": problem}
                    continue

            def factory(name: str, backend: str = backend) -> Any:
                return fresh_database(backend, workdir, f"ingest_{name}", args.postgres_url)

            def repeated(label: str, run_one: Any, backend: str = backend) -> dict[str, Any]:
                runs = []
                for run in range(args.repeat):
                    progress(f"{backend}: {label}, run {run + 1}")
                    runs.append(run_one())
                return measure(runs)

            entry: dict[str, Any] = {
                "runtime": repeated(
                    "runtime path", lambda: runtime_rate(factory, lines, args.posts, args.check)
                ),
                "storage_process": repeated(
                    "runtime path with a storage process",
                    lambda: runtime_rate(factory, lines, args.posts, args.check, True),
                ),
                "executemany": repeated(
                    "bare executemany", lambda: executemany_rate(factory, batches, args.posts)
                ),
                "driver_executemany": repeated(
                    "DBAPI executemany of tuples",
                    lambda: driver_rate(factory, batches, args.posts),
                ),
            }
            rate = entry["runtime"]["posts_per_s"]
            entry["ratio"] = round(rate / entry["executemany"]["posts_per_s"], 3)
            entry["driver_ratio"] = round(rate / entry["driver_executemany"]["posts_per_s"], 3)
            split = entry["storage_process"]["posts_per_s"]
            entry["storage_ratio"] = round(split / entry["executemany"]["posts_per_s"], 3)
            entry["storage_driver_ratio"] = round(
                split / entry["driver_executemany"]["posts_per_s"], 3
            )
            if not args.no_import:
                entry["import"] = repeated(
                    "tweetchat import", lambda: import_rate(factory, archive, args.posts)
                )
            results[backend] = entry

    sqlite = results.get("sqlite", {})
    targets: dict[str, Any] = {
        "sqlite_posts_per_s_min": TARGET_POSTS_PER_S,
        "ratio_min": TARGET_RATIO,
    }
    # Met if either way the product runs meets it (one process, or with a storage process).
    if "runtime" in sqlite:
        targets["sqlite_rate_met"] = (
            max(sqlite["runtime"]["posts_per_s"], sqlite["storage_process"]["posts_per_s"])
            >= TARGET_POSTS_PER_S
        )
    for backend, entry in results.items():
        if "ratio" in entry:
            targets[f"{backend}_ratio_met"] = (
                max(entry["ratio"], entry["storage_ratio"]) >= TARGET_RATIO
            )
            targets[f"{backend}_driver_ratio_met"] = (
                max(entry["driver_ratio"], entry["storage_driver_ratio"]) >= TARGET_RATIO
            )
    result = {
        "benchmark": "ingest",
        "posts": args.posts,
        "per_page": args.per_page,
        "archive": {**mix, "megabytes": archive_mb},
        "parse_posts_per_s": round(args.posts / parse_seconds),
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
        text = (
            f"{backend}: {entry['runtime']['posts_per_s']:,} posts/s through the runtime "
            f"(ratio {entry['ratio']}), {entry['storage_process']['posts_per_s']:,} with a "
            f"storage process (ratio {entry['storage_ratio']}), "
            f"{entry['executemany']['posts_per_s']:,} bare executemany, "
            f"{entry['driver_executemany']['posts_per_s']:,} DBAPI executemany of tuples"
        )
        if "import" in entry:
            text += f", import {entry['import']['posts_per_s']:,}"
        parts.append(text)
    summary = f"ingest of {args.posts:,} posts: " + "; ".join(parts)
    emit_result(result, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
