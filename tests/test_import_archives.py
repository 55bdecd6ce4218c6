"""Importing the real twarc archives and recorded X API v2 payloads, on SQLite and PostgreSQL.

The figures of each twarc archive must equal the peer tool's counts in
tests/fixtures/twarc-csv/README.md (twarc-csv 0.7.2).
"""

from __future__ import annotations

import copy
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


# -- Mastodon and Bluesky payloads ---------------------------------------------------------------

STATUSES: list[dict] = json.loads((FIXTURES / "mastodon" / "qi-chat.json").read_text())
SEARCH_ANSWER = FIXTURES / "bluesky" / "searchPosts_leadingqi.json"


def create_qi(cli: CliRunnerFn, slug: str = "qi", start: str = "2023-03-28T18:00:00Z") -> None:
    end = start.replace("T18:", "T19:")
    result = cli(
        "chat", "create", slug, "--title", "QI", "--hashtags", "#LeadingQI,#QIHour",
        "--host", "qihour@mastodon.social,warwickbschool.bsky.social",
        "--panel", "helen@mastodon.social,helenbevan.bsky.social",
        "--start", start, "--end", end,
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def status(prefix: str) -> dict:
    """The fixture's status (not a boost) whose text starts with `prefix`."""
    for item in STATUSES:
        if not item["reblog"] and item["content"].removeprefix("<p>").startswith(prefix):
            return copy.deepcopy(item)
    raise KeyError(prefix)


def exported(cli: CliRunnerFn, slug: str) -> dict[str, dict]:
    result = cli("export", slug, "--format", "json", "--output", f"{slug}.json")
    assert result.exit_code == 0, result.output
    return {p["id"]: p for p in json.loads(Path(f"{slug}.json").read_text())["posts"]}


def test_a_mastodon_tag_timeline_imports_with_full_handles_and_linked_replies(
    cli: CliRunnerFn,
) -> None:
    create_qi(cli)
    path = FIXTURES / "mastodon" / "qi-chat.json"
    result = cli("import", "qi", str(path))
    assert result.exit_code == 0, result.output
    # Every status of the file is collected, boosts too (their boosted status is in the file).
    assert "Imported 23 new post(s)" in result.output
    assert "0 context post(s)" in result.output and "1 poll(s)" in result.output
    # Bryan's reply to a deleted status cannot be linked to it: said, and still a reply.
    assert (
        "1 Mastodon reply(ies) or quote(s) point at a status in none of the files" in result.output
    )
    figures = stats(cli, "qi")
    assert (figures["participants"], figures["original_tweets"], figures["retweets"]) == (6, 21, 2)
    assert (figures["replies"], figures["quotes"]) == (6, 1)
    assert [(q["number"], q["answers"]) for q in figures["questions"]] == [(1, 2), (2, 8), (3, 3)]
    assert figures["polls"][0]["total"] == 41
    posts = exported(cli, "qi")
    q2 = status("Q2 ")
    replies = {p["username"] for p in posts.values() if p["in_reply_to_id"] == q2["uri"]}
    assert replies == {"helen@mastodon.social"}  # a local account: the server's domain added
    assert posts[q2["uri"]]["username"] == "qihour@mastodon.social"
    assert posts[q2["uri"]]["url"] == q2["url"]
    # Li's reply (18:07) comes before its parent (ana, 18:06) in the file: linked all the same.
    li = next(p for p in posts.values() if p["text"].startswith("@ana yes!"))
    ana = next(p for p in posts.values() if p["text"].startswith("Anyone else joining"))
    assert (li["kind"], li["in_reply_to_id"]) == ("reply", ana["id"])
    boosts = [p for p in posts.values() if p["kind"] == "retweet"]
    assert {p["username"] for p in boosts} == {"sam@hachyderm.io"}
    # Importing again changes nothing.
    again = cli("import", "qi", str(path))
    assert "Imported 0 new post(s)" in again.output and "(23 already collected" in again.output
    assert stats(cli, "qi") == figures


def test_mastodon_statuses_a_line_each_link_replies_across_files(
    cli: CliRunnerFn, tmp_path: Path
) -> None:
    create_qi(cli)
    q3 = status("Q3 ")
    answers = [s for s in STATUSES if s["in_reply_to_id"] == q3["id"]]
    assert len(answers) == 2
    first = tmp_path / "answers.jsonl"
    first.write_text("".join(json.dumps(s) + "\n" for s in answers))
    second = tmp_path / "question.json"
    second.write_text(json.dumps(q3, indent=2))
    result = cli("import", "qi", str(first), str(second))
    assert result.exit_code == 0, result.output
    assert "Imported 3 new post(s)" in result.output
    assert "point at a status" not in result.output
    posts = exported(cli, "qi")
    assert {posts[s["uri"]]["in_reply_to_id"] for s in answers} == {q3["uri"]}
    assert {posts[s["uri"]]["question"] for s in answers} == {3}
    # A tag timeline page a line (a list of statuses on one line) reads the same way.
    create_qi(cli, "paged")
    paged = tmp_path / "pages.jsonl"
    paged.write_text(json.dumps(STATUSES[:10]) + "\n" + json.dumps(STATUSES[10:]) + "\n")
    result = cli("import", "paged", str(paged))
    assert result.exit_code == 0, result.output
    assert "Imported 23 new post(s)" in result.output
    assert [(q["number"], q["answers"]) for q in stats(cli, "paged")["questions"]] == [
        (1, 2),
        (2, 8),
        (3, 3),
    ]


def test_the_mastodon_server_is_told_from_local_accounts_or_given(
    cli: CliRunnerFn, tmp_path: Path
) -> None:
    create_qi(cli)
    # A server whose handles' domain (example.com) is not its web address (social.example.com):
    # the profile URLs cannot tell, the option does.
    moved = json.loads(
        json.dumps(STATUSES).replace("https://mastodon.social/", "https://social.example.com/")
    )
    path = tmp_path / "moved.json"
    path.write_text(json.dumps(moved))
    told = cli("import", "qi", str(path))
    assert told.exit_code == 0, told.output
    assert any(p["username"] == "qihour@social.example.com" for p in exported(cli, "qi").values())

    # The same chat from the server's other web address (other uris: other posts).
    create_qi(cli, "given")
    path = tmp_path / "web.json"
    path.write_text(json.dumps(moved).replace("social.example.com", "web.example.com"))
    given = cli("import", "given", str(path), "--mastodon-server", "https://Example.com/")
    assert given.exit_code == 0, given.output
    names = {p["username"] for p in exported(cli, "given").values()}
    assert "qihour@example.com" in names and "li@mas.to" in names
    assert "qihour@web.example.com" not in names

    bad = cli("import", "given", str(path), "--mastodon-server", "not a host")
    assert bad.exit_code == 2
    assert "--mastodon-server 'not a host' is not a Mastodon server's host name" in bad.output


def test_a_status_whose_server_cannot_be_told_is_reported_and_skipped(
    cli: CliRunnerFn, tmp_path: Path
) -> None:
    create_qi(cli)
    q3 = status("Q3 ")
    li, helen = (s for s in STATUSES if s["in_reply_to_id"] == q3["id"])
    assert helen["account"]["acct"] == "helen" and li["account"]["acct"] == "li@mas.to"
    # The local helen (mastodon.social) mentions the local qihour, on another host:
    confused = copy.deepcopy(helen)
    confused["mentions"][0]["url"] = "https://elsewhere.example/@qihour"
    # li@mas.to mentions the local qihour, without a profile URL:
    unknown = copy.deepcopy(li)
    del unknown["mentions"][0]["url"]
    path = tmp_path / "statuses.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in (q3, confused, unknown)))
    result = cli("import", "qi", str(path))
    assert result.exit_code == 0, result.output
    assert "Imported 1 new post(s)" in result.output and "2 bad line(s) skipped" in result.output
    assert (
        f"statuses.jsonl:2: status {helen['uri']!r}: its local accounts point at several servers "
        "(elsewhere.example, mastodon.social): give the server" in result.output
    )
    assert (
        f"statuses.jsonl:3: status {li['uri']!r}: cannot tell the server of its local "
        "account(s) qihour (no profile url)" in result.output
    )
    assert "--mastodon-server HOST" in result.output
    # Given the server, both import, as replies to the question.
    again = cli("import", "qi", str(path), "--mastodon-server", "mastodon.social")
    assert again.exit_code == 0, again.output
    assert "Imported 2 new post(s)" in again.output and "0 bad line(s)" in again.output
    posts = exported(cli, "qi")
    assert {posts[s["uri"]]["in_reply_to_id"] for s in (helen, li)} == {q3["uri"]}
    assert posts[helen["uri"]]["username"] == "helen@mastodon.social"


def test_bad_mastodon_statuses_are_reported_by_line_and_nothing_stored_is_damaged(
    cli: CliRunnerFn, tmp_path: Path
) -> None:
    create_qi(cli)
    assert cli("import", "qi", str(FIXTURES / "mastodon" / "qi-chat.json")).exit_code == 0
    before = stats(cli, "qi")
    broken = copy.deepcopy(STATUSES[:4])
    del broken[1]["uri"]
    broken[2]["created_at"] = "soon"
    broken[3]["account"] = "nobody"
    path = tmp_path / "timeline.json"
    # Pretty-printed, one status a line after the opening bracket: status k is on line k + 2.
    path.write_text("[\n" + ",\n".join(json.dumps(s) for s in broken) + "\n]\n")
    result = cli("import", "qi", str(path))
    assert result.exit_code == 0, result.output
    assert f"timeline.json:3: status {broken[1]['id']!r} has no uri" in result.output
    assert f"timeline.json:4: status {broken[2]['uri']} has an invalid time 'soon'" in result.output
    assert "timeline.json:5: " in result.output and "an account is not an object" in result.output
    assert "Imported 0 new post(s)" in result.output and "(1 already collected" in result.output
    assert stats(cli, "qi") == before


def test_bluesky_search_answers_and_post_views_import(cli: CliRunnerFn, tmp_path: Path) -> None:
    create_qi(cli, start="2026-03-31T18:00:00Z")
    result = cli("import", "qi", str(SEARCH_ANSWER))
    assert result.exit_code == 0, result.output
    # Every post of the answer is collected, the slides bot's too (the archive is the user's
    # choice); the quoted posts are in it as well, so there is no context.
    assert "Imported 10 new post(s)" in result.output and "0 context post(s)" in result.output
    figures = stats(cli, "qi")
    assert (figures["participants"], figures["original_tweets"], figures["retweets"]) == (7, 10, 0)
    assert (figures["replies"], figures["quotes"]) == (2, 3)
    posts = exported(cli, "qi")
    answer = json.loads(SEARCH_ANSWER.read_text())
    assert set(posts) == {view["uri"] for view in answer["posts"]}
    assert {p["network"] for p in posts.values()} == {"bluesky"}
    q2 = next(p for p in posts.values() if p["text"].startswith("Q2"))
    assert q2["username"] == "warwickbschool.bsky.social" and q2["question"] == 2

    # The same posts as single post views, a line each, with one broken: the others import.
    create_qi(cli, "views", start="2026-03-31T18:00:00Z")
    views = copy.deepcopy(answer["posts"])
    views[4]["author"] = {"handle": "no-did.bsky.social"}
    path = tmp_path / "views.jsonl"
    path.write_text("".join(json.dumps(view) + "\n" for view in views))
    result = cli("import", "views", str(path))
    assert result.exit_code == 0, result.output
    assert f"views.jsonl:5: post {views[4]['uri']} has no author DID" in result.output
    assert "Imported 9 new post(s)" in result.output

    # Inside a searchPosts answer, a bad post is named by its place in the answer.
    create_qi(cli, "answer", start="2026-03-31T18:00:00Z")
    page = {**answer, "posts": views}
    path = tmp_path / "answer.json"
    path.write_text(json.dumps(page))
    result = cli("import", "answer", str(path))
    assert result.exit_code == 0, result.output
    assert "answer.json:1: item 5 of a searchPosts answer: post" in result.output
    assert "Imported 9 new post(s)" in result.output


def test_one_file_may_mix_the_three_networks(cli: CliRunnerFn, tmp_path: Path) -> None:
    create(cli)
    x_page = (TWARC / "brexit.jsonl").read_text().splitlines()[0]
    bluesky = json.loads(SEARCH_ANSWER.read_text())["posts"][0]
    lines = [x_page, json.dumps(STATUSES[:5]), json.dumps(bluesky), json.dumps({"hello": 1})]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = cli("import", "arch", str(path))
    assert result.exit_code == 0, result.output
    assert "Imported 106 new post(s)" in result.output
    assert "mixed.jsonl:4: not an X API v2 page, stream message or tweet (its keys: hello)" in (
        result.output
    )
    networks = [p["network"] for p in exported(cli, "arch").values()]
    assert (networks.count("x"), networks.count("mastodon"), networks.count("bluesky")) == (
        100,
        5,
        1,
    )
