"""Bad input gets a clear error naming the problem, never a traceback, and damages nothing."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from tests.conftest import FIXTURES
from tests.helpers import CliRunnerFn

BREXIT = FIXTURES / "twarc-csv" / "brexit.jsonl"


def create(cli: CliRunnerFn, slug: str = "c") -> None:
    result = cli(
        "chat", "create", slug, "--title", "C", "--hashtags", "#brexit", "--host", "h",
        "--start", "2021-09-22T16:00:00Z", "--end", "2021-09-22T17:00:00Z",
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def figures(cli: CliRunnerFn) -> dict:
    result = cli("stats", "c", "--window", "all", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_unknown_chat(cli: CliRunnerFn) -> None:
    for args in (("stats", "nope"), ("import", "nope", str(BREXIT)), ("chat", "show", "nope")):
        result = cli(*args)
        assert result.exit_code == 2
        assert "Unknown chat 'nope'" in result.output
        assert "Traceback" not in result.output


def test_bad_files_do_not_damage_what_is_stored(cli: CliRunnerFn, tmp_path: Path) -> None:
    create(cli)
    assert cli("import", "c", str(BREXIT)).exit_code == 0
    before = figures(cli)

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    csv_file = tmp_path / "tweets.csv"
    csv_file.write_text("id,text\n1,hello\n2,world\n")
    not_x = tmp_path / "other.json"
    not_x.write_text(json.dumps({"hello": "world"}))
    broken_doc = tmp_path / "page.json"
    broken_doc.write_text('{\n  "data": [\n    {"id": "1"\n')
    binary = tmp_path / "blob.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage\n")
    cases = [
        (tmp_path / "missing.jsonl", "no such file"),
        (tmp_path, "is a folder"),
        (empty, "the file is empty"),
        (csv_file, "no line is JSON"),
        (not_x, "not an X API v2 page, stream message or tweet (its keys: hello)"),
        (broken_doc, "not valid JSON"),
        (binary, "no line is JSON"),
    ]
    for path, message in cases:
        result = cli("import", "c", str(path))
        assert result.exit_code == 2, (path, result.output)
        assert message in result.output, (path, result.output)
        assert str(path.name) in result.output
        assert "Traceback" not in result.output
    assert figures(cli) == before


def test_a_bad_file_among_good_ones_stops_before_storing(cli: CliRunnerFn, tmp_path: Path) -> None:
    create(cli)
    result = cli("import", "c", str(BREXIT), str(tmp_path / "typo.jsonl"))
    assert result.exit_code == 2
    assert "typo.jsonl: no such file" in result.output
    assert figures(cli)["retweets"] == 0


def test_bad_tweets_inside_a_page_are_skipped_one_by_one(cli: CliRunnerFn, tmp_path: Path) -> None:
    create(cli)
    page = json.loads(BREXIT.read_text())
    page["data"][0]["created_at"] = "yesterday"
    page["data"][1].pop("author_id")
    path = tmp_path / "page.jsonl"
    path.write_text(json.dumps(page) + "\n")
    result = cli("import", "c", str(path))
    assert result.exit_code == 0, result.output
    assert (
        f"page.jsonl:1: tweet {page['data'][0]['id']} has an invalid time 'yesterday'"
        in result.output
    )
    assert f"the author of tweet {page['data'][1]['id']} has no valid id" in result.output
    assert "Imported 98 new post(s)" in result.output


def test_gzip_archives(cli: CliRunnerFn, tmp_path: Path) -> None:
    create(cli)
    path = tmp_path / "brexit.jsonl.gz"
    path.write_bytes(gzip.compress(BREXIT.read_bytes()))
    result = cli("import", "c", str(path))
    assert result.exit_code == 0, result.output
    assert figures(cli)["retweets"] == 67


def test_bad_chat_definitions(cli: CliRunnerFn) -> None:
    base = ["chat", "create", "x", "--title", "T", "--hashtags", "#a", "--host", "h"]
    cases = [
        (["--start", "28/03/2023 18:00", "--end", "2023-03-28T19:00:00Z"], "--start '28/03/2023 18:00' is not a date"),
        (["--start", "2023-03-28T18:00:00", "--end", "2023-03-28T19:00:00Z"], "has no time zone"),
        (["--start", "2023-03-28T19:00:00Z", "--end", "2023-03-28T18:00:00Z"], "before it starts"),
        (["--start", "2023-03-28T18:00:00Z", "--end", "2023-03-28T19:00:00Z", "--timezone", "Mars/Base"], "unknown time zone 'Mars/Base'"),
        (["--start", "2023-03-28T18:00:00Z", "--end", "2023-03-28T19:00:00Z", "--source", "fax"], "unknown source 'fax'"),
        (["--start", "2023-03-28T18:00:00Z", "--end", "2023-03-28T19:00:00Z", "--question", "25:00 Late?"], "is not a time of day"),
    ]  # fmt: skip
    for extra, message in cases:
        result = cli(*base, *extra)
        assert result.exit_code == 2, result.output
        assert message in result.output, result.output
    bad_slug = cli("chat", "create", "Bad Slug", "--title", "T", "--hashtags", "#a", "--host", "h",
                   "--start", "2023-03-28T18:00:00Z", "--end", "2023-03-28T19:00:00Z")  # fmt: skip
    assert bad_slug.exit_code == 2 and "lower-case letters" in bad_slug.output
    bad_tag = cli("chat", "create", "y", "--title", "T", "--hashtags", "#a b", "--host", "h",
                  "--start", "2023-03-28T18:00:00Z", "--end", "2023-03-28T19:00:00Z")  # fmt: skip
    assert bad_tag.exit_code == 2 and "'#a b' is not a hashtag" in bad_tag.output
    assert "No chats yet" in cli("chat", "list").output


def test_duplicate_chat_and_bad_window(cli: CliRunnerFn) -> None:
    create(cli)
    again = cli(
        "chat", "create", "c", "--title", "C", "--hashtags", "#b", "--host", "h",
        "--start", "2021-09-22T16:00:00Z", "--end", "2021-09-22T17:00:00Z",
    )  # fmt: skip
    assert again.exit_code == 2 and "a chat 'c' exists already" in again.output
    result = cli("stats", "c", "--window", "week")
    assert result.exit_code == 2 and "unknown window 'week'" in result.output


def test_bad_database_url(tmp_path: Path) -> None:
    from tests.helpers import make_cli_runner

    run = make_cli_runner(f"sqlite:///{tmp_path}/no/such/folder/x.db")
    result = run("chat", "list")
    assert result.exit_code == 2
    assert "Cannot open SQLite database" in result.output
    run = make_cli_runner("postgresql://127.0.0.1:1/nothing")
    result = run("chat", "list")
    assert result.exit_code == 2
    assert (
        "Cannot open or upgrade the database postgresql+psycopg://127.0.0.1:1/nothing"
        in result.output
    )
