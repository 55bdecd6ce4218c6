"""A WebSocket client that stops reading is cut off with 1013 once one send has been pending
`ws_send_timeout` seconds, while a client that reads gets every update; one that pauses and reads
again in time gets every update, in order.

The client that stops reading connects as over a network (MSS 1448, a small receive buffer): on
loopback Linux would otherwise buffer megabytes for it before the server's sends block.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import websockets

from app.config import Settings
from tests.helpers import HubServer, make_cli_runner, recv_json

MESSAGES = 30


def _serve(sqlite_url: str, send_timeout: float) -> HubServer:
    result = make_cli_runner(sqlite_url)(
        "chat", "create", "cut", "--title", "Cut-off", "--hashtags", "#Cut", "--host", "Host",
        "--start", "2023-03-28T18:00:00Z", "--end", "2023-03-28T19:00:00Z",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    settings = Settings(database_url=sqlite_url, ws_queue_size=256, ws_send_timeout=send_timeout)
    return HubServer(settings)


@pytest.fixture
def server(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    monkeypatch.chdir(tmp_path)
    with _serve(sqlite_url, send_timeout=1.0) as live:
        yield live


@pytest.fixture
def patient(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[HubServer]:
    monkeypatch.chdir(tmp_path)
    with _serve(sqlite_url, send_timeout=30.0) as live:
        yield live


def _slow_socket(port: int) -> socket.socket:
    """A client socket as over a network (MSS 1448, a 4 KiB receive buffer)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1448)
    sock.connect(("127.0.0.1", port))
    return sock


def _publisher(server: HubServer) -> Callable[[int], None]:
    assert server.hub is not None
    hub = server.hub

    def publish(seq: int) -> None:
        # 100 kB of hex a message: a client that does not read fills its buffers within a few.
        message = {"type": "update", "seq": seq, "blob": secrets.token_hex(50_000)}
        hub.broadcast.publish("chat:cut", message)

    return publish


def test_a_client_that_stops_reading_is_cut_off_with_1013(server: HubServer) -> None:
    url = server.url.replace("http://", "ws://") + "/ws/chats/cut"
    assert server.loop is not None
    loop, publish = server.loop, _publisher(server)

    async def scenario() -> tuple[list[int], list[int], int | None]:
        sock = _slow_socket(server.port)
        async with (
            websockets.connect(
                url, sock=sock, compression=None, max_queue=1, max_size=None
            ) as stalled,
            websockets.connect(url, compression=None, max_size=None) as reader,
        ):
            assert (await recv_json(stalled))["type"] == "snapshot"
            assert (await recv_json(reader))["type"] == "snapshot"
            began = time.monotonic()
            # The stalled client reads nothing more from here on.
            for seq in range(1, MESSAGES + 1):
                loop.call_soon_threadsafe(publish, seq)
                await asyncio.sleep(0.1)
            got = [(await recv_json(reader))["seq"] for _ in range(MESSAGES)]
            assert time.monotonic() - began < 10  # the stalled client held nobody back
            await asyncio.sleep(2.0)  # past the send timeout
            stalled_got: list[int] = []
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    stalled_got.append((await recv_json(stalled))["seq"])
            return got, stalled_got, stalled.close_code

    got, stalled_got, code = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert got == list(range(1, MESSAGES + 1))
    assert code == 1013
    assert len(stalled_got) < MESSAGES  # it was cut off, not merely late


def test_a_client_that_pauses_gets_every_update_in_order_when_it_reads_again(
    patient: HubServer,
) -> None:
    url = patient.url.replace("http://", "ws://") + "/ws/chats/cut"
    assert patient.loop is not None and patient.hub is not None
    loop, publish, hub = patient.loop, _publisher(patient), patient.hub

    async def lagging() -> int:
        return hub.broadcast.lagging("chat:cut")

    async def scenario() -> tuple[list[int], list[int], int, int, int]:
        async with (
            websockets.connect(
                url, sock=_slow_socket(patient.port), compression=None, max_queue=1,
                max_size=None,
            ) as paused,
            websockets.connect(url, compression=None, max_size=None) as reader,
        ):  # fmt: skip
            assert (await recv_json(paused))["type"] == "snapshot"
            assert (await recv_json(reader))["type"] == "snapshot"
            for seq in range(1, MESSAGES + 1):  # the paused client reads nothing meanwhile
                loop.call_soon_threadsafe(publish, seq)
                await asyncio.sleep(0.02)
            got = [(await recv_json(reader))["seq"] for _ in range(MESSAGES)]
            # The server's sends to the paused client are waiting, not dropped.
            waiting = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(lagging(), loop))
            paused_got = [(await recv_json(paused))["seq"] for _ in range(MESSAGES)]
            # Caught up: one more update goes to both, and nobody waits any more.
            loop.call_soon_threadsafe(publish, MESSAGES + 1)
            paused_got.append((await recv_json(paused))["seq"])
            got.append((await recv_json(reader))["seq"])
            caught_up = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(lagging(), loop))
            return got, paused_got, waiting, caught_up, paused.close_code or 0

    got, paused_got, waiting, caught_up, code = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert got == list(range(1, MESSAGES + 2))
    assert waiting == 1  # the paused one: its sends had to wait
    assert paused_got == list(range(1, MESSAGES + 2))  # every update once, in order
    assert caught_up == 0
    assert code == 0  # never cut off
