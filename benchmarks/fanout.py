"""Fan-out benchmark: many WebSocket clients on loopback following a replayed chat.

For each client count (`--clients 100,1000,5000`): a fresh SQLite file and a real server process
(the app under uvicorn, configured as `tweetchat serve` runs it, TWEETCHAT_WS_* defaults) on a
free port; client processes (`--client-procs`, each an asyncio loop holding many connections on
websockets' Sans-I/O protocol) connect to `/ws/chats/fanout` and read their snapshots; then the
server replays the hand-made archive `tests/fixtures/qi-chat.jsonl` (or `--archive`) at
`--speed`. Measured:

- `post_delay_ms`: from a post entering the server (its `received_at`, stamped when the replay
  source hands it to the chat) to each client reading it, p50/p99/max over every (client, post)
  pair; `fanout_delay_ms`: from the update's `sent_at` (when it is published) to each client
  reading it, over every (client, update) pair; `server_side_ms`: `received_at` → `sent_at`
  (storing, tagging, and waiting for the next update: `TWEETCHAT_UPDATE_INTERVAL`, and longer
  when sending one takes long, see docs/live-updates.md);
- `delivered`: the share of updates (by `seq`) and of posts (count and id checksum) each reading
  client got: every update and every post exactly once is the requirement;
- the server process's CPU (user and system, /proc/PID/stat) from the start of the replay until
  every client is done, and its memory per idle connection: (RSS with the clients connected and
  their snapshots read − RSS before) / connections;
- a run with one more client that stops reading (`--stall`, at `--stall-at` readers): it
  connects first (the first socket in the baseline's list), as over a network (MSS 1448, a 4 KiB
  receive buffer, no deflate: on loopback Linux would buffer megabytes for it), stops reading
  right after answering a keepalive ping once updates flow, and reads again `--stall-for` seconds
  later (uvicorn closes a client that leaves a ping unanswered 20 s, at 20-40 s into a stall):
  tweetchat must have cut it off with close code 1013 by then, without delaying the others.

The same runs against a naive baseline (`benchmarks/fanout_baseline.py`: the FastAPI docs'
`ConnectionManager.broadcast`, awaiting each socket's `send_text` in turn), fed the update messages
the tweetchat run recorded, at their recorded pace (`--no-baseline` to skip). The baseline has no
ingest: its posts enter it with their update, so its post delay is its fan-out delay.

With `--servers N` (2 or more), N server processes share a fresh PostgreSQL database
(`--postgres-url`) and Redis (`--redis-url`), as docs/deploy/README.md deploys them: the first
collects the chat, the others follow it through Redis, and the clients split evenly between
them. Each process numbers its own updates, so each has a recorder and a final seq of its own;
the figures are over every client, with each process's clients, updates and CPU in
`per_server`. There is no baseline then (it has one process).

The clients offer per-message deflate as browsers do (`--no-deflate`: as a server that does not
accept it would be). Clients, server and anything else running share the machine's cores: the
clients' CPU (`client_cpu_s`) competes with the server's, and the delays include the clients'
own scheduling. Both ends read `time.time()` of the same machine.

Prints one JSON object on a line, then one line of plain text; progress goes to stderr.

    .venv/bin/python benchmarks/fanout.py                  # 100, 1,000 and 5,000 clients
    .venv/bin/python benchmarks/fanout.py --quick          # a smoke run: 20 clients, 12 posts
    .venv/bin/python benchmarks/fanout.py --servers 2      # two processes, PostgreSQL + Redis
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import platform
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ARCHIVE = ROOT / "tests" / "fixtures" / "qi-chat.jsonl"
BASELINE = Path(__file__).resolve().with_name("fanout_baseline.py")
SLUG = "fanout"
# The chat the qi archive belongs to (as tests/test_live.py creates it).
CHAT = (
    "--title", "Fan-out benchmark", "--hashtags", "#LeadingQI,#QIHour",
    "--host", "WarwickBSchool",
    "--panel", "HelenBevan,DrNicolaBurgess,KPOteam_SASH,jimmy_parvin,Sutcliffe1987",
    "--start", "2023-03-28T18:00:00Z", "--end", "2023-03-28T19:00:00Z",
)  # fmt: skip
TARGET_P99_MS = {1000: 100.0, 5000: 500.0}
TARGET_KIB_PER_CONNECTION = 100.0
STALLED_RCVBUF = 4096
STALLED_MSS = 1448

# The update messages are compact JSON (app/api/routes/live.py): the clients read the few fields
# they need without decoding whole messages, which would cost them more CPU than the server
# spends. A key cannot occur unescaped inside a JSON string, and `posts` comes before the figures.
_SEQ = re.compile(rb'"seq":(\d+)')
_NUMBER = re.compile(rb"[-+0-9.eE]+")


def _number(data: bytes, at: int) -> bytes:
    """The JSON number (or the digits of a string id) at `at` in `data`."""
    found = _NUMBER.match(data, at)
    if found is None:
        raise ValueError(f"no number at {at}: {data[at : at + 20]!r}")
    return found.group()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def raise_nofile(needed: int = 0) -> int:
    """Raise this process's open-file limit to the hard limit (or `needed`); returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, needed, 65536)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def use_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


# -- /proc ---------------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, all its threads."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": model or platform.processor(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


# -- a lean WebSocket client ---------------------------------------------------------------------


@dataclass
class Tally:
    """What the clients of one process measured."""

    post_delays: array.array[float] = field(default_factory=lambda: array.array("d"))
    fanout_delays: array.array[float] = field(default_factory=lambda: array.array("d"))


class Reader(asyncio.Protocol):
    """One WebSocket client on websockets' Sans-I/O protocol: frames are handled as they arrive,
    stamped with the time they were read, without a task or a queue per connection."""

    def __init__(
        self,
        url: str,
        tally: Tally,
        *,
        deflate: bool,
        stall_for: float = 0.0,
        keep: bool = False,
    ) -> None:
        extensions = enable_client_permessage_deflate(None) if deflate else None
        self.protocol = ClientProtocol(parse_uri(url), extensions=extensions, max_size=None)
        self.tally = tally
        # > 0: stop reading the socket for this long, from the first keepalive ping after the
        # first update (answered: uvicorn closes a client that leaves a ping unanswered 20 s, and
        # the next ping comes 20 s later, so a stall of up to ~38 s is not cut short by it).
        self.stall_for = stall_for
        self._stall_now = False
        self.stalled_at: float | None = None
        self.stalled_seq = -1
        self.closed_at: float | None = None
        self.keep = keep  # keep every message (the recorder)
        self.kept: list[tuple[float, bytes]] = []
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = loop.create_future()  # snapshot read
        self.closed: asyncio.Future[None] = loop.create_future()  # TCP connection gone
        self.done = asyncio.Event()  # final_seq reached
        self.transport: asyncio.Transport | None = None
        self.final_seq: int | None = None
        self.snapshot_seq = -1
        self.last_seq = -1
        self.updates = 0
        self.missed = 0  # updates skipped over (seq gaps)
        self.posts = 0
        self.id_sum = 0
        self.close_code: int | None = None
        self.snapshot_bytes = 0
        self._frames: list[bytes] = []

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.protocol.send_request(self.protocol.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Frame):
                self._frame(now, event)
            elif isinstance(event, Response) and self.protocol.handshake_exc is not None:
                self._fail(self.protocol.handshake_exc)
        self._flush()
        if self._stall_now and self.transport is not None:  # the pong is written: stop reading
            self._stall_now = False
            self.stalled_at, self.stalled_seq = now, self.last_seq
            self.transport.pause_reading()
            asyncio.get_running_loop().call_later(self.stall_for, self.resume)

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("closed before the snapshot"))
        if not self.closed.done():
            self.closed.set_result(None)
        self.done.set()

    # frames and messages

    def _frame(self, now: float, frame: Frame) -> None:
        if frame.opcode is Opcode.TEXT or frame.opcode is Opcode.CONT:
            self._frames.append(bytes(frame.data))
            if frame.fin:
                data = self._frames[0] if len(self._frames) == 1 else b"".join(self._frames)
                self._frames = []
                self._message(now, data)
        elif frame.opcode is Opcode.PING:
            if self.stall_for and self.updates and self.stalled_at is None:
                self._stall_now = True
        elif frame.opcode is Opcode.CLOSE and self.protocol.close_rcvd is not None:
            self.close_code = self.protocol.close_rcvd.code
            self.closed_at = now
            self.done.set()

    def _message(self, now: float, data: bytes) -> None:
        if self.keep:
            self.kept.append((now, data))
        if self.snapshot_seq < 0:
            found = _SEQ.search(data, 0, 200)
            self.snapshot_seq = self.last_seq = int(found.group(1)) if found else 0
            self.snapshot_bytes = len(data)
            if not self.ready.done():
                self.ready.set_result(None)
            return
        if not data.startswith(b'{"type":"update"'):
            return
        seq = int(_number(data, data.find(b'"seq":', 0, 200) + 6))
        if seq > self.last_seq + 1:
            self.missed += seq - self.last_seq - 1
        self.last_seq = max(seq, self.last_seq)
        self.updates += 1
        sent = data.rfind(b'"sent_at":')
        if sent >= 0:
            self.tally.fanout_delays.append(now - float(_number(data, sent + 10)))
        delays = self.tally.post_delays
        # Each post of "posts" starts with its id and ends with its received_at; "retagged"
        # follows (and then the figures, whose top posts carry no received_at).
        at = data.find(b'"posts":[', 0, 300)
        end = data.find(b'"retagged":', at)
        while at >= 0:
            at = data.find(b'{"id":"', at, end)
            if at < 0:
                break
            post_id = _number(data, at + 7)
            at = data.find(b'"received_at":', at, end)
            if at < 0:
                break
            delays.append(now - float(_number(data, at + 14)))
            self.posts += 1
            self.id_sum += int(post_id)
        if self.final_seq is not None and seq >= self.final_seq:
            self.done.set()

    def finish_at(self, final_seq: int) -> None:
        self.final_seq = final_seq
        if self.last_seq >= final_seq:
            self.done.set()

    def resume(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        with contextlib.suppress(Exception):
            self.protocol.send_close(1000)
            self._flush()
        self.transport.close()

    def _flush(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.transport.write(chunk)
            elif self.transport.can_write_eof():
                self.transport.write_eof()

    def _fail(self, exc: BaseException) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc)
            self.ready.exception()  # mark it retrieved: the opener reports it


async def open_reader(
    url: str,
    tally: Tally,
    *,
    deflate: bool,
    stall_for: float = 0.0,
    keep: bool = False,
    rcvbuf: int = 0,
    mss: int = 0,
) -> Reader:
    uri = parse_uri(url)
    loop = asyncio.get_running_loop()
    last: BaseException | None = None
    for attempt in range(3):
        reader = Reader(url, tally, deflate=deflate, stall_for=stall_for, keep=keep)
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if rcvbuf:  # before connecting: the window is agreed on then
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if mss:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, (uri.host, uri.port))
            except BaseException:
                sock.close()
                raise
            await loop.create_connection(lambda r=reader: r, sock=sock)  # type: ignore[misc]
            await asyncio.wait_for(asyncio.shield(reader.ready), 30)
            return reader
        except (OSError, TimeoutError, ConnectionError) as exc:
            last = exc
            reader.close()
            await asyncio.sleep(0.2 * (attempt + 1))
    raise ConnectionError(f"could not connect to {url}: {last!r}")


# -- client processes ----------------------------------------------------------------------------


@dataclass
class ClientReport:
    clients: int
    failed: list[str]
    post_delays: bytes
    fanout_delays: bytes
    # Per reading client: (snapshot_seq, last_seq, updates, missed, posts, id_sum, close_code)
    per_client: list[tuple[int, int, int, int, int, int, int | None]]
    stalled: dict[str, Any] | None
    cpu_s: float


def client_process(
    pipe: Connection, url: str, count: int, stall_for: float, deflate: bool, parallel: int
) -> None:
    """A process holding `count` reading clients (or, with `stall_for`, one that stops reading
    for that long on the first update)."""
    raise_nofile(count + 64)
    use_uvloop()
    asyncio.run(_client_session(pipe, url, count, stall_for, deflate, parallel))


async def _client_session(
    pipe: Connection, url: str, count: int, stall_for: float, deflate: bool, parallel: int
) -> None:
    loop = asyncio.get_running_loop()
    tally = Tally()
    gate = asyncio.Semaphore(parallel)
    stall = stall_for > 0
    # The client that stops reading connects as over a network (MSS 1448, a small receive
    # buffer): on loopback (MSS 64 KiB) Linux gives the server's socket a send buffer of
    # megabytes, which would absorb the whole stall. It does not offer deflate either, so that
    # the server's buffers fill in a few seconds of updates.
    rcvbuf, mss = (STALLED_RCVBUF, STALLED_MSS) if stall else (0, 0)
    deflate = deflate and not stall

    async def one() -> Reader:
        async with gate:
            return await open_reader(
                url, tally, deflate=deflate, stall_for=stall_for, rcvbuf=rcvbuf, mss=mss
            )

    opened = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    readers = [r for r in opened if isinstance(r, Reader)]
    failed = [repr(r) for r in opened if not isinstance(r, Reader)]
    pipe.send(("connected", len(readers), failed[:5]))
    cpu_at_start = time.process_time()
    command = await loop.run_in_executor(None, pipe.recv)
    _, final_seq, patience = command
    for reader in readers:
        reader.finish_at(final_seq)
    # Every reader is done once it has the last update (or its connection ended).
    pending = [asyncio.ensure_future(r.done.wait()) for r in readers]
    if pending:
        _, late = await asyncio.wait(pending, timeout=patience)
        for task in late:
            task.cancel()
    stalled: dict[str, Any] | None = None
    if stall and readers:
        reader = readers[0]
        stalled = {
            "stopped_reading_at_seq": reader.stalled_seq,
            "read_again_after_s": stall_for,
            "last_seq_received": reader.last_seq,
            "close_code": reader.close_code,
            "close_frame_after_s": None
            if reader.closed_at is None or reader.stalled_at is None
            else round(reader.closed_at - reader.stalled_at, 1),
        }
    cpu_s = time.process_time() - cpu_at_start
    per_client = [
        (r.snapshot_seq, r.last_seq, r.updates, r.missed, r.posts, r.id_sum, r.close_code)
        for r in readers
    ]
    for reader in readers:
        reader.close()
    await asyncio.sleep(0.2)
    pipe.send(
        (
            "result",
            ClientReport(
                clients=len(readers),
                failed=failed[:5],
                post_delays=tally.post_delays.tobytes(),
                fanout_delays=tally.fanout_delays.tobytes(),
                per_client=[] if stall else per_client,
                stalled=stalled,
                cpu_s=cpu_s,
            ),
        )
    )


# -- servers -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_tweetchat(port: int, archive: Path, speed: float, max_gap: float, posts: int) -> None:
    """The server process: tweetchat's app as `tweetchat serve` runs it (database from
    TWEETCHAT_DATABASE_URL); SIGUSR1 starts replaying `archive` into the chat."""
    raise_nofile()
    from app.cli import _run_server
    from app.config import Settings
    from app.live.hub import LiveHub

    timeline = benchmark_timeline(archive, posts)
    started: list[asyncio.Task[Any]] = []

    async def on_startup(hub: LiveHub) -> None:
        loop = asyncio.get_running_loop()

        def start() -> None:
            if not started:
                started.append(
                    loop.create_task(hub.start_replay(SLUG, timeline, speed=speed, max_gap=max_gap))
                )

        loop.add_signal_handler(signal.SIGUSR1, start)

    _run_server(Settings(), "127.0.0.1", port, on_startup, log_level="warning")


def benchmark_timeline(archive: Path, posts: int) -> Any:
    """The archive's timeline; with `posts`, only the first `posts` posts from the chat's start
    (the quiet day around a chat replays at `max_gap` per post and says little)."""
    from datetime import UTC, datetime

    from app.sources.replay import load_timeline

    timeline = load_timeline(archive)
    if posts:
        start = datetime(2023, 3, 28, 18, tzinfo=UTC)
        chosen = [p for p in timeline.posts if p.created_at >= start] or timeline.posts
        timeline.posts = chosen[:posts]
    return timeline


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    path: str
    log_path: Path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.path}"

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text()[-3000:]
        return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_server(command: list[str], env: dict[str, str], path: str, workdir: Path) -> Server:
    port = free_port()
    log_path = workdir / f"server-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            env=env,
            cwd=workdir,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, port, path, log_path)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}):\n{server.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"the server did not listen:\n{server.log_tail()}") from None
            time.sleep(0.1)


def default_update_interval() -> float:
    from app.config import Settings

    return Settings.model_fields["update_interval"].default  # type: ignore[no-any-return]


# Settings given on the command line (`--server-deflate`, `--update-interval`), for both servers.
SERVER_SETTINGS: dict[str, str] = {}


def server_env(database_url: str | None = None) -> dict[str, str]:
    """This environment without TWEETCHAT_* settings (defaults as shipped, but for those of
    `SERVER_SETTINGS`), plus the database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWEETCHAT_")}
    env.update(SERVER_SETTINGS)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    if database_url:
        env["TWEETCHAT_DATABASE_URL"] = database_url
    return env


def create_chat(database_url: str, workdir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "chat", "create", SLUG, *CHAT],
        env=server_env(database_url),
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"could not create the chat: {result.stdout}{result.stderr}")


# -- one run -------------------------------------------------------------------------------------


@dataclass
class RunConfig:
    kind: str  # tweetchat | baseline
    clients: int
    stalled: bool
    stall_for: float
    procs: int
    deflate: bool
    expected_posts: int
    expected_id_sum: int
    patience: float  # how long readers may lag once the server is done
    timeout: float  # the longest a replay may take
    messages: Path | None = None  # baseline: what to play


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None, "n": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] * 1000, 1)

    return {
        "p50": at(0.50),
        "p99": at(0.99),
        "max": round(ordered[-1] * 1000, 1),
        "n": len(ordered),
    }


async def run_once(config: RunConfig, servers: list[Server]) -> dict[str, Any]:
    """Connect the clients, play the chat, gather the figures (the servers are started; the
    first collects the chat, the others follow it through Redis)."""
    ctx = multiprocessing.get_context("spawn")
    loop = asyncio.get_running_loop()
    pids = [server.process.pid for server in servers]
    # One recorder per server: each process numbers its own updates.
    recorders = [
        await open_reader(server.url, Tally(), deflate=config.deflate, keep=True)
        for server in servers
    ]
    await asyncio.sleep(1.0)
    rss_before = [rss_kib(pid) for pid in pids]

    # (process, pipe, the index of its server)
    workers: list[tuple[multiprocessing.process.BaseProcess, Connection, int]] = []

    def spawn(count: int, stall: bool, on: int) -> None:
        parent_end, child_end = ctx.Pipe()
        stall_for = config.stall_for if stall else 0.0
        process = ctx.Process(
            target=client_process,
            args=(child_end, servers[on].url, count, stall_for, config.deflate, 32),
            daemon=True,
        )
        process.start()
        workers.append((process, parent_end, on))

    async def receive(pipe: Connection, timeout: float) -> Any:
        ready = await loop.run_in_executor(None, pipe.poll, timeout)
        if not ready:
            raise TimeoutError("a client process did not answer")
        return pipe.recv()

    connect_began = time.monotonic()
    if config.stalled:  # first, so that it is the first socket in the baseline's list
        spawn(1, True, 0)
        message = await receive(workers[0][1], 120)
        if message[1] != 1:
            raise RuntimeError(f"the stalled client could not connect: {message[2]}")
    # The readers split evenly between the servers, as a load balancer would: the client
    # processes, a whole number per server.
    procs = client_procs(config.procs, len(servers))
    share, extra = divmod(config.clients, procs)
    sizes = [share + (i < extra) for i in range(procs)]
    first_reader = len(workers)
    for index, size in enumerate(sizes):
        if size:
            spawn(size, False, index % len(servers))
    connected = 0
    for _, pipe, _ in workers[first_reader:]:
        message = await receive(pipe, 600)
        connected += message[1]
        if message[2]:
            log(f"  connection failures: {message[2]}")
    connect_s = time.monotonic() - connect_began
    await asyncio.sleep(2.0)
    rss_after = [rss_kib(pid) for pid in pids]
    connections = connected + (1 if config.stalled else 0)
    log(
        f"  {connections} clients connected in {connect_s:.1f} s; "
        f"RSS {sum(rss_before) // 1024} → {sum(rss_after) // 1024} MiB"
    )

    cpu_before = [cpu_seconds(pid) for pid in pids]
    began = time.time()
    servers[0].process.send_signal(signal.SIGUSR1)
    ends = await asyncio.gather(*(wait_for_end(r, config, began) for r in recorders))
    server_done = time.time()
    for _, pipe, on in workers:
        pipe.send(("finish", ends[on][0], config.patience))
    reports: list[list[ClientReport]] = [[] for _ in servers]
    for process, pipe, on in workers:
        message = await receive(pipe, config.patience + 120)
        reports[on].append(message[1])
        process.join(10)
    ended = time.time()
    cpu_after = [cpu_seconds(pid) for pid in pids]
    # (user, system) seconds of each server during the run
    used = [
        (after[0] - before[0], after[1] - before[1])
        for after, before in zip(cpu_after, cpu_before, strict=True)
    ]
    cpu_each = [user + system for user, system in used]
    cpu_s = sum(cpu_each)
    for recorder in recorders:
        recorder.close()

    groups = []
    for index, recorder in enumerate(recorders):
        final_seq, timed_out = ends[index]
        updates = [u for u in decode_updates(recorder.kept) if u["seq"] <= final_seq]
        groups.append(
            ServerRun(
                reports[index],
                updates,
                final_seq=final_seq,
                first_seq=recorder.snapshot_seq + 1,
                timed_out=timed_out,
            )
        )
    result = summarize(config, groups)
    kept = recorders[0].kept
    result.update(
        {
            "connect_s": round(connect_s, 1),
            "replay_s": round(server_done - began, 1),
            "wall_s": round(ended - began, 1),
            "server_cpu_s": round(cpu_s, 2),
            "server_cpu_user_sys_s": [
                round(sum(user for user, _ in used), 2),
                round(sum(system for _, system in used), 2),
            ],
            "server_cpu_share_of_a_core": round(cpu_s / (ended - began), 2),
            "client_cpu_s": round(sum(r.cpu_s for group in reports for r in group), 2),
            "rss_before_mib": round(sum(rss_before) / 1024, 1),
            "rss_after_mib": round(sum(rss_after) / 1024, 1),
            "memory_per_connection_kib": round(
                (sum(rss_after) - sum(rss_before)) / max(connections, 1), 1
            ),
            "snapshot_bytes": recorders[0].snapshot_bytes,
            "update_bytes_mean": round(
                sum(len(raw) for _, raw in kept[1:]) / max(len(kept) - 1, 1)
            ),
        }
    )
    if len(servers) > 1:
        result["per_server"] = [
            {
                "role": "collects" if index == 0 else "follows through Redis",
                "clients": sum(len(r.per_client) for r in reports[index]),
                "updates_published": group.final_seq - group.first_seq + 1,
                "server_cpu_s": round(cpu_each[index], 2),
                "rss_after_mib": round(rss_after[index] / 1024, 1),
            }
            for index, group in enumerate(groups)
        ]
    if config.kind == "tweetchat" and config.messages is not None:
        record_messages(config.messages, groups[0].updates)
    return result


async def wait_for_end(recorder: Reader, config: RunConfig, began: float) -> tuple[int, bool]:
    """The seq of the last update of the run, once the recorder saw the whole chat played."""
    deadline = began + config.timeout
    if config.kind == "baseline":
        assert config.messages is not None
        lines = config.messages.read_text().splitlines()
        final = json.loads(lines[-1])["seq"] if lines else recorder.snapshot_seq
        recorder.finish_at(final)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(recorder.done.wait(), max(deadline - time.time(), 1))
        return final, recorder.last_seq < final
    while time.time() < deadline:
        if recorder.posts >= config.expected_posts and replay_stopped(recorder.kept):
            await asyncio.sleep(1.0)  # a last update may follow
            return recorder.last_seq, False
        await asyncio.sleep(0.1)
    return recorder.last_seq, True


def replay_stopped(kept: list[tuple[float, bytes]]) -> bool:
    """Whether a message said the replay source stopped (in a snapshot, or in an update's
    patch of the sources: updates carry only what changed, so look at every message)."""
    return any(b'"state":"stopped"' in raw or b'{"=":"stopped"}' in raw for _, raw in kept)


def decode_updates(kept: list[tuple[float, bytes]]) -> list[dict[str, Any]]:
    updates = []
    for _, raw in kept:
        message = json.loads(raw)
        if message.get("type") == "update":
            updates.append(message)
    return updates


def record_messages(path: Path, updates: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for update in updates:
            handle.write(json.dumps(update, separators=(",", ":"), ensure_ascii=False))
            handle.write("\n")


@dataclass
class ServerRun:
    """What the clients of one server got, and the updates that server published (its recorder
    saw them: each process numbers its own)."""

    reports: list[ClientReport]
    updates: list[dict[str, Any]]
    final_seq: int
    first_seq: int
    timed_out: bool


def summarize(config: RunConfig, groups: list[ServerRun]) -> dict[str, Any]:
    post_delays: array.array[float] = array.array("d")
    fanout_delays: array.array[float] = array.array("d")
    update_shares: list[float] = []
    post_shares: list[float] = []
    exact = 0
    closes: set[int] = set()
    ingest: list[float] = []
    stalled: dict[str, Any] | None = None
    stalled_group: ServerRun | None = None
    failed: list[str] = []
    clients = 0
    for group in groups:
        published = group.final_seq - group.first_seq + 1
        for report in group.reports:
            if report.stalled is not None:
                stalled, stalled_group = report.stalled, group
                continue
            post_delays.frombytes(report.post_delays)
            fanout_delays.frombytes(report.fanout_delays)
            failed += report.failed
            for _, last, got, missed, posts, id_sum, code in report.per_client:
                clients += 1
                update_shares.append(min(got, published) / published if published else 1.0)
                post_shares.append(
                    min(posts, config.expected_posts) / config.expected_posts
                    if config.expected_posts
                    else 1.0
                )
                exact += (
                    last >= group.final_seq
                    and missed == 0
                    and got >= published
                    and posts == config.expected_posts
                    and id_sum == config.expected_id_sum
                )
                if code is not None:
                    closes.add(code)
        ingest += [
            float(update["sent_at"]) - float(post["received_at"])
            for update in group.updates
            for post in update["posts"]
        ]
    first = groups[0]
    result: dict[str, Any] = {
        "server": config.kind,
        "servers": len(groups),
        "clients": clients,
        "stalled_clients": 1 if config.stalled else 0,
        "client_procs": client_procs(config.procs, len(groups)),
        "updates_published": first.final_seq - first.first_seq + 1,
        "posts": config.expected_posts,
        "post_delay_ms": percentiles(post_delays),
        "fanout_delay_ms": percentiles(fanout_delays),
        "server_side_ms": percentiles(ingest),
        "delivered": {
            "updates_share_min": round(min(update_shares), 4) if update_shares else None,
            "updates_share_mean": round(sum(update_shares) / len(update_shares), 4)
            if update_shares
            else None,
            "posts_share_min": round(min(post_shares), 4) if post_shares else None,
            "clients_with_every_update_and_post_once": exact,
            "readers_closed_by_server": sorted(closes),
        },
        "timed_out": any(group.timed_out for group in groups),
    }
    if failed:
        result["connection_failures"] = failed[:5]
    if stalled is not None and stalled_group is not None:
        sent_at = {int(u["seq"]): float(u["sent_at"]) for u in stalled_group.updates}
        stop, last = int(stalled["stopped_reading_at_seq"]), int(stalled["last_seq_received"])
        if stop in sent_at and last in sent_at:
            # The last update the server sent it was made this long after it stopped reading.
            stalled["last_update_made_s_after_stop"] = round(sent_at[last] - sent_at[stop], 1)
        stalled["updates_of_run"] = stalled_group.final_seq - stalled_group.first_seq + 1
        stalled["cut_off"] = last < stalled_group.final_seq
        result["stalled_client"] = stalled
    return result


# -- the benchmark -------------------------------------------------------------------------------


def root_on_path() -> None:
    """The repository's root on `sys.path`, for `benchmarks.common` (run as a script, this
    folder is on it instead)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


@contextlib.contextmanager
def run_database(args: argparse.Namespace, workdir: Path, index: int) -> Iterator[str]:
    """A fresh database for one run: a SQLite file for one server, a PostgreSQL database (the
    one kind several processes can share) for more."""
    if args.servers == 1:
        yield f"sqlite:///{workdir / f'run-{index}.db'}"
        return
    root_on_path()
    from benchmarks.common import fresh_database

    with fresh_database("postgresql", workdir, f"fanout_{index}", args.postgres_url) as db:
        db.engine.dispose()  # the servers and `chat create` open their own
        yield db.url


def check_shared_services(args: argparse.Namespace) -> None:
    """With several servers: exit with a clear message unless PostgreSQL and Redis answer."""
    if args.servers == 1:
        return
    root_on_path()
    import redis

    from benchmarks.common import postgres_available

    problem = postgres_available(args.postgres_url)
    if problem:
        raise SystemExit(
            f"--servers {args.servers} needs PostgreSQL at {args.postgres_url}: {problem}"
        )
    try:
        redis.Redis.from_url(args.redis_url, socket_connect_timeout=5).ping()
    except (redis.RedisError, ValueError) as exc:
        raise SystemExit(
            f"--servers {args.servers} needs Redis at {args.redis_url}: {exc}"
        ) from None


def client_procs(wanted: int, servers: int) -> int:
    """The client processes for `servers` servers: at least `wanted`, as many for each."""
    return math.ceil(max(wanted, 1) / servers) * servers


def procs_for(clients: int, requested: int) -> int:
    if requested:
        return requested
    return max(1, min(4, math.ceil(clients / 400)))


async def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    counts = [int(c) for c in args.clients.split(",") if c.strip()]
    needed = max(counts) + 256
    if raise_nofile(needed) < needed:
        log(f"the open-file limit is below {needed}: connections may fail")
    timeline = benchmark_timeline(args.archive, args.posts)
    expected_posts = len(timeline.posts)
    expected_id_sum = sum(int(p.id) for p in timeline.posts)
    stall_at = args.stall_at or min(counts, key=lambda n: (abs(n - 1000), n))
    plan: list[tuple[int, bool]] = [(n, False) for n in counts]
    if args.stall:
        plan.append((stall_at, True))
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fanout-") as tmp:
        workdir = Path(tmp)
        for index, (clients, stalled) in enumerate(plan):
            messages = workdir / f"messages-{index}.jsonl"
            base = RunConfig(
                kind="tweetchat",
                clients=clients,
                stalled=stalled,
                stall_for=args.stall_for,
                procs=procs_for(clients, args.client_procs),
                deflate=args.deflate,
                expected_posts=expected_posts,
                expected_id_sum=expected_id_sum,
                patience=args.patience,
                timeout=args.timeout,
                messages=messages,
            )
            command = [
                sys.executable, str(Path(__file__).resolve()), "--serve",
                "--archive", str(args.archive), "--speed", str(args.speed),
                "--max-gap", str(args.max_gap), "--posts", str(args.posts),
            ]  # fmt: skip
            label = f"{clients} clients" + (" + 1 that stops reading" if stalled else "")
            log(f"tweetchat, {label}" + (f", {args.servers} servers" if args.servers > 1 else ""))
            with run_database(args, workdir, index) as database_url:
                create_chat(database_url, workdir)
                env = server_env(database_url)
                if args.servers > 1:
                    env["TWEETCHAT_REDIS_URL"] = args.redis_url
                servers: list[Server] = []
                try:
                    for _ in range(args.servers):
                        path = f"/ws/chats/{SLUG}"
                        servers.append(start_server(command, env, path, workdir))
                    runs.append(await run_once(base, servers))
                finally:
                    for server in servers:
                        server.stop()
            log_run(runs[-1])
            if args.baseline and args.servers == 1:
                log(f"baseline, {label}")
                command = [sys.executable, str(BASELINE), "--messages", str(messages)]
                server = start_server(command, server_env(), "/ws", workdir)
                try:
                    config = RunConfig(**{**base.__dict__, "kind": "baseline"})
                    runs.append(await run_once(config, [server]))
                finally:
                    server.stop()
                log_run(runs[-1])
    return {
        "benchmark": "fanout",
        "machine": machine(),
        "config": {
            "archive": str(
                args.archive.relative_to(ROOT)
                if args.archive.is_relative_to(ROOT)
                else args.archive
            ),
            "posts": expected_posts,
            "speed": args.speed,
            "stall_for_s": args.stall_for,
            "max_gap": args.max_gap,
            "clients_offer_deflate": args.deflate,
            "server_accepts_deflate": args.server_deflate,
            "update_interval_s": args.update_interval or default_update_interval(),
            "servers": args.servers,
            "database": "sqlite file" if args.servers == 1 else "postgresql, redis pub/sub",
            "server": "uvicorn as `tweetchat serve` runs it (uvloop, httptools, websockets "
            "sans-I/O), TWEETCHAT_* defaults but for the two above",
            "note": "clients and server share the machine's cores: client_cpu_s competes with "
            "server_cpu_s, and the delays include the clients' own scheduling; the baseline "
            "has no ingest, so its post delay is its fan-out delay",
        },
        "runs": runs,
        "targets": targets(runs),
    }


def log_run(run: dict[str, Any]) -> None:
    post, fan = run["post_delay_ms"], run["fanout_delay_ms"]
    log(
        f"  {server_label(run)} {run['clients']}: post p50/p99/max {post['p50']}/{post['p99']}/"
        f"{post['max']} ms, fan-out p99 {fan['p99']} ms, delivered min "
        f"{run['delivered']['updates_share_min']}, CPU {run['server_cpu_s']} s, "
        f"{run['memory_per_connection_kib']} KiB/conn"
        + (f", stalled {run['stalled_client']}" if "stalled_client" in run else "")
    )


def server_label(run: dict[str, Any]) -> str:
    servers = run["servers"]
    return str(run["server"]) + (f" on {servers} servers" if servers > 1 else "")


def targets(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each target, checked on tweetchat's runs (the baseline's are for comparison)."""
    checks: dict[str, Any] = {}
    for run in runs:
        if run["server"] != "tweetchat":
            continue
        clients = run["clients"]
        name = f"{clients}{'+stalled' if run['stalled_clients'] else ''}"
        if run["servers"] > 1:
            name += f" on {run['servers']} servers"
        limit = TARGET_P99_MS.get(clients)
        complete = run["delivered"]["clients_with_every_update_and_post_once"]
        check: dict[str, Any] = {
            "every_update_to_every_reader": complete == clients,
            "kib_per_connection_le_100": run["memory_per_connection_kib"]
            <= TARGET_KIB_PER_CONNECTION,
        }
        if limit is not None:
            check[f"post_p99_le_{limit:g}ms"] = (run["post_delay_ms"]["p99"] or 0) <= limit
            check[f"fanout_p99_le_{limit:g}ms"] = (run["fanout_delay_ms"]["p99"] or 0) <= limit
        if "stalled_client" in run:
            check["stalled_cut_off_with_1013"] = run["stalled_client"]["close_code"] == 1013
        checks[name] = check
    return checks


def summary_line(result: dict[str, Any]) -> str:
    parts = []
    for run in result["runs"]:
        post = run["post_delay_ms"]
        stalled = run.get("stalled_client")
        parts.append(
            f"{server_label(run)} {run['clients']}{'+1 stalled' if stalled else ''}: "
            f"p50/p99/max {post['p50']}/{post['p99']}/{post['max']} ms "
            f"(fan-out p99 {run['fanout_delay_ms']['p99']}), "
            f"delivered {run['delivered']['clients_with_every_update_and_post_once']}"
            f"/{run['clients']}, CPU {run['server_cpu_s']} s, "
            f"{run['memory_per_connection_kib']} KiB/conn"
            + (f", stalled closed {stalled['close_code']}" if stalled else "")
        )
    return "fanout: " + "; ".join(parts)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Fan-out benchmark: WebSocket clients following a replayed chat."
    )
    parser.add_argument("--clients", default="100,1000,5000", help="client counts, e.g. 100,1000")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20 clients, 12 posts")
    parser.add_argument(
        "--baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the naive FastAPI-docs broadcast",
    )
    parser.add_argument(
        "--stall",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add a run with one client that stops reading (default: yes, but not with --quick)",
    )
    parser.add_argument("--stall-at", type=int, default=0, help="readers in the stalled run")
    parser.add_argument(
        "--stall-for",
        type=float,
        default=35.0,
        help="how long the stalled client stops reading (under 40: uvicorn's keepalive)",
    )
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--posts", type=int, default=0, help="replay only this many posts")
    parser.add_argument("--speed", type=float, default=120.0, help="replay speed")
    parser.add_argument("--max-gap", type=float, default=0.5, help="longest replay wait, s")
    parser.add_argument("--client-procs", type=int, default=0, help="0: one per 400, up to 4")
    parser.add_argument(
        "--deflate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="clients offer per-message deflate, as browsers do",
    )
    parser.add_argument(
        "--server-deflate",
        action="store_true",
        help="the servers accept it (TWEETCHAT_WS_PER_MESSAGE_DEFLATE; off as shipped)",
    )
    parser.add_argument(
        "--update-interval",
        type=float,
        default=None,
        help="TWEETCHAT_UPDATE_INTERVAL for the tweetchat server (default: as shipped)",
    )
    parser.add_argument(
        "--servers",
        type=int,
        default=1,
        help="tweetchat server processes (the clients split evenly between them; more than one "
        "run on PostgreSQL with Redis, without the baseline)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TWEETCHAT_TEST_POSTGRES_URL")
        or "postgresql://postgres@127.0.0.1:5432/postgres",
        help="with --servers 2 or more: the server to create a fanout_* database on",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("TWEETCHAT_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0",
        help="with --servers 2 or more: the Redis the servers share",
    )
    parser.add_argument("--patience", type=float, default=120.0, help="how long readers may lag")
    parser.add_argument("--timeout", type=float, default=1200.0, help="longest replay, s")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.servers < 1:
        parser.error(f"--servers must be at least 1, not {args.servers}")
    if args.quick:
        args.clients = "20"
        args.posts = args.posts or 12
        args.speed = 600.0
        args.patience = 10.0
        args.stall_at = args.stall_at or 20
    if args.stall is None:
        args.stall = not args.quick
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.serve:
        serve_tweetchat(args.port, args.archive, args.speed, args.max_gap, args.posts)
        return
    if args.server_deflate:
        SERVER_SETTINGS["TWEETCHAT_WS_PER_MESSAGE_DEFLATE"] = "true"
    if args.update_interval is not None:
        SERVER_SETTINGS["TWEETCHAT_UPDATE_INTERVAL"] = str(args.update_interval)
    check_shared_services(args)
    use_uvloop()
    result = asyncio.run(benchmark(args))
    print(json.dumps(result), flush=True)
    print(summary_line(result), flush=True)


if __name__ == "__main__":
    main()
