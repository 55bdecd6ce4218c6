"""Exports: CSV with PRODUCT.md's columns, an XLSX that pandas opens with the same figures, JSON."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import httpx
import pandas as pd

from app.config import Settings
from tests.conftest import FIXTURES
from tests.helpers import CliRunnerFn, LiveServer
from tests.test_live import create_chat

QI = FIXTURES / "qi-chat.jsonl"
REQUIRED = [
    "id",
    "created_at",
    "username",
    "kind",
    "question",
    "tag_method",
    "in_reply_to_id",
    "retweets",
    "likes",
    "text",
]


def prepare(cli: CliRunnerFn) -> dict:
    create_chat(cli, "qi")
    assert cli("import", "qi", str(QI)).exit_code == 0
    return {
        w: json.loads(cli("stats", "qi", "--window", w, "--json").output) for w in ("chat", "all")
    }


def test_xlsx_holds_the_same_figures(cli: CliRunnerFn, tmp_path: Path) -> None:
    figures = prepare(cli)
    result = cli("export", "qi", "--format", "xlsx", "--output", str(tmp_path / "qi.xlsx"))
    assert result.exit_code == 0, result.output
    assert "Wrote 343 post(s)" in result.output
    book = pd.read_excel(tmp_path / "qi.xlsx", sheet_name=None)
    assert list(book) == ["Figures", "Posts", "Q1", "Q2", "Q3", "Q4", "Q5", "Q6", "Polls"]
    headline = book["Figures"].head(6).set_index("figure")
    for key in ("participants", "original_tweets", "retweets", "replies", "quotes", "unanswered"):
        assert headline.loc[key, "chat window"] == figures["chat"][key]
        assert headline.loc[key, "all collected"] == figures["all"][key]
    assert len(book["Posts"]) == 343
    assert list(book["Posts"].columns[: len(REQUIRED)]) == REQUIRED
    for question in figures["all"]["questions"]:
        sheet = book[f"Q{question['number']}"]
        # Every non-retweet tagged with the question; the host's own question post is not an answer.
        hosts = sheet["username"].str.lower() == "warwickbschool"
        assert (~hosts).sum() == question["answers"]
    polls = book["Polls"]
    assert polls["votes"].tolist() == [o["votes"] for o in figures["all"]["polls"][0]["options"]]


def test_export_endpoints(sqlite_url: str, tmp_path: Path, monkeypatch) -> None:
    from tests.helpers import make_cli_runner

    monkeypatch.chdir(tmp_path)
    prepare(make_cli_runner(sqlite_url))
    with (
        LiveServer(Settings(database_url=sqlite_url)) as server,
        httpx.Client(base_url=server.url) as http,
    ):
        response = http.get("/api/chats/qi/export.csv")
        assert response.status_code == 200
        assert response.headers["content-disposition"] == 'attachment; filename="qi.csv"'
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert len(rows) == 343 and list(rows[0])[: len(REQUIRED)] == REQUIRED
        assert any("<script>alert(1)</script>" in row["text"] for row in rows)  # text, as written
        book = pd.read_excel(
            io.BytesIO(http.get("/api/chats/qi/export.xlsx").content), sheet_name="Posts"
        )
        assert len(book) == 343
        document = http.get("/api/chats/qi/export.json").json()
        assert len(document["posts"]) == 343 and document["stats"]["chat"] == "qi"
        missing = http.get("/api/chats/qi/export.pdf")
        assert (
            missing.status_code == 404
            and "there are csv, xlsx, json" in missing.json()["error"]["message"]
        )
        assert http.get("/api/chats/nope/export.csv").status_code == 404
