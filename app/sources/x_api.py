"""A thin async client for the X API v2 endpoints tweetchat reads, and the errors they raise.

It builds the requests (the expansions and fields every page needs for `parse_object`), sends
them with the bearer token, reads the `x-rate-limit-*` headers, and turns every failure into one
of the errors below (through `app.sources.http`, which the other networks' clients share), so that
the sources (`x_search`, `x_stream`, `x_refresh`) decide what to do from the error's type alone:
wait, back off, or stop and say why. It holds no state beyond the HTTP connection pool and the
last rate-limit headers seen per endpoint.

Exceptions (each also a subclass of the `app.sources.http` error of the same kind)::

    XApiError                  any failure talking to X; `str()` says what happened
     ├── XNetworkError         no HTTP answer: connection refused or reset, timeout, bad TLS
     │    └── XStreamStalled   a stream sent neither data nor keep-alive for too long
     ├── XRateLimited          429: carries `reset_at`, when X says to try again
     ├── XServerError          5xx: X's side, retry with backoff
     ├── XAuthError            401/403: wrong token, or the plan lacks the endpoint; do not retry
     └── XRequestError         other 4xx: a request X will never accept as sent (bad query...)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx

from app.config import Settings
from app.sources.http import (
    ApiClient,
    ApiDialect,
    ApiError,
    AuthError,
    ErrorKinds,
    NetworkError,
    RateLimited,
    RateLimitHeaders,
    RequestError,
    ServerError,
    StreamStalled,
    stream_lines,
)

# What every page of posts asks for: enough for `parse_object` to build posts with their authors,
# the posts they reference (threads, quotes, retweets), polls and metrics.
EXPANSIONS = (
    "author_id,referenced_tweets.id,referenced_tweets.id.author_id,in_reply_to_user_id,"
    "attachments.poll_ids,entities.mentions.username"
)
TWEET_FIELDS = (
    "id,text,author_id,created_at,conversation_id,public_metrics,referenced_tweets,entities,"
    "attachments,lang,in_reply_to_user_id,edit_history_tweet_ids"
)
USER_FIELDS = "name,username,profile_image_url,verified,verified_type,public_metrics"
POLL_FIELDS = "id,options,voting_status,end_datetime,duration_minutes"

POST_FIELDS: dict[str, str] = {
    "expansions": EXPANSIONS,
    "tweet.fields": TWEET_FIELDS,
    "user.fields": USER_FIELDS,
    "poll.fields": POLL_FIELDS,
}

SEARCH_PATH = "/2/tweets/search/recent"
STREAM_PATH = "/2/tweets/search/stream"
RULES_PATH = "/2/tweets/search/stream/rules"
LOOKUP_PATH = "/2/tweets"
TRENDS_PATH = "/2/trends/by/woeid/{woeid}"

# Recent search takes at most 100 posts a page, and lookup at most 100 ids a request.
MAX_PAGE = 100


class XApiError(ApiError):
    """A request to X failed. `status` is the HTTP status, or None when there was no answer."""


class XNetworkError(XApiError, NetworkError):
    """No HTTP answer from X (connection refused or dropped, a timeout)."""


class XStreamStalled(XNetworkError, StreamStalled):
    """An open stream sent no byte, not even a keep-alive, within the timeout."""


class XRateLimited(XApiError, RateLimited):
    """429: too many requests (or stream connections) in the window."""


class XServerError(XApiError, ServerError):
    """5xx: X failed or is overloaded; the same request may succeed later."""


class XAuthError(XApiError, AuthError):
    """401/403: the token is wrong, revoked, or its plan lacks this endpoint."""


class XRequestError(XApiError, RequestError):
    """Another 4xx: X rejects the request itself (an invalid query or time, an unknown id)."""


def _problem_text(body: Any) -> str:
    """X's reason: an RFC 7807 problem's `title: detail`, then in brackets its `reason` and the
    messages of its `errors` list (where X names the parameter it rejects)."""
    if not isinstance(body, dict):
        return ""
    head = [
        value
        for value in (body.get("title"), body.get("detail"))
        if isinstance(value, str) and value
    ]
    extra: list[str] = []
    if isinstance(body.get("reason"), str):
        extra.append(body["reason"])
    errors = body.get("errors")
    for error in errors[:3] if isinstance(errors, list) else []:
        if isinstance(error, dict):
            text = error.get("message") or error.get("detail") or error.get("title")
            if isinstance(text, str) and text and text not in head:
                extra.append(text)
    text = ": ".join(dict.fromkeys(head))
    if extra and text:
        return f"{text} ({'; '.join(extra)})"
    return text or "; ".join(extra)


# X's `x-rate-limit-*` headers give the reset in epoch seconds (the 15-minute window's end).
X = ApiDialect(
    "X",
    RateLimitHeaders("x-rate-limit-"),
    ErrorKinds(
        XNetworkError, XRateLimited, XServerError, XAuthError, XRequestError, XStreamStalled
    ),
    reason=_problem_text,
)


def x_time(value: datetime) -> str:
    """X's request time format: RFC 3339 in UTC, to the second."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def chat_query(hashtags: Iterable[str]) -> str:
    """The search query (and stream rule) of a chat: its hashtags OR'ed, `#LeadingQI OR #QIHour`."""
    tags: list[str] = []
    for raw in hashtags:
        tag = raw.strip()
        if not tag:
            continue
        tag = tag if tag.startswith("#") else f"#{tag}"
        if tag.lower() not in (known.lower() for known in tags):
            tags.append(tag)
    if not tags:
        raise ValueError("a chat needs at least one hashtag to search for")
    return " OR ".join(tags)


def newest_id(*ids: str | None) -> str | None:
    """The newest of post ids: ids grow with time, compared as integers (not as strings)."""
    known = [value for value in ids if value]
    return max(known, key=int) if known else None


class StreamConnection:
    """An open filtered-stream response: its lines, keep-alives included as empty strings."""

    def __init__(self, response: httpx.Response, endpoint: str) -> None:
        self._response = response
        self._endpoint = endpoint
        self.rate_limit = X.rate_limit(response.headers)

    def lines(self) -> AsyncIterator[str]:
        """Each line X sends; ends when X closes the stream, raises XNetworkError if it breaks."""
        return stream_lines(
            self._response,
            X,
            self._endpoint,
            "the stream sent nothing, not even a keep-alive, within the timeout",
        )


class XApi(ApiClient):
    """The X API v2 endpoints tweetchat uses, over one `httpx.AsyncClient`.

    Use as `async with XApi(url, token) as api:` (or call `aclose()`), so the connections close.
    """

    def __init__(
        self,
        base_url: str,
        bearer_token: str,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not bearer_token:
            raise XAuthError("no X bearer token: set TWEETCHAT_X_BEARER_TOKEN")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {bearer_token}", "User-Agent": "tweetchat"},
            timeout=timeout,
            transport=transport,
        )
        super().__init__(X, http)

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout: float = 30.0) -> XApi:
        return cls(settings.x_api_url, settings.x_bearer_token or "", timeout=timeout)

    # -- plain requests -----------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        endpoint: str,
        params: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> dict[str, Any]:
        return await self._request_object(method, path, endpoint=endpoint, params=params, json=body)

    async def search_page(
        self,
        query: str,
        *,
        since_id: str | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        next_token: str | None = None,
        max_results: int = MAX_PAGE,
    ) -> tuple[dict[str, Any], bytes]:
        """One page of `GET /2/tweets/search/recent`, newest first, and its bytes."""
        params = {"query": query, "max_results": str(max(10, min(MAX_PAGE, max_results)))}
        params.update(POST_FIELDS)
        if since_id:
            params["since_id"] = since_id
        if start_time is not None:
            params["start_time"] = x_time(start_time)
        if end_time is not None:
            params["end_time"] = x_time(end_time)
        if next_token:
            params["next_token"] = next_token
        return await self._request_body("GET", SEARCH_PATH, endpoint="search", params=params)

    async def lookup(self, ids: Sequence[str]) -> dict[str, Any]:
        """`GET /2/tweets?ids=...` for at most 100 ids: current metrics and polls."""
        if not 1 <= len(ids) <= MAX_PAGE:
            raise ValueError(f"lookup takes 1 to {MAX_PAGE} ids, not {len(ids)}")
        params = {"ids": ",".join(ids), **POST_FIELDS}
        return await self._request("GET", LOOKUP_PATH, endpoint="lookup", params=params)

    async def trends(self, woeid: int, *, max_trends: int = 50) -> dict[str, Any]:
        """`GET /2/trends/by/woeid/{woeid}`: `{"data": [{"trend_name", "tweet_count"}]}`."""
        params = {"max_trends": str(max_trends), "trend.fields": "trend_name,tweet_count"}
        path = TRENDS_PATH.format(woeid=int(woeid))
        return await self._request("GET", path, endpoint="trends", params=params)

    async def get_rules(self) -> list[dict[str, Any]]:
        """The filtered stream's rules: `[{"id", "value", "tag"?}]`."""
        payload = await self._request("GET", RULES_PATH, endpoint="rules")
        data = payload.get("data") or []
        return [rule for rule in data if isinstance(rule, dict)] if isinstance(data, list) else []

    async def add_rules(self, rules: Sequence[tuple[str, str]]) -> dict[str, Any]:
        """Add `(value, tag)` rules; the answer's `data` lists the created ones with their ids."""
        body = {"add": [{"value": value, "tag": tag} for value, tag in rules]}
        return await self._request("POST", RULES_PATH, endpoint="rules", body=body)

    async def delete_rules(self, ids: Sequence[str]) -> dict[str, Any]:
        body = {"delete": {"ids": list(ids)}}
        return await self._request("POST", RULES_PATH, endpoint="rules", body=body)

    # -- the stream ---------------------------------------------------------------------------

    @asynccontextmanager
    async def stream(self, *, read_timeout: float = 20.0) -> AsyncIterator[StreamConnection]:
        """Open `GET /2/tweets/search/stream`; raises the matching XApiError if X refuses.

        `read_timeout` is how long the stream may stay silent: X sends a keep-alive every 20 s,
        so no byte for that long means the connection is dead even if TCP has not noticed.
        """
        endpoint = "stream"
        timeout = httpx.Timeout(self.timeout, read=read_timeout)
        request = self._http.build_request(
            "GET", STREAM_PATH, params=dict(POST_FIELDS), timeout=timeout
        )
        async with self._open_stream(request, endpoint) as response:
            yield StreamConnection(response, endpoint)
