"""Import archive files into a chat: read, parse, store in batches, then re-tag the chat.

Files hold X API v2 payloads, Mastodon statuses and Bluesky post views or searchPosts answers, in
any mix (`app.ingest.payloads` tells them apart, object by object). Every post of a file (an X
page's `data`, every status, every post view) is collected for the chat; posts only carried by
others (X's `includes`, a boosted or quoted status, a quoted Bluesky post) are stored as context.
Each batch is its own transaction, so an interrupted import keeps what it stored and a second run
of the same files adds nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from app.chats import get_chat, host_name
from app.db.statistics import Statistics
from app.errors import ArchiveError, InvalidInput
from app.ingest.archive import LineError, read_archive
from app.ingest.parse import Parsed, PayloadError
from app.ingest.payloads import PayloadReader
from app.ingest.store import store_parsed
from app.ingest.tagging import retag_chat

BATCH_POSTS = 2000


@dataclass(slots=True)
class ImportReport:
    files: list[str] = field(default_factory=list)
    objects: int = 0
    posts_in_data: int = 0  # posts in the files' data, copies included
    newly_collected: int = 0  # posts the chat had not collected before
    new_context: int = 0  # context posts stored for the first time
    users: int = 0
    polls: int = 0
    api_errors: int = 0  # partial errors X sent beside the data (deleted posts, ...)
    retagged: int = 0
    # Mastodon replies (and quotes) whose parent status is in none of the files: Mastodon names
    # the parent by the server's local id only, so they are stored unlinked (still replies).
    unlinked: int = 0
    errors: list[LineError] = field(default_factory=list)

    @property
    def already_collected(self) -> int:
        return self.posts_in_data - self.newly_collected


ProgressFn = Callable[[str, int, int], None]  # (file name, bytes done, bytes total)


def mastodon_host(value: str) -> str | None:
    """A Mastodon server given by host name (`mastodon.social`; `https://mastodon.social/` is
    taken too), lower-cased; None when it is not a host name."""
    bare = re.sub(r"^https?://", "", value.strip(), flags=re.IGNORECASE).rstrip("/")
    return host_name(bare) if bare else None


def import_files(
    sessions: sessionmaker[Session],
    *,
    slug: str,
    paths: Sequence[Path],
    batch_posts: int = BATCH_POSTS,
    on_progress: ProgressFn | None = None,
    mastodon_server: str | None = None,
) -> ImportReport:
    """Import `paths` into chat `slug`. Files that cannot be read at all raise `ArchiveError`
    before anything is stored; bad lines inside a file are reported and skipped.

    `mastodon_server`: the host name of the Mastodon server the statuses were read from (the
    domain of its local accounts' handles); None tells it from each status's local accounts."""
    server = None
    if mastodon_server is not None:
        server = mastodon_host(mastodon_server)
        if server is None:
            raise InvalidInput(
                f"--mastodon-server {mastodon_server!r} is not a Mastodon server's host name "
                "(like mastodon.social)"
            )
    with sessions() as session:
        chat_id = get_chat(session, slug).id
    for path in paths:
        if not path.exists():
            raise ArchiveError(f"{path}: no such file")
        if path.is_dir():
            raise ArchiveError(f"{path}: is a folder, not an archive file")
        if path.stat().st_size == 0:
            raise ArchiveError(f"{path}: the file is empty")
    report = ImportReport()
    pending = Parsed()
    reader = PayloadReader(mastodon_server=server)
    statistics = Statistics()

    def flush() -> None:
        nonlocal pending
        if not (pending.collected or pending.context or pending.users or pending.polls):
            return
        with sessions.begin() as session:
            result = store_parsed(session, chat_id, pending)
            statistics.grew(session, len(result.new_posts) + len(result.newly_collected))
        report.newly_collected += len(result.newly_collected)
        collected_ids = {record.id for record in pending.collected}
        report.new_context += sum(
            1 for record in result.new_posts if record.id not in collected_ids
        )
        report.users += len({user.id for user in pending.users})
        report.polls += len({poll.id for poll in pending.polls})
        pending = Parsed()

    for path in paths:
        report.files.append(str(path))
        total = path.stat().st_size
        done = 0

        def advance(count: int, name: str = str(path), total: int = total) -> None:
            nonlocal done
            done += count
            if on_progress:
                on_progress(name, min(done, total), total)

        for entry in read_archive(path, report.errors.append, advance):
            try:
                parsed = reader.read(entry.obj)
            except PayloadError as exc:
                report.errors.append(LineError(str(path), entry.line, str(exc)))
                continue
            report.objects += 1
            report.errors.extend(LineError(str(path), entry.line, p) for p in parsed.problems)
            report.posts_in_data += len(parsed.collected)
            report.api_errors += parsed.api_errors
            pending.extend(parsed)
            if len(pending.collected) + len(pending.context) >= batch_posts:
                flush()
    waited = reader.finish()
    report.posts_in_data += len(waited.collected)
    report.unlinked = reader.unlinked
    pending.extend(waited)
    flush()
    with sessions.begin() as session:
        report.retagged = retag_chat(session, get_chat(session, slug))
    return report
