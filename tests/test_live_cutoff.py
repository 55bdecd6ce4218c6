"""A WebSocket client that stops reading is cut off with 1013 once one send has been pending
`ws_send_timeout` seconds, while a client that reads gets every update.

The client that stops reading connects as over a network (MSS 1448, a small receive buffer): on
loopback Linux would otherwise buffer megabytes for it before the server's sends block.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from app.config import Settings
from tests.helpers import HubServer, make_cli_runner, recv_json

MESSAGES = 30


@pytest.fixture
def server(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    monkeypatch.chdir(tmp_path)
    result = make_cli_runner(sqlite_url)(
        "chat", "create", "cut", "--title", "Cut-off", "--hashtags", "#Cut", "--host", "Host",
        "--start", "2023-03-28T18:00:00Z", "--end", "2023-03-28T19:00:00Z",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    settings = Settings(database_url=sqlite_url, ws_queue_size=256, ws_send_timeout=1.0)
    with HubServer(settings) as live:
        yield live


def test_a_client_that_stops_reading_is_cut_off_with_1013(server: HubServer) -> None:
    url = server.url.replace("http://", "ws://") + "/ws/chats/cut"
    assert server.hub is not None and server.loop is not None
    hub, loop = server.hub, server.loop

    def publish(seq: int) -> None:
        # 100 kB of hex a message: the stalled client's buffers fill within a few messages.
        message = {"type": "update", "seq": seq, "blob": secrets.token_hex(50_000)}
        hub.broadcast.publish("chat:cut", message)

    async def scenario() -> tuple[list[int], list[int], int | None]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1448)
        sock.connect(("127.0.0.1", server.port))
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
