"""Replay: play an archive on a simulated clock, exactly as the live sources feed the pipeline.

Posts are released in the order they were posted; the wait between two posts is their real gap
divided by `speed` (`--speed 60` plays an hour in a minute), and never longer than `max_gap`
seconds, so a quiet night before a chat does not stall a rehearsal. Each post travels with what a
live response would have carried with it: its author, the posts it references that the archive
only has as context, their authors, and its poll. The position (the last post released) is saved
with each batch, so a restarted replay carries on where it stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from app.errors import ArchiveError
from app.ingest.archive import LineError, read_archive
from app.ingest.parse import (
    Parsed,
    PayloadError,
    PollRecord,
    PostRecord,
    UserRecord,
    time_order,
)
from app.ingest.payloads import PayloadReader
from app.sources.base import SourceBatch, SourceContext, SourceStatus
from app.stats import iso_time

SOURCE = "replay"


@dataclass(slots=True)
class Timeline:
    """An archive's collected posts in posting order, with what each needs beside it."""

    posts: list[PostRecord]
    users: dict[str, UserRecord]
    context: dict[str, PostRecord]
    polls: dict[str, PollRecord]
    errors: list[LineError]

    def batch_for(self, records: list[PostRecord]) -> Parsed:
        parsed = Parsed(collected=list(records))
        authors: set[str] = set()
        for record in records:
            authors.add(record.author_id)
            if record.in_reply_to_user_id:
                authors.add(record.in_reply_to_user_id)
            for ref in (record.in_reply_to_id, record.quoted_id, record.retweeted_id):
                if ref and ref in self.context:
                    parsed.context.append(self.context[ref])
                    authors.add(self.context[ref].author_id)
            if record.poll_id and record.poll_id in self.polls:
                parsed.polls.append(self.polls[record.poll_id])
        parsed.users = [self.users[a] for a in sorted(authors) if a in self.users]
        return parsed


def load_timeline(path: Path, *, mastodon_server: str | None = None) -> Timeline:
    """The posts of an archive in time order, of any network `tweetchat import` reads (X pages
    and tweets, Mastodon statuses, Bluesky posts; `mastodon_server` as for the import)."""
    errors: list[LineError] = []
    collected: dict[str, PostRecord] = {}
    context: dict[str, PostRecord] = {}
    users: dict[str, UserRecord] = {}
    polls: dict[str, PollRecord] = {}
    reader = PayloadReader(mastodon_server=mastodon_server)

    def take(parsed: Parsed) -> None:
        for record in parsed.collected:
            collected.setdefault(record.id, record)
        for record in parsed.context:
            context.setdefault(record.id, record)
        users.update({user.id: user for user in parsed.users})
        polls.update({poll.id: poll for poll in parsed.polls})

    for entry in read_archive(path, errors.append):
        try:
            parsed = reader.read(entry.obj)
        except PayloadError as exc:
            errors.append(LineError(str(path), entry.line, str(exc)))
            continue
        errors.extend(LineError(str(path), entry.line, p) for p in parsed.problems)
        take(parsed)
    # Mastodon replies whose parent came later in the file (a tag timeline is newest first).
    waited = reader.finish()
    for record in waited.collected:
        collected[record.id] = record
    take(Parsed(context=waited.context, users=waited.users, polls=waited.polls))
    if not collected:
        raise ArchiveError(f"{path}: holds no posts to replay")
    for post_id in collected:
        context.pop(post_id, None)  # a collected post is released at its own time
    posts = sorted(collected.values(), key=time_order)
    return Timeline(posts, users, context, polls, errors)


Sleep = Callable[[float], Awaitable[None]]


async def run_replay(
    ctx: SourceContext,
    timeline: Timeline,
    *,
    speed: float = 60.0,
    max_gap: float = 5.0,
    sleep: Sleep = asyncio.sleep,
) -> None:
    """Release the timeline's posts into `ctx` on the simulated clock, then report `stopped`."""
    if speed <= 0:
        raise ValueError("speed must be positive")
    done_id = ctx.position.get("replayed_id")
    posts = timeline.posts
    if done_id is not None:
        # Resume after the last released post (ids are unique, times may tie).
        order = {record.id: i for i, record in enumerate(posts)}
        posts = posts[order.get(str(done_id), -1) + 1 :]
    ctx.report(SourceStatus(SOURCE, "running", f"replaying {len(posts)} posts at {speed:g}x"))
    index = 0
    previous = posts[0].created_at if posts else None
    while index < len(posts):
        current = posts[index].created_at
        assert previous is not None
        wait = min((current - previous).total_seconds() / speed, max_gap)
        if wait > 0:
            await sleep(wait)
        # Posts of the same second go together, as a live response would bring them.
        group = [posts[index]]
        index += 1
        while index < len(posts) and posts[index].created_at == current:
            group.append(posts[index])
            index += 1
        last = group[-1]
        await ctx.emit(
            SourceBatch(
                source=SOURCE,
                parsed=timeline.batch_for(group),
                position={"replayed_id": last.id, "replayed_until": iso_time(last.created_at)},
                posts_read=0,
                requests=0,
            )
        )
        previous = current
    ctx.report(SourceStatus(SOURCE, "stopped", "replay finished"))
