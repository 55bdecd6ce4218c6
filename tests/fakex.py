"""A fake X API v2 server for tests: the documented protocol over real HTTP, with scriptable faults.

`FakeX` serves a small Starlette app with uvicorn on a free 127.0.0.1 port, in a thread, so the
real clients (`app.sources.x_*`, httpx) talk to it exactly as to X:

    with FakeX(posts=FIXTURES / "qi-chat.jsonl", keepalive_interval=0.2) as fake:
        fake.publish(10)            # the 10 oldest posts are now on X
        ... XApi(fake.url, fake.token) ...
        fake.fail_next("search", 429, reset_in=1)

It holds the posts of an archive of X API v2 pages (`data` posts, `includes` users, tweets and
polls by id); only *published* posts are visible, in the order they were published. Post times
are shifted (`fake.shift`) so the archive's newest post is two minutes old: recent search's
7-day window then holds for any archive. Endpoints, as X documents them:

- `GET /2/tweets/search/recent`: `query` (`#a OR #b`, words, `-is:retweet`, one `(...)` group),
  `since_id`, `until_id`, `start_time`, `end_time`, `max_results` 10-100, `next_token` (pages are
  fixed when the first page is asked for: a token gives the same page whenever it is used);
  like X since May 2026, no retweets unless `search_excludes_retweets` is False.
- `GET /2/tweets/search/stream`: a JSON message a line for each matching post published while
  connected, retweets included, and `\\r\\n` keep-alives every `keepalive_interval`;
  `GET/POST /2/tweets/search/stream/rules`.
- `GET /2/trends/by/woeid/{woeid}`, `GET /2/tweets?ids=` (current metrics; unknown ids in
  `errors`).

Every response carries `x-rate-limit-limit/-remaining/-reset` (X's per-15-minute limits are
counted and enforced); a wrong or missing bearer token gets 401 with X's problem JSON; a
`start_time` or `since_id` older than 7 days gets 400, as on X. Every request is recorded
(`fake.requests()`: path, params, body, time, status, headers), so tests can assert on what the
client asked.

Faults, scripted from the test:
- `fail_next(endpoint, status, times=, reset_in=, after=)`: 429 (remaining 0, reset `reset_in` s
  ahead; the stream's says TooManyConnections), 500, 503, 403 (client-forbidden)...;
  `hang_next(endpoint, seconds)`: answer late, for client timeouts.
- each stream connection takes the next `StreamScript`: `stream_drop_after(k, abort=False)` ends
  the response (or breaks the connection) after k messages; `stream_go_silent(after=k)` then
  sends nothing, not even keep-alives; `stream_keepalive_only()` sends keep-alives, never a post.
- switches: `stream_duplicates` (every message twice), `stream_out_of_order` (posts published
  together arrive newest first), `search_duplicate_across_pages` (a page repeats the last post of
  the page before), `search_excludes_retweets`, `trends_status` (e.g. 403).
- `publish_ids` publishes in any order; `set_metrics` bumps a post's `public_metrics`.

The serving, request records, faults, rate-limit windows and stream machinery are
`tests/fakeserver.py`'s. Starting a server is quick but stopping one takes 0.2 s (uvicorn), so a
test module may share one (`scope="module"`) and call `reset(...)` (the constructor's arguments)
before each test.
"""

from __future__ import annotations

import copy
import json
import math
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal, cast

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests import fakeserver
from tests.fakeserver import StreamConnection, StreamingFakeServer, epoch_reset, read_body

Endpoint = Literal["search", "stream", "rules", "trends", "lookup"]
ENDPOINTS: tuple[Endpoint, ...] = ("search", "stream", "rules", "trends", "lookup")
# X's app-auth limits per 15-minute window (docs.x.com rate limits; stream: connections).
DEFAULT_LIMITS: dict[Endpoint, int] = {
    "search": 450,
    "stream": 50,
    "rules": 450,
    "trends": 75,
    "lookup": 3500,
}
WINDOW_SECONDS = 900
SEARCH_WINDOW = timedelta(days=7)
SNOWFLAKE_EPOCH_MS = 1288834974657  # X's ids count milliseconds from here, shifted left 22 bits

DEFAULT_TRENDS: list[tuple[str, int | None]] = [
    ("#SundayVibes", 25100),
    ("Arsenal", 81200),
    ("#QIHour", 3400),
    ("NHS", 15000),
    ("#LeadingQI", None),
]


@dataclass(kw_only=True)
class RecordedRequest(fakeserver.RecordedRequest):
    path: str
    endpoint: Endpoint
    params: dict[str, str]
    body: Any


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _format_time(value: datetime) -> str:
    value = value.astimezone(UTC)
    return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}Z"


def _problem(status: int, detail: str | None = None) -> dict[str, Any]:
    phrase = HTTPStatus(status).phrase
    return {"title": phrase, "detail": detail or phrase, "type": "about:blank", "status": status}


FORBIDDEN = {
    "client_id": "1234567",
    "detail": "When authenticating requests to the Twitter API v2 endpoints, you must use keys "
    "and tokens from a Twitter developer App that is attached to a Project. You can create a "
    "project via the developer portal.",
    "registration_url": "https://developer.twitter.com/en/docs/projects/overview",
    "title": "Client Forbidden",
    "required_enrollment": "Appropriate Level of API Access",
    "reason": "client-not-enrolled",
    "type": "https://api.twitter.com/2/problems/client-forbidden",
}
TOO_MANY_CONNECTIONS = {
    "title": "ConnectionException",
    "detail": "This stream is currently at the maximum allowed connection limit.",
    "connection_issue": "TooManyConnections",
    "type": "https://api.twitter.com/2/problems/streaming-connection",
}


class _Query:
    """A search query or stream rule, in the small subset tweetchat uses.

    Alternatives joined by `OR`; within one, space-separated atoms that must all hold: `#tag`
    (exact hashtag, any case), `-is:retweet` / `is:retweet`, or a word in the text. One
    parenthesised group may be followed by atoms that apply to every alternative.
    """

    def __init__(self, text: str) -> None:
        text = text.strip()
        if not text:
            raise ValueError("empty query")
        shared: list[str] = []
        group = re.fullmatch(r"\((.*)\)\s*(.*)", text)
        if group:
            text, rest = group.group(1), group.group(2)
            shared = rest.split()
        alternatives = [part.split() for part in re.split(r"\s+OR\s+", text)]
        if any(not atoms for atoms in alternatives):
            raise ValueError(f"invalid query: {text!r}")
        self.alternatives = [atoms + shared for atoms in alternatives]

    def matches(self, tweet: Mapping[str, Any], original: Mapping[str, Any] | None) -> bool:
        return any(self._all(atoms, tweet, original) for atoms in self.alternatives)

    def _all(
        self, atoms: list[str], tweet: Mapping[str, Any], original: Mapping[str, Any] | None
    ) -> bool:
        for atom in atoms:
            negated = atom.startswith("-")
            term = atom[1:] if negated else atom
            if term.lower() == "is:retweet":
                found = original is not None or _is_retweet(tweet)
            else:
                # A retweet matches what its original matches (X matches the retweeted text).
                found = _has_term(tweet, term) or (
                    original is not None and _has_term(original, term)
                )
            if found == negated:
                return False
        return True


def _is_retweet(tweet: Mapping[str, Any]) -> bool:
    return any(ref.get("type") == "retweeted" for ref in tweet.get("referenced_tweets") or [])


def _has_term(tweet: Mapping[str, Any], term: str) -> bool:
    text = str(tweet.get("text") or "")
    if term.startswith("#"):
        tag = term[1:].lower()
        hashtags = (tweet.get("entities") or {}).get("hashtags") or []
        if any(str(item.get("tag", "")).lower() == tag for item in hashtags):
            return True
        return re.search(rf"#{re.escape(tag)}(?!\w)", text, re.IGNORECASE) is not None
    return re.search(rf"(?<!\w){re.escape(term)}(?!\w)", text, re.IGNORECASE) is not None


class FakeX(StreamingFakeServer[Endpoint, RecordedRequest]):
    """The fake X API and its controls. Use as a context manager: `with FakeX(...) as fake:`."""

    name = "X"
    window_seconds = WINDOW_SECONDS

    def __init__(
        self,
        posts: str | Path | Iterable[Mapping[str, Any]] | None = None,
        *,
        token: str = "test-token",
        keepalive_interval: float = 20.0,
        rebase: bool = True,
        search_excludes_retweets: bool = True,
        trends: list[tuple[str, int | None]] | None = None,
        limits: Mapping[Endpoint, int] | None = None,
    ) -> None:
        super().__init__()
        self.reset(
            posts,
            token=token,
            keepalive_interval=keepalive_interval,
            rebase=rebase,
            search_excludes_retweets=search_excludes_retweets,
            trends=trends,
            limits=limits,
        )

    def reset(
        self,
        posts: str | Path | Iterable[Mapping[str, Any]] | None = None,
        *,
        token: str = "test-token",
        keepalive_interval: float = 20.0,
        rebase: bool = True,
        search_excludes_retweets: bool = True,
        trends: list[tuple[str, int | None]] | None = None,
        limits: Mapping[Endpoint, int] | None = None,
    ) -> None:
        """Start over as if new (same arguments as the constructor), keeping the server.

        Starting a server takes a moment and stopping one 0.2 s, so a test module may share one
        server and reset it for each test. Streams still open from before are closed.
        """
        with self._lock:
            self._start_over(ENDPOINTS)
            self.token = token
            self.keepalive_interval = keepalive_interval
            self.search_excludes_retweets = search_excludes_retweets
            # Faults that stay on until turned off (`stream_duplicates`, `stream_out_of_order` too).
            self.search_duplicate_across_pages = False  # a page starts with the last one's last
            self.trends: list[tuple[str, int | None]] = list(trends or DEFAULT_TRENDS)
            self.trends_status: int | None = None  # e.g. 403: a plan without trends

            self.posts: dict[str, dict[str, Any]] = {}  # the archive's `data` posts, by id
            self.context: dict[str, dict[str, Any]] = {}  # posts only in `includes.tweets`
            self.users: dict[str, dict[str, Any]] = {}
            self.polls: dict[str, dict[str, Any]] = {}
            self.published: list[str] = []  # ids, in the order they were published
            self.shift = timedelta(0)
            self.rules: dict[str, dict[str, str]] = {}

            self._published_set: set[str] = set()
            self._tokens: dict[str, list[list[str]]] = {}
            self._limits: dict[Endpoint, int] = {**DEFAULT_LIMITS, **(limits or {})}
            self._next_rule_id = 1_640_000_000_000_000_000

            if posts is not None:
                self._load(posts)
                if rebase and self.posts:
                    self._rebase()

    # -- loading ------------------------------------------------------------------------------

    def _load(self, posts: str | Path | Iterable[Mapping[str, Any]]) -> None:
        pages: Iterable[Mapping[str, Any]]
        if isinstance(posts, str | Path):
            lines = Path(posts).read_text(encoding="utf-8").splitlines()
            pages = [json.loads(line) for line in lines if line.strip()]
        else:
            pages = posts
        for page in pages:
            data = page.get("data") or []
            for tweet in [data] if isinstance(data, dict) else data:
                self.posts.setdefault(str(tweet["id"]), copy.deepcopy(dict(tweet)))
            includes = page.get("includes") or {}
            for tweet in includes.get("tweets") or []:
                self.context.setdefault(str(tweet["id"]), copy.deepcopy(dict(tweet)))
            for user in includes.get("users") or []:
                self.users.setdefault(str(user["id"]), copy.deepcopy(dict(user)))
            for poll in includes.get("polls") or []:
                self.polls.setdefault(str(poll["id"]), copy.deepcopy(dict(poll)))
        for post_id in self.posts:
            self.context.pop(post_id, None)

    def _rebase(self) -> None:
        newest = max(_parse_time(tweet["created_at"]) for tweet in self.posts.values())
        target = datetime.now(UTC) - timedelta(minutes=2)
        self.shift = timedelta(seconds=math.floor((target - newest).total_seconds()))
        for tweet in [*self.posts.values(), *self.context.values()]:
            if tweet.get("created_at"):
                tweet["created_at"] = _format_time(_parse_time(tweet["created_at"]) + self.shift)
        for poll in self.polls.values():
            if poll.get("end_datetime"):
                poll["end_datetime"] = _format_time(_parse_time(poll["end_datetime"]) + self.shift)

    def snowflake_time(self, post_id: str) -> datetime:
        """When a post id says it was made (X ids are snowflakes), shifted like the posts."""
        millis = (int(post_id) >> 22) + SNOWFLAKE_EPOCH_MS
        return datetime.fromtimestamp(millis / 1000, UTC) + self.shift

    def snowflake(self, when: datetime) -> str:
        """The smallest post id made at `when` (a time after the shift)."""
        millis = int((when - self.shift).timestamp() * 1000) - SNOWFLAKE_EPOCH_MS
        return str(millis << 22)

    def at(self, archive_time: datetime) -> datetime:
        """Where a time of the archive falls after the shift (e.g. the chat's start)."""
        return archive_time + self.shift

    # -- controls -----------------------------------------------------------------------------

    def chronological(self) -> list[str]:
        """Every post id of the archive, oldest first."""
        return sorted(self.posts, key=lambda i: (_parse_time(self.posts[i]["created_at"]), int(i)))

    def publish(self, n: int = 1) -> list[str]:
        """Publish the next `n` posts not yet published, oldest first."""
        with self._lock:
            waiting = [i for i in self.chronological() if i not in self._published_set]
            return self.publish_ids(waiting[:n])

    def publish_all(self) -> list[str]:
        return self.publish(len(self.posts))

    def publish_ids(self, ids: Iterable[str]) -> list[str]:
        """Publish these posts, in this order (any order: out-of-order delivery)."""
        with self._lock:
            done = []
            for post_id in ids:
                if post_id not in self.posts:
                    raise KeyError(f"no post {post_id} in the archive")
                if post_id not in self._published_set:
                    self._published_set.add(post_id)
                    self.published.append(post_id)
                    done.append(post_id)
            self._wake_streams()
            return done

    def is_retweet(self, post_id: str) -> bool:
        return _is_retweet(self.posts[post_id])

    def matches(self, post_id: str, query: str) -> bool:
        """Whether a post matches a query or rule, as the stream and search decide it."""
        tweet = self.posts[post_id]
        return _Query(query).matches(tweet, self._original(tweet))

    def set_metrics(self, post_id: str, **counts: int) -> None:
        """Change a post's `public_metrics` (retweet_count=..., like_count=...)."""
        with self._lock:
            tweet = self.posts.get(post_id) or self.context[post_id]
            tweet.setdefault("public_metrics", {}).update(counts)

    def tweet(self, post_id: str) -> dict[str, Any]:
        """A post as X would send it now."""
        with self._lock:
            return copy.deepcopy(self.posts.get(post_id) or self.context[post_id])

    # -- serving ------------------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/2/tweets/search/recent", self._search, methods=["GET"]),
                Route("/2/tweets/search/stream", self._stream, methods=["GET"]),
                Route("/2/tweets/search/stream/rules", self._rules, methods=["GET", "POST"]),
                Route("/2/trends/by/woeid/{woeid}", self._trends, methods=["GET"]),
                Route("/2/tweets", self._lookup, methods=["GET"]),
            ]
        )

    # -- request plumbing ---------------------------------------------------------------------

    def _rate_limit(self, endpoint: str) -> int:
        return self._limits[cast(Endpoint, endpoint)]

    def _format_rate_headers(self, limit: int, remaining: int, reset: float) -> dict[str, str]:
        return {
            "x-rate-limit-limit": str(limit),
            "x-rate-limit-remaining": str(remaining),
            "x-rate-limit-reset": epoch_reset(reset),
        }

    async def _guard(
        self, request: Request, endpoint: Endpoint
    ) -> tuple[RecordedRequest, Response | None]:
        record = RecordedRequest(
            method=request.method,
            path=request.url.path,
            endpoint=endpoint,
            params=dict(request.query_params),
            body=await read_body(request),
            time=time.time(),
        )
        fault = self._arrive(record)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return record, self._json(record, 401, _problem(401), self._rate_headers(endpoint))
        await self._hang(fault)
        return record, self._refusal(record, fault)

    def _error_response(
        self, record: RecordedRequest, status: int, headers: Mapping[str, str], *, scripted: bool
    ) -> Response:
        payload = _problem(status)
        if scripted and status == 429 and record.endpoint == "stream":
            payload = TOO_MANY_CONNECTIONS
        elif scripted and status == 403:
            payload = FORBIDDEN
        return self._json(record, status, payload, headers)

    def _bad_request(
        self,
        record: RecordedRequest,
        endpoint: Endpoint,
        message: str,
        parameter: str | None = None,
    ) -> Response:
        parameters = {parameter: [record.params.get(parameter, "")]} if parameter else {}
        payload = {
            "errors": [{"parameters": parameters, "message": message}],
            "title": "Invalid Request",
            "detail": "One or more parameters to your request was invalid.",
            "type": "https://api.twitter.com/2/problems/invalid-request",
        }
        return self._json(record, 400, payload, self._rate_headers(endpoint))

    # -- shaping posts ------------------------------------------------------------------------

    def _known(self, post_id: str) -> dict[str, Any] | None:
        return self.posts.get(post_id) or self.context.get(post_id)

    def _original(self, tweet: Mapping[str, Any]) -> dict[str, Any] | None:
        for ref in tweet.get("referenced_tweets") or []:
            if ref.get("type") == "retweeted":
                return self._known(str(ref["id"]))
        return None

    def _includes(self, tweets: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        """`includes` for these posts, as our expansions ask: users, referenced posts, polls."""
        users: dict[str, dict[str, Any]] = {}
        referenced: dict[str, dict[str, Any]] = {}
        polls: dict[str, dict[str, Any]] = {}

        def add_user(user_id: Any) -> None:
            user = self.users.get(str(user_id)) if user_id else None
            if user is not None:
                users.setdefault(user["id"], user)

        for tweet in tweets:
            add_user(tweet.get("author_id"))
            add_user(tweet.get("in_reply_to_user_id"))
            for mention in (tweet.get("entities") or {}).get("mentions") or []:
                add_user(mention.get("id"))
            for poll_id in (tweet.get("attachments") or {}).get("poll_ids") or []:
                if str(poll_id) in self.polls:
                    polls.setdefault(str(poll_id), self.polls[str(poll_id)])
            for ref in tweet.get("referenced_tweets") or []:
                other = self._known(str(ref.get("id")))
                if other is not None:
                    referenced.setdefault(other["id"], other)
                    add_user(other.get("author_id"))
        includes: dict[str, list[dict[str, Any]]] = {}
        if users:
            includes["users"] = list(users.values())
        if referenced:
            includes["tweets"] = list(referenced.values())
        if polls:
            includes["polls"] = list(polls.values())
        return copy.deepcopy(includes)

    # -- endpoints ----------------------------------------------------------------------------

    async def _search(self, request: Request) -> Response:
        record, refused = await self._guard(request, "search")
        if refused is not None:
            return refused
        params = request.query_params
        token = params.get("next_token") or params.get("pagination_token")
        if token:
            with self._lock:
                later = self._tokens.get(token)
            if later is None:
                return self._bad_request(record, "search", f"Invalid 'next_token':'{token}'")
            return self._search_page(record, later)
        try:
            query = _Query(params.get("query", ""))
            size = int(params.get("max_results", "10"))
            if not 10 <= size <= 100:
                raise ValueError(
                    f"The `max_results` query parameter value [{size}] is not between 10 and 100"
                )
            start = _parse_time(params["start_time"]) if "start_time" in params else None
            end = _parse_time(params["end_time"]) if "end_time" in params else None
            since = int(params["since_id"]) if "since_id" in params else None
            until = int(params["until_id"]) if "until_id" in params else None
        except (ValueError, KeyError) as exc:
            return self._bad_request(record, "search", str(exc))
        oldest = datetime.now(UTC) - SEARCH_WINDOW
        if start is not None and start < oldest:
            return self._bad_request(
                record,
                "search",
                f"Invalid 'start_time':'{params['start_time']}'. 'start_time' must be on or "
                f"after {_format_time(oldest)}",
                "start_time",
            )
        if since is not None and self.snowflake_time(str(since)) < oldest:
            return self._bad_request(
                record,
                "search",
                f"Invalid 'since_id':'{since}'. 'since_id' must be a tweet id created after "
                f"{_format_time(oldest)}. Please use a 'start_time' instead.",
                "since_id",
            )
        with self._lock:
            found = []
            for post_id in self.published:
                tweet = self.posts[post_id]
                created = _parse_time(tweet["created_at"])
                if self.search_excludes_retweets and _is_retweet(tweet):
                    continue
                if since is not None and int(post_id) <= since:
                    continue
                if until is not None and int(post_id) >= until:
                    continue
                if start is not None and created < start:
                    continue
                if end is not None and created >= end:
                    continue
                if query.matches(tweet, self._original(tweet)):
                    found.append(post_id)
            found.sort(key=int, reverse=True)
            pages: list[list[str]] = []
            index = 0
            while index < len(found):
                if pages and self.search_duplicate_across_pages:
                    # Like the qi-chat archive: a page starts with the previous page's last post.
                    page = [pages[-1][-1], *found[index : index + size - 1]]
                    index += size - 1
                else:
                    page = found[index : index + size]
                    index += size
                pages.append(page)
        return self._search_page(record, pages)

    def _search_page(self, record: RecordedRequest, pages: list[list[str]]) -> Response:
        """The first of `pages`; the others are kept under a `next_token` that does not expire."""
        headers = self._rate_headers("search")
        if not pages or not pages[0]:
            return self._json(record, 200, {"meta": {"result_count": 0}}, headers)
        page = pages[0]
        with self._lock:
            data = [copy.deepcopy(self.posts[i]) for i in page]
            meta: dict[str, Any] = {
                "newest_id": max(page, key=int),
                "oldest_id": min(page, key=int),
                "result_count": len(page),
            }
            if len(pages) > 1:
                token = secrets.token_hex(16)
                self._tokens[token] = pages[1:]
                meta["next_token"] = token
            body: dict[str, Any] = {"data": data}
            includes = self._includes(data)
            if includes:
                body["includes"] = includes
            body["meta"] = meta
        return self._json(record, 200, body, headers)

    async def _lookup(self, request: Request) -> Response:
        record, refused = await self._guard(request, "lookup")
        if refused is not None:
            return refused
        ids = [i for i in request.query_params.get("ids", "").split(",") if i]
        if not 1 <= len(ids) <= 100 or not all(i.isdigit() for i in ids):
            return self._bad_request(
                record, "lookup", "The `ids` query parameter value must be 1 to 100 post ids"
            )
        with self._lock:
            data, errors = [], []
            for post_id in ids:
                visible = post_id in self._published_set or post_id in self.context
                tweet = self._known(post_id) if visible else None
                if tweet is None:
                    errors.append(
                        {
                            "value": post_id,
                            "detail": f"Could not find tweet with ids: [{post_id}].",
                            "title": "Not Found Error",
                            "resource_type": "tweet",
                            "parameter": "ids",
                            "resource_id": post_id,
                            "type": "https://api.twitter.com/2/problems/resource-not-found",
                        }
                    )
                else:
                    data.append(copy.deepcopy(tweet))
            body: dict[str, Any] = {}
            if data:
                body["data"] = data
                includes = self._includes(data)
                if includes:
                    body["includes"] = includes
            if errors:
                body["errors"] = errors
        return self._json(record, 200, body, self._rate_headers("lookup"))

    async def _trends(self, request: Request) -> Response:
        record, refused = await self._guard(request, "trends")
        if refused is not None:
            return refused
        headers = self._rate_headers("trends")
        if self.trends_status is not None:
            status = self.trends_status
            payload = FORBIDDEN if status == 403 else _problem(status)
            return self._json(record, status, payload, headers)
        try:
            count = int(request.query_params.get("max_trends", "20"))
        except ValueError:
            return self._bad_request(record, "trends", "max_trends must be a number")
        data = []
        for name, tweets in self.trends[: max(1, min(50, count))]:
            item: dict[str, Any] = {"trend_name": name}
            if tweets is not None:
                item["tweet_count"] = tweets
            data.append(item)
        return self._json(record, 200, {"data": data}, headers)

    async def _rules(self, request: Request) -> Response:
        record, refused = await self._guard(request, "rules")
        if refused is not None:
            return refused
        headers = self._rate_headers("rules")
        sent = _format_time(datetime.now(UTC))
        with self._lock:
            if request.method == "GET":
                rules = [dict(rule) for rule in self.rules.values()]
                body: dict[str, Any] = {"meta": {"sent": sent, "result_count": len(rules)}}
                if rules:
                    body = {"data": rules, **body}
                return self._json(record, 200, body, headers)
            payload = record.body if isinstance(record.body, dict) else {}
            if "add" in payload and isinstance(payload["add"], list):
                return self._json(record, 200, self._add_rules(payload["add"], sent), headers)
            if "delete" in payload and isinstance(payload["delete"], dict):
                ids = [str(i) for i in payload["delete"].get("ids") or []]
                return self._json(record, 200, self._delete_rules(ids, sent), headers)
        return self._bad_request(
            record, "rules", "the body must be {'add': [...]} or {'delete': {...}}"
        )

    def _add_rules(self, items: list[Any], sent: str) -> dict[str, Any]:
        created, errors = [], []
        for item in items:
            value = item.get("value") if isinstance(item, dict) else None
            try:
                _Query(str(value or ""))
            except ValueError:
                errors.append(
                    {
                        "value": value,
                        "title": "UnprocessableEntity",
                        "type": "https://api.twitter.com/2/problems/invalid-rules",
                    }
                )
                continue
            existing = next((r for r in self.rules.values() if r["value"] == value), None)
            if existing is not None:
                errors.append(
                    {
                        "value": value,
                        "id": existing["id"],
                        "title": "DuplicateRule",
                        "type": "https://api.twitter.com/2/problems/duplicate-rules",
                    }
                )
                continue
            self._next_rule_id += 1
            rule = {"id": str(self._next_rule_id), "value": str(value)}
            if isinstance(item.get("tag"), str):
                rule["tag"] = item["tag"]
            self.rules[rule["id"]] = rule
            created.append(dict(rule))
        summary = {
            "created": len(created),
            "not_created": len(errors),
            "valid": len(created),
            "invalid": len(errors),
        }
        body: dict[str, Any] = {"meta": {"sent": sent, "summary": summary}}
        if created:
            body = {"data": created, **body}
        if errors:
            body["errors"] = errors
        return body

    def _delete_rules(self, ids: list[str], sent: str) -> dict[str, Any]:
        deleted = [i for i in ids if self.rules.pop(i, None) is not None]
        missing = [i for i in ids if i not in deleted]
        body: dict[str, Any] = {
            "meta": {
                "sent": sent,
                "summary": {"deleted": len(deleted), "not_deleted": len(missing)},
            }
        }
        if missing:
            body["errors"] = [
                {
                    "value": i,
                    "title": "Not Found Error",
                    "detail": f"Could not find rule with id: [{i}].",
                    "type": "https://api.twitter.com/2/problems/resource-not-found",
                }
                for i in missing
            ]
        return body

    # -- the stream ---------------------------------------------------------------------------

    def _message(self, post_id: str) -> dict[str, Any] | None:
        tweet = self.posts[post_id]
        original = self._original(tweet)
        matching = []
        for rule in self.rules.values():
            if _Query(rule["value"]).matches(tweet, original):
                match = {"id": rule["id"]}
                if "tag" in rule:
                    match["tag"] = rule["tag"]
                matching.append(match)
        if not matching:
            return None
        message: dict[str, Any] = {"data": copy.deepcopy(tweet)}
        includes = self._includes([tweet])
        if includes:
            message["includes"] = includes
        message["matching_rules"] = matching
        return message

    async def _stream(self, request: Request) -> Response:
        record, refused = await self._guard(request, "stream")
        if refused is not None:
            return refused
        return self._open_stream(
            request, record, media_type="application/json", headers=self._rate_headers("stream")
        )

    def _stream_position(self) -> int:
        return len(self.published)

    def _new_chunks(self, connection: StreamConnection) -> list[bytes]:
        new = self.published[connection.cursor :]
        connection.cursor = len(self.published)
        batch = [m for m in (self._message(i) for i in new) if m is not None]
        if self.stream_out_of_order:
            batch.reverse()
        return [(json.dumps(m, ensure_ascii=False) + "\r\n").encode() for m in batch]
