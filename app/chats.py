"""Chats and their run of show: create, look up, list, and read the values people type."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from app.db.models import SOURCES, Chat, Question, Series
from app.errors import Conflict, InvalidInput, NotFound, UnknownChat

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
HASHTAG_RE = re.compile(r"^#?(\w{1,100})$")
# A host name: dot-separated labels of letters, digits and inner dashes, the last a word
# (not an IP address). Mastodon servers and Bluesky handles are host names.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOST_RE = re.compile(rf"^(?:{_LABEL}\.)+[a-z](?:[a-z0-9-]{{0,61}}[a-z0-9])?$")
MAX_HOST = 253
# Accounts, one pattern per network; compared without case everywhere (tagger, figures,
# unanswered queue), so the Mastodon and Bluesky forms are stored lower-cased.
ACCOUNT_RE = re.compile(r"^@?(\w{1,50})$")  # an X username: WarwickBSchool
MASTODON_HANDLE_RE = re.compile(r"^@?([a-z0-9_][a-z0-9_.-]{0,63})@([^@\s]+)$", re.IGNORECASE)
MAX_WINDOW = timedelta(days=14)
ACCOUNT_FORMS = (
    "an X username (WarwickBSchool), a Mastodon handle (wbs@mastodon.social) or a Bluesky "
    "handle (wbs.bsky.social)"
)


@dataclass(frozen=True, slots=True)
class QuestionPlan:
    number: int
    text: str
    planned_at: datetime | None = None


def parse_when(value: str, what: str) -> datetime:
    """An ISO 8601 time with a zone (`2023-03-28T18:00:00Z`, `…+01:00`) as aware UTC."""
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{what} {value!r} is not a date and time; write it like 2023-03-28T18:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        raise InvalidInput(
            f"{what} {value!r} has no time zone; add Z for UTC (2023-03-28T18:00:00Z) or an offset"
        )
    return parsed.astimezone(UTC)


def parse_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"unknown time zone {name!r}; use a name like Europe/London or UTC"
        ) from None


def split_list(value: str | Sequence[str] | None) -> list[str]:
    """`'a,b'`, `['a', 'b,c']` or None as a flat list of non-empty, stripped items."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


def normalise_hashtags(values: Sequence[str]) -> list[str]:
    tags: list[str] = []
    for value in values:
        match = HASHTAG_RE.match(value.strip())
        if not match:
            raise InvalidInput(f"{value!r} is not a hashtag (letters, digits and _ after #)")
        tag = "#" + match.group(1)
        if tag.lower() not in {t.lower() for t in tags}:
            tags.append(tag)
    return tags


def host_name(value: str) -> str | None:
    """`value` as a lower-case ASCII host name (international names in their `xn--` form), or
    None when it is not one."""
    text = value.strip().rstrip(".")
    try:
        ascii_name = text.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    if len(ascii_name) > MAX_HOST or not HOST_RE.match(ascii_name):
        return None
    return ascii_name


def account_name(value: str) -> str | None:
    """An account as the posts of its network name it (the store's username): an X username as
    given, a Mastodon handle `user@domain` or a Bluesky handle lower-cased and without a leading
    `@`; None when `value` is none of these."""
    text = value.strip()
    match = ACCOUNT_RE.match(text)
    if match:
        return match.group(1)
    match = MASTODON_HANDLE_RE.match(text)
    if match:
        domain = host_name(match.group(2))
        return f"{match.group(1).lower()}@{domain}" if domain else None
    if "." in text:
        return host_name(text.removeprefix("@"))
    return None


def normalise_accounts(values: Sequence[str], what: str) -> list[str]:
    """Hosts or panel members, each once (any case), on any network."""
    accounts: list[str] = []
    for value in values:
        name = account_name(value)
        if name is None:
            raise InvalidInput(f"{what} {value!r} is not an account: write {ACCOUNT_FORMS}")
        if name.lower() not in {a.lower() for a in accounts}:
            accounts.append(name)
    return accounts


def normalise_servers(values: Sequence[str]) -> list[str]:
    """Mastodon servers by host name (`mastodon.social`; `https://mastodon.social/` is taken
    too), lower-cased, each once."""
    servers: list[str] = []
    for value in values:
        text = value.strip()
        bare = re.sub(r"^https?://", "", text, flags=re.IGNORECASE).rstrip("/")
        host = host_name(bare)
        if host is None:
            raise InvalidInput(
                f"--mastodon {value!r} is not a Mastodon server's host name "
                "(like mastodon.social or fosstodon.org)"
            )
        if host not in servers:
            servers.append(host)
    return servers


@dataclass(frozen=True, slots=True)
class ChatSources:
    """The live sources a chat names: its X source, its Mastodon servers, Bluesky or not."""

    x: str = "none"  # x-search, x-stream or none
    mastodon: tuple[str, ...] = ()
    bluesky: bool = False

    @classmethod
    def of(cls, chat: Chat) -> ChatSources:
        return cls(
            x=chat.source,
            mastodon=tuple(str(host) for host in chat.mastodon_servers or ()),
            bluesky=bool(chat.bluesky),
        )

    @property
    def live(self) -> bool:
        """Whether any live source follows the chat (else it is filled by imports only)."""
        return self.x != "none" or bool(self.mastodon) or self.bluesky

    def describe(self) -> str:
        """`x-search, Mastodon (mastodon.social, fosstodon.org), Bluesky`, or `none`."""
        parts = [self.x] if self.x != "none" else []
        if self.mastodon:
            parts.append(f"Mastodon ({', '.join(self.mastodon)})")
        if self.bluesky:
            parts.append("Bluesky")
        return ", ".join(parts) or "none (imports only)"


_PLANNED_RE = re.compile(r"^(?P<h>\d{1,2}):(?P<m>\d{2})\s+(?P<text>.*)$", re.DOTALL)


def parse_question_spec(spec: str, number: int, start: datetime, zone: ZoneInfo) -> QuestionPlan:
    """`"18:05 Let's start with a poll!"` → question `number` planned at 18:05 in `zone` on the
    chat's start date (the next day when that is before the start); the time is optional."""
    text = spec.strip()
    match = _PLANNED_RE.match(text)
    if not match:
        if not text:
            raise InvalidInput(f"question {number} is empty")
        return QuestionPlan(number, text, None)
    hour, minute = int(match["h"]), int(match["m"])
    if hour > 23 or minute > 59:
        raise InvalidInput(f"question {number}: {match['h']}:{match['m']} is not a time of day")
    local_start = start.astimezone(zone)
    planned = datetime.combine(local_start.date(), time(hour, minute), tzinfo=zone)
    if planned < local_start - timedelta(hours=1):
        planned += timedelta(days=1)
    return QuestionPlan(number, match["text"].strip(), planned.astimezone(UTC))


def create_chat(
    session: Session,
    *,
    slug: str,
    title: str,
    hashtags: Sequence[str],
    hosts: Sequence[str],
    panel: Sequence[str] = (),
    start: datetime,
    end: datetime,
    series: str | None = None,
    source: str = "none",
    mastodon: Sequence[str] = (),
    bluesky: bool = False,
    timezone: str = "UTC",
    questions: Sequence[QuestionPlan] = (),
) -> Chat:
    """A new chat. `source` is its X source (x-search, x-stream or none), `mastodon` the host
    names of the Mastodon servers it follows, `bluesky` whether it follows Bluesky too."""
    if not SLUG_RE.match(slug):
        raise InvalidInput(
            f"chat slug {slug!r} must be lower-case letters, digits and dashes "
            "(e.g. leadingqi-2023-03)"
        )
    if not title.strip():
        raise InvalidInput("a chat needs a title")
    tags = normalise_hashtags(hashtags)
    if not tags:
        raise InvalidInput("a chat needs at least one hashtag (--hashtags '#LeadingQI,#QIHour')")
    host_names = normalise_accounts(hosts, "host")
    if not host_names:
        raise InvalidInput("a chat needs at least one host account (--host WarwickBSchool)")
    panel_names = normalise_accounts(panel, "panel member")
    if end <= start:
        raise InvalidInput(f"the chat ends ({end:%Y-%m-%dT%H:%M:%SZ}) before it starts")
    if end - start > MAX_WINDOW:
        raise InvalidInput("a chat window longer than 14 days is not a tweetchat; check --end")
    if source not in SOURCES:
        raise InvalidInput(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    servers = normalise_servers(mastodon)
    parse_zone(timezone)
    numbers = [q.number for q in questions]
    if len(set(numbers)) != len(numbers):
        raise InvalidInput("two questions have the same number")
    if session.scalar(select(Chat.id).where(Chat.slug == slug)) is not None:
        raise Conflict(f"a chat {slug!r} exists already")
    series_row = None
    if series:
        if not SLUG_RE.match(series):
            raise InvalidInput(f"series {series!r} must be lower-case letters, digits and dashes")
        series_row = session.scalar(select(Series).where(Series.slug == series))
        if series_row is None:
            series_row = Series(slug=series, title=series)
            session.add(series_row)
    chat = Chat(
        slug=slug,
        title=title.strip(),
        hashtags=tags,
        hosts=host_names,
        panel=panel_names,
        start_at=start,
        end_at=end,
        timezone=timezone,
        source=source,
        mastodon_servers=servers,
        bluesky=bluesky,
        series=series_row,
        created_at=datetime.now(UTC),
        questions=[
            Question(number=q.number, text=q.text, planned_at=q.planned_at, planned=True)
            for q in questions
        ],
    )
    session.add(chat)
    session.flush()
    return chat


def get_chat(session: Session, slug: str) -> Chat:
    chat = session.scalar(
        select(Chat).where(Chat.slug == slug).options(selectinload(Chat.questions))
    )
    if chat is None:
        raise UnknownChat(slug)
    return chat


def get_series(session: Session, slug: str) -> Series:
    series = session.scalar(select(Series).where(Series.slug == slug))
    if series is None:
        known = ", ".join(session.scalars(select(Series.slug).order_by(Series.slug))) or "none yet"
        raise NotFound(f"no series {slug!r} (series: {known}); a chat joins one with --series")
    return series


def list_chats(session: Session) -> list[Chat]:
    return list(session.scalars(select(Chat).order_by(Chat.start_at.desc())))
