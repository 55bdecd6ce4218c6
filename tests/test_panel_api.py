"""The panel's API on the real server: credentials, claims, marks, manual tags, the screen's
modes and block lists, and that every action reaches the open pages through the WebSocket."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from app.config import Settings
from app.ingest.parse import parse_object
from app.sources.base import SourceBatch
from tests.conftest import FIXTURES
from tests.helpers import HubServer, make_cli_runner, recv_json
from tests.test_live import create_chat

ADMIN = "admin-token-for-tests-0123"
QI = FIXTURES / "qi-chat.jsonl"
A2_HELEN = "1640779118382354432"  # an answer to Q2 (prefix), top tweet of the chat
A3_CATH = "1640781366613966848"  # an unanswered answer to Q3 (@ward7_sister)


@pytest.fixture
def server(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[HubServer]:
    monkeypatch.chdir(tmp_path)
    cli = make_cli_runner(database_url)
    create_chat(cli, "qi")
    create_chat(cli, "other")
    assert cli("import", "qi", str(QI)).exit_code == 0
    with HubServer(Settings(database_url=database_url, admin_token=ADMIN)) as live:
        yield live


def token(http: httpx.Client, slug: str, name: str) -> str:
    response = http.post(
        f"/api/chats/{slug}/panel-tokens", json={"name": name}, headers=auth(ADMIN)
    )
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def auth(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def test_credentials(server: HubServer) -> None:
    with httpx.Client(base_url=server.url) as http:
        helen = token(http, "qi", "Helen")
        other = token(http, "other", "Olga")
        assert http.get("/api/chats/qi/me", headers=auth(helen)).json() == {
            "name": "Helen",
            "role": "panel",
        }
        assert http.get("/api/chats/qi/me", headers=auth(ADMIN)).json()["role"] == "admin"
        cases = [
            (None, 401, "needs a panel token"),
            ("nonsense", 401, "unknown or revoked"),
            (other, 403, "another chat"),
        ]
        for value, code, message in cases:
            headers = auth(value) if value else {}
            for method, path, body in [
                ("PUT", f"/api/chats/qi/posts/{A3_CATH}/hidden", {"hidden": True}),
                ("POST", f"/api/chats/qi/posts/{A3_CATH}/claim", None),
                ("PUT", "/api/chats/qi/screen", {"mode": "approval"}),
            ]:
                response = http.request(method, path, json=body, headers=headers)
                assert response.status_code == code, (value, path, response.text)
                assert message in response.json()["error"]["message"]
        # Nothing changed.
        stats = http.get("/api/chats/qi/stats").json()
        assert http.get("/api/chats/qi/screen").json()["mode"] == "immediate"
        queue = http.get("/api/chats/qi/unanswered?limit=500").json()
        assert A3_CATH in {p["id"] for p in queue["posts"]}
        assert stats["unanswered"] == 108
        # Only the admin creates tokens.
        denied = http.post("/api/chats/qi/panel-tokens", json={"name": "X"}, headers=auth(helen))
        assert denied.status_code == 401


async def next_update(ws: Any, key: str, timeout: float = 5, empty: bool = False) -> dict[str, Any]:
    """The next message that carries `key`, not empty (or empty, with `empty`)."""
    async with asyncio.timeout(timeout):
        while True:
            message = await recv_json(ws)
            if key in message and bool(message[key]) != empty:
                return dict(message)


def test_actions_reach_every_open_page(server: HubServer) -> None:
    public_url = server.url.replace("http://", "ws://") + "/ws/chats/qi"
    ws_url = f"{public_url}?token={ADMIN}"  # panel pages; the queue is for them only

    async def scenario() -> None:
        async with (
            websockets.connect(ws_url, max_size=2**24) as page1,
            websockets.connect(ws_url, max_size=2**24) as page2,
            httpx.AsyncClient(base_url=server.url) as http,
        ):
            first = await recv_json(page1)
            await recv_json(page2)
            assert A3_CATH in {p["id"] for p in first["queue"]}
            async with websockets.connect(public_url, max_size=2**24) as viewer:
                assert "queue" not in await recv_json(viewer)
            helen = (
                await http.post(
                    "/api/chats/qi/panel-tokens", json={"name": "Helen"}, headers=auth(ADMIN)
                )
            ).json()["token"]
            bryan = (
                await http.post(
                    "/api/chats/qi/panel-tokens", json={"name": "Bryan"}, headers=auth(ADMIN)
                )
            ).json()["token"]

            claimed = await http.post(f"/api/chats/qi/posts/{A3_CATH}/claim", headers=auth(helen))
            assert claimed.status_code == 200 and claimed.json()["claimed_by"] == "Helen"
            for page in (page1, page2):
                update = await next_update(page, "queue_upsert")
                assert {p["id"]: p["claimed_by"] for p in update["queue_upsert"]}[
                    A3_CATH
                ] == "Helen"
            taken = await http.post(f"/api/chats/qi/posts/{A3_CATH}/claim", headers=auth(bryan))
            assert (
                taken.status_code == 409 and "Helen has claimed" in taken.json()["error"]["message"]
            )
            assert (
                await http.delete(f"/api/chats/qi/posts/{A3_CATH}/claim", headers=auth(bryan))
            ).status_code == 403

            handled = await http.put(
                f"/api/chats/qi/posts/{A3_CATH}/handled",
                json={"handled": True},
                headers=auth(helen),
            )
            assert handled.status_code == 200
            update = await next_update(page2, "queue_remove")
            assert A3_CATH in update["queue_remove"]
            assert update["figures"]["unanswered"] == 107

            # A manual tag moves the answer, and the figures follow.
            before = {q["number"]: q["answers"] for q in update["figures"]["questions"]}
            tagged = await http.put(
                f"/api/chats/qi/posts/{A3_CATH}/question", json={"question": 5}, headers=auth(helen)
            )
            assert tagged.status_code == 200 and tagged.json()["question"] == 5
            update = await next_update(page1, "retagged")
            assert {"id": A3_CATH, "question": 5, "tag_method": "manual"} in update["retagged"]
            after = {q["number"]: q["answers"] for q in update["figures"]["questions"]}
            assert (after[3], after[5]) == (before[3] - 1, before[5] + 1)
            bad = await http.put(
                f"/api/chats/qi/posts/{A3_CATH}/question", json={"question": 9}, headers=auth(helen)
            )
            assert bad.status_code == 422 and "no question 9" in bad.json()["error"]["message"]
            cleared = await http.delete(
                f"/api/chats/qi/posts/{A3_CATH}/question", headers=auth(helen)
            )
            assert cleared.json()["question"] == 3

            pinned = await http.put(
                f"/api/chats/qi/posts/{A2_HELEN}/pinned", json={"pinned": True}, headers=auth(helen)
            )
            assert pinned.status_code == 200
            update = await next_update(page2, "pinned")
            assert [p["id"] for p in update["pinned"]] == [A2_HELEN]
            hidden = await http.put(
                f"/api/chats/qi/posts/{A2_HELEN}/hidden", json={"hidden": True}, headers=auth(helen)
            )
            assert hidden.status_code == 200
            update = await next_update(page1, "pinned", empty=True)
            assert update["pinned"] == []  # a hidden post leaves the screen, pins included
            assert A2_HELEN in update["hidden"]  # and the screen leaves it out of its top lists
            # Still counted: hiding is about the screen, not the figures.
            assert update["figures"]["top_tweets"][0]["id"] == A2_HELEN

            missing = await http.put(
                "/api/chats/qi/posts/123/hidden", json={"hidden": True}, headers=auth(helen)
            )
            assert missing.status_code == 404

    asyncio.run(scenario())


def test_screen_modes_and_block_lists(server: HubServer) -> None:
    users = [
        {"id": "901", "username": "newperson", "name": "New Person"},
        {"id": "902", "username": "troll123", "name": "T"},
    ]

    def post(n: int, text: str, author: str = "901") -> dict[str, Any]:
        return {
            "id": f"16407900000000000{n:02d}",
            "author_id": author,
            "created_at": f"2023-03-28T18:5{n % 10}:00.000Z",
            "text": text,
        }

    async def feed(*posts: dict[str, Any]) -> None:
        assert server.hub is not None
        runtime = await server.hub.runtime("qi")
        await runtime.emit(
            SourceBatch("replay", parse_object({"data": list(posts), "includes": {"users": users}}))
        )
        await runtime.drained()

    ws_url = server.url.replace("http://", "ws://") + "/ws/chats/qi"

    async def scenario() -> None:
        async with (
            websockets.connect(ws_url, max_size=2**24) as page,
            httpx.AsyncClient(base_url=server.url) as http,
        ):
            await recv_json(page)
            assert server.hub is not None and server.loop is not None
            loop = server.loop

            def run(coro: Any) -> asyncio.Future[Any]:
                return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

            settings = {"blocked_words": ["rubbish"], "blocked_accounts": ["@Troll123"]}
            response = await http.put("/api/chats/qi/screen", json=settings, headers=auth(ADMIN))
            assert response.json()["blocked_accounts"] == ["Troll123"]
            await run(
                feed(
                    post(1, "A6: we share our work"),
                    post(2, "A6: what RUBBISH."),
                    post(3, "A6: hello", "902"),
                )
            )
            update = await next_update(page, "wall_add")
            assert [p["id"] for p in update["wall_add"]] == [
                post(1, "")["id"]
            ]  # the others are blocked

            assert (
                await http.put(
                    "/api/chats/qi/screen", json={"mode": "approval"}, headers=auth(ADMIN)
                )
            ).status_code == 200
            await run(feed(post(4, "A6: held for approval")))
            await asyncio.sleep(0.6)
            approved = await http.put(
                f"/api/chats/qi/posts/{post(4, '')['id']}/approved",
                json={"approved": True},
                headers=auth(ADMIN),
            )
            assert approved.status_code == 200
            update = await next_update(page, "wall_add")
            assert [p["id"] for p in update["wall_add"]] == [post(4, "")["id"]]

            await http.put(
                "/api/chats/qi/screen",
                json={"mode": "delay", "delay_seconds": 5},
                headers=auth(ADMIN),
            )
            await run(
                feed(post(5, "A6: shown after a delay"), post(6, "A6: hidden before it shows"))
            )
            await http.put(
                f"/api/chats/qi/posts/{post(6, '')['id']}/hidden",
                json={"hidden": True},
                headers=auth(ADMIN),
            )
            update = await next_update(page, "wall_add", timeout=10)
            assert [p["id"] for p in update["wall_add"]] == [post(5, "")["id"]]

            bad = await http.put(
                "/api/chats/qi/screen", json={"mode": "random"}, headers=auth(ADMIN)
            )
            assert (
                bad.status_code == 422
                and "screen mode must be one of" in bad.json()["error"]["message"]
            )

    asyncio.run(scenario())


def test_a_private_screen_needs_a_token(server: HubServer) -> None:
    ws_url = server.url.replace("http://", "ws://") + "/ws/chats/qi"
    with httpx.Client(base_url=server.url) as http:
        helen = token(http, "qi", "Helen")
        assert (
            http.put(
                "/api/chats/qi/screen", json={"public": False}, headers=auth(helen)
            ).status_code
            == 200
        )

    async def scenario() -> tuple[int | None, str]:
        async with websockets.connect(ws_url) as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            refused = ws.close_code
        async with websockets.connect(f"{ws_url}?token={helen}", max_size=2**24) as ws:
            return refused, (await recv_json(ws))["type"]

    assert asyncio.run(scenario()) == (1008, "snapshot")


def test_panel_token_command(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cli = make_cli_runner(database_url)
    create_chat(cli, "qi")
    result = cli("panel-token", "qi", "--name", "Helen")
    assert result.exit_code == 0, result.output
    issued = result.output.strip().splitlines()[-1]
    with (
        HubServer(Settings(database_url=database_url)) as live,
        httpx.Client(base_url=live.url) as http,
    ):
        assert http.get("/api/chats/qi/me", headers=auth(issued)).json() == {
            "name": "Helen",
            "role": "panel",
        }
    assert cli("panel-token", "nope", "--name", "X").exit_code == 2
