"""The pages of a chat holding X, Mastodon and Bluesky posts (issue 7), in Debian's Chromium: every
post wears a badge naming its network, links to the post on its own site (only over http(s)), and
the panel's network filter and its search's network leave only the chosen network's posts."""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from app.config import Settings
from app.ingest.parse import post_network
from app.sources.base import SourceBatch
from app.sources.mastodon import parse_statuses
from tests.browser import ADMIN, PageServer, browser_page, launch_chromium
from tests.conftest import FIXTURES
from tests.networks import (
    BLUESKY_ANSWER,
    BLUESKY_ANSWER_PAGE,
    MASTODON_ANSWER,
    MASTODON_ANSWER_PAGE,
    X_ANSWER,
    prepare_mixed,
)

NAMES = {"x": "X", "mastodon": "Mastodon", "bluesky": "Bluesky"}
# Screenshots to look at (not kept in the repository): the panel, its Bluesky filter, the screen.
SCREENSHOTS = Path("/tmp")
QUEUE_POST = "#queue-list > .post[data-id]"
WALL_POST = "#wall > .post[data-id]"
# Collected live while the panel is open: a Mastodon answer, and one whose `url` is a script.
LIVE_TOOT = "https://mas.to/users/li/statuses/110102390000000001"
LIVE_TOOT_PAGE = "https://mas.to/@li/110102390000000001"
EVIL_TOOT = "https://mas.to/users/li/statuses/110102390000000002"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch_chromium() as chromium:
        yield chromium


def live_statuses() -> list[dict[str, Any]]:
    statuses = json.loads((FIXTURES / "mastodon" / "qi-chat.json").read_text())
    answer = next(s for s in statuses if s["uri"] == MASTODON_ANSWER)
    made = []
    for n, (uri, url, text) in enumerate(
        [
            (LIVE_TOOT, LIVE_TOOT_PAGE, "A3: the rota, every time #QIHour"),
            (EVIL_TOOT, "javascript:alert(document.domain)", "A3: and the handover #QIHour"),
        ],
        start=1,
    ):
        status = copy.deepcopy(answer)
        status.update(
            id=f"11010239000000000{n}",
            uri=uri,
            url=url,
            created_at=f"2023-03-28T18:4{n}:00.000Z",
            content=f"<p>{text}</p>",
        )
        made.append(status)
    return made


def networks_of(items: Locator) -> list[tuple[str, str | None, str | None]]:
    """(post id, its badge's data-network, the badge's text) for each post."""
    rows: list[tuple[str, str | None, str | None]] = items.evaluate_all(
        """ns => ns.map(n => {
            const badge = n.querySelector(".network");
            return [n.dataset.id, badge && badge.dataset.network, badge && badge.textContent];
        })"""
    )
    return rows


def assert_badges(items: Locator) -> set[str]:
    rows = networks_of(items)
    assert rows
    for post_id, network, text in rows:
        assert network == post_network(post_id), post_id
        assert text == NAMES[network]
    return {network for _, network, _ in rows if network}


def open_panel(browser: Browser, server: PageServer, token: str) -> Any:
    return browser_page(
        browser,
        width=1440,
        height=900,
        storage={"tweetchat.token.qi": token},
        origin=server.url,
        color_scheme="light",
        locale="en-GB",
        timezone_id="Europe/London",
    )


def test_every_post_shows_its_network_and_the_panel_filters_by_it(
    browser: Browser, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    prepare_mixed(sqlite_url)
    settings = Settings(database_url=sqlite_url, admin_token=ADMIN)
    with PageServer(settings) as server:
        token = server.panel_token("qi", "Helen")
        with open_panel(browser, server, token) as panel, browser_page(browser) as screen:
            panel.goto(f"{server.url}/chats/qi/panel")
            expect(panel.locator("#connection")).to_have_attribute("data-state", "connected")
            screen.goto(f"{server.url}/chats/qi/screen")
            expect(screen.locator("#connection")).to_have_attribute("data-state", "connected")

            # Two Mastodon answers collected live reach the queue with their badge and link.
            hub = server.hub
            assert hub is not None
            parsed = parse_statuses(live_statuses(), "mastodon.social")

            async def collect() -> None:
                runtime = await hub.runtime("qi")
                await runtime.emit(SourceBatch("mastodon:mas.to", parsed))
                await runtime.drained()

            server.call(collect())
            queue = server.get("/api/chats/qi/unanswered?limit=500")["posts"]
            per_network = Counter(p["network"] for p in queue)
            assert set(per_network) == {"x", "mastodon", "bluesky"}
            items = panel.locator(QUEUE_POST)
            expect(items).to_have_count(len(queue))
            assert assert_badges(items) == {"x", "mastodon", "bluesky"}

            # Each post links to its own site; a `url` that is not http(s) never becomes a link.
            for post_id, href, label in [
                (X_ANSWER, f"https://x.com/newcomer_nhs/status/{X_ANSWER}", "open on X"),
                (MASTODON_ANSWER, MASTODON_ANSWER_PAGE, "open on Mastodon"),
                (LIVE_TOOT, LIVE_TOOT_PAGE, "open on Mastodon"),
                (EVIL_TOOT, EVIL_TOOT, "open on Mastodon"),
                (BLUESKY_ANSWER, BLUESKY_ANSWER_PAGE, "open on Bluesky"),
            ]:
                link = panel.locator(f'{QUEUE_POST}[data-id="{post_id}"] a.post__link')
                expect(link).to_have_attribute("href", href)
                expect(link).to_have_text(label)
                expect(link).to_have_attribute("rel", "noopener noreferrer")
            hrefs = panel.locator(".post a[href]").evaluate_all("ns => ns.map(n => n.href)")
            assert hrefs and all(h.startswith(("https://", "http://")) for h in hrefs), hrefs
            # Post text stays text: the Mastodon status's escaped markup shows as written.
            evil = panel.locator(f'{QUEUE_POST}[data-id="{MASTODON_ANSWER}"] .post__text')
            expect(evil).to_contain_text("<script>alert('x')</script>")
            assert panel.evaluate("() => document.querySelectorAll('.post script').length") == 0

            panel.screenshot(path=str(SCREENSHOTS / "tweetchat-panel-networks.png"))

            # The network filter leaves only the chosen network's posts, with the question filter.
            filters = panel.locator("#network-filters")
            expect(filters).to_be_visible()
            for network in ("mastodon", "bluesky", "x"):
                choice = filters.locator(f'[data-network="{network}"]')
                expect(choice.locator(".filter__count")).to_have_text(str(per_network[network]))
                choice.click()
                expect(choice).to_have_attribute("aria-pressed", "true")
                expect(items).to_have_count(per_network[network])
                assert assert_badges(items) == {network}
                if network == "bluesky":
                    panel.screenshot(path=str(SCREENSHOTS / "tweetchat-panel-bluesky.png"))
            filters.locator('[data-network="mastodon"]').click()
            panel.locator('#queue-filters [data-filter="3"]').click()
            q3 = [p for p in queue if p["network"] == "mastodon" and p["question"] == 3]
            assert q3
            expect(items).to_have_count(len(q3))
            assert {i for i, _, _ in networks_of(items)} == {p["id"] for p in q3}
            panel.locator('#queue-filters [data-filter="all"]').click()
            filters.locator('[data-network="all"]').click()
            expect(items).to_have_count(len(queue))

            # The search: all posts of one network.
            panel.locator("#tab-search").click()
            found = panel.locator("#search-list > .post[data-id]")
            expect(found.first).to_be_visible()
            assert assert_badges(found) == {"x", "mastodon", "bluesky"}
            for network in ("bluesky", "mastodon"):
                total = server.get(f"/api/chats/qi/posts?network={network}")["total"]
                panel.locator("#search-network").select_option(network)
                panel.locator("#search-form button[type=submit]").click()
                expect(panel.locator("#search-summary")).to_have_text(f"{total} posts")
                expect(found).to_have_count(total)
                assert assert_badges(found) == {network}

            # The big screen: a badge on each post of the wall and of the top lists.
            expect(screen.locator(WALL_POST).first).to_be_visible()
            assert_badges(screen.locator(WALL_POST))
            expect(screen.locator(f'{WALL_POST}[data-id="{LIVE_TOOT}"] .network')).to_have_text(
                "Mastodon", timeout=20_000
            )
            assert_badges(screen.locator("#top-tweets .compact[data-id]"))
            screen.screenshot(path=str(SCREENSHOTS / "tweetchat-screen-networks.png"))
            assert screen.locator("a[href^='javascript']").count() == 0


def test_a_chat_of_one_network_needs_no_network_filter(
    browser: Browser, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.helpers import make_cli_runner
    from tests.test_live import create_chat

    monkeypatch.chdir(tmp_path)
    cli = make_cli_runner(sqlite_url)
    create_chat(cli, "qi")
    assert cli("import", "qi", str(FIXTURES / "qi-chat.jsonl")).exit_code == 0
    with PageServer(Settings(database_url=sqlite_url, admin_token=ADMIN)) as server:
        token = server.panel_token("qi", "Helen")
        with open_panel(browser, server, token) as panel:
            page: Page = panel
            page.goto(f"{server.url}/chats/qi/panel")
            expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
            items = page.locator(QUEUE_POST)
            expect(items.first).to_be_visible()
            expect(page.locator("#network-filters")).to_be_hidden()
            assert assert_badges(items) == {"x"}
