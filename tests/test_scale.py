"""Two real server processes on one PostgreSQL database and one Redis: exactly one collects the
chat; a panel action on one reaches a browser of the other; killing the collector in the middle
of a replayed chat loses and doubles nothing, and the survivor's figures equal an import of the
same posts."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import FIXTURES
from tests.helpers import make_cli_runner, recv_json
from tests.test_live import create_chat

QI = FIXTURES / "qi-chat.jsonl"
A3_CATH = "1640781969442299904"  # an answer by @CareHomeCath (Q3), posted at 19:24 local
FIGURES = ("participants", "original_tweets", "retweets", "replies", "quotes", "unanswered")

pytestmark = pytest.mark.postgres


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`tweetchat replay` in its own process (as an operator would run it behind a balancer)."""

    def __init__(self, env: dict[str, str], log: Path, max_gap: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log.open("w")
        tweetchat = Path(sys.executable).parent / "tweetchat"
        self.process = subprocess.Popen(
            [str(tweetchat), "replay", "qi", str(QI), "--speed", "20", "--max-gap",
             str(max_gap), "--port", str(self.port)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def health(self) -> dict[str, Any] | None:
        try:
            reply = httpx.get(f"{self.url}/api/health", timeout=2)
        except httpx.HTTPError:
            return None
        return dict(reply.json()) if reply.status_code == 200 else None

    def wait_up(self, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"server exited: see {self.log.name}"
            health = self.health()
            if health is not None:
                return health
            time.sleep(0.1)
        raise AssertionError(f"server on {self.port} did not start: see {self.log.name}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def fixture_ids() -> set[str]:
    ids: set[str] = set()
    for line in QI.read_text(encoding="utf-8").splitlines():
        ids.update(tweet["id"] for tweet in json.loads(line).get("data", []))
    return ids


def test_two_processes_one_collector_and_a_takeover(
    pg_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cli = make_cli_runner(pg_url)
    create_chat(cli, "qi")
    token = cli("panel-token", "qi", "--name", "Helen").output.strip().splitlines()[-1]
    env = {
        **os.environ,
        "TWEETCHAT_DATABASE_URL": pg_url,
        "TWEETCHAT_REDIS_URL": redis_url,
        "PYTHONUNBUFFERED": "1",
    }
    # 343 posts, at most 0.1 s apart: about half a minute of replay. Both processes replay the
    # same archive, as two instances behind a balancer would; one of them takes the chat.
    servers = [Server(env, tmp_path / f"{name}.log", max_gap=0.1) for name in ("a", "b")]
    try:
        for server in servers:
            server.wait_up()
        deadline = time.monotonic() + 20
        while True:
            collecting = [(server.health() or {}).get("collecting") for server in servers]
            if sorted(map(str, collecting)) == ["['qi']", "[]"]:
                break  # one collector, the other waits
            assert time.monotonic() < deadline, f"no single collector: {collecting}"
            time.sleep(0.05)
        first, second = servers if collecting[0] == ["qi"] else servers[::-1]
        seen, last, hidden_seen = asyncio.run(
            watch_and_kill(first, second, token, expected=len(fixture_ids()))
        )
        # Every post once, though its collector died in the middle of the chat.
        assert len(seen) == len(set(seen)), "a post reached the browser twice"
        assert set(seen) == fixture_ids()
        assert hidden_seen, "a post hidden on the first process never left the second's screen"
        health = second.health()
        assert health is not None and health["collecting"] == ["qi"]
        # The survivor's figures equal an import of the same posts into a fresh database.
        importer = make_cli_runner(f"sqlite:///{tmp_path / 'import.db'}")
        create_chat(importer, "qi")
        assert importer("import", "qi", str(QI)).exit_code == 0
        for window, key in (("chat", "figures"), ("all", "figures_all")):
            imported = json.loads(importer("stats", "qi", "--window", window, "--json").output)
            served = httpx.get(f"{second.url}/api/chats/qi/stats?window={window}").json()
            for name in FIGURES:
                assert last[key][name] == imported[name], (window, name)
                assert served[name] == imported[name], (window, name)
            assert [q["answers"] for q in last[key]["questions"]] == [
                q["answers"] for q in imported["questions"]
            ]
    finally:
        for server in servers:
            server.stop()


async def watch_and_kill(
    first: Server, second: Server, token: str, expected: int
) -> tuple[list[str], dict[str, Any], bool]:
    """Follow the chat on the second process; hide a post through the first one; kill the first
    (the collector) once a third of the posts arrived; return the ids seen in order, the last
    message and whether the hidden post was announced."""
    ws_url = f"ws://127.0.0.1:{second.port}/ws/chats/qi"
    seen: list[str] = []
    last: dict[str, Any] = {}
    hidden_seen = False
    killed = False
    hid = False
    async with asyncio.timeout(120), websockets.connect(ws_url, max_size=2**24) as ws:
        snapshot = await recv_json(ws)
        assert snapshot["type"] == "snapshot"
        collected = snapshot["figures_all"]["original_tweets"] + snapshot["figures_all"]["retweets"]
        # The snapshot has the newest 50 posts (less those the next update brings).
        assert collected <= 50, "joined too late to see every post"
        seen.extend(post["id"] for post in snapshot["latest"])
        last = snapshot
        while True:
            message = await recv_json(ws)
            assert message["type"] == "update"
            seen.extend(post["id"] for post in message["posts"])
            last = message
            if A3_CATH in message.get("hidden", []):
                hidden_seen = True
            if A3_CATH in seen and not hid:
                hid = True
                async with httpx.AsyncClient() as client:
                    reply = await client.put(
                        f"{first.url}/api/chats/qi/posts/{A3_CATH}/hidden",
                        json={"hidden": True},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    assert reply.status_code == 200, reply.text
            if not killed and len(seen) >= expected // 3 and hidden_seen:
                first.process.kill()  # no goodbye: the lease goes with its connection
                first.process.wait()
                killed = True
            total = last["figures_all"]["original_tweets"] + last["figures_all"]["retweets"]
            if len(set(seen)) >= expected and total >= expected:
                break
    assert killed, "the collector was never killed"
    return seen, last, hidden_seen
