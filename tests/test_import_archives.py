"""Importing the real twarc archives and recorded X API v2 payloads, on SQLite and PostgreSQL.

The figures of each twarc archive must equal the peer tool's counts in
tests/fixtures/twarc-csv/README.md (twarc-csv 0.7.2).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.helpers import CliRunnerFn

TWARC = FIXTURES / "twarc-csv"
XAPI = FIXTURES / "x-api-v2"

# (file, posts, retweets, quotes, replies, originals, distinct authors) from twarc-csv/README.md
PEER_COUNTS = [
    ("brexit.jsonl", 100, 67, 11, 10, 12, 98),
    ("kpop.jsonl", 100, 78, 0, 0, 22, 87),
    ("2sets.jsonl", 200, 145, 11, 10, 34, 185),
    ("flat.jsonl", 100, 47, 8, 31, 14, 96),
    ("streaming_output_with_error.jsonl", 7, 0, 1, 3, 3, 7),
]


def create(cli: CliRunnerFn, slug: str = "arch") -> None:
    # A wide window: these archives are not chats, every post counts under window=all anyway.
    result = cli(
        "chat", "create", slug, "--title", "Archive", "--hashtags", "#brexit",
        "--host", "nobody_host", "--start", "2021-01-01T00:00:00Z", "--end", "2021-01-14T00:00:00Z",
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def stats(cli: CliRunnerFn, slug: str = "arch", window: str = "all") -> dict:
    result = cli("stats", slug, "--window", window, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize(
    ("name", "posts", "rts", "quotes", "replies", "originals", "authors"), PEER_COUNTS
)
def test_archive_figures_equal_peer_tool(
    cli: CliRunnerFn,
    name: str,
    posts: int,
    rts: int,
    quotes: int,
    replies: int,
    originals: int,
    authors: int,
) -> None:
    create(cli)
    result = cli("import", "arch", str(TWARC / name))
    assert result.exit_code == 0, result.output
    assert f"Imported {posts} new post(s)" in result.output
    figures = stats(cli)
    assert figures["participants"] == authors
    assert figures["retweets"] == rts
    assert figures["quotes"] == quotes
    assert figures["replies"] == replies
    assert figures["original_tweets"] == quotes + replies + originals
    assert figures["original_tweets"] + figures["retweets"] == posts


def test_truncated_stream_line_is_reported_and_the_rest_imported(cli: CliRunnerFn) -> None:
    create(cli)
    path = TWARC / "streaming_output_with_error.jsonl"
    result = cli("import", "arch", str(path))
    assert result.exit_code == 0, result.output
    assert f"{path}:8: not valid JSON" in result.output
    assert "cut short" in result.output
    assert "1 bad line(s) skipped" in result.output
    assert stats(cli)["original_tweets"] == 7


def test_importing_twice_changes_nothing(cli: CliRunnerFn) -> None:
    create(cli)
    assert cli("import", "arch", str(TWARC / "brexit.jsonl")).exit_code == 0
    first = stats(cli)
    again = cli("import", "arch", str(TWARC / "brexit.jsonl"), str(TWARC / "2sets.jsonl"))
    assert again.exit_code == 0, again.output
    # 2sets holds the brexit page again plus the kpop page: only kpop's 100 are new.
    assert "Imported 100 new post(s)" in again.output
    assert "(200 already collected" in again.output
    cli("import", "arch", str(TWARC / "kpop.jsonl"))
    final = stats(cli)
    assert final["original_tweets"] + final["retweets"] == 200
    assert final["participants"] == 185
    assert first["retweets"] == 67


def test_poll_options_votes_and_shares(cli: CliRunnerFn) -> None:
    create(cli)
    cli("import", "arch", str(TWARC / "brexit.jsonl"))
    polls = stats(cli)["polls"]
    assert len(polls) == 1
    poll = polls[0]
    assert poll["id"] == "1440382209790132235"
    assert poll["total"] == 60 + 185 + 24
    assert [(o["label"], o["votes"], o["share"]) for o in poll["options"]] == [
        ("Yes I do", 60, round(60 / 269, 4)),
        ("No I don\u2019t", 185, round(185 / 269, 4)),
        ("Don\u2019t know", 24, round(24 / 269, 4)),
    ]


def test_context_posts_are_stored_but_not_counted(cli: CliRunnerFn, tmp_path: Path) -> None:
    create(cli)
    page = json.loads((XAPI / "search-all_single-retweet_last-page-no-next-token.json").read_text())
    # One retweet in data; its original is only in includes.tweets.
    assert len(page["data"]) == 1 and len(page["includes"]["tweets"]) == 1
    result = cli(
        "import", "arch", str(XAPI / "search-all_single-retweet_last-page-no-next-token.json")
    )
    assert result.exit_code == 0, result.output
    assert "1 context post(s)" in result.output
    figures = stats(cli)
    assert (figures["participants"], figures["retweets"], figures["original_tweets"]) == (1, 1, 0)
    assert figures["top_tweets"] == []


def test_collected_retweets_raise_a_posts_retweet_count(cli: CliRunnerFn, tmp_path: Path) -> None:
    create(cli)
    original = {
        "id": "1500000000000000001", "text": "Q1: hello #brexit", "author_id": "11",
        "created_at": "2021-01-02T10:00:00.000Z",
        "public_metrics": {"retweet_count": 1, "reply_count": 0, "like_count": 5, "quote_count": 0},
    }  # fmt: skip
    retweets = [
        {
            "id": f"15000000000000001{n:02d}",
            "text": "RT @a: Q1: hello #brexit",
            "author_id": str(100 + n),
            "created_at": "2021-01-02T10:05:00.000Z",
            "referenced_tweets": [{"type": "retweeted", "id": original["id"]}],
        }
        for n in range(3)
    ]
    users = [{"id": "11", "username": "a", "name": "A"}] + [
        {"id": str(100 + n), "username": f"u{n}", "name": f"U{n}"} for n in range(3)
    ]
    path = tmp_path / "page.json"
    path.write_text(json.dumps({"data": [original, *retweets], "includes": {"users": users}}))
    assert cli("import", "arch", str(path)).exit_code == 0
    top = stats(cli)["top_tweets"]
    # public_metrics says 1 retweet, but 3 retweets of it were collected: the larger counts.
    assert [(t["id"], t["retweets"], t["likes"]) for t in top] == [(original["id"], 3, 5)]


@pytest.mark.parametrize(
    "name",
    [
        "search-recent_hashtag-brexit_100-tweets_rt-quote-reply_poll_next-token.json",
        "search-recent_default-fields_tweepy-2022_next-token.json",
        "stream-filtered_message_quote-tweet_media-place_matching-rules.json",
        "stream-filtered_message_reply_matching-rules.json",
        "tweets-lookup_2023_impression-count_verified-type.json",
        "tweets-lookup_quote-and-reply_edit-history_self-in-includes.json",
        "tweets-lookup_reply_partial-errors-missing-parent.json",
        "tweets-lookup_retweet_mentions-expanded.json",
        "twarc2-flatten_first-5-tweets.jsonl",
        "twarc2-search_one-page.jsonl",
    ],
)
def test_recorded_payloads_import(cli: CliRunnerFn, name: str) -> None:
    create(cli)
    path = XAPI / name
    text = path.read_text()
    if name.endswith(".jsonl"):
        objects = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        objects = [json.loads(text)]
    expected_ids: set[str] = set()
    for obj in objects:
        data = obj.get("data", obj) if "data" in obj else obj
        expected_ids.update(t["id"] for t in (data if isinstance(data, list) else [data]))
    result = cli("import", "arch", str(path))
    if name == "search-recent_default-fields_tweepy-2022_next-token.json":
        # Default fields carry no author_id or created_at: each post is reported, none stored.
        assert result.exit_code == 2, result.output
        assert "has no valid id" in result.output or "no valid time" in result.output
        return
    assert result.exit_code == 0, result.output
    assert f"Imported {len(expected_ids)} new post(s)" in result.output
    out = cli("export", "arch", "--format", "json", "--output", "out.json")
    assert out.exit_code == 0, out.output
    exported = json.loads(Path("out.json").read_text())
    assert {p["id"] for p in exported["posts"]} == expected_ids


def test_quote_that_replies_is_a_quote(cli: CliRunnerFn) -> None:
    create(cli)
    cli(
        "import",
        "arch",
        str(XAPI / "tweets-lookup_quote-and-reply_edit-history_self-in-includes.json"),
    )
    figures = stats(cli)
    assert (figures["quotes"], figures["replies"], figures["original_tweets"]) == (1, 0, 1)
