"""The Mastodon source: follow a chat's hashtags on one or more Mastodon servers.

Every server is read through its own REST API (`MastodonClient`): by polling its hashtag timeline
(`GET /api/v1/timelines/tag/{tag}?any[]=...`, at most four hashtags a call), or, when a user token
is configured, by its hashtag streams (`GET /api/v1/streaming/hashtag?tag=...`, server-sent events),
with one timeline round after every (re)connect so that a gap loses nothing. What comes out is the
same as from the X sources: `SourceBatch`es of `Parsed` records (network "mastodon") emitted into
the chat's `SourceContext`, and `SourceStatus`es reported as the source's state changes.

Identity across servers. A status has a different local id on every server that knows it, so a
post's id is the status's canonical ActivityPub `uri`; the same status read from two servers is one
post. An account's id and username are its full handle `user@domain` (a local account's `acct` has
no domain: the server's own, from `GET /api/v2/instance`, is added). Reblogs are retweets (the
reblogged status goes into `Parsed.context`), quotes (Mastodon 4.4's `quote`) are quotes, and a
reply's `in_reply_to_id`, a local id of the server read, becomes its parent's uri: from the statuses
already seen on that server, or by fetching the parent once (`GET /api/v1/statuses/:id`; it goes
into the context like X's `includes.tweets`; a deleted or private parent stays None and counts in
`Parsed.api_errors`). Real Mastodon leaves reblogs out of hashtag timelines and streams, so reblog
figures come from the statuses' `reblogs_count`; a server that does send them is read all the same.

Position. `{"servers": {host: {group_key: newest_local_id}}}`, one newest local id per server and
per group of hashtags (`tag_groups`, e.g. "leadingqi,qihour"), carried by the last batch of each
timeline round (the whole map, so a shallow merge keeps every server's entry). A first round pages
backwards (`max_id`, the Link header's `rel="next"`) from the newest status down to the chat's start
minus its lookback; later rounds page forwards (`min_id`, `rel="prev"`) until a page is empty.
Mastodon gives a status that reaches a server late (federation delay) an id from its publication
time, below ids already seen; so each forward round starts `late_margin` seconds of ids before the
stored newest id (statuses already emitted by this process are not emitted again; after a restart
that margin is read again and its statuses, stored once by the pipeline, emitted again).

Failures. 429 waits until `X-RateLimit-Reset` (an ISO 8601 time), and calls slow down while
`X-RateLimit-Remaining` is low (300 calls per 5 minutes by default); 5xx and network errors back
off (`http.Backoff`); 401/403 (and other 4xx) stop that server with its reason. A stream silent
(not even a `:thump` heartbeat) for `keepalive_timeout` seconds is reconnected; meanwhile the
chat's other hashtags' streams may have moved the position on, so its catch-up round reads from
the position as of the stream's last byte (`_GroupState.since`), not the position now.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import anyio
import httpx

from app.config import MASTODON_LATE_MARGIN
from app.ingest.parse import (
    Parsed,
    PayloadError,
    PollRecord,
    PostRecord,
    UserRecord,
    parse_datetime,
)
from app.sources.base import SourceBatch, SourceContext, State
from app.sources.html_text import html_to_text
from app.sources.http import (
    ApiClient,
    ApiDialect,
    ApiError,
    AuthError,
    Backoff,
    ErrorKinds,
    NetworkError,
    RateLimited,
    RateLimitHeaders,
    Reporter,
    RequestError,
    RetryingCaller,
    ServerError,
    StopEvent,
    StreamStalled,
    run_source,
    stream_lines,
    unwrapped_task_group,
)

T = TypeVar("T")

NETWORK = "mastodon"
SOURCE = "mastodon"
POSITION_KEY = "servers"

TIMELINE_PATH = "/api/v1/timelines/tag/{tag}"
STATUS_PATH = "/api/v1/statuses/{id}"
STREAM_PATH = "/api/v1/streaming/hashtag"
INSTANCE_PATHS = ("/api/v2/instance", "/api/v1/instance")

# A tag timeline page holds at most 40 statuses; one call asks for at most four hashtags (the
# first in the path, up to three more in `any[]`).
MAX_LIMIT = 40
TAGS_PER_CALL = 4
# Local ids of statuses seen, per server, kept to resolve replies without asking again.
MAX_KNOWN_IDS = 100_000
# Statuses emitted by this process, by (server, local id), not emitted again.
MAX_EMITTED = 100_000
# Mastodon's snowflake ids: milliseconds since the epoch, shifted left 16 bits.
SNOWFLAKE_SHIFT = 16
_SNOWFLAKE_MS_RANGE = (1_262_304_000_000, 4_102_444_800_000)  # 2010 to 2100


# -- errors ----------------------------------------------------------------------------------
#
# Each also subclasses the `app.sources.http` error of its kind, so that `RetryingCaller` (wait out
# 429s, back off on 5xx and network errors, let 4xx through) serves every network.


class MastodonError(ApiError):
    """A request to a Mastodon server failed; `str()` says which server and what happened."""


class MastodonNetworkError(MastodonError, NetworkError):
    """No HTTP answer from the server (connection refused or dropped, a timeout)."""


class MastodonStreamStalled(MastodonNetworkError, StreamStalled):
    """An open stream sent no byte, not even a heartbeat, within the timeout."""


class MastodonRateLimited(MastodonError, RateLimited):
    """429: the server's rate limit is used up until `reset_at`."""


class MastodonServerError(MastodonError, ServerError):
    """5xx (or an unreadable answer): the same request may succeed later."""


class MastodonAuthError(MastodonError, AuthError):
    """401/403: the token is wrong or lacks a scope, or the server refuses unauthenticated
    access; asking again cannot help."""


class MastodonRequestError(MastodonError, RequestError):
    """Another 4xx: 404 (a deleted status), 410, 422... for this request, for good."""


def _iso_reset(value: str) -> datetime | None:
    try:
        return parse_datetime(value, "X-RateLimit-Reset")
    except PayloadError:
        return None


def _reason(body: Any) -> str:
    """The server's reason: Mastodon's `{"error": ..., "error_description": ...}` (a proxy's 503
    page is HTML, and gives none)."""
    if not isinstance(body, dict):
        return ""
    parts = [
        str(body[key]).strip()
        for key in ("error", "error_description")
        if isinstance(body.get(key), str) and body[key].strip()
    ]
    return ": ".join(dict.fromkeys(parts))


# Mastodon's `X-RateLimit-Limit/-Remaining/-Reset` give the reset as an ISO 8601 time. Each
# client names its server (`name`) after its host.
MASTODON = ApiDialect(
    "Mastodon",
    RateLimitHeaders("x-ratelimit-", _iso_reset),
    ErrorKinds(
        MastodonNetworkError,
        MastodonRateLimited,
        MastodonServerError,
        MastodonAuthError,
        MastodonRequestError,
        stalled=MastodonStreamStalled,
    ),
    reason=_reason,
)


# -- ids -------------------------------------------------------------------------------------


def _id_key(local_id: str) -> tuple[int, str]:
    # Numeric ids (Mastodon's) compare as numbers; fixed-length flake ids (Pleroma's) as text.
    return (len(local_id), local_id)


def newest_local_id(*ids: str | None) -> str | None:
    """The newest of a server's local status ids."""
    known = [value for value in ids if value]
    return max(known, key=_id_key) if known else None


def oldest_local_id(*ids: str | None) -> str | None:
    known = [value for value in ids if value]
    return min(known, key=_id_key) if known else None


def rewind_id(local_id: str, seconds: float) -> str:
    """A Mastodon snowflake id `seconds` earlier than `local_id` (the same id when it is not a
    snowflake, or `seconds` is 0)."""
    if seconds <= 0 or not local_id.isdigit():
        return local_id
    millis = int(local_id) >> SNOWFLAKE_SHIFT
    if not _SNOWFLAKE_MS_RANGE[0] <= millis <= _SNOWFLAKE_MS_RANGE[1]:
        return local_id
    earlier = max(millis - int(seconds * 1000), 0) << SNOWFLAKE_SHIFT
    return str(earlier)


# -- the client ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimelinePage:
    """One page of a timeline, newest first, with the Link header's cursors."""

    statuses: list[dict[str, Any]]
    next_max_id: str | None  # rel="next": older statuses
    prev_min_id: str | None  # rel="prev": newer statuses


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str
    data: str


class MastodonStream:
    """An open server-sent-events response of Mastodon's streaming API."""

    def __init__(self, response: httpx.Response, dialect: ApiDialect, endpoint: str) -> None:
        self._response = response
        self._dialect = dialect
        self._endpoint = endpoint
        self.heartbeats = 0
        self.events_received = 0
        self.last_byte = time.monotonic()  # when the last line came (or the stream opened)

    async def events(self) -> AsyncIterator[SseEvent]:
        """Each event (`update`, `delete`, `status.update`...); heartbeats (lines starting with
        `:`) are counted, not yielded. Ends when the server closes the stream; raises
        MastodonStreamStalled if nothing comes within the read timeout, MastodonNetworkError if
        the connection breaks."""
        event = ""
        data: list[str] = []
        silence = (
            f"the {self._endpoint} stream of {self._dialect.name} sent nothing, not even a "
            "heartbeat, within the timeout"
        )
        lines = stream_lines(self._response, self._dialect, self._endpoint, silence)
        async with aclosing(lines):
            async for line in lines:
                self.last_byte = time.monotonic()
                if not line:
                    if data:
                        self.events_received += 1
                        yield SseEvent(event or "message", "\n".join(data))
                    event, data = "", []
                    continue
                if line.startswith(":"):
                    self.heartbeats += 1
                    continue
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    event = value
                elif name == "data":
                    data.append(value)
                # `id` and `retry` are not used by Mastodon; unknown fields are ignored.


def _http_url(url: str) -> str:
    """A streaming URL as Mastodon gives it (`wss://...`) for an HTTP request."""
    url = url.rstrip("/")
    if url.startswith("wss://"):
        return "https://" + url[len("wss://") :]
    if url.startswith("ws://"):
        return "http://" + url[len("ws://") :]
    return url


class MastodonClient(ApiClient):
    """The Mastodon REST and streaming endpoints tweetchat reads, on one server.

    `server_url` is the server's web address (`https://mastodon.social`); `token` an optional
    user access token (scope `read`), sent as `Authorization: Bearer`; without one, only public
    timelines can be read (and no streams). `http` shares a connection pool between servers
    (it is then not closed here). `domain` is the domain of the server's local handles and
    `streaming_url` the base URL of its streaming API; both default to what
    `GET /api/v2/instance` says (`load_instance`), else the server's host and URL.

    Use as `async with MastodonClient(url) as client:` (or call `aclose()`).
    """

    def __init__(
        self,
        server_url: str,
        token: str | None = None,
        *,
        http: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        domain: str | None = None,
        streaming_url: str | None = None,
    ) -> None:
        base = server_url.strip().rstrip("/")
        if "://" not in base:
            base = f"https://{base}"
        parts = urlsplit(base)
        if not parts.hostname:
            raise ValueError(f"not a server URL: {server_url!r}")
        self.base_url = base
        self.host = parts.netloc.lower()
        self.token = token or None
        self.timeout = timeout
        self.domain = (domain or parts.hostname).lower()
        self._domain_given = domain is not None
        self.streaming_url = _http_url(streaming_url) if streaming_url else None
        self.instance_loaded = domain is not None and streaming_url is not None
        super().__init__(
            replace(MASTODON, name=self.host),
            http or httpx.AsyncClient(timeout=timeout, transport=transport),
            owns_http=http is None,
        )

    def _headers(self, accept: str = "application/json") -> dict[str, str]:
        headers = {"Accept": accept, "User-Agent": "tweetchat"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    async def _get(
        self, path: str, *, endpoint: str, params: Sequence[tuple[str, str]] = ()
    ) -> tuple[Any, httpx.Response]:
        return await self._request_json(
            "GET",
            self.base_url + path,
            endpoint=endpoint,
            params=list(params),
            headers=self._headers(),
        )

    async def load_instance(self) -> None:
        """Learn the local handles' domain and the streaming URL from `GET /api/v2/instance`
        (or v1 on old servers). A server that answers neither keeps the defaults; 429, 5xx and
        network errors are raised, to be retried."""
        for path in INSTANCE_PATHS:
            try:
                body, _ = await self._get(path, endpoint="instance")
            except (MastodonRequestError, MastodonAuthError):
                continue
            if not isinstance(body, dict):
                continue
            domain = body.get("domain") if path.startswith("/api/v2") else body.get("uri")
            configuration = body.get("configuration")
            urls = (
                configuration.get("urls") if isinstance(configuration, dict) else body.get("urls")
            )
            streaming = None
            if isinstance(urls, dict):
                streaming = urls.get("streaming") or urls.get("streaming_api")
            if not self._domain_given and isinstance(domain, str) and domain.strip():
                self.domain = domain.strip().lower().removeprefix("https://").rstrip("/")
            if self.streaming_url is None and isinstance(streaming, str) and streaming:
                self.streaming_url = _http_url(streaming)
            break
        self.instance_loaded = True

    async def tag_timeline(
        self,
        tag: str,
        *,
        any_tags: Sequence[str] = (),
        max_id: str | None = None,
        min_id: str | None = None,
        since_id: str | None = None,
        limit: int = MAX_LIMIT,
    ) -> TimelinePage:
        """One page of `GET /api/v1/timelines/tag/{tag}` (statuses with `tag` or any of
        `any_tags`), newest first."""
        tag = tag.lstrip("#")
        if not tag:
            raise ValueError("a tag timeline needs a hashtag")
        params: list[tuple[str, str]] = [("any[]", other.lstrip("#")) for other in any_tags]
        params.append(("limit", str(max(1, min(MAX_LIMIT, limit)))))
        for name, value in (("max_id", max_id), ("min_id", min_id), ("since_id", since_id)):
            if value:
                params.append((name, value))
        path = TIMELINE_PATH.format(tag=quote(tag, safe=""))
        body, response = await self._get(path, endpoint="timeline", params=params)
        if not isinstance(body, list):
            raise self.dialect.unreadable(
                "timeline", response, "JSON that is not a list", subject="the tag timeline"
            )
        statuses = [item for item in body if isinstance(item, dict)]
        links = response.links
        return TimelinePage(
            statuses=statuses,
            next_max_id=_link_param(links.get("next"), "max_id"),
            prev_min_id=_link_param(links.get("prev"), "min_id"),
        )

    async def status(self, local_id: str) -> dict[str, Any]:
        """`GET /api/v1/statuses/:id`; MastodonRequestError (404) if it was deleted,
        MastodonAuthError (403/401) if it is private."""
        path = STATUS_PATH.format(id=quote(str(local_id), safe=""))
        body, response = await self._get(path, endpoint="status")
        if not isinstance(body, dict):
            raise self.dialect.unreadable(
                "status", response, "JSON that is not an object", subject="a status"
            )
        return body

    @asynccontextmanager
    async def stream_hashtag(
        self, tag: str, *, read_timeout: float = 60.0
    ) -> AsyncIterator[MastodonStream]:
        """Open `GET /api/v1/streaming/hashtag?tag=...`; raises the matching MastodonError if the
        server refuses. `read_timeout`: how long the stream may stay silent (Mastodon sends a
        heartbeat comment every few seconds)."""
        endpoint = "stream"
        base = self.streaming_url or self.base_url
        timeout = httpx.Timeout(self.timeout, read=read_timeout)
        request = self._http.build_request(
            "GET",
            base + STREAM_PATH,
            params={"tag": tag.lstrip("#")},
            headers=self._headers("text/event-stream"),
            timeout=timeout,
        )
        # The streaming API's rate limits are not the REST API's, which `pace_delay` spreads.
        async with self._open_stream(request, endpoint, note_rate_limit=False) as response:
            yield MastodonStream(response, self.dialect, f"#{tag.lstrip('#')}")

    def pace_delay(self, now: datetime | None = None) -> float:
        """How long to wait before the next call so the rate limit lasts until its reset: 0
        while plenty of calls are left, then the time left spread over the calls left."""
        limit = self.rate_limit
        if limit is None or limit.remaining is None or limit.reset_at is None:
            return 0.0
        low_water = max(5, (limit.limit or 0) // 10)
        if limit.remaining > low_water:
            return 0.0
        left = (limit.reset_at - (now or datetime.now(UTC))).total_seconds()
        if left <= 0:
            return 0.0
        return left / (limit.remaining + 1)


def _link_param(link: Mapping[str, str] | None, name: str) -> str | None:
    if not link or not link.get("url"):
        return None
    value = httpx.URL(link["url"]).params.get(name)
    return value or None


# -- parsing ---------------------------------------------------------------------------------


def chat_tags(hashtags: Iterable[str]) -> tuple[str, ...]:
    """The chat's hashtags without `#`, each once (Mastodon's hashtags ignore case)."""
    tags: list[str] = []
    seen: set[str] = set()
    for raw in hashtags:
        tag = raw.strip().lstrip("#").strip()
        if tag and tag.casefold() not in seen:
            seen.add(tag.casefold())
            tags.append(tag)
    if not tags:
        raise ValueError("a chat needs at least one hashtag to follow")
    return tuple(tags)


@dataclass(frozen=True, slots=True)
class TagGroup:
    """Hashtags read by one timeline call; `key` names the group in the position."""

    tags: tuple[str, ...]

    @property
    def key(self) -> str:
        return ",".join(tag.casefold() for tag in self.tags)


def tag_groups(tags: Sequence[str]) -> list[TagGroup]:
    return [
        TagGroup(tuple(tags[index : index + TAGS_PER_CALL]))
        for index in range(0, len(tags), TAGS_PER_CALL)
    ]


def status_tags(status: Mapping[str, Any]) -> set[str]:
    """The status's hashtags (its reblogged status's, for a reblog), case-folded."""
    names: set[str] = set()
    for source in (status, status.get("reblog")):
        if not isinstance(source, Mapping):
            continue
        for tag in source.get("tags") or []:
            if isinstance(tag, Mapping) and isinstance(tag.get("name"), str):
                names.add(tag["name"].lstrip("#").casefold())
    return names


def has_chat_tag(status: Mapping[str, Any], folded_tags: set[str]) -> bool:
    return not status_tags(status).isdisjoint(folded_tags)


def _text_field(obj: Mapping[str, Any], name: str) -> str:
    value = obj.get(name)
    return value if isinstance(value, str) else ""


def account_handle(account: Any, local_domain: str) -> str:
    """`user@domain` of an account entity: its `acct`, with `local_domain` added for a local
    account (whose `acct` is just the username). The domain is lower-cased."""
    if not isinstance(account, Mapping):
        raise PayloadError(f"an account is not an object: {account!r:.80}")
    acct = _text_field(account, "acct").strip().lstrip("@") or _text_field(
        account, "username"
    ).strip().lstrip("@")
    if not acct:
        raise PayloadError(f"account {account.get('id')!r} has no acct")
    user, at, domain = acct.partition("@")
    if not at:
        domain = local_domain
    if not user or not domain:
        raise PayloadError(f"account {account.get('id')!r} has an invalid acct {acct!r}")
    return f"{user}@{domain.lower()}"


def parse_account(account: Any, local_domain: str) -> UserRecord:
    handle = account_handle(account, local_domain)
    assert isinstance(account, Mapping)
    followers = account.get("followers_count")
    avatar = account.get("avatar_static") or account.get("avatar")
    return UserRecord(
        id=handle,
        username=handle,
        name=_text_field(account, "display_name").strip()
        or _text_field(account, "username")
        or handle.split("@")[0],
        profile_image_url=avatar if isinstance(avatar, str) and avatar else None,
        verified=False,
        followers_count=followers
        if isinstance(followers, int) and not isinstance(followers, bool)
        else None,
        network=NETWORK,
    )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def parse_status_poll(status_uri: str, poll: Any, created_at: datetime | None = None) -> PollRecord:
    """A status's poll: id `{uri}#poll`, options (position, title, votes), open or closed."""
    if not isinstance(poll, Mapping):
        raise PayloadError(f"the poll of {status_uri} is not an object")
    options: list[tuple[int, str, int]] = []
    for position, option in enumerate(poll.get("options") or [], start=1):
        if not isinstance(option, Mapping):
            raise PayloadError(f"the poll of {status_uri} has a malformed option")
        # `votes_count` is null while a poll hides its totals.
        options.append((position, _text_field(option, "title"), _count(option.get("votes_count"))))
    expires = poll.get("expires_at")
    end = parse_datetime(expires, f"the poll of {status_uri}") if expires else None
    duration = None
    if end is not None and created_at is not None and end > created_at:
        duration = round((end - created_at).total_seconds() / 60)
    return PollRecord(
        id=f"{status_uri}#poll",
        options=options,
        voting_status="closed" if poll.get("expired") else "open",
        end_datetime=end,
        duration_minutes=duration,
        network=NETWORK,
    )


def status_text(status: Mapping[str, Any]) -> str:
    """The status's text as Mastodon shows it, after its content warning (`CW: ...`)."""
    body = html_to_text(_text_field(status, "content"))
    warning = _text_field(status, "spoiler_text").strip()
    if warning:
        return f"CW: {warning}\n\n{body}" if body else f"CW: {warning}"
    return body


def _status_uri(status: Mapping[str, Any]) -> str:
    uri = status.get("uri")
    if not isinstance(uri, str) or not uri.strip():
        raise PayloadError(f"status {status.get('id')!r} has no uri")
    return uri.strip()


def _local_id(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    return text or None


def _quoted(status: Mapping[str, Any]) -> tuple[bool, Mapping[str, Any] | None, str | None]:
    """Mastodon 4.4's quote: (is a quote, the quoted status if given, its local id if only that
    is given). A quote whose quoted status is gone or not approved is still a quote."""
    quote_obj = status.get("quote")
    if not isinstance(quote_obj, Mapping):
        return False, None, None
    quoted = quote_obj.get("quoted_status")
    if isinstance(quoted, Mapping):
        return True, quoted, None
    return True, None, _local_id(quote_obj.get("quoted_status_id"))


@dataclass(slots=True)
class _Pending:
    """A reference to a local id not seen yet: resolved at the end of the round."""

    record: PostRecord
    field: str  # "reply" or "quote"
    local_id: str


class StatusReader:
    """Turns one server's statuses into records, resolving local ids to uris.

    It remembers (boundedly) the uri and author of every status seen on the server, by local id,
    so a reply's `in_reply_to_id` becomes its parent's uri; a parent never seen is left for
    `resolve`, which fetches it once.
    """

    def __init__(self, local_domain: str, *, max_known: int = MAX_KNOWN_IDS) -> None:
        self.local_domain = local_domain
        self.max_known = max_known
        # local id -> (uri, author handle), or None for a status that could not be fetched.
        self.known: OrderedDict[str, tuple[str, str] | None] = OrderedDict()

    def _store(self, local_id: str, value: tuple[str, str] | None) -> None:
        self.known[local_id] = value
        self.known.move_to_end(local_id)
        while len(self.known) > self.max_known:
            self.known.popitem(last=False)

    def remember(self, status: Any) -> None:
        """Note a status (and the statuses it carries) by local id."""
        if not isinstance(status, Mapping):
            return
        local_id = _local_id(status.get("id"))
        try:
            uri = _status_uri(status)
            handle = account_handle(status.get("account"), self.local_domain)
        except PayloadError:
            uri = handle = ""
        if local_id and uri:
            self._store(local_id, (uri, handle))
        self.remember(status.get("reblog"))
        _, quoted, _ = _quoted(status)
        self.remember(quoted)

    def parse(self, statuses: Iterable[Any]) -> tuple[Parsed, list[_Pending]]:
        """Records for statuses to collect (already filtered): the statuses themselves, what they
        carry (reblogged and quoted statuses) as context, their authors and polls; and the
        references to local ids not seen yet. Call `remember` on the whole page first."""
        parsed = Parsed()
        pending: list[_Pending] = []
        for status in statuses:
            try:
                record = self._record(status, parsed, pending)
            except PayloadError as exc:
                parsed.problems.append(str(exc))
                continue
            parsed.collected.append(record)
        _dedupe_users(parsed)
        return parsed, pending

    def _record(
        self,
        status: Any,
        parsed: Parsed,
        pending: list[_Pending] | None,
    ) -> PostRecord:
        """One status's record; what it carries goes into `parsed` (context, users, polls).
        `pending`: where to leave unresolved references (None: leave them None)."""
        if not isinstance(status, Mapping):
            raise PayloadError(f"a status is not an object: {status!r:.80}")
        uri = _status_uri(status)
        account = status.get("account")
        author = account_handle(account, self.local_domain)
        parsed.users.append(parse_account(account, self.local_domain))
        created_at = parse_datetime(status.get("created_at"), f"status {uri}")

        reblog = status.get("reblog")
        retweeted_id = None
        text = status_text(status)
        lang = status.get("language")
        if isinstance(reblog, Mapping):
            original = self._record(reblog, parsed, None)
            parsed.context.append(original)
            retweeted_id = original.id
            # Like an X retweet's text; the wrapper's own content is empty.
            text = f"RT @{original.author_id}: {original.text}"
            lang = lang or original.lang

        is_quote, quoted, quoted_local = _quoted(status)
        quoted_id = None
        if quoted is not None:
            try:
                quoted_record = self._record(quoted, parsed, None)
            except PayloadError as exc:
                parsed.problems.append(f"the status quoted by {uri}: {exc}")
            else:
                parsed.context.append(quoted_record)
                quoted_id = quoted_record.id

        in_reply_to_local = _local_id(status.get("in_reply_to_id"))
        if retweeted_id is not None:
            kind = "retweet"
        elif is_quote:
            kind = "quote"
        elif in_reply_to_local:
            kind = "reply"
        else:
            kind = "original"

        poll = status.get("poll")
        poll_id = None
        if isinstance(poll, Mapping) and retweeted_id is None:
            try:
                poll_record = parse_status_poll(uri, poll, created_at)
            except PayloadError as exc:
                parsed.problems.append(str(exc))
            else:
                parsed.polls.append(poll_record)
                poll_id = poll_record.id

        record = PostRecord(
            id=uri,
            author_id=author,
            created_at=created_at,
            text=text,
            kind=kind,
            in_reply_to_id=None,
            in_reply_to_user_id=self._reply_user(status, author),
            quoted_id=quoted_id,
            retweeted_id=retweeted_id,
            conversation_id=None,
            lang=lang if isinstance(lang, str) and lang else None,
            poll_id=poll_id,
            retweet_count=_count(status.get("reblogs_count")),
            reply_count=_count(status.get("replies_count")),
            like_count=_count(status.get("favourites_count")),
            quote_count=_count(status.get("quotes_count")),
            impression_count=None,
            raw=dict(status),
            network=NETWORK,
        )
        if in_reply_to_local:
            self._resolve_now(record, "reply", in_reply_to_local, pending)
        if quoted_id is None and quoted_local:
            self._resolve_now(record, "quote", quoted_local, pending)
        return record

    def _reply_user(self, status: Mapping[str, Any], author: str) -> str | None:
        """The replied-to account's handle, from the status alone: itself (a thread), or the
        mention whose local id is `in_reply_to_account_id`."""
        account_id = _local_id(status.get("in_reply_to_account_id"))
        if account_id is None:
            return None
        account = status.get("account")
        if isinstance(account, Mapping) and _local_id(account.get("id")) == account_id:
            return author
        for mention in status.get("mentions") or []:
            if isinstance(mention, Mapping) and _local_id(mention.get("id")) == account_id:
                try:
                    return account_handle(mention, self.local_domain)
                except PayloadError:
                    return None
        return None

    def _resolve_now(
        self, record: PostRecord, field: str, local_id: str, pending: list[_Pending] | None
    ) -> None:
        if local_id in self.known:
            self._apply(record, field, self.known[local_id])
        elif pending is not None:
            pending.append(_Pending(record, field, local_id))

    @staticmethod
    def _apply(record: PostRecord, field: str, value: tuple[str, str] | None) -> None:
        if value is None:
            return
        uri, handle = value
        if field == "reply":
            record.in_reply_to_id = uri
            if handle:
                record.in_reply_to_user_id = handle
        else:
            record.quoted_id = uri

    async def resolve(
        self,
        pending: Sequence[_Pending],
        fetch: Callable[[str], Awaitable[dict[str, Any] | None]],
    ) -> Parsed:
        """Resolve references still pending: from statuses seen since, or by fetching each
        unknown status once (`fetch` returns None when it cannot be had: deleted, private).
        The fetched statuses come back as context; each failure counts in `api_errors`."""
        extra = Parsed()
        for item in pending:
            if item.local_id not in self.known:
                status = await fetch(item.local_id)
                if status is None:
                    self._store(item.local_id, None)
                    extra.api_errors += 1
                else:
                    self.remember(status)
                    try:
                        extra.context.append(self._record(status, extra, None))
                    except PayloadError as exc:
                        extra.problems.append(str(exc))
                    if item.local_id not in self.known:  # a status without a usable uri
                        self._store(item.local_id, None)
            self._apply(item.record, item.field, self.known.get(item.local_id))
        _dedupe_users(extra)
        return extra


def _dedupe_users(parsed: Parsed) -> None:
    users: dict[str, UserRecord] = {}
    for user in parsed.users:
        users[user.id] = user
    parsed.users = list(users.values())


def parse_statuses(statuses: Iterable[Any], local_domain: str) -> Parsed:
    """Records for statuses read from a server whose local handles are `@local_domain`,
    replies resolved among these statuses only (no request is made): for tests and imports."""
    reader = StatusReader(local_domain)
    items = list(statuses)
    for status in items:
        reader.remember(status)
    parsed, _ = reader.parse(items)
    return parsed


# -- the source ------------------------------------------------------------------------------


class _Emitted:
    """Statuses emitted by this process, by (server, local id), bounded."""

    def __init__(self, size: int = MAX_EMITTED) -> None:
        self.size = size
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    def first_time(self, host: str, local_id: str) -> bool:
        key = (host, local_id)
        if key in self._seen:
            self._seen.move_to_end(key)
            return False
        self._seen[key] = None
        while len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return True


@dataclass
class _GroupState:
    """One group of hashtags on one server, while streaming: which of its hashtags' streams are
    live and caught up, and the newest id the streams brought."""

    group: TagGroup
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    # Hashtags whose stream is not connected, or connected but not yet caught up by a round:
    # while any is, streamed statuses must not move the position past their gap.
    open: set[str] = field(default_factory=set)
    # The connection number of each hashtag's live stream.
    live: dict[str, int] = field(default_factory=dict)
    stream_newest: str | None = None
    # When the stored position moved, and to what: (monotonic time, position), oldest first,
    # as far back as a silent stream may have gone unnoticed.
    moves: deque[tuple[float, str | None]] = field(default_factory=deque)
    # Of a hashtag whose stream went silent: the position as of its last byte. Meanwhile the
    # other hashtags' streams may have moved the position past statuses it missed; the catch-up
    # round after the reconnect reads from there.
    since: dict[str, str | None] = field(default_factory=dict)

    def moved(self, position: str | None, keep: float) -> None:
        now = time.monotonic()
        self.moves.append((now, position))
        # Keep the newest move at least `keep` seconds old: the position as of then.
        while len(self.moves) > 1 and self.moves[1][0] <= now - keep:
            self.moves.popleft()

    def position_at(self, when: float) -> str | None:
        """The stored position as of the monotonic time `when` (the oldest kept if earlier)."""
        found = self.moves[0][1] if self.moves else None
        for moved_at, position in self.moves:
            if moved_at > when:
                break
            found = position
        return found


class _PacedCaller(RetryingCaller):
    """RetryingCaller that first waits while the server's rate limit runs low."""

    def __init__(
        self, report: Reporter, backoff: Backoff, client: MastodonClient, running_detail: str
    ) -> None:
        super().__init__(report, backoff, running_detail)
        self.client = client

    async def call(self, request: Callable[[], Awaitable[T]]) -> T:
        async def paced() -> T:
            delay = self.client.pace_delay()
            if delay > 0:
                limit = self.client.rate_limit
                retry_at = datetime.now(UTC) + timedelta(seconds=delay)
                left = f"{limit.remaining} of {limit.limit}" if limit else "few"
                self.report(
                    "waiting",
                    f"{self.client.host}: {left} calls left in the rate limit window; "
                    f"slowing down to one call every {delay:.3g} s",
                    retry_at,
                )
                await anyio.sleep(delay)
            return await request()

        return await super().call(paced)


class _Collector:
    """What every server of the source shares: the context, the position map, the statuses
    already emitted."""

    def __init__(self, ctx: SourceContext) -> None:
        self.ctx = ctx
        self.tags = chat_tags(ctx.chat.hashtags)
        self.folded = {tag.casefold() for tag in self.tags}
        self.groups = tag_groups(self.tags)
        self.emitted = _Emitted()
        self.positions: dict[str, dict[str, str]] = {}
        stored = ctx.position.get(POSITION_KEY)
        if isinstance(stored, Mapping):
            for host, groups in stored.items():
                if isinstance(groups, Mapping):
                    self.positions[str(host)] = {
                        str(key): str(value)
                        for key, value in groups.items()
                        if isinstance(value, str | int) and str(value)
                    }

    def stored(self, host: str, group: TagGroup) -> str | None:
        return self.positions.get(host, {}).get(group.key)

    def advance(self, host: str, group: TagGroup, newest: str | None) -> dict[str, Any] | None:
        """Move the position of `group` on `host` to `newest` (if newer): the whole position map
        to put on the next batch, or None if it does not change."""
        current = self.stored(host, group)
        value = newest_local_id(current, newest)
        if value is None or value == current:
            return None
        self.positions.setdefault(host, {})[group.key] = value
        return {POSITION_KEY: {h: dict(groups) for h, groups in self.positions.items()}}

    async def emit(
        self,
        parsed: Parsed,
        *,
        position: dict[str, Any] | None = None,
        posts_read: int = 0,
        requests: int = 0,
    ) -> bool:
        """Emit a batch unless it would carry nothing; whether it was emitted."""
        if not (
            parsed.collected or parsed.context or parsed.problems or parsed.api_errors or position
        ):
            return False
        await self.ctx.emit(
            SourceBatch(SOURCE, parsed, position=position, posts_read=posts_read, requests=requests)
        )
        return True


class _ServerEnded(Exception):
    """A server refused us for good: its reason."""


@dataclass(frozen=True, slots=True)
class _Options:
    interval: float
    stream: bool | None
    keepalive_timeout: float
    backoff: Backoff
    late_margin: float
    limit: int


class _Server:
    """Collects the chat from one server, by polling or streaming."""

    def __init__(self, collector: _Collector, client: MastodonClient, options: _Options) -> None:
        self.collector = collector
        self.client = client
        self.host = client.host
        self.options = options
        self.report = Reporter(collector.ctx, SOURCE)
        self.streaming = options.stream if options.stream is not None else bool(client.token)
        tags = " ".join(f"#{tag}" for tag in collector.tags)
        self.detail = (
            f"streaming {tags} from {self.host}"
            if self.streaming
            else f"polling {tags} on {self.host} every {options.interval:g} s"
        )
        self.caller = _PacedCaller(self.report, options.backoff, client, self.detail)
        self.reader = StatusReader(client.domain)
        self.states = {group.key: _GroupState(group) for group in collector.groups}
        self._connections = 0
        self.fetches = 0  # statuses fetched to resolve references

    async def run(self) -> None:
        """Until stopped; raises _ServerEnded with the reason if the server refuses us."""
        try:
            if not self.client.instance_loaded:
                await self.caller.call(self.client.load_instance)
            self.reader.local_domain = self.client.domain
            if self.streaming:
                await self._stream_all()
            else:
                while True:
                    for group in self.collector.groups:
                        await self.round(group)
                    await anyio.sleep(self.options.interval)
        except MastodonAuthError as exc:
            raise _ServerEnded(f"the credentials were refused: {exc.message}") from exc
        except MastodonRequestError as exc:
            raise _ServerEnded(f"the request was rejected: {exc.message}") from exc

    # -- timeline rounds ----------------------------------------------------------------------

    async def _fetch_status(self, local_id: str) -> dict[str, Any] | None:
        self.fetches += 1
        try:
            return await self.caller.call(lambda: self.client.status(local_id))
        except (MastodonRequestError, MastodonAuthError):
            return None

    async def _page(self, group: TagGroup, max_id: str | None, min_id: str | None) -> TimelinePage:
        return await self.client.tag_timeline(
            group.tags[0],
            any_tags=group.tags[1:],
            max_id=max_id,
            min_id=min_id,
            limit=self.options.limit,
        )

    async def round(
        self, group: TagGroup, covered: dict[str, int] | None = None, since: str | None = None
    ) -> None:
        """One timeline round for `group`: every status newer than the stored position (or
        `since` if older; the first time, back to the chat's start minus its lookback), emitted
        page by page; the new position rides on the round's last batch."""
        collector = self.collector
        chat = collector.ctx.chat
        stored = collector.stored(self.host, group)
        first = stored is None
        floor = chat.start - chat.lookback
        max_id: str | None = None
        start = oldest_local_id(stored, since) if stored is not None else None
        min_id = None if start is None else rewind_id(start, self.options.late_margin)
        round_newest = stored
        pending: list[_Pending] = []
        requests = read = 0
        while True:
            cursor = (max_id, min_id)
            page = await self.caller.call(partial(self._page, group, max_id, min_id))
            requests += 1
            read += len(page.statuses)
            ids = [i for i in (_local_id(s.get("id")) for s in page.statuses) if i]
            round_newest = newest_local_id(round_newest, *ids)
            reached_floor = False
            wanted = []
            problems = []
            for status in page.statuses:
                self.reader.remember(status)
                try:
                    created = parse_datetime(status.get("created_at"), f"status {status.get('id')}")
                except PayloadError as exc:
                    problems.append(str(exc))
                    continue
                if first and created < floor:
                    reached_floor = True
                    continue
                local_id = _local_id(status.get("id"))
                if not has_chat_tag(status, collector.folded) or local_id is None:
                    continue
                if collector.emitted.first_time(self.host, local_id):
                    wanted.append(status)
            parsed, waiting = self.reader.parse(wanted)
            parsed.problems[:0] = problems
            # Records with a reference to a status not seen yet wait for the round's end: the
            # status may come on a later page, and if not it is fetched then.
            pending.extend(waiting)
            held = {id(item.record) for item in waiting}
            parsed.collected = [post for post in parsed.collected if id(post) not in held]
            if first:
                max_id = page.next_max_id or (min(ids, key=_id_key) if ids else None)
            else:
                min_id = page.prev_min_id or (newest_local_id(*ids) if ids else None)
            last = not ids or reached_floor or (max_id, min_id) == cursor
            if not last:
                if await collector.emit(parsed, posts_read=read, requests=requests):
                    requests = read = 0
                continue
            fetches = self.fetches
            extra = await self.reader.resolve(pending, self._fetch_status)
            requests += self.fetches - fetches
            waited = {id(item.record): item.record for item in pending}
            parsed.collected.extend(waited.values())
            parsed.extend(extra)
            _dedupe_users(parsed)
            position = self._finish_round(group, round_newest, covered)
            await collector.emit(parsed, position=position, posts_read=read, requests=requests)
            return

    def _finish_round(
        self, group: TagGroup, round_newest: str | None, covered: dict[str, int] | None
    ) -> dict[str, Any] | None:
        state = self.states[group.key]
        if covered is not None:
            for tag, connection in covered.items():
                if state.live.get(tag) == connection:
                    state.open.discard(tag)
                    state.since.pop(tag, None)
        # Everything up to the round's end was read, streamed statuses included.
        return self._advance(state, newest_local_id(round_newest, state.stream_newest))

    def _advance(self, state: _GroupState, newest: str | None) -> dict[str, Any] | None:
        """Move the group's position to `newest` (if newer), noting when it moved."""
        position = self.collector.advance(self.host, state.group, newest)
        if position is not None:
            state.moved(self.collector.stored(self.host, state.group), self._keep)
        return position

    @property
    def _keep(self) -> float:
        """How far back the positions are kept: a stream found silent was so for the keep-alive
        timeout, and a second more for the time it took to notice."""
        return self.options.keepalive_timeout + 1.0

    # -- streams ------------------------------------------------------------------------------

    async def _stream_all(self) -> None:
        ended: list[BaseException] = []
        async with unwrapped_task_group() as group:

            async def follow(state: _GroupState, tag: str) -> None:
                try:
                    await self._stream_tag(state, tag)
                except (MastodonAuthError, MastodonRequestError) as exc:
                    ended.append(exc)
                    group.cancel_scope.cancel()

            for state in self.states.values():
                state.open.update(state.group.tags)
                state.moved(self.collector.stored(self.host, state.group), self._keep)
                for tag in state.group.tags:
                    group.start_soon(follow, state, tag)
        if ended:
            raise ended[0]

    async def _stream_tag(self, state: _GroupState, tag: str) -> None:
        backoff = self.options.backoff
        failures = 0
        while True:
            worked = False
            stream: MastodonStream | None = None
            caught_up = 0.0
            try:
                async with self.client.stream_hashtag(
                    tag, read_timeout=self.options.keepalive_timeout
                ) as stream:
                    opened = time.monotonic()
                    self._connections += 1
                    state.live[tag] = self._connections
                    self.report("running", self.detail)
                    # Catch up after connecting, not before: whatever is posted from now on
                    # comes on this connection, so the round and the stream overlap, never gap.
                    await self._catch_up(state, tag)
                    caught_up = time.monotonic()
                    try:
                        async for event in stream.events():
                            worked = True
                            await self._on_event(state, tag, event)
                    finally:
                        lasted = time.monotonic() - opened
                        worked = worked or lasted >= self.options.keepalive_timeout
                reason = f"{self.host} closed the #{tag} stream"
            except MastodonRateLimited as exc:
                wait = self.options.backoff.rate_limit_wait(exc.reset_at)
                await self._pause("waiting", f"{exc.message}; reconnecting", wait)
                continue
            except MastodonStreamStalled as exc:
                reason = exc.message
                # Silent since its last byte: what came since may be behind the position the
                # other streams moved on meanwhile.
                if stream is not None and tag not in state.since:
                    alive = max(stream.last_byte, caught_up)
                    state.since[tag] = state.position_at(alive)
            except (MastodonServerError, MastodonNetworkError) as exc:
                reason = exc.message
            finally:
                self._disconnected(state, tag)
            # A stream that had been working (it sent events, or stayed up a while) is
            # reconnected at once; one that keeps failing waits longer each time.
            failures = 0 if worked else failures + 1
            delay = 0.0 if worked else min(backoff.base * 2 ** (failures - 1), backoff.cap)
            await self._pause("failing", f"{reason}; reconnecting", delay)

    def _disconnected(self, state: _GroupState, tag: str) -> None:
        state.live.pop(tag, None)
        state.open.add(tag)

    async def _pause(self, state: State, reason: str, delay: float) -> None:
        retry_at = datetime.now(UTC) + timedelta(seconds=delay)
        when = f"in {delay:g} s" if delay > 0 else "now"
        self.report(state, f"{reason} {when}", retry_at)
        if delay > 0:
            await anyio.sleep(delay)

    async def _catch_up(self, state: _GroupState, tag: str) -> None:
        async with state.lock:
            if tag not in state.open:
                return  # a round that started after this stream connected covered it
            covered = dict(state.live)
            since = oldest_local_id(*(state.since.get(t) for t in covered))
            await self.round(state.group, covered=covered, since=since)

    async def _on_event(self, state: _GroupState, tag: str, event: SseEvent) -> None:
        if event.event not in ("update", "status.update"):
            return  # `delete` and the rest: nothing to collect
        try:
            status = json.loads(event.data)
            if not isinstance(status, dict):
                raise PayloadError("a streamed status is not a JSON object")
        except (json.JSONDecodeError, PayloadError) as exc:
            problem = (
                f"unreadable {event.event} event from {self.host} ({exc}): {event.data[:120]!r}"
            )
            await self.collector.emit(Parsed(problems=[problem]))
            return
        if not has_chat_tag(status, self.collector.folded):
            return
        local_id = _local_id(status.get("id"))
        self.reader.remember(status)
        fresh = local_id is not None and self.collector.emitted.first_time(self.host, local_id)
        edited = event.event == "status.update"
        parsed = Parsed()
        requests = 0
        if fresh or edited:
            parsed, pending = self.reader.parse([status])
            if pending:
                fetches = self.fetches
                parsed.extend(await self.reader.resolve(pending, self._fetch_status))
                requests = self.fetches - fetches
                _dedupe_users(parsed)
        if not edited:
            state.stream_newest = newest_local_id(state.stream_newest, local_id)
        position = None
        if not state.open:
            position = self._advance(state, state.stream_newest)
        await self.collector.emit(parsed, position=position, posts_read=1, requests=requests)


async def run_mastodon(
    ctx: SourceContext,
    clients: MastodonClient | Sequence[MastodonClient],
    *,
    interval: float = 15.0,
    stream: bool | None = None,
    keepalive_timeout: float = 60.0,
    backoff: Backoff | None = None,
    late_margin: float = MASTODON_LATE_MARGIN,
    limit: int = MAX_LIMIT,
    stop: StopEvent | None = None,
) -> None:
    """Collect the chat from Mastodon servers until `stop` is set (or every server refused us).

    `clients`: one `MastodonClient` per server (the same status read from several is one post).
    `stream`: True streams (needs a user token), False polls the hashtag timeline every
    `interval` seconds, None (default) streams from servers whose client has a token and polls
    the others. `keepalive_timeout`: seconds without a byte before a stream is reconnected.
    `backoff`: 5xx/network retry delays and stream reconnect delays (`http.Backoff`).
    `late_margin`: seconds of ids re-read before the newest one each round, for statuses that
    reach a server late. `limit`: statuses per timeline page (at most 40).

    Resumes from `ctx.position["servers"]` (see the module's docstring).
    """
    servers_clients = [clients] if isinstance(clients, MastodonClient) else list(clients)
    if not servers_clients:
        raise ValueError("run_mastodon needs at least one server")
    collector = _Collector(ctx)
    options = _Options(
        interval=interval,
        stream=stream,
        keepalive_timeout=keepalive_timeout,
        backoff=backoff or Backoff(),
        late_margin=late_margin,
        limit=max(1, min(MAX_LIMIT, limit)),
    )
    servers = [_Server(collector, client, options) for client in servers_clients]
    report = Reporter(ctx, SOURCE)
    tags = " ".join(f"#{tag}" for tag in collector.tags)
    hosts = ", ".join(server.host for server in servers)
    report("starting", f"following {tags} on {hosts}")
    ended: list[str] = []

    async def run_one(server: _Server) -> None:
        try:
            await server.run()
        except _ServerEnded as exc:
            ended.append(str(exc))
            if len(ended) < len(servers):
                server.report("failing", f"{exc}; still following the other servers")

    async def body() -> None:
        if len(servers) == 1:
            await run_one(servers[0])
            return
        async with unwrapped_task_group() as group:
            for server in servers:
                group.start_soon(run_one, server)

    await run_source(report, stop, body, ended)
