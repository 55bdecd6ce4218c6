"""The chat report and the series report: the hand-made chat's figures worked out by hand, every
section, nothing loaded from elsewhere, untrusted text as text, empty chats, the series' month
over month, and the report's pages and downloads."""

from __future__ import annotations

import csv
import json
import os
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from bs4 import BeautifulSoup, Tag
from sqlalchemy import select

from app.config import Settings
from app.db.engine import open_database
from app.db.models import Chat, SourceOutage, SourceState, TrendSnapshot
from app.report.words import rank_words
from tests.conftest import FIXTURES
from tests.helpers import CliRunnerFn, LiveServer
from tests.test_handmade_chat import SLUG, _create_and_import

QI = FIXTURES / "qi-chat.jsonl"
SECTIONS = [
    "summary",
    "headline",
    "trending",
    "activity",
    "popular",
    "top-tweets",
    "polls",
    "contributors",
    "returning",
    "collection",
]
HELEN, LEEDS = "101410146", "793088093"  # @HelenBevan, @LeedsQIcoach in qi-chat.jsonl


def report(cli: CliRunnerFn, slug: str = SLUG) -> BeautifulSoup:
    out = Path(f"{slug}-report.html")  # the working directory is the test's tmp_path
    result = cli("export", slug, "--format", "html", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert "Wrote the report of" in result.output
    return BeautifulSoup(out.read_text(encoding="utf-8"), "html.parser")


def text_of(node: Tag | None) -> str:
    assert node is not None
    return " ".join(node.get_text(" ").split())


def table(soup: BeautifulSoup, table_id: str) -> list[list[str]]:
    found = soup.find(id=table_id)
    assert isinstance(found, Tag), f"no table #{table_id}"
    return [
        [" ".join(cell.get_text(" ").split()) for cell in row.find_all(["td", "th"])]
        for row in found.find_all("tr")
    ]


def assert_self_contained(soup: BeautifulSoup) -> None:
    """Nothing the page would load comes from elsewhere: no script, stylesheet link, frame or
    remote image; every image is a data: URI; the CSP allows nothing else."""
    assert soup.find("script") is None
    assert soup.find("link") is None
    assert soup.find(["iframe", "object", "embed", "video", "audio", "source"]) is None
    for img in soup.find_all("img"):
        assert str(img["src"]).startswith("data:image/"), img["src"][:60]
    styles = " ".join(style.get_text() for style in soup.find_all("style"))
    assert "url(" not in styles and "@import" not in styles
    for node in soup.find_all(style=True):
        assert "url(" not in str(node["style"])
    csp = soup.find("meta", attrs={"http-equiv": "Content-Security-Policy"})
    assert isinstance(csp, Tag) and "default-src 'none'" in str(csp["content"])
    # Links to the posts on X are for the reader to follow; they load nothing.
    for link in soup.find_all("a", href=True):
        href = str(link["href"])
        assert href.startswith("#") or href.startswith("https://x.com/"), href


def test_the_report_of_the_handmade_chat(cli: CliRunnerFn) -> None:
    _create_and_import(cli, QI)
    soup = report(cli)
    assert_self_contained(soup)
    for section in SECTIONS + [f"q{n}" for n in range(1, 7)]:
        assert soup.find(id=section) is not None, f"no section #{section}"
    assert text_of(soup.find("h1")) == "Leaders show the way and light the path for others"
    assert "Tuesday 28 March 2023, 19:00–20:00 BST" in text_of(soup.find(id="cover"))

    # Headline figures, both windows (tests/test_handmade_chat.py works them out by hand).
    # Impressions: the sum of the original tweets' view counts in the fixture (checked below).
    rows = {row[0]: row[1:] for row in table(soup, "headline")[1:]}
    assert rows["Participants"] == ["58", "60"]
    assert rows["Original tweets"] == ["167", "181"]
    assert rows["Retweets"] == ["153", "162"]
    assert rows["Replies"] == ["27", "32"]
    assert rows["Quotes"] == ["5", "6"]
    assert rows["Answers to the questions"] == ["141", "146"]  # 18+34+27+22+21+19; +1 Q2, +4 Q6
    assert rows["Answers left unanswered"] == ["108", "112"]
    hour_views, all_views = views_in_fixture()
    assert rows["Impressions (views)"] == [f"{hour_views:,}", f"{all_views:,}"]
    summary = text_of(soup.find(id="summary"))
    assert "It had 58 participants , who posted 167 original tweets and 153 retweets" in summary
    assert "Trends were not read for this chat" in text_of(soup.find(id="summary"))

    # Activity: the peak minute of the chat, counted straight from the archive.
    minute, total, originals = peak_minute_in_fixture()
    assert (minute, total, originals) == ("19:18", 10, 6)
    activity = text_of(soup.find(id="activity"))
    assert "The peak was at 19:18 : 10 posts in the minute (6 original, 4 retweets), during Q2" in (
        activity
    )
    assert "The busiest hour began Tue 28 Mar 19:00, with 320 posts" in activity  # 167 + 153
    assert len(soup.select("#activity img[src^='data:image/svg+xml']")) == 2

    # The most popular tweet and the top tweets.
    popular = text_of(soup.find(id="popular"))
    assert (
        "by @HelenBevan , was retweeted 179 times and liked 595 times, with 119,342 views"
        in popular
    )
    assert "It answered Q2: Why is it important that leaders lead from the front" in popular
    top = table(soup, "top-tweets")[1:]
    assert [row[0] for row in top] == [str(n) for n in range(1, 11)]
    assert [row[2:4] for row in top[:3]] == [["179", "595"], ["48", "60"], ["36", "88"]]
    assert top[0][1].startswith("@HelenBevan X Q2 Q2: One of the classic models")  # X: network

    # The poll: 9 + 7 + 25 = 41 votes.
    polls = soup.find(id="polls")
    assert isinstance(polls, Tag)
    assert "41 votes (final)" in text_of(polls)
    options = [row[:3] for row in table_rows(polls)]
    assert options == [
        ["Yes, my first!", "9", "22.0%"],
        ["My second", "7", "17.1%"],
        ["3 or more", "25", "61.0%"],
    ]

    # Each question: text, answers and people in the hour, unanswered, top answers, threads, words.
    q2 = soup.find(id="q2")
    assert isinstance(q2, Tag)
    q2_text = text_of(q2)
    assert text_of(q2.find("h2")).startswith("Q2. Why is it important that leaders lead")
    assert "34 answers in the hour 31 people answered 35 answers in all" in q2_text
    q1 = text_of(soup.find(id="q1"))
    assert "18 answers in the hour 18 people answered" in q1
    assert "answers in all" not in q1  # the same in both windows: said once
    # Top answers: a2_helen 179, a2_jimmy 36, a2_nicola 27 retweets.
    top_q2 = [text_of(p.find(class_="who")) for p in q2.select("h4 + .post, h4 + .post ~ .post")][
        :3
    ]
    assert [who.split(" @")[1].split(" ")[0] for who in top_q2] == [
        "HelenBevan",
        "jimmy_parvin",
        "DrNicolaBurgess",
    ]
    assert q2.select_one("img[src^='data:image/png']") is not None  # the word cloud
    assert "leaders (21)" in q2_text  # 21 of Q2's answers use "leaders"
    assert "role models (3 answers)" in q2_text
    assert "leadingqi (" not in q2_text.lower() and "qihour (" not in q2_text.lower()
    threads = q2.select(".thread")
    assert threads, "Q2 has conversations with the panel"
    first = [text_of(p.find(class_="who")) for p in threads[0].select(".post")]
    assert "panel" in " ".join(first[1:])  # threads with the panel come first
    # Q3's unanswered answers: computed by the reference SQL; the figure is on the page.
    for n in range(1, 7):
        assert re.search(r"\b\d+ unanswered\b", text_of(soup.find(id=f"q{n}")))

    contributors = table(soup, "contributors-table")
    assert contributors[1][0].startswith("@WarwickBSchool X host")
    assert contributors[1][1] == "11"  # the host's 11 original tweets in the hour

    returning = text_of(soup.find(id="returning").parent)  # type: ignore[union-attr]
    assert "first chat of the series “leadingqi-2023” here: its 58 participants" in returning
    collection = text_of(soup.find(id="collection"))
    assert "343 posts were collected" in collection
    assert "All were posted on X." in collection  # one network: no table of networks
    assert soup.find(id="networks") is None
    assert "No source interruption was recorded" in collection
    assert "162 retweets were collected as posts" in collection
    assert "posted while the question was current" in collection


def table_rows(node: Tag) -> list[list[str]]:
    return [
        [" ".join(td.get_text(" ").split()) for td in row.find_all("td")]
        for row in node.select("tbody tr")
    ]


def _fixture_posts() -> dict[str, dict[str, Any]]:
    posts: dict[str, dict[str, Any]] = {}
    for line in QI.read_text(encoding="utf-8").splitlines():
        for tweet in json.loads(line).get("data", []):
            posts[tweet["id"]] = tweet
    return posts


def _in_hour(tweet: dict[str, Any]) -> bool:
    return "2023-03-28T18:00:00" <= tweet["created_at"] < "2023-03-28T19:00:00"


def _is_retweet(tweet: dict[str, Any]) -> bool:
    refs = tweet.get("referenced_tweets") or []
    return any(ref["type"] == "retweeted" for ref in refs)


def peak_minute_in_fixture() -> tuple[str, int, int]:
    """(local minute, posts, originals) of the busiest minute of the hour, from the raw archive."""
    minutes: Counter[str] = Counter()
    originals: Counter[str] = Counter()
    for tweet in _fixture_posts().values():
        if _in_hour(tweet):
            minute = tweet["created_at"][11:16]
            minutes[minute] += 1
            originals[minute] += not _is_retweet(tweet)
    minute, total = max(minutes.items(), key=lambda item: (item[1], -int(item[0].replace(":", ""))))
    local = f"{int(minute[:2]) + 1:02d}{minute[2:]}"  # BST = UTC+1
    return local, total, originals[minute]


def views_in_fixture() -> tuple[int, int]:
    hour = total = 0
    for tweet in _fixture_posts().values():
        views = (tweet.get("public_metrics") or {}).get("impression_count")
        if _is_retweet(tweet) or views is None:
            continue
        total += views
        hour += views if _in_hour(tweet) else 0
    return hour, total


def test_hostile_text_lands_as_text(cli: CliRunnerFn, tmp_path: Path) -> None:
    _create_and_import(cli, QI)
    evil = {
        "data": [
            {
                "id": "1640790000000000001",
                "author_id": "666",
                "created_at": "2023-03-28T18:30:00.000Z",
                "text": "A4 <script>alert(1)</script> <img src=x onerror=alert(2)> #LeadingQI",
                "public_metrics": {"retweet_count": 500, "like_count": 1},  # the most popular
            }
        ],
        "includes": {
            "users": [{"id": "666", "username": "evil", "name": "<b onmouseover=alert(3)>Eve"}]
        },
    }
    path = tmp_path / "evil.json"
    path.write_text(json.dumps(evil), encoding="utf-8")
    assert cli("import", SLUG, str(path)).exit_code == 0
    soup = report(cli)
    assert_self_contained(soup)
    raw = (Path(f"{SLUG}-report.html")).read_text(encoding="utf-8")
    assert "<script>" not in raw and "<img src=x" not in raw and "<b onmouseover" not in raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in raw
    # The text shows as it was written: the most popular tweet, and Q4's top answer.
    for where in ("popular", "q4"):
        shown = text_of(soup.find(id=where))
        assert "<script>alert(1)</script> <img src=x onerror=alert(2)>" in shown
        assert "<b onmouseover=alert(3)>Eve @evil" in shown


def test_a_chat_with_no_posts_and_no_questions(cli: CliRunnerFn) -> None:
    result = cli(
        "chat", "create", "empty", "--title", "Nothing yet", "--hashtags", "#Quiet", "--host", "QuietHost",
        "--start", "2024-01-09T20:00:00Z", "--end", "2024-01-09T21:00:00Z",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    soup = report(cli, "empty")
    assert_self_contained(soup)
    for section in SECTIONS:
        if section not in ("top-tweets",):
            assert soup.find(id=section) is not None, f"no section #{section}"
    summary = text_of(soup.find(id="summary"))
    assert "No posts were collected for this chat" in summary
    assert "tweetchat import empty FILE" in summary
    assert {row[0]: row[1:] for row in table(soup, "headline")[1:]}["Participants"] == ["0", "0"]
    assert "No posts were collected during the chat hour" in text_of(soup.find(id="activity"))
    assert "No original tweet was collected" in text_of(soup.find(id="popular"))
    assert "No poll was collected" in text_of(soup.find(id="polls"))
    assert "This chat has no questions" in text_of(soup.find(id="questions"))
    assert "Nobody posted during the chat hour" in text_of(soup.find(id="contributors"))
    assert "not part of a series" in text_of(soup.find(id="contributors"))
    assert "0 posts were collected" in text_of(soup.find(id="collection"))


def test_questions_without_answers_and_no_polls(cli: CliRunnerFn) -> None:
    result = cli(
        "chat", "create", "planned", "--title", "Planned", "--hashtags", "#Plan", "--host", "PlanHost",
        "--start", "2024-01-09T20:00:00Z", "--end", "2024-01-09T21:00:00Z",
        "--question", "20:05 What brought you here?", "--question", "20:20 What next?",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    soup = report(cli, "planned")
    for n in (1, 2):
        text = text_of(soup.find(id=f"q{n}"))
        assert "No answers to this question were collected" in text
        assert "the host's question post was not collected" in text
    assert "What brought you here?" in text_of(soup.find(id="q1"))
    assert "No poll was collected" in text_of(soup.find(id="polls"))


def test_trends_outages_and_sources_are_reported(cli: CliRunnerFn, database_url: str) -> None:
    _create_and_import(cli, QI)
    engine, sessions = open_database(database_url)
    with sessions.begin() as session:
        chat = session.scalar(select(Chat).where(Chat.slug == SLUG))
        assert chat is not None
        chat.source = "x-stream"
        names = ["#AncestryHour", "Corbyn", "Zelda", "Finance", "#Budget", "#QIHour", "#LeadingQI"]
        trends: list[dict[str, Any]] = [
            {"name": name, "tweet_count": None} for name in ["#One", "#Two", *names]
        ]
        trends[5]["tweet_count"] = 183000
        at = datetime(2023, 3, 28, 18, 30, tzinfo=UTC)
        session.add(
            TrendSnapshot(
                chat_id=chat.id, taken_at=at, woeid=23424975, location="United Kingdom",
                available=True, trends=trends,
            )
        )  # fmt: skip
        session.add(
            SourceState(
                chat_id=chat.id, source="x-stream", position={}, state="running", detail="",
                posts_read=512, requests=9, updated_at=at,
            )
        )  # fmt: skip
        session.add(
            SourceOutage(
                chat_id=chat.id, source="x-stream", state="failing", detail="X answered 503",
                started_at=datetime(2023, 3, 28, 18, 41, tzinfo=UTC),
                ended_at=datetime(2023, 3, 28, 18, 43, 30, tzinfo=UTC),
            )
        )  # fmt: skip
    engine.dispose()
    soup = report(cli)
    trending = text_of(soup.find(id="summary"))
    assert "#LeadingQI was trending at rank 9 and #QIHour was trending at rank 8" in trending
    assert "in United Kingdom (reading of Tue 28 Mar 19:30" in trending
    ranks = [row for row in table_rows(soup.select_one("table.trends"))]  # type: ignore[arg-type]
    # Ranks 3 (8 - 5) to 11 (9 + 2): the trends around ours, as the seed shows them.
    assert [row[0] for row in ranks] == ["3", "4", "5", "6", "7", "8", "9"]
    assert ranks[3] == ["6", "Finance", "183,000"]
    ours = [text_of(row) for row in soup.select("table.trends tr.ours")]
    assert ours == ["8 #QIHour", "9 #LeadingQI"]
    collection = text_of(soup.find(id="collection"))
    assert "collected live from X's filtered stream" in collection
    assert (
        "x-stream failing from Tue 28 Mar 19:41 to 19:43 (2 min 30 s): X answered 503" in collection
    )
    assert "x-stream running 9 512" in collection


def make_page(tweets: list[tuple[str, str, str, str]], users: dict[str, str]) -> dict[str, Any]:
    """An X API v2 page: tweets as (id, author id, UTC time, text)."""
    return {
        "data": [
            {"id": i, "author_id": a, "created_at": t, "text": x, "public_metrics": {}}
            for i, a, t, x in tweets
        ],
        "includes": {"users": [{"id": k, "username": v, "name": v} for k, v in users.items()]},
    }


def second_chat(cli: CliRunnerFn, tmp_path: Path) -> None:
    """April's chat of the series: @HelenBevan and @LeedsQIcoach again, two newcomers, and one
    person who posts only the day before (in the collection, not the hour)."""
    result = cli(
        "chat", "create", "qi-april", "--title", "Relationships first", "--hashtags",
        "#LeadingQI,#QIHour", "--host", "WarwickBSchool", "--series", "leadingqi-2023",
        "--start", "2023-04-25T18:00:00Z", "--end", "2023-04-25T19:00:00Z",
        "--timezone", "Europe/London", "--question", "19:05 Who do you learn from?",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    users = {HELEN: "HelenBevan", LEEDS: "LeedsQIcoach", "9001": "NewNurse", "9002": "NewGP"}
    users["9003"] = "DayBefore"
    page = make_page(
        [
            ("1650000000000000001", HELEN, "2023-04-25T18:06:00.000Z", "A1 my team #LeadingQI"),
            ("1650000000000000002", LEEDS, "2023-04-25T18:07:00.000Z", "A1 peers #LeadingQI"),
            ("1650000000000000003", "9001", "2023-04-25T18:08:00.000Z", "A1 mentors #QIHour"),
            ("1650000000000000004", "9002", "2023-04-25T18:09:00.000Z", "A1 patients #QIHour"),
            ("1650000000000000005", "9001", "2023-04-25T18:10:00.000Z", "Q1 also books #QIHour"),
            ("1650000000000000006", "9003", "2023-04-24T09:00:00.000Z", "Tomorrow! #LeadingQI"),
        ],
        users,
    )
    path = tmp_path / "april.json"
    path.write_text(json.dumps(page), encoding="utf-8")
    result = cli("import", "qi-april", str(path))
    assert result.exit_code == 0, result.output


def test_first_time_and_returning_and_the_series_report(cli: CliRunnerFn, tmp_path: Path) -> None:
    _create_and_import(cli, QI)
    second_chat(cli, tmp_path)

    # April's chat report: 4 people in the hour, 2 of them in March's chat.
    soup = report(cli, "qi-april")
    returning = text_of(soup.find(id="returning").parent)  # type: ignore[union-attr]
    assert (
        "Of the 4 participants in the chat hour, 2 (50%) had taken part in an earlier chat of the "
        "series and 2 (50%) were taking part for the first time" in returning
    )
    assert "Earlier chats: Leaders show the way and light the path for others" in returning

    result = cli("series", "report", "leadingqi-2023", "--output", "series.html")
    assert result.exit_code == 0, result.output
    assert "Wrote the report of 2 chat(s) of leadingqi-2023 to series.html" in result.output
    series = BeautifulSoup(Path("series.html").read_text(encoding="utf-8"), "html.parser")
    assert_self_contained(series)
    rows = table(series, "series-table")
    assert rows[1] == [
        "Mar 2023 Leaders show the way and light the path for others", "58", "60", "167", "153",
        "58", "–",
    ]  # fmt: skip
    # April: 4 in the hour, 5 in the collection (DayBefore); 5 originals, no retweets; NewNurse,
    # NewGP first-time; HelenBevan, LeedsQIcoach returning.
    assert rows[2] == ["Apr 2023 Relationships first", "4", "5", "5", "0", "2", "2"]
    answers = table(series, "answers-table")
    assert answers[0] == ["Chat", "Q1", "Q2", "Q3", "Q4", "Q5", "Q6", "All"]
    assert answers[1] == ["Mar 2023", "18", "34", "27", "22", "21", "19", "141"]
    assert answers[2] == ["Apr 2023", "5", "0", "0", "0", "0", "0", "5"]
    assert len(series.select("img[src^='data:image/svg+xml']")) == 3
    summary = text_of(series.find(id="summary"))
    assert "Participants in the chat hour ranged from 4 to 58" in summary

    result = cli("series", "report", "leadingqi-2023", "--format", "csv", "--output", "s.csv")
    assert result.exit_code == 0, result.output
    with Path("s.csv").open(encoding="utf-8", newline="") as handle:
        table_rows_csv = list(csv.DictReader(handle))
    assert [r["chat"] for r in table_rows_csv] == [SLUG, "qi-april"]
    assert table_rows_csv[1]["date"] == "2023-04-25"
    assert (table_rows_csv[1]["first_time"], table_rows_csv[1]["returning"]) == ("2", "2")
    assert table_rows_csv[0]["answers_q2"] == "34"


def test_series_errors(cli: CliRunnerFn) -> None:
    result = cli("series", "report", "nope", "--output", "x.html")
    assert result.exit_code == 2
    assert "no series 'nope' (series: none yet)" in result.output
    _create_and_import(cli, QI)
    result = cli("series", "report", "leadingqi-2023", "--format", "pdf", "--output", "x.pdf")
    assert result.exit_code == 2
    assert "unknown series export format 'pdf'; choose one of html, csv, json" in result.output
    result = cli("export", SLUG, "--format", "html", "--output", "missing/r.html")
    assert result.exit_code == 2
    assert "the folder missing does not exist" in result.output
    assert not Path("missing").exists()


def test_rank_words() -> None:
    texts = [
        "A2 Leaders role-model behaviours: role models matter! #LeadingQI #QIHour",
        "@HelenBevan Q2: role models and #curiosity https://t.co/abc #LeadingQI",
        "Leaders leaders LEADERS lead the 5th way #QIhour",
        "We think the team's trust matters",
    ]
    words, phrases = rank_words(texts, ["#LeadingQI", "#QIHour"])
    counts = {w.text: w.answers for w in words}
    assert counts["leaders"] == 2  # once per answer, however often it is repeated
    assert counts["models"] == 2 and counts["role"] == 2 and counts["model"] == 1
    assert counts["curiosity"] == 1  # another hashtag keeps its word
    assert counts["team"] == 1  # the possessive 's goes
    for gone in ("leadingqi", "qihour", "helenbevan", "https", "abc", "a2", "q2", "th", "the"):
        assert gone not in counts, gone
    assert [(p.text, p.answers) for p in phrases] == [("role models", 2)]  # a phrase used once: no
    # The most used first, ties in alphabetical order.
    assert [w.text for w in words[:4]] == ["leaders", "models", "role", "behaviours"]


def test_report_pages_and_downloads(sqlite_url: str, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    from tests.helpers import make_cli_runner

    cli = make_cli_runner(sqlite_url)
    _create_and_import(cli, QI)
    second_chat(cli, tmp_path)
    with LiveServer(Settings(database_url=sqlite_url)) as server:
        page = httpx.get(f"{server.url}/chats/{SLUG}/report", timeout=60)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        soup = BeautifulSoup(page.text, "html.parser")
        assert_self_contained(soup)
        assert table(soup, "headline")[1] == ["Participants", "58", "60"]

        download = httpx.get(f"{server.url}/api/chats/{SLUG}/export.html", timeout=60)
        assert download.status_code == 200
        assert 'filename="qi-test.html"' in download.headers["content-disposition"]
        assert "Tweetchat report" in download.text

        series = httpx.get(f"{server.url}/series/leadingqi-2023/report", timeout=60)
        assert series.status_code == 200 and "Monthly activity summary" in series.text
        figures = httpx.get(f"{server.url}/api/series/leadingqi-2023", timeout=60).json()
        assert [c["participants_hour"] for c in figures["chats"]] == [58, 4]
        assert [c["returning"] for c in figures["chats"]] == [0, 2]

        missing = httpx.get(f"{server.url}/chats/nope/report", timeout=30)
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "unknown_chat"
        assert httpx.get(f"{server.url}/series/nope/report", timeout=30).status_code == 404
        assert httpx.get(f"{server.url}/api/chats/{SLUG}/export.pdf", timeout=30).status_code == 404


def test_the_report_opens_offline_and_prints(cli: CliRunnerFn, tmp_path: Path) -> None:
    """In Chromium, from a file, with the network refused: the report asks for nothing but
    itself, its charts show, and it prints to a multi-page A4 PDF."""
    from tests.browser import launch_chromium

    _create_and_import(cli, QI)
    report(cli)
    path = (tmp_path / f"{SLUG}-report.html").resolve()
    with launch_chromium() as browser:
        context = browser.new_context(offline=True)
        page = context.new_page()
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(path.as_uri())
        assert [u for u in requests if not u.startswith("data:")] == [path.as_uri()]
        widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
        assert len(widths) >= 8 and all(w > 300 for w in widths)  # 2 charts, 6 word clouds
        pdf = page.pdf(format="A4", print_background=True)
        assert pdf.startswith(b"%PDF")
        pages = len(re.findall(rb"/Type\s*/Page(?!s)", pdf))
        assert pages >= 8, pages  # summary, activity, tweets, six questions, ...
        context.close()


# ---- the sample report in docs/ (TWEETCHAT_SCREENSHOTS=1) ---------------------------------------

DOCS = Path(__file__).parent.parent / "docs"


@pytest.mark.skipif(
    os.environ.get("TWEETCHAT_SCREENSHOTS") != "1",
    reason="remakes docs/report-sample.html and its first page; set TWEETCHAT_SCREENSHOTS=1",
)
def test_sample_report(sqlite_url: str) -> None:
    """The demo chat's report, as docs/report-sample.html, and its first printed page (A4, as
    the browser prints it) as docs/screenshots/report-first-page.png."""
    from app.demo import load_demo
    from app.report.render import chat_report_html
    from tests.browser import launch_chromium

    engine, sessions = open_database(sqlite_url)
    slug, _ = load_demo(sessions)
    with sessions() as session:
        chat = session.scalar(select(Chat).where(Chat.slug == slug))
        assert chat is not None
        html = chat_report_html(session, chat)
    engine.dispose()
    sample = DOCS / "report-sample.html"
    sample.write_text(html, encoding="utf-8")
    with launch_chromium() as browser:
        # A4 at 96 dpi: 210 mm = 794 px; the page's print margins are 13 mm.
        page = browser.new_page(viewport={"width": 794, "height": 1123}, device_scale_factor=1.5)
        page.emulate_media(media="print")
        page.goto(sample.resolve().as_uri())
        page.add_style_tag(content="main { padding: 14mm 13mm !important; }")  # @page's margins
        page.screenshot(path=str(DOCS / "screenshots" / "report-first-page.png"))
        page.close()
