"""Parsing single payload objects: kinds, entities, inline (flattened) expansions."""

from __future__ import annotations

import json

import pytest

from app.ingest.parse import PayloadError, parse_object, unescape_text
from tests.conftest import FIXTURES

XAPI = FIXTURES / "x-api-v2"


def tweet(**extra: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "1", "text": "hello", "author_id": "2", "created_at": "2023-03-28T18:00:00.000Z",
    }  # fmt: skip
    base.update(extra)
    return base


def test_x_entities_are_unescaped_once() -> None:
    assert unescape_text("Q&amp;A &lt;script&gt; &amp;lt;") == "Q&A <script> &lt;"
    parsed = parse_object({"data": [tweet(text="A1: cats &amp; dogs &lt;3")]})
    assert parsed.collected[0].text == "A1: cats & dogs <3"
    # The raw payload is kept as received.
    assert parsed.collected[0].raw["text"] == "A1: cats &amp; dogs &lt;3"


@pytest.mark.parametrize(
    ("refs", "kind"),
    [
        ([], "original"),
        ([{"type": "replied_to", "id": "9"}], "reply"),
        ([{"type": "quoted", "id": "9"}], "quote"),
        ([{"type": "replied_to", "id": "8"}, {"type": "quoted", "id": "9"}], "quote"),
        ([{"type": "retweeted", "id": "9"}, {"type": "quoted", "id": "8"}], "retweet"),
    ],
)
def test_kind_is_the_first_that_applies(refs: list[dict[str, str]], kind: str) -> None:
    assert parse_object({"data": [tweet(referenced_tweets=refs)]}).collected[0].kind == kind


def test_stream_message_with_numeric_rule_id() -> None:
    message = json.loads((XAPI / "stream-filtered_message_reply_matching-rules.json").read_text())
    assert isinstance(message["matching_rules"][0]["id"], int)
    parsed = parse_object(message)
    assert len(parsed.collected) == 1 and parsed.collected[0].kind == "reply"
    assert parsed.users


def test_lookup_with_self_in_includes_stores_it_once() -> None:
    page = json.loads(
        (XAPI / "tweets-lookup_quote-and-reply_edit-history_self-in-includes.json").read_text()
    )
    parsed = parse_object(page)
    collected = {p.id for p in parsed.collected}
    assert collected and not collected & {p.id for p in parsed.context}


def test_partial_errors_are_counted_not_fatal() -> None:
    page = json.loads((XAPI / "tweets-lookup_reply_partial-errors-missing-parent.json").read_text())
    parsed = parse_object(page)
    assert parsed.api_errors == 1 and len(parsed.collected) == 1


def test_flattened_tweet_brings_its_author_and_references() -> None:
    line = (XAPI / "twarc2-flatten_first-5-tweets.jsonl").read_text().splitlines()[0]
    parsed = parse_object(json.loads(line))
    assert parsed.collected[0].kind == "retweet"
    assert [p.id for p in parsed.context] == [parsed.collected[0].retweeted_id]
    assert {u.id for u in parsed.users} >= {
        parsed.collected[0].author_id,
        parsed.context[0].author_id,
    }


def test_flattened_poll_is_read() -> None:
    poll = {
        "id": "77",
        "options": [{"position": 1, "label": "Yes", "votes": 3}],
        "voting_status": "closed",
    }
    parsed = parse_object(
        tweet(author={"id": "2", "username": "u"}, attachments={"poll_ids": ["77"], "poll": poll})
    )
    assert parsed.collected[0].poll_id == "77"
    assert parsed.polls[0].options == [(1, "Yes", 3)]


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([1, 2], "expected a JSON object, found list"),
        ({"foo": 1}, "its keys: foo"),
        ({"data": "x"}, "`data` is neither a list nor an object"),
        (tweet(id="abc"), "non-numeric id 'abc'"),
        (tweet(id=True), "a tweet has no valid id: True"),
        (tweet(author_id="u2"), "the author of tweet 1 has a non-numeric id 'u2'"),
        (
            tweet(referenced_tweets=[{"type": "quoted", "id": ""}]),
            "a post referenced by 1 has no valid id: ''",
        ),
        (tweet(attachments={"poll_ids": [None]}), "the poll of tweet 1 has no valid id: None"),
        (tweet(created_at="2023-13-45"), "invalid time '2023-13-45'"),
        ({"id": "1", "text": 5}, "has no text"),
    ],
)
def test_malformed_objects_name_the_problem(obj: object, message: str) -> None:
    with pytest.raises(PayloadError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parsed = parse_object(obj)
        for problem in parsed.problems:  # items of a page are reported, not raised
            raise PayloadError(problem)


def test_a_numeric_id_is_taken_as_its_digits() -> None:
    parsed = parse_object(tweet(id=7, author_id=2))
    assert [(post.id, post.author_id) for post in parsed.collected] == [("7", "2")]


def test_error_only_responses_import_nothing() -> None:
    parsed = parse_object({"errors": [{"title": "Not Found Error"}]})
    assert (parsed.collected, parsed.api_errors) == ([], 1)
    assert parse_object({"meta": {"result_count": 0}}).collected == []
