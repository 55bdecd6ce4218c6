"""The fake X server itself, spoken to directly with httpx: it must behave as X documents, or the
source tests prove nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.fakex import FakeX

QI_CHAT = Path(__file__).parent / "fixtures" / "qi-chat.jsonl"
QI_CHAT_PAGES = [json.loads(line) for line in QI_CHAT.read_text().splitlines() if line]
QUERY = "#LeadingQI OR #QIHour"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeX]:
    with FakeX() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeX) -> FakeX:
    server.reset(QI_CHAT_PAGES, keepalive_interval=0.2)
    return server


@pytest.fixture
def client(fake: FakeX) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {fake.token}"}
    with httpx.Client(base_url=fake.url, headers=headers, timeout=5) as http:
        yield http


def search(client: httpx.Client, **params: str | int) -> httpx.Response:
    return client.get("/2/tweets/search/recent", params={"query": QUERY, **params})


def test_wrong_or_missing_token_gets_401_problem(fake: FakeX) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}):
        response = httpx.get(f"{fake.url}/2/tweets/search/recent?query=x", headers=headers)
        assert response.status_code == 401
        assert response.json() == {
            "title": "Unauthorized",
            "detail": "Unauthorized",
            "type": "about:blank",
            "status": 401,
        }
        assert {"x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-reset"} <= set(
            response.headers
        )


def test_only_published_posts_newest_first_in_pages(fake: FakeX, client: httpx.Client) -> None:
    assert search(client).json() == {"meta": {"result_count": 0}}
    fake.publish(100)
    first = search(client, max_results=10).json()
    ids = [t["id"] for t in first["data"]]
    assert ids == sorted(ids, key=int, reverse=True) and len(ids) == 10
    assert first["meta"]["newest_id"] == ids[0] and first["meta"]["oldest_id"] == ids[-1]
    assert set(first["includes"]) >= {"users"}
    seen = list(ids)
    token = first["meta"]["next_token"]
    again = search(client, max_results=10, next_token=token).json()
    fake.publish(50)  # a token's pages are fixed when the round starts: still the same
    assert search(client, max_results=10, next_token=token).json()["data"] == again["data"]
    while token:
        page = search(client, max_results=10, next_token=token).json()
        seen += [t["id"] for t in page["data"]]
        token = page["meta"].get("next_token")
    published = fake.published[:100]
    assert set(seen) == {i for i in published if not fake.is_retweet(i)}  # no retweets
    newer = search(client, since_id=max(seen, key=int), max_results=100).json()
    assert {t["id"] for t in newer["data"]} == {
        i for i in fake.published[100:] if not fake.is_retweet(i)
    }
    remaining = int(client.get("/2/tweets?ids=1").headers["x-rate-limit-remaining"])
    assert remaining == 3499


def test_search_options_and_validation(fake: FakeX, client: httpx.Client) -> None:
    fake.publish_all()
    fake.search_excludes_retweets = False
    everything = search(client, max_results=100).json()["meta"]
    assert everything["result_count"] == 100 and "next_token" in everything
    assert search(client, query="#qihour -is:retweet", max_results=10).status_code == 200
    old = datetime.now(UTC) - timedelta(days=8)
    refused = search(client, start_time=old.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert refused.status_code == 400 and "start_time" in refused.text
    assert search(client, max_results=5).status_code == 400
    recent = datetime.now(UTC) - timedelta(minutes=30)
    page = search(client, start_time=recent.strftime("%Y-%m-%dT%H:%M:%SZ")).json()
    # Times are shifted so the archive's newest post (09:30, the one before at 08:10) is 2 min old.
    assert [t["id"] for t in page["data"]] == [max(fake.posts, key=int)]
    fake.search_duplicate_across_pages = True
    first = search(client, max_results=10).json()
    second = search(client, max_results=10, next_token=first["meta"]["next_token"]).json()
    assert second["data"][0]["id"] == first["data"][-1]["id"]


def test_rules_add_duplicate_list_delete(fake: FakeX, client: httpx.Client) -> None:
    rules = "/2/tweets/search/stream/rules"
    assert client.get(rules).json()["meta"]["result_count"] == 0
    added = client.post(rules, json={"add": [{"value": QUERY, "tag": "t"}]}).json()
    assert added["meta"]["summary"] == {"created": 1, "not_created": 0, "valid": 1, "invalid": 0}
    rule_id = added["data"][0]["id"]
    again = client.post(rules, json={"add": [{"value": QUERY}]}).json()
    assert again["errors"][0]["title"] == "DuplicateRule" and again["errors"][0]["id"] == rule_id
    assert client.get(rules).json()["data"] == [{"id": rule_id, "value": QUERY, "tag": "t"}]
    deleted = client.post(rules, json={"delete": {"ids": [rule_id, "7"]}}).json()
    assert deleted["meta"]["summary"] == {"deleted": 1, "not_deleted": 1}
    assert client.post(rules, json={"nonsense": 1}).status_code == 400


def test_stream_sends_matching_posts_and_keepalives(fake: FakeX, client: httpx.Client) -> None:
    client.post("/2/tweets/search/stream/rules", json={"add": [{"value": QUERY, "tag": "q"}]})
    fake.publish(10)  # before connecting: never sent on this connection
    lines: list[str] = []
    with client.stream("GET", "/2/tweets/search/stream") as response:
        assert response.status_code == 200
        fake.wait_until_sync(lambda: fake.open_streams == 1)
        published = fake.publish(20)
        for line in response.iter_lines():
            lines.append(line)
            if line == "" and len([x for x in lines if x]) >= 19:
                break
    messages = [json.loads(line) for line in lines if line]
    sent = [m["data"]["id"] for m in messages]
    matching = [i for i in published if fake.matches(i, QUERY)]
    assert sent == matching and any(fake.is_retweet(i) for i in sent)  # retweets too
    assert all(m["matching_rules"][0]["tag"] == "q" for m in messages)
    assert all("users" in m["includes"] for m in messages)
    assert "" in lines and fake.keepalives_sent >= 1


def test_stream_drop_after_ends_the_response(fake: FakeX, client: httpx.Client) -> None:
    client.post("/2/tweets/search/stream/rules", json={"add": [{"value": QUERY}]})
    fake.stream_drop_after(3)
    with client.stream("GET", "/2/tweets/search/stream") as response:
        fake.wait_until_sync(lambda: fake.open_streams == 1)
        fake.publish(10)
        messages = [line for line in response.iter_lines() if line]
    assert len(messages) == 3
    fake.stream_drop_after(1, abort=True)
    with client.stream("GET", "/2/tweets/search/stream") as response:
        fake.wait_until_sync(lambda: fake.open_streams == 1)
        fake.publish(5)
        with pytest.raises(httpx.RemoteProtocolError):
            for _ in response.iter_lines():
                pass


def test_faults_are_scripted_and_requests_recorded(fake: FakeX, client: httpx.Client) -> None:
    fake.fail_next("search", 429, reset_in=2)
    fake.fail_next("search", 503, after=1)
    started = time.time()
    limited = search(client)
    assert limited.status_code == 429
    assert limited.headers["x-rate-limit-remaining"] == "0"
    assert started + 1 <= int(limited.headers["x-rate-limit-reset"]) <= started + 3
    assert search(client).status_code == 200
    assert search(client).status_code == 503
    assert search(client).status_code == 200
    fake.fail_next("stream", 429)
    assert client.get("/2/tweets/search/stream").json()["connection_issue"] == "TooManyConnections"
    fake.trends_status = 403
    forbidden = client.get("/2/trends/by/woeid/23424975").json()
    assert forbidden["reason"] == "client-not-enrolled"
    recorded = fake.requests("search")
    assert [r.status for r in recorded] == [429, 200, 503, 200]
    assert recorded[0].params["query"] == QUERY and recorded[0].time >= started


def test_lookup_metrics_and_partial_errors(fake: FakeX, client: httpx.Client) -> None:
    published = fake.publish(50)
    fake.set_metrics(published[0], like_count=77)
    unpublished = fake.chronological()[60]
    body = client.get("/2/tweets", params={"ids": f"{published[0]},{unpublished},5"}).json()
    assert [t["id"] for t in body["data"]] == [published[0]]
    assert body["data"][0]["public_metrics"]["like_count"] == 77
    assert [e["resource_id"] for e in body["errors"]] == [unpublished, "5"]
    assert body["errors"][0]["type"].endswith("/resource-not-found")
    too_many = ",".join(published[:1] * 101)
    assert client.get("/2/tweets", params={"ids": too_many}).status_code == 400
    trends = client.get("/2/trends/by/woeid/23424975", params={"max_trends": 2}).json()
    assert trends == {
        "data": [
            {"trend_name": "#SundayVibes", "tweet_count": 25100},
            {"trend_name": "Arsenal", "tweet_count": 81200},
        ]
    }
