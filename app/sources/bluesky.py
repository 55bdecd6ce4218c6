"""The Bluesky source: poll `app.bsky.feed.searchPosts` for a chat's hashtags.

Each round asks, for each of the chat's hashtags in turn, `q=#Tag&tag=Tag&sort=latest&limit=100`
from `since` (Bluesky ANDs repeated `tag` parameters, so one query per hashtag, merged), and
follows the `cursor` through every page. When the server stops handing out cursors on a full page
(searchPosts "may not necessarily allow scrolling through entire result set"), the query goes on
with `until` set just above the oldest post it has seen, so a long first round is not cut short.

A post is collected when one of the chat's hashtags is among its rich-text tag facets or its
`record.tags`, or failing those is a `#word` in its text (any case); search matches words loosely
and such posts are dropped here. Records carry `network="bluesky"`: a post's id is its `at://` URI,
an account's id its DID and its username its handle.

Reposts: searchPosts returns posts, never reposts (a repost is a record of its own that search
does not index), so no repost is ever collected and a Bluesky post's retweet figure comes from its
`repostCount` alone. Bluesky has no polls.

The position, merged into the stored one with the round's last batch, is
`{"since": "2026-03-31T18:04:10.123Z", "seen": ["at://...", ...]}`: `since` is the newest post time
seen minus `OVERLAP` (search is filtered on a post's `sortAt`, the earlier of its `createdAt` and
`indexedAt`, inclusive; the overlap catches posts that reach the search index late) and `seen` the
URIs of the posts at or after `since`, newest first (at most `SEEN_LIMIT`), so that the posts a
round reads again are dropped instead of emitted again. A crash mid-round resumes from the
previous round's position: some posts are read again (and stored once), none is lost.

The public AppView (`https://public.api.bsky.app`) is asked first. When it refuses (401/403, as it
has for search at times) and a handle and app password are configured, the client logs in
(`com.atproto.server.createSession` on the PDS, `https://bsky.social` by default) and searches
through the PDS with the access token, refreshing it (`com.atproto.server.refreshSession`) when it
expires and logging in again when the refresh token has expired too.

Failures, each reported to the context: 429 waits until `RateLimit-Reset` and retries the same
request; 5xx and network errors back off exponentially (`Backoff`: 1 s doubling to 60 s); a
refused public endpoint without credentials, a refused app password, or any other 4xx stops the
source with Bluesky's reason.

Exceptions::

    BlueskyError                  any failure talking to Bluesky; `str()` says what happened
     ├── BlueskyNetworkError      no HTTP answer: connection refused or reset, timeout
     ├── BlueskyRateLimited       429: carries `reset_at`, when Bluesky says to try again
     ├── BlueskyServerError       5xx, or a body that is not what the lexicon says
     ├── BlueskyAuthError         401/403 that logging in cannot cure; a refused app password
     └── BlueskyRequestError      other 4xx: a request Bluesky will never accept as sent
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import anyio
import httpx

from app.ingest.parse import Parsed, PayloadError, PostRecord, UserRecord, parse_datetime
from app.sources.base import ChatTarget, SourceBatch, SourceContext
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
    run_source,
)

SOURCE = "bluesky"
NETWORK = "bluesky"
PUBLIC_URL = "https://public.api.bsky.app"
PDS_URL = "https://bsky.social"

SEARCH_POSTS = "app.bsky.feed.searchPosts"
CREATE_SESSION = "com.atproto.server.createSession"
REFRESH_SESSION = "com.atproto.server.refreshSession"

# searchPosts takes 1 to 100 posts a page.
MAX_LIMIT = 100
# How far each round reaches back before the newest post seen (late indexing, clock skew).
OVERLAP = timedelta(minutes=2)
# At most this many URIs go into the stored position's `seen`.
SEEN_LIMIT = 500
# And at most this many are remembered in memory between rounds.
MEMORY_LIMIT = 10 * SEEN_LIMIT

POST_COLLECTION = "app.bsky.feed.post"
TAG_FEATURE = "app.bsky.richtext.facet#tag"
RECORD_VIEW = "app.bsky.embed.record#view"
RECORD_WITH_MEDIA_VIEW = "app.bsky.embed.recordWithMedia#view"
VIEW_RECORD = "app.bsky.embed.record#viewRecord"
RECORD_EMBED = "app.bsky.embed.record"
RECORD_WITH_MEDIA_EMBED = "app.bsky.embed.recordWithMedia"

Route = Literal["public", "pds"]


# -- errors -----------------------------------------------------------------------------------


class BlueskyError(ApiError):
    """A request to Bluesky failed. `status` is the HTTP status (None: no answer); `error` the
    XRPC error name (`ExpiredToken`, `RateLimitExceeded`...) when the body had one."""

    @property
    def error(self) -> str | None:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return error if isinstance(error, str) else None


class BlueskyNetworkError(BlueskyError, NetworkError):
    """No HTTP answer (connection refused or dropped, a timeout)."""


class BlueskyRateLimited(BlueskyError, RateLimited):
    """429: too many requests in the window."""


class BlueskyServerError(BlueskyError, ServerError):
    """5xx, or an answer that is not what the lexicon says: the same request may succeed later."""


class BlueskyAuthError(BlueskyError, AuthError):
    """401/403 that logging in cannot cure, or a refused handle and app password."""


class BlueskyRequestError(BlueskyError, RequestError):
    """Another 4xx: Bluesky rejects the request itself (a bad query, limit or cursor)."""


def _endpoint_name(nsid: str) -> str:
    return nsid.rsplit(".", 1)[-1]


def _xrpc_reason(body: Any) -> str:
    """The reason of an XRPC error, `{"error", "message"}`; or a short plain-text body's."""
    if isinstance(body, dict):
        error = body.get("error") if isinstance(body.get("error"), str) else None
        text = body.get("message") if isinstance(body.get("message"), str) else None
        return ": ".join(dict.fromkeys(part for part in (error, text) if part))
    if isinstance(body, str) and body.strip() and len(body) <= 200 and "<" not in body:
        return body.strip()
    return ""


# Bluesky's `RateLimit-Limit/-Remaining/-Reset/-Policy` give the reset in Unix seconds.
BLUESKY = ApiDialect(
    "Bluesky",
    RateLimitHeaders("ratelimit-"),
    ErrorKinds(
        BlueskyNetworkError,
        BlueskyRateLimited,
        BlueskyServerError,
        BlueskyAuthError,
        BlueskyRequestError,
    ),
    reason=_xrpc_reason,
)


def _refused(exc: BlueskyError, message: str) -> BlueskyAuthError:
    """`exc` as a BlueskyAuthError saying `message`: a refusal that asking again cannot cure."""
    return BlueskyAuthError(
        message,
        status=exc.status,
        endpoint=exc.endpoint,
        rate_limit=exc.rate_limit,
        body=exc.body,
    )


def _is_expired(exc: BlueskyError) -> bool:
    return exc.status in (400, 401) and exc.error == "ExpiredToken"


def bsky_time(value: datetime) -> str:
    """Bluesky's datetime format: RFC 3339 in UTC with milliseconds."""
    value = value.astimezone(UTC)
    return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}Z"


# -- the client -------------------------------------------------------------------------------


class BlueskyClient(ApiClient):
    """The XRPC endpoints the Bluesky source uses, over one `httpx.AsyncClient`.

    Searches the public AppView at `base_url` until it refuses; then, with `identifier` (a handle,
    DID or e-mail) and `app_password`, logs in on `pds_url` and searches through the PDS from then
    on (`route` says which). Pass `http` to share a client (it is then not closed here); use as
    `async with BlueskyClient(...) as client:` or call `aclose()`.
    """

    def __init__(
        self,
        base_url: str = PUBLIC_URL,
        pds_url: str = PDS_URL,
        identifier: str | None = None,
        app_password: str | None = None,
        http: httpx.AsyncClient | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.pds_url = pds_url.rstrip("/")
        self.identifier = identifier or None
        self._password = app_password or None
        super().__init__(
            BLUESKY,
            http
            or httpx.AsyncClient(
                headers={"User-Agent": "tweetchat"}, timeout=timeout, transport=transport
            ),
            owns_http=http is None,
        )
        self.route: Route = "public"
        # Why the public endpoint was left for the PDS (its answer), once it was.
        self.public_refusal: str | None = None
        self.did: str | None = None
        self.handle: str | None = None
        self._access: str | None = None
        self._refresh: str | None = None
        self._session_lock = anyio.Lock()

    @property
    def has_credentials(self) -> bool:
        return bool(self.identifier and self._password)

    def describe(self) -> str:
        """Where searches go now, in words (for the source's status)."""
        if self.route == "public":
            return f"through {self.base_url}"
        who = f" as {self.handle or self.identifier}" if (self.handle or self.identifier) else ""
        return f"through {self.pds_url}{who}"

    # -- plain requests -----------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        base: str,
        nsid: str,
        *,
        params: Sequence[tuple[str, str]] | None = None,
        body: Any = None,
        token: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await self._request_object(
            method,
            f"{base}/xrpc/{nsid}",
            endpoint=_endpoint_name(nsid),
            params=list(params or []),
            json=body,
            headers=headers,
        )

    # -- sessions -----------------------------------------------------------------------------

    def _take_session(self, payload: Mapping[str, Any], endpoint: str) -> None:
        access, refresh = payload.get("accessJwt"), payload.get("refreshJwt")
        if not isinstance(access, str) or not access or not isinstance(refresh, str):
            raise BlueskyServerError(
                f"Bluesky answered {endpoint} without the session's tokens", endpoint=endpoint
            )
        self._access, self._refresh = access, refresh
        did, handle = payload.get("did"), payload.get("handle")
        self.did = did if isinstance(did, str) else self.did
        self.handle = handle if isinstance(handle, str) else self.handle

    async def login(self) -> None:
        """`createSession` with the handle and app password.

        Raises BlueskyAuthError with Bluesky's reason when they are refused (or missing).
        """
        if not self.has_credentials:
            raise BlueskyAuthError(
                "no Bluesky handle and app password configured to log in with",
                endpoint=_endpoint_name(CREATE_SESSION),
            )
        body = {"identifier": self.identifier, "password": self._password}
        try:
            payload = await self._call("POST", self.pds_url, CREATE_SESSION, body=body)
        except BlueskyRequestError as exc:
            # A 400 (a malformed identifier, a taken-down account...): asking again cannot help.
            raise _refused(exc, exc.message) from exc
        self._take_session(payload, _endpoint_name(CREATE_SESSION))

    async def refresh(self) -> None:
        """`refreshSession` with the refresh token: a new access (and refresh) token."""
        if not self._refresh:
            await self.login()
            return
        payload = await self._call("POST", self.pds_url, REFRESH_SESSION, token=self._refresh)
        self._take_session(payload, _endpoint_name(REFRESH_SESSION))

    async def _renew(self, stale: str | None, *, relogin: bool = False) -> None:
        """A new access token, unless another request got one since `stale` failed: refresh, or
        log in again when the refresh token is refused too (or `relogin`)."""
        async with self._session_lock:
            if self._access != stale and self._access is not None:
                return
            if not relogin and self._refresh:
                try:
                    await self.refresh()
                    return
                except (BlueskyAuthError, BlueskyRequestError):
                    # The refresh token expired or was revoked: start a new session.
                    self._refresh = None
            await self.login()

    async def _authorized(self, nsid: str, params: Sequence[tuple[str, str]]) -> dict[str, Any]:
        """GET through the PDS with the access token, renewing it when it is refused."""
        if self._access is None:
            await self._renew(None, relogin=True)
        renewed = relogged = False
        while True:
            token = self._access
            try:
                return await self._call("GET", self.pds_url, nsid, params=params, token=token)
            except (BlueskyAuthError, BlueskyRequestError) as exc:
                if _is_expired(exc) and not renewed:
                    renewed = True
                    await self._renew(token)
                    continue
                if (exc.status == 401 or _is_expired(exc)) and not relogged:
                    # A token the PDS no longer knows (revoked, the PDS restarted), or a fresh
                    # token refused as expired (clock skew): log in anew, once.
                    relogged = True
                    await self._renew(token, relogin=True)
                    continue
                raise

    # -- search -------------------------------------------------------------------------------

    async def search_posts(
        self,
        q: str,
        *,
        tags: Iterable[str] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        sort: str = "latest",
        limit: int = MAX_LIMIT,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page of `app.bsky.feed.searchPosts`: `{"posts": [postView], "cursor"?, ...}`.

        `tags` are ANDed by Bluesky; `since` is inclusive, `until` exclusive (both on `sortAt`).
        """
        params: list[tuple[str, str]] = [("q", q)]
        params.extend(("tag", tag.lstrip("#")) for tag in tags)
        params.append(("sort", sort))
        params.append(("limit", str(max(1, min(MAX_LIMIT, limit)))))
        if since is not None:
            params.append(("since", bsky_time(since)))
        if until is not None:
            params.append(("until", bsky_time(until)))
        if cursor:
            params.append(("cursor", cursor))
        if self.route == "public":
            try:
                return await self._call("GET", self.base_url, SEARCH_POSTS, params=params)
            except BlueskyAuthError as exc:
                if not self.has_credentials:
                    raise _refused(
                        exc,
                        f"{exc.message} (no Bluesky handle and app password configured to "
                        "search through a PDS instead)",
                    ) from exc
                self.public_refusal = exc.message
                self.route = "pds"
        return await self._authorized(SEARCH_POSTS, params)


# -- parsing ----------------------------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _uri(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.startswith("at://"):
        raise PayloadError(f"{what} has no valid at:// uri: {value!r:.80}")
    return value


def uri_did(uri: str | None) -> str | None:
    """The DID in an at:// URI (`at://did:plc:.../app.bsky.feed.post/rkey`), if it has one."""
    if not uri or not uri.startswith("at://"):
        return None
    authority = uri[len("at://") :].split("/", 1)[0]
    return authority if authority.startswith("did:") else None


def _is_post_uri(uri: Any) -> bool:
    if not isinstance(uri, str) or not uri.startswith("at://"):
        return False
    parts = uri[len("at://") :].split("/")
    return len(parts) >= 3 and parts[1] == POST_COLLECTION


def parse_author(obj: Any) -> UserRecord:
    """An `app.bsky.actor.defs#profileViewBasic`: id = DID, username = handle."""
    if not isinstance(obj, dict):
        raise PayloadError(f"an author is not an object: {obj!r:.80}")
    did = obj.get("did")
    if not isinstance(did, str) or not did.startswith("did:"):
        raise PayloadError(f"an author has no valid DID: {did!r:.80}")
    handle = obj.get("handle")
    if not isinstance(handle, str) or not handle:
        raise PayloadError(f"author {did} has no handle")
    display = obj.get("displayName")
    avatar = obj.get("avatar")
    verification = _dict(obj.get("verification"))
    return UserRecord(
        id=did,
        username=handle,
        name=display.strip() if isinstance(display, str) and display.strip() else handle,
        profile_image_url=avatar if isinstance(avatar, str) and avatar else None,
        verified=verification.get("verifiedStatus") == "valid",
        followers_count=None,
        network=NETWORK,
    )


def post_time(view: Mapping[str, Any], what: str = "a post") -> datetime:
    """When a post was made: its record's `createdAt`, or failing that its `indexedAt`."""
    record = _dict(view.get("record") if "record" in view else view.get("value"))
    created = record.get("createdAt")
    if isinstance(created, str) and created:
        try:
            return parse_datetime(created, what)
        except PayloadError:
            pass
    return parse_datetime(view.get("indexedAt"), what)


def sort_time(view: Mapping[str, Any]) -> datetime:
    """A post's `sortAt` as the AppView computes it (searchPosts' `since`/`until` filter on it):
    the earlier of `createdAt` and `indexedAt`, so a post dated in the future sorts when it was
    indexed."""
    indexed_raw = view.get("indexedAt")
    created = post_time(view, f"post {view.get('uri')}")
    if isinstance(indexed_raw, str) and indexed_raw:
        try:
            return min(created, parse_datetime(indexed_raw, "indexedAt"))
        except PayloadError:
            return created
    return created


def _quoted(view: Mapping[str, Any], record: Mapping[str, Any]) -> tuple[str | None, Any]:
    """The post a post quotes: its uri and, when the view has it, its `viewRecord`."""
    embed = _dict(view.get("embed"))
    kind = embed.get("$type")
    inner: dict[str, Any] = {}
    if kind == RECORD_VIEW:
        inner = _dict(embed.get("record"))
    elif kind == RECORD_WITH_MEDIA_VIEW:
        inner = _dict(_dict(embed.get("record")).get("record"))
    if _is_post_uri(inner.get("uri")):
        full = inner if inner.get("$type") == VIEW_RECORD else None
        return str(inner["uri"]), full
    # No view (a record from an archive, or a viewRecord's own `value`): the record's embed.
    raw = _dict(record.get("embed"))
    if raw.get("$type") == RECORD_EMBED:
        ref = _dict(raw.get("record"))
    elif raw.get("$type") == RECORD_WITH_MEDIA_EMBED:
        ref = _dict(_dict(raw.get("record")).get("record"))
    else:
        ref = {}
    if _is_post_uri(ref.get("uri")):
        return str(ref["uri"]), None
    return None, None


def _post_record(view: dict[str, Any], record: dict[str, Any], uri: str) -> PostRecord:
    author = _dict(view.get("author"))
    did = author.get("did")
    if not isinstance(did, str) or not did.startswith("did:"):
        raise PayloadError(f"post {uri} has no author DID")
    text = record.get("text")
    if not isinstance(text, str):
        raise PayloadError(f"post {uri} has no text")
    reply = _dict(record.get("reply"))
    parent = _dict(reply.get("parent")).get("uri")
    root = _dict(reply.get("root")).get("uri")
    parent_uri = parent if isinstance(parent, str) and parent.startswith("at://") else None
    root_uri = root if isinstance(root, str) and root.startswith("at://") else None
    quoted_uri, _ = _quoted(view, record)
    if quoted_uri is not None:
        kind = "quote"  # a reply that quotes is a quote
    elif parent_uri is not None:
        kind = "reply"
    else:
        kind = "original"
    langs = record.get("langs")
    lang = langs[0] if isinstance(langs, list) and langs and isinstance(langs[0], str) else None
    return PostRecord(
        id=uri,
        author_id=did,
        created_at=post_time(view, f"post {uri}"),
        text=text,
        kind=kind,
        in_reply_to_id=parent_uri,
        in_reply_to_user_id=uri_did(parent_uri),
        quoted_id=quoted_uri,
        retweeted_id=None,
        conversation_id=root_uri or (uri if parent_uri is None else parent_uri),
        lang=lang,
        poll_id=None,
        retweet_count=_count(view.get("repostCount")),
        reply_count=_count(view.get("replyCount")),
        like_count=_count(view.get("likeCount")),
        quote_count=_count(view.get("quoteCount")),
        impression_count=None,
        raw=view,
        network=NETWORK,
    )


def parse_post_view(view: Any) -> Parsed:
    """One `app.bsky.feed.defs#postView`: the post (collected), the post it quotes (context,
    from the embed's `viewRecord`), and their authors."""
    if not isinstance(view, dict):
        raise PayloadError(f"a post is not an object: {view!r:.80}")
    uri = _uri(view.get("uri"), "a post")
    record = view.get("record")
    if not isinstance(record, dict):
        raise PayloadError(f"post {uri} has no record")
    parsed = Parsed()
    parsed.collected.append(_post_record(view, record, uri))
    parsed.users.append(parse_author(view.get("author")))
    _, quoted = _quoted(view, record)
    if isinstance(quoted, dict):
        try:
            parsed.context.append(parse_view_record(quoted))
            parsed.users.append(parse_author(quoted.get("author")))
        except PayloadError as exc:
            parsed.problems.append(f"the post quoted by {uri}: {exc}")
    return parsed


def parse_view_record(obj: dict[str, Any]) -> PostRecord:
    """An `app.bsky.embed.record#viewRecord` (a quoted post): its record is in `value`."""
    uri = _uri(obj.get("uri"), "a quoted post")
    value = obj.get("value")
    if not isinstance(value, dict):
        raise PayloadError(f"quoted post {uri} has no record value")
    return _post_record(obj, value, uri)


def _norm_tag(tag: str) -> str:
    return tag.strip().lstrip("#＃").casefold()


def chat_tags(hashtags: Iterable[str]) -> tuple[str, ...]:
    """The chat's hashtags without `#`, each once (any case): what `tag=` takes."""
    tags: dict[str, str] = {}
    for raw in hashtags:
        tag = raw.strip().lstrip("#＃").strip()
        if tag:
            tags.setdefault(tag.casefold(), tag)
    if not tags:
        raise ValueError("a chat needs at least one hashtag to search for")
    return tuple(tags.values())


def post_tags(view: Mapping[str, Any]) -> set[str]:
    """The hashtags a post declares: its tag facets and `record.tags`, casefolded."""
    record = _dict(view.get("record") if "record" in view else view.get("value"))
    found: set[str] = set()
    for facet in record.get("facets") or []:
        for feature in _dict(facet).get("features") or []:
            feature = _dict(feature)
            if feature.get("$type") == TAG_FEATURE and isinstance(feature.get("tag"), str):
                found.add(_norm_tag(feature["tag"]))
    for tag in record.get("tags") or []:
        if isinstance(tag, str):
            found.add(_norm_tag(tag))
    return found


def matches_hashtags(view: Mapping[str, Any], hashtags: Iterable[str]) -> bool:
    """Whether a post carries one of `hashtags`: a tag facet, a `record.tags` entry or, failing
    those, a `#word` in its text (any case; `#QIHour` does not match `#QIHours`)."""
    wanted = {_norm_tag(tag) for tag in hashtags if _norm_tag(tag)}
    if post_tags(view) & wanted:
        return True
    record = _dict(view.get("record") if "record" in view else view.get("value"))
    text = record.get("text")
    if not isinstance(text, str):
        return False
    return any(
        re.search(rf"(?<![\w#])[#＃]{re.escape(tag)}(?!\w)", text, re.IGNORECASE) for tag in wanted
    )


# -- the position -----------------------------------------------------------------------------


def first_since(chat: ChatTarget) -> datetime:
    """Where the first round starts: `chat.lookback` before the chat (search has no time limit
    on Bluesky)."""
    return chat.start - chat.lookback


class SearchPosition:
    """Where a chat's Bluesky search stands: `since` and the posts already seen after it."""

    def __init__(self, since: datetime | None = None, seen: Iterable[str] = ()) -> None:
        self.since = since
        # uri -> sortAt. Stored URIs come without their time: until met again, `since` stands in.
        self._seen: dict[str, datetime] = {}
        stand_in = since or datetime.min.replace(tzinfo=UTC)
        for uri in seen:
            self._seen[uri] = stand_in

    @classmethod
    def from_position(cls, position: Mapping[str, Any]) -> SearchPosition:
        """From a stored position; what cannot be read is left out (a wider search, not a loss)."""
        since: datetime | None = None
        raw = position.get("since")
        if isinstance(raw, str) and raw:
            try:
                since = parse_datetime(raw, "the stored position")
            except PayloadError:
                since = None
        seen = position.get("seen")
        uris = [u for u in seen if isinstance(u, str)] if isinstance(seen, list) else []
        return cls(since, uris)

    def __contains__(self, uri: object) -> bool:
        return uri in self._seen

    def add(self, uri: str, sort_at: datetime) -> bool:
        """Note a post read; False if it was seen before (its time is then corrected)."""
        known = uri in self._seen
        self._seen[uri] = sort_at
        return not known

    @property
    def newest(self) -> datetime | None:
        return max(self._seen.values(), default=None)

    def advance(self, overlap: timedelta, floor: datetime | None = None) -> None:
        """After a complete round: `since` moves up to the newest post seen minus `overlap`, but
        not below `floor` (the round's own `since`) and never back; what is older than that,
        with a margin, is forgotten."""
        newest = self.newest
        if newest is not None and newest > datetime.min.replace(tzinfo=UTC) + overlap:
            candidate = newest - overlap
            if floor is not None:
                candidate = max(candidate, floor)
            if self.since is None or candidate > self.since:
                self.since = candidate
        if self.since is not None:
            keep_from = self.since - overlap
            self._seen = {u: t for u, t in self._seen.items() if t >= keep_from}
        if len(self._seen) > MEMORY_LIMIT:
            newest_first = sorted(self._seen.items(), key=lambda item: item[1], reverse=True)
            self._seen = dict(newest_first[:MEMORY_LIMIT])

    def as_position(self) -> dict[str, Any]:
        """The stored form: `since` and the newest URIs at or after it."""
        if self.since is None:
            return {}
        since = self.since
        inside = [(t, u) for u, t in self._seen.items() if t >= since]
        inside.sort(reverse=True)
        return {"since": bsky_time(since), "seen": [u for _, u in inside[:SEEN_LIMIT]]}


# -- running ----------------------------------------------------------------------------------


def _unique_users(parsed: Parsed) -> None:
    parsed.users = list({user.id: user for user in parsed.users}.values())
    collected = {post.id for post in parsed.collected}
    context: dict[str, PostRecord] = {}
    for post in parsed.context:
        if post.id not in collected:
            context.setdefault(post.id, post)
    parsed.context = list(context.values())


def read_page(
    page: Mapping[str, Any], hashtags: Iterable[str], position: SearchPosition
) -> tuple[Parsed, list[datetime]]:
    """The new posts of a searchPosts page that carry the chat's hashtags, parsed; and the
    `sortAt` of every post on it (for paging). Posts already in `position` are dropped, and every
    post read is noted in it."""
    posts = page.get("posts")
    if not isinstance(posts, list):
        raise BlueskyServerError(
            "Bluesky sent a searchPosts page without its `posts` list",
            endpoint=_endpoint_name(SEARCH_POSTS),
        )
    wanted = tuple(hashtags)
    parsed = Parsed()
    times: list[datetime] = []
    for view in posts:
        try:
            if not isinstance(view, dict):
                raise PayloadError(f"a post is not an object: {view!r:.80}")
            uri = _uri(view.get("uri"), "a post")
            sort_at = sort_time(view)
        except PayloadError as exc:
            parsed.problems.append(str(exc))
            continue
        times.append(sort_at)
        if not position.add(uri, sort_at):
            continue
        if not matches_hashtags(view, wanted):
            continue
        try:
            parsed.extend(parse_post_view(view))
        except PayloadError as exc:
            parsed.problems.append(str(exc))
    _unique_users(parsed)
    return parsed, times


class _Batcher:
    """Emits each page's new posts, holding the latest batch back so that the round's position
    rides on its last batch; pages with nothing new are counted into the next batch."""

    def __init__(self, ctx: SourceContext, source: str) -> None:
        self.ctx = ctx
        self.source = source
        self.pending: SourceBatch | None = None
        self.read = 0
        self.requests = 0

    async def page(self, parsed: Parsed, read: int) -> None:
        self.read += read
        self.requests += 1
        if not (parsed.collected or parsed.context):
            return
        await self.flush()
        self.pending = SourceBatch(
            self.source, parsed, posts_read=self.read, requests=self.requests
        )
        self.read = self.requests = 0

    async def flush(self, position: dict[str, Any] | None = None) -> None:
        batch = self.pending
        self.pending = None
        if batch is None and position is None:
            return
        if batch is None:
            batch = SourceBatch(self.source, Parsed(), posts_read=self.read, requests=self.requests)
            self.read = self.requests = 0
        batch.position = position
        await self.ctx.emit(batch)


async def search_round(
    ctx: SourceContext,
    client: BlueskyClient,
    caller: RetryingCaller,
    position: SearchPosition,
    *,
    limit: int = MAX_LIMIT,
    overlap: timedelta = OVERLAP,
    source: str = SOURCE,
    stored: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One polling round: every hashtag's posts from `position.since` (or the chat's first
    start), through every page, emitted. Returns the round's position, which rides on the last
    batch when it differs from `stored`."""
    tags = chat_tags(ctx.chat.hashtags)
    since = position.since or first_since(ctx.chat)
    batcher = _Batcher(ctx, source)
    for tag in tags:
        cursor: str | None = None
        until: datetime | None = None
        oldest: datetime | None = None
        while True:
            asked_cursor = cursor

            async def fetch(
                tag: str = tag, cursor: str | None = cursor, until: datetime | None = until
            ) -> dict[str, Any]:
                return await client.search_posts(
                    f"#{tag}", tags=[tag], since=since, until=until, limit=limit, cursor=cursor
                )

            page = await caller.call(fetch)
            parsed, times = read_page(page, tags, position)
            await batcher.page(parsed, len(times))
            if times:
                oldest = min(times) if oldest is None else min(oldest, *times)
            next_cursor = page.get("cursor")
            cursor = next_cursor if isinstance(next_cursor, str) and next_cursor else None
            posts = page.get("posts") or []
            if not posts:
                break
            if cursor is not None and cursor != asked_cursor:
                continue
            if len(posts) < limit or oldest is None:
                break
            # The server stopped paging on a full page: go on below the oldest post seen
            # (`until` is exclusive; the posts at that very time are read again and dropped).
            below = oldest + timedelta(milliseconds=1)
            if (until is not None and below >= until) or below <= since:
                break
            until, cursor = below, None
    position.advance(overlap, floor=since)
    new = position.as_position()
    await batcher.flush(new if new and new != stored else None)
    return new


async def run_bluesky(
    ctx: SourceContext,
    client: BlueskyClient,
    *,
    interval: float = 15.0,
    stop: StopEvent | None = None,
    backoff: Backoff | None = None,
    limit: int = MAX_LIMIT,
    overlap: timedelta = OVERLAP,
) -> None:
    """Poll Bluesky search for the chat until `stop` is set (or Bluesky refuses for good).

    Resumes from `ctx.position` (`{"since", "seen"}`) when there is one.
    """
    tags = chat_tags(ctx.chat.hashtags)
    listed = " ".join(f"#{tag}" for tag in tags)
    # The running detail changes when the client leaves the public endpoint for the PDS.
    report = Reporter(ctx, SOURCE, new_details=True)

    def running() -> str:
        detail = f"polling {listed} every {interval:g} s {client.describe()}"
        if client.public_refusal:
            detail += f" (the public endpoint refused: {client.public_refusal})"
        return detail

    caller = RetryingCaller(report, backoff or Backoff(), running)
    report("starting", f"searching Bluesky for {listed} {client.describe()}")
    ended: list[str] = []

    async def poll() -> None:
        position = SearchPosition.from_position(ctx.position)
        stored: dict[str, Any] | None = {
            key: ctx.position[key] for key in ("since", "seen") if key in ctx.position
        }
        while True:
            try:
                stored = await search_round(
                    ctx,
                    client,
                    caller,
                    position,
                    limit=limit,
                    overlap=overlap,
                    stored=stored,
                )
            except BlueskyAuthError as exc:
                ended.append(f"Bluesky refused the credentials: {exc.message}")
                return
            except BlueskyError as exc:
                ended.append(f"Bluesky rejected the search: {exc.message}")
                return
            await anyio.sleep(interval)

    await run_source(report, stop, poll, ended)
