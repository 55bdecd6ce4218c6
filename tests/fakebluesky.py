"""A fake Bluesky for tests: searchPosts and sessions over real HTTP, with scriptable faults.

`FakeBluesky` serves a small Starlette app with uvicorn on a free 127.0.0.1 port, in a thread
(`tests/fakeserver.py`, as the other fakes do), so the real client (`app.sources.bluesky`, httpx)
talks to it exactly as to Bluesky. One server plays both hosts: the public AppView at
`fake.public_url` (`/public`) and the account's PDS at `fake.pds_url` (`/pds`):

    with FakeBluesky() as fake:
        posts = PostFactory(datetime(2026, 3, 31, 17, 0, tzinfo=UTC))
        fake.publish(posts.post(HOST, "Q1. Welcome! #LeadingQI #QIHour"))
        ... BlueskyClient(fake.public_url, fake.pds_url, fake.identifier, fake.app_password) ...
        fake.fail_next("search", 429, reset_in=1)

Only *published* posts are visible. Endpoints, as the lexicons and docs.bsky.app describe them:

- `GET {public,pds}/xrpc/app.bsky.feed.searchPosts`: `q` (required; space-separated terms that
  must all hold: `#tag` is a tag facet, a `record.tags` entry or `#tag` in the text, a word is a
  word of the text, any case), `tag` (repeatable, ANDed; tag facets and `record.tags` only),
  `since` (inclusive) and `until` (exclusive) on `sortAt` (the earlier of `createdAt` and
  `indexedAt`; a datetime or a `YYYY-MM-DD` date), `sort` (`latest`, `top`), `limit` (1-100,
  default 25), `cursor` (an offset, as Bluesky's is: results are counted when each page is asked
  for, so posts published between pages shift them). The answer is
  `{"cursor"?, "hitsTotal", "posts": [postView]}`. Through the PDS it needs
  `Authorization: Bearer <accessJwt>`: none gets 401 AuthenticationRequired, an unknown token 401
  InvalidToken, an expired one 400 ExpiredToken.
- `POST /pds/xrpc/com.atproto.server.createSession` `{identifier, password}` (a handle, DID or
  e-mail and the app password): `{did, handle, email, accessJwt, refreshJwt, active}`; a wrong
  password gets 401 AuthenticationRequired "Invalid identifier or password".
- `POST /pds/xrpc/com.atproto.server.refreshSession` with `Authorization: Bearer <refreshJwt>`:
  a new pair (the old refresh token is revoked); an expired one gets 400 ExpiredToken.

Every answer carries `RateLimit-Limit/-Remaining/-Reset/-Policy` (Reset in Unix seconds) and
errors are XRPC errors, `{"error": name, "message": text}`. Every request is recorded
(`fake.requests()`: route, endpoint, params, tags, authorization, time, status, headers and the
URIs returned).

Faults, scripted from the test:
- `fail_next(endpoint, status, times=, reset_in=, after=)` on "search", "createSession" or
  "refreshSession": 429 (remaining 0, reset `reset_in` s ahead), 500, 502, 503, 403...;
  `hang_next(endpoint, seconds)`.
- `refuse_public = 403` (or 401): the public AppView refuses searchPosts, as it has at times.
- `expire_access_tokens()`, `expire_refresh_tokens()`; `access_ttl` for tokens that expire alone.
- switches: `duplicate_across_pages` (each page after the first repeats the last post of the one
  before), `out_of_order_across_pages` (the posts on each side of a page boundary swap places),
  `max_pages` (no cursor after that many pages, as search "may not allow scrolling through the
  entire result set"), `ignore_tag_filter` (search ignores `tag` and matches `q`'s words loosely,
  so posts without the hashtag come back).

`PostFactory` builds `app.bsky.feed.defs#postView`s as the AppView returns them: TID record keys,
CIDs, DIDs, tag and mention facets with UTF-8 byte offsets, replies (`record.reply` root/parent),
quotes (`app.bsky.embed.record#view` with the quoted `viewRecord`, or `recordWithMedia#view`
with images), counts, `indexedAt` a little after `createdAt`.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, cast

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests import fakeserver
from tests.fakeserver import FakeServer, Fault, epoch_reset, read_body

Endpoint = Literal["search", "createSession", "refreshSession"]
ENDPOINTS: tuple[Endpoint, ...] = ("search", "createSession", "refreshSession")
RouteName = Literal["public", "pds"]
# The AppView's and PDS's limits (docs.bsky.app rate limits): 3000 requests per 5 minutes by IP,
# createSession 30 per 5 minutes per account.
DEFAULT_LIMITS: dict[Endpoint, int] = {"search": 3000, "createSession": 30, "refreshSession": 3000}
WINDOW_SECONDS = 300
ACCESS_TTL = 2 * 3600.0
REFRESH_TTL = 90 * 24 * 3600.0

# XRPC's error names for HTTP statuses (@atproto/xrpc ResponseType).
XRPC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("InvalidRequest", "Invalid Request"),
    401: ("AuthenticationRequired", "Authentication Required"),
    403: ("Forbidden", "Forbidden"),
    404: ("XRPCNotSupported", "XRPC Not Supported"),
    429: ("RateLimitExceeded", "Rate Limit Exceeded"),
    500: ("InternalServerError", "Internal Server Error"),
    501: ("MethodNotImplemented", "Method Not Implemented"),
    502: ("UpstreamFailure", "Upstream Failure"),
    503: ("NotEnoughResources", "Not Enough Resources"),
    504: ("UpstreamTimeout", "Upstream Timeout"),
}

POST = "app.bsky.feed.post"
TID_CHARS = "234567abcdefghijklmnopqrstuvwxyz"


# -- building posts ---------------------------------------------------------------------------


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode().lower().rstrip("=")


def cid_for(data: Any) -> str:
    """A CIDv1 (dag-cbor, sha-256, base32) made from `data`'s JSON: `bafyrei...`, 59 chars."""
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).digest()
    return "b" + _b32(bytes([0x01, 0x71, 0x12, 0x20]) + digest)


def did_for(handle: str) -> str:
    """A did:plc made from a handle (24 base32 characters, as PLC identifiers are)."""
    return "did:plc:" + _b32(hashlib.sha256(handle.encode()).digest()[:15])


def tid(when: datetime, clock_id: int = 0) -> str:
    """A TID record key: microseconds since the epoch and a clock id, base32-sortable, 13 chars."""
    micros = int(when.timestamp() * 1_000_000)
    value = (micros << 10) | (clock_id & 0x3FF)
    chars = []
    for _ in range(13):
        chars.append(TID_CHARS[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def bsky_time(value: datetime) -> str:
    value = value.astimezone(UTC)
    return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}Z"


def parse_time(value: str) -> datetime:
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Account:
    handle: str
    display_name: str = ""

    @property
    def did(self) -> str:
        return did_for(self.handle)

    def view(self) -> dict[str, Any]:
        """An `app.bsky.actor.defs#profileViewBasic`."""
        view: dict[str, Any] = {"did": self.did, "handle": self.handle}
        if self.display_name:
            view["displayName"] = self.display_name
        view["avatar"] = (
            f"https://cdn.bsky.app/img/avatar/plain/{self.did}/{cid_for(self.handle)}@jpeg"
        )
        view["associated"] = {"chat": {"allowIncoming": "following"}}
        view["labels"] = []
        view["createdAt"] = "2024-11-12T09:41:27.512Z"
        return view


def facets_for(text: str, accounts: Mapping[str, Account] | None = None) -> list[dict[str, Any]]:
    """Tag (and mention) facets for `text`, with UTF-8 byte offsets, as the app makes them."""
    facets: list[dict[str, Any]] = []
    for match in re.finditer(r"(?<![\w#@])([#@])([\w.\-]*\w)", text):
        start = len(text[: match.start()].encode())
        end = len(text[: match.end()].encode())
        if match.group(1) == "#":
            feature = {"$type": "app.bsky.richtext.facet#tag", "tag": match.group(2)}
        else:
            account = (accounts or {}).get(match.group(2))
            if account is None:
                continue
            feature = {"$type": "app.bsky.richtext.facet#mention", "did": account.did}
        facets.append({"index": {"byteStart": start, "byteEnd": end}, "features": [feature]})
    return facets


class PostFactory:
    """Makes postViews one after another, `step` apart unless told when (`at=`)."""

    def __init__(self, start: datetime, step: timedelta = timedelta(seconds=20)) -> None:
        self.next_at = start
        self.step = step
        self.clock = 0
        self.accounts: dict[str, Account] = {}

    def post(
        self,
        author: Account,
        text: str,
        *,
        at: datetime | None = None,
        indexed_after: timedelta = timedelta(milliseconds=800),
        reply_to: Mapping[str, Any] | None = None,
        quote: Mapping[str, Any] | None = None,
        images: int = 0,
        tags_as: Literal["facet", "tags", "text"] = "facet",
        extra_tags: Iterable[str] = (),
        langs: Iterable[str] = ("en",),
        likes: int = 0,
        reposts: int = 0,
        replies: int = 0,
        quotes: int = 0,
    ) -> dict[str, Any]:
        """A postView. `tags_as`: the hashtags in `text` as facets (the app), only in the text
        (a client that makes no facets); `extra_tags` go into `record.tags` (not in the text)."""
        created = at or self.next_at
        self.next_at = created + self.step
        self.clock += 1
        self.accounts[author.handle] = author
        record: dict[str, Any] = {"$type": POST, "createdAt": bsky_time(created)}
        if tags_as == "facet" or "@" in text:
            facets = facets_for(text, self.accounts)
            if tags_as != "facet":
                facets = [f for f in facets if "tag" not in f["features"][0]]
            if facets:
                record["facets"] = facets
        if langs:
            record["langs"] = list(langs)
        extra = list(extra_tags)
        if extra:
            record["tags"] = extra
        if reply_to is not None:
            parent = {"uri": reply_to["uri"], "cid": reply_to["cid"]}
            root = reply_to["record"].get("reply", {}).get("root", parent)
            record["reply"] = {"root": dict(root), "parent": parent}
        uri = f"at://{author.did}/{POST}/{tid(created, self.clock)}"
        embed_view = None
        if quote is not None or images:
            embed_record, embed_view = self._embed(author, quote, images, uri)
            record["embed"] = embed_record
        record["text"] = text
        view: dict[str, Any] = {
            "uri": uri,
            "cid": cid_for(record),
            "author": author.view(),
            "record": record,
        }
        if embed_view is not None:
            view["embed"] = embed_view
        view.update(
            {
                "bookmarkCount": 0,
                "replyCount": replies,
                "repostCount": reposts,
                "likeCount": likes,
                "quoteCount": quotes,
                "indexedAt": bsky_time(created + indexed_after),
                "labels": [],
            }
        )
        return view

    def _embed(
        self, author: Account, quote: Mapping[str, Any] | None, images: int, uri: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        media_record = media_view = None
        if images:
            blobs = [cid_for([uri, n]) for n in range(images)]
            media_record = {
                "$type": "app.bsky.embed.images",
                "images": [
                    {
                        "alt": "",
                        "image": {
                            "$type": "blob",
                            "ref": {"$link": blob},
                            "mimeType": "image/jpeg",
                            "size": 284_513,
                        },
                        "aspectRatio": {"width": 1600, "height": 900},
                    }
                    for blob in blobs
                ],
            }
            media_view = {
                "$type": "app.bsky.embed.images#view",
                "images": [
                    {
                        "thumb": f"https://cdn.bsky.app/img/feed_thumbnail/plain/{author.did}/{blob}@jpeg",
                        "fullsize": f"https://cdn.bsky.app/img/feed_fullsize/plain/{author.did}/{blob}@jpeg",
                        "alt": "",
                        "aspectRatio": {"width": 1600, "height": 900},
                    }
                    for blob in blobs
                ],
            }
        if quote is None:
            assert media_record is not None and media_view is not None
            return media_record, media_view
        strong_ref = {"uri": quote["uri"], "cid": quote["cid"]}
        record_view = {"$type": "app.bsky.embed.record#view", "record": view_record(quote)}
        if media_record is None:
            return {"$type": "app.bsky.embed.record", "record": strong_ref}, record_view
        return (
            {
                "$type": "app.bsky.embed.recordWithMedia",
                "record": {"$type": "app.bsky.embed.record", "record": strong_ref},
                "media": media_record,
            },
            {
                "$type": "app.bsky.embed.recordWithMedia#view",
                "record": record_view,
                "media": media_view,
            },
        )


def view_record(post: Mapping[str, Any]) -> dict[str, Any]:
    """The `app.bsky.embed.record#viewRecord` of a postView (how a quote shows the quoted post)."""
    record: dict[str, Any] = {
        "$type": "app.bsky.embed.record#viewRecord",
        "uri": post["uri"],
        "cid": post["cid"],
        "author": copy.deepcopy(post["author"]),
        "value": copy.deepcopy(post["record"]),
        "labels": [],
        "likeCount": post.get("likeCount", 0),
        "replyCount": post.get("replyCount", 0),
        "repostCount": post.get("repostCount", 0),
        "quoteCount": post.get("quoteCount", 0),
        "indexedAt": post["indexedAt"],
    }
    if "embed" in post:
        record["embeds"] = [copy.deepcopy(post["embed"])]
    return record


# -- what a post says -------------------------------------------------------------------------


def sort_at(view: Mapping[str, Any]) -> datetime:
    """The AppView's `sortAt`: the earlier of `createdAt` and `indexedAt`."""
    created = parse_time(view["record"]["createdAt"])
    indexed = parse_time(view["indexedAt"])
    return min(created, indexed)


def declared_tags(view: Mapping[str, Any]) -> set[str]:
    record = view["record"]
    tags = {str(t).lower() for t in record.get("tags") or []}
    for facet in record.get("facets") or []:
        for feature in facet.get("features") or []:
            if feature.get("$type") == "app.bsky.richtext.facet#tag":
                tags.add(str(feature["tag"]).lower())
    return tags


def _term_matches(view: Mapping[str, Any], term: str, loose: bool) -> bool:
    text = str(view["record"].get("text") or "")
    if term.startswith("#"):
        tag = term[1:].lower()
        if tag in declared_tags(view):
            return True
        hashed = "#?" if loose else "#"
        return re.search(rf"(?<![\w#]){hashed}{re.escape(tag)}(?!\w)", text, re.I) is not None
    return re.search(rf"(?<!\w){re.escape(term)}(?!\w)", text, re.I) is not None


# -- the server -------------------------------------------------------------------------------


@dataclass(kw_only=True)
class RecordedRequest(fakeserver.RecordedRequest):
    route: RouteName
    endpoint: Endpoint
    params: dict[str, str]  # the last value of each parameter
    tags: list[str]  # every `tag` parameter
    body: Any
    authorization: str | None
    returned: list[str] = field(default_factory=list)  # the URIs of the posts answered


class FakeBluesky(FakeServer[Endpoint, RecordedRequest]):
    """The fake Bluesky and its controls. Use as a context manager: `with FakeBluesky() as fake:`."""

    name = "Bluesky"
    window_seconds = WINDOW_SECONDS

    def __init__(
        self,
        *,
        handle: str = "tweetchat-test.bsky.social",
        app_password: str = "abcd-efgh-ijkl-mnop",
        access_ttl: float = ACCESS_TTL,
    ) -> None:
        super().__init__()
        self.reset(handle=handle, app_password=app_password, access_ttl=access_ttl)

    @property
    def public_url(self) -> str:
        return f"{self.url}/public"

    @property
    def pds_url(self) -> str:
        return f"{self.url}/pds"

    def reset(
        self,
        *,
        handle: str = "tweetchat-test.bsky.social",
        app_password: str = "abcd-efgh-ijkl-mnop",
        access_ttl: float = ACCESS_TTL,
    ) -> None:
        """Start over as if new, keeping the server (a test module may share one)."""
        with self._lock:
            self._start_over(ENDPOINTS)
            self.account = Account(handle, "tweetchat")
            self.identifier = handle
            self.email = f"{handle.split('.')[0]}@example.org"
            self.app_password = app_password
            self.access_ttl = access_ttl
            self.refuse_public: int | None = None
            self.duplicate_across_pages = False
            self.out_of_order_across_pages = False
            self.ignore_tag_filter = False
            self.max_pages: int | None = None
            self.posts: dict[str, dict[str, Any]] = {}
            self.published: list[str] = []
            self._access: dict[str, float] = {}  # token -> expiry (epoch seconds)
            self._refresh: dict[str, float] = {}

    # -- controls -----------------------------------------------------------------------------

    def publish(self, *views: Mapping[str, Any]) -> list[str]:
        """Make these posts visible to search, in this order; returns their URIs."""
        with self._lock:
            uris = []
            for view in views:
                uri = str(view["uri"])
                self.posts[uri] = copy.deepcopy(dict(view))
                if uri not in self.published:
                    self.published.append(uri)
                uris.append(uri)
            return uris

    def load(self, path: str | Path) -> list[dict[str, Any]]:
        """The posts of a saved searchPosts answer (not published)."""
        page = json.loads(Path(path).read_text(encoding="utf-8"))
        return [dict(view) for view in page["posts"]]

    def set_counts(self, uri: str, **counts: int) -> None:
        """Change a post's counts (likeCount=..., repostCount=...)."""
        with self._lock:
            self.posts[uri].update(counts)

    def expire_access_tokens(self) -> None:
        with self._lock:
            self._access = dict.fromkeys(self._access, 0.0)

    def expire_refresh_tokens(self) -> None:
        with self._lock:
            self._refresh = dict.fromkeys(self._refresh, 0.0)

    def requests(
        self, endpoint: Endpoint | None = None, route: RouteName | None = None
    ) -> list[RecordedRequest]:
        return [r for r in super().requests(endpoint) if route is None or r.route == route]

    # -- serving ------------------------------------------------------------------------------

    def app(self) -> Starlette:
        async def public_search(request: Request) -> Response:
            return await self._search(request, "public")

        async def pds_search(request: Request) -> Response:
            return await self._search(request, "pds")

        return Starlette(
            routes=[
                Route("/public/xrpc/app.bsky.feed.searchPosts", public_search, methods=["GET"]),
                Route("/pds/xrpc/app.bsky.feed.searchPosts", pds_search, methods=["GET"]),
                Route(
                    "/pds/xrpc/com.atproto.server.createSession",
                    self._create_session,
                    methods=["POST"],
                ),
                Route(
                    "/pds/xrpc/com.atproto.server.refreshSession",
                    self._refresh_session,
                    methods=["POST"],
                ),
            ]
        )

    # -- request plumbing ---------------------------------------------------------------------

    def _rate_limit(self, endpoint: str) -> int:
        return DEFAULT_LIMITS[cast(Endpoint, endpoint)]

    def _format_rate_headers(self, limit: int, remaining: int, reset: float) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(limit),
            "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": epoch_reset(reset),
            "RateLimit-Policy": f"{limit};w={WINDOW_SECONDS}",
        }

    async def _record(
        self, request: Request, route: RouteName, endpoint: Endpoint
    ) -> tuple[RecordedRequest, Fault | None]:
        record = RecordedRequest(
            method=request.method,
            route=route,
            endpoint=endpoint,
            params=dict(request.query_params),
            tags=request.query_params.getlist("tag"),
            body=await read_body(request),
            authorization=request.headers.get("authorization"),
            time=time.time(),
        )
        fault = self._arrive(record)
        await self._hang(fault)
        return record, fault

    def _error_response(
        self, record: RecordedRequest, status: int, headers: Mapping[str, str], *, scripted: bool
    ) -> Response:
        return self._error(record, status, headers=headers)

    def _error(
        self,
        record: RecordedRequest,
        status: int,
        error: str | None = None,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> JSONResponse:
        name, text = XRPC_ERRORS.get(status, ("InternalServerError", "Internal Server Error"))
        return self._json(
            record, status, {"error": error or name, "message": message or text}, headers
        )

    def _jwt(self, typ: str, scope: str, ttl: float) -> tuple[str, float]:
        now = time.time()

        def part(data: Mapping[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

        header = {"typ": typ, "alg": "ES256K"}
        claims = {
            "scope": scope,
            "sub": self.account.did,
            "aud": "did:web:fake-pds.invalid",
            "jti": secrets.token_urlsafe(16),
            "iat": int(now),
            "exp": int(now + ttl),
        }
        signature = base64.urlsafe_b64encode(secrets.token_bytes(64)).decode().rstrip("=")
        return f"{part(header)}.{part(claims)}.{signature}", now + ttl

    def _new_session(self) -> dict[str, Any]:
        access, access_exp = self._jwt("at+jwt", "com.atproto.appPass", self.access_ttl)
        refresh, refresh_exp = self._jwt("refresh+jwt", "com.atproto.refresh", REFRESH_TTL)
        with self._lock:
            self._access[access] = access_exp
            self._refresh[refresh] = refresh_exp
        return {
            "did": self.account.did,
            "handle": self.account.handle,
            "email": self.email,
            "emailConfirmed": True,
            "emailAuthFactor": False,
            "accessJwt": access,
            "refreshJwt": refresh,
            "active": True,
        }

    @staticmethod
    def _bearer(record: RecordedRequest) -> str | None:
        value = record.authorization or ""
        return value[len("Bearer ") :] if value.startswith("Bearer ") else None

    # -- endpoints ----------------------------------------------------------------------------

    async def _create_session(self, request: Request) -> Response:
        record, fault = await self._record(request, "pds", "createSession")
        refused = self._refusal(record, fault)
        if refused is not None:
            return refused
        headers = self._rate_headers("createSession")
        body = record.body if isinstance(record.body, dict) else {}
        for name in ("identifier", "password"):
            if not isinstance(body.get(name), str):
                message = f'Input must have the property "{name}"'
                return self._error(record, 400, message=message, headers=headers)
        identifier = str(body["identifier"]).lower().lstrip("@")
        known = {self.account.handle.lower(), self.account.did, self.email.lower()}
        if identifier not in known or body["password"] != self.app_password:
            return self._error(
                record,
                401,
                "AuthenticationRequired",
                "Invalid identifier or password",
                headers=headers,
            )
        return self._json(record, 200, self._new_session(), headers)

    async def _refresh_session(self, request: Request) -> Response:
        record, fault = await self._record(request, "pds", "refreshSession")
        refused = self._refusal(record, fault)
        if refused is not None:
            return refused
        headers = self._rate_headers("refreshSession")
        token = self._bearer(record)
        with self._lock:
            expiry = self._refresh.get(token or "")
            if token is None:
                return self._error(record, 401, headers=headers)
            if expiry is None:
                return self._error(
                    record, 400, "InvalidToken", "Token could not be verified", headers=headers
                )
            if expiry <= time.time():
                return self._error(
                    record, 400, "ExpiredToken", "Token has expired", headers=headers
                )
            del self._refresh[token]  # rotated: the old refresh token is spent
        return self._json(record, 200, self._new_session(), headers)

    async def _search(self, request: Request, route: RouteName) -> Response:
        record, fault = await self._record(request, route, "search")
        if route == "public" and self.refuse_public is not None:
            return self._error(record, self.refuse_public, headers=self._rate_headers("search"))
        if route == "pds":
            token = self._bearer(record)
            with self._lock:
                expiry = self._access.get(token or "")
            if token is None:
                return self._error(record, 401, headers=self._rate_headers("search"))
            if expiry is None:
                return self._error(
                    record,
                    401,
                    "InvalidToken",
                    "Token could not be verified",
                    headers=self._rate_headers("search"),
                )
            if expiry <= time.time():
                return self._error(
                    record,
                    400,
                    "ExpiredToken",
                    "Token has expired",
                    headers=self._rate_headers("search"),
                )
        refused = self._refusal(record, fault)
        if refused is not None:
            return refused
        headers = self._rate_headers("search")
        params = request.query_params
        try:
            query = params.get("q")
            if query is None:
                raise ValueError('Params must have the property "q"')
            terms = query.split()
            limit = int(params.get("limit", "25"))
            if not 1 <= limit <= 100:
                raise ValueError(f"limit must be between 1 and 100, got {limit}")
            since = parse_time(params["since"]) if "since" in params else None
            until = parse_time(params["until"]) if "until" in params else None
            offset = int(params.get("cursor", "0"))
            if offset < 0:
                raise ValueError("invalid cursor")
            sort = params.get("sort", "latest")
        except ValueError as exc:
            return self._error(record, 400, message=str(exc), headers=headers)
        tags = [tag.lower() for tag in record.tags]
        with self._lock:
            found = []
            for uri in self.published:
                view = self.posts[uri]
                when = sort_at(view)
                if since is not None and when < since:
                    continue
                if until is not None and when >= until:
                    continue
                if not self.ignore_tag_filter and not all(t in declared_tags(view) for t in tags):
                    continue
                if not all(_term_matches(view, t, self.ignore_tag_filter) for t in terms):
                    continue
                found.append(uri)
            if sort == "top":
                found.sort(key=lambda u: (self.posts[u].get("likeCount", 0), u), reverse=True)
            else:
                found.sort(key=lambda u: (sort_at(self.posts[u]), u), reverse=True)
            if self.out_of_order_across_pages:
                for boundary in range(limit, len(found), limit):
                    found[boundary - 1], found[boundary] = found[boundary], found[boundary - 1]
            start = offset
            if self.duplicate_across_pages and offset > 0:
                start = offset - 1
            page = found[start : start + limit]
            end = start + limit
            body: dict[str, Any] = {}
            more = end < len(found)
            if self.max_pages is not None:
                more = more and offset // limit + 1 < self.max_pages
            if more:
                body["cursor"] = str(end)
            body["hitsTotal"] = len(found)
            posts = [copy.deepcopy(self.posts[uri]) for uri in page]
            if route == "pds":
                for post in posts:
                    post["viewer"] = {"threadMuted": False, "embeddingDisabled": False}
            body["posts"] = posts
            record.returned = list(page)
        return self._json(record, 200, body, headers)
