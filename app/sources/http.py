"""What the network clients and their sources share: HTTP requests, their errors, retries, states.

Each network's API (X, Mastodon, Bluesky) is described by an `ApiDialect`: what to call it in
messages, where its rate-limit headers are and how their reset reads, its error classes, and how
its error bodies give their reason. `ApiClient` sends requests in that dialect over one
`httpx.AsyncClient`, keeps the last rate-limit headers seen, and turns every failure into one of
the errors below, so that the sources decide what to do from the error's type alone: wait, back
off, or stop and say why.

Exceptions::

    ApiError                  any failure talking to a network; `str()` says what happened
     ├── NetworkError         no HTTP answer: connection refused or reset, timeout, bad TLS
     │    └── StreamStalled   a stream sent neither data nor keep-alive for too long
     ├── RateLimited          429: carries `reset_at`, when the network says to try again
     ├── ServerError          5xx (or an unreadable answer): the same request may succeed later
     ├── AuthError            401/403: a wrong token, or no access to the endpoint; do not retry
     └── RequestError         other 4xx: a request the network will never accept as sent

Every network subclasses each of them (`XRateLimited(XApiError, RateLimited)`...), so a caller
catches one network's errors, or one kind of error whatever the network.

For the sources: `RetryingCaller` calls until the network answers (waiting out 429s, backing off
on 5xx and network errors, as `Backoff` says), `Reporter` reports a source's state to its context,
and `run_source` runs a source until it ends or is asked to stop, and reports why it stopped.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Self, TypeVar

import anyio
import anyio.abc
import httpx

from app import jsonio
from app.sources.base import SourceContext, SourceStatus, State

T = TypeVar("T")
StopEvent = anyio.Event | asyncio.Event


# -- rate limits -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RateLimit:
    """The rate-limit headers of one response."""

    limit: int | None
    remaining: int | None
    reset_at: datetime | None  # when the window ends
    policy: str | None = None  # e.g. Bluesky's "3000;w=300"


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def epoch_reset(value: str) -> datetime | None:
    """A reset header in Unix seconds (X, Bluesky)."""
    try:
        seconds = int(value)
    except ValueError:
        return None
    return datetime.fromtimestamp(seconds, UTC)


@dataclass(frozen=True, slots=True)
class RateLimitHeaders:
    """Where a network says its rate limit: `{prefix}limit`, `{prefix}remaining`,
    `{prefix}reset` (read by `reset`) and `{prefix}policy`."""

    prefix: str
    reset: Callable[[str], datetime | None] = epoch_reset

    def read(self, headers: Mapping[str, str]) -> RateLimit | None:
        """The rate limit the headers say, or None when they say nothing of it."""
        limit = _int_header(headers, f"{self.prefix}limit")
        remaining = _int_header(headers, f"{self.prefix}remaining")
        reset_text = headers.get(f"{self.prefix}reset")
        reset_at = self.reset(reset_text) if reset_text else None
        if limit is None and remaining is None and reset_at is None:
            return None
        return RateLimit(limit, remaining, reset_at, headers.get(f"{self.prefix}policy"))


# -- errors ----------------------------------------------------------------------------------


class ApiError(Exception):
    """A request failed. `status` is the HTTP status, or None when there was no answer."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        endpoint: str = "",
        rate_limit: RateLimit | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.endpoint = endpoint
        self.rate_limit = rate_limit
        self.body = body


class NetworkError(ApiError):
    """No HTTP answer (connection refused or dropped, a timeout)."""


class StreamStalled(NetworkError):
    """An open stream sent no byte, not even a keep-alive, within the timeout."""


class RateLimited(ApiError):
    """429: too many requests (or stream connections) in the window."""

    @property
    def reset_at(self) -> datetime | None:
        return self.rate_limit.reset_at if self.rate_limit else None


class ServerError(ApiError):
    """5xx, or an answer that cannot be read: the same request may succeed later."""


class AuthError(ApiError):
    """401/403: the token is wrong or lacks access to this endpoint; asking again cannot help."""


class RequestError(ApiError):
    """Another 4xx: the network rejects the request itself, for good."""


@dataclass(frozen=True, slots=True)
class ErrorKinds:
    """A network's own class for each kind of error (`stalled`: for a network with streams)."""

    network: type[NetworkError]
    rate_limited: type[RateLimited]
    server: type[ServerError]
    auth: type[AuthError]
    request: type[RequestError]
    stalled: type[StreamStalled] = StreamStalled

    def for_status(self, status: int) -> type[ApiError]:
        if status == 429:
            return self.rate_limited
        if status in (401, 403):
            return self.auth
        if status >= 500:
            return self.server
        return self.request


@dataclass(frozen=True, slots=True)
class ApiDialect:
    """How one network's API speaks: `name` in messages ("X", a Mastodon server's host...),
    its rate-limit headers, its error classes, and `reason`: the reason an error body gives
    ("" when it gives none; the status line then stands in)."""

    name: str
    rate_limits: RateLimitHeaders
    errors: ErrorKinds
    reason: Callable[[Any], str]

    def rate_limit(self, headers: Mapping[str, str]) -> RateLimit | None:
        return self.rate_limits.read(headers)

    def error_for_response(self, endpoint: str, response: httpx.Response) -> ApiError:
        """The error a non-2xx response stands for (its body must have been read)."""
        status = response.status_code
        try:
            body: Any = jsonio.loads(response.content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = response.text[:500] if response.content else None
        reason = self.reason(body) or response.reason_phrase or "no reason given"
        return self.errors.for_status(status)(
            f"{self.name} answered {status} to {endpoint}: {reason}",
            status=status,
            endpoint=endpoint,
            rate_limit=self.rate_limit(response.headers),
            body=body,
        )

    def network_error(self, endpoint: str, exc: Exception) -> NetworkError:
        kind = type(exc).__name__
        detail = str(exc) or kind
        return self.errors.network(
            f"no answer from {self.name} for {endpoint} ({kind}: {detail})", endpoint=endpoint
        )

    def unreadable(
        self, endpoint: str, response: httpx.Response, problem: str, *, subject: str = ""
    ) -> ServerError:
        """A 2xx answer whose body is not what was asked for (`problem`: "a body that is not
        JSON"...); `subject` names what was asked for in the message (default: `endpoint`)."""
        return self.errors.server(
            f"{self.name} answered {subject or endpoint} with {problem}",
            status=response.status_code,
            endpoint=endpoint,
            rate_limit=self.rate_limit(response.headers),
        )


# -- the client ------------------------------------------------------------------------------


class ApiClient:
    """Requests in `dialect` over `http` (closed by `aclose()` when `owns_http`).

    `rate_limits` keeps the last rate-limit headers seen per endpoint, `rate_limit` the last seen
    from any endpoint. Use as `async with Client(...) as client:` (or call `aclose()`).
    """

    def __init__(
        self, dialect: ApiDialect, http: httpx.AsyncClient, *, owns_http: bool = True
    ) -> None:
        self.dialect = dialect
        self.rate_limits: dict[str, RateLimit] = {}
        self.rate_limit: RateLimit | None = None
        self._http = http
        self._owns_http = owns_http

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    def _note_rate_limit(self, endpoint: str, response: httpx.Response) -> None:
        rate_limit = self.dialect.rate_limit(response.headers)
        if rate_limit is not None:
            self.rate_limits[endpoint] = rate_limit
            self.rate_limit = rate_limit

    async def _send(self, method: str, url: str, *, endpoint: str, **kwargs: Any) -> httpx.Response:
        """A request that was answered 2xx; otherwise the matching ApiError is raised."""
        try:
            response = await self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise self.dialect.network_error(endpoint, exc) from exc
        self._note_rate_limit(endpoint, response)
        if not response.is_success:
            raise self.dialect.error_for_response(endpoint, response)
        return response

    async def _request_json(
        self, method: str, url: str, *, endpoint: str, **kwargs: Any
    ) -> tuple[Any, httpx.Response]:
        """The JSON of a 2xx answer (ServerError if it is not JSON), and the answer."""
        response = await self._send(method, url, endpoint=endpoint, **kwargs)
        try:
            return jsonio.loads(response.content), response
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise self.dialect.unreadable(endpoint, response, "a body that is not JSON") from exc

    async def _request_object(
        self, method: str, url: str, *, endpoint: str, **kwargs: Any
    ) -> dict[str, Any]:
        """The JSON object of a 2xx answer (ServerError if it is not one)."""
        return (await self._request_body(method, url, endpoint=endpoint, **kwargs))[0]

    async def _request_body(
        self, method: str, url: str, *, endpoint: str, **kwargs: Any
    ) -> tuple[dict[str, Any], bytes]:
        """The JSON object of a 2xx answer (ServerError if it is not one), and its bytes."""
        payload, response = await self._request_json(method, url, endpoint=endpoint, **kwargs)
        if not isinstance(payload, dict):
            raise self.dialect.unreadable(endpoint, response, "JSON that is not an object")
        return payload, response.content

    @asynccontextmanager
    async def _open_stream(
        self, request: httpx.Request, endpoint: str, *, note_rate_limit: bool = True
    ) -> AsyncIterator[httpx.Response]:
        """Send `request` for a streamed answer, closed when the block ends; raises the matching
        ApiError if it is refused. `note_rate_limit`: keep the answer's rate-limit headers."""
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise self.dialect.network_error(endpoint, exc) from exc
        try:
            if note_rate_limit:
                self._note_rate_limit(endpoint, response)
            if not response.is_success:
                try:
                    await response.aread()
                except httpx.TransportError as exc:
                    raise self.dialect.network_error(endpoint, exc) from exc
                raise self.dialect.error_for_response(endpoint, response)
            yield response
        finally:
            await response.aclose()


async def stream_lines(
    response: httpx.Response, dialect: ApiDialect, endpoint: str, silence: str
) -> AsyncGenerator[str, None]:
    """Each line of a streamed answer; ends when the network closes the stream. Raises the
    dialect's StreamStalled saying `silence` when nothing came within the read timeout, its
    NetworkError when the connection breaks."""
    try:
        async for line in response.aiter_lines():
            yield line
    except httpx.TimeoutException as exc:
        raise dialect.errors.stalled(silence, endpoint=endpoint) from exc
    except httpx.TransportError as exc:
        raise dialect.network_error(endpoint, exc) from exc


# -- retrying and reporting ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Backoff:
    """How a failed request is retried: 5xx and network errors wait `base` seconds, doubling up
    to `cap`; a 429 waits until the network's reset time plus `reset_margin` (for clock skew)."""

    base: float = 1.0
    cap: float = 60.0
    reset_margin: float = 1.0

    def rate_limit_wait(self, reset_at: datetime | None) -> float:
        """Seconds a 429 waits before asking again."""
        if reset_at is None:
            # No reset header: wait as long as the longest backoff rather than hammer the API.
            return self.cap
        seconds = (reset_at - datetime.now(UTC)).total_seconds() + self.reset_margin
        # Never spin: a reset already past (clock skew) still waits the base delay.
        return max(seconds, self.base)


class Reporter:
    """Reports a source's state to its context, leaving out repeats of `running`; with
    `new_details`, a `running` whose detail changed is reported all the same."""

    def __init__(self, ctx: SourceContext, source: str, *, new_details: bool = False) -> None:
        self.ctx = ctx
        self.source = source
        self.new_details = new_details
        self.state: State | None = None
        self.detail = ""

    def __call__(self, state: State, detail: str = "", retry_at: datetime | None = None) -> None:
        if (
            state == "running"
            and self.state == "running"
            and (not self.new_details or detail == self.detail)
        ):
            return
        self.state, self.detail = state, detail
        self.ctx.report(SourceStatus(self.source, state, detail, retry_at))


class RetryingCaller:
    """Calls a network until it answers: waits out 429s, backs off on 5xx and network errors,
    then reports the source running (with `running_detail`, or what it returns when called).

    AuthError and RequestError go through to the caller: retrying cannot fix them.
    """

    def __init__(
        self, report: Reporter, backoff: Backoff, running_detail: str | Callable[[], str] = ""
    ) -> None:
        self.report = report
        self.backoff = backoff
        self.running_detail = running_detail

    async def call(self, request: Callable[[], Awaitable[T]]) -> T:
        delay = self.backoff.base
        while True:
            try:
                result = await request()
            except RateLimited as exc:
                wait = self.backoff.rate_limit_wait(exc.reset_at)
                retry_at = datetime.now(UTC) + timedelta(seconds=wait)
                self.report(
                    "waiting",
                    f"{exc.message}; waiting until {retry_at:%H:%M:%S} UTC for the rate limit",
                    retry_at,
                )
                await anyio.sleep(wait)
                continue
            except (ServerError, NetworkError) as exc:
                retry_at = datetime.now(UTC) + timedelta(seconds=delay)
                self.report("failing", f"{exc.message}; retrying in {delay:g} s", retry_at)
                await anyio.sleep(delay)
                delay = min(delay * 2, self.backoff.cap)
                continue
            detail = self.running_detail
            self.report("running", detail if isinstance(detail, str) else detail())
            return result


# -- running ---------------------------------------------------------------------------------


@asynccontextmanager
async def unwrapped_task_group() -> AsyncIterator[anyio.abc.TaskGroup]:
    """A task group whose one failure comes out as itself, not wrapped in a group, so callers
    can catch it by type."""
    try:
        async with anyio.create_task_group() as group:
            yield group
    except BaseExceptionGroup as errors:
        if len(errors.exceptions) == 1:
            raise errors.exceptions[0] from None
        raise


async def run_until_stopped(stop: StopEvent | None, body: Callable[[], Awaitable[None]]) -> bool:
    """Run `body` until it returns or `stop` is set (then it is cancelled, wherever it waits).

    Returns True if `stop` ended it.
    """
    if stop is None:
        await body()
        return False
    if stop.is_set():
        return True
    stopped = False
    # Only `body` can fail (the watcher just waits): its error comes out as itself.
    async with unwrapped_task_group() as group:

        async def watch() -> None:
            nonlocal stopped
            await stop.wait()
            stopped = True
            group.cancel_scope.cancel()

        group.start_soon(watch)
        await body()
        group.cancel_scope.cancel()
    return stopped


async def run_source(
    report: Reporter,
    stop: StopEvent | None,
    body: Callable[[], Awaitable[None]],
    ended: Sequence[str],
) -> None:
    """Run a source's `body` until it returns or `stop` is set, then report the source stopped:
    with the reasons `body` put in `ended` (a network refused it for good), or on request."""
    stopped = await run_until_stopped(stop, body)
    if ended:
        report("stopped", "; ".join(ended))
    elif stopped:
        report("stopped", "stopped on request")
