"""The HTTP API over a real database: the same figures as the CLI, one error shape."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from app.config import Settings
from tests.conftest import FIXTURES
from tests.helpers import CliRunnerFn, LiveServer, make_cli_runner

QI = FIXTURES / "qi-chat.jsonl"


@pytest.fixture
def client(database_url: str, tmp_path, monkeypatch) -> Iterator[tuple[httpx.Client, CliRunnerFn]]:
    monkeypatch.chdir(tmp_path)
    cli = make_cli_runner(database_url)
    result = cli(
        "chat", "create", "qi", "--title", "QI", "--hashtags", "#LeadingQI,#QIHour",
        "--host", "WarwickBSchool", "--panel", "HelenBevan,DrNicolaBurgess,KPOteam_SASH,jimmy_parvin,Sutcliffe1987",
        "--start", "2023-03-28T18:00:00Z", "--end", "2023-03-28T19:00:00Z",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert cli("import", "qi", str(QI)).exit_code == 0
    with (
        LiveServer(Settings(database_url=database_url)) as server,
        httpx.Client(base_url=server.url) as http,
    ):
        yield http, cli


def test_stats_endpoint_equals_the_cli(client: tuple[httpx.Client, CliRunnerFn]) -> None:
    http, cli = client
    for window in ("chat", "all"):
        response = http.get(f"/api/chats/qi/stats?window={window}")
        assert response.status_code == 200
        assert response.json() == json.loads(
            cli("stats", "qi", "--window", window, "--json").output
        )


def test_errors_have_one_shape(client: tuple[httpx.Client, CliRunnerFn]) -> None:
    http, _ = client
    response = http.get("/api/chats/nope/stats")
    assert response.status_code == 404
    body = response.json()
    assert body["error"]["code"] == "unknown_chat"
    assert "Unknown chat 'nope'" in body["error"]["message"]
    bad = http.get("/api/chats/qi/stats?window=week")
    assert bad.status_code == 422


def test_posts_filters(client: tuple[httpx.Client, CliRunnerFn]) -> None:
    http, _ = client
    everything = http.get("/api/chats/qi/posts?limit=500").json()
    assert everything["total"] == 343
    times = [p["created_at"] for p in everything["posts"]]
    assert times == sorted(times, reverse=True)  # newest first
    q2 = http.get("/api/chats/qi/posts?question=2&kind=original&limit=500").json()
    assert q2["total"] > 0 and all(
        p["question"] == 2 and p["kind"] == "original" for p in q2["posts"]
    )
    helen = http.get("/api/chats/qi/posts?author=@helenbevan").json()
    assert helen["total"] > 0 and {p["username"] for p in helen["posts"]} == {"HelenBevan"}
    script = http.get("/api/chats/qi/posts", params={"q": "<script>"}).json()
    assert script["total"] == 1 and "<script>alert(1)</script>" in script["posts"][0]["text"]
    # LIKE wildcards in the search are taken literally.
    assert http.get("/api/chats/qi/posts", params={"q": "%"}).json()["total"] < everything["total"]


def test_unanswered_queue_matches_the_figure(client: tuple[httpx.Client, CliRunnerFn]) -> None:
    http, _ = client
    stats = http.get("/api/chats/qi/stats?window=all").json()
    queue = http.get("/api/chats/qi/unanswered?limit=500").json()
    assert queue["count"] == stats["unanswered"]
    panel = {
        "warwickbschool",
        "helenbevan",
        "drnicolaburgess",
        "kpoteam_sash",
        "jimmy_parvin",
        "sutcliffe1987",
    }
    assert all(p["username"].lower() not in panel for p in queue["posts"])
    assert all(p["question"] is not None and p["kind"] != "retweet" for p in queue["posts"])
    per_question = http.get("/api/chats/qi/unanswered?question=3&limit=500").json()
    assert 0 < per_question["count"] < queue["count"]
    assert all(p["question"] == 3 for p in per_question["posts"])


def test_chats_listing(client: tuple[httpx.Client, CliRunnerFn]) -> None:
    http, _ = client
    chats = http.get("/api/chats").json()
    assert [c["slug"] for c in chats] == ["qi"]
    chat = http.get("/api/chats/qi").json()
    assert chat["hashtags"] == ["#LeadingQI", "#QIHour"]
    assert [q["number"] for q in chat["questions"]] == [1, 2, 3, 4, 5, 6]  # found from host posts
    assert all(q["post_id"] for q in chat["questions"])


def test_validation_errors_have_the_same_shape(client: tuple[httpx.Client, CliRunnerFn]) -> None:
    http, _ = client
    response = http.get("/api/chats/qi/posts?limit=0")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input" and "limit" in error["message"]
