"""What the tests' fake networks (`fakex`, `fakemastodon`, `fakebluesky`) share.

`FakeServer` serves its Starlette `app()` with uvicorn on a free 127.0.0.1 port, in a thread
(`with fake:`), so the real clients talk to it over real HTTP. It records every request, answers
the faults a test scripts (`fail_next`, `hang_next`), and counts requests in rate-limit windows.
Each fake says what is its network's own: its endpoints and request records, its rate-limit
headers (`_format_rate_headers`), which requests share a window (`_rate_key`) and its limit
(`_rate_limit`), and the error an answer carries (`_error_response`).

`StreamingFakeServer` adds long-lived streamed answers: each connection sends what is published
while it is open (`_new_chunks`) and a keep-alive when it has been silent for
`keepalive_interval`, and takes the next `StreamScript` to misbehave (`stream_drop_after`,
`stream_go_silent`, `stream_keepalive_only`); `stream_duplicates` and `stream_out_of_order` stay on
until turned off.

Starting a server is quick but stopping one takes 0.2 s (uvicorn), so a test module may share one
(`scope="module"`) and reset it before each test: a fake's `reset` calls `_start_over`, which
forgets the requests, faults, windows and scripts, and ends the streams still open.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Self, TypeVar

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse


@dataclass(kw_only=True)
class RecordedRequest:
    method: str
    endpoint: str
    time: float  # epoch seconds when it arrived
    status: int = 0  # 0 until answered
    response_headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    status: int  # the HTTP status to answer with; 0 = answer normally after `hang`
    reset_in: float = 1.0  # for 429: seconds until the rate limit's reset
    hang: float = 0.0  # seconds to wait before answering


EndpointT = TypeVar("EndpointT", bound=str)
RecordT = TypeVar("RecordT", bound=RecordedRequest)


async def read_body(request: Request) -> Any:
    """A POST's JSON body (its text if it is not JSON); None for other methods."""
    if request.method != "POST":
        return None
    raw = await request.body()
    try:
        return json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return raw.decode("utf-8", "replace")


def epoch_reset(reset: float) -> str:
    """A rate-limit reset in Unix seconds, rounded up (X, Bluesky)."""
    return str(math.ceil(reset))


class FakeServer(Generic[EndpointT, RecordT]):
    """A fake network served over HTTP, with its request records, faults and rate limits."""

    name: ClassVar[str] = "network"  # in messages: "the fake X server did not start"
    window_seconds: float = 300.0  # how long a rate-limit window lasts

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._closing = threading.Event()
        self._sock: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def _start_over(self, endpoints: Iterable[EndpointT]) -> None:
        """Forget the requests, faults and rate-limit windows (from `reset`, under the lock)."""
        self._requests: list[RecordT] = []
        self._faults: dict[str, deque[Fault]] = {name: deque() for name in endpoints}
        self._windows: dict[str, tuple[float, int]] = {}  # (reset epoch, calls used)

    # -- controls -----------------------------------------------------------------------------

    def fail_next(
        self,
        endpoint: EndpointT,
        status: int,
        *,
        times: int = 1,
        reset_in: float = 1.0,
        after: int = 0,
    ) -> None:
        """After `after` good answers, the next `times` requests to `endpoint` get `status`
        (429 with no calls remaining and a reset `reset_in` s ahead, 500, 503, 403...)."""
        with self._lock:
            self._faults[endpoint].extend(Fault(0) for _ in range(after))
            self._faults[endpoint].extend(Fault(status, reset_in) for _ in range(times))

    def hang_next(self, endpoint: EndpointT, seconds: float, *, times: int = 1) -> None:
        """The next `times` requests to `endpoint` wait `seconds` before being answered."""
        with self._lock:
            self._faults[endpoint].extend(Fault(0, hang=seconds) for _ in range(times))

    def requests(self, endpoint: EndpointT | None = None) -> list[RecordT]:
        with self._lock:
            return [r for r in self._requests if endpoint is None or r.endpoint == endpoint]

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait (without blocking the event loop) until `condition()` holds, or fail."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            await asyncio.sleep(0.01)

    def wait_until_sync(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            time.sleep(0.01)

    # -- serving ------------------------------------------------------------------------------

    def app(self) -> Starlette:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Accepted connections inherit this: without it each response (headers, then body in a
        # second small write) waits ~40 ms on Nagle's algorithm and the client's delayed ACK.
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.bind(("127.0.0.1", 0))
        port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            self.app(),
            log_level="warning",
            lifespan="off",
            http="h11",
            ws="none",
            loop="asyncio",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the fake {self.name} server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        with self._lock:
            self._wake_streams()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()

    def _wake_streams(self) -> None:
        """Wake the open streams (to see what is new, or that they must end): none here."""

    # -- request plumbing ---------------------------------------------------------------------

    def _arrive(self, record: RecordT) -> Fault | None:
        """Record a request; the fault scripted for it, if any."""
        with self._lock:
            self._requests.append(record)
            faults = self._faults[record.endpoint]
            return faults.popleft() if faults else None

    async def _hang(self, fault: Fault | None) -> None:
        if fault is not None and fault.hang:
            await self._sleep(fault.hang)

    def _refusal(
        self, record: RecordT, fault: Fault | None, *, counted: bool = True
    ) -> Response | None:
        """The answer of a scripted fault, or a 429 when the request's window is used up
        (`counted`: the request counts in a window); None to answer normally."""
        endpoint = record.endpoint
        if fault is not None and fault.status:
            exhausted_for = fault.reset_in if fault.status == 429 else None
            headers = self._rate_headers(endpoint, exhausted_for=exhausted_for)
            return self._error_response(record, fault.status, headers, scripted=True)
        if counted and not self._count(endpoint):
            return self._error_response(record, 429, self._rate_headers(endpoint), scripted=False)
        return None

    def _error_response(
        self, record: RecordT, status: int, headers: Mapping[str, str], *, scripted: bool
    ) -> Response:
        """The network's answer with error `status` (`scripted`: by `fail_next`, else a 429 for
        a used-up window)."""
        raise NotImplementedError

    def _json(
        self,
        record: RecordT,
        status: int,
        payload: Any,
        headers: Mapping[str, str] | None = None,
    ) -> JSONResponse:
        record.status = status
        record.response_headers = dict(headers or {})
        return JSONResponse(payload, status_code=status, headers=dict(headers or {}))

    async def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self._closing.is_set():
            await asyncio.sleep(min(0.02, seconds))

    # -- rate limits --------------------------------------------------------------------------

    def _rate_key(self, endpoint: str) -> str:
        """The window a request to `endpoint` counts in: one per endpoint."""
        return endpoint

    def _rate_limit(self, endpoint: str) -> int:
        """How many requests to `endpoint` a window takes."""
        raise NotImplementedError

    def _format_rate_headers(self, limit: int, remaining: int, reset: float) -> dict[str, str]:
        """The network's rate-limit headers (`reset`: the window's end, epoch seconds)."""
        raise NotImplementedError

    def _window(self, key: str, now: float) -> tuple[float, int]:
        """The window `key` is in at `now`, a new one once the last has ended: when it ends
        (epoch seconds) and the calls it counted so far (under the lock)."""
        reset, used = self._windows.get(key, (0.0, 0))
        if now >= reset:
            reset, used = now + self.window_seconds, 0
            self._windows[key] = (reset, used)
        return reset, used

    def _rate_headers(self, endpoint: str, *, exhausted_for: float | None = None) -> dict[str, str]:
        """The rate-limit headers of an answer (`exhausted_for`: none left for that long)."""
        now = time.time()
        with self._lock:
            reset, used = self._window(self._rate_key(endpoint), now)
            limit = self._rate_limit(endpoint)
            remaining = max(limit - used, 0)
        if exhausted_for is not None:
            remaining, reset = 0, now + exhausted_for
        return self._format_rate_headers(limit, remaining, reset)

    def _count(self, endpoint: str) -> bool:
        """Count a request in its window; False if the window's limit is already used up."""
        key = self._rate_key(endpoint)
        with self._lock:
            reset, used = self._window(key, time.time())
            if used >= self._rate_limit(endpoint):
                return False
            self._windows[key] = (reset, used + 1)
            return True


# -- streams ---------------------------------------------------------------------------------


@dataclass
class StreamScript:
    """How one stream connection misbehaves (each connection takes the next script)."""

    drop_after: int | None = None  # end the response after this many messages
    abort: bool = False  # ... by breaking the connection (no final chunk) instead
    silent_after: int | None = None  # after this many messages send nothing, not even keep-alives
    keepalive_only: bool = False  # send keep-alives, never a message
    tag: str | None = None  # only for a connection following this hashtag (None: any)


@dataclass
class StreamConnection:
    loop: asyncio.AbstractEventLoop
    wake: asyncio.Event
    cursor: int  # where the connection is in what the server publishes (see `_new_chunks`)
    generation: int  # a reset ends the connections of the generation before
    tag: str = ""  # what the connection follows, for a network whose streams are per hashtag


class StreamingFakeServer(FakeServer[EndpointT, RecordT]):
    """A fake server with streamed answers (see the module's docstring)."""

    keepalive: ClassVar[bytes] = b"\r\n"  # what a keep-alive is
    greeting: ClassVar[bytes] = b""  # sent first on every connection
    keepalive_interval: float = 20.0  # seconds of silence before a keep-alive

    def __init__(self) -> None:
        self._open: list[StreamConnection] = []
        self._generation = 0
        super().__init__()

    def _start_over(self, endpoints: Iterable[EndpointT]) -> None:
        self._generation += 1
        self._wake_streams()
        super()._start_over(endpoints)
        self._scripts: deque[StreamScript] = deque()
        self.stream_duplicates = False  # every stream message is sent twice
        self.stream_out_of_order = False  # messages published together go newest first
        self.stream_connections = 0  # stream connections accepted so far
        self.messages_sent = 0
        self.keepalives_sent = 0

    # -- controls -----------------------------------------------------------------------------

    def script_stream(self, *scripts: StreamScript) -> None:
        """The next stream connections behave as these scripts say, one each, in order (a
        script with a `tag` waits for a connection following that hashtag)."""
        with self._lock:
            self._scripts.extend(scripts)

    def stream_drop_after(self, messages: int, *, abort: bool = False) -> None:
        self.script_stream(StreamScript(drop_after=messages, abort=abort))

    def stream_go_silent(self, after: int = 0, *, tag: str | None = None) -> None:
        self.script_stream(StreamScript(silent_after=after, tag=tag))

    def stream_keepalive_only(self) -> None:
        self.script_stream(StreamScript(keepalive_only=True))

    @property
    def open_streams(self) -> int:
        with self._lock:
            return len(self._open)

    # -- serving ------------------------------------------------------------------------------

    def _wake_streams(self) -> None:
        for connection in self._open:
            connection.loop.call_soon_threadsafe(connection.wake.set)

    def _stream_position(self) -> int:
        """Where a new connection starts: after what is published so far (under the lock)."""
        raise NotImplementedError

    def _new_chunks(self, connection: StreamConnection) -> list[bytes]:
        """What the connection sends of what was published since its cursor, which moves on
        (under the lock); `stream_out_of_order` is the network's to apply."""
        raise NotImplementedError

    def _open_stream(
        self,
        request: Request,
        record: RecordT,
        *,
        media_type: str,
        headers: Mapping[str, str],
        tag: str = "",
    ) -> StreamingResponse:
        """A streamed answer to `request`, on a connection that takes the next script."""
        with self._lock:
            script = next((s for s in self._scripts if s.tag in (None, tag)), StreamScript())
            if script in self._scripts:
                self._scripts.remove(script)
            connection = StreamConnection(
                asyncio.get_running_loop(),
                asyncio.Event(),
                cursor=self._stream_position(),
                generation=self._generation,
                tag=tag,
            )
            self._open.append(connection)
            self.stream_connections += 1
        record.status = 200
        record.response_headers = dict(headers)
        return StreamingResponse(
            self._stream_body(request, connection, script),
            media_type=media_type,
            headers=dict(headers),
        )

    async def _stream_body(
        self, request: Request, connection: StreamConnection, script: StreamScript
    ) -> AsyncIterator[bytes]:
        sent = 0
        last_write = time.monotonic()

        def over() -> bool:
            return self._closing.is_set() or connection.generation != self._generation

        def script_ended() -> bool:
            return (script.drop_after is not None and sent >= script.drop_after) or (
                script.silent_after is not None and sent >= script.silent_after
            )

        try:
            if self.greeting:
                yield self.greeting
            while not over():
                if script.drop_after is not None and sent >= script.drop_after:
                    if script.abort:
                        raise ConnectionAbortedError(f"fake {self.name} breaks the stream")
                    return
                if script.silent_after is not None and sent >= script.silent_after:
                    # Hold the connection open and say nothing until the client gives up.
                    while not over() and not await request.is_disconnected():
                        await asyncio.sleep(0.02)
                    return
                wait = max(0.0, last_write + self.keepalive_interval - time.monotonic())
                try:
                    await asyncio.wait_for(connection.wake.wait(), wait)
                except TimeoutError:
                    self.keepalives_sent += 1
                    last_write = time.monotonic()
                    yield self.keepalive
                    continue
                connection.wake.clear()
                if over():
                    return
                with self._lock:
                    chunks = self._new_chunks(connection)
                if script.keepalive_only:
                    chunks = []
                if self.stream_duplicates:
                    chunks = [chunk for chunk in chunks for _ in range(2)]
                for chunk in chunks:
                    if script_ended():
                        break
                    sent += 1
                    self.messages_sent += 1
                    last_write = time.monotonic()
                    yield chunk
        finally:
            with self._lock:
                if connection in self._open:
                    self._open.remove(connection)
