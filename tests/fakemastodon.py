"""A fake Mastodon server for tests: the documented REST and streaming API over real HTTP.

`FakeMastodon` serves a small Starlette app with uvicorn on a free 127.0.0.1 port, in a thread
(`tests/fakeserver.py`, as `tests/fakex.py` does for X), so `app.sources.mastodon` talks to it
exactly as to a server:

    with FakeMastodon(QI_CHAT, domain="mastodon.social", heartbeat_interval=0.1) as fake:
        fake.publish(10)                    # the 10 oldest statuses are now on the server
        ... MastodonClient(fake.url, fake.token) ...
        fake.fail_next("timeline", 429, reset_in=0.5)

Statuses are loaded from Status entities as the `origin` server rendered them (a list, as in
`fixtures/mastodon/qi-chat.json`), and rendered as *this* server (`domain`) would: another server
has its own local ids (status ids made from the status's time, as Mastodon does for statuses it
receives, and account ids), accounts of its own domain have a bare `acct`, the others
`user@domain`; `uri`s are the same everywhere. Only *published* statuses are visible.

Endpoints (docs.joinmastodon.org):
- `GET /api/v1/timelines/tag/:hashtag` with `any[]`, `limit` (default 20, at most 40), `max_id`,
  `since_id`, `min_id` and a `Link` header (`rel="next"`: `max_id`, `rel="prev"`: `min_id`). Like
  Mastodon, public statuses only and no reblogs (`timeline_includes_reblogs` to send them).
- `GET /api/v1/statuses/:id`: 404 `{"error": "Record not found"}` for deleted or unknown ids.
- `GET /api/v2/instance` (`domain`, `configuration.urls.streaming`), `GET /api/v1/instance`.
- `GET /api/v1/streaming/hashtag?tag=` (and `/api/v1/streaming?stream=hashtag&tag=`): server-sent
  events, `:)` on connect, `event: update` / `event: delete` for statuses published or deleted
  while connected (`event: status.update` for `edit`), `:thump` heartbeats every
  `heartbeat_interval`. Needs the token when the server has one (`stream_requires_token`).

Every REST answer carries `X-RateLimit-Limit/-Remaining/-Reset` (an ISO 8601 time; 300 calls per
5 minutes by default, counted and enforced; `limit` and `window_seconds` change them). A wrong
token gets 401 `{"error": "The access token is invalid"}`; `require_token` makes the timeline
refuse anonymous calls as Mastodon can. Every request is recorded (`fake.requests()`).

Starting a server is quick but stopping one takes 0.2 s (uvicorn), so a test module shares its
servers (`scope="module"`) and calls `reset(...)` before each test. The serving, request records,
faults, rate-limit window and stream machinery are `tests/fakeserver.py`'s (heartbeats count in
`keepalives_sent`, events in `messages_sent`).

Faults, scripted from the test:
- `fail_next(endpoint, status, times=, reset_in=, after=)`: 429 (remaining 0, reset `reset_in` s
  ahead), 500/502/503 (an HTML error page, as a proxy sends), 401/403/404...; `hang_next`.
- each stream connection takes the next `StreamScript`: `stream_drop_after(k, abort=False)`,
  `stream_go_silent(after=k, tag=None)` (not even heartbeats; `tag`: only the stream of that
  hashtag), `stream_keepalive_only()` (heartbeats only).
- switches: `stream_duplicates` (every event twice), `stream_out_of_order` (statuses published
  together are sent newest first), `page_overlap` (a page's `next` link repeats its last status on
  the next page), `serve_untagged` (the timeline and streams ignore the hashtag filter, like a
  broken or foreign server), `timeline_includes_reblogs`.
- `publish_ids` publishes in any order (a late status gets an id older than those already
  published, as a status that federates late does); `delete` removes a status (404 on fetch, a
  `delete` event on streams).
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests import fakeserver
from tests.fakeserver import StreamConnection, StreamingFakeServer

Endpoint = Literal["timeline", "status", "stream", "instance"]
ENDPOINTS: tuple[Endpoint, ...] = ("timeline", "status", "stream", "instance")
WINDOW_SECONDS = 300
DEFAULT_LIMIT = 300
SNOWFLAKE_SHIFT = 16


@dataclass(kw_only=True)
class RecordedRequest(fakeserver.RecordedRequest):
    path: str
    endpoint: Endpoint
    params: dict[str, list[str]]
    headers: dict[str, str]

    def param(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[0] if values else None


def parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _salt(*parts: str) -> int:
    return int(hashlib.sha256("|".join(parts).encode()).hexdigest(), 16)


def snowflake(when: datetime, salt: int = 0) -> int:
    """A Mastodon id made at `when`: milliseconds shifted 16 bits, plus a sequence."""
    return (int(when.timestamp() * 1000) << SNOWFLAKE_SHIFT) | (salt & 0xFFFF)


# What Mastodon says with the statuses `fail_next` may script.
FAULT_MESSAGES = {
    401: "The access token is invalid",
    403: "This action is outside the authorized scopes",
    404: "Record not found",
    410: "Gone",
    422: "Validation failed",
}


def _error(message: str) -> dict[str, str]:
    return {"error": message}


def _html_error(status: int) -> str:
    phrase = HTTPStatus(status).phrase
    return (
        f"<html><head><title>{status} {phrase}</title></head><body><center><h1>{status} "
        f"{phrase}</h1></center><hr><center>nginx</center></body></html>"
    )


class FakeMastodon(StreamingFakeServer[Endpoint, RecordedRequest]):
    """The fake server and its controls. Use as a context manager: `with FakeMastodon(...)`."""

    name = "Mastodon"
    keepalive = b":thump\n"
    greeting = b":)\n"

    def __init__(
        self,
        statuses: str | Path | Iterable[Mapping[str, Any]] | None = None,
        *,
        domain: str = "mastodon.social",
        origin: str = "mastodon.social",
        token: str | None = "test-token",
        heartbeat_interval: float = 15.0,
        limit: int = DEFAULT_LIMIT,
    ) -> None:
        super().__init__()
        self.reset(
            statuses,
            domain=domain,
            origin=origin,
            token=token,
            heartbeat_interval=heartbeat_interval,
            limit=limit,
        )

    def reset(
        self,
        statuses: str | Path | Iterable[Mapping[str, Any]] | None = None,
        *,
        domain: str = "mastodon.social",
        origin: str = "mastodon.social",
        token: str | None = "test-token",
        heartbeat_interval: float = 15.0,
        limit: int = DEFAULT_LIMIT,
    ) -> None:
        """Start over as if new (the constructor's arguments), keeping the server running."""
        with self._lock:
            self._start_over(ENDPOINTS)
            self.domain = domain
            self.token = token
            self.keepalive_interval = heartbeat_interval
            self.limit = limit
            self.window_seconds = WINDOW_SECONDS
            self.require_token = False  # the timeline refuses anonymous calls
            self.stream_requires_token = True
            self.timeline_includes_reblogs = False
            self.serve_untagged = False
            self.page_overlap = False
            self.instance_v2 = True

            self.statuses: dict[int, dict[str, Any]] = {}  # by local id
            self.by_uri: dict[str, int] = {}
            self.published: list[int] = []
            self.deleted: set[int] = set()
            self.events: list[tuple[str, int]] = []  # ("update" | "delete", local id)

            self._published_set: set[int] = set()
            self._ids: dict[str, int] = {}  # origin status id -> local id
            self._accounts: dict[str, str] = {}  # origin account id -> handle

            if statuses is not None:
                self._load(statuses, origin)

    # -- loading: render the origin's statuses as this server ----------------------------------

    def _load(self, statuses: str | Path | Iterable[Mapping[str, Any]], origin: str) -> None:
        if isinstance(statuses, str | Path):
            items = json.loads(Path(statuses).read_text(encoding="utf-8"))
        else:
            items = list(statuses)
        for status in items:
            self._note_accounts(status, origin)
        for status in items:
            local = self._render(status, origin)
            self.statuses[int(local["id"])] = local
            self.by_uri[local["uri"]] = int(local["id"])

    def _note_accounts(self, status: Mapping[str, Any] | None, origin: str) -> None:
        if not isinstance(status, Mapping):
            return
        accounts = [status.get("account"), *(status.get("mentions") or [])]
        for account in accounts:
            if isinstance(account, Mapping):
                self._accounts[str(account["id"])] = self._handle(account["acct"], origin)
        self._note_accounts(status.get("reblog"), origin)
        quote_obj = status.get("quote")
        if isinstance(quote_obj, Mapping):
            self._note_accounts(quote_obj.get("quoted_status"), origin)

    @staticmethod
    def _handle(acct: str, origin: str) -> str:
        return acct if "@" in acct else f"{acct}@{origin}"

    def _acct(self, handle: str) -> str:
        user, _, domain = handle.partition("@")
        return user if domain == self.domain else handle

    def _account_id(self, origin_id: str, origin: str) -> str:
        if origin == self.domain:
            return origin_id
        handle = self._accounts.get(origin_id, origin_id)
        return str(109_000_000_000_000_000 + _salt(self.domain, handle) % 10**15)

    def _status_id(self, origin_id: str, status: Mapping[str, Any] | None, origin: str) -> int:
        """This server's id for a status the origin calls `origin_id`."""
        if origin == self.domain:
            return int(origin_id)
        if origin_id in self._ids:
            return self._ids[origin_id]
        if status is not None:
            uri = str(status["uri"])
            parts = urlsplit(uri)
            segments = [s for s in parts.path.split("/") if s]
            if parts.hostname == self.domain and "statuses" in segments:
                # A status of this server's own: its id is the one in its uri.
                local = int(segments[segments.index("statuses") + 1])
            else:
                local = snowflake(parse_time(status["created_at"]), _salt(self.domain, uri))
        else:
            # An id the origin knows but that is not loaded (a deleted status): some other id.
            local = (int(origin_id) >> SNOWFLAKE_SHIFT << SNOWFLAKE_SHIFT) | (
                _salt(self.domain, origin_id) & 0xFFFF
            )
        self._ids[origin_id] = local
        return local

    def _render(self, status: Mapping[str, Any], origin: str) -> dict[str, Any]:
        out = copy.deepcopy(dict(status))
        out["id"] = str(self._status_id(str(status["id"]), status, origin))
        if status.get("in_reply_to_id"):
            out["in_reply_to_id"] = str(
                self._status_id(str(status["in_reply_to_id"]), None, origin)
            )
        if status.get("in_reply_to_account_id"):
            out["in_reply_to_account_id"] = self._account_id(
                str(status["in_reply_to_account_id"]), origin
            )
        account = dict(out["account"])
        handle = self._handle(account["acct"], origin)
        account["id"] = self._account_id(str(status["account"]["id"]), origin)
        account["acct"] = self._acct(handle)
        out["account"] = account
        mentions = []
        for mention in out.get("mentions") or []:
            mention = dict(mention)
            mention_handle = self._handle(mention["acct"], origin)
            mention["id"] = self._account_id(str(mention["id"]), origin)
            mention["acct"] = self._acct(mention_handle)
            mentions.append(mention)
        out["mentions"] = mentions
        out["tags"] = [
            {"name": tag["name"], "url": f"https://{self.domain}/tags/{tag['name'].lower()}"}
            for tag in out.get("tags") or []
        ]
        if isinstance(status.get("reblog"), Mapping):
            out["reblog"] = self._render(status["reblog"], origin)
        quote_obj = status.get("quote")
        if isinstance(quote_obj, Mapping) and isinstance(quote_obj.get("quoted_status"), Mapping):
            out["quote"] = {
                **quote_obj,
                "quoted_status": self._render(quote_obj["quoted_status"], origin),
            }
        if isinstance(out.get("poll"), dict) and origin != self.domain:
            out["poll"]["id"] = str(_salt(self.domain, out["uri"]) % 10**7)
        if origin != self.domain:
            out.pop("application", None)
        return out

    # -- controls -----------------------------------------------------------------------------

    def chronological(self) -> list[int]:
        """Every status's local id, oldest first (reblogged and quoted ones are only inside)."""
        return sorted(self.statuses, key=lambda i: (parse_time(self.statuses[i]["created_at"]), i))

    def publish(self, n: int = 1) -> list[str]:
        """Publish the next `n` statuses not yet published, oldest first; their local ids."""
        with self._lock:
            waiting = [i for i in self.chronological() if i not in self._published_set]
            return self.publish_ids(waiting[:n])

    def publish_all(self) -> list[str]:
        return self.publish(len(self.statuses))

    def publish_ids(self, ids: Iterable[int | str]) -> list[str]:
        """Publish these statuses, in this order."""
        with self._lock:
            done = []
            for raw in ids:
                local = int(raw)
                if local not in self.statuses:
                    raise KeyError(f"no status {local} on {self.domain}")
                if local not in self._published_set:
                    self._published_set.add(local)
                    self.published.append(local)
                    self.events.append(("update", local))
                    done.append(str(local))
            self._wake_streams()
            return done

    def delete(self, local_id: int | str) -> None:
        with self._lock:
            local = int(local_id)
            self.deleted.add(local)
            self.events.append(("delete", local))
            self._wake_streams()

    def edit(self, local_id: int | str, content: str) -> None:
        """Edit a published status: new content and `edited_at`, a `status.update` event."""
        with self._lock:
            local = int(local_id)
            status = self.statuses[local]
            status["content"] = content
            status["edited_at"] = iso(datetime.now(UTC))
            self.events.append(("status.update", local))
            self._wake_streams()

    def local_id(self, uri: str) -> str:
        return str(self.by_uri[uri])

    def status(self, local_id: int | str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self.statuses[int(local_id)])

    def uri(self, local_id: int | str) -> str:
        return str(self.statuses[int(local_id)]["uri"])

    def tags_of(self, local_id: int | str) -> set[str]:
        status = self.statuses[int(local_id)]
        source = status.get("reblog") or status
        return {str(tag["name"]).casefold() for tag in source.get("tags") or []}

    # -- serving ------------------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/v1/timelines/tag/{tag}", self._timeline, methods=["GET"]),
                Route("/api/v1/statuses/{id}", self._status, methods=["GET"]),
                Route("/api/v2/instance", self._instance_v2, methods=["GET"]),
                Route("/api/v1/instance", self._instance_v1, methods=["GET"]),
                Route("/api/v1/streaming/hashtag", self._stream, methods=["GET"]),
                Route("/api/v1/streaming", self._stream, methods=["GET"]),
            ]
        )

    # -- request plumbing ---------------------------------------------------------------------

    def _rate_key(self, endpoint: str) -> str:
        return ""  # one window for every call

    def _rate_limit(self, endpoint: str) -> int:
        return self.limit

    def _format_rate_headers(self, limit: int, remaining: int, reset: float) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": iso(datetime.fromtimestamp(reset, UTC)),
        }

    def _rate_headers(self, endpoint: str, *, exhausted_for: float | None = None) -> dict[str, str]:
        if endpoint == "stream" and exhausted_for is None:
            return {}  # the streaming API is not counted, and says nothing of it but in a 429
        return super()._rate_headers(endpoint, exhausted_for=exhausted_for)

    def _token_of(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return header[7:]
        return request.query_params.get("access_token")

    async def _guard(
        self, request: Request, endpoint: Endpoint, *, needs_token: bool = False
    ) -> tuple[RecordedRequest, Response | None]:
        record = RecordedRequest(
            method=request.method,
            path=request.url.path,
            endpoint=endpoint,
            params={key: request.query_params.getlist(key) for key in request.query_params},
            time=time.time(),
            headers=dict(request.headers),
        )
        fault = self._arrive(record)
        headers = self._rate_headers(endpoint)
        token = self._token_of(request)
        if token is not None and token != self.token:
            return record, self._json(record, 401, _error("The access token is invalid"), headers)
        if token is None and needs_token:
            message = (
                "Missing access token"
                if endpoint == "stream"
                else "This API requires an authenticated user"
            )
            return record, self._json(record, 401, _error(message), headers)
        await self._hang(fault)
        return record, self._refusal(record, fault, counted=endpoint != "stream")

    def _error_response(
        self, record: RecordedRequest, status: int, headers: Mapping[str, str], *, scripted: bool
    ) -> Response:
        if status == 429:
            return self._json(record, 429, _error("Too many requests"), headers)
        if status >= 500:
            record.status = status
            record.response_headers = dict(headers)
            return Response(
                _html_error(status), status_code=status, media_type="text/html", headers=headers
            )
        message = FAULT_MESSAGES.get(status, HTTPStatus(status).phrase)
        return self._json(record, status, _error(message), headers)

    # -- endpoints ----------------------------------------------------------------------------

    def _visible(self, local: int) -> bool:
        return local in self._published_set and local not in self.deleted

    def _matches(self, local: int, tags: set[str]) -> bool:
        status = self.statuses[local]
        if status.get("visibility") != "public":
            return False
        if status.get("reblog") and not self.timeline_includes_reblogs:
            return False
        return self.serve_untagged or not self.tags_of(local).isdisjoint(tags)

    async def _timeline(self, request: Request) -> Response:
        record, refused = await self._guard(request, "timeline", needs_token=self.require_token)
        if refused is not None:
            return refused
        params = request.query_params
        tag = request.path_params["tag"]
        tags = {tag.casefold(), *(t.casefold() for t in params.getlist("any[]"))}
        try:
            limit = max(1, min(40, int(params.get("limit", "20"))))
            max_id = int(params["max_id"]) if params.get("max_id") else None
            since_id = int(params["since_id"]) if params.get("since_id") else None
            min_id = int(params["min_id"]) if params.get("min_id") else None
        except ValueError:
            # Mastodon ignores ids it cannot read; a fake may as well refuse them.
            return self._json(
                record, 422, _error("Invalid id"), self._rate_headers(record.endpoint)
            )
        with self._lock:
            found = [i for i in self.published if self._visible(i) and self._matches(i, tags)]
            if max_id is not None:
                found = [i for i in found if i < max_id]
            if since_id is not None:
                found = [i for i in found if i > since_id]
            if min_id is not None:
                found = sorted(i for i in found if i > min_id)[:limit]
                found.sort(reverse=True)
            else:
                found = sorted(found, reverse=True)[:limit]
            body = [copy.deepcopy(self.statuses[i]) for i in found]
        headers = self._rate_headers(record.endpoint)
        if found:
            base = f"{self.url}/api/v1/timelines/tag/{quote(tag, safe='')}"
            extra = "".join(f"&any[]={quote(t, safe='')}" for t in params.getlist("any[]"))
            older = min(found) + 1 if self.page_overlap else min(found)
            headers["Link"] = (
                f'<{base}?limit={limit}{extra}&max_id={older}>; rel="next", '
                f'<{base}?limit={limit}{extra}&min_id={max(found)}>; rel="prev"'
            )
        return self._json(record, 200, body, headers)

    async def _status(self, request: Request) -> Response:
        record, refused = await self._guard(request, "status")
        if refused is not None:
            return refused
        raw = request.path_params["id"]
        with self._lock:
            local = int(raw) if raw.isdigit() else -1
            if local in self.statuses and self._visible(local):
                return self._json(
                    record,
                    200,
                    copy.deepcopy(self.statuses[local]),
                    self._rate_headers(record.endpoint),
                )
        return self._json(
            record, 404, _error("Record not found"), self._rate_headers(record.endpoint)
        )

    def _streaming_url(self) -> str:
        return "ws" + self.url.removeprefix("http")

    async def _instance_v2(self, request: Request) -> Response:
        record, refused = await self._guard(request, "instance")
        if refused is not None:
            return refused
        if not self.instance_v2:
            return self._json(record, 404, _error("Not Found"), self._rate_headers(record.endpoint))
        body = {
            "domain": self.domain,
            "title": f"{self.domain} (fake)",
            "version": "4.4.0",
            "source_url": "https://github.com/mastodon/mastodon",
            "description": "A fake Mastodon server for tests",
            "configuration": {
                "urls": {"streaming": self._streaming_url(), "status": None},
                "statuses": {"max_characters": 500, "max_media_attachments": 4},
                "polls": {"max_options": 4},
            },
            "registrations": {"enabled": False, "approval_required": False},
        }
        return self._json(record, 200, body, self._rate_headers(record.endpoint))

    async def _instance_v1(self, request: Request) -> Response:
        record, refused = await self._guard(request, "instance")
        if refused is not None:
            return refused
        body = {
            "uri": self.domain,
            "title": f"{self.domain} (fake)",
            "version": "3.5.3",
            "urls": {"streaming_api": self._streaming_url()},
        }
        return self._json(record, 200, body, self._rate_headers(record.endpoint))

    # -- streaming ----------------------------------------------------------------------------

    async def _stream(self, request: Request) -> Response:
        record, refused = await self._guard(
            request, "stream", needs_token=self.stream_requires_token
        )
        if refused is not None:
            return refused
        params = request.query_params
        if request.url.path.endswith("/streaming") and params.get("stream") != "hashtag":
            return self._json(record, 400, _error("Unknown stream type"), {})
        tag = params.get("tag", "")
        if not tag:
            return self._json(record, 400, _error("No tag for stream provided"), {})
        return self._open_stream(
            request,
            record,
            media_type="text/event-stream",
            headers={"Cache-Control": "private, no-store", "X-Accel-Buffering": "no"},
            tag=tag.casefold(),
        )

    def _event(self, kind: str, local: int, tag: str) -> bytes | None:
        if kind == "delete":
            return f"event: delete\ndata: {local}\n\n".encode()
        status = self.statuses[local]
        if not self._visible(local) or not self._matches(local, {tag}):
            return None
        payload = json.dumps(status, ensure_ascii=False)
        return f"event: {kind}\ndata: {payload}\n\n".encode()

    def _stream_position(self) -> int:
        return len(self.events)

    def _new_chunks(self, connection: StreamConnection) -> list[bytes]:
        new = self.events[connection.cursor :]
        connection.cursor = len(self.events)
        if self.stream_out_of_order:
            updates = sorted((e for e in new if e[0] == "update"), key=lambda e: e[1], reverse=True)
            new = updates + [e for e in new if e[0] != "update"]
        chunks = (self._event(kind, local, connection.tag) for kind, local in new)
        return [chunk for chunk in chunks if chunk is not None]
